//! `diffuse likelihood`: negative log-likelihood in bits per dimension through the probability-flow ODE.

use anyhow::bail;
use burn::prelude::*;
use clap::Args;
use diffuse::data::{Dataset, Split};
use diffuse::denoise::UNetDenoiser;
use diffuse::rng;
use diffuse::run::{self, Weights};
use diffuse::sample::{Ctx, OdeSolver, ode};
use diffuse_math::Sde;
use rand::Rng;
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
    #[arg(long, value_enum, default_value = "test")]
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
    let device = diffuse::device::device();
    let run = run::load(&a.run, Weights::Ema, &device)?;
    let cfg = &run.config;
    let spec = a.data.clone().unwrap_or_else(|| cfg.data.clone());
    let data = Dataset::load(&spec, a.split)?;
    if (data.channels, data.height, data.width) != (cfg.channels, cfg.height, cfg.width) {
        bail!(
            "{spec} images are {}×{}×{}, the run's are {}×{}×{}",
            data.channels,
            data.height,
            data.width,
            cfg.channels,
            cfg.height,
            cfg.width
        );
    }
    let levels = a.levels.unwrap_or(if spec == "digits" { 17 } else { 256 });
    if levels < 2 {
        bail!("--levels must be at least 2");
    }
    let sde: Sde = a.sde.as_deref().or(cfg.sde.as_deref()).unwrap_or("vp").parse()?;
    let den = UNetDenoiser {
        net: &run.net,
        cond: &run.cond,
        prediction: cfg.prediction()?,
        clip: false,
        guidance: Default::default(),
    };
    let n = a.n.min(data.len());
    let per = data.image_size();
    let bin = 2.0 / (levels - 1) as f64; // spacing of pixel values in [-1, 1]
    let mut r = rng::stream(a.seed, 0);
    let mut bpd = Vec::with_capacity(n);
    for first in (0..n).step_by(a.batch_size.max(1)) {
        let m = a.batch_size.max(1).min(n - first);
        let idx: Vec<usize> = (first..first + m).collect();
        // Uniform dequantisation within each pixel's bin, so that a density can be compared with a probability.
        let x: Vec<f32> = data
            .gather(&idx)
            .iter()
            .map(|&v| v + ((r.random::<f64>() - 0.5) * bin) as f32)
            .collect();
        let probe: Vec<f32> = (0..m * per)
            .map(|_| if r.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let shape = [m, cfg.channels, cfg.height, cfg.width];
        let x = Tensor::<4>::from_data(TensorData::new(x, shape), &device);
        let v = Tensor::<4>::from_data(TensorData::new(probe, shape), &device);
        let mut streams: Vec<_> = (0..m).map(|i| rng::stream(a.seed, i as u64)).collect();
        let mut ctx = Ctx::new(&den, &mut streams);
        let logp = ode::log_likelihood(
            &mut ctx,
            x,
            v,
            &sde,
            OdeSolver::Rk45 {
                rtol: a.rtol,
                atol: a.atol,
            },
            1,
        );
        eprintln!("{} / {n} images, {} network evaluations per batch", first + m, ctx.nfe);
        // bits/dim of the discretised data: −log₂ p(x)/D − log₂(bin).
        bpd.extend(
            logp.iter()
                .map(|lp| -lp / (per as f64 * std::f64::consts::LN_2) - bin.log2()),
        );
    }
    let mean = bpd.iter().sum::<f64>() / bpd.len() as f64;
    let se =
        (bpd.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (bpd.len().max(2) - 1) as f64 / bpd.len() as f64).sqrt();
    println!(
        "{mean:.4} ± {se:.4} bits/dim over {} images of {spec} ({:?} split, {levels} levels), probability-flow ODE of the {sde} SDE",
        bpd.len(),
        a.split
    );
    Ok(())
}
