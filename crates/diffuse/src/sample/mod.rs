//! Discrete-time samplers over a [`Denoiser`]: DDPM ancestral and DDIM(η).
//!
//! Both are one update, x_prev = c_x0·x̂₀ + c_eps·ε̂ + std·z, whose coefficients come from
//! `diffuse_math::step` (the equations live there, next to their tests); this module walks the timestep grid,
//! draws each image's noise from its own stream and counts network evaluations.

use crate::denoise::Denoiser;
use crate::rng;
use burn::prelude::*;
use diffuse_math::step::{self, StepCoefs};
use diffuse_math::{NoiseSchedule, TimestepSpacing};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling (Ho et al.); `large_variance` uses β_t ("fixed large") instead of β̃_t.
    Ddpm { large_variance: bool },
    /// DDIM (Song et al.) with η ∈ [0, 1]; η = 0 is deterministic.
    Ddim { eta: f64 },
}

impl Sampler {
    pub fn name(&self) -> String {
        match self {
            Sampler::Ddpm { large_variance } => {
                format!("ddpm ({} variance)", if *large_variance { "large" } else { "small" })
            }
            Sampler::Ddim { eta } => format!("ddim (eta {eta})"),
        }
    }

    pub fn coefs(&self, alpha_bar: f64, alpha_bar_prev: f64) -> crate::Result<StepCoefs> {
        Ok(match *self {
            Sampler::Ddpm { large_variance } => step::ddpm(alpha_bar, alpha_bar_prev, large_variance),
            Sampler::Ddim { eta } => step::ddim(alpha_bar, alpha_bar_prev, eta)?,
        })
    }
}

/// Everything a sampling run needs besides the denoiser and the starting noise.
#[derive(Clone, Debug)]
pub struct Plan {
    pub sampler: Sampler,
    /// (t, t_prev) pairs, t_prev = −1 meaning ᾱ = 1.
    pub pairs: Vec<(i64, i64)>,
    pub coefs: Vec<StepCoefs>,
}

impl Plan {
    pub fn new(
        sampler: Sampler,
        schedule: &NoiseSchedule,
        steps: usize,
        spacing: TimestepSpacing,
    ) -> crate::Result<Plan> {
        let pairs = spacing.pairs(schedule.len(), steps)?;
        let coefs = pairs
            .iter()
            .map(|&(t, p)| sampler.coefs(schedule.alpha_bar(t), schedule.alpha_bar(p)))
            .collect::<crate::Result<_>>()?;
        Ok(Plan { sampler, pairs, coefs })
    }

    /// Network evaluations per image.
    pub fn nfe(&self) -> usize {
        self.pairs.len()
    }
}

/// The result of one batch: final images, and x̂₀ at the steps asked for (for denoising strips).
pub struct Sampled {
    pub x: Tensor<4>,
    pub x0_at: Vec<(i64, Tensor<4>)>,
}

/// Runs `plan` from `x` (the starting noise, one stream per batch item in `streams` for the step noise).
/// `keep_x0` lists step indices whose x̂₀ is kept; `on_step` is called after every step.
pub fn run(
    denoiser: &dyn Denoiser,
    plan: &Plan,
    mut x: Tensor<4>,
    streams: &mut [ChaCha8Rng],
    keep_x0: &[usize],
    mut on_step: impl FnMut(usize),
) -> Sampled {
    let [b, c, h, w] = x.dims();
    assert_eq!(streams.len(), b, "one noise stream per image");
    let device = x.device();
    let mut x0_at = Vec::new();
    for (i, (&(t, _), coef)) in plan.pairs.iter().zip(&plan.coefs).enumerate() {
        let d = denoiser.denoise(x, t);
        if keep_x0.contains(&i) {
            x0_at.push((t, d.x0.clone()));
        }
        x = d.x0.mul_scalar(coef.c_x0) + d.eps.mul_scalar(coef.c_eps);
        if coef.std > 0.0 {
            let z = rng::normals_per_stream(streams, c * h * w);
            x = x + Tensor::<4>::from_data(TensorData::new(z, [b, c, h, w]), &device).mul_scalar(coef.std);
        }
        on_step(i);
    }
    Sampled { x, x0_at }
}

/// Starting noise x_T for images `first..first + n` of `seed`, and their step-noise streams (continuing
/// after the starting noise, so image i is the same whatever batch it is drawn in).
pub fn start(seed: u64, first: usize, n: usize, shape: [usize; 3], device: &Device) -> (Tensor<4>, Vec<ChaCha8Rng>) {
    let per = shape.iter().product();
    let mut streams: Vec<ChaCha8Rng> = (first..first + n).map(|i| rng::stream(seed, i as u64)).collect();
    let noise = rng::normals_per_stream(&mut streams, per);
    let x = Tensor::<4>::from_data(TensorData::new(noise, [n, shape[0], shape[1], shape[2]]), device);
    (x, streams)
}

/// Draws images `0..n` of `seed` in batches of at most `batch`; returns them concatenated (n × c × h × w)
/// with x̂₀ snapshots (kept for the first batch only) at step indices `keep_x0`.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    denoiser: &dyn Denoiser,
    plan: &Plan,
    seed: u64,
    n: usize,
    shape: [usize; 3],
    batch: usize,
    init_noise: Option<&[f32]>,
    keep_x0: &[usize],
    device: &Device,
    mut on_step: impl FnMut(),
) -> (Vec<f32>, Vec<(i64, Vec<f32>)>) {
    let per: usize = shape.iter().product();
    let mut images = Vec::with_capacity(n * per);
    let mut strip = Vec::new();
    for first in (0..n).step_by(batch.max(1)) {
        let m = batch.max(1).min(n - first);
        let (mut x, streams) = start(seed, first, m, shape, device);
        let mut streams = streams;
        if let Some(noise) = init_noise {
            let data = noise[first * per..(first + m) * per].to_vec();
            x = Tensor::<4>::from_data(TensorData::new(data, [m, shape[0], shape[1], shape[2]]), device);
        }
        let keep: &[usize] = if first == 0 { keep_x0 } else { &[] };
        let out = run(denoiser, plan, x, &mut streams, keep, |_| on_step());
        images.extend(to_vec(out.x));
        strip.extend(out.x0_at.into_iter().map(|(t, x0)| (t, to_vec(x0))));
    }
    (images, strip)
}

pub fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().expect("f32 tensor")
}

#[cfg(test)]
mod tests;
