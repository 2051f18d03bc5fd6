//! Tone checks on what the app reads: frequency by zero crossings, level, and a reader
//! that waits until a peer's audio carries a given tone.

use std::time::{Duration, Instant};

use smallwebrtc::Peer;

/// Frequency of a mono signal by rising zero crossings (a clean sine: exact to a bin of
/// 1/len seconds).
pub fn frequency(samples: &[i16], rate: u32) -> f64 {
    let rising = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 * rate as f64 / samples.len().max(1) as f64
}

/// RMS level in dBFS.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len().max(1) as f64).sqrt();
    20.0 * (rms.max(1e-9) / 32768.0).log10()
}

/// Reads `peer`'s audio (mono) until one second of it is the tone `hz` (±5%, louder than
/// -40 dBFS); `Ok(frequency heard)`, or `Err(last frequency)` at the deadline or when
/// `give_up` says so.
pub fn hear_tone(
    peer: &Peer,
    hz: f64,
    within: Duration,
    give_up: impl Fn() -> bool,
) -> Result<f64, f64> {
    let end = Instant::now() + within;
    let mut window: Vec<i16> = Vec::new();
    let mut last = 0.0;
    while Instant::now() < end && !give_up() {
        let Ok(frame) = peer.read_audio(Some(Duration::from_millis(200))) else {
            continue;
        };
        window.extend_from_slice(&frame.samples);
        let keep = frame.sample_rate as usize; // one second
        if window.len() > keep {
            window.drain(..window.len() - keep);
            last = frequency(&window, frame.sample_rate);
            if rms_dbfs(&window) > -40.0 && (last - hz).abs() < hz * 0.05 {
                return Ok(last);
            }
        }
    }
    Err(last)
}
