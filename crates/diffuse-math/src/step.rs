//! Coefficients of one reverse step x_t → x_prev, written as
//! x_prev = c_x0 · x̂₀ + c_eps · ε̂ + std · z,  z ~ N(0, I),
//! so that the tensor code applies the same three numbers for every sampler and the maths is testable here.

use crate::MathError;

/// One reverse step's coefficients on (x̂₀, ε̂, noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    pub c_x0: f64,
    pub c_eps: f64,
    pub std: f64,
}

impl StepCoefs {
    /// Applies the step to scalars; the tensor samplers do the same per element.
    pub fn apply(&self, x0: f64, eps: f64, z: f64) -> f64 {
        self.c_x0 * x0 + self.c_eps * eps + self.std * z
    }
}

/// DDIM (Song et al. 2021, eq. 12) from ᾱ_t to ᾱ_prev with σ_t = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev):
/// x_prev = √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev − σ²) · ε̂ + σ z.
pub fn ddim(alpha_bar: f64, alpha_bar_prev: f64, eta: f64) -> Result<StepCoefs, MathError> {
    if !(0.0..=1.0).contains(&eta) {
        return Err(MathError::Invalid(format!("eta must be in [0, 1], got {eta}")));
    }
    let variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev);
    let std = eta * variance.max(0.0).sqrt();
    Ok(StepCoefs {
        c_x0: alpha_bar_prev.sqrt(),
        c_eps: (1.0 - alpha_bar_prev - std * std).max(0.0).sqrt(),
        std,
    })
}

/// DDPM ancestral step over any pair (t, t_prev) of visited timesteps (Ho et al. eq. 6–7, generalised to skipped
/// steps by using β = 1 − ᾱ_t/ᾱ_prev). The posterior mean c₀x̂₀ + c_t·x_t is rewritten on (x̂₀, ε̂) with
/// x_t = √ᾱ_t x̂₀ + √(1−ᾱ_t) ε̂, which is exact for any denoiser output pair that satisfies that identity.
pub fn ddpm(alpha_bar: f64, alpha_bar_prev: f64, large_variance: bool) -> StepCoefs {
    let beta = 1.0 - alpha_bar / alpha_bar_prev;
    let coef_x0 = alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar);
    let coef_xt = (1.0 - beta).sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar);
    let small = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta;
    // The last step (to ᾱ = 1) adds no noise in either variant, as in diffusers.
    let variance = if alpha_bar_prev >= 1.0 {
        0.0
    } else if large_variance {
        beta
    } else {
        small
    };
    StepCoefs {
        c_x0: coef_x0 + coef_xt * alpha_bar.sqrt(),
        c_eps: coef_xt * (1.0 - alpha_bar).sqrt(),
        std: variance.sqrt(),
    }
}
