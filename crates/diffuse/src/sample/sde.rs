//! Reverse-SDE samplers (Song et al. 2021, score_sde `sampling.py`): predictors step from t to the next grid
//! time, the Langevin corrector refines at t. All use the score s = ∇ log p_t(x) = −ε̂/σ_t. They walk any grid
//! on the SDE (score_sde's is uniform in t from 1, or an SDEdit strength, to t_min); the plan's runner then
//! denoises once at t_min (noise removal).

use super::{Ctx, Predictor, norms};
use burn::prelude::*;
use diffuse_math::step::ancestral;
use diffuse_math::{Knot, Sde};

pub fn run(
    ctx: &mut Ctx,
    mut x: Tensor<4>,
    sde: &Sde,
    knots: &[Knot],
    predictor: Predictor,
    (corrector_steps, snr): (usize, f64),
) -> Tensor<4> {
    for i in 0..knots.len() - 1 {
        let (t, next) = (knots[i].t, knots[i + 1].t);
        for _ in 0..corrector_steps {
            x = langevin(ctx, x, sde, t, next, snr);
        }
        let level = knots[i].level;
        let score_eps = -1.0 / level.sigma; // score = score_eps · ε̂
        // Each predictor: the mean of x at the next time, the noise's standard deviation, and x̂₀.
        let (mean, std, x0) = match predictor {
            Predictor::None => {
                ctx.step_done(i, &x);
                continue;
            }
            Predictor::EulerMaruyama => {
                // x ← x + [a x − g² s] dt + g √|dt| z, dt < 0
                let d = ctx.denoise(x.clone(), level);
                let (dt, g) = (next - t, sde.diffusion(t));
                let drift = x.clone().mul_scalar(sde.drift_coef(t)) - d.eps.mul_scalar(g * g * score_eps);
                (x + drift.mul_scalar(dt), g * (-dt).sqrt(), d.x0)
            }
            Predictor::ReverseDiffusion => {
                // Reverse of the exact forward transition x_t = a x_next + √v z: x ← x − (a − 1) x + v s + √v z.
                let d = ctx.denoise(x.clone(), level);
                let (a, v) = sde.transition(next, t);
                (x.mul_scalar(2.0 - a) + d.eps.mul_scalar(v * score_eps), v.sqrt(), d.x0)
            }
            Predictor::Ancestral => {
                let d = ctx.denoise(x, level);
                let c = ancestral(level, knots[i + 1].level, false);
                (d.x0.clone().mul_scalar(c.c_x0) + d.eps.mul_scalar(c.c_eps), c.std, d.x0)
            }
        };
        x = mean.clone() + ctx.noise(&mean).mul_scalar(std);
        ctx.step_done(i, &x0);
    }
    x
}

/// One Langevin step at time t with the step size that keeps ‖noise‖/‖step·score‖ at `snr`, scaled by α_i
/// (the discrete transition's a², as score_sde's `alphas`). Norms are per image, so an image's path does not
/// depend on the rest of its batch (score_sde averages them over the batch).
fn langevin(ctx: &mut Ctx, x: Tensor<4>, sde: &Sde, t: f64, next: f64, snr: f64) -> Tensor<4> {
    let level = sde.marginal(t);
    let score = ctx.denoise(x.clone(), level).eps.mul_scalar(-1.0 / level.sigma);
    let z = ctx.noise(&x);
    let (a, _) = sde.transition(next, t);
    let ratio = norms(&z) / norms(&score).clamp_min(1e-12);
    let step = ratio.square().mul_scalar(2.0 * a * a * snr * snr);
    let mean = x + score * step.clone();
    mean + z * step.mul_scalar(2.0).sqrt()
}
