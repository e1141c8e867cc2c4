//! DPM-Solver++(2M) (Lu et al. 2022) on any grid, its SDE variant, and UniPC (Zhao et al. 2023), which is the
//! same predictor followed by the UniC corrector: data-prediction multistep methods that keep earlier x̂₀ for
//! their second-order terms; first order at the first step and into the last level (diffusers'
//! `lower_order_final`).

use super::Ctx;
use burn::prelude::*;
use diffuse_math::Knot;
use diffuse_math::step::{dpm_solver_pp, dpm_solver_pp_sde, unipc_corrector};

/// Which of the multistep family walks the grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    /// DPM-Solver++(2M).
    Ode,
    /// Fresh noise each step (diffusers' `sde-dpmsolver++`).
    Sde,
    /// UniPC-2 with B(h) = e^{−h} − 1: each x_t reached is corrected with the x̂₀ the network gives there, which
    /// the next step needs anyway, so the corrector costs no call.
    UniPc,
}

/// Walks `knots` with `variant`.
pub fn run(ctx: &mut Ctx, mut x: Tensor<4>, knots: &[Knot], variant: Variant) -> Tensor<4> {
    let n = knots.len() - 1;
    // x̂₀ at the last two knots visited, newest first, and x at the last one (after its correction).
    let mut x0s: Vec<Tensor<4>> = Vec::with_capacity(2);
    let mut x_prev: Option<Tensor<4>> = None;
    // A step is second order when it has a previous x̂₀ and does not end at the last level.
    let second_order = |i: usize| i > 0 && i + 1 < n;
    for i in 0..n {
        let (from, to) = (knots[i].level, knots[i + 1].level);
        let d = ctx.denoise(x.clone(), from);
        if let (Variant::UniPc, Some(xp)) = (variant, x_prev.take()) {
            // Correct the step from knot i − 1 with the same order it was taken.
            let older = second_order(i - 1).then(|| knots[i - 2].level);
            let (cx, cs, cp, ct) = unipc_corrector(older, knots[i - 1].level, from);
            let mut c = xp.mul_scalar(cx) + x0s[0].clone().mul_scalar(cs) + d.x0.clone().mul_scalar(ct);
            if older.is_some() {
                c = c + x0s[1].clone().mul_scalar(cp);
            }
            x = c;
        }
        let h_prev = second_order(i).then(|| from.lambda() - knots[i - 1].level.lambda());
        let (cx, c0, c1, std) = match variant {
            Variant::Sde => dpm_solver_pp_sde(from, to, h_prev),
            Variant::Ode | Variant::UniPc => {
                let (cx, c0, c1) = dpm_solver_pp(from, to, h_prev);
                (cx, c0, c1, 0.0)
            }
        };
        // Only UniPC's corrector needs x after the step; the others let it be scaled in place.
        let (scaled, kept) = if variant == Variant::UniPc {
            (x.clone().mul_scalar(cx), Some(x))
        } else {
            (x.mul_scalar(cx), None)
        };
        let mut next = scaled + d.x0.clone().mul_scalar(c0);
        if c1 != 0.0 {
            next = next + x0s[0].clone().mul_scalar(c1);
        }
        if std > 0.0 {
            next = next.clone() + ctx.noise(&next).mul_scalar(std);
        }
        ctx.step_done(i, &d.x0);
        x_prev = kept;
        x = next;
        x0s.insert(0, d.x0);
        x0s.truncate(2);
    }
    x
}
