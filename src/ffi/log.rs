//! C ABI of logging: the library logs through `tracing`; a C host receives those events
//! through one callback, installed as a `tracing` layer the first time it asks. Rust hosts
//! install their own subscriber and never call this.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use parking_lot::RwLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::error::Error;

use super::{guard, SwrtcResult, UserData};

/// Severity of a log message; a filter lets a level and every more severe one through.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwrtcLogLevel {
    /// Nothing (as a filter: logging off).
    SWRTC_LOG_OFF = 0,
    /// Something failed: a peer closed on an error, a socket failed.
    SWRTC_LOG_ERROR = 1,
    /// Something was dropped or refused.
    SWRTC_LOG_WARN = 2,
    /// Lifecycle: peers, servers, connections.
    SWRTC_LOG_INFO = 3,
    /// Per-peer detail (rejected datagrams, ignored messages).
    SWRTC_LOG_DEBUG = 4,
    /// Very verbose, includes the WebRTC stack's per-packet traces.
    SWRTC_LOG_TRACE = 5,
}

/// Receives one log message. `target` is the Rust module that logged (e.g.
/// "smallwebrtc::session", "str0m::ice"), `message` the text with its fields
/// (`text key=value ...`). Both are UTF-8, valid only during the call, given with their
/// lengths in bytes and also followed by a NUL byte not counted in the length.
pub type SwrtcLogCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: SwrtcLogLevel,
        target: *const c_char,
        target_len: usize,
        message: *const c_char,
        message_len: usize,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(
        *mut c_void,
        SwrtcLogLevel,
        *const c_char,
        usize,
        *const c_char,
        usize,
    ),
    user_data: UserData,
}

// SAFETY: the header documents that the callback runs on any thread that logs, with its
// user_data; the library never dereferences user_data.
unsafe impl Sync for Sink {}

/// The level filter, read on every event before anything else (cheap when filtered out).
static MIN_LEVEL: AtomicU8 = AtomicU8::new(0);
/// The callback; held for reading while it runs, so replacing it waits for running calls.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// Whether our layer became the process' global subscriber (Ok) or another one was
/// already there (Err with the message).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the callback: logging from inside it is not forwarded
    /// (it would recurse), and the callback may not be replaced from inside itself.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// Reused formatting buffers: (target, message).
    static BUF: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

fn rank(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn c_level(rank: u8) -> SwrtcLogLevel {
    match rank {
        1 => SwrtcLogLevel::SWRTC_LOG_ERROR,
        2 => SwrtcLogLevel::SWRTC_LOG_WARN,
        3 => SwrtcLogLevel::SWRTC_LOG_INFO,
        4 => SwrtcLogLevel::SWRTC_LOG_DEBUG,
        _ => SwrtcLogLevel::SWRTC_LOG_TRACE,
    }
}

struct CallbackLayer;

impl<S: Subscriber> Layer<S> for CallbackLayer {
    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        rank(meta.level()) <= MIN_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if IN_CALLBACK.with(Cell::get) {
            return;
        }
        let meta = event.metadata();
        let level = rank(meta.level());
        if level > MIN_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        // Recursive: a concurrent writer (a new callback being set) must not block a
        // thread that logs from inside a library call made while reading.
        let sink = SINK.read_recursive();
        let Some(sink) = sink.as_ref() else {
            return;
        };
        BUF.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return;
            };
            let (target, message) = &mut *b;
            target.clear();
            target.push_str(meta.target());
            target.push('\0');
            message.clear();
            event.record(&mut Fields(message));
            message.push('\0');
            IN_CALLBACK.with(|f| f.set(true));
            // SAFETY: the host registered this function for this user_data; both strings
            // are NUL-terminated and outlive the call.
            unsafe {
                (sink.callback)(
                    sink.user_data.0,
                    c_level(level),
                    target.as_ptr() as *const c_char,
                    target.len() - 1,
                    message.as_ptr() as *const c_char,
                    message.len() - 1,
                )
            };
            IN_CALLBACK.with(|f| f.set(false));
        });
    }
}

/// Formats an event's fields: the message first, then ` key=value` for the others.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.0.insert_str(0, &text);
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

/// Sends the library's log messages at `min_level` (a `SwrtcLogLevel`) and more severe to
/// `callback`.
///
/// The first call with a callback installs the library's `tracing` subscriber as the
/// process' global one; it fails with `SWRTC_ERR_INVALID_ARGUMENT` if the process already
/// has one (a Rust host that set up `tracing` itself gets the messages there instead). A
/// later call replaces the callback, `user_data` and level; `callback` NULL or `min_level`
/// `SWRTC_LOG_OFF` stops forwarding. When the call returns, calls of the previous callback
/// have finished and no new ones start.
///
/// The callback runs on the thread that logged: an I/O thread, a codec worker, the
/// callback thread or the app's own thread inside a `swrtc_*` call, possibly several at
/// once. It must be thread-safe, return quickly and never block (it holds up that
/// thread's peers: hand the text to a queue). It must not call `swrtc_*` functions that
/// wait for a peer's I/O thread (`swrtc_peer_handle_offer`, `_add_ice_candidate`,
/// `_connect`, `_send_message`, `_get_stats`, `_get_network_stats`, `_get_stats_json`):
/// it may be running on that very thread, which would stall until the command timeout.
/// Messages logged by `swrtc_*` calls made from inside it are not forwarded. It must not
/// call `swrtc_set_log_callback` (that call returns `SWRTC_ERR_INVALID_ARGUMENT`). `user_data` must stay valid until the callback
/// is replaced.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (level out of range, another subscriber installed,
/// called from inside the callback). Any thread.
///
/// # Safety
/// `callback` is NULL or a function with the signature above, callable from any thread
/// with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_set_log_callback(
    min_level: i32,
    callback: SwrtcLogCallback,
    user_data: *mut c_void,
) -> SwrtcResult {
    guard(|| {
        // Taken as an int: a C enum may carry any integer, so check before trusting it.
        let raw = min_level;
        if !(0..=5).contains(&raw) {
            return Err(Error::invalid(format!(
                "min_level {raw} is not a log level"
            )));
        }
        if IN_CALLBACK.with(Cell::get) {
            return Err(Error::invalid(
                "swrtc_set_log_callback called from inside the log callback",
            ));
        }
        let level = if callback.is_some() { raw as u8 } else { 0 };
        if let Some(callback) = callback {
            install()?;
            // Off first so no event starts on a half-set sink; the write lock waits for
            // running calls of the old callback.
            MIN_LEVEL.store(0, Ordering::Relaxed);
            *SINK.write() = Some(Sink {
                callback,
                user_data: UserData(user_data),
            });
        } else {
            MIN_LEVEL.store(0, Ordering::Relaxed);
            *SINK.write() = None;
        }
        MIN_LEVEL.store(level, Ordering::Relaxed);
        // Callsites cache whether they are enabled; let them ask again.
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    })
}

fn install() -> Result<(), Error> {
    INSTALLED
        .get_or_init(|| {
            let subscriber = tracing_subscriber::registry().with(CallbackLayer);
            tracing::subscriber::set_global_default(subscriber).map_err(|_| {
                "this process already has a global tracing subscriber; its messages go there"
                    .to_string()
            })
        })
        .clone()
        .map_err(Error::invalid)
}
