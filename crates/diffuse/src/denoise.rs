//! The denoiser interface every sampler talks to: x at a noise level (x = α·x₀ + σ·ε) in, (x̂₀, ε̂) out.
//! Discrete samplers ask at their schedule's levels, SDE samplers at their SDE's; a model trained on a
//! discrete schedule answers any level through the variance-preserving correspondence.

use crate::nn::UNet;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use diffuse_math::dist::Target;
use diffuse_math::{Level, NoiseSchedule, Prediction};

/// A denoiser's estimate of the clean image and of the noise in x.
pub struct Denoised {
    pub x0: Tensor<4>,
    pub eps: Tensor<4>,
}

pub trait Denoiser {
    /// Denoises a batch that is entirely at noise level `level`.
    fn denoise(&self, x: Tensor<4>, level: Level) -> Denoised;
}

/// Turns a network output at variance-preserving level ᾱ into (x̂₀, ε̂) for its parameterisation.
pub fn from_output(x: Tensor<4>, out: Tensor<4>, alpha_bar: f64, prediction: Prediction) -> Denoised {
    let (fx0, feps) = prediction.to_x0_eps(alpha_bar);
    let affine =
        |a: diffuse_math::prediction::Affine| x.clone().mul_scalar(a.x_coef) + out.clone().mul_scalar(a.out_coef);
    Denoised {
        x0: affine(fx0),
        eps: affine(feps),
    }
}

/// A UNet trained on a discrete schedule, as a denoiser at any level: x is scaled to the
/// variance-preserving level with the same SNR, and the network is asked at the (fractional) train timestep
/// with that ᾱ. `clip` clamps x̂₀ to the data range [−1, 1] (diffusers' `clip_sample`).
pub struct UNetDenoiser<'a> {
    pub net: &'a UNet,
    pub schedule: &'a NoiseSchedule,
    pub prediction: Prediction,
    pub clip: bool,
}

impl Denoiser for UNetDenoiser<'_> {
    fn denoise(&self, x: Tensor<4>, level: Level) -> Denoised {
        let b = x.dims()[0];
        let scale = (level.alpha * level.alpha + level.sigma * level.sigma).sqrt();
        let ab = level.alpha_bar();
        let x_vp = if (scale - 1.0).abs() > 1e-12 {
            x.mul_scalar(1.0 / scale)
        } else {
            x
        };
        let t = Tensor::<1>::full([b], self.schedule.timestep_of(ab) as f32, &x_vp.device());
        let out = self.net.forward(x_vp.clone(), t);
        let mut d = from_output(x_vp, out, ab, self.prediction);
        if self.clip {
            d.x0 = d.x0.clamp(-1.0, 1.0);
            // ε̂ stays the network's, as in diffusers; only x̂₀ is clipped.
        }
        d
    }
}

/// The exact denoiser of a data set that is one known image per batch item: returns that x₀ and the ε that
/// explains x. Used to test samplers against a known answer.
pub struct OracleX0 {
    pub x0: Tensor<4>,
}

impl Denoiser for OracleX0 {
    fn denoise(&self, x: Tensor<4>, level: Level) -> Denoised {
        let eps = (x - self.x0.clone().mul_scalar(level.alpha)).mul_scalar(1.0 / level.sigma);
        Denoised {
            x0: self.x0.clone(),
            eps,
        }
    }
}

/// The exact denoiser for data whose every value is drawn from a 1-D target Σ w_k N(μ_k, s²):
/// E[x₀ | x] = Σ r_k (μ_k + α s²/v (x − α μ_k)), v = α² s² + σ², with responsibilities
/// r_k ∝ w_k N(x; α μ_k, v). A single component is the Gaussian case.
pub struct ExactDenoiser {
    pub target: Target,
}

impl Denoiser for ExactDenoiser {
    fn denoise(&self, x: Tensor<4>, level: Level) -> Denoised {
        let (a, s) = (level.alpha, level.sigma);
        let t = &self.target;
        let v = a * a * t.std * t.std + s * s;
        let shrink = a * t.std * t.std / v;
        // Per component: x̂₀ = μ + shrink·(x − αμ) and ε̂ = (σ/v)(x − αμ). ε̂ is formed directly, not as
        // (x − αx̂₀)/σ, which in f32 cancels to rounding noise when σ is tiny (sub-VP near t = 0).
        let x0_of = |m: f64| x.clone().mul_scalar(shrink).add_scalar(m * (1.0 - shrink * a));
        let eps_of = |m: f64| x.clone().sub_scalar(a * m).mul_scalar(s / v);
        if t.means.len() == 1 {
            return Denoised {
                x0: x0_of(t.means[0]),
                eps: eps_of(t.means[0]),
            };
        }
        let logits: Vec<Tensor<4>> = t
            .means
            .iter()
            .zip(&t.weights)
            .map(|(&m, &w)| {
                x.clone()
                    .sub_scalar(a * m)
                    .square()
                    .mul_scalar(-0.5 / v)
                    .add_scalar(w.ln())
            })
            .collect();
        let r = softmax(Tensor::stack::<5>(logits, 0), 0);
        let [_, b, c, h, w] = r.dims();
        let mix = |f: &dyn Fn(f64) -> Tensor<4>| {
            let comps = Tensor::stack::<5>(t.means.iter().map(|&m| f(m)).collect(), 0);
            (r.clone() * comps).sum_dim(0).reshape([b, c, h, w])
        };
        Denoised {
            x0: mix(&x0_of),
            eps: mix(&eps_of),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_denoiser_matches_the_scalar_posterior_mean() {
        let device = crate::device::device();
        let target = Target::mixture(vec![-1.0, 0.5, 2.0], vec![0.2, 0.5, 0.3], 0.3).unwrap();
        let xs = [-2.0f32, -0.3, 0.0, 0.7, 1.9, 3.5];
        let x = Tensor::<4>::from_data(TensorData::new(xs.to_vec(), [1, 1, 1, 6]), &device);
        let level = Level { alpha: 0.8, sigma: 0.6 };
        let den = ExactDenoiser { target: target.clone() };
        let got: Vec<f32> = den.denoise(x, level).x0.into_data().try_into_vec().unwrap();
        for (g, &xv) in got.iter().zip(&xs) {
            let want = target.posterior_mean(xv as f64, 0.8, 0.6);
            assert!((*g as f64 - want).abs() < 1e-5, "{xv}: {g} vs {want}");
        }
    }
}
