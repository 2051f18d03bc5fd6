//! Round trips through the real codecs: pattern → RGB → encode → decode → RGB, compared with
//! the pattern; keyframes on demand; size checks; decoder recovery after errors.

use super::pattern;
use super::*;
use crate::error::ErrorKind;

const W: u32 = 640;
const H: u32 = 480;

fn encoder(codec: VideoCodec) -> VideoEncoder {
    VideoEncoder::new(VideoEncoderConfig::new(codec, W, H)).expect("encoder")
}

/// Encodes `frames` frames of the pattern and decodes each; checks every decoded frame.
fn round_trip(codec: VideoCodec) {
    let mut enc = encoder(codec);
    let mut dec = VideoDecoder::new(codec).expect("decoder");
    let (mut rgb, mut encoded, mut decoded) =
        (Vec::new(), EncodedFrame::default(), VideoFrame::default());
    let mut worst = [0f64; 3];
    for i in 0..30u64 {
        pattern::draw(W, H, i, &mut rgb);
        assert!(enc
            .encode(&RgbImage::packed(&rgb, W, H), i * 3000, &mut encoded)
            .unwrap());
        assert_eq!(encoded.keyframe, i == 0, "frame {i}");
        assert!(
            dec.decode(&encoded.data, encoded.pts, &mut decoded)
                .unwrap(),
            "frame {i}"
        );
        assert_eq!(
            (decoded.width, decoded.height, decoded.pts),
            (W, H, i * 3000)
        );
        let err = pattern::mean_abs_error(&rgb, &decoded.rgb);
        for c in 0..3 {
            worst[c] = worst[c].max(err[c]);
        }
        let (ex, ey) = pattern::marker_position(W, H, i);
        let (fx, fy) = pattern::find_marker(&decoded.rgb, W, H).expect("marker");
        assert!(
            fx.abs_diff(ex) <= 2 && fy.abs_diff(ey) <= 2,
            "frame {i}: marker at {fx},{fy}, drawn at {ex},{ey}"
        );
    }
    println!("{codec:?} {W}x{H}: worst per-frame mean abs error (R, G, B) {worst:.2?}");
    assert!(
        worst.iter().all(|&e| e < 10.0),
        "{codec:?}: worst mean abs error {worst:?}"
    );
}

#[test]
fn vp8_round_trip_matches_the_pattern() {
    round_trip(VideoCodec::Vp8);
}

#[test]
fn h264_round_trip_matches_the_pattern() {
    round_trip(VideoCodec::H264);
}

fn keyframes_on_demand(codec: VideoCodec) {
    let mut enc = encoder(codec);
    let (mut rgb, mut out) = (Vec::new(), EncodedFrame::default());
    let mut keyframes = Vec::new();
    for i in 0..12u64 {
        if i == 5 || i == 9 {
            enc.force_keyframe();
        }
        pattern::draw(W, H, i, &mut rgb);
        enc.encode(&RgbImage::packed(&rgb, W, H), i * 3000, &mut out)
            .unwrap();
        if out.keyframe {
            keyframes.push(i);
        }
    }
    assert_eq!(keyframes, [0, 5, 9], "{codec:?}");

    // A decoder joining at the forced keyframe decodes it; one joining at a delta frame fails
    // (which is when the runtime asks for a keyframe), then recovers at the next keyframe.
    let mut late = VideoDecoder::new(codec).unwrap();
    let mut frame = VideoFrame::default();
    enc.encode(&RgbImage::packed(&rgb, W, H), 12 * 3000, &mut out)
        .unwrap();
    assert!(!out.keyframe);
    let joined_mid_stream = late.decode(&out.data, 0, &mut frame);
    assert_eq!(
        joined_mid_stream.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::InvalidArgument),
        "{codec:?}: {joined_mid_stream:?}"
    );
    enc.force_keyframe();
    enc.encode(&RgbImage::packed(&rgb, W, H), 13 * 3000, &mut out)
        .unwrap();
    assert!(out.keyframe);
    assert!(late.decode(&out.data, 1, &mut frame).unwrap());
    assert!(pattern::mean_abs_error(&rgb, &frame.rgb)
        .iter()
        .all(|&e| e < 10.0));
}

#[test]
fn vp8_keyframes_on_demand() {
    keyframes_on_demand(VideoCodec::Vp8);
}

#[test]
fn h264_keyframes_on_demand() {
    keyframes_on_demand(VideoCodec::H264);
}

#[test]
fn h264_output_is_constrained_baseline_annex_b() {
    let mut enc = encoder(VideoCodec::H264);
    let (mut rgb, mut out) = (Vec::new(), EncodedFrame::default());
    pattern::draw(W, H, 0, &mut rgb);
    enc.encode(&RgbImage::packed(&rgb, W, H), 0, &mut out)
        .unwrap();
    assert!(out.data.starts_with(&[0, 0, 0, 1]) || out.data.starts_with(&[0, 0, 1]));
    let sps = out
        .data
        .windows(5)
        .find(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7)
        .map(|w| w.as_ptr() as usize - out.data.as_ptr() as usize + 4)
        .expect("SPS in the first access unit");
    let (profile_idc, constraints) = (out.data[sps], out.data[sps + 1]);
    assert_eq!(profile_idc, 66, "baseline");
    assert_ne!(
        constraints & 0x40,
        0,
        "constraint_set1_flag (constrained baseline)"
    );
}

#[test]
fn wrong_sizes_and_strides_are_rejected() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let mut enc = encoder(codec);
        let mut out = EncodedFrame::default();
        let rgb = vec![0u8; (W * H * 3) as usize];
        let cases = [
            RgbImage::packed(&rgb, 320, 240),
            RgbImage::packed(&rgb[..rgb.len() - 1], W, H),
            RgbImage {
                stride: W as usize * 3 - 3,
                ..RgbImage::packed(&rgb, W, H)
            },
            RgbImage {
                stride: W as usize * 3 + 16,
                ..RgbImage::packed(&rgb, W, H)
            },
        ];
        for (i, image) in cases.iter().enumerate() {
            let err = enc.encode(image, 0, &mut out).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidArgument,
                "{codec:?} case {i}: {err}"
            );
            assert!(err.message().len() > 10, "{err}");
        }
        // A padded stride with a buffer to match is fine.
        let padded = vec![0u8; (W as usize * 3 + 16) * H as usize];
        let image = RgbImage {
            stride: W as usize * 3 + 16,
            ..RgbImage::packed(&padded, W, H)
        };
        assert!(enc.encode(&image, 0, &mut out).unwrap());
    }
    for (w, h) in [(0, 480), (641, 480), (640, 479), (4096, 2160)] {
        let err = VideoEncoder::new(VideoEncoderConfig::new(VideoCodec::Vp8, w, h))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{w}x{h}");
    }
    let config = VideoEncoderConfig {
        bitrate: 0,
        ..VideoEncoderConfig::new(VideoCodec::H264, W, H)
    };
    assert_eq!(
        config.validate().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn garbage_and_empty_input_are_errors_not_panics() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let mut dec = VideoDecoder::new(codec).unwrap();
        let mut frame = VideoFrame::default();
        assert_eq!(
            dec.decode(&[], 0, &mut frame).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let garbage: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(
            !matches!(dec.decode(&garbage, 0, &mut frame), Ok(true)),
            "{codec:?}"
        );
    }
}

#[test]
fn bitrate_changes_take_effect() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let mut enc = encoder(codec);
        // Before the first frame too (OpenH264 is not initialised yet then).
        enc.set_bitrate(300_000).unwrap();
        let (mut rgb, mut out) = (Vec::new(), EncodedFrame::default());
        let mut sizes = [0usize; 2];
        for (phase, bitrate) in [(0, 300_000), (1, 3_000_000)] {
            enc.set_bitrate(bitrate).unwrap();
            for i in 0..30u64 {
                let n = phase * 30 + i;
                pattern::draw(W, H, n * 5, &mut rgb);
                // Noise so the encoder has something to spend bits on.
                for (j, c) in rgb.iter_mut().enumerate().step_by(7) {
                    *c = c.wrapping_add(((j as u64 * 31 + n * 17) % 23) as u8);
                }
                enc.encode(&RgbImage::packed(&rgb, W, H), n * 3000, &mut out)
                    .unwrap();
                if i >= 10 {
                    sizes[phase as usize] += out.data.len();
                }
            }
        }
        assert!(
            sizes[1] > sizes[0] * 2,
            "{codec:?}: bytes at 300k vs 3M: {sizes:?}"
        );
        assert_eq!(
            enc.set_bitrate(1).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn codec_objects_can_move_to_worker_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<VideoDecoder>();
    send::<VideoEncoder>();
    send_sync::<LatestFrame>();
}
