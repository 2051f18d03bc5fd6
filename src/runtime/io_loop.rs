//! An I/O thread: one mio `Poll` over the UDP sockets of many peers plus a `Waker` for
//! commands. It is the only place that reads the clock and touches sockets for sessions;
//! it never runs codecs and never blocks on the app (full queues drop and count).

use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

mod relay;
mod srflx;

pub(crate) use relay::TurnServer;
pub(crate) use srflx::StunSetup;

use super::demux::Demux;
use super::shared::{PeerEvent, PeerShared};
use super::{Dispatcher, SharedUdp};
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::session::{AudioPacket, NetworkStats, PeerState, Session, SessionEvent};
use crate::session::{SessionStats, VideoPacket};

const WAKER: Token = Token(usize::MAX);
/// Shared sockets count down from just below the waker.
const SHARED_FIRST: usize = usize::MAX - 1;
/// Sockets per peer are addressed by the low bits of the token.
pub(crate) const MAX_SOCKETS_PER_PEER: usize = 8;
/// Datagrams read from one socket before the session's output is flushed.
const FLUSH_EVERY: usize = 32;

/// Where the media pipes of a peer want what the session receives. Each hook runs on the
/// I/O thread and must only queue work (the pipes do the codec work on workers).
#[derive(Default)]
pub(crate) struct MediaSinks {
    /// Mic packets.
    pub audio: Option<Box<dyn FnMut(AudioPacket) + Send>>,
    /// Camera and screen frames.
    pub video: Option<Box<dyn FnMut(VideoPacket) + Send>>,
    /// The client wants a keyframe of our video.
    pub keyframe: Option<Box<dyn FnMut() + Send>>,
}

pub(crate) struct NewPeer {
    pub shared: Arc<PeerShared>,
    pub session: Session,
    pub sockets: Vec<std::net::UdpSocket>,
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
        stun: Vec<SocketAddr>,
        turn: Vec<TurnServer>,
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

impl IoHandle {
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

    pub fn send_shutdown(&self) {
        let _ = self.tx.try_send(Command::Shutdown);
        let _ = self.waker.wake();
    }

    pub fn peer_count(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }
}

struct Entry {
    shared: Arc<PeerShared>,
    session: Session,
    sockets: Vec<(UdpSocket, SocketAddr)>,
    sinks: MediaSinks,
}

struct IoLoop {
    poll: Poll,
    /// The runtime's shared UDP sockets (first I/O thread only) and their demultiplexer.
    shared: Vec<(UdpSocket, SocketAddr)>,
    demux: Demux,
    /// Slots fed from a shared socket since their last flush.
    dirty: Vec<usize>,
    next_sweep: Instant,
    /// The loop's last clock reading (for the demultiplexer's send path, whose bounds are
    /// in seconds).
    clock: Instant,
    rx: Receiver<Command>,
    sleeping: Arc<AtomicBool>,
    dispatcher: Dispatcher,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    buf: Vec<u8>,
    count: Arc<AtomicUsize>,
    /// STUN: server-reflexive addresses of our sockets (see `srflx`).
    srflx: srflx::Srflx,
}

pub(crate) fn spawn(
    index: usize,
    dispatcher: Dispatcher,
    shared_udp: SharedUdp,
    stun: StunSetup,
) -> Result<(IoHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let mut shared = Vec::new();
    for (i, s) in shared_udp.sockets.into_iter().enumerate() {
        let local = s.local_addr()?;
        let mut sock = UdpSocket::from_std(s);
        poll.registry()
            .register(&mut sock, Token(SHARED_FIRST - i), Interest::READABLE)?;
        shared.push((sock, local));
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = bounded(limits::COMMAND_QUEUE);
    let count = Arc::new(AtomicUsize::new(0));
    let sleeping = Arc::new(AtomicBool::new(false));
    let mut lp = IoLoop {
        poll,
        shared,
        demux: Demux::new(shared_udp.counters),
        dirty: Vec::new(),
        next_sweep: Instant::now(),
        clock: Instant::now(),
        rx,
        sleeping: sleeping.clone(),
        dispatcher,
        entries: Vec::new(),
        free: Vec::new(),
        by_id: HashMap::new(),
        buf: vec![0; limits::MAX_DATAGRAM + 1],
        count: count.clone(),
        srflx: srflx::Srflx::new(stun, Instant::now()),
    };
    lp.gather_shared(Instant::now());
    let t = std::thread::Builder::new()
        .name(format!("swrtc-io-{index}"))
        .spawn(move || lp.run())?;
    Ok((
        IoHandle {
            tx,
            waker,
            sleeping,
            peers: count,
        },
        t,
    ))
}

impl IoLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let deadline = self
                .entries
                .iter()
                .flatten()
                .map(|e| e.session.poll_timeout())
                .chain(self.srflx.poll_timeout())
                .min();
            let mut wait = deadline.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(now).min(Duration::from_secs(1))
            });
            // Announce the sleep, then look once more: a command queued before the flag
            // was set did not wake us, so do not block on it.
            self.sleeping.store(true, Ordering::SeqCst);
            if !self.rx.is_empty() {
                wait = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(wait));
            self.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != IoKind::Interrupted {
                    warn!("mio poll failed: {e}");
                }
                continue;
            }
            let now = Instant::now();
            self.clock = now;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    t if t.0 > SHARED_FIRST - MAX_SOCKETS_PER_PEER => {
                        self.read_shared(SHARED_FIRST - t.0, now);
                    }
                    t => self.read_socket(t, now),
                }
            }
            if !self.shared.is_empty() && now >= self.next_sweep {
                self.demux.expire(now);
                self.next_sweep = now + Duration::from_secs(1);
            }
            if !self.handle_commands(now) {
                self.shutdown();
                return;
            }
            let now = Instant::now();
            self.srflx_tick(now);
            for slot in 0..self.entries.len() {
                let due = match &self.entries[slot] {
                    Some(e) => e.session.poll_timeout() <= now,
                    None => false,
                };
                if due {
                    if let Some(e) = self.entries[slot].as_mut() {
                        e.session.handle_timeout(now);
                    }
                    self.flush(slot);
                }
            }
        }
    }

    fn read_socket(&mut self, token: Token, now: Instant) {
        let slot = token.0 / MAX_SOCKETS_PER_PEER;
        let idx = token.0 % MAX_SOCKETS_PER_PEER;
        let mut since_flush = 0;
        loop {
            let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let Some((sock, local)) = entry.sockets.get(idx) else {
                return;
            };
            let local = *local;
            match sock.recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    if n > limits::MAX_DATAGRAM {
                        entry.session.count_dropped_datagram();
                    } else if self.srflx.claim(now, local, source, &self.buf[..n]) {
                        // A STUN server's answer about this socket, not the client's.
                    } else if let Some(relayed) =
                        self.srflx.relays.claim(now, local, source, &self.buf[..n])
                    {
                        // From our TURN server: its own answers, or a client's datagram
                        // it relayed.
                        if let Some(r) = relayed {
                            entry
                                .session
                                .handle_datagram(now, r.peer, r.relayed, &r.data);
                        }
                    } else {
                        entry
                            .session
                            .handle_datagram(now, source, local, &self.buf[..n]);
                    }
                    since_flush += 1;
                    if since_flush >= FLUSH_EVERY {
                        since_flush = 0;
                        self.flush(slot);
                    }
                }
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; not fatal.
                    debug!("recv_from on {local} failed: {e}");
                    continue;
                }
            }
        }
        self.flush(slot);
    }

    /// Reads the shared socket `idx` dry, handing each datagram to the peer the
    /// demultiplexer names (see `demux`).
    fn read_shared(&mut self, idx: usize, now: Instant) {
        let mut since_flush = 0;
        loop {
            let Some((sock, local)) = self.shared.get(idx) else {
                return;
            };
            let local = *local;
            let (n, source) = match sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => {
                    debug!("recv_from on shared {local} failed: {e}");
                    continue;
                }
            };
            // One byte past the limit is enough to count an oversized datagram as one.
            let data = &self.buf[..n.min(limits::MAX_DATAGRAM + 1)];
            if self.srflx.claim(now, local, source, data) {
                continue;
            }
            let entries = &mut self.entries;
            let fed = self.demux.feed(now, source, local, data, |slot| {
                entries
                    .get_mut(slot)
                    .and_then(Option::as_mut)
                    .map(|e| &mut e.session)
            });
            let Some(slot) = fed else { continue };
            self.dirty.push(slot);
            since_flush += 1;
            if since_flush >= FLUSH_EVERY {
                since_flush = 0;
                self.flush_dirty();
            }
        }
        self.flush_dirty();
    }

    fn flush_dirty(&mut self) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for slot in std::mem::take(&mut self.dirty) {
            self.flush(slot);
        }
    }

    /// Tells the demultiplexer the slot's current ufrag (a new peer, or after an offer,
    /// which may restart ICE). A ufrag another peer has (vanishingly rare) is renewed.
    fn register_ufrag(&mut self, slot: usize) {
        if self.shared.is_empty() {
            return;
        }
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        for _ in 0..4 {
            let ufrag = entry.session.local_ufrag();
            if self.demux.set_ufrag(slot, &ufrag) {
                return;
            }
            entry.session.renew_local_credentials();
        }
        warn!("no unique ICE ufrag for peer {}", entry.shared.id);
    }

    /// Returns false on shutdown.
    fn handle_commands(&mut self, now: Instant) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Shutdown => return false,
                Command::AddPeer(p) => self.add_peer(*p),
                Command::Offer { id, sdp, reply } => self.offer(id, sdp, reply, now),
                Command::Candidate {
                    id,
                    candidate,
                    reply,
                } => {
                    let r = self.with(id, |s| s.add_remote_candidate(&candidate, now));
                    let _ = reply.send(r);
                }
                Command::Connect { id, reply } => {
                    let r = self.with(id, |s| s.connect(now));
                    let _ = reply.send(r);
                }
                Command::Disconnect { id } => {
                    let _ = self.with(id, |s| {
                        s.disconnect(now);
                        Ok(())
                    });
                }
                Command::Close { id, quiet } => {
                    let _ = self.with(id, |s| {
                        if quiet {
                            s.close_quietly(now);
                        } else {
                            s.close(now);
                        }
                        Ok(())
                    });
                }
                Command::Send {
                    id,
                    data,
                    binary,
                    reply,
                } => {
                    let r = self.with(id, |s| s.send_message(&data, binary, now));
                    let _ = reply.send(r);
                }
                Command::Stats { id, reply } => {
                    let r = self.with(id, |s| Ok(s.stats().clone()));
                    let _ = reply.send(r);
                }
                Command::NetworkStats { id, reply } => {
                    let r = self.with(id, |s| Ok((s.stats().clone(), s.network_stats().clone())));
                    let _ = reply.send(r);
                }
                Command::AudioOut { id, rtp_time, data } => {
                    let _ = self.with(id, |s| {
                        s.write_audio(rtp_time, now, data);
                        Ok(())
                    });
                }
                Command::VideoOut {
                    id,
                    codec,
                    rtp_time,
                    data,
                } => {
                    let _ = self.with(id, |s| {
                        s.write_video(codec, rtp_time, now, data);
                        Ok(())
                    });
                }
                Command::RequestKeyframe { id, receiver_index } => {
                    let _ = self.with(id, |s| {
                        s.request_keyframe(receiver_index, now);
                        Ok(())
                    });
                }
                Command::CloseAll { reply } => {
                    let n = self.close_all(now);
                    let _ = reply.send(n);
                }
                Command::Barrier { reply } => {
                    let _ = reply.send(());
                }
                Command::IceServers { stun, turn } => self.ice_servers_known(stun, turn, now),
            }
        }
        true
    }

    /// Answers an offer (its first one after `srflx` let it through).
    fn answer_offer(&mut self, id: u64, sdp: &str, reply: Sender<Result<String>>, now: Instant) {
        let r = self.with_entry(id, |e| {
            let answer = e.session.accept_offer(sdp, now)?;
            if let Some(v) = &e.shared.video.output {
                v.set_codec(e.session.video_out_codec());
            }
            Ok(answer)
        });
        if let Some(&slot) = self.by_id.get(&id) {
            self.register_ufrag(slot);
        }
        let _ = reply.send(r);
    }

    /// Runs `f` on a live session, then flushes its output.
    fn with<T>(&mut self, id: u64, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        self.with_entry(id, |e| f(&mut e.session))
    }

    fn with_entry<T>(&mut self, id: u64, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let Some(&slot) = self.by_id.get(&id) else {
            return Err(Error::closed());
        };
        let Some(entry) = self.entries[slot].as_mut() else {
            return Err(Error::closed());
        };
        let r = f(entry);
        self.flush(slot);
        r
    }

    fn add_peer(&mut self, p: NewPeer) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let mut sockets = Vec::new();
        for (i, s) in p.sockets.into_iter().enumerate().take(MAX_SOCKETS_PER_PEER) {
            let Ok(local) = s.local_addr() else { continue };
            let mut sock = UdpSocket::from_std(s);
            let token = Token(slot * MAX_SOCKETS_PER_PEER + i);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut sock, token, Interest::READABLE)
            {
                warn!("cannot register socket {local}: {e}");
                continue;
            }
            sockets.push((sock, local));
        }
        self.by_id.insert(p.shared.id, slot);
        self.entries[slot] = Some(Entry {
            shared: p.shared,
            session: p.session,
            sockets,
            sinks: p.sinks,
        });
        self.register_ufrag(slot);
        self.srflx_add_peer(slot, self.clock);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a session's transmits, routes its events, and forgets it once finished.
    fn flush(&mut self, slot: usize) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // A peer without sockets of its own uses the runtime's shared ones.
        let shared = entry.sockets.is_empty();
        let sockets = if shared { &self.shared } else { &entry.sockets };
        while let Some(t) = entry.session.poll_transmit() {
            if !shared && self.srflx.relays.is_relayed(t.source) {
                let out = self
                    .srflx
                    .relays
                    .send(self.clock, t.source, t.destination, &t.contents);
                if let Some(o) = out {
                    if let Some((sock, _)) = sockets.iter().find(|(_, l)| *l == o.local) {
                        if let Err(e) = sock.send_to(&o.data, o.to) {
                            debug!("send_to TURN {} failed: {e}", o.to);
                        }
                    }
                }
                continue;
            }
            let sock = sockets
                .iter()
                .find(|(_, local)| *local == t.source)
                .or_else(|| sockets.first());
            let dest = if shared {
                self.demux
                    .note_sent(slot, t.destination, &t.contents, self.clock);
                self.demux.send_to(slot, t.destination, self.clock)
            } else {
                t.destination
            };
            if let Some((sock, local)) = sock {
                if let Err(e) = sock.send_to(&t.contents, dest) {
                    debug!("send_to {dest} from {local} failed: {e}");
                }
            }
        }
        while let Some(ev) = entry.session.poll_event() {
            let shared = &entry.shared;
            match ev {
                SessionEvent::State(s) => {
                    shared.set_state(s);
                    self.dispatcher.deliver(shared, PeerEvent::State(s));
                }
                SessionEvent::Message { data, binary } => {
                    self.dispatcher
                        .deliver(shared, PeerEvent::Message { data, binary });
                }
                SessionEvent::TrackStatus {
                    receiver_index,
                    enabled,
                } => {
                    if let Some(flag) = shared.track_enabled.get(receiver_index as usize) {
                        flag.store(enabled, Ordering::Release);
                    }
                    self.dispatcher.deliver(
                        shared,
                        PeerEvent::TrackStatus {
                            receiver_index,
                            enabled,
                        },
                    );
                }
                SessionEvent::Audio(pkt) => {
                    if let Some(sink) = entry.sinks.audio.as_mut() {
                        sink(pkt);
                    }
                }
                SessionEvent::Video(pkt) => {
                    if let Some(sink) = entry.sinks.video.as_mut() {
                        sink(pkt);
                    }
                }
                SessionEvent::KeyframeRequested => {
                    if let Some(hook) = entry.sinks.keyframe.as_mut() {
                        hook();
                    }
                }
            }
        }
        if entry.session.is_finished() {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        let Some(mut entry) = self.entries[slot].take() else {
            return;
        };
        for (sock, _) in entry.sockets.iter_mut() {
            let _ = self.poll.registry().deregister(sock);
        }
        self.srflx_forget(slot, &entry.sockets);
        if entry.shared.state() != PeerState::Closed {
            entry.shared.set_state(PeerState::Closed);
        }
        self.by_id.remove(&entry.shared.id);
        self.demux.remove_peer(slot);
        self.free.push(slot);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Closes every live session with goodbyes and sends them; returns how many.
    fn close_all(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for slot in 0..self.entries.len() {
            if let Some(e) = self.entries[slot].as_mut() {
                if e.session.state() != PeerState::Closed {
                    n += 1;
                }
                e.session.close(now);
            }
            self.flush(slot);
        }
        n
    }

    fn shutdown(&mut self) {
        self.close_all(Instant::now());
    }
}
