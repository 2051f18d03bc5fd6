//! Safe owners of libopus encoder and decoder states: decode, FEC recovery, concealment, encode.
//! Pure codec calls on caller buffers; must not know about RTP, timing or threads.

use std::os::raw::c_int;
use std::ptr::NonNull;

use libopus_sys as sys;

use crate::error::{Error, ErrorKind, Result};

/// The sample rates libopus can decode to and encode from directly.
pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// The longest Opus packet is 120 ms; at 48 kHz that is 5760 samples per channel.
pub const MAX_FRAME_SAMPLES_48K: usize = 5760;

/// The largest encoded packet we ask libopus for (its recommended maximum).
pub const MAX_PACKET_BYTES: usize = 4000;

fn check_params(sample_rate: u32, channels: u16) -> Result<()> {
    if !OPUS_RATES.contains(&sample_rate) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "Opus sample rate must be 8000, 12000, 16000, 24000 or 48000, got {sample_rate}"
            ),
        ));
    }
    if channels != 1 && channels != 2 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("Opus channels must be 1 or 2, got {channels}"),
        ));
    }
    Ok(())
}

fn opus_error(what: &str, code: c_int) -> Error {
    // SAFETY: opus_strerror returns a pointer to a static NUL-terminated string for any code.
    let text = unsafe { std::ffi::CStr::from_ptr(sys::opus_strerror(code)) };
    let kind = if code == sys::OPUS_BUFFER_TOO_SMALL {
        ErrorKind::BufferTooSmall
    } else if code == sys::OPUS_INVALID_PACKET || code == sys::OPUS_BAD_ARG {
        ErrorKind::InvalidArgument
    } else {
        ErrorKind::Internal
    };
    Error::new(kind, format!("{what}: {} ({code})", text.to_string_lossy()))
}

/// Whether an Opus packet carries in-band FEC (LBRR) data for the previous frame.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    if packet.is_empty() || packet.len() > i32::MAX as usize {
        return false;
    }
    // SAFETY: the pointer and length describe a live slice; libopus only reads it.
    unsafe { sys::opus_packet_has_lbrr(packet.as_ptr(), packet.len() as i32) > 0 }
}

/// The duration of an Opus packet in samples per channel at `sample_rate`, if the packet is valid.
pub fn packet_samples(packet: &[u8], sample_rate: u32) -> Option<usize> {
    if packet.is_empty() || packet.len() > i32::MAX as usize {
        return None;
    }
    // SAFETY: the pointer and length describe a live slice; libopus only reads it.
    let n = unsafe {
        sys::opus_packet_get_nb_samples(packet.as_ptr(), packet.len() as i32, sample_rate as i32)
    };
    (n > 0).then_some(n as usize)
}

/// A libopus decoder state, owned and freed by this value.
pub struct OpusDecoder {
    state: NonNull<sys::OpusDecoder>,
    sample_rate: u32,
    channels: u16,
}

// SAFETY: the decoder state is plain heap memory with no thread affinity; `&mut self` on every
// call guarantees exclusive access.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    /// A decoder producing `channels` (1 or 2) interleaved channels at `sample_rate` (an Opus rate).
    pub fn new(sample_rate: u32, channels: u16) -> Result<Self> {
        check_params(sample_rate, channels)?;
        let mut err: c_int = 0;
        // SAFETY: parameters are validated; `err` is a valid out pointer.
        let ptr =
            unsafe { sys::opus_decoder_create(sample_rate as i32, channels as c_int, &mut err) };
        match NonNull::new(ptr) {
            Some(state) if err == sys::OPUS_OK as c_int => Ok(Self {
                state,
                sample_rate,
                channels,
            }),
            _ => Err(opus_error("opus_decoder_create", err)),
        }
    }

    /// The output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The output channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Decodes `packet` into `out` (interleaved); returns samples per channel written.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize> {
        if packet.is_empty() {
            return Err(Error::invalid("empty Opus packet"));
        }
        let frame = out.len() / self.channels as usize;
        self.raw_decode(Some(packet), out, frame, false)
    }

    /// Recovers the lost frame before `next_packet` from its in-band FEC into `out`.
    ///
    /// `frame_samples` (per channel) is the duration of the lost packet. When `next_packet` has
    /// no FEC, libopus falls back to concealment, so the output length is the same either way.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [i16],
        frame_samples: usize,
    ) -> Result<usize> {
        if next_packet.is_empty() {
            return Err(Error::invalid("empty Opus packet"));
        }
        self.raw_decode(Some(next_packet), out, frame_samples, true)
    }

    /// Packet loss concealment: synthesises `frame_samples` per channel into `out`.
    pub fn conceal(&mut self, out: &mut [i16], frame_samples: usize) -> Result<usize> {
        self.raw_decode(None, out, frame_samples, false)
    }

    fn raw_decode(
        &mut self,
        packet: Option<&[u8]>,
        out: &mut [i16],
        frame_samples: usize,
        fec: bool,
    ) -> Result<usize> {
        let ch = self.channels as usize;
        if frame_samples == 0 || out.len() < frame_samples * ch {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!(
                    "decode buffer holds {} samples, need {} ({} per channel)",
                    out.len(),
                    frame_samples * ch,
                    frame_samples
                ),
            ));
        }
        let max = MAX_FRAME_SAMPLES_48K * self.sample_rate as usize / 48000;
        let frame = frame_samples.min(max);
        let (data, len) = match packet {
            Some(p) if p.len() <= i32::MAX as usize => (p.as_ptr(), p.len() as i32),
            Some(_) => return Err(Error::invalid("Opus packet too large")),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `data`/`len` describe a live slice or are NULL/0 (PLC); `out` holds at least
        // `frame * channels` samples, which is what libopus may write.
        let n = unsafe {
            sys::opus_decode(
                self.state.as_ptr(),
                data,
                len,
                out.as_mut_ptr(),
                frame as c_int,
                fec as c_int,
            )
        };
        if n < 0 {
            return Err(opus_error("opus_decode", n));
        }
        Ok(n as usize)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: the state came from opus_decoder_create and is destroyed exactly once.
        unsafe { sys::opus_decoder_destroy(self.state.as_ptr()) }
    }
}

/// A libopus encoder state (VoIP application), owned and freed by this value.
pub struct OpusEncoder {
    state: NonNull<sys::OpusEncoder>,
    sample_rate: u32,
    channels: u16,
}

// SAFETY: as for the decoder, the state has no thread affinity and `&mut self` guards it.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    /// An encoder for `channels` interleaved channels at `sample_rate` (an Opus rate).
    ///
    /// `bitrate` is in bits per second, `complexity` 0..=10. With `fec` the encoder adds in-band
    /// FEC tuned for 10 % loss.
    pub fn new(
        sample_rate: u32,
        channels: u16,
        bitrate: u32,
        complexity: u8,
        fec: bool,
    ) -> Result<Self> {
        check_params(sample_rate, channels)?;
        if !(500..=512_000).contains(&bitrate) {
            return Err(Error::invalid(format!(
                "Opus bitrate must be 500..=512000 bit/s, got {bitrate}"
            )));
        }
        if complexity > 10 {
            return Err(Error::invalid(format!(
                "Opus complexity must be 0..=10, got {complexity}"
            )));
        }
        let mut err: c_int = 0;
        // SAFETY: parameters are validated; `err` is a valid out pointer.
        let ptr = unsafe {
            sys::opus_encoder_create(
                sample_rate as i32,
                channels as c_int,
                sys::OPUS_APPLICATION_VOIP as c_int,
                &mut err,
            )
        };
        let state = match NonNull::new(ptr) {
            Some(state) if err == sys::OPUS_OK as c_int => state,
            _ => return Err(opus_error("opus_encoder_create", err)),
        };
        let mut enc = Self {
            state,
            sample_rate,
            channels,
        };
        enc.ctl(sys::OPUS_SET_BITRATE_REQUEST, bitrate as i32)?;
        enc.ctl(sys::OPUS_SET_COMPLEXITY_REQUEST, complexity as i32)?;
        enc.ctl(sys::OPUS_SET_SIGNAL_REQUEST, sys::OPUS_SIGNAL_VOICE as i32)?;
        if fec {
            enc.ctl(sys::OPUS_SET_INBAND_FEC_REQUEST, 1)?;
            enc.ctl(sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST, 10)?;
        }
        Ok(enc)
    }

    fn ctl(&mut self, request: u32, value: i32) -> Result<()> {
        // SAFETY: every request used here is a SET request taking one opus_int32 argument.
        let r = unsafe { sys::opus_encoder_ctl(self.state.as_ptr(), request as c_int, value) };
        if r != sys::OPUS_OK as c_int {
            return Err(opus_error("opus_encoder_ctl", r));
        }
        Ok(())
    }

    /// The input sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The input channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Encodes one frame of interleaved `pcm` (2.5/5/10/20/40/60 ms) into `out`; returns bytes.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize> {
        let ch = self.channels as usize;
        let frame = pcm.len() / ch;
        let rate = self.sample_rate as usize;
        let valid = [
            rate / 400,
            rate / 200,
            rate / 100,
            rate / 50,
            rate / 25,
            rate * 3 / 50,
        ]
        .contains(&frame);
        if !pcm.len().is_multiple_of(ch) || !valid {
            return Err(Error::invalid(format!(
                "Opus frame of {} samples per channel at {} Hz is not 2.5, 5, 10, 20, 40 or 60 ms",
                frame, self.sample_rate
            )));
        }
        if out.is_empty() {
            return Err(Error::new(ErrorKind::BufferTooSmall, "empty encode buffer"));
        }
        let max = out.len().min(i32::MAX as usize) as i32;
        // SAFETY: `pcm` holds `frame * channels` samples; `out` holds `max` writable bytes.
        let n = unsafe {
            sys::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                frame as c_int,
                out.as_mut_ptr(),
                max,
            )
        };
        if n < 0 {
            return Err(opus_error("opus_encode", n));
        }
        Ok(n as usize)
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: the state came from opus_encoder_create and is destroyed exactly once.
        unsafe { sys::opus_encoder_destroy(self.state.as_ptr()) }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sine of `freq` Hz, `secs` long, at `rate`, mono, amplitude 10 000.
    pub(crate) fn sine(rate: u32, freq: f64, samples: usize, offset: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = (i + offset) as f64 / rate as f64;
                (10_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    /// Frequency estimated from zero crossings of a mono signal.
    pub(crate) fn zero_cross_freq(pcm: &[i16], rate: u32) -> f64 {
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (pcm.len() as f64 / rate as f64)
    }

    pub(crate) fn rms(pcm: &[i16]) -> f64 {
        let sum: f64 = pcm.iter().map(|&s| (s as f64) * (s as f64)).sum();
        (sum / pcm.len().max(1) as f64).sqrt()
    }

    fn roundtrip(rate: u32) {
        let frame = rate as usize / 50;
        let input = sine(rate, 1000.0, rate as usize, 0);
        let mut enc = OpusEncoder::new(rate, 1, 32_000, 5, true).unwrap();
        let mut dec = OpusDecoder::new(rate, 1).unwrap();
        let mut out = Vec::new();
        let mut pkt = [0u8; MAX_PACKET_BYTES];
        let mut buf = vec![0i16; frame];
        for chunk in input.chunks(frame) {
            let n = enc.encode(chunk, &mut pkt).unwrap();
            let got = dec.decode(&pkt[..n], &mut buf).unwrap();
            assert_eq!(got, frame);
            out.extend_from_slice(&buf[..got]);
        }
        // Skip the codec's start-up (look-ahead plus the encoder settling).
        let steady = &out[rate as usize / 10..];
        let f = zero_cross_freq(steady, rate);
        assert!((f - 1000.0).abs() < 20.0, "frequency {f} at {rate}");
        let db = 20.0 * (rms(steady) / rms(&input)).log10();
        assert!(db.abs() < 2.0, "level {db} dB at {rate}");
    }

    #[test]
    fn roundtrip_48k_keeps_tone() {
        roundtrip(48000);
    }

    #[test]
    fn roundtrip_16k_keeps_tone() {
        roundtrip(16000);
    }

    #[test]
    fn fec_and_plc_fill_frames() {
        let mut enc = OpusEncoder::new(48000, 1, 32_000, 5, true).unwrap();
        let mut dec = OpusDecoder::new(48000, 1).unwrap();
        let input = sine(48000, 1000.0, 48000, 0);
        let mut pkts = Vec::new();
        let mut pkt = [0u8; MAX_PACKET_BYTES];
        for chunk in input.chunks(960) {
            let n = enc.encode(chunk, &mut pkt).unwrap();
            pkts.push(pkt[..n].to_vec());
        }
        let mut buf = vec![0i16; 960 * 3];
        for p in &pkts[..20] {
            dec.decode(p, &mut buf).unwrap();
        }
        assert!(pkts[20..].iter().any(|p| packet_has_fec(p)));
        assert_eq!(packet_samples(&pkts[21], 48000), Some(960));
        // Packet 20 is lost: recover it from 21's FEC, then decode 21 itself.
        assert_eq!(dec.decode_fec(&pkts[21], &mut buf, 960).unwrap(), 960);
        assert!(rms(&buf[..960]) > 1000.0, "FEC output is not silent");
        assert_eq!(dec.decode(&pkts[21], &mut buf).unwrap(), 960);
        assert_eq!(dec.conceal(&mut buf, 960).unwrap(), 960);
        assert_eq!(dec.conceal(&mut buf, 480).unwrap(), 480);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(OpusDecoder::new(44100, 1).is_err());
        assert!(OpusDecoder::new(48000, 3).is_err());
        assert!(OpusEncoder::new(22050, 1, 32_000, 5, false).is_err());
        assert!(OpusEncoder::new(48000, 1, 32_000, 11, false).is_err());
        let mut dec = OpusDecoder::new(48000, 2).unwrap();
        let mut small = [0i16; 10];
        assert!(dec.conceal(&mut small, 960).is_err());
        assert!(dec.decode(&[], &mut small).is_err());
        let mut buf = vec![0i16; 5760 * 2];
        assert!(dec.decode(&[0xff, 0xff, 0xff], &mut buf).is_err());
        let mut enc = OpusEncoder::new(48000, 1, 32_000, 5, false).unwrap();
        let mut out = [0u8; 100];
        assert!(enc.encode(&[0i16; 123], &mut out).is_err());
        assert!(enc.encode(&[0i16; 960], &mut out).is_ok());
    }
}
