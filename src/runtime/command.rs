//! What reaches an I/O thread: the [`Command`]s the app side and the media pipes send,
//! the [`IoHandle`] they send them through, and the [`NewPeer`] a command hands over.
//! It names no pipe type: the pipes depend on this module, never the other way round.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::Waker;

use super::shared::PeerShared;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::session::{AudioPacket, NetworkStats, Session, SessionStats, VideoPacket};

/// Where the media pipes of a peer want what the session receives and does. Each hook runs
/// on the I/O thread and must only queue work or flip flags (the pipes do the codec work
/// on workers), so the I/O thread never names a pipe type.
#[derive(Default)]
pub(crate) struct MediaSinks {
    /// Mic packets.
    pub audio: Option<Box<dyn FnMut(AudioPacket) + Send>>,
    /// Camera and screen frames.
    pub video: Option<Box<dyn FnMut(VideoPacket) + Send>>,
    /// The client wants a keyframe of our video.
    pub keyframe: Option<Box<dyn FnMut() + Send>>,
    /// An offer was answered: the video codec we now send (`None`: no video out).
    pub codec: Option<Box<dyn FnMut(Option<str0m::format::Codec>) + Send>>,
    /// The peer went to `Closed`: readers and blocked writers must return `Closed`.
    pub closed: Option<Box<dyn FnMut() + Send>>,
}

/// A peer for an I/O thread to adopt (see `assemble`).
pub(crate) struct NewPeer {
    pub shared: Arc<PeerShared>,
    pub session: Session,
    /// Its own sockets; empty when it uses the runtime's shared ones.
    pub sockets: Vec<UdpSocket>,
    pub sinks: MediaSinks,
}

/// Work for an I/O thread. Replies go back on one-shot channels.
pub(crate) enum Command {
    AddPeer(Box<NewPeer>),
    Offer {
        id: u64,
        sdp: String,
        reply: Sender<Result<String>>,
    },
    Candidate {
        id: u64,
        candidate: String,
        reply: Sender<Result<()>>,
    },
    Connect {
        id: u64,
        reply: Sender<Result<()>>,
    },
    Disconnect {
        id: u64,
    },
    Close {
        id: u64,
        /// Skip `peerLeft` (a restart, where the client keeps going on a new peer).
        quiet: bool,
    },
    Send {
        id: u64,
        data: Vec<u8>,
        binary: bool,
        reply: Sender<Result<()>>,
    },
    Stats {
        id: u64,
        reply: Sender<Result<SessionStats>>,
    },
    NetworkStats {
        id: u64,
        reply: Sender<Result<(SessionStats, NetworkStats)>>,
    },
    AudioOut {
        id: u64,
        rtp_time: u64,
        data: Vec<u8>,
    },
    VideoOut {
        id: u64,
        codec: str0m::format::Codec,
        rtp_time: u64,
        data: Vec<u8>,
    },
    RequestKeyframe {
        id: u64,
        receiver_index: usize,
    },
    /// Closes every live peer with goodbyes (`peerLeft`, SCTP shutdown, DTLS close_notify,
    /// all sent before the reply) and answers how many it closed.
    CloseAll {
        reply: Sender<usize>,
    },
    /// Answers once every command queued before it is done (their output is sent).
    Barrier {
        reply: Sender<()>,
    },
    /// The STUN and TURN servers' addresses, looked up off the I/O thread.
    IceServers {
        stun: Vec<std::net::SocketAddr>,
        turn: Vec<crate::ice::TurnServer>,
    },
    Shutdown,
}

/// The app side's way into one I/O thread.
#[derive(Clone)]
pub(crate) struct IoHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// True while the I/O thread is (about to be) blocked in `poll`; only then does a
    /// command need the waker's syscall. Media commands arrive in bursts per clock tick.
    sleeping: Arc<AtomicBool>,
    peers: Arc<AtomicUsize>,
}

/// The I/O thread's end of an [`IoHandle`].
pub(crate) struct IoInbox {
    pub rx: Receiver<Command>,
    pub sleeping: Arc<AtomicBool>,
    pub peers: Arc<AtomicUsize>,
}

impl IoHandle {
    /// A bounded command queue woken through `waker`: the handle and the loop's end.
    pub fn new(waker: Waker) -> (IoHandle, IoInbox) {
        let (tx, rx) = bounded(limits::COMMAND_QUEUE);
        let sleeping = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(AtomicUsize::new(0));
        let inbox = IoInbox {
            rx,
            sleeping: sleeping.clone(),
            peers: peers.clone(),
        };
        let handle = IoHandle {
            tx,
            waker: Arc::new(waker),
            sleeping,
            peers,
        };
        (handle, inbox)
    }

    /// Queues a command and wakes the thread. Blocks up to the command timeout when full.
    pub fn send(&self, cmd: Command) -> Result<()> {
        self.send_within(cmd, limits::COMMAND_TIMEOUT)
    }

    /// Like [`IoHandle::send`], waiting at most `timeout` for room in the queue.
    pub fn send_within(&self, cmd: Command, timeout: Duration) -> Result<()> {
        self.tx.send_timeout(cmd, timeout).map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(_) => {
                Error::new(ErrorKind::Timeout, "the I/O thread's command queue is full")
            }
            crossbeam_channel::SendTimeoutError::Disconnected(_) => Error::closed(),
        })?;
        self.wake()?;
        Ok(())
    }

    fn wake(&self) -> std::io::Result<()> {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Queues a command without blocking (media paths): false when the queue is full.
    pub fn try_send(&self, cmd: Command) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => self.wake().is_ok(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Sends a command and waits for its reply (see [`wait_reply`]).
    pub fn call<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = bounded(1);
        self.send(make(tx))?;
        wait_reply(rx)
    }

    pub fn send_shutdown(&self) {
        let _ = self.tx.try_send(Command::Shutdown);
        let _ = self.waker.wake();
    }

    pub fn peer_count(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }
}

/// Waits for a command's reply, mapping a vanished I/O thread to `Closed`.
fn wait_reply<T>(rx: Receiver<Result<T>>) -> Result<T> {
    match rx.recv_timeout(limits::COMMAND_TIMEOUT) {
        Ok(r) => r,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::new(
            ErrorKind::Timeout,
            "the I/O thread did not answer within 5 s",
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::closed()),
    }
}
