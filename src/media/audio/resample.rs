//! Fixed-ratio resampling of interleaved s16 audio in arbitrary chunk sizes (rubato underneath).
//! Owns the input FIFO and the rubato state; must not know about codecs, RTP or time.

use rubato::{FftFixedIn, SincFixedIn, SincInterpolationParameters, SincInterpolationType};
use rubato::{VecResampler, WindowFunction};

use crate::error::{Error, Result};

/// Whether libopus encodes from and decodes to `rate` directly (8, 12, 16, 24 or 48 kHz).
pub fn opus_native_rate(rate: u32) -> bool {
    super::opus::OPUS_RATES.contains(&rate)
}

/// Lowest and highest sample rates we accept, to keep buffer sizes sane.
const MIN_RATE: u32 = 8000;
const MAX_RATE: u32 = 192_000;

/// Past this many input frames per FFT block (40 ms at the input rate) the FFT resampler adds
/// too much latency, so awkward ratios use a short sinc resampler instead.
const MAX_FFT_BLOCK_MS: usize = 40;

/// Converts interleaved i16 audio from one fixed rate to another.
///
/// Input of any length is buffered; whatever output is ready is appended on each call. The
/// output lags the input by [`Resampler::delay_frames`] plus up to one processing block.
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    inner: Option<Inner>,
}

struct Inner {
    rs: Box<dyn VecResampler<f32>>,
    /// Interleaved input not yet handed to rubato.
    fifo: Vec<i16>,
    block_in: usize,
    wave_in: Vec<Vec<f32>>,
    wave_out: Vec<Vec<f32>>,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` for `channels` (1 or 2) interleaved channels.
    pub fn new(in_rate: u32, out_rate: u32, channels: u16) -> Result<Self> {
        for rate in [in_rate, out_rate] {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(Error::invalid(format!(
                    "sample rate must be {MIN_RATE}..={MAX_RATE} Hz, got {rate}"
                )));
            }
        }
        if channels != 1 && channels != 2 {
            return Err(Error::invalid(format!(
                "channels must be 1 or 2, got {channels}"
            )));
        }
        let ch = channels as usize;
        let inner = if in_rate == out_rate {
            None
        } else {
            Some(Inner::new(in_rate as usize, out_rate as usize, ch)?)
        };
        Ok(Self {
            in_rate,
            out_rate,
            channels: ch,
            inner,
        })
    }

    /// The input rate.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// The output rate.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// The filter delay in output frames (0 for a passthrough).
    pub fn delay_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.rs.output_delay())
    }

    /// Input frames buffered and not yet resampled.
    pub fn pending_frames(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |i| i.fifo.len() / self.channels)
    }

    /// Feeds interleaved `input` and appends every output frame that is ready to `out`.
    ///
    /// A trailing partial frame (odd sample count for stereo) is an error.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<()> {
        if !input.len().is_multiple_of(self.channels) {
            return Err(Error::invalid(format!(
                "{} samples is not a whole number of {}-channel frames",
                input.len(),
                self.channels
            )));
        }
        match &mut self.inner {
            None => out.extend_from_slice(input),
            Some(inner) => inner.process(input, out, self.channels)?,
        }
        Ok(())
    }

    /// Forgets buffered input and filter state, as after a stream discontinuity.
    pub fn reset(&mut self) {
        if self.inner.is_some() {
            // rubato's boxed trait has no reset; rebuilding is rare and cheap enough.
            self.inner =
                Inner::new(self.in_rate as usize, self.out_rate as usize, self.channels).ok();
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Inner {
    fn new(in_rate: usize, out_rate: usize, ch: usize) -> Result<Self> {
        // An FFT block must be a multiple of in_rate / gcd; aim for 10 ms of input.
        let unit = in_rate / gcd(in_rate, out_rate);
        let ten_ms = in_rate / 100;
        let block = ten_ms.div_ceil(unit) * unit;
        let construct = |e: rubato::ResamplerConstructionError| {
            Error::internal(format!("resampler construction failed: {e}"))
        };
        let (rs, block_in): (Box<dyn VecResampler<f32>>, usize) = if block
            <= in_rate * MAX_FFT_BLOCK_MS / 1000
        {
            let fft = FftFixedIn::<f32>::new(in_rate, out_rate, block, 1, ch).map_err(construct)?;
            (Box::new(fft), block)
        } else {
            let params = SincInterpolationParameters {
                sinc_len: 64,
                f_cutoff: 0.91,
                oversampling_factor: 128,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            let ratio = out_rate as f64 / in_rate as f64;
            let sinc =
                SincFixedIn::<f32>::new(ratio, 1.0, params, ten_ms, ch).map_err(construct)?;
            (Box::new(sinc), ten_ms)
        };
        let wave_in = vec![vec![0.0; block_in]; ch];
        let wave_out = rs.output_buffer_allocate(true);
        Ok(Self {
            rs,
            fifo: Vec::with_capacity(block_in * ch * 2),
            block_in,
            wave_in,
            wave_out,
        })
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>, ch: usize) -> Result<()> {
        self.fifo.extend_from_slice(input);
        let block_samples = self.block_in * ch;
        let mut consumed = 0;
        while self.fifo.len() - consumed >= block_samples {
            let block = &self.fifo[consumed..consumed + block_samples];
            for (c, wave) in self.wave_in.iter_mut().enumerate() {
                for (dst, frame) in wave.iter_mut().zip(block.chunks_exact(ch)) {
                    *dst = frame[c] as f32 / 32768.0;
                }
            }
            consumed += block_samples;
            let (_, produced) = self
                .rs
                .process_into_buffer(&self.wave_in, &mut self.wave_out, None)
                .map_err(|e| Error::internal(format!("resampling failed: {e}")))?;
            out.reserve(produced * ch);
            for i in 0..produced {
                for wave in &self.wave_out {
                    out.push((wave[i] * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
                }
            }
        }
        self.fifo.drain(..consumed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::opus::tests::{rms, sine, zero_cross_freq};
    use super::*;

    #[test]
    fn native_rates() {
        for r in [8000, 12000, 16000, 24000, 48000] {
            assert!(opus_native_rate(r));
        }
        for r in [11025, 22050, 32000, 44100, 96000] {
            assert!(!opus_native_rate(r));
        }
    }

    #[test]
    fn passthrough_when_rates_match() {
        let mut rs = Resampler::new(16000, 16000, 1).unwrap();
        let mut out = Vec::new();
        rs.process(&[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(rs.delay_frames(), 0);
    }

    fn check(in_rate: u32, out_rate: u32, chunk: usize) {
        let input = sine(in_rate, 1000.0, in_rate as usize, 0);
        let mut rs = Resampler::new(in_rate, out_rate, 1).unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut step = chunk;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            rs.process(&input[pos..end], &mut out).unwrap();
            pos = end;
            step = step % 7 * 31 + chunk; // vary chunk sizes
        }
        let expected = out_rate as usize;
        let block_out = rs.inner.as_ref().map_or(1, |i| i.rs.output_frames_max());
        assert!(
            out.len() + block_out >= expected && out.len() <= expected,
            "{in_rate}->{out_rate}: got {} frames, expected {expected} within {block_out}",
            out.len()
        );
        let steady = &out[rs.delay_frames() + out_rate as usize / 50..];
        let f = zero_cross_freq(steady, out_rate);
        assert!((f - 1000.0).abs() < 20.0, "{in_rate}->{out_rate}: {f} Hz");
        let db = 20.0 * (rms(steady) / rms(&input)).log10();
        assert!(db.abs() < 1.0, "{in_rate}->{out_rate}: level {db} dB");
    }

    #[test]
    fn down_48k_to_44k1_keeps_length_and_tone() {
        check(48000, 44100, 480);
    }

    #[test]
    fn up_44k1_to_48k_keeps_length_and_tone() {
        check(44100, 48000, 441);
    }

    #[test]
    fn odd_ratios_and_chunks() {
        check(48000, 16000, 100);
        check(22050, 48000, 1000);
        check(48000, 44101, 333); // coprime: sinc fallback
    }

    #[test]
    fn stereo_keeps_channels_apart() {
        let left = sine(48000, 1000.0, 48000, 0);
        let mut input = Vec::with_capacity(96000);
        for &s in &left {
            input.extend_from_slice(&[s, 0]);
        }
        let mut rs = Resampler::new(48000, 44100, 2).unwrap();
        let mut out = Vec::new();
        rs.process(&input, &mut out).unwrap();
        assert_eq!(out.len() % 2, 0);
        let l: Vec<i16> = out.iter().step_by(2).copied().collect();
        let r: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
        assert!(rms(&l[2000..]) > 5000.0);
        assert!(rms(&r) < 10.0);
        assert!(rs.process(&[1], &mut out).is_err());
    }

    #[test]
    fn bad_rates_rejected() {
        assert!(Resampler::new(0, 48000, 1).is_err());
        assert!(Resampler::new(48000, 1_000_000, 1).is_err());
        assert!(Resampler::new(48000, 44100, 3).is_err());
    }

    #[test]
    fn one_second_48k_to_44k1_is_cheap() {
        let input = sine(48000, 1000.0, 48000, 0);
        let mut rs = Resampler::new(48000, 44100, 1).unwrap();
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        for chunk in input.chunks(960) {
            rs.process(chunk, &mut out).unwrap();
        }
        let took = start.elapsed();
        // Hundreds of sessions per core need well under 10 ms per second of audio; allow slack
        // for unoptimised test builds and busy machines.
        assert!(took.as_millis() < 200, "1 s of audio took {took:?}");
        assert_eq!(out.len(), 44100);
    }
}
