//! Per-peer audio pipes between the I/O thread, the worker pool and the app, and the
//! audio clock that paces output. Codec work runs here on workers, never on the I/O thread.
//!
//! In: I/O thread → bounded inbox → worker (decode, conceal, resample) → frame ring → app.
//! Out: app → pacer queue → clock marks due → worker (encode) → I/O command → wire.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use tracing::debug;

use super::command::{Command, IoHandle};
use super::sink::Sink;
use super::workers::{Lane, Work, Workers};
use crate::config::PeerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::media::audio::{AudioFrame, AudioReceiver, AudioSender, FrameRing};
use crate::session::AudioPacket;

/// Audio counters of one peer. Every drop anywhere in the audio path is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Mic packets that arrived after a newer one and still played in order (reordered on
    /// the path; RED-recovered packets come from the transport already in order).
    pub in_packets_reordered: u64,
    /// Interarrival jitter of the mic packets (RFC 3550), in µs.
    pub in_jitter_us: u64,
    /// How long a gap in the mic packets is waited for before it is concealed, in ms:
    /// adapts to the jitter and reordering measured on the path.
    pub in_reorder_wait_ms: u64,
    /// Output packets handed to the network.
    pub out_packets_sent: u64,
    /// Output packets dropped because the I/O thread's queue was full.
    pub out_packets_dropped: u64,
    /// Output audio queued and not yet sent, in ms.
    pub out_queued_ms: u64,
    /// Output packet slots skipped because the sender ran late (a stall); their audio
    /// was dropped so that latency does not grow for the rest of the session.
    pub out_slots_skipped: u64,
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
    /// With a frame callback installed, frames go to it instead of the ring.
    pub sink: Sink<AudioFrame>,
    /// Frames decoded in one run, handed to the callback after the decoder's lock is
    /// released (so the callback may call `audio_stats`). Only touched under the sink gate.
    batch: Mutex<Vec<AudioFrame>>,
    pub packets_dropped: AtomicU64,
    /// When the receiver's held gap runs out of wait, in clock ns (`u64::MAX`: none), so the
    /// clock runs the pipe then even if no packet arrives.
    deadline: AtomicU64,
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
            sink: Sink::default(),
            batch: Mutex::new(Vec::with_capacity(8)),
            packets_dropped: AtomicU64::new(0),
            deadline: AtomicU64::new(u64::MAX),
        }))
    }

    /// Adds this pipe's counters to `s`.
    pub fn fill_stats(&self, s: &mut AudioStats) {
        let receiver = self.receiver.lock();
        let r = receiver.stats();
        s.in_jitter_us = receiver.jitter().as_micros() as u64;
        s.in_reorder_wait_ms = receiver.reorder_wait().as_millis() as u64;
        s.in_packets_reordered = r.reordered;
        drop(receiver);
        s.in_frames_dropped = self.ring.dropped();
        s.in_packets_dropped = self.packets_dropped.load(Ordering::Relaxed);
        s.in_packets_decoded = r.decoded;
        s.in_packets_lost = r.lost;
        s.in_packets_late = r.late;
        s.in_frames_concealed = r.concealed;
        s.in_frames_fec = r.fec_recovered;
    }

    /// Called on the I/O thread for each mic packet: queue it. The audio clock hands the
    /// pipe to a worker on its next tick (≤ 5 ms), so workers wake once per tick, not
    /// once per packet.
    pub fn push(&self, pkt: AudioPacket) {
        if self.tx.try_send(pkt).is_err() {
            self.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Clock: submit this pipe if it has packets or a gap's wait ran out by `horizon`, and
    /// it is not queued already.
    fn tick(self: &Arc<Self>, workers: &Workers, horizon: u64) {
        if (!self.rx.is_empty() || self.deadline.load(Ordering::Acquire) <= horizon)
            && !self.scheduled.swap(true, Ordering::AcqRel)
            && !workers.submit(Lane::Audio, self.clone())
        {
            self.scheduled.store(false, Ordering::Release);
        }
    }

    /// Worker side: decode everything queued, in order, into the ring or the callback.
    pub fn run(&self) {
        self.scheduled.store(false, Ordering::Release);
        if let Some(gate) = self.sink.open() {
            let mut batch = self.batch.lock();
            {
                let mut rx = self.receiver.lock();
                self.decode_queued(&mut rx, &mut |frame| batch.push(frame));
            }
            let mut delivering = true;
            for frame in batch.iter() {
                delivering = delivering && gate.deliver(frame);
                // Removed from inside itself: the rest of the batch goes to the ring.
                if !delivering {
                    self.ring.push(frame.clone());
                }
            }
            let mut rx = self.receiver.lock();
            for frame in batch.drain(..) {
                rx.recycle(frame.samples);
            }
            return;
        }
        let mut rx = self.receiver.lock();
        let spare = self.ring.take_buffer();
        if spare.capacity() > 0 {
            rx.recycle(spare);
        }
        let ring = &self.ring;
        self.decode_queued(&mut rx, &mut |frame| {
            ring.push(frame);
        });
    }

    /// Feeds every queued packet to the receiver, then lets it declare the gaps whose wait
    /// ran out (after the whole batch, so a packet recovered right behind its carrier is in
    /// time), and notes when the next one runs out.
    fn decode_queued(&self, rx: &mut AudioReceiver, out: &mut impl FnMut(AudioFrame)) {
        while let Ok(pkt) = self.rx.try_recv() {
            rx.handle_packet(pkt.seq, pkt.rtp_time, &pkt.payload, pkt.arrival, out);
        }
        rx.poll(Instant::now(), out);
        let deadline = rx.next_deadline().map_or(u64::MAX, clock_ns);
        self.deadline.store(deadline, Ordering::Release);
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
        let sender = self.sender.lock();
        s.out_queued_ms = sender.queued().as_millis() as u64;
        s.out_slots_skipped = sender.pacer().skipped_slots();
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

    /// Worker side: encode and hand over every packet due by the end of the current
    /// clock tick (so a packet leaves at most one tick early, never late by the tick).
    pub fn run(&self) {
        let now = Instant::now() + TICK;
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
            self.next_due.store(clock_ns(due), Ordering::Release);
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

/// The clock's period. Every pipe is looked at on this grid, so one wake-up of the clock
/// and at most one per worker serve all sessions each tick (per-packet wake-ups cost
/// ~40 µs each on a loaded machine; 100 per session-second adds up).
pub(crate) const TICK: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Registry {
    inputs: Vec<Arc<AudioIn>>,
    outputs: Vec<Arc<AudioOut>>,
    stop: bool,
}

/// The audio clock: one thread per runtime that, every tick, hands due output pipes and
/// input pipes with queued packets to the workers.
#[derive(Clone)]
pub(crate) struct AudioClock {
    reg: Arc<Mutex<Registry>>,
}

impl AudioClock {
    pub fn start(workers: Workers) -> Result<(AudioClock, JoinHandle<()>)> {
        let reg = Arc::new(Mutex::new(Registry::default()));
        let r = reg.clone();
        let t = std::thread::Builder::new()
            .name("swrtc-audio-clock".into())
            .spawn(move || clock_loop(r, workers))?;
        Ok((AudioClock { reg }, t))
    }

    pub fn register_output(&self, pipe: Arc<AudioOut>) {
        self.reg.lock().outputs.push(pipe);
    }

    pub fn register_input(&self, pipe: Arc<AudioIn>) {
        self.reg.lock().inputs.push(pipe);
    }

    pub fn shutdown(&self) {
        self.reg.lock().stop = true;
    }
}

fn clock_loop(reg: Arc<Mutex<Registry>>, workers: Workers) {
    let mut inputs: Vec<Arc<AudioIn>> = Vec::new();
    let mut outputs: Vec<Arc<AudioOut>> = Vec::new();
    let mut next_tick = Instant::now();
    loop {
        {
            let mut r = reg.lock();
            if r.stop {
                return;
            }
            inputs.append(&mut r.inputs);
            outputs.append(&mut r.outputs);
        }
        inputs.retain(|p| !p.ring.is_closed());
        outputs.retain(|p| !p.closed.load(Ordering::Acquire));
        let now = clock_ns(Instant::now());
        for p in &inputs {
            p.tick(&workers, now);
        }
        let horizon = clock_ns(Instant::now() + TICK);
        for p in &outputs {
            if p.next_due.load(Ordering::Acquire) <= horizon
                && !p.scheduled.swap(true, Ordering::AcqRel)
                && !workers.submit(Lane::Audio, p.clone())
            {
                p.scheduled.store(false, Ordering::Release);
            }
        }
        // A fixed grid: the schedule does not drift with the time each tick takes.
        next_tick += TICK;
        let now = Instant::now();
        if next_tick <= now {
            next_tick = now + TICK;
        }
        std::thread::sleep(next_tick - now);
    }
}

impl Work for AudioIn {
    fn run(&self) {
        AudioIn::run(self)
    }
}

impl Work for AudioOut {
    fn run(&self) {
        AudioOut::run(self)
    }
}
