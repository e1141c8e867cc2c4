//! EDM's deterministic and stochastic samplers (Karras et al. 2022, Algorithms 1 and 2): Euler or Heun steps
//! on the probability-flow ODE written in a frame where it is simple:
//! - [`Frame::Ve`]: y = x/α against τ = σ/α, where dy/dτ = ε̂ (EDM's own variable);
//! - [`Frame::Flow`]: y = x/(α + σ) against τ = σ/(α + σ), the flow-matching path, where dy/dτ = ε̂ − x̂₀ (the
//!   velocity), which stays finite at the path's start at pure noise.
//!
//! In both frames y = a(τ)·x₀ + b(τ)·ε with a, b linear in τ, so an Euler step is exactly DDIM (η = 0); Heun
//! adds the trapezoidal correction, and with "churn" first raises the level by γ and adds the matching noise.

use super::Ctx;
use burn::prelude::*;
use diffuse_math::{Knot, Level};
use serde::{Deserialize, Serialize};

/// The frame an ODE step is taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Frame {
    Ve,
    Flow,
}

/// EDM's stochasticity (Algorithm 2): at levels τ ∈ [t_min, t_max] each step first raises τ by the factor
/// 1 + γ, γ = min(s_churn/N, √2 − 1), adding noise of std s_noise·√(τ̂² − τ²). s_churn = 0 is deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    pub s_churn: f64,
    pub s_tmin: f64,
    /// None: no upper limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s_tmax: Option<f64>,
    pub s_noise: f64,
}

impl Churn {
    /// No churn: the deterministic sampler.
    pub const NONE: Churn = Churn {
        s_churn: 0.0,
        s_tmin: 0.0,
        s_tmax: None,
        s_noise: 1.0,
    };
}

impl Frame {
    /// τ of `level`, and the factor taking x at that level to y.
    fn coords(self, level: Level) -> (f64, f64) {
        let scale = match self {
            Frame::Ve => 1.0 / level.alpha,
            Frame::Flow => 1.0 / (level.alpha + level.sigma),
        };
        (level.sigma * scale, scale)
    }

    /// The level (a(τ), b(τ)) of y at τ.
    fn level(self, tau: f64) -> Level {
        match self {
            Frame::Ve => Level { alpha: 1.0, sigma: tau },
            Frame::Flow => Level {
                alpha: 1.0 - tau,
                sigma: tau,
            },
        }
    }

    /// dy/dτ = a′·x̂₀ + b′·ε̂.
    fn slope(self, ctx: &mut Ctx, y: &Tensor<4>, tau: f64) -> Tensor<4> {
        let d = ctx.denoise(y.clone(), self.level(tau));
        match self {
            Frame::Ve => d.eps,
            Frame::Flow => d.eps - d.x0,
        }
    }
}

/// Walks `knots` with Euler (`heun` false) or Heun steps in `frame`, with `churn`.
pub fn run(ctx: &mut Ctx, x: Tensor<4>, knots: &[Knot], frame: Frame, heun: bool, churn: Churn) -> Tensor<4> {
    let (_, start_scale) = frame.coords(knots[0].level);
    let mut y = x.mul_scalar(start_scale);
    let n = knots.len() - 1;
    let gamma_max = (churn.s_churn / n as f64).min(std::f64::consts::SQRT_2 - 1.0);
    for i in 0..n {
        let (tau, _) = frame.coords(knots[i].level);
        let (next, _) = frame.coords(knots[i + 1].level);
        let gamma = if (churn.s_tmin..=churn.s_tmax.unwrap_or(f64::INFINITY)).contains(&tau) {
            gamma_max
        } else {
            0.0
        };
        let tau_hat = tau * (1.0 + gamma);
        if gamma > 0.0 {
            let z = ctx.noise(&y);
            y = y + z.mul_scalar(churn.s_noise * (tau_hat * tau_hat - tau * tau).sqrt());
        }
        let d = frame.slope(ctx, &y, tau_hat);
        let h = next - tau_hat;
        let euler = y.clone() + d.clone().mul_scalar(h);
        y = if heun && next > 0.0 {
            let d2 = frame.slope(ctx, &euler, next);
            y + (d + d2).mul_scalar(0.5 * h)
        } else {
            euler
        };
        ctx.step_done(i, &y);
    }
    let (_, end_scale) = frame.coords(knots[n].level);
    y.mul_scalar(1.0 / end_scale)
}
