//! Sampler flags shared by `sample`, `edit` and `lab`, mapped onto the library's [`Method`], [`Grid`] and
//! [`Process`]. Flags that belong to one sampler or grid are optional, so that one given to a sampler that
//! ignores it is an error naming both rather than silently dropped.

use anyhow::bail;
use clap::Args;
use diffuse::run::LoadedRun;
use diffuse::sample::{Method, OdeSolver, Plan, Predictor, Process, Spec};
use diffuse_math::{Grid, NoiseSchedule, Sde, TimestepSpacing};

#[derive(Args, Clone, Debug)]
pub struct SamplerArgs {
    /// The sampler: ddpm, ddim, euler-ancestral, dpmpp-2m, dpmpp-2m-sde, unipc, euler, heun (EDM's), flow-euler,
    /// flow-heun (any grid); euler-maruyama, reverse-diffusion, ancestral, pc, langevin, ode (an SDE: --sde, else
    /// the model's, else vp). Default: the run's own (EDM and flow runs record theirs), else ddim.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Steps: grid steps from the start level to the end (network evaluations for ddpm, ddim, euler-ancestral
    /// and dpmpp-2m on a discrete schedule). On an SDE, one evaluation more for the final denoising; pc and
    /// langevin add one per corrector step; heun two per step (one into the clean level); rk45 picks its own.
    /// Default: the run's default sampler's, else 50.
    #[arg(long)]
    pub steps: Option<usize>,
    /// The grid the sampler walks: timesteps (train timesteps of a discrete schedule; the default there),
    /// uniform-t (uniform SDE time; the default on an SDE), karras (ρ-spaced σ, EDM; the default of euler
    /// and heun), log-snr, flow-t (uniform flow time, shifted; the default on a flow model's path).
    #[arg(long)]
    pub time_grid: Option<String>,
    /// The shift s of the flow-t grid, t ↦ s·t/(1 + (s − 1)·t) (default 1: none; SD3 uses 3).
    #[arg(long)]
    pub shift: Option<f64>,
    /// EDM's churn for euler and heun (Karras et al. 2022, Algorithm 2; default 0: deterministic).
    #[arg(long)]
    pub s_churn: Option<f64>,
    /// Churn only at σ/α in [S_TMIN, S_TMAX] (default: everywhere).
    #[arg(long, num_args = 2, value_names = ["S_TMIN", "S_TMAX"])]
    pub s_tmin_tmax: Option<Vec<f64>>,
    /// The churn noise's scale S_noise (default 1; EDM used 1.003–1.007).
    #[arg(long)]
    pub s_noise: Option<f64>,
    /// Which train timesteps a timesteps grid visits: leading | trailing | linspace (diffusers' meanings).
    /// Default: linspace for dpmpp-2m (diffusers' default), trailing otherwise.
    #[arg(long)]
    pub timestep_spacing: Option<String>,
    /// ρ of the karras grid (default 7).
    #[arg(long)]
    pub rho: Option<f64>,
    /// Smallest σ/α of a karras or log-snr grid (default: the process's).
    #[arg(long)]
    pub sigma_min: Option<f64>,
    /// Largest σ/α of a karras or log-snr grid (default: the process's).
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// Walk this SDE: vp (β 0.1 → 20), subvp, ve (σ 0.01 → 50, geometric), or with parameters, as
    /// ve:0.002,80. Default for SDE samplers: the model's own SDE for score models, vp otherwise.
    #[arg(long)]
    pub sde: Option<String>,
    /// η of ddim (default 0: deterministic) and euler-ancestral (default 1): 1 adds as much noise as DDPM.
    #[arg(long)]
    pub eta: Option<f64>,
    /// Posterior variance of ddpm: small (β̃_t, the default) or large (β_t).
    #[arg(long, value_parser = ["small", "large"])]
    pub variance: Option<String>,
    /// The predictor of pc: euler-maruyama, reverse-diffusion (default), ancestral.
    #[arg(long)]
    pub predictor: Option<Predictor>,
    /// Langevin corrector steps per time step, run before the predictor (pc, langevin; default 1).
    #[arg(long)]
    pub corrector_steps: Option<usize>,
    /// Langevin signal-to-noise ratio (pc, langevin; default 0.16).
    #[arg(long)]
    pub snr: Option<f64>,
    /// Solver of the probability-flow ODE: euler, heun, rk45 (default).
    #[arg(long, value_parser = ["euler", "heun", "rk45"])]
    pub ode_solver: Option<String>,
    /// RK45 relative tolerance (default 1e-5).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// RK45 absolute tolerance (default 1e-5).
    #[arg(long)]
    pub atol: Option<f64>,
}

impl SamplerArgs {
    /// The sampler with its flags applied. With `strict`, a flag the sampler does not take is an error. Each
    /// arm of the exhaustive match names the flags its sampler takes, so a new sampler states its own.
    /// `base` is --sampler's, or the run's default sampler.
    fn method_from(&self, base: Method, strict: bool) -> anyhow::Result<Method> {
        let mut m = base;
        let took: &[&str] = match &mut m {
            Method::Ddpm { large_variance } => {
                if let Some(v) = &self.variance {
                    *large_variance = v == "large";
                }
                &["--variance"]
            }
            Method::Ddim { eta } | Method::EulerAncestral { eta } => {
                *eta = self.eta.unwrap_or(*eta);
                &["--eta"]
            }
            Method::DpmSolverPP2M | Method::DpmSolverPP2MSde | Method::UniPc => &[],
            Method::Sde {
                predictor,
                corrector_steps,
                snr,
            } => {
                // From the sampler's defaults: langevin has no predictor, pc has a corrector step, the plain
                // predictors have none.
                let corrected = *corrector_steps > 0;
                if corrected {
                    *corrector_steps = self.corrector_steps.unwrap_or(*corrector_steps);
                    *snr = self.snr.unwrap_or(*snr);
                }
                match (*predictor, corrected) {
                    (Predictor::None, _) => &["--corrector-steps", "--snr"],
                    (Predictor::EulerMaruyama | Predictor::ReverseDiffusion | Predictor::Ancestral, true) => {
                        *predictor = self.predictor.unwrap_or(*predictor);
                        &["--predictor", "--corrector-steps", "--snr"]
                    }
                    (Predictor::EulerMaruyama | Predictor::ReverseDiffusion | Predictor::Ancestral, false) => &[],
                }
            }
            Method::Ode { solver } => {
                *solver = match self.ode_solver.as_deref() {
                    Some("euler") => OdeSolver::Euler,
                    Some("heun") => OdeSolver::Heun,
                    Some("rk45") | None => OdeSolver::Rk45 {
                        rtol: self.rtol.unwrap_or(1e-5),
                        atol: self.atol.unwrap_or(1e-5),
                    },
                    Some(other) => bail!("unknown ODE solver '{other}' (expected euler, heun or rk45)"),
                };
                match solver {
                    OdeSolver::Rk45 { .. } => &["--ode-solver", "--rtol", "--atol"],
                    OdeSolver::Euler | OdeSolver::Heun => &["--ode-solver"],
                }
            }
            Method::Euler { churn, .. } | Method::Heun { churn, .. } => {
                churn.s_churn = self.s_churn.unwrap_or(churn.s_churn);
                churn.s_noise = self.s_noise.unwrap_or(churn.s_noise);
                if let Some(v) = &self.s_tmin_tmax {
                    (churn.s_tmin, churn.s_tmax) = (v[0], Some(v[1]));
                }
                // S_noise and the window shape the churn: without churn they would do nothing.
                if churn.s_churn == 0.0 {
                    &["--s-churn"]
                } else {
                    &["--s-churn", "--s-noise", "--s-tmin-tmax"]
                }
            }
        };
        let given = [
            ("--eta", self.eta.is_some()),
            ("--variance", self.variance.is_some()),
            ("--predictor", self.predictor.is_some()),
            ("--corrector-steps", self.corrector_steps.is_some()),
            ("--snr", self.snr.is_some()),
            ("--ode-solver", self.ode_solver.is_some()),
            ("--rtol", self.rtol.is_some()),
            ("--atol", self.atol.is_some()),
            ("--s-churn", self.s_churn.is_some()),
            ("--s-noise", self.s_noise.is_some()),
            ("--s-tmin-tmax", self.s_tmin_tmax.is_some()),
        ];
        let unused = given.iter().find(|(flag, is)| *is && !took.contains(flag));
        if strict && let Some((flag, _)) = unused {
            let name = self.sampler.clone().unwrap_or_else(|| base.name());
            bail!("{flag} does not apply to the {name} sampler");
        }
        Ok(m)
    }

    /// The grid named by --time-grid and its flags (None: the sampler's default on its process).
    fn grid(&self, method: &Method) -> anyhow::Result<Option<Grid>> {
        let name = self.time_grid.as_deref();
        let sigma_flags = self.sigma_min.is_some() || self.sigma_max.is_some();
        if self.shift.is_some() && name != Some("flow-t") {
            bail!("--shift applies to the flow-t grid (give --time-grid flow-t)");
        }
        let grid = match name {
            None | Some("timesteps") => {
                for (flag, is) in [("--rho", self.rho.is_some()), ("--sigma-min/--sigma-max", sigma_flags)] {
                    if is {
                        bail!("{flag} applies to the karras and log-snr grids (give --time-grid karras or log-snr)");
                    }
                }
                let spacing: Option<TimestepSpacing> = self.timestep_spacing.as_deref().map(str::parse).transpose()?;
                match (name, spacing) {
                    (None, None) => None,
                    (_, spacing) => Some(method.timestep_grid(spacing.unwrap_or(method.default_spacing()))),
                }
            }
            Some(other) => {
                if self.timestep_spacing.is_some() {
                    bail!("--timestep-spacing applies to the timesteps grid, not to {other}");
                }
                match other {
                    "flow-t" => {
                        if self.rho.is_some() || sigma_flags {
                            bail!("--rho and --sigma-min/--sigma-max apply to the karras and log-snr grids");
                        }
                        Some(Grid::FlowT {
                            shift: self.shift.unwrap_or(1.0),
                        })
                    }
                    "uniform-t" => {
                        if self.rho.is_some() || sigma_flags {
                            bail!("--rho and --sigma-min/--sigma-max apply to the karras and log-snr grids");
                        }
                        Some(Grid::UniformT)
                    }
                    "karras" => Some(Grid::Karras {
                        rho: self.rho.unwrap_or(7.0),
                        sigma_min: self.sigma_min,
                        sigma_max: self.sigma_max,
                    }),
                    "log-snr" => {
                        if self.rho.is_some() {
                            bail!("--rho applies to the karras grid, not to log-snr");
                        }
                        Some(Grid::LogSnr {
                            sigma_min: self.sigma_min,
                            sigma_max: self.sigma_max,
                        })
                    }
                    _ => bail!("unknown grid '{other}' (expected one of: {})", Grid::NAMES),
                }
            }
        };
        Ok(grid)
    }

    /// Whether any flag chooses the process or the grid.
    fn places(&self) -> bool {
        self.sde.is_some()
            || self.time_grid.is_some()
            || self.timestep_spacing.is_some()
            || self.rho.is_some()
            || self.sigma_min.is_some()
            || self.sigma_max.is_some()
            || self.shift.is_some()
    }

    /// The plan for a model whose own process is `native` and whose default sampler is `default`. Without
    /// --sampler and without flags that place the steps, the default sampler on its own process and grid
    /// (--steps and the sampler's own flags still apply). Otherwise the sampler (--sampler, else the default's,
    /// else ddim) on --sde, or on `native` (VP for a sampler that needs an SDE where `native` is none), unless a
    /// uniform-t grid asks for an SDE; on --time-grid or the sampler's default grid there. With `strict`,
    /// unused flags are errors.
    pub fn plan_with(
        &self,
        schedule: &NoiseSchedule,
        native: &Process,
        default: Option<&Spec>,
        strict: bool,
    ) -> anyhow::Result<Plan> {
        let base = match (&self.sampler, default) {
            (Some(name), _) => Method::from_name(name)?,
            (None, Some(spec)) => spec.method,
            (None, None) => Method::Ddim { eta: 0.0 },
        };
        let method = self.method_from(base, strict)?;
        if let (None, Some(spec), false) = (&self.sampler, default, self.places()) {
            let steps = self.steps.unwrap_or(spec.steps);
            return Ok(Spec {
                method,
                steps,
                ..spec.clone()
            }
            .plan(schedule)?);
        }
        let sde: Option<Sde> = self.sde.as_deref().map(str::parse).transpose()?;
        let wants_sde = method.needs_sde() || self.time_grid.as_deref() == Some("uniform-t");
        let process = match (sde, native) {
            (Some(sde), _) => Process::Sde(sde),
            (None, Process::Discrete(_) | Process::Flow) if wants_sde => Process::Sde(Sde::vp()),
            (None, p) => p.clone(),
        };
        let grid = self.grid(&method)?.unwrap_or(method.default_grid(&process));
        let steps = self.steps.or(default.map(|s| s.steps)).unwrap_or(50);
        Ok(Plan::on_grid(method, process, grid, steps)?)
    }

    /// The plan for a loaded run: its schedule, process and default sampler, strict.
    pub fn plan_for(&self, run: &LoadedRun) -> anyhow::Result<Plan> {
        let default = run.config.default_sampler()?;
        self.plan_with(&run.schedule, &run.config.process()?, Some(&default), true)
    }

    /// [`SamplerArgs::plan_with`], strict.
    pub fn plan(&self, schedule: &NoiseSchedule, native: &Process, default: Option<&Spec>) -> anyhow::Result<Plan> {
        self.plan_with(schedule, native, default, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: SamplerArgs,
    }

    fn plan(args: &str) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.split_whitespace()))?;
        let schedule = NoiseSchedule::with_defaults(diffuse_math::BetaSchedule::Linear, 1000)?;
        cli.s.plan(&schedule, &Process::Discrete(schedule.clone()), None)
    }

    #[test]
    fn flags_the_sampler_ignores_are_refused_by_name() {
        for (args, flag) in [
            ("--sampler ode --eta 0.5", "--eta"),
            ("--sampler ddim --variance large", "--variance"),
            ("--sampler euler-maruyama --snr 0.2", "--snr"),
            ("--sampler reverse-diffusion --predictor ancestral", "--predictor"),
            ("--sampler ode --ode-solver heun --rtol 1e-3", "--rtol"),
            ("--sampler ddpm --ode-solver heun", "--ode-solver"),
            ("--sampler ddim --rho 5", "--rho"),
            (
                "--sampler ddim --time-grid karras --timestep-spacing leading",
                "--timestep-spacing",
            ),
        ] {
            let e = plan(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args}: {e}");
        }
        assert!(
            plan("--sampler nope")
                .unwrap_err()
                .to_string()
                .contains("unknown sampler 'nope'")
        );
        assert!(
            plan("--sampler ddim --time-grid spiral")
                .unwrap_err()
                .to_string()
                .contains("unknown grid")
        );
    }

    #[test]
    fn flags_map_onto_the_library_plan() {
        let p = plan("--sampler euler-ancestral --eta 0.5 --time-grid karras --rho 5 --steps 20").unwrap();
        assert_eq!(p.method(), Method::EulerAncestral { eta: 0.5 });
        assert!(matches!(p.grid(), Grid::Karras { rho: 5.0, .. }) && matches!(p.process(), Process::Discrete(_)));
        let p = plan("--sampler pc --predictor ancestral --corrector-steps 2 --sde ve:0.002,80").unwrap();
        assert_eq!(
            p.method(),
            Method::Sde {
                predictor: Predictor::Ancestral,
                corrector_steps: 2,
                snr: 0.16
            }
        );
        assert_eq!(
            *p.process(),
            Process::Sde(Sde::Ve {
                sigma_min: 0.002,
                sigma_max: 80.0
            })
        );
        let p = plan("--sampler dpmpp-2m").unwrap();
        assert_eq!(
            p.grid(),
            Grid::SolverTimesteps {
                spacing: TimestepSpacing::Linspace
            }
        );
        let p = plan("--sampler ddim --sde vp").unwrap();
        assert!(matches!(p.process(), Process::Sde(_)) && p.grid() == Grid::UniformT);
        let e = plan("--sampler ode --time-grid karras").unwrap_err().to_string();
        assert!(e.contains("rk45") && e.contains("karras"), "{e}");
        assert!(plan("--sampler ode --ode-solver heun --time-grid karras").is_ok());
        // The chosen grid is the one checked: Karras has no limit of 1000 train timesteps.
        assert_eq!(
            plan("--sampler ddim --time-grid karras --steps 2000").unwrap().steps(),
            2000
        );
        // pc without corrector steps is its predictor alone; langevin without them is refused.
        let p = plan("--sampler pc --corrector-steps 0").unwrap();
        assert!(matches!(p.method(), Method::Sde { corrector_steps: 0, .. }));
        assert!(
            plan("--sampler langevin --corrector-steps 0")
                .unwrap_err()
                .to_string()
                .contains("corrector")
        );
        assert!(plan("--sampler pc --sde ve --time-grid karras --sigma-min 0.01").is_ok());
    }
}
