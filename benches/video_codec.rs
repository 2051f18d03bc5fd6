//! Video codec benchmark (not a test): per-frame cost of decoding alone versus decoding and
//! converting to RGB24, for VP8 and H.264 at 640x480 and 1280x720, in the same run.
//! Each figure is the median over several runs of the mean per-frame time of a clip,
//! measured in CPU time of the benchmark thread (on Linux), so other load on the machine
//! disturbs it less than wall time would.
//!
//!     cargo bench --bench video_codec

use std::hint::black_box;

use smallwebrtc::media::video::convert::yuv_to_rgb;
use smallwebrtc::media::video::pattern;
use smallwebrtc::media::video::{
    EncodedFrame, RgbImage, VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig, VideoFrame,
};

const FRAMES: u64 = 90;
const RUNS: usize = 15;

/// Seconds of CPU time used by the calling thread (wall time where that is unavailable).
#[cfg(target_os = "linux")]
fn cpu_now() -> f64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec (64-bit Linux layout) for the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(not(target_os = "linux"))]
fn cpu_now() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN timings"));
    v[v.len() / 2]
}

/// A camera-like clip: the moving test pattern with per-frame noise of up to
/// `2^(64 - noise_shift)` levels.
fn clip(
    codec: VideoCodec,
    width: u32,
    height: u32,
    bitrate: u32,
    noise_shift: u32,
) -> Vec<Vec<u8>> {
    let config = VideoEncoderConfig {
        bitrate,
        ..VideoEncoderConfig::new(codec, width, height)
    };
    let mut encoder = VideoEncoder::new(config).expect("encoder");
    let (mut rgb, mut out) = (Vec::new(), EncodedFrame::default());
    let mut frames = Vec::new();
    for i in 0..FRAMES {
        pattern::draw(width, height, i, &mut rgb);
        // Sensor-like noise that motion search cannot predict, so the encoder spends its
        // bitrate as it would on a real camera.
        for (j, c) in rgb.iter_mut().enumerate() {
            let h = (j as u64 ^ (i << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            *c = c.saturating_add((h >> noise_shift) as u8);
        }
        let produced = encoder
            .encode(&RgbImage::packed(&rgb, width, height), i * 3000, &mut out)
            .expect("encode");
        if produced {
            frames.push(out.data.clone());
        }
    }
    frames
}

/// Mean milliseconds per frame to decode the clip, with or without conversion to RGB.
fn time_clip(codec: VideoCodec, clip: &[Vec<u8>], convert: bool) -> f64 {
    let mut decoder = VideoDecoder::new(codec).expect("decoder");
    let mut frame = VideoFrame::default();
    let start = cpu_now();
    for (i, data) in clip.iter().enumerate() {
        if convert {
            let got = decoder.decode(data, i as u64, &mut frame).expect("decode");
            black_box((got, frame.rgb.as_ptr()));
        } else {
            let image = decoder.decode_yuv(data).expect("decode");
            black_box(image.map(|p| p.width()));
        }
    }
    (cpu_now() - start) * 1000.0 / clip.len() as f64
}

/// Mean milliseconds per frame of the conversion alone, on the clip's first picture.
fn time_convert(codec: VideoCodec, clip: &[Vec<u8>]) -> f64 {
    let mut decoder = VideoDecoder::new(codec).expect("decoder");
    let mut rgb = Vec::new();
    let image = decoder
        .decode_yuv(&clip[0])
        .expect("decode")
        .expect("picture");
    let reps = 200;
    let start = cpu_now();
    for _ in 0..reps {
        yuv_to_rgb(&image, &mut rgb).expect("convert");
        black_box(rgb.as_ptr());
    }
    (cpu_now() - start) * 1000.0 / reps as f64
}

fn main() {
    println!(
        "{:<6} {:>9} {:>6} {:>7} {:>10} {:>14} {:>11} {:>7}",
        "codec", "size", "scene", "kbit/s", "decode ms", "dec+conv ms", "conv ms", "ratio"
    );
    for (width, height, bitrate) in [(640, 480, 1_000_000), (1280, 720, 2_500_000)] {
        // "busy": noise 0..31, both codecs spend their target bitrate; "calm": noise 0..3,
        // far below it. Decoding gets cheaper as the bitrate drops; conversion does not.
        for (scene, noise_shift) in [("busy", 59), ("calm", 62)] {
            for codec in [VideoCodec::Vp8, VideoCodec::H264] {
                let clip = clip(codec, width, height, bitrate, noise_shift);
                let kbps = clip.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 * 30.0
                    / FRAMES as f64
                    / 1000.0;
                // Warm caches and the CPU clock once, then interleave the two measurements.
                time_clip(codec, &clip, true);
                let (mut raw, mut full) = (Vec::new(), Vec::new());
                for _ in 0..RUNS {
                    raw.push(time_clip(codec, &clip, false));
                    full.push(time_clip(codec, &clip, true));
                }
                let (raw, full) = (median(&mut raw), median(&mut full));
                let conv = time_convert(codec, &clip);
                println!(
                    "{:<6} {:>9} {:>6} {:>7.0} {:>10.3} {:>14.3} {:>11.3} {:>7.3}",
                    format!("{codec:?}"),
                    format!("{width}x{height}"),
                    scene,
                    kbps,
                    raw,
                    full,
                    conv,
                    full / raw
                );
            }
        }
    }
    println!("ratio = (decode + convert) / decode; target <= 1.1");
}
