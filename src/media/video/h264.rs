//! H.264 decoding and encoding with OpenH264 (the `openh264` crate, built from source with
//! its nasm assembly on x86). Decoder: Annex-B access units in, I420 out. Encoder: I420 in,
//! constrained-baseline Annex-B access units out. Must not convert colours, packetize,
//! spawn threads (OpenH264 runs single-threaded here) or touch sockets.

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use openh264_sys2 as sys;
use std::os::raw::c_int;
use std::ptr;

use super::convert::validate_i420;
use super::encoder::{EncodedFrame, VideoEncoderConfig};
use super::frame::{I420Planes, YuvImage};
use crate::error::{Error, Result};

fn h264_error(what: &str, e: openh264::Error) -> Error {
    Error::internal(format!("H.264 {what} failed: {e}"))
}

/// An H.264 decoder: one Annex-B access unit (SPS/PPS/slices with start codes) per call.
pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    /// A single-threaded decoder without error concealment, so that a broken reference shows
    /// as an error (and a keyframe request) instead of smeared pictures.
    pub fn new() -> Result<Self> {
        let decoder = Decoder::new().map_err(|e| h264_error("decoder init", e))?;
        Ok(H264Decoder { decoder })
    }

    /// Decodes one access unit. `Ok(None)` when it completed no picture (parameter sets
    /// only). The picture borrows the decoder until the next call. An error means the stream
    /// is broken until the next IDR.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<YuvImage<'_>>> {
        if access_unit.is_empty() {
            return Err(Error::invalid("empty H.264 access unit"));
        }
        // OpenH264 reports a broken or unusable bitstream this way: bad input, not a bug.
        let Some(yuv) = self
            .decoder
            .decode(access_unit)
            .map_err(|e| Error::invalid(format!("H.264 decode failed: {e}")))?
        else {
            return Ok(None);
        };
        let (width, height) = yuv.dimensions();
        let (y_stride, u_stride, v_stride) = yuv.strides();
        // The trait accessors borrow the `DecodedYUV` value, but its planes live in the decoder
        // for the whole `&mut self` borrow (that is the lifetime of `DecodedYUV<'_>` itself), so
        // re-borrowing them for that lifetime is what the crate promises.
        // SAFETY: same pointers and lengths, lifetime of the decoder borrow.
        let (y, u, v) = unsafe {
            (
                std::slice::from_raw_parts(yuv.y().as_ptr(), yuv.y().len()),
                std::slice::from_raw_parts(yuv.u().as_ptr(), yuv.u().len()),
                std::slice::from_raw_parts(yuv.v().as_ptr(), yuv.v().len()),
            )
        };
        let planes = I420Planes {
            width: u32::try_from(width).map_err(|_| Error::internal("H.264 width out of range"))?,
            height: u32::try_from(height)
                .map_err(|_| Error::internal("H.264 height out of range"))?,
            y,
            y_stride,
            u,
            u_stride,
            v,
            v_stride,
        };
        Ok(Some(YuvImage::I420(planes)))
    }
}

fn new_encoder(settings: EncoderConfig) -> Result<Encoder> {
    Encoder::with_api_config(OpenH264API::from_source(), settings)
        .map_err(|e| h264_error("encoder init", e))
}

/// Adapts our planes to OpenH264's source trait (its own slice type asserts on sizes).
struct Source<'a>(&'a I420Planes<'a>);

impl YUVSource for Source<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.0.y_stride, self.0.u_stride, self.0.v_stride)
    }

    fn y(&self) -> &[u8] {
        self.0.y
    }

    fn u(&self) -> &[u8] {
        self.0.u
    }

    fn v(&self) -> &[u8] {
        self.0.v
    }
}

/// A realtime constrained-baseline H.264 encoder (packetization-mode 1 friendly: one slice
/// per picture, SPS and PPS in front of every IDR).
pub struct H264Encoder {
    encoder: Encoder,
    settings: EncoderConfig,
    // The openh264 crate initialises the codec on the first encode; until then options
    // cannot be set and a new encoder is made instead.
    started: bool,
    bitrate: c_int,
    width: u32,
    height: u32,
    next_pts: u64,
}

impl H264Encoder {
    /// An encoder for `config` (already validated by the caller: sizes even and non-zero,
    /// frame rate and bitrate non-zero).
    pub fn new(config: &VideoEncoderConfig) -> Result<Self> {
        let settings = EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(config.bitrate))
            .max_frame_rate(FrameRate::from_hz(config.framerate as f32))
            // OpenH264 only holds a bitrate with frame skipping on (as WebRTC runs it); a
            // skipped picture is reported as "no frame".
            .skip_frames(true)
            .complexity(Complexity::Low)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval))
            .num_threads(1);
        Ok(H264Encoder {
            encoder: new_encoder(settings)?,
            settings,
            started: false,
            bitrate: c_int::try_from(config.bitrate)
                .map_err(|_| Error::invalid("bitrate too large"))?,
            width: config.width,
            height: config.height,
            next_pts: 0,
        })
    }

    /// Makes the next encoded picture an IDR (after a PLI or FIR).
    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Changes the target bitrate (bit/s) from the next picture on, without an IDR.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        if !self.started {
            self.settings = self.settings.bitrate(BitRate::from_bps(bitrate));
            self.encoder = new_encoder(self.settings)?;
            self.bitrate =
                c_int::try_from(bitrate).map_err(|_| Error::invalid("bitrate too large"))?;
            return Ok(());
        }
        let bitrate = c_int::try_from(bitrate).map_err(|_| Error::invalid("bitrate too large"))?;
        self.apply_bitrate(bitrate)
    }

    /// Sets the target and, above it, the maximum (OpenH264 undershoots badly when they are
    /// equal, which is how the openh264 crate starts). OpenH264 rejects a target above the
    /// current maximum, so the maximum moves first when raising and last when lowering.
    fn apply_bitrate(&mut self, bitrate: c_int) -> Result<()> {
        let target = (sys::ENCODER_OPTION_BITRATE, sys::SPATIAL_LAYER_ALL, bitrate);
        let max = (
            sys::ENCODER_OPTION_MAX_BITRATE,
            sys::SPATIAL_LAYER_0,
            bitrate.saturating_add(bitrate / 2),
        );
        let steps = if bitrate > self.bitrate {
            [max, target]
        } else {
            [target, max]
        };
        for (option, layer, value) in steps {
            let mut info = sys::SBitrateInfo {
                iLayer: layer,
                iBitrate: value,
            };
            // SAFETY: both options take a pointer to an SBitrateInfo, valid for the call; the
            // codec was initialised by the first encode.
            let rc = unsafe {
                self.encoder
                    .raw_api()
                    .set_option(option, ptr::addr_of_mut!(info).cast())
            };
            if rc != 0 {
                return Err(Error::internal(format!(
                    "H.264 bitrate change failed (code {rc})"
                )));
            }
        }
        self.bitrate = bitrate;
        Ok(())
    }

    /// Encodes one picture of the configured size at `pts` (90 kHz) into `out`, replacing its
    /// contents with an Annex-B access unit. Returns whether a picture was produced.
    pub fn encode(
        &mut self,
        image: &I420Planes<'_>,
        pts: u64,
        out: &mut EncodedFrame,
    ) -> Result<bool> {
        if image.width != self.width || image.height != self.height {
            return Err(Error::invalid(format!(
                "H.264 encoder is configured for {}x{}, got {}x{}",
                self.width, self.height, image.width, image.height
            )));
        }
        // OpenH264 reads the planes through raw pointers: check them first.
        validate_i420(image)?;
        let pts = pts.max(self.next_pts);
        self.next_pts = pts + 1;
        let first = !self.started;
        self.started = true;
        let stream = self
            .encoder
            .encode_at(&Source(image), Timestamp::from_millis(pts / 90))
            .map_err(|e| h264_error("encode", e))?;
        out.data.clear();
        out.pts = pts;
        out.keyframe = matches!(stream.frame_type(), FrameType::IDR | FrameType::I);
        if !matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            stream.write_vec(&mut out.data);
        }
        if first {
            // Only now is the codec initialised and able to take the bitrate headroom.
            self.apply_bitrate(self.bitrate)?;
        }
        Ok(!out.data.is_empty())
    }
}
