//! The sans-IO audio-out pipeline of one peer: pace, resample to an Opus rate, encode.
//! Owns an [`AudioPacer`], an optional resampler and the Opus encoder; the caller passes the
//! time in and sends the packets. Must not touch sockets, clocks or threads.

use std::time::{Duration, Instant};

use super::opus::{OpusEncoder, MAX_PACKET_BYTES};
use super::pacer::{AudioPacer, WriteId};
use super::resample::{opus_native_rate, Resampler};
use crate::error::{Error, Result};

/// Encoder effort: 5 keeps hundreds of voice sessions per core affordable at good quality.
#[cfg(test)]
const COMPLEXITY: u8 = 5;

/// One encoded Opus packet, ready for RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    /// The Opus payload.
    pub data: Vec<u8>,
    /// RTP timestamp in 48 kHz units.
    pub rtp_time: u64,
    /// Duration in 48 kHz units.
    pub duration_48k: u32,
    /// Writes whose last sample is in this packet, oldest first.
    pub completed: Vec<WriteId>,
    /// Whether the packet is pacer-made silence.
    pub silence: bool,
}

/// Paces app audio and turns it into Opus packets in real time.
pub struct AudioSender {
    pacer: AudioPacer,
    resampler: Option<Resampler>,
    encoder: OpusEncoder,
    /// Interleaved samples at the encoder rate waiting to be encoded.
    fifo: Vec<i16>,
    /// Interleaved samples per packet at the encoder rate.
    frame_len: usize,
    spare: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    /// Consecutive pacer-made silence packets; past a few the encoder is skipped.
    silent_run: u32,
    /// Whether packets are 20 ms (the only size the canned silence frame is for).
    twenty_ms: bool,
}

/// A 20 ms CELT-only Opus frame of digital silence (TOC 0xF8: config 31, mono, one frame).
/// Sent instead of encoding silence once the encoder has been flushed with a few real
/// silent frames: an idle voice bot then costs no encoder time (100 idle sessions spent
/// 86 % of a core encoding silence before this).
pub const OPUS_SILENCE_20MS: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Real silent frames encoded after audio before switching to the canned frame, so the
/// encoder's and the decoder's states both settle on silence.
const SILENCE_FLUSH: u32 = 3;

impl AudioSender {
    /// A sender for `channels` (1 or 2) at `app_rate` Hz in packets of `packet_10ms_units` × 10
    /// ms (1, 2, 4 or 6: the Opus frame sizes), at `bitrate` bit/s with in-band FEC.
    pub fn new(
        app_rate: u32,
        channels: u16,
        packet_10ms_units: u32,
        auto_silence: bool,
        bitrate: u32,
        complexity: u8,
        fec: bool,
    ) -> Result<Self> {
        if ![1, 2, 4, 6].contains(&packet_10ms_units) {
            return Err(Error::invalid(format!(
                "audio-out packets must be 1, 2, 4 or 6 units of 10 ms (Opus frame sizes), \
                 got {packet_10ms_units}"
            )));
        }
        let pacer = AudioPacer::new(app_rate, channels, packet_10ms_units, auto_silence)?;
        let enc_rate = if opus_native_rate(app_rate) {
            app_rate
        } else {
            48000
        };
        let resampler = if enc_rate == app_rate {
            None
        } else {
            Some(Resampler::new(app_rate, enc_rate, channels)?)
        };
        let encoder = OpusEncoder::new(enc_rate, channels, bitrate, complexity, fec)?;
        let frame_len = (enc_rate / 100 * packet_10ms_units) as usize * channels as usize;
        Ok(Self {
            pacer,
            resampler,
            encoder,
            fifo: Vec::with_capacity(frame_len * 2),
            frame_len,
            spare: Vec::new(),
            scratch: Vec::new(),
            silent_run: 0,
            twenty_ms: packet_10ms_units == 2,
        })
    }

    /// Queues interleaved app-rate `pcm`, a whole non-zero number of 10 ms (see
    /// [`AudioPacer::write`]).
    pub fn write(&mut self, pcm: &[i16]) -> Result<WriteId> {
        self.pacer.write(pcm)
    }

    /// Drops all queued audio; returns the writes that will never complete.
    pub fn clear(&mut self) -> Vec<WriteId> {
        self.pacer.clear()
    }

    /// Audio waiting to be sent.
    pub fn queued(&self) -> Duration {
        self.pacer.queued()
    }

    /// When the next packet is due; `None` until the first poll.
    pub fn next_due(&self) -> Option<Instant> {
        self.pacer.next_due()
    }

    /// The pacer underneath, for its counters.
    pub fn pacer(&self) -> &AudioPacer {
        &self.pacer
    }

    /// Hands back a sent packet's buffer for reuse.
    pub fn recycle(&mut self, mut data: Vec<u8>) {
        if self.spare.len() < 2 {
            data.clear();
            self.spare.push(data);
        }
    }

    /// The next encoded packet if one is due at `now` (see [`AudioPacer::poll`]).
    pub fn poll(&mut self, now: Instant) -> Result<Option<EncodedPacket>> {
        let Some(packet) = self.pacer.poll(now) else {
            return Ok(None);
        };
        if packet.silence && self.twenty_ms && self.resampler.is_none() {
            self.silent_run = self.silent_run.saturating_add(1);
        } else {
            self.silent_run = 0;
        }
        if self.silent_run > SILENCE_FLUSH {
            self.pacer.recycle(packet.pcm);
            let mut data = self.spare.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(&OPUS_SILENCE_20MS);
            return Ok(Some(EncodedPacket {
                data,
                rtp_time: packet.rtp_time,
                duration_48k: self.pacer.packet_duration_48k(),
                completed: packet.completed,
                silence: true,
            }));
        }
        match &mut self.resampler {
            None => self.fifo.extend_from_slice(&packet.pcm),
            Some(rs) => rs.process(&packet.pcm, &mut self.fifo)?,
        }
        self.pacer.recycle(packet.pcm);
        if self.fifo.len() < self.frame_len {
            // Only possible while a resampler fills its first block: pad, never stall the clock.
            let missing = self.frame_len - self.fifo.len();
            self.fifo.splice(0..0, std::iter::repeat_n(0, missing));
        }
        // Encode into a reused scratch buffer; the packet gets only the bytes it needs.
        if self.scratch.len() < MAX_PACKET_BYTES {
            self.scratch.resize(MAX_PACKET_BYTES, 0);
        }
        let n = self
            .encoder
            .encode(&self.fifo[..self.frame_len], &mut self.scratch)?;
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(&self.scratch[..n]);
        self.fifo.drain(..self.frame_len);
        Ok(Some(EncodedPacket {
            data,
            rtp_time: packet.rtp_time,
            duration_48k: self.pacer.packet_duration_48k(),
            completed: packet.completed,
            silence: packet.silence,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::opus::tests::{rms, sine, zero_cross_freq};
    use super::super::opus::OpusDecoder;
    use super::*;

    /// Writes 2 s of a 1 kHz tone at `rate`, drains the sender on a virtual clock and decodes
    /// the result at 48 kHz.
    fn tone_through(rate: u32, channels: u16, units: u32) -> (Vec<EncodedPacket>, Vec<i16>) {
        let mut tx =
            AudioSender::new(rate, channels, units, false, 48_000, COMPLEXITY, true).unwrap();
        let mono = sine(rate, 1000.0, rate as usize * 2, 0);
        let pcm: Vec<i16> = mono
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, channels as usize))
            .collect();
        let id = tx.write(&pcm).unwrap();
        let t0 = Instant::now();
        let step = Duration::from_millis(10 * units as u64);
        let mut pkts = Vec::new();
        let count = 200u32.div_ceil(units);
        for k in 0..count {
            pkts.extend(tx.poll(t0 + step * k).unwrap());
        }
        assert!(tx.poll(t0 + step * count).unwrap().is_none());
        assert_eq!(pkts.len() as u32, count);
        assert_eq!(pkts.last().unwrap().completed, vec![id]);
        let mut dec = OpusDecoder::new(48000, channels).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0i16; 5760 * 2];
        for (k, p) in pkts.iter().enumerate() {
            assert_eq!(p.rtp_time, k as u64 * 480 * units as u64);
            assert_eq!(p.duration_48k, 480 * units);
            let n = dec.decode(&p.data, &mut buf).unwrap();
            assert_eq!(n, 480 * units as usize);
            out.extend(
                buf[..n * channels as usize]
                    .iter()
                    .step_by(channels as usize),
            );
        }
        (pkts, out)
    }

    fn check_tone(out: &[i16]) {
        let steady = &out[48000 / 5..out.len() - 4800];
        let f = zero_cross_freq(steady, 48000);
        assert!((f - 1000.0).abs() < 20.0, "{f} Hz");
        let db = 20.0 * (rms(steady) / 7071.0).log10();
        assert!(db.abs() < 2.0, "level {db} dB");
    }

    #[test]
    fn tone_at_24k_decodes_at_the_right_frequency() {
        let (_, out) = tone_through(24000, 1, 2);
        check_tone(&out);
    }

    #[test]
    fn tone_at_44k1_is_resampled() {
        let (_, out) = tone_through(44100, 1, 2);
        check_tone(&out);
    }

    #[test]
    fn stereo_and_other_packet_sizes() {
        check_tone(&tone_through(48000, 2, 1).1);
        check_tone(&tone_through(16000, 1, 4).1);
        check_tone(&tone_through(32000, 1, 6).1);
    }

    #[test]
    fn auto_silence_packets_are_small_and_flagged() {
        let mut tx = AudioSender::new(16000, 1, 2, true, 32_000, COMPLEXITY, true).unwrap();
        let t0 = Instant::now();
        for k in 0..10u32 {
            let p = tx
                .poll(t0 + Duration::from_millis(20) * k)
                .unwrap()
                .unwrap();
            assert!(p.silence);
            assert!(p.data.len() < 20, "{} bytes of silence", p.data.len());
            tx.recycle(p.data);
        }
    }

    #[test]
    fn long_silence_uses_the_canned_frame_and_audio_resumes() {
        let mut tx = AudioSender::new(24_000, 1, 2, true, 32_000, COMPLEXITY, true).unwrap();
        let mut dec = OpusDecoder::new(48_000, 1).unwrap();
        let t0 = Instant::now();
        let mut canned = 0;
        let mut pcm = vec![0i16; 960];
        for i in 0..20u64 {
            let p = tx
                .poll(t0 + Duration::from_millis(20 * i))
                .unwrap()
                .unwrap();
            assert!(p.silence);
            if p.data == OPUS_SILENCE_20MS {
                canned += 1;
            }
            assert_eq!(dec.decode(&p.data, &mut pcm).unwrap(), 960);
            assert!(
                pcm.iter().all(|&s| s.abs() < 100),
                "silence decodes to near silence"
            );
        }
        assert_eq!(canned, 20 - SILENCE_FLUSH as usize);
        let tone: Vec<i16> = (0..4800)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 24_000.0).sin() * 8000.0) as i16
            })
            .collect();
        tx.write(&tone).unwrap();
        let mut loud = 0;
        for i in 20..30u64 {
            let p = tx
                .poll(t0 + Duration::from_millis(20 * i))
                .unwrap()
                .unwrap();
            assert!(!p.silence);
            assert_ne!(p.data, OPUS_SILENCE_20MS);
            dec.decode(&p.data, &mut pcm).unwrap();
            if pcm
                .iter()
                .map(|&s| s.unsigned_abs() as u32)
                .max()
                .unwrap_or(0)
                > 2000
            {
                loud += 1;
            }
        }
        assert!(loud >= 8, "audio after silence is heard: {loud}");
    }

    #[test]
    fn bad_packet_sizes_rejected() {
        assert!(AudioSender::new(48000, 1, 3, true, 32_000, COMPLEXITY, true).is_err());
        assert!(AudioSender::new(48000, 1, 5, true, 32_000, COMPLEXITY, true).is_err());
        assert!(AudioSender::new(22050, 1, 2, true, 32_000, COMPLEXITY, true).is_err());
        let mut tx = AudioSender::new(48000, 1, 2, true, 32_000, COMPLEXITY, true).unwrap();
        assert!(tx.write(&[0; 100]).is_err());
        let a = tx.write(&[0; 480]).unwrap();
        assert_eq!(tx.clear(), vec![a]);
    }
}
