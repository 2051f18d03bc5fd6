//! The media side of a session: writing encoded audio and video on the negotiated
//! m-lines, routing received video by track, and keyframe requests. Still sans-IO.

use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Frequency, KeyframeRequestKind, MediaData, MediaTime};

use super::{Session, SessionEvent, VideoPacket};

/// Keyframe requests for one track are spaced at least this far apart.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

impl Session {
    /// Sends an encoded audio packet on the audio m-line. Dropped (false) until negotiated
    /// and connected.
    pub fn write_audio(&mut self, rtp_time: u64, wallclock: Instant, data: Vec<u8>) -> bool {
        let time = MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ);
        let ok = self.write_media(0, &[Codec::Opus], time, wallclock, data);
        self.drain(wallclock);
        self.after_mutation(wallclock);
        ok
    }

    /// Sends an encoded video frame on m-line 1 in `codec`. Dropped (false) until
    /// negotiated and connected, or if the client did not accept that codec.
    pub fn write_video(
        &mut self,
        codec: Codec,
        rtp_time_90k: u64,
        wallclock: Instant,
        data: Vec<u8>,
    ) -> bool {
        let time = MediaTime::new(rtp_time_90k, Frequency::NINETY_KHZ);
        let ok = self.write_media(1, &[codec], time, wallclock, data);
        self.drain(wallclock);
        self.after_mutation(wallclock);
        ok
    }

    /// The video codec to send in: the client's first choice among VP8 and H.264 on
    /// m-line 1, once negotiated.
    pub fn video_out_codec(&mut self) -> Option<Codec> {
        let mid = self.receiver_mids[1]?;
        let writer = self.rtc.writer(mid)?;
        let codec = writer
            .payload_params()
            .map(|p| p.spec().codec)
            .find(|c| matches!(c, Codec::Vp8 | Codec::H264));
        codec
    }

    fn write_media(
        &mut self,
        index: usize,
        codecs: &[Codec],
        time: MediaTime,
        wallclock: Instant,
        data: Vec<u8>,
    ) -> bool {
        let Some(mid) = self.receiver_mids[index] else {
            return false;
        };
        if !self.life.ever_connected() {
            return false;
        }
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| codecs.contains(&p.spec().codec))
            .map(|p| p.pt())
        else {
            return false;
        };
        writer.write(pt, wallclock, time, data).is_ok()
    }

    /// Asks the client for a keyframe on a receiver (1 camera, 2 screen), at most every
    /// 500 ms per track.
    pub fn request_keyframe(&mut self, receiver_index: usize, now: Instant) {
        let Some(Some(mid)) = self.receiver_mids.get(receiver_index).cloned() else {
            return;
        };
        if self.last_pli[receiver_index].is_some_and(|t| now < t + PLI_INTERVAL) {
            return;
        }
        if let Some(mut w) = self.rtc.writer(mid) {
            if w.is_request_keyframe_possible(KeyframeRequestKind::Pli)
                && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
            {
                self.last_pli[receiver_index] = Some(now);
                self.stats.keyframe_requests += 1;
            }
        }
        self.drain(now);
    }

    /// A received video frame: delivered when its track is enabled. A (re)started track
    /// asks for a keyframe; a re-enabled one drops frames until a keyframe arrives, since
    /// the decoder missed the frames in between.
    pub(super) fn handle_video(&mut self, m: MediaData, now: Instant) {
        let Some(index) = (1..3).find(|&i| self.receiver_mids[i] == Some(m.mid)) else {
            return;
        };
        self.stats.video_frames_in += 1;
        let keyframe = m.is_keyframe();
        if !self.track_enabled[index] {
            // The decoder misses these frames: once re-enabled, restart at a keyframe.
            self.resume_at_keyframe[index] = true;
            return;
        }
        // A (re)started track asks for a keyframe, even if its first frame is one.
        if self.need_keyframe[index] || (self.resume_at_keyframe[index] && !keyframe) {
            self.request_keyframe(index, now);
        }
        if keyframe {
            self.need_keyframe[index] = false;
            self.resume_at_keyframe[index] = false;
        } else if self.resume_at_keyframe[index] {
            return;
        }
        let codec = m.params.spec().codec;
        self.events.push_back(SessionEvent::Video(VideoPacket {
            receiver_index: index,
            codec,
            rtp_time: m.time.numer(),
            keyframe,
            data: m.data,
        }));
    }
}
