//! The sans-IO audio-in pipeline of one peer: reorder, Opus decode, conceal, resample, re-chunk.
//! Owns the decoder, the reorder window and the 20 ms output framing; driven by packet
//! arrival and by [`AudioReceiver::poll`] with the caller's time. Must not touch sockets,
//! clocks, threads or the frame ring.
//!
//! A gap in the sequence holds the newer packets for the adaptive reorder wait
//! ([`ReorderWait`]): a few ms on a clean path, so a loss costs one concealed frame and no
//! standing delay; longer when the path jitters and reorders. A packet that fills the gap in
//! time (reordered, or recovered from RED by the transport) is decoded in place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::jitter::ReorderWait;
use super::opus::{packet_has_fec, packet_samples, OpusDecoder, MAX_FRAME_SAMPLES_48K};
use super::resample::{opus_native_rate, Resampler};
use super::ring::AudioFrame;
use crate::error::{Error, Result};

/// Packets held while waiting for a missing one, whatever the wait: past this many the gap
/// is declared lost at once (bounds memory; 8 packets cover the longest wait at 10 ms each).
const MAX_HELD: usize = 8;

/// At most this many packets of a single gap are concealed; the rest are skipped so a long
/// outage does not turn into seconds of synthetic audio.
const MAX_CONCEAL_PACKETS: u64 = 5;

/// A sequence jump larger than this is a new stream position: resync without concealment.
const MAX_SEQ_JUMP: u64 = 50;

/// Output frame length: 20 ms, as the app-facing API promises.
const FRAME_MS: u32 = 20;

/// Counters for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets decoded (in order).
    pub decoded: u64,
    /// Packets that arrived after their slot was already played or concealed, or twice.
    pub late: u64,
    /// Packets declared lost.
    pub lost: u64,
    /// Frames synthesised by packet loss concealment.
    pub concealed: u64,
    /// Frames recovered from in-band FEC.
    pub fec_recovered: u64,
    /// Packets that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Jumps too large to conceal, after which decoding restarted at the new position.
    pub resyncs: u64,
    /// Packets that arrived after a newer one and still filled their gap in time.
    pub reordered: u64,
}

struct Held {
    rtp_time: u64,
    arrival: Instant,
    payload: Vec<u8>,
}

/// The most recent gap declared lost, to measure how late its packets turn up.
#[derive(Clone, Copy)]
struct LostGap {
    first: u64,
    end: u64,
    opened: Instant,
}

/// Turns the Opus packets of one audio track into continuous 20 ms frames at the app's rate.
pub struct AudioReceiver {
    app_rate: u32,
    channels: u16,
    decoder: OpusDecoder,
    resampler: Option<Resampler>,
    /// Next sequence number to decode; `None` before the first packet or after a resync.
    next_seq: Option<u64>,
    /// The 48 kHz RTP time where the last decoded packet ends.
    last_rtp_end: Option<u64>,
    /// Samples per channel (decoder rate) of the last decoded packet.
    last_frame: usize,
    held: BTreeMap<u64, Held>,
    wait: ReorderWait,
    /// The newest sequence number seen.
    highest_seq: Option<u64>,
    last_lost: Option<LostGap>,
    decoded: Vec<i16>,
    resampled: Vec<i16>,
    /// App-rate samples waiting to fill a 20 ms frame.
    pending: Vec<i16>,
    pts: u64,
    spare: Vec<Vec<i16>>,
    stats: ReceiverStats,
}

impl AudioReceiver {
    /// A receiver producing `app_channels` (1 or 2) at `app_rate` Hz. Opus-native rates are
    /// decoded directly; others are decoded at 48 kHz and resampled.
    pub fn new(app_rate: u32, app_channels: u16) -> Result<Self> {
        if !app_rate.is_multiple_of(1000 / FRAME_MS) {
            return Err(Error::invalid(format!(
                "audio-in rate must give whole 20 ms frames, got {app_rate} Hz"
            )));
        }
        let dec_rate = if opus_native_rate(app_rate) {
            app_rate
        } else {
            48000
        };
        let decoder = OpusDecoder::new(dec_rate, app_channels)?;
        let resampler = if dec_rate == app_rate {
            None
        } else {
            Some(Resampler::new(dec_rate, app_rate, app_channels)?)
        };
        let ch = app_channels as usize;
        Ok(Self {
            app_rate,
            channels: app_channels,
            decoder,
            resampler,
            next_seq: None,
            last_rtp_end: None,
            last_frame: dec_rate as usize / 50,
            held: BTreeMap::new(),
            wait: ReorderWait::default(),
            highest_seq: None,
            last_lost: None,
            decoded: vec![0; MAX_FRAME_SAMPLES_48K * dec_rate as usize / 48000 * ch],
            resampled: Vec::new(),
            pending: Vec::new(),
            pts: 0,
            spare: Vec::new(),
            stats: ReceiverStats::default(),
        })
    }

    /// The output sample rate.
    pub fn app_rate(&self) -> u32 {
        self.app_rate
    }

    /// The output channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The interarrival jitter measured on the path.
    pub fn jitter(&self) -> Duration {
        self.wait.jitter()
    }

    /// How long a gap currently holds newer packets before it is declared lost.
    pub fn reorder_wait(&self) -> Duration {
        self.wait.wait()
    }

    /// When [`Self::poll`] next has work: the held gap's deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.gap_opened().map(|at| at + self.wait.wait())
    }

    /// When the oldest open gap became visible: the first arrival among the held packets.
    fn gap_opened(&self) -> Option<Instant> {
        self.held.values().map(|h| h.arrival).min()
    }

    /// Declares lost every gap whose wait has run out by `now`, and emits what follows it.
    pub fn poll(&mut self, now: Instant, out: &mut impl FnMut(AudioFrame)) {
        while self.next_deadline().is_some_and(|d| d <= now) {
            self.declare_gap_lost(out);
        }
    }

    /// Samples per channel in each emitted frame.
    pub fn frame_samples(&self) -> usize {
        (self.app_rate / (1000 / FRAME_MS)) as usize
    }

    /// Hands back an emitted frame's buffer for reuse by later frames.
    pub fn recycle(&mut self, mut buf: Vec<i16>) {
        if self.spare.len() < 4 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Takes one RTP packet (`seq` extended sequence number, `rtp_time` extended 48 kHz
    /// timestamp, `arrival` when it came off the network) and calls `out` with every 20 ms
    /// frame that became ready. A gap waits for [`Self::poll`] (or for too many held packets):
    /// feed every packet that arrived together before polling, so a packet recovered right
    /// behind its carrier still fills its gap.
    pub fn handle_packet(
        &mut self,
        seq: u64,
        rtp_time: u64,
        payload: &[u8],
        arrival: Instant,
        out: &mut impl FnMut(AudioFrame),
    ) {
        if payload.is_empty() {
            // An empty payload is what some senders emit while muted; nothing to decode.
            return;
        }
        // Jitter is measured on packets that advance the sequence: a reordered or recovered
        // packet's lateness is reordering, measured against its gap below.
        if self
            .highest_seq
            .is_none_or(|h| seq > h || h - seq > MAX_SEQ_JUMP)
        {
            self.highest_seq = Some(seq);
            self.wait.on_arrival(arrival, rtp_time);
        }
        let Some(next) = self.next_seq else {
            self.decode_in_order(seq, rtp_time, payload, out);
            return;
        };
        if next.saturating_sub(seq) > MAX_SEQ_JUMP || seq.saturating_sub(next) > MAX_SEQ_JUMP {
            // Far outside the window either way: the sender restarted or skipped ahead.
            while !self.held.is_empty() {
                self.declare_gap_lost(out);
            }
            self.stats.resyncs += 1;
            self.last_rtp_end = None;
            self.decode_in_order(seq, rtp_time, payload, out);
            return;
        }
        if seq < next || self.held.contains_key(&seq) {
            self.stats.late += 1;
            if let Some(gap) = self.last_lost.filter(|g| (g.first..g.end).contains(&seq)) {
                // Lost by our wait, not by the path: wait longer next time.
                self.wait
                    .on_reordered(arrival.saturating_duration_since(gap.opened));
            }
            return;
        }
        if seq == next {
            if let Some(opened) = self.gap_opened() {
                self.stats.reordered += 1;
                self.wait
                    .on_reordered(arrival.saturating_duration_since(opened));
            }
            self.decode_in_order(seq, rtp_time, payload, out);
            self.drain_ready(out);
            return;
        }
        self.held.insert(
            seq,
            Held {
                rtp_time,
                arrival,
                payload: payload.to_vec(),
            },
        );
        if self.held.len() > MAX_HELD {
            self.declare_gap_lost(out);
        }
    }

    /// Decodes every held packet that is now next in sequence.
    fn drain_ready(&mut self, out: &mut impl FnMut(AudioFrame)) {
        while let Some(entry) = self.held.first_entry() {
            if Some(*entry.key()) != self.next_seq {
                break;
            }
            let (seq, held) = entry.remove_entry();
            self.decode_in_order(seq, held.rtp_time, &held.payload, out);
        }
    }

    /// Gives up on the packets missing before the oldest held one: conceals them, then decodes
    /// whatever is in sequence.
    fn declare_gap_lost(&mut self, out: &mut impl FnMut(AudioFrame)) {
        let Some(first) = self.held.keys().next().copied() else {
            return;
        };
        let lost = first.saturating_sub(self.next_seq.unwrap_or(first));
        if let (Some(next), Some(opened)) = (self.next_seq, self.gap_opened()) {
            self.last_lost = Some(LostGap {
                first: next,
                end: first,
                opened,
            });
        }
        if lost > 0 {
            if let Some(held) = self.held.get_mut(&first) {
                // Borrow the payload out for FEC while `self` is mutated, then put it back.
                let (rtp, payload) = (held.rtp_time, std::mem::take(&mut held.payload));
                self.conceal_gap(lost, rtp, &payload, out);
                if let Some(held) = self.held.get_mut(&first) {
                    held.payload = payload;
                }
            }
        }
        self.next_seq = Some(first);
        self.drain_ready(out);
    }

    /// Synthesises `lost` packets before the packet at `next_rtp`: PLC, and FEC from
    /// `next_payload` for the last one when it carries FEC.
    fn conceal_gap(
        &mut self,
        lost: u64,
        next_rtp: u64,
        next_payload: &[u8],
        out: &mut impl FnMut(AudioFrame),
    ) {
        self.stats.lost += lost;
        let dec_rate = self.decoder.sample_rate() as u64;
        let quantum = dec_rate / 400; // Opus frames are multiples of 2.5 ms
        let max = MAX_FRAME_SAMPLES_48K as u64 * dec_rate / 48000;
        // Prefer the timestamps' word on how long each lost packet was.
        let per_packet = self
            .last_rtp_end
            .and_then(|end| next_rtp.checked_sub(end))
            .map(|d| d * dec_rate / 48000 / lost)
            .filter(|&n| n > 0 && n <= max && n % quantum == 0)
            .unwrap_or(self.last_frame as u64) as usize;
        let count = lost.min(MAX_CONCEAL_PACKETS);
        for i in 0..count {
            let use_fec = i + 1 == count && packet_has_fec(next_payload);
            let result = if use_fec {
                self.decoder
                    .decode_fec(next_payload, &mut self.decoded, per_packet)
            } else {
                self.decoder.conceal(&mut self.decoded, per_packet)
            };
            match result {
                Ok(n) => {
                    if use_fec {
                        self.stats.fec_recovered += 1;
                    } else {
                        self.stats.concealed += 1;
                    }
                    self.emit_decoded(n, out);
                }
                Err(e) => tracing::debug!("audio concealment failed: {e}"),
            }
        }
        if lost > count {
            self.stats.resyncs += 1;
        }
    }

    fn decode_in_order(
        &mut self,
        seq: u64,
        rtp_time: u64,
        payload: &[u8],
        out: &mut impl FnMut(AudioFrame),
    ) {
        self.next_seq = Some(seq + 1);
        let dec_rate = self.decoder.sample_rate();
        let n = match self.decoder.decode(payload, &mut self.decoded) {
            Ok(n) => {
                self.stats.decoded += 1;
                n
            }
            Err(e) => {
                tracing::debug!(seq, "undecodable audio packet: {e}");
                self.stats.decode_errors += 1;
                let frame = packet_samples(payload, dec_rate).unwrap_or(self.last_frame);
                match self.decoder.conceal(&mut self.decoded, frame) {
                    Ok(n) => {
                        self.stats.concealed += 1;
                        n
                    }
                    Err(_) => return,
                }
            }
        };
        self.last_frame = n;
        self.last_rtp_end = Some(rtp_time + (n as u64 * 48000 / dec_rate as u64));
        self.emit_decoded(n, out);
    }

    /// Passes `n` decoded samples per channel through the resampler and re-chunks them.
    fn emit_decoded(&mut self, n: usize, out: &mut impl FnMut(AudioFrame)) {
        let samples = &self.decoded[..n * self.channels as usize];
        match &mut self.resampler {
            None => self.pending.extend_from_slice(samples),
            Some(rs) => {
                self.resampled.clear();
                if let Err(e) = rs.process(samples, &mut self.resampled) {
                    tracing::debug!("audio-in resampling failed: {e}");
                    return;
                }
                self.pending.extend_from_slice(&self.resampled);
            }
        }
        let per_channel = self.frame_samples();
        let frame_len = per_channel * self.channels as usize;
        let mut start = 0;
        while self.pending.len() - start >= frame_len {
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.extend_from_slice(&self.pending[start..start + frame_len]);
            start += frame_len;
            out(AudioFrame {
                samples: buf,
                sample_rate: self.app_rate,
                channels: self.channels,
                pts: self.pts,
            });
            self.pts += per_channel as u64;
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::super::jitter::{MAX_WAIT, MIN_WAIT};
    use super::super::opus::tests::{rms, sine, zero_cross_freq};
    use super::super::opus::{OpusEncoder, MAX_PACKET_BYTES};
    use super::*;

    /// A tiny deterministic generator (Numerical Recipes LCG), to avoid a rand dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next_f64(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `secs` of a 1 kHz tone as (seq, rtp, payload) packets of `ms` each, FEC on.
    fn packets(secs: usize, ms: usize) -> Vec<(u64, u64, Vec<u8>)> {
        let per = 48 * ms;
        let pcm = sine(48000, 1000.0, 48000 * secs, 0);
        let mut enc = OpusEncoder::new(48000, 1, 32_000, 5, true).unwrap();
        let mut buf = [0u8; MAX_PACKET_BYTES];
        pcm.chunks(per)
            .enumerate()
            .map(|(i, c)| {
                let n = enc.encode(c, &mut buf).unwrap();
                (
                    1000 + i as u64,
                    7_000_000 + (i * per) as u64,
                    buf[..n].to_vec(),
                )
            })
            .collect()
    }

    /// Drops ~`loss` of the packets and swaps a few neighbours.
    fn impair(
        mut pkts: Vec<(u64, u64, Vec<u8>)>,
        loss: f64,
        seed: u64,
    ) -> Vec<(u64, u64, Vec<u8>)> {
        let mut rng = Lcg(seed);
        // Keep the first packets so the stream starts cleanly.
        let head: Vec<_> = pkts.drain(..5).collect();
        let mut kept: Vec<_> = pkts
            .into_iter()
            .filter(|_| rng.next_f64() >= loss)
            .collect();
        for i in (10..kept.len().saturating_sub(1)).step_by(97) {
            kept.swap(i, i + 1);
        }
        head.into_iter().chain(kept).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `pkts` one every `every_ms` of virtual time in list order, polling at each
    /// arrival, then polls once more a second later.
    fn run_every(
        rx: &mut AudioReceiver,
        pkts: &[(u64, u64, Vec<u8>)],
        every_ms: u64,
    ) -> Vec<AudioFrame> {
        let t0 = Instant::now();
        let mut frames = Vec::new();
        let mut t = t0;
        for (i, (seq, rtp, p)) in pkts.iter().enumerate() {
            t = t0 + ms(i as u64 * every_ms);
            rx.handle_packet(*seq, *rtp, p, t, &mut |f| frames.push(f));
            rx.poll(t, &mut |f| frames.push(f));
        }
        rx.poll(t + ms(1000), &mut |f| frames.push(f));
        frames
    }

    fn run(rx: &mut AudioReceiver, pkts: &[(u64, u64, Vec<u8>)]) -> Vec<AudioFrame> {
        run_every(rx, pkts, 20)
    }

    fn check_stream(rate: u32, channels: u16, ms: usize) {
        let secs = 20;
        let pkts = impair(packets(secs, ms), 0.05, rate as u64 + ms as u64);
        let mut rx = AudioReceiver::new(rate, channels).unwrap();
        let frames = run_every(&mut rx, &pkts, ms as u64);
        let expected = secs * 50;
        let st = rx.stats();
        assert!(
            frames.len() * 100 >= expected * 99 && frames.len() <= expected,
            "{rate} Hz: {} frames, expected {expected}; {st:?}",
            frames.len()
        );
        assert!(st.lost > 0, "{st:?}");
        // libopus adds FEC only to some SILK/hybrid frames; 20 ms tone packets get a few.
        assert!(ms != 20 || st.fec_recovered > 0, "{st:?}");
        let per = rate as usize / 50;
        let mut mono = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                f.pts,
                (i * per) as u64,
                "pts must advance by exactly one frame"
            );
            assert_eq!(f.frames(), per);
            assert_eq!((f.sample_rate, f.channels), (rate, channels));
            mono.extend(f.samples.iter().step_by(channels as usize));
        }
        let steady = &mono[rate as usize / 5..];
        let freq = zero_cross_freq(steady, rate);
        assert!((freq - 1000.0).abs() < 20.0, "{rate} Hz: tone at {freq} Hz");
        // No gaps: apart from the frames around a concealed loss, every 20 ms carries the tone.
        let levels: Vec<f64> = steady.chunks(per).map(rms).collect();
        let low = levels.iter().filter(|&&r| r < 1000.0).count() as u64;
        assert!(
            low <= 2 * st.lost,
            "{rate} Hz: {low} weak frames for {} lost",
            st.lost
        );
    }

    #[test]
    fn loss_and_reorder_at_16k() {
        check_stream(16000, 1, 20);
    }

    #[test]
    fn loss_and_reorder_at_24k() {
        check_stream(24000, 1, 20);
    }

    #[test]
    fn loss_and_reorder_at_44k1_resampled() {
        check_stream(44100, 1, 20);
    }

    #[test]
    fn loss_and_reorder_at_48k() {
        check_stream(48000, 1, 20);
    }

    #[test]
    fn stereo_output() {
        check_stream(48000, 2, 20);
    }

    #[test]
    fn rechunks_10_40_60_ms_packets() {
        check_stream(16000, 1, 10);
        check_stream(16000, 1, 40);
        check_stream(24000, 1, 60);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let pkts = packets(1, 20);
        let t0 = Instant::now();
        let mut rx = AudioReceiver::new(48000, 1).unwrap();
        let n = std::cell::Cell::new(0);
        let mut count = |_f: AudioFrame| n.set(n.get() + 1);
        let at = |i: usize| t0 + ms(i as u64 * 20);
        for (i, (seq, rtp, p)) in pkts[..10].iter().enumerate() {
            rx.handle_packet(*seq, *rtp, p, at(i), &mut count);
        }
        let (seq, rtp, p) = &pkts[5];
        rx.handle_packet(*seq, *rtp, p, at(10), &mut count);
        let (seq, rtp, p) = &pkts[12];
        rx.handle_packet(*seq, *rtp, p, at(12), &mut count);
        rx.handle_packet(*seq, *rtp, p, at(12), &mut count);
        assert_eq!(rx.stats().late, 2);
        assert_eq!(n.get(), 10, "packets 10 and 11 are still awaited");
        assert_eq!(rx.next_deadline(), Some(at(12) + MIN_WAIT));
        rx.poll(at(12) + ms(1), &mut count);
        assert_eq!(n.get(), 10, "within the wait nothing is declared lost");
        // 10 arrives in time: it and the held 12 play, 11 stays missing until the wait ends.
        let (seq, rtp, p) = &pkts[10];
        rx.handle_packet(*seq, *rtp, p, at(12) + ms(2), &mut count);
        assert_eq!(n.get(), 11);
        assert_eq!(rx.stats().reordered, 1);
        rx.poll(at(12) + ms(2), &mut count);
        assert_eq!(n.get(), 11);
        rx.poll(at(13), &mut count);
        assert_eq!(n.get(), 13, "11 concealed once its wait ran out, then 12");
        assert_eq!(rx.stats().lost, 1);
        assert_eq!(rx.next_deadline(), None);
        // 11 turns up 30 ms after its gap opened: too late, and the wait grows to cover it.
        let (seq, rtp, p) = &pkts[11];
        rx.handle_packet(*seq, *rtp, p, at(12) + ms(30), &mut count);
        assert_eq!(rx.stats().late, 3);
        assert_eq!(rx.reorder_wait(), ms(35));
    }

    /// Frames emitted by each 5 ms tick of a virtual clock, for 20 ms packets that arrive
    /// `delay(i)` ms after they were sent; `None` delays are lost. Also feeds `extra(i)`
    /// packets right behind packet `i` (what RED recovery looks like).
    fn tick_run(
        rx: &mut AudioReceiver,
        pkts: &[(u64, u64, Vec<u8>)],
        delay: impl Fn(usize) -> Option<u64>,
        extra: impl Fn(usize) -> Option<usize>,
    ) -> Vec<(u64, usize)> {
        let t0 = Instant::now();
        let mut arrivals: Vec<(u64, usize)> = (0..pkts.len())
            .filter_map(|i| delay(i).map(|d| (i as u64 * 20 + d, i)))
            .collect();
        arrivals.sort();
        let mut emitted = 0;
        let mut per_tick = Vec::new();
        let mut next = 0;
        let end = pkts.len() as u64 * 20 + 200;
        for tick in (0..end).step_by(5) {
            while next < arrivals.len() && arrivals[next].0 <= tick {
                let (at, i) = arrivals[next];
                let (seq, rtp, p) = &pkts[i];
                rx.handle_packet(*seq, *rtp, p, t0 + ms(at), &mut |_| emitted += 1);
                if let Some(j) = extra(i) {
                    let (seq, rtp, p) = &pkts[j];
                    rx.handle_packet(*seq, *rtp, p, t0 + ms(at), &mut |_| emitted += 1);
                }
                next += 1;
            }
            rx.poll(t0 + ms(tick), &mut |_| emitted += 1);
            per_tick.push((tick, emitted));
        }
        per_tick
    }

    #[test]
    fn loss_on_a_clean_path_leaves_no_standing_delay() {
        let pkts = packets(20, 20);
        let mut rng = Lcg(11);
        let lost: Vec<bool> = (0..pkts.len())
            .map(|i| i > 5 && i + 5 < pkts.len() && rng.next_f64() < 0.1)
            .collect();
        let mut rx = AudioReceiver::new(48000, 1).unwrap();
        let ticks = tick_run(&mut rx, &pkts, |i| (!lost[i]).then_some(1), |_| None);
        // Every frame is out by the first tick after its packet (or, lost, the next packet
        // and the wait): behind the packets sent so far by at most the losses just before.
        // A fixed hold of two packets per gap would lag three frames after every loss.
        for &(tick, emitted) in &ticks[..pkts.len() * 4] {
            let sent = (tick.saturating_sub(1) / 20) as usize + 1;
            let run = (0..sent).rev().take_while(|&i| lost[i]).count();
            assert!(
                emitted + 1 + run >= sent,
                "at {tick} ms only {emitted} frames of {sent} sent"
            );
        }
        let st = rx.stats();
        let dropped = lost.iter().filter(|&&l| l).count() as u64;
        assert_eq!(st.lost, dropped, "{st:?}");
        assert_eq!(st.late, 0);
        assert_eq!(ticks.last().unwrap().1, pkts.len());
        assert_eq!(rx.reorder_wait(), MIN_WAIT);
    }

    #[test]
    fn jitter_and_reordering_are_waited_for() {
        let pkts = packets(20, 20);
        let mut rng = Lcg(7);
        // 40 ± 20 ms per packet, independently: neighbours swap often.
        let delays: Vec<u64> = (0..pkts.len())
            .map(|_| 20 + (rng.next_f64() * 40.0) as u64)
            .collect();
        let mut rx = AudioReceiver::new(48000, 1).unwrap();
        let ticks = tick_run(&mut rx, &pkts, |i| Some(delays[i]), |_| None);
        let st = rx.stats();
        assert_eq!(ticks.last().unwrap().1, pkts.len());
        assert!(st.reordered > 50, "{st:?}");
        // Only while the wait learns the path may a reordered packet miss its slot.
        assert!(st.lost <= 5 && st.late == st.lost, "{st:?}");
        let wait = rx.reorder_wait();
        assert!(wait >= ms(20) && wait <= MAX_WAIT, "wait {wait:?}");
        let jitter = rx.jitter();
        assert!(jitter >= ms(5) && jitter <= ms(25), "jitter {jitter:?}");
    }

    #[test]
    fn a_packet_recovered_behind_its_carrier_fills_the_gap() {
        let pkts = packets(10, 20);
        let lost = |i: usize| i > 5 && i % 10 == 3;
        let mut rx = AudioReceiver::new(48000, 1).unwrap();
        let ticks = tick_run(
            &mut rx,
            &pkts,
            |i| (!lost(i)).then_some(1),
            // Each lost packet comes back right behind the next one, as RED delivers it.
            |i| (i > 0 && lost(i - 1)).then(|| i - 1),
        );
        let st = rx.stats();
        assert_eq!(ticks.last().unwrap().1, pkts.len());
        assert_eq!((st.lost, st.concealed, st.late), (0, 0, 0), "{st:?}");
        assert_eq!(st.reordered, 49);
        assert_eq!(st.decoded, pkts.len() as u64);
        assert_eq!(rx.reorder_wait(), MIN_WAIT);
    }

    #[test]
    fn big_jump_resyncs_without_long_silence() {
        let pkts = packets(4, 20);
        let mut rx = AudioReceiver::new(16000, 1).unwrap();
        let mut kept: Vec<_> = pkts[..50].to_vec();
        kept.extend_from_slice(&pkts[150..]); // 2 s outage
        let frames = run(&mut rx, &kept);
        assert_eq!(frames.len(), 100);
        assert_eq!(rx.stats().resyncs, 1);
        assert_eq!(rx.stats().concealed + rx.stats().fec_recovered, 0);

        // The sender restarts its sequence far behind: resync rather than drop everything.
        let restarted: Vec<_> = pkts[..20]
            .iter()
            .map(|(seq, rtp, p)| (seq - 900, rtp + 1_000_000, p.clone()))
            .collect();
        let frames = run(&mut rx, &restarted);
        assert_eq!(frames.len(), 20);
        assert_eq!(frames[0].pts, 100 * 320);
        assert_eq!(rx.stats().resyncs, 2);

        // A medium gap (10 packets) conceals only MAX_CONCEAL_PACKETS of it.
        let mut rx = AudioReceiver::new(16000, 1).unwrap();
        let mut kept: Vec<_> = pkts[..50].to_vec();
        kept.extend_from_slice(&pkts[60..100]);
        let frames = run(&mut rx, &kept);
        assert_eq!(frames.len(), 90 + MAX_CONCEAL_PACKETS as usize);
        assert_eq!(rx.stats().lost, 10);
    }

    #[test]
    fn garbage_payloads_do_not_break_the_stream() {
        let pkts = packets(1, 20);
        let mut rx = AudioReceiver::new(48000, 1).unwrap();
        let mut n = 0;
        for (i, (seq, rtp, p)) in pkts.iter().enumerate() {
            let bad = [0xffu8, 0xff, 0xff];
            let payload: &[u8] = if i % 10 == 5 { &bad } else { p };
            rx.handle_packet(*seq, *rtp, payload, Instant::now(), &mut |_| n += 1);
        }
        rx.handle_packet(5000, 0, &[], Instant::now(), &mut |_| n += 1);
        assert_eq!(n, 50);
        assert_eq!(rx.stats().decode_errors, 5);
        assert!(AudioReceiver::new(44101, 1).is_err());
        assert!(AudioReceiver::new(48000, 3).is_err());
    }
}
