//! The video bitrate controller: turns the bandwidth estimate (str0m's transport-cc BWE or
//! the client's REMB) into the encoder's target, with hysteresis, and paces keyframes asked
//! for by PLI/FIR. Pure logic on a caller-given clock; the encode worker owns one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bit/s kept for our audio (Opus at up to 64 kbit/s, RED doubling it at low rates, and
/// the RTP/SRTP headers of 50 packets a second).
pub const AUDIO_RESERVE_BPS: u64 = 80_000;
/// Share of what is left for video that the encoder targets: the rest is headroom for
/// packet headers, retransmissions and the encoder overshooting on keyframes.
const HEADROOM_PERCENT: u64 = 85;
/// The lowest target: below this VP8 at camera sizes is mush and dropping frames is better.
pub const MIN_VIDEO_BPS: u32 = 50_000;
/// A new target is applied only when it differs from the current one by this share (%):
/// the estimate moves a little with every feedback report, the encoder need not.
const HYSTERESIS_PERCENT: u64 = 10;
/// Going up waits this long after the last change (going down is immediate): an estimate
/// that dips and recovers must not make the encoder oscillate.
const RAISE_AFTER: Duration = Duration::from_secs(1);
/// At most one keyframe asked for by the client per this interval: on a lossy link every
/// lost keyframe packet brings another PLI, and answering each one floods the link.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(600);

/// Video starts at no more than this (WebRTC's start rate), until an estimate says more
/// fits: the first keyframes at the configured rate can overflow a slow link's queue
/// before any feedback arrives, and a client that loses them may stall until its own
/// timeout asks for a new keyframe.
pub const START_VIDEO_BPS: u32 = 300_000;
/// A client that sends no feedback (neither transport-cc nor REMB) gets the configured
/// rate this long after the first frame.
const NO_FEEDBACK_AFTER: Duration = Duration::from_secs(10);

/// The latest bandwidth estimate of one peer, written by its I/O thread (the session holds
/// a clone of `bps`) and read by the encode worker, and the target the worker chose.
/// 0 means none yet. Atomics: neither side ever waits for the other.
#[derive(Debug, Default)]
pub struct EstimateCell {
    bps: Arc<AtomicU64>,
    target: AtomicU64,
}

impl EstimateCell {
    /// The estimate's atomic, for the session to store into.
    pub fn estimate_handle(&self) -> Arc<AtomicU64> {
        self.bps.clone()
    }

    /// The latest estimate, 0 if none.
    pub fn get(&self) -> u64 {
        self.bps.load(Ordering::Relaxed)
    }

    /// The encoder's current target (bit/s), 0 before video is encoded.
    pub fn target(&self) -> u64 {
        self.target.load(Ordering::Relaxed)
    }

    fn set_target(&self, bps: u64) {
        self.target.store(bps, Ordering::Relaxed);
    }
}

/// Decides the encoder's target bitrate and when a requested keyframe may be sent.
#[derive(Debug)]
pub struct BitrateController {
    configured: u32,
    /// The first update (the first frame encoded).
    started: Option<Instant>,
    target: u32,
    last_change: Option<Instant>,
    last_keyframe: Option<Instant>,
}

impl BitrateController {
    /// Starts at the configured bitrate or [`START_VIDEO_BPS`], the lower; the configured
    /// one is the ceiling.
    pub fn new(configured: u32) -> Self {
        BitrateController {
            configured,
            started: None,
            target: configured.min(START_VIDEO_BPS),
            last_change: None,
            last_keyframe: None,
        }
    }

    /// The current target (bit/s).
    pub fn target(&self) -> u32 {
        self.target
    }

    /// What the estimate leaves for video: the estimate minus the audio reserve, minus
    /// headroom, between the floor and the configured bitrate.
    pub fn wanted(&self, estimate_bps: u64) -> u32 {
        if estimate_bps == 0 {
            return self.configured;
        }
        let video = estimate_bps.saturating_sub(AUDIO_RESERVE_BPS) * HEADROOM_PERCENT / 100;
        let floor = MIN_VIDEO_BPS.min(self.configured);
        video.clamp(u64::from(floor), u64::from(self.configured)) as u32
    }

    /// Feeds the latest estimate (0: none). Returns the new target when the encoder should
    /// change, `None` to leave it.
    pub fn update(&mut self, estimate_bps: u64, now: Instant) -> Option<u32> {
        let started = *self.started.get_or_insert(now);
        if estimate_bps == 0 && now.saturating_duration_since(started) < NO_FEEDBACK_AFTER {
            return None;
        }
        let wanted = self.wanted(estimate_bps);
        let current = u64::from(self.target);
        let diff = u64::from(wanted.abs_diff(self.target));
        // Back to the ceiling always counts: the last few percent below it are not worth
        // keeping the encoder from its configured rate.
        let big =
            diff * 100 >= current * HYSTERESIS_PERCENT || (wanted == self.configured && diff > 0);
        if !big {
            return None;
        }
        if wanted > self.target
            && self
                .last_change
                .is_some_and(|t| now.saturating_duration_since(t) < RAISE_AFTER)
        {
            return None;
        }
        self.target = wanted;
        self.last_change = Some(now);
        Some(wanted)
    }

    /// Whether a keyframe the client asked for may be sent now. When not, the caller keeps
    /// the request and asks again with the next frame.
    pub fn keyframe_allowed(&self, now: Instant) -> bool {
        self.last_keyframe
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_INTERVAL)
    }

    /// A keyframe was sent (asked for, or the first of a new encoder).
    pub fn keyframe_sent(&mut self, now: Instant) {
        self.last_keyframe = Some(now);
    }

    /// Publishes the target for the stats.
    pub fn publish(&self, cell: &EstimateCell) {
        cell.set_target(u64::from(self.target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn starts_low_and_without_feedback_goes_to_the_configured_rate() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.target(), START_VIDEO_BPS);
        // The clock starts with the first frame, not at creation.
        assert_eq!(c.update(0, t0), None);
        assert_eq!(c.update(0, ms(t0, 9999)), None);
        assert_eq!(c.update(0, ms(t0, 10_000)), Some(1_000_000));
        assert_eq!(c.update(0, ms(t0, 20_000)), None);
        // A configured rate under the start rate is used from the start.
        assert_eq!(BitrateController::new(200_000).target(), 200_000);
    }

    #[test]
    fn an_early_estimate_raises_at_once() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.update(700_000, ms(t0, 100)), Some(527_000));
    }

    #[test]
    fn estimate_minus_audio_and_headroom_capped_by_config() {
        let c = BitrateController::new(1_000_000);
        // (500k - 80k) * 0.85
        assert_eq!(c.wanted(500_000), 357_000);
        assert_eq!(c.wanted(10_000_000), 1_000_000);
        // The floor, however low the estimate.
        assert_eq!(c.wanted(60_000), MIN_VIDEO_BPS);
        assert_eq!(c.wanted(1), MIN_VIDEO_BPS);
        // A configured rate under the floor stays the ceiling.
        assert_eq!(BitrateController::new(30_000).wanted(1), 30_000);
    }

    #[test]
    fn drops_at_once_and_ignores_small_changes() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.update(500_000, t0), Some(357_000));
        // Within 10 % of the target either way: left alone.
        assert_eq!(c.update(520_000, ms(t0, 10)), None);
        assert_eq!(c.update(480_000, ms(t0, 20)), None);
        // A further real drop applies at once, even right after a change.
        assert_eq!(c.update(300_000, ms(t0, 30)), Some(187_000));
        assert_eq!(c.target(), 187_000);
    }

    #[test]
    fn raises_only_a_second_after_the_last_change() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.update(300_000, t0), Some(187_000));
        assert_eq!(c.update(600_000, ms(t0, 500)), None);
        assert_eq!(c.update(600_000, ms(t0, 999)), None);
        assert_eq!(c.update(600_000, ms(t0, 1000)), Some(442_000));
        // Recovery to the ceiling, once the link allows it.
        assert_eq!(c.update(5_000_000, ms(t0, 1500)), None);
        assert_eq!(c.update(5_000_000, ms(t0, 2000)), Some(1_000_000));
        // Losing the estimate goes back to the configured rate too (already there).
        assert_eq!(c.update(0, ms(t0, 4000)), None);
    }

    #[test]
    fn the_last_steps_to_the_ceiling_are_taken() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.update(1_000_000, t0), Some(782_000));
        assert_eq!(c.update(1_200_000, ms(t0, 10)), None);
        assert_eq!(c.update(1_200_000, ms(t0, 1000)), Some(952_000));
        // 4.8 % under the ceiling: still taken, once a second has passed.
        assert_eq!(c.update(2_000_000, ms(t0, 1500)), None);
        assert_eq!(c.update(2_000_000, ms(t0, 2000)), Some(1_000_000));
    }

    #[test]
    fn keyframes_asked_for_are_paced() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1_000_000);
        assert!(c.keyframe_allowed(t0));
        c.keyframe_sent(t0);
        assert!(!c.keyframe_allowed(ms(t0, 1)));
        assert!(!c.keyframe_allowed(ms(t0, 599)));
        assert!(c.keyframe_allowed(ms(t0, 600)));
        c.keyframe_sent(ms(t0, 700));
        assert!(!c.keyframe_allowed(ms(t0, 1000)));
        assert!(c.keyframe_allowed(ms(t0, 1300)));
    }

    #[test]
    fn the_cell_carries_estimate_and_target() {
        let cell = EstimateCell::default();
        assert_eq!((cell.get(), cell.target()), (0, 0));
        cell.estimate_handle().store(200_000, Ordering::Relaxed);
        let mut c = BitrateController::new(1_000_000);
        c.update(cell.get(), Instant::now());
        c.publish(&cell);
        assert_eq!((cell.get(), cell.target()), (200_000, 102_000));
    }
}
