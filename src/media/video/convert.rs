//! Colour conversion between decoded YUV (I420, NV12, grey) and packed RGB24, and RGB24 to
//! I420 for the encoders, through the SIMD `yuv` crate (SSE4.1/AVX2 picked at run time).
//! Owns size and stride validation; must not decode, encode or allocate per frame once the
//! output buffers have grown to the frame size.
//!
//! Colours use BT.601 limited range, what VP8 defines and what WebRTC senders' H.264 uses.

use yuv::{
    YuvBiPlanarImage, YuvConversionMode, YuvGrayImage, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use super::frame::{GreyPlane, I420Buffer, I420Planes, Nv12Planes, YuvImage};
use crate::error::{Error, Result};

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

/// Largest width or height accepted; keeps every stride and product well inside `u32`.
pub const MAX_DIMENSION: u32 = 16_384;

/// Converts any decoded layout to packed RGB24 in `rgb`, resized to `width * height * 3`.
pub fn yuv_to_rgb(image: &YuvImage<'_>, rgb: &mut Vec<u8>) -> Result<()> {
    match image {
        YuvImage::I420(p) => i420_to_rgb(p, rgb),
        YuvImage::Nv12(p) => nv12_to_rgb(p, rgb),
        YuvImage::Grey(p) => grey_to_rgb(p, rgb),
    }
}

/// I420 to packed RGB24. Odd sizes are fine (chroma is rounded up).
pub fn i420_to_rgb(src: &I420Planes<'_>, rgb: &mut Vec<u8>) -> Result<()> {
    validate_i420(src)?;
    let image = YuvPlanarImage {
        y_plane: src.y,
        y_stride: src.y_stride as u32,
        u_plane: src.u,
        u_stride: src.u_stride as u32,
        v_plane: src.v,
        v_stride: src.v_stride as u32,
        width: src.width,
        height: src.height,
    };
    let stride = prepare_rgb(rgb, src.width, src.height);
    yuv::yuv420_to_rgb(&image, rgb, stride, RANGE, MATRIX).map_err(conversion_error)
}

/// NV12 to packed RGB24. Odd sizes are fine (chroma is rounded up).
pub fn nv12_to_rgb(src: &Nv12Planes<'_>, rgb: &mut Vec<u8>) -> Result<()> {
    check_size(src.width, src.height)?;
    let (cw, ch) = chroma_size(src.width, src.height);
    check_plane(
        "Y",
        src.y,
        src.y_stride,
        src.width as usize,
        src.height as usize,
    )?;
    check_plane("UV", src.uv, src.uv_stride, cw * 2, ch)?;
    let image = YuvBiPlanarImage {
        y_plane: src.y,
        y_stride: src.y_stride as u32,
        uv_plane: src.uv,
        uv_stride: src.uv_stride as u32,
        width: src.width,
        height: src.height,
    };
    let stride = prepare_rgb(rgb, src.width, src.height);
    yuv::yuv_nv12_to_rgb(
        &image,
        rgb,
        stride,
        RANGE,
        MATRIX,
        YuvConversionMode::default(),
    )
    .map_err(conversion_error)
}

/// Grey (Y only) to packed RGB24.
pub fn grey_to_rgb(src: &GreyPlane<'_>, rgb: &mut Vec<u8>) -> Result<()> {
    check_size(src.width, src.height)?;
    check_plane(
        "Y",
        src.y,
        src.y_stride,
        src.width as usize,
        src.height as usize,
    )?;
    let image = YuvGrayImage {
        y_plane: src.y,
        y_stride: src.y_stride as u32,
        width: src.width,
        height: src.height,
    };
    let stride = prepare_rgb(rgb, src.width, src.height);
    yuv::yuv400_to_rgb(&image, rgb, stride, RANGE, MATRIX).map_err(conversion_error)
}

/// Checks that an I420 picture's planes hold `width` x `height` pixels at their strides, as
/// the encoders need before handing raw pointers to C.
pub fn validate_i420(src: &I420Planes<'_>) -> Result<()> {
    check_size(src.width, src.height)?;
    let (cw, ch) = chroma_size(src.width, src.height);
    check_plane(
        "Y",
        src.y,
        src.y_stride,
        src.width as usize,
        src.height as usize,
    )?;
    check_plane("U", src.u, src.u_stride, cw, ch)?;
    check_plane("V", src.v, src.v_stride, cw, ch)
}

/// Packed RGB24 (`stride` bytes per row, at least `width * 3`) to I420 in `out`, resized to
/// `width` x `height`. Odd sizes are converted; the encoders decide whether they take them.
pub fn rgb_to_i420(
    rgb: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    out: &mut I420Buffer,
) -> Result<()> {
    check_size(width, height)?;
    check_plane("RGB", rgb, stride, width as usize * 3, height as usize)?;
    out.resize(width, height);
    let chroma_stride = out.chroma_width() as u32;
    let (y, u, v) = out.planes_mut();
    let mut image = YuvPlanarImageMut {
        y_plane: yuv::BufferStoreMut::Borrowed(y),
        y_stride: width,
        u_plane: yuv::BufferStoreMut::Borrowed(u),
        u_stride: chroma_stride,
        v_plane: yuv::BufferStoreMut::Borrowed(v),
        v_stride: chroma_stride,
        width,
        height,
    };
    yuv::rgb_to_yuv420(
        &mut image,
        rgb,
        stride as u32,
        RANGE,
        MATRIX,
        YuvConversionMode::default(),
    )
    .map_err(conversion_error)
}

fn chroma_size(width: u32, height: u32) -> (usize, usize) {
    ((width as usize).div_ceil(2), (height as usize).div_ceil(2))
}

fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "video frame size {width}x{height} is empty"
        )));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::invalid(format!(
            "video frame size {width}x{height} exceeds {MAX_DIMENSION} pixels per side"
        )));
    }
    Ok(())
}

/// A plane of `rows` rows of `row_bytes` bytes, `stride` apart; the last row needs no padding.
fn check_plane(
    name: &str,
    data: &[u8],
    stride: usize,
    row_bytes: usize,
    rows: usize,
) -> Result<()> {
    if stride < row_bytes {
        return Err(Error::invalid(format!(
            "{name} stride {stride} is shorter than a row of {row_bytes} bytes"
        )));
    }
    if stride > u32::MAX as usize {
        return Err(Error::invalid(format!(
            "{name} stride {stride} is too large"
        )));
    }
    let needed = stride
        .checked_mul(rows - 1)
        .and_then(|n| n.checked_add(row_bytes))
        .ok_or_else(|| Error::invalid(format!("{name} plane size overflows")))?;
    if data.len() < needed {
        return Err(Error::invalid(format!(
            "{name} plane has {} bytes, needs {needed} ({rows} rows, stride {stride})",
            data.len()
        )));
    }
    Ok(())
}

/// Sizes `rgb` for the frame without reallocating once it has grown; returns its stride.
fn prepare_rgb(rgb: &mut Vec<u8>, width: u32, height: u32) -> u32 {
    rgb.resize(width as usize * height as usize * 3, 0);
    width * 3
}

fn conversion_error(e: yuv::YuvError) -> Error {
    // Sizes were checked above, so this is a disagreement with the crate's own checks.
    Error::invalid(format!("colour conversion rejected the frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn solid_i420(width: u32, height: u32, y: u8, u: u8, v: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (cw, ch) = chroma_size(width, height);
        (
            vec![y; (width * height) as usize],
            vec![u; cw * ch],
            vec![v; cw * ch],
        )
    }

    #[test]
    fn i420_odd_size_converts_to_the_expected_colour() {
        // Limited-range BT.601 red: Y 81, Cb 90, Cr 240.
        let (w, h) = (7, 5);
        let (y, u, v) = solid_i420(w, h, 81, 90, 240);
        let planes = I420Planes {
            width: w,
            height: h,
            y: &y,
            y_stride: w as usize,
            u: &u,
            u_stride: 4,
            v: &v,
            v_stride: 4,
        };
        let mut rgb = Vec::new();
        i420_to_rgb(&planes, &mut rgb).unwrap();
        assert_eq!(rgb.len(), (w * h * 3) as usize);
        for px in rgb.chunks_exact(3) {
            assert!(px[0] > 245 && px[1] < 10 && px[2] < 10, "{px:?}");
        }
    }

    #[test]
    fn nv12_and_grey_convert() {
        let (w, h) = (6, 4);
        let y = vec![180u8; 8 * 4]; // stride 8, padded rows
        let uv: Vec<u8> = [128u8, 128].repeat(4 * 2); // stride 8 (3 pairs + padding)
        let nv12 = Nv12Planes {
            width: w,
            height: h,
            y: &y,
            y_stride: 8,
            uv: &uv,
            uv_stride: 8,
        };
        let mut rgb = Vec::new();
        nv12_to_rgb(&nv12, &mut rgb).unwrap();
        assert!(rgb.iter().all(|&c| c.abs_diff(191) <= 2), "{rgb:?}");

        let grey = GreyPlane {
            width: w,
            height: h,
            y: &y,
            y_stride: 8,
        };
        grey_to_rgb(&grey, &mut rgb).unwrap();
        assert_eq!(rgb.len(), 6 * 4 * 3);
        assert!(rgb.iter().all(|&c| c.abs_diff(191) <= 2));
    }

    #[test]
    fn short_buffers_and_bad_strides_are_rejected() {
        let (y, u, v) = solid_i420(16, 16, 16, 128, 128);
        let ok = I420Planes {
            width: 16,
            height: 16,
            y: &y,
            y_stride: 16,
            u: &u,
            u_stride: 8,
            v: &v,
            v_stride: 8,
        };
        let mut rgb = Vec::new();
        let cases = [
            I420Planes { y: &y[..200], ..ok },
            I420Planes { u_stride: 7, ..ok },
            I420Planes { v: &v[..10], ..ok },
            I420Planes { width: 0, ..ok },
            I420Planes { width: 17, ..ok },
            I420Planes {
                height: MAX_DIMENSION + 1,
                ..ok
            },
        ];
        for case in cases {
            let err = i420_to_rgb(&case, &mut rgb).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert!(!err.message().is_empty());
        }
        i420_to_rgb(&ok, &mut rgb).unwrap();
    }

    #[test]
    fn rgb_round_trips_through_i420() {
        let (w, h) = (9, 7);
        let mut rgb = Vec::new();
        for i in 0..(w * h) {
            rgb.extend_from_slice(&[200, 100 + (i % 3) as u8, 40]);
        }
        let mut i420 = I420Buffer::new();
        rgb_to_i420(&rgb, w, h, w as usize * 3, &mut i420).unwrap();
        let mut back = Vec::new();
        i420_to_rgb(&i420.planes(), &mut back).unwrap();
        let worst = rgb
            .iter()
            .zip(&back)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 4, "worst channel error {worst}");

        let err = rgb_to_i420(&rgb[..rgb.len() - 1], w, h, w as usize * 3, &mut i420);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidArgument);
        let err = rgb_to_i420(&rgb, w, h, w as usize * 3 - 1, &mut i420);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn output_buffer_is_reused() {
        let (y, u, v) = solid_i420(32, 32, 100, 128, 128);
        let planes = I420Planes {
            width: 32,
            height: 32,
            y: &y,
            y_stride: 32,
            u: &u,
            u_stride: 16,
            v: &v,
            v_stride: 16,
        };
        let mut rgb = Vec::new();
        i420_to_rgb(&planes, &mut rgb).unwrap();
        let ptr = rgb.as_ptr();
        for _ in 0..10 {
            i420_to_rgb(&planes, &mut rgb).unwrap();
        }
        assert_eq!(ptr, rgb.as_ptr());
    }
}
