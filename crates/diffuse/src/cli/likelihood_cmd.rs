//! `diffuse likelihood`: negative log-likelihood in bits per dimension through the probability-flow ODE.

use clap::Args;
use diffuse::data::{DataSpec, Split};
use diffuse::likelihood;
use diffuse::run::{self, Weights};
use diffuse_math::Sde;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Example:\n  diffuse likelihood --run runs/digits-vp --data digits --split test --n 64")]
pub struct LikelihoodArgs {
    /// A run directory written by `diffuse train`.
    #[arg(long)]
    run: PathBuf,
    /// Images to evaluate (see `diffuse train --help`); by default the run's own data.
    #[arg(long)]
    data: Option<String>,
    #[arg(long, default_value = "test", value_parser = super::one_of::<Split>(Split::NAMES))]
    split: Split,
    /// How many images (the first n of the split).
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// The SDE whose ODE is integrated (default: the model's own, vp for DDPM models).
    #[arg(long)]
    sde: Option<String>,
    /// Pixel levels of the data, for uniform dequantisation and the discrete offset (256 for 8-bit images,
    /// 17 for the embedded digits).
    #[arg(long)]
    levels: Option<u32>,
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Seed of the dequantisation noise and the Hutchinson probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

pub fn likelihood(a: LikelihoodArgs) -> anyhow::Result<()> {
    let run = run::load(&a.run, Weights::Ema, &diffuse::device::device())?;
    run.config.refuse_text("likelihood")?;
    let cfg = &run.config;
    let spec = match &a.data {
        Some(s) => s.parse::<DataSpec>()?,
        None => cfg.data.clone(),
    };
    let data = spec.load(a.split)?;
    let settings = likelihood::Settings {
        sde: match a.sde.as_deref() {
            Some(s) => s.parse()?,
            None => cfg.sde.unwrap_or(Sde::vp()),
        },
        levels: a.levels.unwrap_or(if spec == DataSpec::Digits { 17 } else { 256 }),
        n: a.n,
        batch_size: a.batch_size,
        seed: a.seed,
        rtol: a.rtol,
        atol: a.atol,
    };
    let bpd = likelihood::bits_per_dim(&run, &data, &settings, &mut |done, total, nfe| {
        eprintln!("{done} / {total} images, {nfe} network evaluations per batch")
    })?;
    let (mean, se) = likelihood::mean_and_se(&bpd);
    println!(
        "{mean:.4} ± {se:.4} bits/dim over {} images of {spec} ({:?} split, {} levels), probability-flow ODE of the {} SDE",
        bpd.len(),
        a.split,
        settings.levels,
        settings.sde
    );
    Ok(())
}
