//! Per-peer audio pipes between the I/O thread, the worker pool and the app, and the
//! audio clock that paces output. Codec work runs here on workers, never on the I/O thread.
//!
//! In: I/O thread → bounded inbox → worker (decode, conceal, resample) → frame ring → app.
//! Out: app → pacer queue → clock marks due → worker (encode) → I/O command → wire.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use tracing::debug;

use super::io_loop::{Command, IoHandle};
use super::workers::{Job, Workers};
use crate::config::PeerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::media::audio::{AudioReceiver, AudioSender, FrameRing};
use crate::session::AudioPacket;

/// Audio counters of one peer. Every drop anywhere in the audio path is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Input frames dropped because the app did not read (oldest first).
    pub in_frames_dropped: u64,
    /// Mic packets dropped because the workers fell behind.
    pub in_packets_dropped: u64,
    /// Mic packets decoded.
    pub in_packets_decoded: u64,
    /// Mic packets declared lost.
    pub in_packets_lost: u64,
    /// Mic packets that came too late or twice.
    pub in_packets_late: u64,
    /// Frames concealed (PLC).
    pub in_frames_concealed: u64,
    /// Frames recovered from in-band FEC.
    pub in_frames_fec: u64,
    /// Output packets handed to the network.
    pub out_packets_sent: u64,
    /// Output packets dropped because the I/O thread's queue was full.
    pub out_packets_dropped: u64,
    /// Output audio queued and not yet sent, in ms.
    pub out_queued_ms: u64,
}

/// Mic packets waiting for a worker per peer (1.3 s of 20 ms packets); oldest kept.
const INBOX: usize = 64;

/// The audio-in pipe of one peer.
pub(crate) struct AudioIn {
    tx: Sender<AudioPacket>,
    rx: Receiver<AudioPacket>,
    scheduled: AtomicBool,
    receiver: Mutex<AudioReceiver>,
    pub ring: FrameRing,
    pub packets_dropped: AtomicU64,
}

impl AudioIn {
    pub fn new(cfg: &PeerConfig) -> Result<Arc<AudioIn>> {
        let (tx, rx) = bounded(INBOX);
        let frames = (cfg.audio_in_buffer_ms / 20).max(1) as usize;
        Ok(Arc::new(AudioIn {
            tx,
            rx,
            scheduled: AtomicBool::new(false),
            receiver: Mutex::new(AudioReceiver::new(
                cfg.audio_in_sample_rate,
                cfg.audio_in_channels,
            )?),
            ring: FrameRing::new(frames),
            packets_dropped: AtomicU64::new(0),
        }))
    }

    /// Adds this pipe's counters to `s`.
    pub fn fill_stats(&self, s: &mut AudioStats) {
        let r = self.receiver.lock().stats();
        s.in_frames_dropped = self.ring.dropped();
        s.in_packets_dropped = self.packets_dropped.load(Ordering::Relaxed);
        s.in_packets_decoded = r.decoded;
        s.in_packets_lost = r.lost;
        s.in_packets_late = r.late;
        s.in_frames_concealed = r.concealed;
        s.in_frames_fec = r.fec_recovered;
    }

    /// Called on the I/O thread for each mic packet: queue it and wake a worker.
    pub fn push(self: &Arc<Self>, pkt: AudioPacket, workers: &Workers) {
        if self.tx.try_send(pkt).is_err() {
            self.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if !self.scheduled.swap(true, Ordering::AcqRel)
            && !workers.submit(Job::AudioIn(self.clone()))
        {
            self.scheduled.store(false, Ordering::Release);
        }
    }

    /// Worker side: decode everything queued, in order.
    pub fn run(&self) {
        self.scheduled.store(false, Ordering::Release);
        let mut rx = self.receiver.lock();
        while let Ok(pkt) = self.rx.try_recv() {
            let ring = &self.ring;
            let spare = ring.take_buffer();
            if spare.capacity() > 0 {
                rx.recycle(spare);
            }
            rx.handle_packet(pkt.seq, pkt.rtp_time, &pkt.payload, &mut |frame| {
                ring.push(frame);
            });
        }
    }
}

/// The audio-out pipe of one peer.
pub(crate) struct AudioOut {
    peer_id: u64,
    io: IoHandle,
    sender: Mutex<AudioSender>,
    /// One past the highest write id whose audio has been consumed (or cleared).
    done: Mutex<u64>,
    done_cv: Condvar,
    scheduled: AtomicBool,
    /// When the clock should run this pipe next, in ns since the clock's epoch.
    next_due: AtomicU64,
    packet_ns: u64,
    closed: AtomicBool,
    pub packets_sent: AtomicU64,
    pub packets_dropped: AtomicU64,
}

impl AudioOut {
    pub fn new(cfg: &PeerConfig, peer_id: u64, io: IoHandle) -> Result<Arc<AudioOut>> {
        let sender = AudioSender::new(
            cfg.audio_out_sample_rate,
            cfg.audio_out_channels,
            cfg.audio_out_10ms_chunks,
            cfg.audio_out_auto_silence,
            cfg.opus_bitrate,
            cfg.opus_complexity.min(10) as u8,
            cfg.opus_fec,
        )?;
        Ok(Arc::new(AudioOut {
            peer_id,
            io,
            sender: Mutex::new(sender),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
            scheduled: AtomicBool::new(false),
            next_due: AtomicU64::new(0),
            packet_ns: u64::from(cfg.audio_out_10ms_chunks) * 10_000_000,
            closed: AtomicBool::new(false),
            packets_sent: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
        }))
    }

    /// Queues PCM; with a timeout, waits until its last sample has been sent.
    pub fn write(&self, pcm: &[i16], wait: Option<Duration>) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let id = self.sender.lock().write(pcm)?.0;
        let Some(wait) = wait else {
            return Ok(());
        };
        let deadline = Instant::now() + wait;
        let mut done = self.done.lock();
        while *done <= id {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed());
            }
            if self.done_cv.wait_until(&mut done, deadline).timed_out() && *done <= id {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the written audio was not consumed within the timeout (it stays queued)",
                ));
            }
        }
        Ok(())
    }

    /// Drops everything queued (barge-in); blocked writers return.
    pub fn clear(&self) {
        let ids = self.sender.lock().clear();
        self.mark_done(ids.iter().map(|w| w.0).max());
    }

    /// Audio queued and not yet sent.
    pub fn queued(&self) -> Duration {
        self.sender.lock().queued()
    }

    /// Adds this pipe's counters to `s`.
    pub fn fill_stats(&self, s: &mut AudioStats) {
        s.out_packets_sent = self.packets_sent.load(Ordering::Relaxed);
        s.out_packets_dropped = self.packets_dropped.load(Ordering::Relaxed);
        s.out_queued_ms = self.queued().as_millis() as u64;
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.sender.lock().clear();
        let _g = self.done.lock();
        self.done_cv.notify_all();
    }

    fn mark_done(&self, id: Option<u64>) {
        if let Some(id) = id {
            let mut d = self.done.lock();
            if id + 1 > *d {
                *d = id + 1;
            }
            self.done_cv.notify_all();
        }
    }

    /// Worker side: encode and hand over every packet that is due.
    pub fn run(&self) {
        let now = Instant::now();
        let mut sender = self.sender.lock();
        loop {
            match sender.poll(now) {
                Ok(Some(p)) => {
                    self.mark_done(p.completed.iter().map(|w| w.0).max());
                    let sent = self.io.try_send(Command::AudioOut {
                        id: self.peer_id,
                        rtp_time: p.rtp_time,
                        data: p.data,
                    });
                    let counter = if sent {
                        &self.packets_sent
                    } else {
                        &self.packets_dropped
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(e) => {
                    debug!("audio encode failed: {e}");
                    break;
                }
            }
        }
        if let Some(due) = sender.next_due() {
            self.next_due
                .store(clock_ns(due), Ordering::Release);
        }
        drop(sender);
        self.scheduled.store(false, Ordering::Release);
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn clock_ns(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// The audio clock: one thread per runtime that hands due output pipes to workers.
#[derive(Clone)]
pub(crate) struct AudioClock {
    tx: Sender<Option<Arc<AudioOut>>>,
}

impl AudioClock {
    pub fn start(workers: Workers) -> Result<(AudioClock, JoinHandle<()>)> {
        let (tx, rx) = bounded(1024);
        let t = std::thread::Builder::new()
            .name("swrtc-audio-clock".into())
            .spawn(move || clock_loop(rx, workers))?;
        Ok((AudioClock { tx }, t))
    }

    pub fn register(&self, pipe: Arc<AudioOut>) -> Result<()> {
        self.tx
            .send(Some(pipe))
            .map_err(|_| Error::internal("the audio clock has stopped"))
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(None);
    }
}

fn clock_loop(rx: Receiver<Option<Arc<AudioOut>>>, workers: Workers) {
    let mut pipes: Vec<Arc<AudioOut>> = Vec::new();
    loop {
        let now = clock_ns(Instant::now());
        pipes.retain(|p| !p.closed.load(Ordering::Acquire));
        let mut next = u64::MAX;
        for p in &pipes {
            let due = p.next_due.load(Ordering::Acquire);
            if due <= now {
                if !p.scheduled.swap(true, Ordering::AcqRel) {
                    // Until the worker stores the real slot, expect the next one.
                    p.next_due.store(due.max(now) + p.packet_ns, Ordering::Release);
                    if !workers.submit(Job::AudioOut(p.clone())) {
                        p.scheduled.store(false, Ordering::Release);
                    }
                }
                next = next.min(now + p.packet_ns);
            } else {
                next = next.min(due);
            }
        }
        let wait = Duration::from_nanos(next.saturating_sub(clock_ns(Instant::now())))
            .min(Duration::from_millis(20));
        match rx.recv_timeout(wait) {
            Ok(Some(p)) => pipes.push(p),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}
