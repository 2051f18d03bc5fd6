//! The C log callback, called from Rust through the exported function: the level filter
//! holds, messages carry level, target and text with matching lengths, a new level takes
//! effect at once, and after turning it off no callback runs. One test: the subscriber is
//! process-wide.

mod common;

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peers::{loopback, open_str0m};
use common::str0m_client::{ClientOptions, TestClient};
use parking_lot::Mutex;
use smallwebrtc::ffi::{swrtc_set_log_callback, SwrtcLogLevel, SwrtcResult};
use smallwebrtc::{Peer, PeerEvent, PeerHandler};

const T: Duration = Duration::from_secs(20);

type Line = (SwrtcLogLevel, String, String);
static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_log(
    user_data: *mut c_void,
    level: SwrtcLogLevel,
    target: *const c_char,
    target_len: usize,
    message: *const c_char,
    message_len: usize,
) {
    assert_eq!(user_data as usize, 0x5eed);
    // SAFETY: the library passes valid (pointer, length) pairs followed by a NUL.
    let (t, m) = unsafe {
        assert_eq!(*target.add(target_len), 0);
        assert_eq!(*message.add(message_len), 0);
        (
            std::slice::from_raw_parts(target as *const u8, target_len),
            std::slice::from_raw_parts(message as *const u8, message_len),
        )
    };
    let line = (
        level,
        String::from_utf8(t.to_vec()).unwrap(),
        String::from_utf8(m.to_vec()).unwrap(),
    );
    LINES.lock().push(line);
}

fn set(level: SwrtcLogLevel, on: bool) -> SwrtcResult {
    // SAFETY: on_log has the callback's signature and is callable from any thread.
    unsafe { swrtc_set_log_callback(level as i32, on.then_some(on_log), 0x5eed as *mut c_void) }
}

/// A handler that panics on its first event: the library logs a WARN about it.
struct Panicky;
impl PeerHandler for Panicky {
    fn on_event(&self, _: &PeerEvent) {
        panic!("handler panics on purpose (log test)");
    }
}

fn session(handler: Option<Arc<dyn PeerHandler>>) -> (TestClient, Peer) {
    let peer = Peer::new(loopback(), handler).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open_str0m(&mut client, &peer, T);
    (client, peer)
}

fn wait_line(what: &str, pred: impl Fn(&Line) -> bool) -> Line {
    let end = Instant::now() + T;
    loop {
        if let Some(l) = LINES.lock().iter().find(|l| pred(l)) {
            return l.clone();
        }
        assert!(Instant::now() < end, "no log line: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn log_callback_filters_by_level_and_stops_when_removed() {
    assert_eq!(
        unsafe { swrtc_set_log_callback(9, Some(on_log), std::ptr::null_mut()) },
        SwrtcResult::SWRTC_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        set(SwrtcLogLevel::SWRTC_LOG_WARN, true),
        SwrtcResult::SWRTC_OK
    );
    let (_c1, p1) = session(Some(Arc::new(Panicky)));
    let (level, target, message) = wait_line("handler panic", |l| l.2.contains("panicked"));
    assert_eq!(level, SwrtcLogLevel::SWRTC_LOG_WARN);
    assert!(target.starts_with("smallwebrtc"), "{target}");
    // The data channel opened (a DEBUG line) but the filter held it back.
    assert!(
        LINES
            .lock()
            .iter()
            .all(|l| l.0 <= SwrtcLogLevel::SWRTC_LOG_WARN),
        "{:?}",
        LINES.lock()
    );
    assert!(message.len() < 500, "{message}");
    drop(p1);

    // DEBUG now: the next session's channel opening shows, with its field-free text.
    assert_eq!(
        set(SwrtcLogLevel::SWRTC_LOG_DEBUG, true),
        SwrtcResult::SWRTC_OK
    );
    let (_c2, p2) = session(None);
    let (level, target, _) = wait_line("channel open", |l| l.2.contains("data channel"));
    assert_eq!(level, SwrtcLogLevel::SWRTC_LOG_DEBUG);
    assert_eq!(target, "smallwebrtc::session");
    drop(p2);

    // Off: a whole session later, nothing more arrived.
    assert_eq!(
        set(SwrtcLogLevel::SWRTC_LOG_DEBUG, false),
        SwrtcResult::SWRTC_OK
    );
    let n = LINES.lock().len();
    let (_c3, p3) = session(None);
    drop(p3);
    assert_eq!(LINES.lock().len(), n);
}
