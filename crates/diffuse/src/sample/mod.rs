//! Samplers over a [`Denoiser`], as short functions that walk a time grid:
//! - discrete ([`discrete`]): DDPM ancestral, DDIM(η), DPM-Solver++(2M) on a train schedule's levels;
//! - SDE ([`sde`]): Euler–Maruyama, reverse-diffusion and ancestral predictors, Langevin corrector, PC;
//! - probability-flow ODE ([`ode`]): Euler, Heun, adaptive RK45; encoding and likelihood too.
//!
//! The update coefficients live in `diffuse_math::step` next to their equations and tests; this module only
//! applies them. Each image draws its noise from its own stream, and every network call is counted (NFE).

pub mod discrete;
pub mod ode;
pub mod sde;

use crate::denoise::{Cond, Denoised, Denoiser};
use crate::{Error, Result, rng};
use burn::prelude::*;
use diffuse_math::{Level, NoiseSchedule, Sde, TimestepSpacing};
use rand_chacha::ChaCha8Rng;

/// A probability-flow ODE solver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OdeSolver {
    Euler,
    Heun,
    /// Dormand–Prince 5(4) with adaptive steps; `steps` is ignored.
    Rk45 {
        rtol: f64,
        atol: f64,
    },
}

/// The predictor of a predictor–corrector sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Predictor {
    EulerMaruyama,
    ReverseDiffusion,
    Ancestral,
    /// Corrector only (annealed Langevin dynamics).
    None,
}

impl std::fmt::Display for OdeSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OdeSolver::Euler => write!(f, "euler"),
            OdeSolver::Heun => write!(f, "heun"),
            OdeSolver::Rk45 { rtol, atol } => write!(f, "rk45, rtol {rtol}, atol {atol}"),
        }
    }
}

impl std::fmt::Display for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Predictor::EulerMaruyama => "euler-maruyama",
            Predictor::ReverseDiffusion => "reverse-diffusion",
            Predictor::Ancestral => "ancestral",
            Predictor::None => "no",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Ancestral sampling (Ho et al.); `large_variance` uses β_t ("fixed large") instead of β̃_t.
    Ddpm { large_variance: bool },
    /// DDIM (Song et al.) with η ∈ [0, 1]; η = 0 is deterministic.
    Ddim { eta: f64 },
    /// DPM-Solver++(2M), diffusers' defaults: second order, first order at the start and into σ = 0.
    DpmSolverPP2M,
    /// A reverse-SDE predictor, optionally followed by `corrector_steps` Langevin steps at signal-to-noise
    /// ratio `snr` (score_sde's PC sampler runs the corrector first, then the predictor, at each time).
    Sde {
        predictor: Predictor,
        corrector_steps: usize,
        snr: f64,
    },
    /// The probability-flow ODE.
    Ode { solver: OdeSolver },
}

impl Method {
    pub fn name(&self) -> String {
        match self {
            Method::Ddpm { large_variance } => {
                format!("ddpm ({} variance)", if *large_variance { "large" } else { "small" })
            }
            Method::Ddim { eta } => format!("ddim (eta {eta})"),
            Method::DpmSolverPP2M => "dpm-solver++(2M)".into(),
            Method::Sde {
                predictor,
                corrector_steps: 0,
                ..
            } => format!("{predictor} predictor"),
            Method::Sde {
                predictor,
                corrector_steps,
                snr,
            } => {
                format!("pc ({predictor} + {corrector_steps} Langevin, snr {snr})")
            }
            Method::Ode { solver } => format!("probability-flow ODE ({solver})"),
        }
    }

    pub fn is_discrete(&self) -> bool {
        matches!(self, Method::Ddpm { .. } | Method::Ddim { .. } | Method::DpmSolverPP2M)
    }
}

/// The process a sampler walks: a discrete train schedule, or a continuous SDE on t ∈ [t_min, 1].
#[derive(Clone, Debug)]
pub enum Process {
    Discrete {
        schedule: NoiseSchedule,
        spacing: TimestepSpacing,
    },
    Sde(Sde),
}

/// A sampler with its process and step count, checked for consistency.
#[derive(Clone, Debug)]
pub struct Plan {
    pub method: Method,
    pub process: Process,
    pub steps: usize,
    /// Where sampling starts, as a fraction of the process (SDEdit's strength): 1 starts from pure noise;
    /// s < 1 keeps the last ⌈s·K⌉ steps of a discrete grid, or walks t from s on an SDE.
    pub strength: f64,
    /// RePaint's resampling (Lugmayr et al. 2022), DDPM and DDIM only: after every `jump` steps down, go back
    /// up `jump` steps by the forward process and down again, `count − 1` times at each such point.
    pub resample: Option<Resample>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resample {
    pub jump: usize,
    pub count: usize,
}

impl Plan {
    pub fn new(method: Method, process: Process, steps: usize) -> Result<Plan> {
        match (&process, method.is_discrete()) {
            (Process::Discrete { schedule, .. }, true) if steps == 0 || steps > schedule.len() => {
                return Err(Error::Invalid(format!(
                    "steps must be between 1 and the {} train timesteps, got {steps}",
                    schedule.len()
                )));
            }
            (Process::Discrete { .. }, false) => {
                return Err(Error::Invalid(format!(
                    "{} needs an SDE (--sde vp|subvp|ve)",
                    method.name()
                )));
            }
            (Process::Sde(_), true) => {
                return Err(Error::Invalid(format!("{} needs a discrete schedule", method.name())));
            }
            _ => {}
        }
        if steps == 0 {
            return Err(Error::Invalid("steps must be at least 1".into()));
        }
        match method {
            Method::Ddim { eta } if !(0.0..=1.0).contains(&eta) => {
                return Err(Error::Invalid(format!("eta must be in [0, 1], got {eta}")));
            }
            Method::Sde {
                snr, corrector_steps, ..
            } if corrector_steps > 0 && !(snr > 0.0 && snr.is_finite()) => {
                return Err(Error::Invalid(format!("snr must be positive, got {snr}")));
            }
            Method::Ode {
                solver: OdeSolver::Rk45 { rtol, atol },
            } if !(rtol > 0.0 && atol > 0.0) => {
                return Err(Error::Invalid("rtol and atol must be positive".into()));
            }
            _ => {}
        }
        Ok(Plan {
            method,
            process,
            steps,
            strength: 1.0,
            resample: None,
        })
    }

    /// Starts sampling part-way, at fraction `s` ∈ (0, 1] of the process.
    pub fn with_strength(mut self, s: f64) -> Result<Plan> {
        if !(s > 0.0 && s <= 1.0) {
            return Err(Error::Invalid(format!("strength must be in (0, 1], got {s}")));
        }
        if let Process::Sde(sde) = &self.process
            && s <= sde.t_min()
        {
            return Err(Error::Invalid(format!(
                "strength {s} is at or below the {sde} SDE's t_min {}: nothing to denoise",
                sde.t_min()
            )));
        }
        self.strength = s;
        Ok(self)
    }

    /// Adds RePaint resampling (`count` ≥ 1 passes, `count` = 1 is none).
    pub fn with_resampling(mut self, jump: usize, count: usize) -> Result<Plan> {
        if count <= 1 {
            return Ok(self);
        }
        if !matches!(self.method, Method::Ddpm { .. } | Method::Ddim { .. }) || jump == 0 {
            return Err(Error::Invalid(
                "resampling needs the ddpm or ddim sampler and a jump length of at least 1".into(),
            ));
        }
        self.resample = Some(Resample { jump, count });
        Ok(self)
    }

    /// The noise level sampling starts at (the level an SDEdit input is noised to).
    pub fn start_level(&self) -> Level {
        match &self.process {
            Process::Discrete { schedule, spacing } => match self.method {
                Method::DpmSolverPP2M => {
                    let ts = spacing
                        .dpm_solver_timesteps(schedule.len(), self.steps)
                        .expect("checked");
                    Level::vp(schedule.alpha_bar(ts[ts.len() - kept(ts.len(), self.strength)]))
                }
                _ => {
                    let pairs = spacing.pairs(schedule.len(), self.steps).expect("checked");
                    Level::vp(schedule.alpha_bar(pairs[pairs.len() - kept(pairs.len(), self.strength)].0))
                }
            },
            Process::Sde(sde) => sde.marginal(self.strength),
        }
    }

    /// Standard deviation of the noise sampling starts from.
    pub fn prior_std(&self) -> f64 {
        match &self.process {
            Process::Discrete { .. } => 1.0,
            Process::Sde(sde) => sde.prior_std(),
        }
    }
}

/// How many of `k` grid steps a start at strength `s` keeps: ⌈s·k⌉, at least one.
pub fn kept(k: usize, s: f64) -> usize {
    ((s * k as f64 - 1e-9).ceil() as usize).clamp(1, k)
}

/// The moves of a RePaint walk over `k` grid steps: `(i, true)` steps down from grid level i to i + 1 with the
/// sampler, `(i, false)` goes back up from level i + 1 to i by the forward process.
pub fn repaint_moves(k: usize, r: Option<Resample>) -> Vec<(usize, bool)> {
    let Some(Resample { jump, count }) = r else {
        return (0..k).map(|i| (i, true)).collect();
    };
    let mut moves = Vec::new();
    let mut jumps = vec![0usize; k + 1];
    let mut i = 0;
    while i < k {
        moves.push((i, true));
        i += 1;
        if i % jump == 0 && i < k && jumps[i] + 1 < count {
            jumps[i] += 1;
            for _ in 0..jump {
                i -= 1;
                moves.push((i, false));
            }
        }
    }
    moves
}

/// What one batch of sampling returns: the images, x̂₀ at the kept steps, and the network evaluations used.
pub struct Sampled {
    pub x: Tensor<4>,
    pub x0_at: Vec<Tensor<4>>,
    pub nfe: usize,
}

/// The sampler's view of the world: the denoiser (counted), per-image noise streams, progress.
pub struct Ctx<'a> {
    den: &'a dyn Denoiser,
    streams: &'a mut [ChaCha8Rng],
    keep: &'a [usize],
    kept: Vec<Tensor<4>>,
    on_step: Option<&'a mut dyn FnMut(usize)>,
    cond: Cond,
    pub nfe: usize,
}

impl<'a> Ctx<'a> {
    /// A context with no kept steps and no progress callback.
    pub fn new(den: &'a dyn Denoiser, streams: &'a mut [ChaCha8Rng]) -> Ctx<'a> {
        Ctx {
            den,
            streams,
            keep: &[],
            kept: Vec::new(),
            on_step: None,
            cond: Cond::default(),
            nfe: 0,
        }
    }

    /// The same context, conditioned on `cond`.
    pub fn with_cond(mut self, cond: Cond) -> Ctx<'a> {
        self.cond = cond;
        self
    }

    pub fn denoise(&mut self, x: Tensor<4>, level: Level) -> Denoised {
        self.nfe += 1;
        self.den.denoise(x, level, &self.cond)
    }

    /// Fresh standard normal noise shaped like `x`, each image from its own stream.
    pub fn noise(&mut self, like: &Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = like.dims();
        let z = rng::normals_per_stream(self.streams, c * h * w);
        Tensor::from_data(TensorData::new(z, [b, c, h, w]), &like.device())
    }

    /// Marks step `i` done, keeping its x̂₀ if asked.
    pub fn step_done(&mut self, i: usize, x0: &Tensor<4>) {
        if self.keep.contains(&i) {
            self.kept.push(x0.clone());
        }
        if let Some(f) = self.on_step.as_mut() {
            f(i);
        }
    }
}

/// Runs `plan` from `x` (already scaled to the prior), one noise stream per batch item in `streams`.
pub fn run(
    den: &dyn Denoiser,
    plan: &Plan,
    x: Tensor<4>,
    streams: &mut [ChaCha8Rng],
    cond: Cond,
    keep_x0: &[usize],
    on_step: &mut dyn FnMut(usize),
) -> Sampled {
    assert_eq!(streams.len(), x.dims()[0], "one noise stream per image");
    let mut ctx = Ctx {
        den,
        streams,
        keep: keep_x0,
        kept: Vec::new(),
        on_step: Some(on_step),
        cond,
        nfe: 0,
    };
    let x = match (&plan.process, plan.method) {
        (Process::Discrete { schedule, spacing }, _) => discrete::run(&mut ctx, x, plan, schedule, *spacing),
        (Process::Sde(sde), Method::Ode { solver }) => ode::sample(&mut ctx, x, sde, solver, plan.steps, plan.strength),
        (
            Process::Sde(sde),
            Method::Sde {
                predictor,
                corrector_steps,
                snr,
            },
        ) => sde::run(
            &mut ctx,
            x,
            sde,
            predictor,
            (corrector_steps, snr),
            plan.steps,
            plan.strength,
        ),
        _ => unreachable!("Plan::new checks the method against the process"),
    };
    Sampled {
        x,
        x0_at: ctx.kept,
        nfe: ctx.nfe,
    }
}

/// Starting noise for images `first..first + n` of `seed`, scaled to the prior, and their step-noise streams
/// (continuing after the starting noise, so image i is the same whatever batch it is drawn in).
pub fn start(
    seed: u64,
    first: usize,
    n: usize,
    shape: [usize; 3],
    prior_std: f64,
    device: &Device,
) -> (Tensor<4>, Vec<ChaCha8Rng>) {
    let per = shape.iter().product();
    let mut streams: Vec<ChaCha8Rng> = (first..first + n).map(|i| rng::stream(seed, i as u64)).collect();
    let noise = rng::normals_per_stream(&mut streams, per);
    let x = Tensor::<4>::from_data(TensorData::new(noise, [n, shape[0], shape[1], shape[2]]), device);
    (x.mul_scalar(prior_std), streams)
}

/// What [`draw`] returns.
pub struct Drawn {
    /// n × c × h × w values.
    pub images: Vec<f32>,
    /// x̂₀ of the first batch at the kept steps.
    pub strip: Vec<Vec<f32>>,
    /// Network evaluations per image.
    pub nfe_per_image: usize,
}

/// Draws images `0..n` of `seed` in batches of at most `batch`. `init_noise` (standard normal, n × c × h × w)
/// replaces the seed's starting noise; `cond` conditions all n images (classes, for conditional models).
#[allow(clippy::too_many_arguments)]
pub fn draw(
    den: &dyn Denoiser,
    plan: &Plan,
    seed: u64,
    n: usize,
    shape: [usize; 3],
    batch: usize,
    init_noise: Option<&[f32]>,
    cond: &Cond,
    keep_x0: &[usize],
    device: &Device,
    on_step: &mut dyn FnMut(usize),
) -> Drawn {
    let per: usize = shape.iter().product();
    let mut out = Drawn {
        images: Vec::with_capacity(n * per),
        strip: Vec::new(),
        nfe_per_image: 0,
    };
    for first in (0..n).step_by(batch.max(1)) {
        let m = batch.max(1).min(n - first);
        let (mut x, mut streams) = start(seed, first, m, shape, plan.prior_std(), device);
        if let Some(noise) = init_noise {
            let data = noise[first * per..(first + m) * per].to_vec();
            x = Tensor::<4>::from_data(TensorData::new(data, [m, shape[0], shape[1], shape[2]]), device)
                .mul_scalar(plan.prior_std());
        }
        let keep: &[usize] = if first == 0 { keep_x0 } else { &[] };
        let s = run(den, plan, x, &mut streams, cond.slice(first..first + m), keep, on_step);
        out.nfe_per_image = s.nfe;
        out.images.extend(to_vec(s.x));
        out.strip.extend(s.x0_at.into_iter().map(to_vec));
    }
    out
}

pub fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().expect("f32 tensor")
}

/// Per-image L2 norm, shaped [b, 1, 1, 1] for broadcasting.
pub fn norms(x: &Tensor<4>) -> Tensor<4> {
    let [b, ..] = x.dims();
    x.clone()
        .square()
        .reshape([b as i32, -1])
        .sum_dim(1)
        .sqrt()
        .reshape([b, 1, 1, 1])
}

#[cfg(test)]
mod tests;
