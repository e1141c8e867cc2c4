//! The denoiser interface every sampler talks to: x_t and a train timestep in, (x̂₀, ε̂) out.

use crate::nn::UNet;
use burn::prelude::*;
use diffuse_math::{NoiseSchedule, Prediction};

/// A denoiser's estimate of the clean image and of the noise in x_t.
pub struct Denoised {
    pub x0: Tensor<4>,
    pub eps: Tensor<4>,
}

pub trait Denoiser {
    /// Denoises a batch that is entirely at train timestep `t`.
    fn denoise(&self, x: Tensor<4>, t: i64) -> Denoised;
}

/// Turns a network output into (x̂₀, ε̂) for its parameterisation.
pub fn from_output(x: Tensor<4>, out: Tensor<4>, alpha_bar: f64, prediction: Prediction) -> Denoised {
    let (fx0, feps) = prediction.to_x0_eps(alpha_bar);
    let affine =
        |a: diffuse_math::prediction::Affine| x.clone().mul_scalar(a.x_coef) + out.clone().mul_scalar(a.out_coef);
    Denoised {
        x0: affine(fx0),
        eps: affine(feps),
    }
}

/// A trained UNet as a denoiser; `clip` clamps x̂₀ to the data range [−1, 1] (as diffusers' `clip_sample`).
pub struct UNetDenoiser<'a> {
    pub net: &'a UNet,
    pub schedule: &'a NoiseSchedule,
    pub prediction: Prediction,
    pub clip: bool,
}

impl Denoiser for UNetDenoiser<'_> {
    fn denoise(&self, x: Tensor<4>, t: i64) -> Denoised {
        let b = x.dims()[0];
        let tt = Tensor::<1>::full([b], t as f32, &x.device());
        let out = self.net.forward(x.clone(), tt);
        let mut d = from_output(x, out, self.schedule.alpha_bar(t), self.prediction);
        if self.clip {
            d.x0 = d.x0.clamp(-1.0, 1.0);
        }
        d
    }
}

/// The exact denoiser of a data set that is a single known image per batch item: returns that x₀ and the
/// ε that explains x_t. Used to test samplers against a known answer.
pub struct OracleX0<'a> {
    pub x0: Tensor<4>,
    pub schedule: &'a NoiseSchedule,
}

impl Denoiser for OracleX0<'_> {
    fn denoise(&self, x: Tensor<4>, t: i64) -> Denoised {
        let ab = self.schedule.alpha_bar(t);
        let eps = (x - self.x0.clone().mul_scalar(ab.sqrt())).mul_scalar(1.0 / (1.0 - ab).sqrt());
        Denoised {
            x0: self.x0.clone(),
            eps,
        }
    }
}

/// The exact denoiser for data x₀ ~ N(m, s²) per value: E[ε | x_t] = σ (x_t − a m) / (a² s² + σ²) with
/// a = √ᾱ, σ = √(1 − ᾱ). Samplers run against it must reproduce the data distribution.
pub struct GaussianData<'a> {
    pub mean: f64,
    pub std: f64,
    pub schedule: &'a NoiseSchedule,
}

impl Denoiser for GaussianData<'_> {
    fn denoise(&self, x: Tensor<4>, t: i64) -> Denoised {
        let ab = self.schedule.alpha_bar(t);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let k = s / (a * a * self.std * self.std + s * s);
        let eps = x.clone().sub_scalar(a * self.mean).mul_scalar(k);
        from_output(x, eps, ab, Prediction::Eps)
    }
}
