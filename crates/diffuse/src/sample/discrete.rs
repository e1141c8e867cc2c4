//! Samplers on a discrete train schedule: DDPM and DDIM apply one (x̂₀, ε̂, z) step per pair of grid levels;
//! DPM-Solver++(2M) keeps the previous x̂₀ for its second-order correction.

use super::{Ctx, Method, Plan, kept, repaint_moves};
use burn::prelude::*;
use diffuse_math::step::{ancestral, ddim_levels, dpm_solver_pp};
use diffuse_math::{Level, NoiseSchedule, TimestepSpacing};

pub fn run(
    ctx: &mut Ctx,
    mut x: Tensor<4>,
    plan: &Plan,
    schedule: &NoiseSchedule,
    spacing: TimestepSpacing,
) -> Tensor<4> {
    let (method, steps) = (plan.method, plan.steps);
    let level = |t: i64| Level::vp(schedule.alpha_bar(t));
    match method {
        Method::Ddpm { .. } | Method::Ddim { .. } => {
            let pairs = spacing
                .pairs(schedule.len(), steps)
                .expect("steps checked by Plan::new");
            let pairs = &pairs[pairs.len() - kept(pairs.len(), plan.strength)..];
            let mut done = 0; // steps reported: a resampled step is reported once
            for (i, up) in repaint_moves(pairs.len(), plan.resample) {
                let (t, prev) = pairs[i];
                let (from, to) = (level(t), level(prev));
                if !up {
                    // Back up by the forward transition q(x_t | x_prev).
                    let (a, v) = from.transition_from(to);
                    let z = ctx.noise(&x);
                    x = x.mul_scalar(a) + z.mul_scalar(v.sqrt());
                    continue;
                }
                let c = match method {
                    Method::Ddpm { large_variance } => ancestral(from, to, large_variance),
                    Method::Ddim { eta } => ddim_levels(from, to, eta).expect("eta checked by Plan::new"),
                    _ => unreachable!(),
                };
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
        Method::DpmSolverPP2M => {
            let ts = spacing
                .dpm_solver_timesteps(schedule.len(), steps)
                .expect("steps checked by Plan::new");
            let ts = &ts[ts.len() - kept(ts.len(), plan.strength)..];
            let mut levels: Vec<Level> = ts.iter().map(|&t| level(t)).collect();
            levels.push(Level::CLEAN);
            let mut prev_x0: Option<Tensor<4>> = None;
            let n = ts.len();
            for i in 0..n {
                let (from, to) = (levels[i], levels[i + 1]);
                let d = ctx.denoise(x.clone(), from);
                // First order at the start and into σ = 0 (diffusers' lower_order_final).
                let h_prev = (i > 0 && i + 1 < n).then(|| from.lambda() - levels[i - 1].lambda());
                let (cx, c0, c1) = dpm_solver_pp(from, to, h_prev);
                let mut next = x.mul_scalar(cx) + d.x0.clone().mul_scalar(c0);
                if let (Some(p), true) = (&prev_x0, c1 != 0.0) {
                    next = next + p.clone().mul_scalar(c1);
                }
                x = next;
                ctx.step_done(i, &d.x0);
                prev_x0 = Some(d.x0);
            }
            x
        }
        _ => unreachable!("not a discrete method"),
    }
}
