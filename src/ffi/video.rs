//! C ABI of the video path: read the client's camera and screen as RGB24, snapshots, and
//! write RGB24 frames to send.

use std::ffi::c_void;
use std::time::Duration;

use crate::error::Error;
use crate::media::video::{VideoFrame, VideoSource};

use super::peer::{peer_ref, SwrtcPeer};
use super::{guard, SwrtcResult, UserData};

/// Which client video track.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcVideoSource {
    /// The camera (m-line 1).
    SWRTC_VIDEO_CAMERA = 0,
    /// The screen share (m-line 2).
    SWRTC_VIDEO_SCREEN = 1,
}

impl From<SwrtcVideoSource> for VideoSource {
    fn from(s: SwrtcVideoSource) -> Self {
        match s {
            SwrtcVideoSource::SWRTC_VIDEO_CAMERA => VideoSource::Camera,
            SwrtcVideoSource::SWRTC_VIDEO_SCREEN => VideoSource::Screen,
        }
    }
}

/// A decoded frame: packed RGB24, `height` rows of `stride` bytes. The pixels are owned by
/// the library: zero-initialise the struct before its first use, pass it again to reuse
/// its buffer, and release it with `swrtc_video_frame_clear`. Do not change `rgb` or
/// `capacity` yourself.
#[repr(C)]
#[derive(Debug)]
pub struct SwrtcVideoFrame {
    /// Pixels, R G B per pixel.
    pub rgb: *mut u8,
    /// Bytes of pixels.
    pub len: usize,
    /// Bytes allocated for `rgb` (library use).
    pub capacity: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (`width * 3`).
    pub stride: usize,
    /// Presentation time, 90 kHz RTP clock.
    pub pts: u64,
    /// Which track it came from.
    pub source: SwrtcVideoSource,
}

/// Video counters of a peer. Arrays are indexed by `SwrtcVideoSource`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SwrtcVideoStats {
    /// Frames decoded.
    pub in_frames_decoded: [u64; 2],
    /// Decoded frames replaced before the app read them (latest wins).
    pub in_frames_overwritten: [u64; 2],
    /// Encoded frames dropped (workers behind, or waiting for a keyframe).
    pub in_frames_dropped: [u64; 2],
    /// Decode errors (each asks the client for a keyframe).
    pub in_decode_errors: [u64; 2],
    /// Frames encoded and sent.
    pub out_frames_sent: u64,
    /// Written frames replaced by a newer one before encoding, or written before video
    /// was negotiated.
    pub out_frames_dropped: u64,
    /// Frames the encoder skipped to hold its bitrate on a link too slow for it.
    pub out_frames_skipped: u64,
    /// Keyframe requests (PLI/FIR) from the client; answered at most one per 600 ms.
    pub out_keyframe_requests: u64,
    /// Keyframes sent.
    pub out_keyframes_sent: u64,
}

/// Takes the buffer out of a C frame (empty if it has none).
///
/// # Safety
/// `f.rgb`/`f.capacity` come from this library or are NULL/0.
unsafe fn take_buffer(f: &mut SwrtcVideoFrame) -> Vec<u8> {
    if f.rgb.is_null() || f.capacity == 0 {
        return Vec::new();
    }
    // SAFETY: allocated by `give_buffer` as a Vec<u8> of this capacity.
    let v = unsafe { Vec::from_raw_parts(f.rgb, 0, f.capacity) };
    f.rgb = std::ptr::null_mut();
    f.capacity = 0;
    f.len = 0;
    v
}

fn give(out: &mut SwrtcVideoFrame, frame: VideoFrame) {
    let mut rgb = std::mem::ManuallyDrop::new(frame.rgb);
    out.rgb = rgb.as_mut_ptr();
    out.len = rgb.len();
    out.capacity = rgb.capacity();
    out.width = frame.width;
    out.height = frame.height;
    out.stride = frame.width as usize * 3;
    out.pts = frame.pts;
    out.source = match frame.source {
        VideoSource::Camera => SwrtcVideoSource::SWRTC_VIDEO_CAMERA,
        VideoSource::Screen => SwrtcVideoSource::SWRTC_VIDEO_SCREEN,
    };
}

/// Reads the newest decoded frame of `source` not yet read, waiting up to `timeout_ms`
/// (0: do not wait). Latest-wins: frames the app did not read in time are replaced, never
/// queued. A track the client disabled delivers nothing.
///
/// Errors: `SWRTC_ERR_TIMEOUT`, `SWRTC_ERR_WOULD_BLOCK`, `SWRTC_ERR_CLOSED`,
/// `SWRTC_ERR_INVALID_ARGUMENT` (NULL, video in disabled). On error `*out` holds no
/// frame (width 0) but keeps its buffer for reuse.
/// Any thread; do not block in it from a callback.
///
/// # Safety
/// `peer` live; `out` points to a zero-initialised or previously filled frame.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_read_video(
    peer: *const SwrtcPeer,
    source: SwrtcVideoSource,
    timeout_ms: u32,
    out: *mut SwrtcVideoFrame,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        // SAFETY: NULL or valid per the contract.
        let out = unsafe { out.as_mut() }.ok_or_else(|| Error::invalid("out is NULL"))?;
        let timeout = Some(Duration::from_millis(timeout_ms.into())).filter(|d| !d.is_zero());
        let mut frame = VideoFrame::new(source.into());
        // SAFETY: the frame's buffer came from this library (or is empty).
        frame.rgb = unsafe { take_buffer(out) };
        let r = p.read_video_into(source.into(), &mut frame, timeout);
        give(out, frame);
        r
    })
}

/// Waits up to `timeout_ms` for the next frame of `source` decoded after this call (a
/// snapshot, like Pipecat's UserImageRequest) and fills `*out` with it.
///
/// Errors and thread rules as `swrtc_peer_read_video`.
///
/// # Safety
/// As `swrtc_peer_read_video`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_snapshot(
    peer: *const SwrtcPeer,
    source: SwrtcVideoSource,
    timeout_ms: u32,
    out: *mut SwrtcVideoFrame,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        // SAFETY: NULL or valid per the contract.
        let out = unsafe { out.as_mut() }.ok_or_else(|| Error::invalid("out is NULL"))?;
        let frame = p.snapshot(source.into(), Duration::from_millis(timeout_ms.into()))?;
        // SAFETY: the old buffer came from this library (or is empty).
        drop(unsafe { take_buffer(out) });
        give(out, frame);
        Ok(())
    })
}

/// Releases a frame's pixels and zeroes it. NULL does nothing. Any thread.
///
/// # Safety
/// `f` is NULL or a frame filled by this library.
#[no_mangle]
pub unsafe extern "C" fn swrtc_video_frame_clear(f: *mut SwrtcVideoFrame) {
    let _ = guard(|| {
        // SAFETY: NULL or valid per the contract.
        if let Some(f) = unsafe { f.as_mut() } {
            // SAFETY: the buffer came from this library.
            drop(unsafe { take_buffer(f) });
            f.width = 0;
            f.height = 0;
            f.stride = 0;
        }
        Ok(())
    });
}

/// Sends one RGB24 frame of any even size (or of the configured `video_out_width` ×
/// `video_out_height` when the config pins one; a new size restarts the encoder with a
/// keyframe): `height` rows of `stride` bytes (0: `width * 3`), `len` bytes in all. Copied; encoded on a worker
/// in the negotiated codec (VP8 or H.264); the newest frame wins if the encoder is busy.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL, wrong size or stride, short buffer, video
/// out disabled), `SWRTC_ERR_CLOSED`. Any thread, callbacks too.
///
/// # Safety
/// `peer` live; `rgb` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_write_video(
    peer: *const SwrtcPeer,
    rgb: *const u8,
    len: usize,
    width: u32,
    height: u32,
    stride: usize,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if rgb.is_null() || len == 0 {
            return Err(Error::invalid("rgb is NULL or empty"));
        }
        // SAFETY: readable for `len` bytes per the contract.
        let data = unsafe { std::slice::from_raw_parts(rgb, len) };
        p.write_video(data, width, height, stride)
    })
}

/// The peer's video counters. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_get_video_stats(
    peer: *const SwrtcPeer,
    out: *mut SwrtcVideoStats,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s = p.video_stats();
        let c = SwrtcVideoStats {
            in_frames_decoded: s.in_frames_decoded,
            in_frames_overwritten: s.in_frames_overwritten,
            in_frames_dropped: s.in_frames_dropped,
            in_decode_errors: s.in_decode_errors,
            out_frames_sent: s.out_frames_sent,
            out_frames_dropped: s.out_frames_dropped,
            out_frames_skipped: s.out_frames_skipped,
            out_keyframe_requests: s.out_keyframe_requests,
            out_keyframes_sent: s.out_keyframes_sent,
        };
        // SAFETY: checked non-NULL.
        unsafe { out.write(c) };
        Ok(())
    })
}

/// Push delivery of one video source: each decoded frame goes to `cb` instead of the
/// latest-frame slot, so `swrtc_peer_read_video` and `swrtc_peer_snapshot` see nothing
/// while it is installed (`cb` NULL: back to them). `cb` gets packed RGB24, `height` rows
/// of `stride` bytes, and `pts` on the 90 kHz RTP clock; `rgb` is valid only during the
/// call. Same threading rules as
/// `swrtc_peer_set_audio_callback`: a worker thread, frames in order, must not block; copy
/// what you keep.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (`peer` NULL, video in disabled). Any thread.
///
/// # Safety
/// `peer` live; `cb` NULL or a function safe to call with `user_data` from any thread.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_set_video_callback(
    peer: *const SwrtcPeer,
    source: SwrtcVideoSource,
    cb: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            source: SwrtcVideoSource,
            rgb: *const u8,
            width: u32,
            height: u32,
            stride: usize,
            pts: u64,
        ),
    >,
    user_data: *mut c_void,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        let Some(f) = cb else {
            return p.set_video_callback(source.into(), None);
        };
        let user = UserData(user_data);
        p.set_video_callback(
            source.into(),
            Some(Box::new(move |frame: &VideoFrame| {
                // The whole wrapper, not its raw pointer field alone (that is not Send).
                let user = &user;
                // SAFETY: the app registered `f` for `user_data` (see above).
                unsafe {
                    f(
                        user.0,
                        source,
                        frame.rgb.as_ptr(),
                        frame.width,
                        frame.height,
                        frame.width as usize * 3,
                        frame.pts,
                    )
                }
            })),
        )
    })
}
