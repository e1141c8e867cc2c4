//! Sampler flags shared by `sample` and `lab`.

use anyhow::bail;
use clap::{Args, ValueEnum};
use diffuse::sample::{Method, OdeSolver, Plan, Predictor, Process};
use diffuse_math::{NoiseSchedule, Sde, TimestepSpacing};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum SamplerName {
    /// DDPM ancestral sampling (discrete schedule).
    Ddpm,
    /// DDIM with --eta (discrete schedule).
    Ddim,
    /// DPM-Solver++(2M) (discrete schedule).
    #[value(name = "dpmpp-2m")]
    DpmPP2M,
    /// Euler–Maruyama on the reverse SDE.
    EulerMaruyama,
    /// The reverse-diffusion predictor.
    ReverseDiffusion,
    /// The ancestral predictor.
    Ancestral,
    /// Predictor–corrector: --predictor then --corrector-steps Langevin steps.
    Pc,
    /// Annealed Langevin dynamics (corrector only).
    Langevin,
    /// The probability-flow ODE with --ode-solver.
    Ode,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Variance {
    /// β̃_t, the true posterior variance.
    Small,
    /// β_t.
    Large,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PredictorName {
    EulerMaruyama,
    ReverseDiffusion,
    Ancestral,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SolverName {
    Euler,
    Heun,
    Rk45,
}

#[derive(Args, Clone, Debug)]
pub struct SamplerArgs {
    /// The sampler: discrete (ddpm, ddim, dpmpp-2m) or SDE-based (euler-maruyama, reverse-diffusion,
    /// ancestral, pc, langevin, ode).
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: SamplerName,
    /// Steps: network evaluations for the discrete samplers; grid points from t = 1 to t_min for the SDE ones
    /// (which add one evaluation for the final denoising; pc and langevin one more per corrector step).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM η: 0 deterministic, 1 as much noise as DDPM.
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// DDPM posterior variance.
    #[arg(long, value_enum, default_value = "small")]
    pub variance: Variance,
    /// Which train timesteps discrete samplers visit: leading | trailing | linspace (diffusers' meanings).
    /// Default: linspace for dpmpp-2m (diffusers' default), trailing otherwise.
    #[arg(long)]
    pub timestep_spacing: Option<String>,
    /// The SDE for SDE-based samplers: vp (β 0.1 → 20), subvp, ve (σ 0.01 → 50, geometric).
    /// Default: the model's own SDE for score models, vp otherwise.
    #[arg(long)]
    pub sde: Option<String>,
    /// The predictor of --sampler pc.
    #[arg(long, value_enum, default_value = "reverse-diffusion")]
    pub predictor: PredictorName,
    /// Langevin corrector steps per time step (pc, langevin).
    #[arg(long, default_value_t = 1)]
    pub corrector_steps: usize,
    /// Langevin signal-to-noise ratio (pc, langevin).
    #[arg(long, default_value_t = 0.16)]
    pub snr: f64,
    /// Solver of the probability-flow ODE.
    #[arg(long, value_enum, default_value = "rk45")]
    pub ode_solver: SolverName,
    /// RK45 relative tolerance.
    #[arg(long, default_value_t = 1e-5)]
    pub rtol: f64,
    /// RK45 absolute tolerance.
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,
}

impl SamplerArgs {
    pub fn method(&self) -> Method {
        let sde = |predictor, corrector_steps| Method::Sde {
            predictor,
            corrector_steps,
            snr: self.snr,
        };
        match self.sampler {
            SamplerName::Ddpm => Method::Ddpm {
                large_variance: matches!(self.variance, Variance::Large),
            },
            SamplerName::Ddim => Method::Ddim { eta: self.eta },
            SamplerName::DpmPP2M => Method::DpmSolverPP2M,
            SamplerName::EulerMaruyama => sde(Predictor::EulerMaruyama, 0),
            SamplerName::ReverseDiffusion => sde(Predictor::ReverseDiffusion, 0),
            SamplerName::Ancestral => sde(Predictor::Ancestral, 0),
            SamplerName::Pc => sde(
                match self.predictor {
                    PredictorName::EulerMaruyama => Predictor::EulerMaruyama,
                    PredictorName::ReverseDiffusion => Predictor::ReverseDiffusion,
                    PredictorName::Ancestral => Predictor::Ancestral,
                },
                self.corrector_steps,
            ),
            SamplerName::Langevin => sde(Predictor::None, self.corrector_steps.max(1)),
            SamplerName::Ode => Method::Ode {
                solver: match self.ode_solver {
                    SolverName::Euler => OdeSolver::Euler,
                    SolverName::Heun => OdeSolver::Heun,
                    SolverName::Rk45 => OdeSolver::Rk45 {
                        rtol: self.rtol,
                        atol: self.atol,
                    },
                },
            },
        }
    }

    pub fn spacing(&self) -> anyhow::Result<TimestepSpacing> {
        Ok(match &self.timestep_spacing {
            Some(s) => s.parse()?,
            None if self.sampler == SamplerName::DpmPP2M => TimestepSpacing::Linspace,
            None => TimestepSpacing::Trailing,
        })
    }

    /// The plan on `schedule` (discrete samplers) or on --sde, else `default_sde`, else VP (the others).
    pub fn plan(&self, schedule: &NoiseSchedule, default_sde: Option<&str>) -> anyhow::Result<Plan> {
        let method = self.method();
        let spacing = self.spacing()?;
        let sde: Sde = self.sde.as_deref().or(default_sde).unwrap_or("vp").parse()?;
        if !method.is_discrete() && self.timestep_spacing.is_some() {
            bail!("--timestep-spacing applies to ddpm, ddim and dpmpp-2m only");
        }
        let process = if method.is_discrete() {
            Process::Discrete {
                schedule: schedule.clone(),
                spacing,
            }
        } else {
            Process::Sde(sde)
        };
        Ok(Plan::new(method, process, self.steps)?)
    }

    /// A short description for summaries.
    pub fn describe(&self, plan: &Plan) -> String {
        match &plan.process {
            Process::Discrete { spacing, .. } => {
                let mut d = format!("{}, {} steps, {spacing} spacing", plan.method.name(), plan.steps);
                if let Some(r) = plan.resample {
                    d += &format!(", RePaint resampling {}× per jump of {}", r.count, r.jump);
                }
                d
            }
            Process::Sde(sde) => match plan.method {
                // Adaptive: the solver picks its own steps (the NFE says how many).
                Method::Ode {
                    solver: OdeSolver::Rk45 { .. },
                } => format!("{}, {} SDE", plan.method.name(), sde),
                _ => format!("{}, {} SDE, {} steps", plan.method.name(), sde, plan.steps),
            },
        }
    }
}
