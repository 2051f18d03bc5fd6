//! A synthetic test picture, colour bars with a marker that moves from frame to frame, and
//! the measures used to compare a decoded frame with it. For tests, benchmarks and examples;
//! the library itself never draws it.

/// The eight bars, left to right: white, yellow, cyan, green, magenta, red, blue, black
/// (75 % amplitude, as in SMPTE bars, so no channel clips after a codec round trip).
pub const BARS: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [0, 0, 0],
];

/// Colour of the band under the bars that the marker moves along.
pub const BAND: [u8; 3] = [32, 32, 32];
/// Colour of the marker.
pub const MARKER: [u8; 3] = [235, 235, 235];

/// Side of the square marker for a picture `height` rows tall.
pub fn marker_size(height: u32) -> u32 {
    (height / 8).max(2)
}

/// Top-left corner of the marker in frame `frame`: it walks right 8 pixels per frame along
/// the bottom band and wraps around.
pub fn marker_position(width: u32, height: u32, frame: u64) -> (u32, u32) {
    let size = marker_size(height);
    let band_top = height * 3 / 4;
    let span = u64::from(width.saturating_sub(size).max(1));
    let x = (frame * 8 % span) as u32;
    let y = band_top + (height - band_top).saturating_sub(size) / 2;
    (x, y)
}

/// Draws frame `frame` of the pattern into `rgb` as packed RGB24 (resized to fit).
pub fn draw(width: u32, height: u32, frame: u64, rgb: &mut Vec<u8>) {
    let (w, h) = (width as usize, height as usize);
    rgb.resize(w * h * 3, 0);
    let band_top = h * 3 / 4;
    let size = marker_size(height) as usize;
    let (mx, my) = marker_position(width, height, frame);
    let (mx, my) = (mx as usize, my as usize);
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let colour = if y < band_top {
                BARS[x * BARS.len() / w]
            } else if (mx..mx + size).contains(&x) && (my..my + size).contains(&y) {
                MARKER
            } else {
                BAND
            };
            px.copy_from_slice(&colour);
        }
    }
}

/// Finds the marker in a decoded frame: the top-left corner of the bright pixels in the
/// band, or `None` when the band holds none.
pub fn find_marker(rgb: &[u8], width: u32, height: u32) -> Option<(u32, u32)> {
    let (w, h) = (width as usize, height as usize);
    if rgb.len() < w * h * 3 {
        return None;
    }
    let (mut min_x, mut min_y, mut found) = (usize::MAX, usize::MAX, false);
    for y in h * 3 / 4..h {
        for x in 0..w {
            let px = &rgb[(y * w + x) * 3..][..3];
            if px.iter().map(|&c| u32::from(c)).sum::<u32>() > 3 * 128 {
                min_x = min_x.min(x);
                min_y = min_y.min(y);
                found = true;
            }
        }
    }
    found.then_some((min_x as u32, min_y as u32))
}

/// Mean absolute difference per channel (R, G, B) between two RGB24 pictures of equal size.
pub fn mean_abs_error(a: &[u8], b: &[u8]) -> [f64; 3] {
    let mut sums = [0u64; 3];
    for (pa, pb) in a.chunks_exact(3).zip(b.chunks_exact(3)) {
        for c in 0..3 {
            sums[c] += u64::from(pa[c].abs_diff(pb[c]));
        }
    }
    let n = (a.len().min(b.len()) / 3).max(1) as f64;
    sums.map(|s| s as f64 / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_found_where_it_was_drawn() {
        let mut rgb = Vec::new();
        for frame in [0, 1, 7, 100] {
            draw(640, 480, frame, &mut rgb);
            assert_eq!(
                find_marker(&rgb, 640, 480),
                Some(marker_position(640, 480, frame))
            );
        }
        assert_eq!(mean_abs_error(&rgb, &rgb), [0.0; 3]);
    }
}
