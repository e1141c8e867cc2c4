//! PNG input and output: single images at native resolution and upscaled grids.

use crate::data::to_u8;
use crate::{Error, Result};
use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// Decoded pixels, channel-major (c × h × w).
pub struct PngImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

/// The PNG files of a folder (not its sub-folders), in name order.
pub fn png_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    out.sort();
    Ok(out)
}

/// Reads a PNG as grey (1) or RGB (3); `channels` None picks from the file's colour type.
pub fn read_png(path: &Path, channels: Option<usize>) -> Result<PngImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_png(&bytes, channels).map_err(|reason| Error::Image {
        path: path.to_path_buf(),
        reason,
    })
}

/// The width and height a PNG declares, read from its header without decoding it.
pub fn png_size(bytes: &[u8]) -> std::result::Result<(usize, usize), String> {
    let decoder = PngDecoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    Ok((w as usize, h as usize))
}

/// [`read_png`] of bytes already in memory.
pub fn decode_png(bytes: &[u8], channels: Option<usize>) -> std::result::Result<PngImage, String> {
    let bad = |e: image::ImageError| e.to_string();
    let decoder = PngDecoder::new(Cursor::new(bytes)).map_err(bad)?;
    let declared = decoder.total_bytes();
    if declared > (bytes.len() as u64 + 1024).saturating_mul(crate::MAX_INFLATE_RATIO) {
        let (w, h) = decoder.dimensions();
        return Err(format!(
            "declares {w}×{h} pixels, more than its {} bytes can hold",
            bytes.len()
        ));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    let channels = channels.unwrap_or(if img.color().has_color() { 3 } else { 1 });
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = match channels {
        1 => img.to_luma8().into_raw(),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            (0..3)
                .flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>())
                .collect()
        }
        n => return Err(format!("{n} channels are not supported")),
    };
    Ok(PngImage {
        channels,
        height: h,
        width: w,
        pixels,
    })
}

/// One image (c × h × w in [-1, 1]) as an RGB picture, each pixel repeated `scale` times.
fn to_rgb(img: &[f32], c: usize, h: usize, w: usize, scale: usize) -> RgbImage {
    RgbImage::from_fn((w * scale) as u32, (h * scale) as u32, |x, y| {
        let (x, y) = (x as usize / scale, y as usize / scale);
        let px = |ch: usize| to_u8(img[ch * h * w + y * w + x]);
        if c == 1 {
            image::Rgb([px(0); 3])
        } else {
            image::Rgb([px(0), px(1), px(2)])
        }
    })
}

fn encode(img: DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("PNG encoding into memory cannot fail");
    out.into_inner()
}

/// Writes one image at native resolution (grey stays grey).
pub fn write_png(path: &Path, img: &[f32], c: usize, h: usize, w: usize) -> Result<()> {
    let rgb = to_rgb(img, c, h, w, 1);
    let dynamic = if c == 1 {
        DynamicImage::ImageRgb8(rgb).into_luma8().into()
    } else {
        DynamicImage::ImageRgb8(rgb)
    };
    crate::atomic::write(path, &encode(dynamic))
}

/// A grid of `n` images (`cols` per row), each upscaled so that small images are visible, 2-pixel gaps.
pub fn grid(images: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize) -> RgbImage {
    let scale = (64 / h.max(w)).max(1);
    let (cols, rows) = (cols.max(1).min(n.max(1)), n.div_ceil(cols.max(1)).max(1));
    let (cw, ch) = (w * scale + 2, h * scale + 2);
    let mut out = RgbImage::from_pixel((cols * cw) as u32, (rows * ch) as u32, image::Rgb([40, 40, 48]));
    for i in 0..n {
        let tile = to_rgb(&images[i * c * h * w..(i + 1) * c * h * w], c, h, w, scale);
        let (x0, y0) = ((i % cols) * cw + 1, (i / cols) * ch + 1);
        image::imageops::replace(&mut out, &tile, x0 as i64, y0 as i64);
    }
    out
}

/// Writes [`grid`] as a PNG.
pub fn write_grid(path: &Path, images: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize) -> Result<()> {
    write_rgb(path, grid(images, n, c, h, w, cols))
}

pub fn write_rgb(path: &Path, img: RgbImage) -> Result<()> {
    crate::atomic::write(path, &png_bytes(img))
}

/// A picture as PNG bytes.
pub fn png_bytes(img: RgbImage) -> Vec<u8> {
    encode(DynamicImage::ImageRgb8(img))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_grey_and_colour() {
        let dir = std::env::temp_dir().join(format!("diffuse-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let grey: Vec<f32> = (0..12).map(|i| i as f32 / 11.0 * 2.0 - 1.0).collect();
        write_png(&dir.join("g.png"), &grey, 1, 3, 4).unwrap();
        let back = read_png(&dir.join("g.png"), None).unwrap();
        assert_eq!((back.channels, back.height, back.width), (1, 3, 4));
        assert_eq!(back.pixels, grey.iter().map(|&v| to_u8(v)).collect::<Vec<_>>());
        let colour: Vec<f32> = (0..3 * 4).map(|i| if i < 4 { 1.0 } else { -1.0 }).collect();
        write_png(&dir.join("c.png"), &colour, 3, 2, 2).unwrap();
        let back = read_png(&dir.join("c.png"), None).unwrap();
        assert_eq!(back.channels, 3);
        assert_eq!(&back.pixels[..4], &[255; 4]);
        assert_eq!(&back.pixels[4..], &[0; 8]);
        std::fs::write(dir.join("bad.png"), b"not a png").unwrap();
        assert!(read_png(&dir.join("bad.png"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
