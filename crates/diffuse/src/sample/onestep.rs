//! Samplers whose step from level t to level p is one combination x_p = c_x0·x̂₀ + c_eps·ε̂ + std·z, with the
//! coefficients from `diffuse_math::step`: DDPM ancestral, DDIM(η), Euler ancestral. They share this walk,
//! and with it RePaint's resampling.

use super::{Ctx, Method, Resample, repaint_moves};
use burn::prelude::*;
use diffuse_math::step::{StepCoefs, ancestral, ddim_levels, euler_ancestral};
use diffuse_math::{Knot, Level};

/// A one-step sampler's coefficients from level t to level p.
pub type Coefs = Box<dyn Fn(Level, Level) -> StepCoefs>;

/// The step of `method`, if it is a one-step sampler (η is checked when the plan is built).
pub fn coefs(method: Method) -> Option<Coefs> {
    match method {
        Method::Ddpm { large_variance } => Some(Box::new(move |t, p| ancestral(t, p, large_variance))),
        Method::Ddim { eta } => Some(Box::new(move |t, p| ddim_levels(t, p, eta).expect("eta checked"))),
        Method::EulerAncestral { eta } => Some(Box::new(move |t, p| euler_ancestral(t, p, eta))),
        Method::DpmSolverPP2M
        | Method::DpmSolverPP2MSde
        | Method::UniPc
        | Method::Sde { .. }
        | Method::Ode { .. }
        | Method::Euler { .. }
        | Method::Heun { .. } => None,
    }
}

/// Walks `knots` with `coefs`, going back up by the forward process where `resample` says.
pub fn run(ctx: &mut Ctx, mut x: Tensor<4>, knots: &[Knot], resample: Option<Resample>, coefs: Coefs) -> Tensor<4> {
    let mut done = 0; // steps reported: a resampled step is reported once
    for (i, down) in repaint_moves(knots.len() - 1, resample) {
        let (from, to) = (knots[i].level, knots[i + 1].level);
        if !down {
            // Back up by the forward transition q(x_t | x_p).
            let (a, v) = from.transition_from(to);
            let z = ctx.noise(&x);
            x = x.mul_scalar(a) + z.mul_scalar(v.sqrt());
            continue;
        }
        let c = coefs(from, to);
        let d = ctx.denoise(x, from);
        x = d.x0.clone().mul_scalar(c.c_x0) + d.eps.mul_scalar(c.c_eps);
        if c.std > 0.0 {
            x = x.clone() + ctx.noise(&x).mul_scalar(c.std);
        }
        if i == done {
            ctx.step_done(i, &d.x0);
            done += 1;
        }
    }
    x
}
