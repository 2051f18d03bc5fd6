//! The sans-IO audio-out queue and clock of one peer: `AudioPacer`.
//! Owns the queued PCM, write completion tracking and the drift-free packet schedule; the
//! caller passes the time in. Must not encode, sleep, or read the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Most audio that may wait in the queue; past it writes get `WouldBlock`.
pub const MAX_QUEUED: Duration = Duration::from_secs(10);

/// A late caller gets at most this many packets back to back; older slots are skipped.
const MAX_BURST: u64 = 3;

/// RTP clock rate of Opus.
const RTP_RATE: u64 = 48000;

/// Identifies one [`AudioPacer::write`], so its caller can wait for it to be played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// One packet's worth of audio, due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Interleaved PCM at the app rate, exactly one packet long.
    pub pcm: Vec<i16>,
    /// RTP timestamp in 48 kHz units: slot number × packet duration.
    pub rtp_time: u64,
    /// Whether this packet is only silence made up by the pacer.
    pub silence: bool,
    /// Writes whose last sample is in this packet, oldest first.
    pub completed: Vec<WriteId>,
}

/// Queues app audio and releases it one packet at a time on a drift-free real-time schedule.
#[derive(Debug)]
pub struct AudioPacer {
    rate: u32,
    channels: u16,
    units: u32,
    auto_silence: bool,
    /// Interleaved samples per 10 ms and per packet.
    chunk_len: usize,
    packet_len: usize,
    packet_dur: Duration,
    queue: VecDeque<i16>,
    /// Absolute sample positions: everything ever written, and everything consumed or cleared.
    written: u64,
    consumed: u64,
    /// Pending writes and the absolute position their last sample ends at.
    writes: VecDeque<(WriteId, u64)>,
    next_id: u64,
    max_queued: usize,
    start: Option<Instant>,
    /// Index of the next slot in the schedule `start + slot * packet_dur`.
    slot: u64,
    skipped: u64,
    dropped_samples: u64,
    spare: Vec<Vec<i16>>,
}

impl AudioPacer {
    /// A pacer for `channels` (1 or 2) at `app_rate` Hz, sending packets of
    /// `packet_10ms_units` × 10 ms (1..=6; 2 is the usual 20 ms). With `auto_silence`, an empty
    /// queue yields silence packets; without it, nothing.
    pub fn new(
        app_rate: u32,
        channels: u16,
        packet_10ms_units: u32,
        auto_silence: bool,
    ) -> Result<Self> {
        if app_rate == 0 || !app_rate.is_multiple_of(100) || app_rate > 192_000 {
            return Err(Error::invalid(format!(
                "audio-out rate must be a multiple of 100 Hz up to 192000, got {app_rate}"
            )));
        }
        if channels != 1 && channels != 2 {
            return Err(Error::invalid(format!(
                "audio-out channels must be 1 or 2, got {channels}"
            )));
        }
        if !(1..=6).contains(&packet_10ms_units) {
            return Err(Error::invalid(format!(
                "audio-out packet size must be 1..=6 units of 10 ms, got {packet_10ms_units}"
            )));
        }
        let chunk_len = (app_rate / 100) as usize * channels as usize;
        Ok(Self {
            rate: app_rate,
            channels,
            units: packet_10ms_units,
            auto_silence,
            chunk_len,
            packet_len: chunk_len * packet_10ms_units as usize,
            packet_dur: Duration::from_millis(10 * packet_10ms_units as u64),
            queue: VecDeque::new(),
            written: 0,
            consumed: 0,
            writes: VecDeque::new(),
            next_id: 0,
            max_queued: chunk_len * (MAX_QUEUED.as_millis() / 10) as usize,
            start: None,
            slot: 0,
            skipped: 0,
            dropped_samples: 0,
            spare: Vec::new(),
        })
    }

    /// The app sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The duration of one packet.
    pub fn packet_duration(&self) -> Duration {
        self.packet_dur
    }

    /// The packet duration in 48 kHz RTP units.
    pub fn packet_duration_48k(&self) -> u32 {
        (RTP_RATE / 100) as u32 * self.units
    }

    /// Audio waiting to be sent.
    pub fn queued(&self) -> Duration {
        Duration::from_millis((self.queue.len() / self.chunk_len) as u64 * 10)
    }

    /// Schedule slots skipped so far because the caller polled too late.
    pub fn skipped_slots(&self) -> u64 {
        self.skipped
    }

    /// Queued samples (all channels) dropped with skipped slots.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Queues interleaved `pcm`, which must be a whole, non-zero number of 10 ms.
    pub fn write(&mut self, pcm: &[i16]) -> Result<WriteId> {
        if pcm.is_empty() || !pcm.len().is_multiple_of(self.chunk_len) {
            return Err(Error::invalid(format!(
                "audio write of {} samples is not a non-zero multiple of {} \
                 (10 ms at {} Hz, {} channel(s))",
                pcm.len(),
                self.chunk_len,
                self.rate,
                self.channels
            )));
        }
        if pcm.len() > self.max_queued {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("audio write longer than {MAX_QUEUED:?}"),
            ));
        }
        if self.queue.len() + pcm.len() > self.max_queued {
            return Err(Error::new(
                ErrorKind::WouldBlock,
                format!("more than {MAX_QUEUED:?} of audio is queued"),
            ));
        }
        self.queue.extend(pcm.iter().copied());
        self.written += pcm.len() as u64;
        let id = WriteId(self.next_id);
        self.next_id += 1;
        self.writes.push_back((id, self.written));
        Ok(id)
    }

    /// Drops everything queued (barge-in) and returns the writes that will never complete.
    pub fn clear(&mut self) -> Vec<WriteId> {
        self.queue.clear();
        self.consumed = self.written;
        self.writes.drain(..).map(|(id, _)| id).collect()
    }

    /// When the next packet is due; `None` until the first [`AudioPacer::poll`] starts the
    /// clock (poll at once then).
    pub fn next_due(&self) -> Option<Instant> {
        self.start.map(|s| self.due(s, self.slot))
    }

    /// Hands back a packet's buffer for reuse.
    pub fn recycle(&mut self, mut pcm: Vec<i16>) {
        if self.spare.len() < 2 {
            pcm.clear();
            self.spare.push(pcm);
        }
    }

    fn due(&self, start: Instant, slot: u64) -> Instant {
        // Multiply from the start every time so rounding never accumulates into drift.
        let nanos = (self.packet_dur.as_nanos() as u64).saturating_mul(slot);
        start + Duration::from_nanos(nanos)
    }

    /// The next packet if it is due at `now`. Returns `None` when not yet due, or when the
    /// queue is empty and auto-silence is off (that slot passes unsent, so the RTP time keeps
    /// following the wall clock).
    pub fn poll(&mut self, now: Instant) -> Option<Packet> {
        let start = *self.start.get_or_insert(now);
        let due = self.due(start, self.slot);
        if now < due {
            return None;
        }
        let late = ((now - due).as_nanos() / self.packet_dur.as_nanos()) as u64;
        if late >= MAX_BURST {
            let skip = late - (MAX_BURST - 1);
            self.slot += skip;
            self.skipped += skip;
            // The audio of skipped slots is dropped with them: keeping it would delay
            // everything after a stall for the rest of the session.
            let drop = (skip as usize * self.packet_len).min(self.queue.len());
            self.queue.drain(..drop);
            self.consumed += drop as u64;
            self.dropped_samples += drop as u64;
        }
        if self.queue.is_empty() && !self.auto_silence {
            // Every slot up to now passes with nothing to send.
            let elapsed = ((now - start).as_nanos() / self.packet_dur.as_nanos()) as u64;
            self.slot = self.slot.max(elapsed + 1);
            return None;
        }
        let slot = self.slot;
        self.slot += 1;
        let mut pcm = self.spare.pop().unwrap_or_default();
        let take = self.packet_len.min(self.queue.len());
        pcm.extend(self.queue.drain(..take));
        // A partial packet at the end of the queue is padded: the deadline has come.
        pcm.resize(self.packet_len, 0);
        self.consumed += take as u64;
        let mut completed = Vec::new();
        while let Some(&(id, end)) = self.writes.front() {
            if end > self.consumed {
                break;
            }
            completed.push(id);
            self.writes.pop_front();
        }
        Some(Packet {
            pcm,
            rtp_time: slot * self.packet_duration_48k() as u64,
            silence: take == 0,
            completed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ten_minutes_jittered_is_exact_and_drift_free() {
        let rate = 24000;
        let mut p = AudioPacer::new(rate, 1, 2, true).unwrap();
        let mut rng = Lcg(42);
        let t0 = Instant::now();
        let total_chunks = 10 * 60 * 100; // 10 minutes of 10 ms chunks
        let mut written_chunks = 0;
        let mut ids = Vec::new();
        let mut completed = Vec::new();
        let mut audio_packets = 0u64;
        let mut n = 0u64;
        let mut now = t0;
        let mut last_emit = t0;
        while audio_packets < total_chunks / 2 {
            // Keep ~0.5 s queued, written in random whole-10 ms pieces.
            while written_chunks < total_chunks && p.queued() < Duration::from_millis(500) {
                let k = (1 + rng.below(25)).min(total_chunks - written_chunks);
                let pcm = vec![1i16; 240 * k as usize];
                ids.push(p.write(&pcm).unwrap());
                written_chunks += k;
            }
            // Poll sometimes early, mostly a little late.
            let due = p.next_due().unwrap_or(now);
            now = if rng.below(10) == 0 {
                due.checked_sub(3 * MS).unwrap_or(due).max(now)
            } else {
                due + MS * rng.below(15) as u32
            };
            while let Some(pkt) = p.poll(now) {
                assert!(!pkt.silence, "queue never runs dry in this test");
                assert_eq!(pkt.rtp_time, n * 960);
                assert_eq!(pkt.pcm.len(), 480);
                completed.extend(pkt.completed.iter().copied());
                p.recycle(pkt.pcm);
                n += 1;
                audio_packets += 1;
                last_emit = now;
            }
        }
        assert_eq!(audio_packets, 30_000);
        assert_eq!(p.skipped_slots(), 0);
        assert_eq!(completed, ids, "every write completes, in order");
        // The last packet went out within a packet of its ideal time: no drift.
        let ideal = t0 + Duration::from_millis(20) * (n as u32 - 1);
        assert!(last_emit >= ideal && last_emit - ideal < Duration::from_millis(20));
        assert_eq!(
            p.poll(now + Duration::from_millis(20)).map(|p| p.silence),
            Some(true)
        );
    }

    #[test]
    fn wrong_sizes_rejected_with_the_expected_multiple() {
        let mut p = AudioPacer::new(16000, 2, 2, true).unwrap();
        let e = p.write(&[0; 100]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("320"), "{}", e.message());
        assert!(p.write(&[]).is_err());
        assert!(p.write(&[0; 320]).is_ok());
        assert!(AudioPacer::new(44110, 1, 2, true).is_err());
        assert!(AudioPacer::new(48000, 3, 2, true).is_err());
        assert!(AudioPacer::new(48000, 1, 0, true).is_err());
        assert!(AudioPacer::new(48000, 1, 7, true).is_err());
    }

    #[test]
    fn queue_limit_gives_would_block() {
        let mut p = AudioPacer::new(8000, 1, 2, false).unwrap();
        let second = vec![0i16; 8000];
        for _ in 0..10 {
            p.write(&second).unwrap();
        }
        assert_eq!(p.write(&[0; 80]).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(
            p.write(&vec![0; 8000 * 11]).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        p.clear();
        assert!(p.write(&second).is_ok());
    }

    #[test]
    fn clear_drops_within_one_packet() {
        let t0 = Instant::now();
        let mut p = AudioPacer::new(48000, 1, 2, true).unwrap();
        let a = p.write(&vec![5; 4800]).unwrap();
        let b = p.write(&vec![5; 4800]).unwrap();
        let first = p.poll(t0).unwrap();
        assert!(!first.silence && first.completed.is_empty());
        assert_eq!(p.clear(), vec![a, b]);
        let next = p.poll(t0 + Duration::from_millis(20)).unwrap();
        assert!(next.silence && next.pcm.iter().all(|&s| s == 0));
        assert_eq!(next.rtp_time, 960);
        assert_eq!(p.queued(), Duration::ZERO);
    }

    #[test]
    fn partial_packet_is_padded_and_completes() {
        let t0 = Instant::now();
        let mut p = AudioPacer::new(16000, 1, 2, false).unwrap();
        let id = p.write(&[7; 160]).unwrap(); // 10 ms into a 20 ms packet
        let pkt = p.poll(t0).unwrap();
        assert_eq!(&pkt.pcm[..160], &[7; 160]);
        assert!(pkt.pcm[160..].iter().all(|&s| s == 0));
        assert_eq!(pkt.completed, vec![id]);
        assert!(!pkt.silence);
        // A write that arrives before the deadline fills the packet instead.
        let a = p.write(&[1; 160]).unwrap();
        assert!(p.poll(t0 + Duration::from_millis(10)).is_none());
        let b = p.write(&[2; 160]).unwrap();
        let pkt = p.poll(t0 + Duration::from_millis(20)).unwrap();
        assert_eq!(pkt.completed, vec![a, b]);
        assert_eq!(pkt.pcm[159..161], [1, 2]);
    }

    #[test]
    fn without_auto_silence_rtp_follows_wall_time() {
        let t0 = Instant::now();
        let mut p = AudioPacer::new(48000, 1, 2, false).unwrap();
        assert!(p.poll(t0).is_none());
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(20)));
        assert!(p.poll(t0 + Duration::from_millis(500)).is_none());
        p.write(&[1; 960]).unwrap();
        let due = p.next_due().unwrap();
        assert!(due > t0 + Duration::from_millis(500));
        assert!(due <= t0 + Duration::from_millis(520));
        let pkt = p.poll(due).unwrap();
        assert_eq!(pkt.rtp_time, 26 * 960);
    }

    #[test]
    fn late_caller_bursts_at_most_three_then_skips() {
        let t0 = Instant::now();
        let mut p = AudioPacer::new(48000, 1, 2, true).unwrap();
        p.write(&vec![1; 48000]).unwrap();
        assert_eq!(p.poll(t0).unwrap().rtp_time, 0);
        let late = t0 + Duration::from_millis(1000);
        let burst: Vec<Packet> = std::iter::from_fn(|| p.poll(late)).collect();
        assert_eq!(burst.len(), MAX_BURST as usize);
        // Slots 48..=50 are the last three due at t0 + 1 s.
        let rtps: Vec<u64> = burst.iter().map(|p| p.rtp_time / 960).collect();
        assert_eq!(rtps, vec![48, 49, 50]);
        assert_eq!(p.skipped_slots(), 47);
        // The audio of the skipped slots went with them: no standing delay after a stall.
        assert_eq!(p.dropped_samples(), 47 * 960);
        assert_eq!(p.queued(), Duration::ZERO);
        assert!(
            burst.iter().any(|b| !b.completed.is_empty()),
            "the write completed"
        );
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(1020)));
    }

    #[test]
    fn ten_ms_packets_and_stereo() {
        let t0 = Instant::now();
        let mut p = AudioPacer::new(44100, 2, 1, true).unwrap();
        assert_eq!(p.packet_duration_48k(), 480);
        p.write(&vec![3; 882 * 3]).unwrap();
        for k in 0..3u64 {
            let pkt = p.poll(t0 + Duration::from_millis(10) * k as u32).unwrap();
            assert_eq!(pkt.pcm.len(), 882);
            assert_eq!(pkt.rtp_time, k * 480);
            assert_eq!(pkt.completed.len(), usize::from(k == 2));
        }
    }
}
