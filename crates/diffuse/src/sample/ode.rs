//! The probability-flow ODE dx/dt = a(t)·x − ½ g(t)² ∇log p_t(x) = a x + ½ g² ε̂/σ (Song et al. 2021, eq. 13):
//! deterministic sampling (t: 1 → t_min), encoding (t_min → 1), and log-likelihood by integrating the
//! divergence alongside x, estimated with Hutchinson's trick (E[vᵀ J v], Rademacher v) and a central
//! difference for J v.

use super::{Ctx, OdeSolver};
use burn::prelude::*;
use diffuse_math::{Grid, Knot, Process, Sde};

/// The ODE state: images and, for likelihoods, one accumulated value per image.
#[derive(Clone)]
struct State {
    x: Tensor<4>,
    acc: Tensor<1>,
}

impl State {
    fn axpy(&self, h: f64, terms: &[(f64, &State)]) -> State {
        let mut x = self.x.clone();
        let mut acc = self.acc.clone();
        for (c, k) in terms {
            if *c != 0.0 {
                x = x + k.x.clone().mul_scalar(h * c);
                acc = acc + k.acc.clone().mul_scalar(h * c);
            }
        }
        State { x, acc }
    }
}

/// The probability-flow velocity at (x, t).
fn velocity(ctx: &mut Ctx, sde: &Sde, x: &Tensor<4>, t: f64) -> Tensor<4> {
    let level = sde.marginal(t);
    let g = sde.diffusion(t);
    let d = ctx.denoise(x.clone(), level);
    x.clone().mul_scalar(sde.drift_coef(t)) + d.eps.mul_scalar(0.5 * g * g / level.sigma)
}

// Dormand–Prince 5(4) tableau (Dormand & Prince 1980).
const C: [f64; 7] = [0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// 5th-order weights minus the embedded 4th-order ones: the local error estimate.
const E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

/// Integrates `field` over the times `ts` with `solver`: a fixed step between each pair for Euler and Heun,
/// adaptive steps from the first time to the last for RK45.
fn integrate(
    ctx: &mut Ctx,
    mut field: impl FnMut(&mut Ctx, &State, f64) -> State,
    mut y: State,
    ts: &[f64],
    solver: OdeSolver,
) -> State {
    let (t0, t1) = (ts[0], ts[ts.len() - 1]);
    match solver {
        OdeSolver::Euler | OdeSolver::Heun => {
            for (i, w) in ts.windows(2).enumerate() {
                let (t, h) = (w[0], w[1] - w[0]);
                let k1 = field(ctx, &y, t);
                y = if solver == OdeSolver::Euler {
                    y.axpy(h, &[(1.0, &k1)])
                } else {
                    let k2 = field(ctx, &y.axpy(h, &[(1.0, &k1)]), t + h);
                    y.axpy(h, &[(0.5, &k1), (0.5, &k2)])
                };
                ctx.step_done(i, &y.x);
            }
            y
        }
        OdeSolver::Rk45 { rtol, atol } => {
            let span = t1 - t0;
            let mut h = span / 20.0;
            let mut t = t0;
            let mut k1 = field(ctx, &y, t);
            let mut i = 0;
            while (t1 - t) * span.signum() > 1e-12 {
                if (t + h - t1) * span.signum() > 0.0 {
                    h = t1 - t;
                }
                let mut k: Vec<State> = vec![k1.clone()];
                for s in 1..7 {
                    let terms: Vec<(f64, &State)> = (0..s).map(|j| (A[s][j], &k[j])).collect();
                    let ys = y.axpy(h, &terms);
                    k.push(field(ctx, &ys, t + C[s] * h));
                }
                // k[6] was evaluated at the 5th-order solution: y_new = y + h Σ A[6][j] k_j.
                let terms: Vec<(f64, &State)> = (0..6).map(|j| (A[6][j], &k[j])).collect();
                let y_new = y.axpy(h, &terms);
                let err_terms: Vec<(f64, &State)> = (0..7).map(|j| (E[j], &k[j])).collect();
                let err = y.axpy(h, &err_terms).x - y.x.clone();
                let scale =
                    y.x.clone()
                        .abs()
                        .max_pair(y_new.x.clone().abs())
                        .mul_scalar(rtol)
                        .add_scalar(atol);
                let norm = (err / scale).square().mean().into_scalar::<f32>().sqrt() as f64;
                if norm <= 1.0 || !norm.is_finite() && h.abs() < 1e-9 {
                    t += h;
                    y = y_new;
                    k1 = k.pop().expect("seven stages"); // first-same-as-last
                    ctx.step_done(i, &y.x);
                    i += 1;
                }
                let factor = if norm == 0.0 {
                    5.0
                } else {
                    (0.9 * norm.powf(-0.2)).clamp(0.2, 5.0)
                };
                h *= if norm.is_finite() { factor } else { 0.2 };
            }
            y
        }
    }
}

/// The probability-flow field alone (nothing accumulated beside x).
fn flow(sde: &Sde) -> impl FnMut(&mut Ctx, &State, f64) -> State + '_ {
    move |ctx, s, t| State {
        x: velocity(ctx, sde, &s.x, t),
        acc: zeros_acc(&s.x),
    }
}

fn zeros_acc(x: &Tensor<4>) -> Tensor<1> {
    Tensor::zeros([x.dims()[0]], &x.device())
}

/// Samples by integrating over the grid's times (down to t_min; the plan's runner then denoises once).
pub fn sample(ctx: &mut Ctx, x: Tensor<4>, sde: &Sde, knots: &[Knot], solver: OdeSolver) -> Tensor<4> {
    let ts: Vec<f64> = knots.iter().map(|k| k.t).collect();
    let y = State { acc: zeros_acc(&x), x };
    integrate(ctx, flow(sde), y, &ts, solver).x
}

/// The times of the SDE's uniform-t grid of `steps` steps, from 1 down to t_min (the sampling direction).
fn downwards(sde: &Sde, steps: usize) -> Vec<f64> {
    Grid::UniformT
        .knots(&Process::Sde(*sde), steps.max(1), 1.0)
        .expect("a uniform-t grid lies on every SDE")
        .iter()
        .map(|k| k.t)
        .collect()
}

/// The same times from t_min up to 1 (encoding and likelihood).
fn upwards(sde: &Sde, steps: usize) -> Vec<f64> {
    let mut ts = downwards(sde, steps);
    ts.reverse();
    ts
}

/// Maps x at t_min to its latent at t = 1 (the inverse of [`sample`] without its final denoising).
pub fn encode(ctx: &mut Ctx, x: Tensor<4>, sde: &Sde, solver: OdeSolver, steps: usize) -> Tensor<4> {
    let y = State { acc: zeros_acc(&x), x };
    integrate(ctx, flow(sde), y, &upwards(sde, steps), solver).x
}

/// Decodes a latent at t = 1 to x at t_min (no final denoising), so that `decode(encode(x)) ≈ x`.
pub fn decode(ctx: &mut Ctx, z: Tensor<4>, sde: &Sde, solver: OdeSolver, steps: usize) -> Tensor<4> {
    let y = State {
        acc: zeros_acc(&z),
        x: z,
    };
    integrate(ctx, flow(sde), y, &downwards(sde, steps), solver).x
}

/// log p_{t_min}(x) per image in nats: log p_1(z) + ∫ div F dt along the ODE from t_min to 1, with a fixed
/// Rademacher probe `v` (same shape as x) for the Hutchinson estimate.
pub fn log_likelihood(
    ctx: &mut Ctx,
    x: Tensor<4>,
    v: Tensor<4>,
    sde: &Sde,
    solver: OdeSolver,
    steps: usize,
) -> Vec<f64> {
    let delta = 1e-2;
    let [b, ..] = x.dims();
    let field = |ctx: &mut Ctx, s: &State, t: f64| {
        let f = velocity(ctx, sde, &s.x, t);
        let fp = velocity(ctx, sde, &(s.x.clone() + v.clone().mul_scalar(delta)), t);
        let fm = velocity(ctx, sde, &(s.x.clone() - v.clone().mul_scalar(delta)), t);
        let jv = (fp - fm).mul_scalar(0.5 / delta);
        let div = (jv * v.clone()).reshape([b as i32, -1]).sum_dim(1).reshape([b]);
        State { x: f, acc: div }
    };
    let y = integrate(
        ctx,
        field,
        State { acc: zeros_acc(&x), x },
        &upwards(sde, steps),
        solver,
    );
    let z: Vec<f32> = super::to_vec(y.x);
    let acc: Vec<f32> = y.acc.into_data().convert::<f32>().try_into_vec().expect("f32");
    let per = z.len() / b;
    (0..b)
        .map(|i| {
            let zi: Vec<f64> = z[i * per..(i + 1) * per].iter().map(|&v| v as f64).collect();
            sde.prior_logp(&zi) + acc[i] as f64
        })
        .collect()
}
