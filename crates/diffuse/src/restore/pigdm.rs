//! ΠGDM, pseudoinverse-guided diffusion (Song, Vahdat, Mardani & Kautz 2023): p(x₀ | x_t) taken as
//! N(x̂₀, r_t² I), so that p(y | x_t) = N(A x̂₀, r_t² AAᵀ + σ_y² I) and its score is the vector–Jacobian product
//!
//!   g = (∂x̂₀/∂x_t)ᵀ Aᵀ (r_t² AAᵀ + σ_y² I)⁻¹ (y − A x̂₀),
//!
//! one backward pass through the denoiser. The paper's r_t² = σ²/(1 + σ²) (σ = σ/α, unit data variance) is
//! r_t² = σ_d² σ²/(σ_d² + σ²) for data of standard deviation σ_d, the posterior variance of a Gaussian prior.
//! The guidance is applied as the conditional score it approximates, through Tweedie's formula: the
//! posterior denoiser is x̂₀(x_t, y) = x̂₀ + (σ²/α) g (σ, α of the process), with ε̂ to match. That makes it
//! one more [`Denoiser`]: every sampler and grid runs it, and with an exact Gaussian denoiser it is the
//! exact E[x₀ | x_t, y] (the paper adds α-weighted g to its DDIM step instead). The inverse is cheap
//! because every degradation here has an SVD: in the spectral basis it is a division per coefficient.

use super::operator::Degradation;
use crate::denoise::{Cond, Denoised, Denoiser};
use burn::prelude::*;
use diffuse_math::Level;

/// The posterior denoiser of one batch of measurements.
pub struct Pigdm<'a> {
    /// The prior's denoiser, unclipped (a clamp would stop the gradient); it must accept tensors with
    /// autodiff on.
    pub inner: &'a dyn Denoiser,
    pub op: &'a Degradation,
    /// Uᵀy of each image of the batch ([`Degradation::ut`]).
    pub uty: Vec<f64>,
    /// σ_d of r_t² (1: the paper's).
    pub data_std: f64,
    /// The posterior x̂₀ clamped to [−r, r] (and ε̂ recomputed), if set.
    pub clip: Option<f64>,
}

impl Pigdm<'_> {
    /// r_t² at `level`.
    pub fn r2(&self, level: Level) -> f64 {
        let (v, d2) = ((level.sigma / level.alpha).powi(2), self.data_std.powi(2));
        d2 * v / (d2 + v)
    }

    /// Aᵀ (r² AAᵀ + σ_y² I)⁻¹ (y − A x̂₀) of each image, in the spectral basis s_i (ỹ_i − s_i x̄̂₀_i)/(r² s_i² + σ_y²).
    fn pulled(&self, x0: &[f64], r2: f64) -> Vec<f64> {
        let s = self.op.singular();
        let per = s.len();
        let bar = self.op.vt(x0);
        let w: Vec<f64> = bar
            .iter()
            .zip(&self.uty)
            .enumerate()
            .map(|(j, (&b, &u))| {
                let s = s[j % per];
                let den = r2 * s * s + self.op.noise.powi(2);
                if s > 0.0 && den > 0.0 {
                    s * (u - s * b) / den
                } else {
                    0.0
                }
            })
            .collect();
        self.op.v(&w)
    }
}

/// x̂₀ of `inner` at x and the vector–Jacobian product (∂x̂₀/∂x)ᵀ w, w = `weight(x̂₀)`, by one backward pass;
/// both on x's device.
pub fn vjp(
    inner: &dyn Denoiser,
    x: Tensor<4>,
    level: Level,
    cond: &Cond,
    weight: impl FnOnce(&Tensor<4>) -> Tensor<4>,
) -> (Tensor<4>, Tensor<4>) {
    let device = x.device();
    let tracked = x.autodiff().require_grad();
    let x0 = inner.denoise(tracked.clone(), level, cond).x0;
    let plain = x0.clone().without_autodiff().to_device(&device);
    let w = weight(&plain).autodiff();
    let grads = (x0 * w).sum().backward();
    let g = tracked
        .grad(&grads)
        .expect("x requires its gradient")
        .to_device(&device);
    (plain, g)
}

impl Denoiser for Pigdm<'_> {
    fn denoise(&self, x: Tensor<4>, level: Level, cond: &Cond) -> Denoised {
        if level.alpha <= 0.0 {
            // Pure noise says nothing of x₀: the likelihood is flat.
            let d = self.inner.denoise(x.clone(), level, cond);
            return match self.clip {
                Some(r) => d.clipped(x, level, r),
                None => d,
            };
        }
        let (x0, g) = vjp(self.inner, x.clone(), level, cond, |x0| {
            let v: Vec<f64> = crate::sample::to_vec(x0.clone())
                .into_iter()
                .map(|v| v as f64)
                .collect();
            let w: Vec<f32> = self.pulled(&v, self.r2(level)).into_iter().map(|v| v as f32).collect();
            Tensor::<4>::from_data(TensorData::new(w, x0.dims()), &x0.device())
        });
        let x0 = x0 + g.mul_scalar(level.sigma.powi(2) / level.alpha);
        let eps = (x.clone() - x0.clone().mul_scalar(level.alpha)).mul_scalar(1.0 / level.sigma);
        let d = Denoised { x0, eps };
        match self.clip {
            Some(r) => d.clipped(x, level, r),
            None => d,
        }
    }
}
