//! Negative log-likelihood in bits per dimension through the probability-flow ODE, the workflow behind
//! `diffuse likelihood`: uniform dequantisation of the discrete data, the ODE's log-density with a
//! Hutchinson divergence estimate, and the discretisation offset.

use crate::data::Dataset;
use crate::run::LoadedRun;
use crate::sample::{Ctx, OdeSolver, ode};
use crate::{Error, Result, rng};
use burn::prelude::*;
use diffuse_math::Sde;
use rand::Rng;

/// How to measure.
pub struct Settings {
    /// The SDE whose probability-flow ODE is integrated.
    pub sde: Sde,
    /// Pixel levels of the data (256 for 8-bit images, 17 for the embedded digits).
    pub levels: u32,
    /// How many images (the first n of the data).
    pub n: usize,
    pub batch_size: usize,
    /// Seed of the dequantisation noise and the Hutchinson probes.
    pub seed: u64,
    pub rtol: f64,
    pub atol: f64,
}

/// Bits per dimension of each of the first `s.n` images of `data` under `run`; `on_batch(done, total, nfe)`
/// after each batch.
pub fn bits_per_dim(
    run: &LoadedRun,
    data: &Dataset,
    s: &Settings,
    on_batch: &mut dyn FnMut(usize, usize, usize),
) -> Result<Vec<f64>> {
    let cfg = &run.config;
    if (data.channels, data.height, data.width) != (cfg.channels, cfg.height, cfg.width) {
        return Err(Error::Invalid(format!(
            "{} images are {}×{}×{}, the run's are {}×{}×{}",
            data.name, data.channels, data.height, data.width, cfg.channels, cfg.height, cfg.width
        )));
    }
    if s.levels < 2 {
        return Err(Error::Invalid("--levels must be at least 2".into()));
    }
    if run.net.num_classes().is_some() && !run.net.has_null_class() {
        return Err(Error::Invalid(
            "this model has no null class (it was trained without label dropout), so no unconditional density".into(),
        ));
    }
    let device = crate::device::device();
    let mut den = run.denoiser(Default::default());
    den.clip = None; // a likelihood is of the model's own density
    let n = s.n.min(data.len());
    let per = data.image_size();
    let bin = 2.0 / (s.levels - 1) as f64; // spacing of pixel values in [-1, 1]
    let mut r = rng::stream(s.seed, 0);
    let mut bpd = Vec::with_capacity(n);
    for first in (0..n).step_by(s.batch_size.max(1)) {
        let m = s.batch_size.max(1).min(n - first);
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
        let mut streams: Vec<_> = (0..m).map(|i| rng::stream(s.seed, i as u64)).collect();
        let mut ctx = Ctx::new(&den, &mut streams);
        let solver = OdeSolver::Rk45 {
            rtol: s.rtol,
            atol: s.atol,
        };
        let logp = ode::log_likelihood(&mut ctx, x, v, &s.sde, solver, 1);
        on_batch(first + m, n, ctx.nfe);
        // bits/dim of the discretised data: −log₂ p(x)/D − log₂(bin).
        bpd.extend(
            logp.iter()
                .map(|lp| -lp / (per as f64 * std::f64::consts::LN_2) - bin.log2()),
        );
    }
    Ok(bpd)
}

/// Mean and its standard error.
pub fn mean_and_se(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mean, (var / v.len() as f64).sqrt())
}
