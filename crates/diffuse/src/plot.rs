//! Small line plots rendered straight to PNG (loss curves, schedules): axes, tick values in a 3×5 pixel font,
//! one colour per series. No font files, no plotting dependency.

use image::{Rgb, RgbImage};

pub const COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

/// A series of (x, y) points, drawn as a line (one point: a marker); its colour is its position's in
/// [`COLOURS`].
pub struct Series<'a> {
    pub points: &'a [(f64, f64)],
}

const W: u32 = 640;
const H: u32 = 400;
const LEFT: u32 = 60;
const BOTTOM: u32 = 30;
const TOP: u32 = 16;
const RIGHT: u32 = 16;

fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [0, 7, 7, 4, 7],
        'a' => [0, 3, 5, 5, 3],
        'b' => [4, 6, 5, 5, 6],
        'c' => [0, 3, 4, 4, 3],
        'd' => [1, 3, 5, 5, 3],
        'f' => [3, 4, 6, 4, 4],
        'g' => [0, 3, 5, 3, 6],
        'h' => [4, 6, 5, 5, 5],
        'i' => [2, 0, 2, 2, 2],
        'j' => [1, 0, 1, 5, 2],
        'k' => [4, 5, 6, 5, 5],
        'l' => [6, 2, 2, 2, 7],
        'm' => [0, 7, 7, 5, 5],
        'n' => [0, 6, 5, 5, 5],
        'o' => [0, 2, 5, 5, 2],
        'p' => [0, 6, 5, 6, 4],
        'q' => [0, 3, 5, 3, 1],
        'r' => [0, 6, 5, 4, 4],
        's' => [0, 3, 6, 1, 6],
        't' => [2, 7, 2, 2, 1],
        'u' => [0, 5, 5, 5, 3],
        'v' => [0, 5, 5, 5, 2],
        'w' => [0, 5, 5, 7, 7],
        'x' => [0, 5, 2, 2, 5],
        'y' => [0, 5, 5, 3, 6],
        'z' => [7, 1, 2, 4, 7],
        '+' => [0, 2, 7, 2, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        ':' => [0, 2, 0, 2, 0],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, colour: [u8; 3]) {
    for (i, c) in s.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (px, py) = (x + i as u32 * 8 + col * 2 + dx, y + row as u32 * 2 + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: [u8; 3]) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let f = i as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// Renders series on shared axes; `log_x` / `log_y` plot log10 of that coordinate (tick labels stay in data
/// units; non-positive values are skipped).
pub fn line_plot(series: &[Series], log_x: bool, log_y: bool) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let ty = |y: f64| if log_y { y.log10() } else { y };
    let tx = |x: f64| if log_x { x.log10() } else { x };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .map(|(x, y)| (tx(x), ty(y)))
        .filter(|&(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return img;
    }
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (xmin, xmax, ymin, ymax) = (xmin.min(x), xmax.max(x), ymin.min(y), ymax.max(y));
    }
    if xmax == xmin {
        xmax = xmin + 1.0;
    }
    if ymax == ymin {
        ymax = ymin + 1.0;
    }
    if series.iter().any(|s| s.points.len() == 1) {
        // Markers: a margin, so that none sits on an axis or under the legend.
        let (dx, dy) = (0.1 * (xmax - xmin), 0.15 * (ymax - ymin));
        (xmin, xmax, ymin, ymax) = (xmin - dx, xmax + dx, ymin - dy, ymax + dy);
    }
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let to_px = |x: f64, y: f64| {
        (
            LEFT as f64 + (x - xmin) / (xmax - xmin) * pw,
            TOP as f64 + (ymax - y) / (ymax - ymin) * ph,
        )
    };
    let axis = [0, 0, 0];
    line(
        &mut img,
        (LEFT as f64, TOP as f64),
        (LEFT as f64, TOP as f64 + ph),
        axis,
    );
    line(
        &mut img,
        (LEFT as f64, TOP as f64 + ph),
        (LEFT as f64 + pw, TOP as f64 + ph),
        axis,
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (yv, xv) = (ymin + (ymax - ymin) * f, xmin + (xmax - xmin) * f);
        let (_, py) = to_px(xmin, yv);
        let label = if log_y { fmt_tick(10f64.powf(yv)) } else { fmt_tick(yv) };
        line(&mut img, (LEFT as f64 - 4.0, py), (LEFT as f64, py), axis);
        text(&mut img, 2, (py as u32).saturating_sub(5), &label, [0, 0, 0]);
        let (px, _) = to_px(xv, ymin);
        line(&mut img, (px, TOP as f64 + ph), (px, TOP as f64 + ph + 4.0), axis);
        text(
            &mut img,
            (px as u32).saturating_sub(12),
            H - BOTTOM + 10,
            &if log_x { fmt_tick(10f64.powf(xv)) } else { fmt_tick(xv) },
            [0, 0, 0],
        );
    }
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        if let [(x, y)] = s.points {
            // A series of one point is a marker: a filled square.
            let (px, py) = to_px(tx(*x), ty(*y));
            for d in -3..=3 {
                line(&mut img, (px - 3.0, py + d as f64), (px + 3.0, py + d as f64), colour);
            }
            continue;
        }
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in s.points {
            let (x, y) = (tx(x), ty(y));
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = to_px(x, y);
            if let Some(q) = prev {
                line(&mut img, q, p, colour);
            }
            prev = Some(p);
        }
    }
    img
}

/// Writes `names` in their series' colours down the top-right corner of a plot.
pub fn with_legend(mut img: RgbImage, names: &[&str]) -> RgbImage {
    for (k, name) in names.iter().enumerate() {
        let x = W.saturating_sub(RIGHT + 8 * name.len() as u32 + 4);
        text(
            &mut img,
            x,
            TOP + 4 + 14 * k as u32,
            &name.to_lowercase(),
            COLOURS[k % COLOURS.len()],
        );
    }
    img
}

/// A density scatter plot of 2-D points in [−extent, extent]²: darker where more points fall.
pub fn scatter(points: &[(f64, f64)], extent: f64) -> RgbImage {
    let size = 400u32;
    let mut counts = vec![0u32; (size * size) as usize];
    for &(x, y) in points {
        let px = ((x + extent) / (2.0 * extent) * size as f64).floor();
        let py = ((extent - y) / (2.0 * extent) * size as f64).floor();
        if (0.0..size as f64).contains(&px) && (0.0..size as f64).contains(&py) {
            counts[(py as u32 * size + px as u32) as usize] += 1;
        }
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    RgbImage::from_fn(size, size, |x, y| {
        let c = counts[(y * size + x) as usize];
        if c == 0 {
            return Rgb([255, 255, 255]);
        }
        // Log scale so that sparse tails stay visible next to dense modes.
        let f = 1.0 - (1.0 + c as f64).ln() / (1.0 + top).ln();
        let v = (f * 200.0) as u8;
        Rgb([v, v, (v as u16 + 40).min(255) as u8])
    })
}

/// A picture of a point cloud given as n × d values: 2-D points as they are, 3-D points turned 35° about z
/// and seen from 60° above the xy-plane (orthographic projection).
pub fn point_cloud(flat: &[f32], d: usize) -> RgbImage {
    let (sa, ca) = (35f64.to_radians().sin(), 35f64.to_radians().cos());
    let (se, ce) = (60f64.to_radians().sin(), 60f64.to_radians().cos());
    let pts: Vec<(f64, f64)> = flat
        .chunks(d.max(1))
        .map(|p| match d {
            1 => (p[0] as f64, 0.0),
            2 => (p[0] as f64, p[1] as f64),
            _ => {
                let (x, y, z) = (p[0] as f64, p[1] as f64, p[2] as f64);
                let (x, y) = (ca * x - sa * y, sa * x + ca * y);
                (x, ce * z + se * y)
            }
        })
        .collect();
    scatter(&pts, 1.6)
}

/// A moving average over `window` points, to make a noisy loss curve readable.
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= points[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_trailing_mean() {
        let pts: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, i as f64)).collect();
        let s = smooth(&pts, 2);
        assert_eq!(s.iter().map(|p| p.1).collect::<Vec<_>>(), vec![0.0, 0.5, 1.5, 2.5, 3.5]);
    }

    #[test]
    fn plot_draws_series_in_colour() {
        let pts = [(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)];
        let img = line_plot(&[Series { points: &pts }], false, true);
        assert!(img.pixels().any(|p| p.0 == COLOURS[0]));
    }
}
