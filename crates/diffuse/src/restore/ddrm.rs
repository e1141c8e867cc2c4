//! DDRM, Denoising Diffusion Restoration Models (Kawar et al. 2022, eqs. 7–8): sampling in the degradation's
//! spectral basis x̄ = Vᵀx, where each coefficient either sees nothing (s_i = 0), sees a measurement noisier
//! than the current level, or a cleaner one. With σ_e = σ_y/s_i and ȳ_i = (Uᵀy)_i/s_i, a step to the level
//! (α', σ') draws, writing the paper's variance-exploding equations in the process's own scale
//! (x = α x_VE, σ'_VE = σ'/α'):
//!
//! - s_i = 0:        x̄' = α' x̂₀ + √(1 − η²) σ' ε̂ + η σ' z                 (DDIM on the prior)
//! - σ'_VE < σ_e:    x̄' = α' x̂₀ + √(1 − η²) σ' (ȳ − x̂₀)/σ_e + η σ' z
//! - σ'_VE ≥ σ_e:    x̄' = α' ((1 − η_b) x̂₀ + η_b ȳ) + √(σ'² − α'² σ_e² η_b²) z
//!
//! and starts from x̄ = α ȳ + √(σ² − α² σ_e²) z where the measurement is cleaner than the start, σ z
//! elsewhere. It walks any grid of any process and asks the one denoiser interface only for (x̂₀, ε̂).
//! DDRM is a variational approximation of the posterior: exact for noiseless measurements with an exact
//! denoiser and η = 0, not in general (the tests check where it is, and ΠGDM where DDRM is not).

use super::operator::Degradation;
use crate::sample::Ctx;
use burn::prelude::*;
use diffuse_math::Knot;

/// DDRM's two noise parameters; the paper's defaults are η = 0.85, η_b = 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ddrm {
    pub eta: f64,
    pub eta_b: f64,
}

impl Default for Ddrm {
    fn default() -> Ddrm {
        Ddrm { eta: 0.85, eta_b: 1.0 }
    }
}

/// Samples the batch whose measurements have spectral coefficients `uty` (Uᵀy per image, [`Degradation::ut`])
/// down `knots`, from the standard normal `noise` (the start's, shaped like the images).
pub fn run(ctx: &mut Ctx, op: &Degradation, uty: &[f64], knots: &[Knot], p: Ddrm, noise: Tensor<4>) -> Tensor<4> {
    let per = op.shape.iter().product::<usize>();
    let s = op.singular();
    // σ_e and ȳ of every coefficient of the batch (σ_e infinite where the measurement sees nothing).
    let sigma_e: Vec<f64> = s
        .iter()
        .map(|&s| if s > 0.0 { op.noise / s } else { f64::INFINITY })
        .collect();
    let ybar: Vec<f64> = uty
        .iter()
        .enumerate()
        .map(|(j, &u)| if s[j % per] > 0.0 { u / s[j % per] } else { 0.0 })
        .collect();
    let values = |t: Tensor<4>| -> Vec<f64> { crate::sample::to_vec(t).into_iter().map(|v| v as f64).collect() };
    let like = &noise;
    let spectral_noise = |ctx: &mut Ctx| op.vt(&values(ctx.noise(like)));
    let tensor = |v: Vec<f64>| {
        let v: Vec<f32> = op.v(&v).into_iter().map(|x| x as f32).collect();
        Tensor::<4>::from_data(TensorData::new(v, like.dims()), &like.device())
    };
    // Where the measurement of coefficient j is at least as clean as level (α, σ): σ ≥ α σ_e (α = 0 included).
    let cleaner = |j: usize, a: f64, sg: f64| sigma_e[j % per].is_finite() && sg >= a * sigma_e[j % per];

    let l0 = knots[0].level;
    let z = op.vt(&values(noise.clone()));
    let start: Vec<f64> = (0..z.len())
        .map(|j| {
            if cleaner(j, l0.alpha, l0.sigma) {
                let e = sigma_e[j % per];
                l0.alpha * ybar[j] + (l0.sigma.powi(2) - (l0.alpha * e).powi(2)).max(0.0).sqrt() * z[j]
            } else {
                l0.sigma * z[j]
            }
        })
        .collect();
    let mut x = tensor(start);
    let (eta, eta_b) = (p.eta, p.eta_b);
    for (i, w) in knots.windows(2).enumerate() {
        let (from, to) = (w[0].level, w[1].level);
        let d = ctx.denoise(x, from);
        let (x0, eps) = (op.vt(&values(d.x0.clone())), op.vt(&values(d.eps)));
        let z = spectral_noise(ctx);
        let (a, sg) = (to.alpha, to.sigma);
        let next: Vec<f64> = (0..z.len())
            .map(|j| {
                let e = sigma_e[j % per];
                if !e.is_finite() {
                    a * x0[j] + (1.0 - eta * eta).sqrt() * sg * eps[j] + eta * sg * z[j]
                } else if !cleaner(j, a, sg) {
                    a * x0[j] + (1.0 - eta * eta).sqrt() * sg * (ybar[j] - x0[j]) / e + eta * sg * z[j]
                } else {
                    a * ((1.0 - eta_b) * x0[j] + eta_b * ybar[j])
                        + (sg * sg - (a * e * eta_b).powi(2)).max(0.0).sqrt() * z[j]
                }
            })
            .collect();
        x = tensor(next);
        ctx.step_done(i, &d.x0);
    }
    // A grid that stops short of σ = 0 ends with one denoising call, as every sampler's does.
    let last = knots[knots.len() - 1].level;
    if last.sigma > 0.0 { ctx.denoise(x, last).x0 } else { x }
}
