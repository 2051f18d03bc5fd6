//! Video frame types shared by the codecs, the colour conversion and the latest-frame slot:
//! decoded RGB frames, borrowed YUV planes and an owned I420 buffer.
//! Plain data; must not decode, convert or lock.

/// Which incoming video track a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VideoSource {
    /// The client's camera (m-line 1).
    #[default]
    Camera,
    /// The client's screen share (m-line 2).
    Screen,
}

impl VideoSource {
    /// Both sources, in m-line order.
    pub const ALL: [VideoSource; 2] = [VideoSource::Camera, VideoSource::Screen];

    /// A dense index (camera 0, screen 1) for per-source arrays.
    pub fn index(self) -> usize {
        match self {
            VideoSource::Camera => 0,
            VideoSource::Screen => 1,
        }
    }
}

/// A video codec we decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (libvpx).
    Vp8,
    /// H.264 constrained baseline, Annex-B access units (OpenH264).
    H264,
}

/// A decoded frame as the app sees it: packed RGB24, top row first, no row padding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VideoFrame {
    /// `width * height * 3` bytes, R G B per pixel.
    pub rgb: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Presentation time on the 90 kHz RTP video clock.
    pub pts: u64,
    /// The track the frame came from.
    pub source: VideoSource,
}

impl VideoFrame {
    /// An empty frame for `source`, to be filled by a decoder.
    pub fn new(source: VideoSource) -> Self {
        VideoFrame {
            source,
            ..VideoFrame::default()
        }
    }

    /// Bytes per row of `rgb`.
    pub fn stride(&self) -> usize {
        self.width as usize * 3
    }

    /// Whether the frame holds a picture.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

/// Borrowed planar 4:2:0 picture (I420): full-size Y, then U and V at half size, rounded up.
#[derive(Debug, Clone, Copy)]
pub struct I420Planes<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma rows, `y_stride` bytes apart.
    pub y: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
    /// Cb rows, `u_stride` bytes apart.
    pub u: &'a [u8],
    /// Bytes from one Cb row to the next.
    pub u_stride: usize,
    /// Cr rows, `v_stride` bytes apart.
    pub v: &'a [u8],
    /// Bytes from one Cr row to the next.
    pub v_stride: usize,
}

/// Borrowed semi-planar 4:2:0 picture (NV12): Y, then interleaved Cb Cr at half size.
#[derive(Debug, Clone, Copy)]
pub struct Nv12Planes<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma rows, `y_stride` bytes apart.
    pub y: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
    /// Interleaved Cb Cr rows, `uv_stride` bytes apart.
    pub uv: &'a [u8],
    /// Bytes from one chroma row to the next.
    pub uv_stride: usize,
}

/// Borrowed luma-only picture (grey, 4:0:0).
#[derive(Debug, Clone, Copy)]
pub struct GreyPlane<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma rows, `y_stride` bytes apart.
    pub y: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
}

/// A decoded picture in one of the layouts decoders hand out.
#[derive(Debug, Clone, Copy)]
pub enum YuvImage<'a> {
    /// Planar 4:2:0.
    I420(I420Planes<'a>),
    /// Semi-planar 4:2:0.
    Nv12(Nv12Planes<'a>),
    /// Luma only.
    Grey(GreyPlane<'a>),
}

impl YuvImage<'_> {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        match self {
            YuvImage::I420(p) => p.width,
            YuvImage::Nv12(p) => p.width,
            YuvImage::Grey(p) => p.width,
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        match self {
            YuvImage::I420(p) => p.height,
            YuvImage::Nv12(p) => p.height,
            YuvImage::Grey(p) => p.height,
        }
    }
}

/// An owned, contiguous I420 picture (Y, U, V back to back, no row padding), reused from
/// frame to frame as the encoders' input.
#[derive(Debug, Clone, Default)]
pub struct I420Buffer {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl I420Buffer {
    /// An empty buffer; [`I420Buffer::resize`] gives it a size.
    pub fn new() -> Self {
        I420Buffer::default()
    }

    /// Sets the picture size, keeping the allocation when it is big enough.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        let (y, c) = (self.y_len(), self.chroma_len());
        self.data.resize(y + 2 * c, 0);
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width of the chroma planes: half the width, rounded up.
    pub fn chroma_width(&self) -> usize {
        (self.width as usize).div_ceil(2)
    }

    fn y_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    fn chroma_len(&self) -> usize {
        self.chroma_width() * (self.height as usize).div_ceil(2)
    }

    /// The planes, for an encoder.
    pub fn planes(&self) -> I420Planes<'_> {
        let (y, c) = (self.y_len(), self.chroma_len());
        let (y_plane, chroma) = self.data.split_at(y);
        let (u, v) = chroma.split_at(c);
        I420Planes {
            width: self.width,
            height: self.height,
            y: y_plane,
            y_stride: self.width as usize,
            u,
            u_stride: self.chroma_width(),
            v,
            v_stride: self.chroma_width(),
        }
    }

    /// The planes, to be written: `(y, u, v)`.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (y, c) = (self.y_len(), self.chroma_len());
        let (y_plane, chroma) = self.data.split_at_mut(y);
        let (u, v) = chroma.split_at_mut(c);
        (y_plane, u, v)
    }
}

/// Borrowed packed RGB24 picture, as the app hands it to the video encoder.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    /// Rows of `width * 3` bytes (R G B per pixel), `stride` bytes apart.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next, at least `width * 3`.
    pub stride: usize,
}

impl<'a> RgbImage<'a> {
    /// A picture with rows packed back to back (`stride == width * 3`).
    pub fn packed(data: &'a [u8], width: u32, height: u32) -> Self {
        RgbImage {
            data,
            width,
            height,
            stride: width as usize * 3,
        }
    }
}

impl VideoFrame {
    /// The frame's pixels as an [`RgbImage`], for example to encode a decoded frame again.
    pub fn as_image(&self) -> RgbImage<'_> {
        RgbImage::packed(&self.rgb, self.width, self.height)
    }
}
