//! VP8 decoding and encoding over the system libvpx (`env-libvpx-sys`).
//! Owns the libvpx contexts and their unsafe calls; must not convert colours, depacketize,
//! spawn threads (libvpx runs single-threaded here; the worker pool gives parallelism) or
//! touch sockets.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_long, c_uint, c_ulong};
use std::ptr;

use vpx_sys as vpx;

use super::convert::validate_i420;
use super::encoder::{EncodedFrame, VideoEncoderConfig};
use super::frame::{I420Planes, YuvImage};
use crate::error::{Error, Result};

/// The 90 kHz RTP video clock, used as libvpx's time base.
const CLOCK_RATE: u64 = 90_000;

/// A libvpx failure as an error: `InvalidArgument` for a bitstream it rejects (bad input from
/// the network), `Internal` for everything else.
fn vpx_error(ctx: &mut vpx::vpx_codec_ctx_t, what: &str, err: vpx::vpx_codec_err_t) -> Error {
    // SAFETY: both functions return static or context-owned NUL-terminated strings (or null).
    let text = unsafe {
        let detail = vpx::vpx_codec_error_detail(ctx);
        let p = if detail.is_null() {
            vpx::vpx_codec_err_to_string(err)
        } else {
            detail
        };
        if p.is_null() {
            String::from("unknown error")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let message = format!("VP8 {what} failed ({err:?}): {text}");
    match err {
        vpx::VPX_CODEC_CORRUPT_FRAME
        | vpx::VPX_CODEC_UNSUP_BITSTREAM
        | vpx::VPX_CODEC_INVALID_PARAM => Error::invalid(message),
        _ => Error::internal(message),
    }
}

/// A VP8 decoder: whole frames in (str0m depacketizes), I420 planes out.
pub struct Vp8Decoder {
    // Boxed so the context never moves: libvpx keeps pointers into it.
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

// SAFETY: the context is only used through `&mut self`; libvpx contexts are not tied to a thread.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// A single-threaded decoder.
    pub fn new() -> Result<Self> {
        // SAFETY: an all-zero context is libvpx's "not initialised" state and a valid Rust value
        // (null pointers, VPX_CODEC_OK); dec_init fills it.
        let mut ctx: Box<vpx::vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        let cfg = vpx::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: ctx and cfg are valid for the call; libvpx copies cfg.
        let err = unsafe {
            vpx::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx::vpx_codec_vp8_dx(),
                &cfg,
                0,
                vpx::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != vpx::VPX_CODEC_OK {
            return Err(vpx_error(&mut ctx, "decoder init", err));
        }
        Ok(Vp8Decoder { ctx })
    }

    /// Decodes one whole VP8 frame. `Ok(None)` when libvpx produced no picture (it does not
    /// for well-formed frames). The picture borrows the decoder until the next call. An error
    /// means the stream is broken until the next keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<YuvImage<'_>>> {
        if data.is_empty() {
            return Err(Error::invalid("empty VP8 frame"));
        }
        let len =
            c_uint::try_from(data.len()).map_err(|_| Error::invalid("VP8 frame too large"))?;
        // SAFETY: data is valid for len bytes during the call; libvpx does not keep it.
        let err = unsafe {
            vpx::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0)
        };
        if err != vpx::VPX_CODEC_OK {
            return Err(vpx_error(&mut self.ctx, "decode", err));
        }
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        let mut last: *const vpx::vpx_image_t = ptr::null();
        loop {
            // SAFETY: iterating the frames of the call above, as libvpx documents.
            let img = unsafe { vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            last = img;
        }
        if last.is_null() {
            return Ok(None);
        }
        // SAFETY: libvpx owns the image until the next decode call, which needs `&mut self`,
        // so the borrow we hand out cannot outlive it.
        unsafe { image_planes(&*last) }.map(Some)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { vpx::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// Borrows the planes of a decoded image.
///
/// SAFETY: `img` must be a valid decoder output whose buffers outlive `'a`.
unsafe fn image_planes<'a>(img: &'a vpx::vpx_image_t) -> Result<YuvImage<'a>> {
    // Read the format as an integer: an unexpected value must not become an invalid Rust enum.
    let fmt = unsafe { ptr::addr_of!(img.fmt).cast::<u32>().read() };
    let (width, height) = (img.d_w, img.d_h);
    let swap_uv = match fmt {
        f if f == vpx::vpx_img_fmt::VPX_IMG_FMT_I420 as u32 => false,
        f if f == vpx::vpx_img_fmt::VPX_IMG_FMT_YV12 as u32 => true,
        other => {
            return Err(Error::internal(format!(
                "VP8 decoder output format {other:#x} not supported"
            )))
        }
    };
    if width == 0 || height == 0 || img.stride[..3].iter().any(|&s| s <= 0) {
        return Err(Error::internal(
            "VP8 decoder returned an empty or flipped image",
        ));
    }
    let (cw, ch) = ((width as usize).div_ceil(2), (height as usize).div_ceil(2));
    let plane = |i: usize, row: usize, rows: usize| {
        let stride = img.stride[i] as usize;
        // SAFETY: libvpx allocated `rows` rows of `stride` bytes for plane i (the last one at
        // least `row` long); we borrow no further than that.
        unsafe { std::slice::from_raw_parts(img.planes[i], stride * (rows - 1) + row) }
    };
    let (u, v) = if swap_uv { (2, 1) } else { (1, 2) };
    Ok(YuvImage::I420(I420Planes {
        width,
        height,
        y: plane(0, width as usize, height as usize),
        y_stride: img.stride[0] as usize,
        u: plane(u, cw, ch),
        u_stride: img.stride[u] as usize,
        v: plane(v, cw, ch),
        v_stride: img.stride[v] as usize,
    }))
}

struct EncoderContext {
    ctx: vpx::vpx_codec_ctx_t,
    cfg: vpx::vpx_codec_enc_cfg_t,
}

/// A realtime VP8 encoder: I420 in, VP8 frames out, one per input frame.
pub struct Vp8Encoder {
    // Boxed so the context never moves: libvpx keeps pointers into it.
    inner: Box<EncoderContext>,
    width: u32,
    height: u32,
    frame_duration: u64,
    next_pts: u64,
    force_keyframe: bool,
}

// SAFETY: the context is only used through `&mut self`; libvpx contexts are not tied to a thread.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// An encoder for `config` (already validated by the caller: sizes even and non-zero,
    /// frame rate and bitrate non-zero).
    pub fn new(config: &VideoEncoderConfig) -> Result<Self> {
        let mut cfg = MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: config_default fully initialises cfg when it returns OK.
        let err = unsafe {
            vpx::vpx_codec_enc_config_default(vpx::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        if err != vpx::VPX_CODEC_OK {
            return Err(Error::internal(format!(
                "VP8 default config failed: {err:?}"
            )));
        }
        // SAFETY: initialised above.
        let mut cfg = unsafe { cfg.assume_init() };
        // Settings follow WebRTC's libvpx VP8 encoder for realtime camera video.
        cfg.g_w = config.width;
        cfg.g_h = config.height;
        cfg.g_threads = 1;
        cfg.g_timebase = vpx::vpx_rational {
            num: 1,
            den: CLOCK_RATE as c_int,
        };
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = vpx::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = vpx::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps(config.bitrate);
        // Under a bitrate the link cannot carry, skip frames (the buffer below 30 % full)
        // rather than send ever larger ones late: video degrades to fewer frames, audio
        // keeps its share of the link. WebRTC's setting.
        cfg.rc_dropframe_thresh = 30;
        cfg.rc_resize_allowed = 0;
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        if config.keyframe_interval > 0 {
            cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = config.keyframe_interval;
        } else {
            cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_DISABLED;
        }
        // SAFETY: an all-zero context is libvpx's "not initialised" state and a valid Rust value.
        let ctx = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut inner = Box::new(EncoderContext { ctx, cfg });
        let EncoderContext { ctx, cfg } = &mut *inner;
        // SAFETY: ctx and cfg live in the box, which outlives the encoder.
        let err = unsafe {
            vpx::vpx_codec_enc_init_ver(
                ctx,
                vpx::vpx_codec_vp8_cx(),
                cfg,
                0,
                vpx::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if err != vpx::VPX_CODEC_OK {
            return Err(vpx_error(ctx, "encoder init", err));
        }
        let encoder = Vp8Encoder {
            width: config.width,
            height: config.height,
            frame_duration: CLOCK_RATE / u64::from(config.framerate.max(1)),
            next_pts: 0,
            force_keyframe: false,
            inner,
        };
        // Speed 6 (fixed, not adaptive) is WebRTC's desktop choice; static threshold skips
        // unchanged blocks; noise reduction off. Keyframes are held to a multiple of the
        // average frame (WebRTC's rule: half the optimal buffer, 9x at 30 fps), so the one
        // a PLI asks for does not overflow a slow link's queue and get lost in turn.
        let max_intra_pct =
            (encoder.inner.cfg.rc_buf_optimal_sz / 2 * config.framerate.max(1) / 10).max(300);
        let controls = [
            (
                vpx::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
                max_intra_pct as i32,
            ),
            (vpx::vp8e_enc_control_id::VP8E_SET_CPUUSED, -6),
            (vpx::vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1),
            (vpx::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0),
        ];
        let mut encoder = encoder;
        for (id, value) in controls {
            // SAFETY: these controls take one int, as passed.
            let err = unsafe {
                vpx::vpx_codec_control_(&mut encoder.inner.ctx, id as c_int, value as c_int)
            };
            if err != vpx::VPX_CODEC_OK {
                return Err(vpx_error(&mut encoder.inner.ctx, "encoder control", err));
            }
        }
        Ok(encoder)
    }

    /// Makes the next encoded frame a keyframe (after a PLI or FIR).
    pub fn force_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Changes the target bitrate (bit/s) from the next frame on, without a keyframe.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        let EncoderContext { ctx, cfg } = &mut *self.inner;
        cfg.rc_target_bitrate = kbps(bitrate);
        // SAFETY: ctx is initialised; cfg is a valid config.
        let err = unsafe { vpx::vpx_codec_enc_config_set(ctx, cfg) };
        if err != vpx::VPX_CODEC_OK {
            return Err(vpx_error(ctx, "bitrate change", err));
        }
        Ok(())
    }

    /// Encodes one picture of the configured size at `pts` (90 kHz) into `out`, replacing its
    /// contents. Returns whether a frame was produced.
    pub fn encode(
        &mut self,
        image: &I420Planes<'_>,
        pts: u64,
        out: &mut EncodedFrame,
    ) -> Result<bool> {
        if image.width != self.width || image.height != self.height {
            return Err(Error::invalid(format!(
                "VP8 encoder is configured for {}x{}, got {}x{}",
                self.width, self.height, image.width, image.height
            )));
        }
        // libvpx reads the planes through raw pointers: check them first.
        validate_i420(image)?;
        let mut img = MaybeUninit::<vpx::vpx_image_t>::uninit();
        // SAFETY: img_wrap initialises the descriptor; the plane pointers and strides are then
        // replaced by the caller's planes, which outlive the encode call. libvpx only reads them.
        let img = unsafe {
            let wrapped = vpx::vpx_img_wrap(
                img.as_mut_ptr(),
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width,
                self.height,
                1,
                image.y.as_ptr().cast_mut(),
            );
            if wrapped.is_null() {
                return Err(Error::internal("VP8 image wrap failed"));
            }
            let mut img = img.assume_init();
            img.planes[0] = image.y.as_ptr().cast_mut();
            img.planes[1] = image.u.as_ptr().cast_mut();
            img.planes[2] = image.v.as_ptr().cast_mut();
            img.stride[0] = stride(image.y_stride)?;
            img.stride[1] = stride(image.u_stride)?;
            img.stride[2] = stride(image.v_stride)?;
            img
        };
        // libvpx needs strictly increasing timestamps.
        let pts = pts.max(self.next_pts);
        self.next_pts = pts + 1;
        let flags = if std::mem::take(&mut self.force_keyframe) {
            vpx::VPX_EFLAG_FORCE_KF as c_long
        } else {
            0
        };
        let ctx = &mut self.inner.ctx;
        // SAFETY: ctx is initialised; img points at planes valid for the call.
        let err = unsafe {
            vpx::vpx_codec_encode(
                ctx,
                &img,
                pts as i64,
                self.frame_duration as c_ulong,
                flags,
                vpx::VPX_DL_REALTIME as c_ulong,
            )
        };
        if err != vpx::VPX_CODEC_OK {
            return Err(vpx_error(ctx, "encode", err));
        }
        out.data.clear();
        out.keyframe = false;
        out.pts = pts;
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iterating this call's packets; each is valid until the next get_cx_data.
            let pkt = unsafe { vpx::vpx_codec_get_cx_data(ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: pkt is valid; `frame` is the active union member for frame packets.
            unsafe {
                if (*pkt).kind == vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let frame = &(*pkt).data.frame;
                    out.data.extend_from_slice(std::slice::from_raw_parts(
                        frame.buf as *const u8,
                        frame.sz as usize,
                    ));
                    out.keyframe |= frame.flags & vpx::VPX_FRAME_IS_KEY != 0;
                }
            }
        }
        Ok(!out.data.is_empty())
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { vpx::vpx_codec_destroy(&mut self.inner.ctx) };
    }
}

fn kbps(bitrate: u32) -> c_uint {
    (bitrate / 1000).max(1)
}

fn stride(bytes: usize) -> Result<c_int> {
    c_int::try_from(bytes).map_err(|_| Error::invalid("plane stride too large"))
}
