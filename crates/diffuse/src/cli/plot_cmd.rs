//! `diffuse plot`: line plots of CSV columns, for figures made by scripts (guidance curves, sweeps).

use anyhow::{Context, bail};
use clap::Args;
use diffuse::plot::{Axes, Series, line_plot};
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse plot --csv runs/guidance/curve.csv --x w --y accuracy --out docs/guidance-accuracy.png"
)]
pub struct PlotArgs {
    /// A CSV file with a header row and numeric columns.
    #[arg(long)]
    csv: PathBuf,
    /// The column on the x axis.
    #[arg(long)]
    x: String,
    /// The columns to plot against it, comma-separated (one colour each, named in the legend).
    #[arg(long)]
    y: String,
    /// The x axis's title (default: the x column's name).
    #[arg(long)]
    x_title: Option<String>,
    /// The y axis's title (the series are named in the legend).
    #[arg(long)]
    y_title: Option<String>,
    #[arg(long)]
    log_x: bool,
    #[arg(long)]
    log_y: bool,
    /// The PNG to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn plot(a: PlotArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.csv).with_context(|| format!("reading {}", a.csv.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("the CSV is empty")?
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column '{name}' (have: {})", header.join(", ")))
    };
    let xi = col(&a.x)?;
    let ys: Vec<(&str, usize)> =
        a.y.split(',')
            .map(|n| Ok((n.trim(), col(n.trim())?)))
            .collect::<anyhow::Result<_>>()?;
    let rows: Vec<Vec<f64>> = lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .with_context(|| format!("row {}: '{v}' is not a number", i + 2))
                })
                .collect()
        })
        .collect::<anyhow::Result<_>>()?;
    if rows.iter().any(|r| r.len() != header.len()) {
        bail!("every row must have {} values", header.len());
    }
    let points: Vec<Vec<(f64, f64)>> = ys
        .iter()
        .map(|&(_, yi)| rows.iter().map(|r| (r[xi], r[yi])).collect())
        .collect();
    let series: Vec<Series> = ys
        .iter()
        .zip(&points)
        .map(|(&(name, _), p)| Series::new(name, p))
        .collect();
    let axes = Axes {
        x: a.x_title.as_deref().unwrap_or(&a.x),
        y: a.y_title.as_deref().unwrap_or(""),
        log_x: a.log_x,
        log_y: a.log_y,
    };
    diffuse::imageio::write_rgb(&a.out, line_plot(&series, &axes))?;
    eprintln!("plot: {}", a.out.display());
    Ok(())
}
