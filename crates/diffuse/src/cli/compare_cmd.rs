//! `diffuse compare`: the five variants on the same data, trained with the defaults (or reused), each
//! sampled and measured by `eval` into one table: NFE, time per image, FID, classifier FID, recall, class
//! coverage and, under guidance, class accuracy. Written as markdown, JSON and a PNG (FID against time).

use clap::Args;
use diffuse::compare;
use diffuse::plot::{self, Series};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse compare --out runs/compare                 # trains what is missing, then measures seven rows\n  \
diffuse compare --out runs/compare --only ddim,cfg --n 100\n\n\
OUT holds ddpm/, conditional/, score/, vae/, latent/ and classifier/; a folder already there is reused, so \
runs trained by hand (or by the examples) can be linked in. Rows: ddpm, ddim, latent, cfg, em, pc, ode.")]
pub struct CompareArgs {
    /// Folder of the compared runs and of compare.md, compare.json and compare.png.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Labelled image data all variants train on (see `diffuse train --help`).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Images per row (the conditional row draws n / classes per class).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Only these rows, comma-separated.
    #[arg(long)]
    only: Option<String>,
    /// Training steps of the runs that have to be trained (default: train's default for the data).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of training and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The Inception weights (default: $DIFFUSE_INCEPTION, the fetch cache, or the shared folder).
    #[arg(long, value_name = "PATH")]
    inception: Option<PathBuf>,
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let only: Option<Vec<&str>> = a.only.as_deref().map(|s| s.split(',').map(str::trim).collect());
    let rows = compare::select(only.as_deref())?;
    let settings = compare::Settings {
        out: a.out.clone(),
        data: a.data.parse()?,
        n: a.n,
        steps: a.steps,
        seed: a.seed,
        inception: a.inception.clone(),
    };
    let measured = compare::run(&settings, &rows)?;
    let md = compare::markdown(&measured);
    print!("{md}");
    let json: Vec<serde_json::Value> = measured
        .iter()
        .map(|(row, r)| json!({"row": row.name, "variant": row.variant, "eval": r}))
        .collect();
    let points: Vec<[(f64, f64); 1]> = measured
        .iter()
        .map(|(_, r)| [(1000.0 * r.sampling_seconds_per_image, r.fid)])
        .collect();
    let series: Vec<Series> = measured
        .iter()
        .zip(&points)
        .map(|((row, _), p)| Series::new(row.variant, p))
        .collect();
    let axes = plot::Axes {
        x: "milliseconds per image (log scale)",
        y: "FID against the held-out images",
        log_x: true,
        log_y: false,
    };
    let png = plot::line_plot(&series, &axes);
    diffuse::atomic::write(&a.out.join("compare.md"), md.as_bytes())?;
    diffuse::atomic::write(
        &a.out.join("compare.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    diffuse::imageio::write_rgb(&a.out.join("compare.png"), png)?;
    eprintln!(
        "compare: {} rows of {} images; written {}/compare.{{md,json,png}} (the PNG: FID against milliseconds per \
         image, log scale)",
        measured.len(),
        a.n,
        a.out.display()
    );
    Ok(())
}
