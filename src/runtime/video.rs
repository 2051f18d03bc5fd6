//! Per-peer video pipes. In: I/O thread → small inbox → worker (decode, convert to RGB) →
//! latest-frame slot → app. Out: app RGB frame (latest wins) → worker (convert, encode) →
//! I/O command → wire. Codec work never runs on the I/O thread.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use tracing::debug;

use super::bitrate::{BitrateController, EstimateCell};
use super::command::{Command, IoHandle};
use super::sink::Sink;
use super::workers::{Lane, Work, Workers};
use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::media::video::{
    EncodedFrame, LatestFrame, RgbImage, VideoCodec, VideoDecoder, VideoEncoder,
    VideoEncoderConfig, VideoFrame, VideoSource,
};
use crate::session::VideoPacket;

/// Frames waiting for a worker per track. Video is latest-wins: past this the queue is
/// dropped and decoding restarts at the next keyframe.
const INBOX: usize = 8;

/// Video counters of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VideoStats {
    /// Frames decoded per source (camera, screen).
    pub in_frames_decoded: [u64; 2],
    /// Decoded frames replaced before the app took them, per source.
    pub in_frames_overwritten: [u64; 2],
    /// Encoded frames dropped because workers fell behind or decoding failed, per source.
    pub in_frames_dropped: [u64; 2],
    /// Decode errors per source (each triggers a keyframe request).
    pub in_decode_errors: [u64; 2],
    /// Frames encoded and handed to the network.
    pub out_frames_sent: u64,
    /// Frames the app wrote that were replaced by a newer one before encoding, or dropped
    /// before video was negotiated.
    pub out_frames_dropped: u64,
    /// Frames the encoder skipped to hold its bitrate (libvpx frame dropping).
    pub out_frames_skipped: u64,
    /// Keyframe requests (PLI/FIR) from the client.
    pub out_keyframe_requests: u64,
    /// Keyframes sent.
    pub out_keyframes_sent: u64,
}

struct InState {
    decoder: Option<VideoDecoder>,
    frame: VideoFrame,
}

/// The decode pipe of one incoming video track.
pub(crate) struct VideoIn {
    peer_id: u64,
    receiver_index: usize,
    io: IoHandle,
    tx: Sender<VideoPacket>,
    rx: Receiver<VideoPacket>,
    scheduled: AtomicBool,
    skip_to_keyframe: AtomicBool,
    state: Mutex<InState>,
    pub slot: LatestFrame,
    /// With a frame callback installed, frames go to it instead of the slot.
    pub sink: Sink<VideoFrame>,
    decoded: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl VideoIn {
    pub fn new(source: VideoSource, peer_id: u64, io: IoHandle) -> Arc<VideoIn> {
        let (tx, rx) = bounded(INBOX);
        Arc::new(VideoIn {
            peer_id,
            receiver_index: source.index() + 1,
            io,
            tx,
            rx,
            scheduled: AtomicBool::new(false),
            skip_to_keyframe: AtomicBool::new(false),
            state: Mutex::new(InState {
                decoder: None,
                frame: VideoFrame::new(source),
            }),
            slot: LatestFrame::new(source),
            sink: Sink::default(),
            decoded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn request_keyframe(&self) {
        self.skip_to_keyframe.store(true, Ordering::Release);
        self.io.try_send(Command::RequestKeyframe {
            id: self.peer_id,
            receiver_index: self.receiver_index,
        });
    }

    /// I/O thread: queue a frame and wake a worker.
    pub fn push(self: &Arc<Self>, pkt: VideoPacket, workers: &Workers) {
        if let Err(crossbeam_channel::TrySendError::Full(_)) = self.tx.try_send(pkt) {
            // Behind: what is queued depends on what we drop, so restart at a keyframe.
            let mut n = 1;
            while self.rx.try_recv().is_ok() {
                n += 1;
            }
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.request_keyframe();
        }
        if !self.scheduled.swap(true, Ordering::AcqRel)
            && !workers.submit(Lane::Video, self.clone())
        {
            self.scheduled.store(false, Ordering::Release);
        }
    }

    /// Worker: decode what is queued into the latest-frame slot, or the callback.
    pub fn run(&self) {
        self.scheduled.store(false, Ordering::Release);
        // Gate first, then state: a callback may read stats (atomics and the slot only).
        let gate = self.sink.open();
        let mut st = self.state.lock();
        while let Ok(pkt) = self.rx.try_recv() {
            let codec = match pkt.codec {
                str0m::format::Codec::Vp8 => VideoCodec::Vp8,
                str0m::format::Codec::H264 => VideoCodec::H264,
                _ => continue,
            };
            if self.skip_to_keyframe.load(Ordering::Acquire) {
                if !pkt.keyframe {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.skip_to_keyframe.store(false, Ordering::Release);
            }
            let InState { decoder, frame } = &mut *st;
            if decoder.as_ref().map(|d| d.codec()) != Some(codec) {
                match VideoDecoder::new(codec) {
                    Ok(d) => *decoder = Some(d),
                    Err(e) => {
                        debug!("no {codec:?} decoder: {e}");
                        continue;
                    }
                }
            }
            let Some(dec) = decoder.as_mut() else {
                continue;
            };
            match dec.decode(&pkt.data, pkt.rtp_time, frame) {
                Ok(true) => {
                    self.decoded.fetch_add(1, Ordering::Relaxed);
                    if !gate.as_ref().is_some_and(|g| g.deliver(frame)) {
                        self.slot.publish(frame);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    debug!("video decode failed, asking for a keyframe: {e}");
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    self.request_keyframe();
                }
            }
        }
    }

    fn fill_stats(&self, s: &mut VideoStats, i: usize) {
        s.in_frames_decoded[i] = self.decoded.load(Ordering::Relaxed);
        s.in_frames_overwritten[i] = self.slot.overwritten();
        s.in_frames_dropped[i] = self.dropped.load(Ordering::Relaxed);
        s.in_decode_errors[i] = self.errors.load(Ordering::Relaxed);
    }
}

const CODEC_NONE: u8 = 0;
const CODEC_VP8: u8 = 1;
const CODEC_H264: u8 = 2;

struct OutState {
    encoder: Option<VideoEncoder>,
    encoded: EncodedFrame,
    /// The frame being encoded (swapped with `pending`).
    work: Vec<u8>,
    rate: BitrateController,
}

#[derive(Default)]
struct Pending {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    full: bool,
}

/// The encode pipe of the video we send.
pub(crate) struct VideoOut {
    peer_id: u64,
    io: IoHandle,
    /// The size the app pinned in its config; `None` follows the frames it writes.
    pinned: Option<(u32, u32)>,
    framerate: u32,
    /// The newest frame the app wrote, not yet encoded (latest wins), and its size.
    pending: Mutex<Pending>,
    state: Mutex<OutState>,
    scheduled: AtomicBool,
    codec: AtomicU8,
    force_keyframe: AtomicBool,
    start: Instant,
    sent: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    keyframe_requests: AtomicU64,
    keyframes: AtomicU64,
    /// The bandwidth estimate (written by the I/O thread) and the target we chose.
    estimate: Arc<EstimateCell>,
}

impl VideoOut {
    pub fn new(
        cfg: &PeerConfig,
        peer_id: u64,
        io: IoHandle,
        estimate: Arc<EstimateCell>,
    ) -> Result<Arc<VideoOut>> {
        let pinned = match (cfg.video_out_width, cfg.video_out_height) {
            (0, 0) => None,
            (w, h) => {
                // Validate a pinned size once, up front, with the encoder's own rules.
                VideoEncoderConfig::new(VideoCodec::Vp8, w, h).validate()?;
                Some((w, h))
            }
        };
        Ok(Arc::new(VideoOut {
            peer_id,
            io,
            pinned,
            framerate: cfg.video_out_framerate.max(1),
            pending: Mutex::new(Pending::default()),
            state: Mutex::new(OutState {
                encoder: None,
                encoded: EncodedFrame::default(),
                work: Vec::new(),
                rate: BitrateController::new(cfg.video_out_bitrate),
            }),
            scheduled: AtomicBool::new(false),
            codec: AtomicU8::new(CODEC_NONE),
            force_keyframe: AtomicBool::new(true),
            start: Instant::now(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            estimate,
        }))
    }

    /// I/O thread, after each negotiation: the codec the client prefers.
    pub fn set_codec(&self, codec: Option<str0m::format::Codec>) {
        let v = match codec {
            Some(str0m::format::Codec::Vp8) => CODEC_VP8,
            Some(str0m::format::Codec::H264) => CODEC_H264,
            _ => CODEC_NONE,
        };
        if self.codec.swap(v, Ordering::AcqRel) != v {
            self.force_keyframe.store(true, Ordering::Release);
        }
    }

    /// The client asked for a keyframe (PLI/FIR).
    pub fn request_keyframe(&self) {
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        self.force_keyframe.store(true, Ordering::Release);
    }

    /// App: a packed RGB24 frame (of the pinned size, if the config pins one; else any
    /// even size); `stride` 0 means `width * 3`.
    pub fn write(
        self: &Arc<Self>,
        rgb: &[u8],
        width: u32,
        height: u32,
        stride: usize,
        workers: &Workers,
    ) -> Result<()> {
        match self.pinned {
            Some((w, h)) if (w, h) != (width, height) => {
                return Err(Error::invalid(format!(
                    "frame is {width}x{height}; this peer sends {w}x{h} (video_out_width/height)"
                )));
            }
            Some(_) => {}
            // Any size the encoders take; a new one reconfigures the encoder (see `run`).
            None => VideoEncoderConfig::new(VideoCodec::Vp8, width, height).validate()?,
        }
        let row = width as usize * 3;
        let stride = if stride == 0 { row } else { stride };
        if stride < row {
            return Err(Error::invalid(format!(
                "stride {stride} is less than width * 3 = {row}"
            )));
        }
        let need = stride * (height as usize - 1) + row;
        if rgb.len() < need {
            return Err(Error::invalid(format!(
                "frame has {} bytes; {width}x{height} RGB24 with stride {stride} needs {need}",
                rgb.len()
            )));
        }
        {
            let mut p = self.pending.lock();
            if p.full {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            p.rgb.clear();
            for y in 0..height as usize {
                p.rgb.extend_from_slice(&rgb[y * stride..y * stride + row]);
            }
            (p.width, p.height, p.full) = (width, height, true);
        }
        if !self.scheduled.swap(true, Ordering::AcqRel)
            && !workers.submit(Lane::Video, self.clone())
        {
            self.scheduled.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Worker: encode the newest frame.
    pub fn run(&self) {
        self.scheduled.store(false, Ordering::Release);
        let mut st = self.state.lock();
        let (width, height) = {
            let mut p = self.pending.lock();
            if !p.full {
                return;
            }
            std::mem::swap(&mut p.rgb, &mut st.work);
            p.full = false;
            (p.width, p.height)
        };
        let (codec, str0m_codec) = match self.codec.load(Ordering::Acquire) {
            CODEC_VP8 => (VideoCodec::Vp8, str0m::format::Codec::Vp8),
            CODEC_H264 => (VideoCodec::H264, str0m::format::Codec::H264),
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let OutState {
            encoder,
            encoded,
            work,
            rate,
        } = &mut *st;
        let now = Instant::now();
        // A new codec or a new frame size: a new encoder, which starts with a keyframe.
        let want = (codec, width, height);
        let fresh = encoder
            .as_ref()
            .map(|e| (e.config().codec, e.config().width, e.config().height))
            != Some(want);
        if fresh {
            if encoder.is_some() {
                debug!("video out now {codec:?} {width}x{height}: new encoder");
            }
            let mut c = VideoEncoderConfig::new(codec, width, height);
            c.framerate = self.framerate;
            // The rate the link allows now, not the configured one.
            c.bitrate = rate.target();
            match VideoEncoder::new(c) {
                Ok(e) => *encoder = Some(e),
                Err(e) => {
                    debug!("no {codec:?} encoder: {e}");
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let Some(enc) = encoder.as_mut() else { return };
        if let Some(bps) = rate.update(self.estimate.get(), now) {
            debug!("video out bitrate now {bps} bit/s");
            if let Err(e) = enc.set_bitrate(bps) {
                debug!("video bitrate change failed: {e}");
            }
        }
        rate.publish(&self.estimate);
        // A new encoder's first frame is a keyframe anyway; requests from the client are
        // paced (the request stays pending until allowed).
        if fresh {
            self.force_keyframe.store(false, Ordering::Release);
            enc.force_keyframe();
        } else if rate.keyframe_allowed(now) && self.force_keyframe.swap(false, Ordering::AcqRel) {
            enc.force_keyframe();
        }
        let pts = (self.start.elapsed().as_micros() as u64) * 9 / 100;
        let image = RgbImage::packed(work, width, height);
        match enc.encode(&image, pts, encoded) {
            Ok(true) => {
                if encoded.keyframe {
                    rate.keyframe_sent(now);
                    self.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                let data = std::mem::take(&mut encoded.data);
                let ok = self.io.try_send(Command::VideoOut {
                    id: self.peer_id,
                    codec: str0m_codec,
                    rtp_time: encoded.pts,
                    data,
                });
                let c = if ok { &self.sent } else { &self.dropped };
                c.fetch_add(1, Ordering::Relaxed);
            }
            // The encoder dropped the frame to hold its rate.
            Ok(false) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                debug!("video encode failed: {e}");
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The encoder's current target bitrate (bit/s), 0 before the first frame.
    pub fn target_bps(&self) -> u64 {
        self.estimate.target()
    }

    fn fill_stats(&self, s: &mut VideoStats) {
        s.out_frames_sent = self.sent.load(Ordering::Relaxed);
        s.out_frames_dropped = self.dropped.load(Ordering::Relaxed);
        s.out_frames_skipped = self.skipped.load(Ordering::Relaxed);
        s.out_keyframe_requests = self.keyframe_requests.load(Ordering::Relaxed);
        s.out_keyframes_sent = self.keyframes.load(Ordering::Relaxed);
    }
}

/// All video pipes of one peer.
#[derive(Default, Clone)]
pub(crate) struct VideoPipes {
    /// Camera, screen.
    pub input: [Option<Arc<VideoIn>>; 2],
    pub output: Option<Arc<VideoOut>>,
}

impl VideoPipes {
    pub fn stats(&self) -> VideoStats {
        let mut s = VideoStats::default();
        for (i, p) in self.input.iter().enumerate() {
            if let Some(p) = p {
                p.fill_stats(&mut s, i);
            }
        }
        if let Some(p) = &self.output {
            p.fill_stats(&mut s);
        }
        s
    }

    pub fn close(&self) {
        for p in self.input.iter().flatten() {
            p.slot.close();
        }
    }
}

impl Work for VideoIn {
    fn run(&self) {
        VideoIn::run(self)
    }
}

impl Work for VideoOut {
    fn run(&self) {
        VideoOut::run(self)
    }
}
