//! Reverse-SDE samplers (Song et al. 2021, score_sde `sampling.py`): predictors step from t to the next grid
//! time, the Langevin corrector refines at t. All use the score s = ∇ log p_t(x) = −ε̂/σ_t.
//! The grid is t_i = s − i(s − t_min)/K, i = 0…K, from s = 1 (or an SDEdit strength); after it, x̂₀ at t_min
//! is returned (noise removal).

use super::{Ctx, Predictor, norms};
use burn::prelude::*;
use diffuse_math::Sde;
use diffuse_math::step::ancestral;

/// K + 1 times from `start` (1 for sampling from the prior) down to the SDE's t_min.
pub fn time_grid(sde: &Sde, steps: usize, start: f64) -> Vec<f64> {
    let t_min = sde.t_min();
    (0..=steps)
        .map(|i| start - i as f64 * (start - t_min) / steps as f64)
        .collect()
}

pub fn run(
    ctx: &mut Ctx,
    mut x: Tensor<4>,
    sde: &Sde,
    predictor: Predictor,
    (corrector_steps, snr): (usize, f64),
    steps: usize,
    start: f64,
) -> Tensor<4> {
    let ts = time_grid(sde, steps, start);
    for i in 0..steps {
        let (t, next) = (ts[i], ts[i + 1]);
        for _ in 0..corrector_steps {
            x = langevin(ctx, x, sde, t, next, snr);
        }
        if predictor == Predictor::None {
            ctx.step_done(i, &x);
            continue;
        }
        let level = sde.marginal(t);
        let d = ctx.denoise(x.clone(), level);
        let score_eps = -1.0 / level.sigma; // score = score_eps · ε̂
        x = match predictor {
            Predictor::EulerMaruyama => {
                // x ← x + [a x − g² s] dt + g √|dt| z, dt < 0
                let (dt, g) = (next - t, sde.diffusion(t));
                let drift = x.clone().mul_scalar(sde.drift_coef(t)) - d.eps.clone().mul_scalar(g * g * score_eps);
                let mean = x + drift.mul_scalar(dt);
                mean.clone() + ctx.noise(&mean).mul_scalar(g * (-dt).sqrt())
            }
            Predictor::ReverseDiffusion => {
                // Reverse of the exact forward transition x_t = a x_next + √v z: x ← x − (a − 1) x + v s + √v z.
                let (a, v) = sde.transition(next, t);
                let mean = x.mul_scalar(2.0 - a) + d.eps.clone().mul_scalar(v * score_eps);
                mean.clone() + ctx.noise(&mean).mul_scalar(v.sqrt())
            }
            Predictor::Ancestral => {
                let c = ancestral(level, sde.marginal(next), false);
                let mean = d.x0.clone().mul_scalar(c.c_x0) + d.eps.clone().mul_scalar(c.c_eps);
                mean.clone() + ctx.noise(&mean).mul_scalar(c.std)
            }
            Predictor::None => unreachable!(),
        };
        ctx.step_done(i, &d.x0);
    }
    ctx.denoise(x, sde.marginal(ts[steps])).x0
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
