//! The adaptive reorder wait of the audio-in path: measures the jitter and the reordering of
//! the mic packets as they arrive and says how long newer packets are held for a missing one
//! before it is declared lost. Sans-IO: every input carries its arrival time.
//!
//! A fixed hold (in packets) makes every loss cost the whole hold, and the frames released
//! afterwards in a burst stand in any queue behind the receiver (the echo's output grew by
//! 60 ms per loss that way). So the wait is a time, measured from when the gap became visible:
//! a few ms on a clean path, where a gap is a loss, and as long as the path's jitter and
//! observed reordering need, bounded by [`MAX_WAIT`].

use std::time::{Duration, Instant};

/// The shortest wait: a RED-recovered packet reaches the receiver right behind the packet that
/// carried it, and the audio clock runs the receiver on a 5 ms grid anyway.
pub const MIN_WAIT: Duration = Duration::from_millis(3);

/// The longest wait, whatever the path does: beyond this a late packet is dropped rather
/// than delaying every later frame.
pub const MAX_WAIT: Duration = Duration::from_millis(80);

/// The wait covers this many times the interarrival jitter.
const JITTER_FACTOR: f64 = 3.0;

/// Added to the latest reordering seen, so the next one of the same size is still in time.
const LATE_MARGIN: Duration = Duration::from_millis(5);

/// The peak reordering decays by this factor per packet (a half-life of ~3.5 s at 50 packets
/// per second), so the wait shrinks again once the path calms down.
const LATE_DECAY: f64 = 0.996;

/// A decayed reordering peak under this is forgotten (and its margin with it).
const FORGET_BELOW: Duration = Duration::from_millis(1);

/// One transit-time difference counts at most this much, so a sender pause or restart does
/// not throw the estimate off for seconds.
const MAX_SAMPLE: Duration = Duration::from_millis(200);

/// The jitter and reordering of one packet stream, and the wait they imply.
#[derive(Debug, Default, Clone)]
pub struct ReorderWait {
    /// Arrival and 48 kHz RTP time of the previous packet, in arrival order.
    last: Option<(Instant, u64)>,
    /// RFC 3550 interarrival jitter, in seconds.
    jitter: f64,
    /// The largest recent delay between a gap opening and its packet arriving, in seconds.
    late_peak: f64,
}

impl ReorderWait {
    /// A packet arrived (in any order): updates the jitter estimate (RFC 3550 §6.4.1).
    pub fn on_arrival(&mut self, arrival: Instant, rtp_time_48k: u64) {
        if let Some((prev_at, prev_rtp)) = self.last {
            let arrived = signed_secs(arrival, prev_at);
            let sent = (rtp_time_48k as i64).wrapping_sub(prev_rtp as i64) as f64 / 48_000.0;
            let d = (arrived - sent).abs().min(MAX_SAMPLE.as_secs_f64());
            self.jitter += (d - self.jitter) / 16.0;
        }
        if self.last.is_none_or(|(at, _)| arrival >= at) {
            self.last = Some((arrival, rtp_time_48k));
        }
        self.late_peak *= LATE_DECAY;
        if self.late_peak < FORGET_BELOW.as_secs_f64() {
            self.late_peak = 0.0;
        }
    }

    /// A missing packet arrived `lateness` after newer packets showed its gap (in time or
    /// too late): the wait grows to cover the next one like it.
    pub fn on_reordered(&mut self, lateness: Duration) {
        let s = lateness.min(MAX_WAIT).as_secs_f64();
        if s > self.late_peak {
            self.late_peak = s;
        }
    }

    /// The measured interarrival jitter.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter)
    }

    /// How long to hold newer packets for a missing one, from when its gap opened.
    pub fn wait(&self) -> Duration {
        let by_jitter = self.jitter * JITTER_FACTOR;
        let by_reorder = if self.late_peak > 0.0 {
            self.late_peak + LATE_MARGIN.as_secs_f64()
        } else {
            0.0
        };
        Duration::from_secs_f64(by_jitter.max(by_reorder)).clamp(MIN_WAIT, MAX_WAIT)
    }
}

/// `a - b` in seconds, negative when `a` is earlier.
fn signed_secs(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64()
    } else {
        -(b - a).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 20 ms packets arriving `delay(i)` ms after they were sent, in arrival order.
    fn feed(w: &mut ReorderWait, t0: Instant, n: u64, delay: impl Fn(u64) -> u64) {
        let mut arrivals: Vec<(u64, u64)> = (0..n).map(|i| (i * 20 + delay(i), i)).collect();
        arrivals.sort();
        for (at, i) in arrivals {
            w.on_arrival(t0 + ms(at), 10_000 + i * 960);
        }
    }

    #[test]
    fn clean_path_waits_the_minimum() {
        let mut w = ReorderWait::default();
        feed(&mut w, Instant::now(), 500, |_| 1);
        assert!(w.jitter() < ms(1), "{:?}", w.jitter());
        assert_eq!(w.wait(), MIN_WAIT);
    }

    #[test]
    fn jitter_lengthens_the_wait_within_bounds() {
        let t0 = Instant::now();
        let mut w = ReorderWait::default();
        // 40 ± 20 ms, deterministic spread.
        let spread = |i: u64| 20 + (i * 7919 % 41);
        feed(&mut w, t0, 1000, spread);
        let j = w.jitter();
        assert!(j > ms(8) && j < ms(20), "jitter {j:?}");
        let wait = w.wait();
        assert!(wait > ms(25) && wait <= MAX_WAIT, "wait {wait:?}");

        // Wild jitter is capped.
        let mut w = ReorderWait::default();
        feed(&mut w, t0, 1000, |i| i * 104_729 % 400);
        assert_eq!(w.wait(), MAX_WAIT);
    }

    #[test]
    fn reordering_lengthens_the_wait_then_decays() {
        let t0 = Instant::now();
        let mut w = ReorderWait::default();
        feed(&mut w, t0, 50, |_| 1);
        w.on_reordered(ms(30));
        assert_eq!(w.wait(), ms(35));
        w.on_reordered(ms(10));
        assert_eq!(w.wait(), ms(35), "a smaller reorder keeps the peak");
        w.on_reordered(ms(500));
        assert_eq!(w.wait(), MAX_WAIT);
        // 30 clean seconds later the wait is back at the floor.
        feed(&mut w, t0 + Duration::from_secs(2), 1500, |_| 1);
        assert_eq!(w.wait(), MIN_WAIT);
    }

    #[test]
    fn a_sender_pause_does_not_inflate_the_jitter() {
        let t0 = Instant::now();
        let mut w = ReorderWait::default();
        feed(&mut w, t0, 100, |_| 1);
        // The sender restarts with an unrelated timestamp, 3 s later.
        w.on_arrival(t0 + Duration::from_secs(5), 99_000_000);
        assert!(w.jitter() <= MAX_SAMPLE / 16 + ms(1), "{:?}", w.jitter());
        assert!(w.wait() <= MAX_WAIT);
    }
}
