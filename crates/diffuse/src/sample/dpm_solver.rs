//! DPM-Solver++(2M) (Lu et al. 2022) on any grid, and its SDE variant: a data-prediction multistep method
//! that keeps the previous x̂₀ for its second-order correction; first order at the first step and into the last
//! level (diffusers' `lower_order_final`).

use super::Ctx;
use burn::prelude::*;
use diffuse_math::Knot;
use diffuse_math::step::{dpm_solver_pp, dpm_solver_pp_sde};

/// Walks `knots`; `sde` adds the SDE variant's fresh noise each step.
pub fn run(ctx: &mut Ctx, mut x: Tensor<4>, knots: &[Knot], sde: bool) -> Tensor<4> {
    let n = knots.len() - 1;
    let mut prev_x0: Option<Tensor<4>> = None;
    for i in 0..n {
        let (from, to) = (knots[i].level, knots[i + 1].level);
        let d = ctx.denoise(x.clone(), from);
        let h_prev = (i > 0 && i + 1 < n).then(|| from.lambda() - knots[i - 1].level.lambda());
        let (cx, c0, c1, std) = if sde {
            dpm_solver_pp_sde(from, to, h_prev)
        } else {
            let (cx, c0, c1) = dpm_solver_pp(from, to, h_prev);
            (cx, c0, c1, 0.0)
        };
        let mut next = x.mul_scalar(cx) + d.x0.clone().mul_scalar(c0);
        if let (Some(p), true) = (&prev_x0, c1 != 0.0) {
            next = next + p.clone().mul_scalar(c1);
        }
        if std > 0.0 {
            next = next.clone() + ctx.noise(&next).mul_scalar(std);
        }
        x = next;
        ctx.step_done(i, &d.x0);
        prev_x0 = Some(d.x0);
    }
    x
}
