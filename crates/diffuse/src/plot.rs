//! Figures rendered straight to PNG with plotters' bitmap backend: line plots with axis titles, ticks chosen
//! for round values (log scales included) and a legend; density scatters; labelled rows of image grids. The
//! text is drawn with DejaVu Sans, embedded in the binary, so no font needs to be installed.

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Series colours in order (matplotlib's "tab10" values, then two more), so that a sweep of every sampler
/// needs no repeat.
#[rustfmt::skip]
pub const COLOURS: [[u8; 3]; 12] = [
    [31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189],
    [255, 127, 14], [140, 86, 75], [227, 119, 194], [23, 190, 207],
    [188, 189, 34], [127, 127, 127], [0, 0, 128], [128, 0, 0],
];

/// A named series of (x, y) points, drawn as a line (one point: a marker) in its position's colour of
/// [`COLOURS`] unless given one.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub colour: Option<[u8; 3]>,
}

impl<'a> Series<'a> {
    pub fn new(name: &'a str, points: &'a [(f64, f64)]) -> Series<'a> {
        Series {
            name,
            points,
            colour: None,
        }
    }

    /// The same series in `colour` (a reference line in black, say).
    pub fn in_colour(self, colour: [u8; 3]) -> Series<'a> {
        Series {
            colour: Some(colour),
            ..self
        }
    }
}

/// What the axes say and how they scale.
pub struct Axes<'a> {
    pub x: &'a str,
    pub y: &'a str,
    /// Log scale on x or y: non-positive values are left out.
    pub log_x: bool,
    pub log_y: bool,
}

const W: u32 = 720;
const H: u32 = 450;
const FONT: &str = "sans-serif";

fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        register_font(FONT, FontStyle::Normal, bytes).unwrap_or_else(|_| panic!("the embedded font parses"));
    });
}

fn colour(s: &Series, k: usize) -> RGBColor {
    let [r, g, b] = s.colour.unwrap_or(COLOURS[k % COLOURS.len()]);
    RGBColor(r, g, b)
}

/// Renders into a fresh white `w`×`h` RGB buffer with `draw`, and returns it as an image.
fn render(w: u32, h: u32, draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>)) -> RgbImage {
    font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(root);
    }
    RgbImage::from_raw(w, h, buf).expect("a w×h RGB buffer")
}

/// The data range of `values` on a linear or log axis, widened a little (and around single values) so that
/// nothing sits on the frame.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if lo > hi {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = ((h - l) * 0.05).max(0.1);
        (10f64.powf(l - pad), 10f64.powf(h + pad))
    } else {
        let pad = ((hi - lo) * 0.05).max(if hi == lo { hi.abs().max(1.0) * 0.1 } else { 0.0 });
        (lo - pad, hi + pad)
    }
}

/// Tick labels with as few digits as the values need: 250 not 249.75, 0.001 not 1.0e-3 for round values.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if *v != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Line plots of `series` on shared axes, with a legend when any series is named.
pub fn line_plot(series: &[Series], axes: &Axes) -> RgbImage {
    let xr = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), axes.log_x);
    let yr = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), axes.log_y);
    render(W, H, |root| {
        // Each scale combination is its own chart type; one generic body draws all four.
        match (axes.log_x, axes.log_y) {
            (false, false) => draw_lines(&root, xr.0..xr.1, yr.0..yr.1, series, axes),
            (true, false) => draw_lines(&root, (xr.0..xr.1).log_scale(), yr.0..yr.1, series, axes),
            (false, true) => draw_lines(&root, xr.0..xr.1, (yr.0..yr.1).log_scale(), series, axes),
            (true, true) => draw_lines(&root, (xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale(), series, axes),
        }
        .expect("drawing into a memory buffer does not fail");
    })
}

fn draw_lines<'a, X, Y>(
    root: &'a DrawingArea<BitMapBackend, plotters::coord::Shift>,
    x: X,
    y: Y,
    series: &[Series],
    axes: &Axes,
) -> Result<(), Box<dyn std::error::Error + 'a>>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(1)
        .draw()?;
    let usable = |&(px, py): &(f64, f64)| {
        px.is_finite() && py.is_finite() && (!axes.log_x || px > 0.0) && (!axes.log_y || py > 0.0)
    };
    for (k, s) in series.iter().enumerate() {
        let c = colour(s, k);
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(usable).collect();
        let drawn = if pts.len() == 1 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled())))?
        } else {
            chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
        };
        if !s.name.is_empty() {
            drawn
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        }
    }
    if series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
    }
    Ok(())
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

/// `img` with a white margin on the left holding `labels`, one per band of equal height from the top (the rows
/// of an image grid).
pub fn label_rows(img: &RgbImage, labels: &[&str]) -> RgbImage {
    let margin = 12 + 9 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    let (w, h) = (img.width() + margin, img.height());
    let band = h / labels.len().max(1) as u32;
    let mut out = render(w, h, |root| {
        for (i, l) in labels.iter().enumerate() {
            let y = (i as u32 * band + band / 2) as i32;
            root.draw(&Text::new(
                l.to_string(),
                (6, y - 8),
                (FONT, 15).into_font().color(&BLACK),
            ))
            .expect("drawing into a memory buffer does not fail");
        }
    });
    image::imageops::replace(&mut out, img, margin as i64, 0);
    out
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

    fn pixels_of(img: &RgbImage, c: [u8; 3]) -> usize {
        img.pixels().filter(|p| p.0 == c).count()
    }

    #[test]
    fn plots_draw_each_series_in_its_colour_with_text_on_every_scale() {
        let falling = [(1.0, 1.0), (10.0, 0.1), (100.0, 0.01)];
        let marker = [(20.0, 0.5)];
        let series = [Series::new("falling", &falling), Series::new("marker", &marker)];
        for (log_x, log_y) in [(false, false), (true, false), (false, true), (true, true)] {
            let axes = Axes {
                x: "steps",
                y: "loss",
                log_x,
                log_y,
            };
            let img = line_plot(&series, &axes);
            assert!(pixels_of(&img, COLOURS[0]) > 100, "{log_x} {log_y}: the line");
            assert!(pixels_of(&img, COLOURS[1]) > 30, "{log_x} {log_y}: the marker");
            // Anti-aliased text: grey pixels that are neither the white ground nor a series colour.
            let grey = img
                .pixels()
                .filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0] < 128)
                .count();
            assert!(
                grey > 200,
                "{log_x} {log_y}: axis titles, ticks and legend ({grey} dark pixels)"
            );
        }
        // Nothing positive on a log axis still renders (an empty frame), rather than panicking.
        let empty = line_plot(
            &[Series::new("", &[(0.0, -1.0)])],
            &Axes {
                x: "x",
                y: "y",
                log_x: true,
                log_y: true,
            },
        );
        assert_eq!((empty.width(), empty.height()), (W, H));
    }

    #[test]
    fn ticks_use_the_digits_the_values_need() {
        assert_eq!(tick(&250.0), "250");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&1e-5), "1e-5");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn row_labels_widen_the_image_and_keep_it_intact() {
        let img = RgbImage::from_pixel(40, 20, Rgb([10, 200, 10]));
        let out = label_rows(&img, &["η = 0", "η = 1"]);
        assert_eq!(out.height(), 20);
        assert!(out.width() > 40);
        let dx = out.width() - 40;
        assert!((0..40).all(|x| (0..20).all(|y| out.get_pixel(x + dx, y).0 == [10, 200, 10])));
        let margin_ink = (0..dx)
            .flat_map(|x| (0..20).map(move |y| (x, y)))
            .filter(|&(x, y)| out.get_pixel(x, y).0[0] < 200);
        assert!(margin_ink.count() > 10, "text in the margin");
    }
}
