//! The runtime: I/O threads (mio + str0m sessions), the callback dispatcher and the codec
//! worker pool, plus the process-wide default runtime created on first use.

pub(crate) mod audio;
pub(crate) mod bitrate;
mod callback;
mod dispatch;
mod io_loop;
mod shared;
mod sink;
pub(crate) mod video;
mod workers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use str0m::config::{CryptoProvider, DtlsCert};

use crate::config::RuntimeConfig;
use crate::error::{Error, Result};
use crate::limits;

pub use audio::AudioStats;
pub(crate) use audio::{AudioClock, AudioIn, AudioOut};
pub(crate) use dispatch::Dispatcher;
pub(crate) use io_loop::{Command, IoHandle, MediaSinks, NewPeer, MAX_SOCKETS_PER_PEER};
pub(crate) use shared::PeerShared;
pub use shared::{PeerEvent, PeerHandler};
pub use sink::FrameCallback;
pub use video::VideoStats;
pub(crate) use video::{VideoIn, VideoOut, VideoPipes};
pub(crate) use workers::Workers;

/// A set of threads peers live on. Cheap to clone; the threads stop when the last clone
/// and the last peer on it are gone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub io: Vec<IoHandle>,
    next_io: AtomicUsize,
    pub dispatcher: Dispatcher,
    pub workers: Workers,
    pub clock: AudioClock,
    pub crypto: Arc<CryptoProvider>,
    pub cert: DtlsCert,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    /// Starts a runtime with its own threads.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime> {
        if cfg.io_threads == 0 || cfg.io_threads > 64 {
            return Err(Error::invalid("io_threads must be 1..=64"));
        }
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        // One certificate for the runtime: generating one per peer costs ~30 ms each.
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| Error::internal("DTLS certificate generation failed"))?;
        let mut threads = Vec::new();
        let (dispatcher, t) = Dispatcher::start()?;
        threads.push(t);
        let (workers, ts) = Workers::start(cfg.worker_threads)?;
        threads.extend(ts);
        let (clock, t) = AudioClock::start(workers.clone())?;
        threads.push(t);
        let mut io = Vec::new();
        for i in 0..cfg.io_threads {
            let (handle, t) = io_loop::spawn(i, dispatcher.clone())?;
            io.push(handle);
            threads.push(t);
        }
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                io,
                next_io: AtomicUsize::new(0),
                dispatcher,
                workers,
                clock,
                crypto,
                cert,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// The process-wide runtime (one I/O thread), created on first use.
    pub fn global() -> Result<Runtime> {
        static GLOBAL: OnceLock<std::result::Result<Runtime, Error>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Runtime::new(RuntimeConfig::default()))
            .clone()
    }

    /// Says goodbye to every live peer on this runtime and closes it: `peerLeft` on its data
    /// channel, then SCTP shutdown and DTLS close_notify, so clients notice at once instead
    /// of at their consent timeout. Returns how many peers it closed, once every I/O thread
    /// has sent their goodbyes, or after `timeout` at the latest (an I/O thread that has not
    /// answered by then still closes its peers; they are just not counted).
    ///
    /// The runtime stays usable (new peers work); peers stay valid objects, in `Closed`,
    /// and their handlers get the `Closed` state. Any thread except the runtime's own
    /// (callbacks): it waits for the I/O threads, which may be delivering to that callback.
    pub fn shutdown(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut replies = Vec::new();
        for io in &self.inner.io {
            let (tx, rx) = bounded(1);
            let left = deadline.saturating_duration_since(Instant::now());
            if io
                .send_within(Command::CloseAll { reply: tx }, left)
                .is_ok()
            {
                replies.push(rx);
            }
        }
        replies
            .into_iter()
            .filter_map(|rx| rx.recv_deadline(deadline).ok())
            .sum()
    }

    /// Number of peers currently held by this runtime's I/O threads.
    pub fn peer_count(&self) -> usize {
        self.inner.io.iter().map(|h| h.peer_count()).sum()
    }
}

impl RuntimeInner {
    /// The I/O thread for a new peer: round robin.
    pub fn pick_io_index(&self) -> usize {
        self.next_io.fetch_add(1, Ordering::Relaxed) % self.io.len()
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        for h in &self.io {
            h.send_shutdown();
        }
        self.dispatcher.shutdown();
        self.clock.shutdown();
        self.workers.shutdown();
        let me = std::thread::current().id();
        for t in self.threads.lock().drain(..) {
            // The last clone may be dropped on one of our own threads (inside a callback).
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// A one-shot reply channel for commands answered by the I/O thread.
pub(crate) fn reply_channel<T>() -> (Sender<T>, crossbeam_channel::Receiver<T>) {
    bounded(1)
}

/// Waits for a command's reply, mapping a vanished I/O thread to `Closed`.
pub(crate) fn wait_reply<T>(rx: crossbeam_channel::Receiver<Result<T>>) -> Result<T> {
    match rx.recv_timeout(limits::COMMAND_TIMEOUT) {
        Ok(r) => r,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::new(
            crate::error::ErrorKind::Timeout,
            "the I/O thread did not answer within 5 s",
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::closed()),
    }
}
