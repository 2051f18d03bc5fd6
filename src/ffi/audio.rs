//! C ABI of the audio path: read the client's mic, write the bot's voice, barge-in.

use std::ffi::c_void;
use std::time::Duration;

use crate::error::Error;
use crate::media::audio::AudioFrame;

use super::peer::{peer_ref, SwrtcPeer};
use super::{guard, SwrtcResult, UserData};

/// Reads the next 20 ms frame of the client's microphone: interleaved s16 at the config's
/// `audio_in_sample_rate` and `audio_in_channels`. `buf` must hold `capacity` samples, at
/// least one frame (rate / 50 × channels); `*out_samples` receives the samples written and
/// `*out_pts` (may be NULL) the frame's position in samples since the stream started.
/// Waits up to `timeout_ms` (0: do not wait). A muted or absent mic is not an error: reads
/// time out. Memory never grows when the app stops reading (1 s is kept, oldest dropped).
///
/// Errors: `SWRTC_ERR_TIMEOUT`, `SWRTC_ERR_WOULD_BLOCK` (timeout 0), `SWRTC_ERR_CLOSED`,
/// `SWRTC_ERR_BUFFER_TOO_SMALL` (`*out_samples` = the size needed; the frame stays),
/// `SWRTC_ERR_INVALID_ARGUMENT` (NULL, audio in disabled). Any thread; one reader at a time
/// per peer gets the frames in order. Do not block in it from a callback.
///
/// # Safety
/// `peer` live; `buf` writable for `capacity` samples; `out_samples` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_read_audio(
    peer: *const SwrtcPeer,
    buf: *mut i16,
    capacity: usize,
    out_samples: *mut usize,
    out_pts: *mut u64,
    timeout_ms: u32,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if buf.is_null() || out_samples.is_null() {
            return Err(Error::invalid("buf or out_samples is NULL"));
        }
        let need = p.audio_in_frame_samples();
        if capacity < need {
            // SAFETY: checked non-NULL.
            unsafe { out_samples.write(need) };
        }
        // SAFETY: writable for `capacity` samples per the contract.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf, capacity) };
        let timeout = Some(Duration::from_millis(timeout_ms.into())).filter(|d| !d.is_zero());
        let (n, pts) = p.read_audio_into(slice, timeout)?;
        // SAFETY: checked non-NULL; out_pts is NULL or writable.
        unsafe {
            out_samples.write(n);
            if !out_pts.is_null() {
                out_pts.write(pts);
            }
        }
        Ok(())
    })
}

/// Push delivery of the mic: from now on each decoded 20 ms frame goes to `cb` instead of
/// `swrtc_peer_read_audio` (`cb` NULL: back to reading). `cb` gets `samples_len`
/// interleaved s16 samples (all channels) at `sample_rate` with `channels`, and `pts` in
/// samples per channel since the stream started; `samples` is valid only during the call.
/// `cb` runs on one of the runtime's
/// worker threads (never the caller's, never an I/O thread), frames of this peer in order,
/// one call at a time, and must not block: write with `swrtc_peer_write_audio` and a
/// timeout of 0, and hand long work to your own thread. From inside it any `swrtc_*`
/// function may be called, this one too (it applies at once), and `swrtc_peer_free` on the
/// same peer. Called elsewhere, this waits for a running call, so after it returns the old
/// callback never runs again; `swrtc_peer_free` removes it. `user_data` must stay valid
/// until then. No lock of the library is held while `cb` runs. The one case in which this
/// does not wait: two callbacks, running at once, that change each other's callbacks (or
/// free each other's peers); the second to call does not wait for the first (which is
/// waiting for it), so both complete. The C callback must not unwind (no C++ exception may
/// leave it).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (`peer` NULL, audio in disabled). Any thread.
///
/// # Safety
/// `peer` live; `cb` NULL or a function safe to call with `user_data` from any thread.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_set_audio_callback(
    peer: *const SwrtcPeer,
    cb: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            samples: *const i16,
            samples_len: usize,
            sample_rate: u32,
            channels: u16,
            pts: u64,
        ),
    >,
    user_data: *mut c_void,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        let Some(f) = cb else {
            return p.set_audio_callback(None);
        };
        let user = UserData(user_data);
        p.set_audio_callback(Some(Box::new(move |frame: &AudioFrame| {
            // The whole wrapper, not its raw pointer field alone (that is not Send).
            let user = &user;
            // SAFETY: the app registered `f` for `user_data` (see above).
            unsafe {
                f(
                    user.0,
                    frame.samples.as_ptr(),
                    frame.samples.len(),
                    frame.sample_rate,
                    frame.channels,
                    frame.pts,
                )
            }
        })))
    })
}

/// Queues `samples` interleaved s16 samples at the config's `audio_out_sample_rate` and
/// `audio_out_channels`: any whole number of 10 ms (rate / 100 × channels samples), up to
/// 10 s queued. They are sent in real time as Opus packets. With `timeout_ms` > 0, waits
/// until the last sample has been sent (back-pressure); on timeout the audio stays queued.
/// With 0, returns at once. A write dropped by `swrtc_peer_clear_audio` returns `SWRTC_OK`.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL, not a whole number of 10 ms, audio out
/// disabled), `SWRTC_ERR_WOULD_BLOCK` (over 10 s queued), `SWRTC_ERR_TIMEOUT`,
/// `SWRTC_ERR_CLOSED`. Any thread; do not block in it from a callback.
///
/// # Safety
/// `peer` live; `pcm` readable for `samples` samples.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_write_audio(
    peer: *const SwrtcPeer,
    pcm: *const i16,
    samples: usize,
    timeout_ms: u32,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if pcm.is_null() || samples == 0 {
            return Err(Error::invalid("pcm is NULL or empty"));
        }
        // SAFETY: readable for `samples` per the contract.
        let data = unsafe { std::slice::from_raw_parts(pcm, samples) };
        if timeout_ms == 0 {
            p.try_write_audio(data)
        } else {
            p.write_audio(data, Duration::from_millis(timeout_ms.into()))
        }
    })
}

/// Drops all queued output audio within one packet time (barge-in); blocked writers
/// return. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL, audio out disabled).
///
/// # Safety
/// `peer` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_clear_audio(peer: *const SwrtcPeer) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        unsafe { peer_ref(peer) }?.clear_audio()
    })
}

/// Audio counters of a peer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SwrtcAudioStats {
    /// Input frames dropped because the app did not read (oldest first).
    pub in_frames_dropped: u64,
    /// Mic packets dropped because the workers fell behind.
    pub in_packets_dropped: u64,
    /// Mic packets decoded.
    pub in_packets_decoded: u64,
    /// Mic packets declared lost.
    pub in_packets_lost: u64,
    /// Mic packets late or duplicated.
    pub in_packets_late: u64,
    /// Frames concealed (PLC).
    pub in_frames_concealed: u64,
    /// Frames recovered from in-band FEC.
    pub in_frames_fec: u64,
    /// Output packets sent.
    pub out_packets_sent: u64,
    /// Output packets dropped (network thread's queue full).
    pub out_packets_dropped: u64,
    /// Output audio queued, ms.
    pub out_queued_ms: u64,
    /// Output slots skipped after a stall (their audio dropped, so latency stays bounded).
    pub out_slots_skipped: u64,
    /// Mic packets that arrived after a newer one and still played in order (reordered on
    /// the path; RED-recovered packets come from the transport already in order).
    pub in_packets_reordered: u64,
    /// Interarrival jitter of the mic packets (RFC 3550), in microseconds.
    pub in_jitter_us: u64,
    /// How long a gap in the mic packets is waited for before it is concealed, in ms
    /// (adapts to the measured jitter and reordering; 3 to 80 ms).
    pub in_reorder_wait_ms: u64,
}

/// The peer's audio counters. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_get_audio_stats(
    peer: *const SwrtcPeer,
    out: *mut SwrtcAudioStats,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s = p.audio_stats();
        let c = SwrtcAudioStats {
            in_frames_dropped: s.in_frames_dropped,
            in_packets_dropped: s.in_packets_dropped,
            in_packets_decoded: s.in_packets_decoded,
            in_packets_lost: s.in_packets_lost,
            in_packets_late: s.in_packets_late,
            in_frames_concealed: s.in_frames_concealed,
            in_frames_fec: s.in_frames_fec,
            out_packets_sent: s.out_packets_sent,
            out_packets_dropped: s.out_packets_dropped,
            out_queued_ms: s.out_queued_ms,
            out_slots_skipped: s.out_slots_skipped,
            in_packets_reordered: s.in_packets_reordered,
            in_jitter_us: s.in_jitter_us,
            in_reorder_wait_ms: s.in_reorder_wait_ms,
        };
        // SAFETY: checked non-NULL.
        unsafe { out.write(c) };
        Ok(())
    })
}
