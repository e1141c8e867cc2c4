//! Samplers over a [`Denoiser`], as short functions that walk a time grid ([`Grid`] on a [`Process`], from
//! diffuse-math), in the manner of k-diffusion's `sampling.py`:
//! - [`onestep`]: DDPM ancestral, DDIM(η), Euler ancestral: one (x̂₀, ε̂, z) combination per pair of levels;
//! - [`dpm_solver`]: DPM-Solver++(2M), which keeps the previous x̂₀;
//! - [`sde`]: Euler–Maruyama, reverse-diffusion and ancestral predictors, Langevin corrector, PC;
//! - [`heun`]: EDM's Euler and Heun samplers with churn, in the VE or the flow-matching frame;
//! - [`ode`]: the probability-flow ODE with Euler, Heun or adaptive RK45; encoding and likelihood too.
//!
//! The update coefficients live in `diffuse_math::step` next to their equations and tests; this module only
//! applies them. Each image draws its noise from its own stream, and every network call is counted (NFE).
//! A grid that ends above σ = 0 (an SDE's t_min) is followed by one denoising call (noise removal).

pub mod dpm_solver;
pub mod heun;
pub mod ode;
pub mod onestep;
pub mod sde;
pub mod watch;

use crate::denoise::{Cond, Denoised, Denoiser};
use crate::{Error, Result, rng};
use burn::prelude::*;
use diffuse_math::{Grid, Knot, Level, NoiseSchedule, Sde, TimestepSpacing};
pub use diffuse_math::{Process, grid};
pub use heun::{Churn, Frame};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A probability-flow ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OdeSolver {
    Euler,
    Heun,
    /// Dormand–Prince 5(4) with adaptive steps between the grid's ends; `steps` is ignored.
    Rk45 {
        rtol: f64,
        atol: f64,
    },
}

/// The predictor of a predictor–corrector sampler.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl std::str::FromStr for Predictor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Predictor> {
        match s {
            "euler-maruyama" => Ok(Predictor::EulerMaruyama),
            "reverse-diffusion" => Ok(Predictor::ReverseDiffusion),
            "ancestral" => Ok(Predictor::Ancestral),
            _ => Err(Error::Invalid(format!(
                "unknown predictor '{s}' (expected euler-maruyama, reverse-diffusion or ancestral)"
            ))),
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

/// A sampler with its own settings. The grid it walks is the [`Plan`]'s. Serialised as
/// `{"sampler": "ddim", "eta": 0.0}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sampler", rename_all = "kebab-case")]
pub enum Method {
    /// Ancestral sampling (Ho et al.); `large_variance` uses β_t ("fixed large") instead of β̃_t.
    Ddpm { large_variance: bool },
    /// DDIM (Song et al.) with η ∈ [0, 1]; η = 0 is deterministic.
    Ddim { eta: f64 },
    /// Euler ancestral (k-diffusion's `sample_euler_ancestral`) with η ∈ [0, 1]: an Euler step down to σ_down,
    /// then fresh noise up to the next level.
    EulerAncestral { eta: f64 },
    /// DPM-Solver++(2M), diffusers' defaults: second order, first order at the start and into the last level.
    #[serde(rename = "dpmpp-2m")]
    DpmSolverPP2M,
    /// Its SDE variant (diffusers' `sde-dpmsolver++`): fresh noise each step, as much as the reverse SDE adds.
    #[serde(rename = "dpmpp-2m-sde")]
    DpmSolverPP2MSde,
    /// UniPC (Zhao et al. 2023) as diffusers' `UniPCMultistepScheduler` runs by default: DPM-Solver++(2M)'s
    /// predictor, then the UniC corrector (order 2, B(h) = e^{−h} − 1) at every level reached, at no extra call.
    #[serde(rename = "unipc")]
    UniPc,
    /// A reverse-SDE predictor, optionally with `corrector_steps` Langevin steps at signal-to-noise ratio
    /// `snr` before it at each time (score_sde's PC sampler runs the corrector first, then the predictor).
    Sde {
        predictor: Predictor,
        corrector_steps: usize,
        snr: f64,
    },
    /// The probability-flow ODE in SDE time t (score_sde's).
    Ode { solver: OdeSolver },
    /// EDM's Euler sampler (Karras et al. 2022) in `frame`: DDIM (η = 0) when deterministic.
    Euler { frame: Frame, churn: Churn },
    /// EDM's Heun sampler (Karras et al. 2022, Algorithms 1 and 2) in `frame`: two network calls a step, one
    /// into the clean level.
    Heun { frame: Frame, churn: Churn },
}

impl Method {
    /// The samplers' short names, as `--sampler` takes them.
    pub const NAMES: &'static str = "ddpm, ddim, euler-ancestral, dpmpp-2m, dpmpp-2m-sde, unipc, euler, heun, flow-euler, flow-heun, \
                                     euler-maruyama, reverse-diffusion, ancestral, pc, langevin, ode";

    /// The sampler called `name`, with its default settings: small variance (ddpm), η 0 (ddim), η 1
    /// (euler-ancestral), the reverse-diffusion predictor with one Langevin step at snr 0.16 (pc), one Langevin
    /// step at snr 0.16 (langevin), RK45 at tolerances 1e-5 (ode).
    pub fn from_name(name: &str) -> Result<Method> {
        let sde = |predictor, corrector_steps| Method::Sde {
            predictor,
            corrector_steps,
            snr: 0.16,
        };
        let edm = |frame, heun: bool| {
            let churn = Churn::NONE;
            if heun {
                Method::Heun { frame, churn }
            } else {
                Method::Euler { frame, churn }
            }
        };
        Ok(match name {
            "ddpm" => Method::Ddpm { large_variance: false },
            "ddim" => Method::Ddim { eta: 0.0 },
            "euler-ancestral" => Method::EulerAncestral { eta: 1.0 },
            "dpmpp-2m" => Method::DpmSolverPP2M,
            "dpmpp-2m-sde" => Method::DpmSolverPP2MSde,
            "unipc" => Method::UniPc,
            "euler" => edm(Frame::Ve, false),
            "heun" => edm(Frame::Ve, true),
            "flow-euler" => edm(Frame::Flow, false),
            "flow-heun" => edm(Frame::Flow, true),
            "euler-maruyama" => sde(Predictor::EulerMaruyama, 0),
            "reverse-diffusion" => sde(Predictor::ReverseDiffusion, 0),
            "ancestral" => sde(Predictor::Ancestral, 0),
            "pc" => sde(Predictor::ReverseDiffusion, 1),
            "langevin" => sde(Predictor::None, 1),
            "ode" => Method::Ode {
                solver: OdeSolver::Rk45 { rtol: 1e-5, atol: 1e-5 },
            },
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown sampler '{name}' (expected one of: {})",
                    Self::NAMES
                )));
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Method::Ddpm { large_variance } => {
                format!("ddpm ({} variance)", if *large_variance { "large" } else { "small" })
            }
            Method::Ddim { eta } => format!("ddim (eta {eta})"),
            Method::EulerAncestral { eta } => format!("euler-ancestral (eta {eta})"),
            Method::DpmSolverPP2M => "dpm-solver++(2M)".into(),
            Method::DpmSolverPP2MSde => "dpm-solver++(2M) SDE".into(),
            Method::UniPc => "unipc (bh2)".into(),
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
            Method::Euler { frame, churn } | Method::Heun { frame, churn } => {
                let order = if matches!(self, Method::Heun { .. }) {
                    "heun"
                } else {
                    "euler"
                };
                let prefix = match frame {
                    Frame::Ve => "",
                    Frame::Flow => "flow-",
                };
                match churn.s_churn {
                    0.0 => format!("{prefix}{order}"),
                    c => format!("{prefix}{order} (churn {c}, noise {})", churn.s_noise),
                }
            }
        }
    }

    /// Whether the sampler needs an SDE's drift and diffusion, not only the levels of its grid.
    pub fn needs_sde(&self) -> bool {
        match self {
            Method::Ddpm { .. }
            | Method::Ddim { .. }
            | Method::EulerAncestral { .. }
            | Method::DpmSolverPP2M
            | Method::DpmSolverPP2MSde
            | Method::UniPc
            | Method::Euler { .. }
            | Method::Heun { .. } => false,
            Method::Sde { .. } | Method::Ode { .. } => true,
        }
    }

    /// The grid the sampler walks unless told otherwise: uniform flow time on the flow path; Karras's for
    /// EDM's samplers elsewhere; diffusers' placements of train timesteps on a discrete schedule (linspace for
    /// DPM-Solver++, trailing otherwise); uniform t on an SDE.
    pub fn default_grid(&self, process: &Process) -> Grid {
        let edm = matches!(self, Method::Euler { .. } | Method::Heun { .. });
        match process {
            Process::Flow => Grid::FlowT { shift: 1.0 },
            Process::Discrete(_) | Process::Sde(_) if edm => Grid::KARRAS,
            Process::Sde(_) => Grid::UniformT,
            Process::Discrete(_) => self.timestep_grid(self.default_spacing()),
        }
    }

    /// The spacing of train timesteps unless told otherwise (diffusers' defaults for each scheduler).
    pub fn default_spacing(&self) -> TimestepSpacing {
        match self {
            Method::DpmSolverPP2M | Method::DpmSolverPP2MSde | Method::UniPc => TimestepSpacing::Linspace,
            Method::Ddpm { .. }
            | Method::Ddim { .. }
            | Method::EulerAncestral { .. }
            | Method::Sde { .. }
            | Method::Ode { .. }
            | Method::Euler { .. }
            | Method::Heun { .. } => TimestepSpacing::Trailing,
        }
    }

    /// Train timesteps with `spacing`, placed as diffusers' scheduler for this sampler places them.
    pub fn timestep_grid(&self, spacing: TimestepSpacing) -> Grid {
        match self {
            Method::DpmSolverPP2M | Method::DpmSolverPP2MSde | Method::UniPc => Grid::SolverTimesteps { spacing },
            Method::Ddpm { .. }
            | Method::Ddim { .. }
            | Method::EulerAncestral { .. }
            | Method::Sde { .. }
            | Method::Ode { .. }
            | Method::Euler { .. }
            | Method::Heun { .. } => Grid::Timesteps { spacing, offset: 0 },
        }
    }
}

/// A plan as settings: the sampler, the grid, the steps, the process walked and the strength. It serialises
/// to JSON and back, and with the schedule it was made on rebuilds the same plan. A run records its default
/// sampler as one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(flatten)]
    pub method: Method,
    pub grid: Grid,
    pub steps: usize,
    #[serde(with = "crate::names::as_name")]
    pub process: Walked,
    pub strength: f64,
    /// Walk every `thin`-th knot of the grid laid with steps × thin steps (a distilled student's grid, nested in
    /// its teachers'); 1 walks them all.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub thin: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// A process by name: `schedule` (a model's discrete schedule), `flow`, or an SDE as `--sde` names it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Walked {
    Schedule,
    Sde(Sde),
    Flow,
}

impl Walked {
    pub fn of(process: &Process) -> Walked {
        match process {
            Process::Discrete(_) => Walked::Schedule,
            Process::Sde(sde) => Walked::Sde(*sde),
            Process::Flow => Walked::Flow,
        }
    }

    /// The process, with `schedule` for a discrete one.
    pub fn process(&self, schedule: &NoiseSchedule) -> Process {
        match self {
            Walked::Schedule => Process::Discrete(schedule.clone()),
            Walked::Sde(sde) => Process::Sde(*sde),
            Walked::Flow => Process::Flow,
        }
    }
}

impl std::fmt::Display for Walked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Walked::Schedule => f.write_str("schedule"),
            Walked::Sde(sde) => write!(f, "{sde}"),
            Walked::Flow => f.write_str("flow"),
        }
    }
}

impl std::str::FromStr for Walked {
    type Err = Error;
    fn from_str(s: &str) -> Result<Walked> {
        Ok(match s {
            "schedule" => Walked::Schedule,
            "flow" => Walked::Flow,
            sde => {
                Walked::Sde(sde.parse().map_err(|e| {
                    Error::Invalid(format!("unknown process '{s}': not schedule, flow or an SDE ({e})"))
                })?)
            }
        })
    }
}

impl Spec {
    /// The plan, on `schedule` when the spec walks a discrete schedule, checked as [`Plan::new`] checks.
    pub fn plan(&self, schedule: &NoiseSchedule) -> Result<Plan> {
        Plan::new(self.method, self.process.process(schedule), self.steps)?
            .with_grid(self.grid)?
            .with_thinning(self.thin)?
            .with_strength(self.strength)
    }
}

/// A sampler, the process and grid it walks, and its step count, checked for consistency when built. The
/// fields are read through methods and changed only through the checked `with_*` builders.
#[derive(Clone, Debug)]
pub struct Plan {
    method: Method,
    process: Process,
    grid: Grid,
    steps: usize,
    /// Where sampling starts, as a fraction of the process (SDEdit's strength): 1 starts from pure noise;
    /// s < 1 keeps the last ⌈s·K⌉ steps of the grid, or walks t from s on a uniform-t grid.
    strength: f64,
    /// RePaint's resampling (Lugmayr et al. 2022), one-step samplers only: after every `jump` steps down, go
    /// back up `jump` steps by the forward process and down again, `count − 1` times at each such point.
    resample: Option<Resample>,
    /// Every `thin`-th knot, counted from the end, of the grid laid with steps × thin steps.
    thin: usize,
    /// The K + 1 knots walked, laid once when the plan is checked.
    knots: Vec<Knot>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resample {
    pub jump: usize,
    pub count: usize,
}

impl Plan {
    pub fn method(&self) -> Method {
        self.method
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn grid(&self) -> Grid {
        self.grid
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn strength(&self) -> f64 {
        self.strength
    }

    pub fn resample(&self) -> Option<Resample> {
        self.resample
    }

    /// `method` on `process` over its default grid.
    pub fn new(method: Method, process: Process, steps: usize) -> Result<Plan> {
        let grid = method.default_grid(&process);
        Plan::on_grid(method, process, grid, steps)
    }

    /// `method` on `process` over `grid`, checked once (a grid without the default's limits, such as Karras
    /// with more steps than train timesteps, is not refused for the default's sake).
    pub fn on_grid(method: Method, process: Process, grid: Grid, steps: usize) -> Result<Plan> {
        Plan {
            method,
            process,
            grid,
            steps,
            strength: 1.0,
            resample: None,
            thin: 1,
            knots: Vec::new(),
        }
        .checked()
    }

    /// The same plan over `grid`.
    pub fn with_grid(mut self, grid: Grid) -> Result<Plan> {
        self.grid = grid;
        self.checked()
    }

    /// Refuses what cannot run: a sampler on a process or grid it cannot walk, out-of-range settings.
    fn checked(mut self) -> Result<Plan> {
        let name = self.method.name();
        if let (true, Process::Discrete(_) | Process::Flow) = (self.method.needs_sde(), &self.process) {
            return Err(Error::Invalid(format!("{name} needs an SDE (--sde vp|subvp|ve)")));
        }
        match self.method {
            Method::Ddim { eta } | Method::EulerAncestral { eta } if !(0.0..=1.0).contains(&eta) => {
                return Err(Error::Invalid(format!("eta must be in [0, 1], got {eta}")));
            }
            Method::Sde {
                snr, corrector_steps, ..
            } if corrector_steps > 0 && !(snr > 0.0 && snr.is_finite()) => {
                return Err(Error::Invalid(format!("snr must be positive, got {snr}")));
            }
            Method::Sde {
                predictor: Predictor::None,
                corrector_steps: 0,
                ..
            } => {
                return Err(Error::Invalid(
                    "langevin needs at least one corrector step per time".into(),
                ));
            }
            Method::Ode {
                solver: OdeSolver::Rk45 { rtol, atol },
            } => {
                if !(rtol > 0.0 && atol > 0.0) {
                    return Err(Error::Invalid("rtol and atol must be positive".into()));
                }
                if self.grid != Grid::UniformT {
                    return Err(Error::Invalid(format!(
                        "{name} chooses its own steps between the ends: it cannot walk the {} grid (use euler or heun)",
                        self.grid
                    )));
                }
            }
            Method::Euler { frame, churn } | Method::Heun { frame, churn } => {
                let Churn {
                    s_churn,
                    s_tmin,
                    s_tmax,
                    s_noise,
                } = churn;
                let s_tmax = s_tmax.unwrap_or(f64::INFINITY);
                if !(s_churn >= 0.0 && s_noise > 0.0 && s_tmin >= 0.0 && s_tmin <= s_tmax) {
                    return Err(Error::Invalid(format!(
                        "{name}: need s_churn >= 0, s_noise > 0, 0 <= s_tmin <= s_tmax, got {s_churn}, {s_noise}, {s_tmin}, {s_tmax}"
                    )));
                }
                if frame == Frame::Flow && s_churn > 0.0 {
                    return Err(Error::Invalid(format!(
                        "{name}: churn adds noise in EDM's VE frame (use euler or heun)"
                    )));
                }
            }
            Method::Ddpm { .. }
            | Method::Ddim { .. }
            | Method::EulerAncestral { .. }
            | Method::DpmSolverPP2M
            | Method::DpmSolverPP2MSde
            | Method::UniPc
            | Method::Sde { .. }
            | Method::Ode { .. } => {}
        }
        let lay = |steps, strength| {
            self.grid
                .knots(&self.process, steps, strength)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))
        };
        self.knots = if self.thin == 1 {
            lay(self.steps, self.strength)?
        } else {
            // Every thin-th knot of the whole fine grid, counted from its end; a part-way start then keeps the
            // last ⌈s·K⌉ of those, as on any grid.
            let fine = lay(self.steps * self.thin, 1.0)?;
            let mut knots: Vec<Knot> = fine.iter().rev().step_by(self.thin).copied().collect();
            knots.reverse();
            let k = knots.len() - 1;
            knots.split_off(k - grid::kept(k, self.strength))
        };
        let pure_noise = self.knots[0].level.alpha <= 1e-12;
        match self.method {
            Method::Euler { frame: Frame::Ve, .. } | Method::Heun { frame: Frame::Ve, .. } if pure_noise => {
                return Err(Error::Invalid(format!(
                    "{name} walks σ/α, infinite at pure noise where this grid starts (use flow-{name}, or a grid with --sigma-max)"
                )));
            }
            Method::DpmSolverPP2M | Method::DpmSolverPP2MSde | Method::UniPc | Method::EulerAncestral { .. }
                if pure_noise =>
            {
                return Err(Error::Invalid(format!(
                    "{name} steps in log-SNR, infinite at pure noise where this grid starts (use a grid with --sigma-max)"
                )));
            }
            _ => {}
        }
        Ok(self)
    }

    /// Walks every `thin`-th knot of the grid laid with steps × thin steps (1: all).
    pub fn with_thinning(mut self, thin: usize) -> Result<Plan> {
        if thin == 0 {
            return Err(Error::Invalid("thinning must be at least 1".into()));
        }
        self.thin = thin;
        self.checked()
    }

    pub fn thin(&self) -> usize {
        self.thin
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
        self.checked()
    }

    /// Adds RePaint resampling (`count` ≥ 1 passes, `count` = 1 is none).
    pub fn with_resampling(mut self, jump: usize, count: usize) -> Result<Plan> {
        if count <= 1 {
            return Ok(self);
        }
        if onestep::coefs(self.method).is_none() || jump == 0 {
            return Err(Error::Invalid(
                "resampling needs the ddpm, ddim or euler-ancestral sampler and a jump length of at least 1".into(),
            ));
        }
        self.resample = Some(Resample { jump, count });
        Ok(self)
    }

    /// The plan's settings (RePaint's resampling aside).
    pub fn spec(&self) -> Spec {
        Spec {
            method: self.method,
            grid: self.grid,
            steps: self.steps,
            process: Walked::of(&self.process),
            strength: self.strength,
            thin: self.thin,
        }
    }

    /// A short description for summaries: sampler, grid or SDE, steps.
    pub fn describe(&self) -> String {
        format!("{}, {}", self.method.name(), self.describe_walk())
    }

    /// The process, steps and grid without the sampler: what another update walking the same grid (DDRM's)
    /// shares with it.
    pub fn describe_walk(&self) -> String {
        let mut d = match (&self.process, self.method) {
            // Adaptive: the solver picks its own steps (the NFE says how many).
            (
                Process::Sde(sde),
                Method::Ode {
                    solver: OdeSolver::Rk45 { .. },
                },
            ) => format!("{sde} SDE"),
            (Process::Sde(sde), _) => format!("{sde} SDE, {} steps", self.steps),
            (Process::Discrete(_), _) => format!("{} steps", self.steps),
            (Process::Flow, _) => format!("flow path, {} steps", self.steps),
        };
        match self.grid {
            Grid::Timesteps { spacing, offset } if offset > 0 => d += &format!(", {spacing} spacing + {offset}"),
            Grid::Timesteps { spacing, .. } | Grid::SolverTimesteps { spacing } => d += &format!(", {spacing} spacing"),
            Grid::UniformT => {}
            g @ (Grid::Karras { .. } | Grid::LogSnr { .. } | Grid::FlowT { .. }) => d += &format!(", {g} grid"),
        }
        if self.thin > 1 {
            d += &format!(" (every {}th of {})", self.thin, self.steps * self.thin);
        }
        if let Some(r) = self.resample {
            d += &format!(", RePaint resampling {}× per jump of {}", r.count, r.jump);
        }
        d
    }

    /// How many times a batch reports a step (the knots walked; RePaint's repeats count once), or None for
    /// an adaptive solver, which picks its own.
    pub fn reported_steps(&self) -> Option<usize> {
        match self.method {
            Method::Ode {
                solver: OdeSolver::Rk45 { .. },
            } => None,
            Method::Ddpm { .. }
            | Method::Ddim { .. }
            | Method::EulerAncestral { .. }
            | Method::DpmSolverPP2M
            | Method::DpmSolverPP2MSde
            | Method::UniPc
            | Method::Sde { .. }
            | Method::Ode { .. }
            | Method::Euler { .. }
            | Method::Heun { .. } => Some(self.knots().len() - 1),
        }
    }

    /// A progress display for drawing `n` images in batches of `batch`: a bar over grid steps, or a spinner
    /// counting solver steps for an adaptive solver.
    pub fn progress(&self, n: usize, batch: usize, show: bool) -> indicatif::ProgressBar {
        let batches = n.div_ceil(batch.max(1));
        let per_batch = if batches > 1 {
            format!(" ({batches} batches)")
        } else {
            String::new()
        };
        match self.reported_steps() {
            Some(k) => crate::progress::bar(batches * k, 0, &format!("grid steps{per_batch}"), show),
            None => crate::progress::spinner(&format!("adaptive ODE steps{per_batch}:"), show),
        }
    }

    /// The K + 1 knots the plan walks.
    pub fn knots(&self) -> &[Knot] {
        &self.knots
    }

    /// The noise level sampling starts at (the level an SDEdit input is noised to).
    pub fn start_level(&self) -> Level {
        self.knots()[0].level
    }

    /// Standard deviation of the noise sampling starts from: 1 on variance-preserving processes, σ of the first
    /// level on VE (σ_max from the prior; less on a grid or an SDEdit start below it).
    pub fn prior_std(&self) -> f64 {
        match &self.process {
            Process::Sde(Sde::Ve { .. }) => self.knots[0].level.sigma,
            Process::Sde(Sde::Vp { .. } | Sde::SubVp { .. }) | Process::Discrete(_) | Process::Flow => 1.0,
        }
    }
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

/// What one batch of sampling returns: the images, x̂₀ (or x_t) at the kept steps, and the network evaluations
/// used.
pub struct Sampled {
    pub x: Tensor<4>,
    pub x0_at: Vec<Tensor<4>>,
    pub nfe: usize,
}

/// The sampler's view of the world: the denoiser (counted), per-image noise streams, progress.
pub struct Ctx<'a> {
    den: &'a dyn Denoiser,
    streams: &'a mut [ChaCha8Rng],
    /// Noise to hand out instead of the streams' (in order), to replay another implementation's draws (tests).
    #[cfg(test)]
    replay: Option<std::collections::VecDeque<Tensor<4>>>,
    keep: &'a [usize],
    kept: Vec<Tensor<4>>,
    on_step: Option<&'a mut dyn FnMut(usize)>,
    cond: Cond,
    /// Steps of the grid being walked (for the thread's [`watch`] observer).
    steps: usize,
    pub nfe: usize,
}

impl<'a> Ctx<'a> {
    /// A context with no kept steps and no progress callback.
    pub fn new(den: &'a dyn Denoiser, streams: &'a mut [ChaCha8Rng]) -> Ctx<'a> {
        Ctx {
            den,
            streams,
            #[cfg(test)]
            replay: None,
            keep: &[],
            kept: Vec::new(),
            on_step: None,
            cond: Cond::default(),
            steps: 0,
            nfe: 0,
        }
    }

    /// The same context, conditioned on `cond`.
    pub fn with_cond(mut self, cond: Cond) -> Ctx<'a> {
        self.cond = cond;
        self
    }

    /// The same context, walking a grid of `knots` knots (its step count is told to the thread's observer).
    pub fn walking(mut self, knots: usize) -> Ctx<'a> {
        self.steps = knots.saturating_sub(1);
        self
    }

    /// The same context, calling `f` with each finished step.
    pub fn with_on_step(mut self, f: &'a mut dyn FnMut(usize)) -> Ctx<'a> {
        self.on_step = Some(f);
        self
    }

    pub fn denoise(&mut self, x: Tensor<4>, level: Level) -> Denoised {
        self.nfe += 1;
        self.den.denoise(x, level, &self.cond)
    }

    /// Fresh standard normal noise shaped like `x`, each image from its own stream (or the next replayed draw).
    pub fn noise(&mut self, like: &Tensor<4>) -> Tensor<4> {
        #[cfg(test)]
        if let Some(replay) = self.replay.as_mut() {
            let z = replay
                .pop_front()
                .expect("a replayed draw for every noise the sampler takes");
            assert_eq!(z.dims(), like.dims(), "replayed noise of the sampled shape");
            return z;
        }
        let [b, c, h, w] = like.dims();
        let z = rng::normals_per_stream(self.streams, c * h * w);
        Tensor::from_data(TensorData::new(z, [b, c, h, w]), &like.device())
    }

    /// Marks step `i` done, keeping `shown` if asked: x̂₀ where the sampler has one, x_t for the ODE and
    /// Langevin samplers (their steps make no x̂₀ of the current x).
    pub fn step_done(&mut self, i: usize, shown: &Tensor<4>) {
        if self.keep.contains(&i) {
            self.kept.push(shown.clone());
        }
        if let Some(f) = self.on_step.as_mut() {
            f(i);
        }
        watch::notify(i, self.steps, self.nfe, shown);
    }
}

impl Plan {
    /// The SDE of a plan whose sampler needs one (checked when the plan was built).
    fn sde(&self) -> &Sde {
        match &self.process {
            Process::Sde(sde) => sde,
            Process::Discrete(_) | Process::Flow => {
                unreachable!("Plan::checked refuses SDE samplers on discrete schedules and the flow path")
            }
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
    let ctx = Ctx {
        den,
        streams,
        #[cfg(test)]
        replay: None,
        keep: keep_x0,
        kept: Vec::new(),
        on_step: Some(on_step),
        cond,
        steps: 0,
        nfe: 0,
    };
    walk(ctx, plan, x)
}

/// Runs `plan` from `x` taking `draws`, in order, wherever the sampler needs fresh noise: another
/// implementation's sampling replayed exactly (the parity tests with diffusers' pipelines).
#[cfg(test)]
pub(crate) fn run_replaying(
    den: &dyn Denoiser,
    plan: &Plan,
    x: Tensor<4>,
    draws: Vec<Tensor<4>>,
    cond: Cond,
) -> Sampled {
    let mut none: [ChaCha8Rng; 0] = [];
    let mut ctx = Ctx::new(den, &mut none).with_cond(cond);
    ctx.replay = Some(draws.into());
    walk(ctx, plan, x)
}

/// The walk of [`run`] with its context.
fn walk(ctx: Ctx, plan: &Plan, x: Tensor<4>) -> Sampled {
    let knots = plan.knots();
    let mut ctx = ctx.walking(knots.len());
    let x = match plan.method {
        Method::Ddpm { .. } | Method::Ddim { .. } | Method::EulerAncestral { .. } => {
            let coefs = onestep::coefs(plan.method).expect("a one-step sampler");
            onestep::run(&mut ctx, x, knots, plan.resample, coefs)
        }
        Method::DpmSolverPP2M => dpm_solver::run(&mut ctx, x, knots, dpm_solver::Variant::Ode),
        Method::DpmSolverPP2MSde => dpm_solver::run(&mut ctx, x, knots, dpm_solver::Variant::Sde),
        Method::UniPc => dpm_solver::run(&mut ctx, x, knots, dpm_solver::Variant::UniPc),
        Method::Sde {
            predictor,
            corrector_steps,
            snr,
        } => sde::run(&mut ctx, x, plan.sde(), knots, predictor, (corrector_steps, snr)),
        Method::Ode { solver } => ode::sample(&mut ctx, x, plan.sde(), knots, solver),
        Method::Euler { frame, churn } => heun::run(&mut ctx, x, knots, frame, false, churn),
        Method::Heun { frame, churn } => heun::run(&mut ctx, x, knots, frame, true, churn),
    };
    // A grid that stops short of σ = 0 ends with one denoising call (score_sde's noise removal).
    let last = knots[knots.len() - 1].level;
    let x = if last.sigma > 0.0 { ctx.denoise(x, last).x0 } else { x };
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

/// The batch size, of 8, 16, … 256 and at most `n`, that denoises the most images per second with `den` and
/// `cond` (its first items: any conditioning of `n` items): each candidate is timed as the faster of two calls at
/// the middle level (α̅ = ½), after an untimed call of the largest (so that buffers are grown before any timing).
/// Images do not depend on the batch size (each has its own seed), so this only changes the speed.
pub fn fastest_batch(den: &dyn Denoiser, n: usize, shape: [usize; 3], cond: &Cond, device: &Device) -> usize {
    let call = |b: usize| {
        let x = Tensor::<4>::zeros([b, shape[0], shape[1], shape[2]], device);
        let started = std::time::Instant::now();
        let d = den.denoise(x, Level::vp(0.5), &cond.slice(0..b));
        let _ = to_vec(d.x0);
        started.elapsed().as_secs_f64() / b as f64
    };
    let largest = n.clamp(1, 256);
    // Eight or fewer images go in one batch: the first candidate is all of them.
    if largest <= 8 {
        return largest;
    }
    let candidates = std::iter::successors(Some(8.min(largest)), |&b| (b < largest).then(|| (2 * b).min(largest)));
    call(largest);
    candidates
        .into_iter()
        .map(|b| (b, call(b).min(call(b))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(largest, |(b, _)| b)
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
