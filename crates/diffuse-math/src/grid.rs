//! Time grids: the sequence of noise levels a sampler walks, separate from the sampler itself (as in
//! k-diffusion, where a sampler takes its σ schedule as input). A [`Process`] says what the levels are (a
//! discrete train schedule or a continuous SDE); a [`Grid`] says where the K steps go between its ends.
//!
//! Every grid ends where its process ends: at the clean level (σ = 0) for a discrete schedule, at t_min for an
//! SDE, after which samplers denoise once (score_sde's "noise removal").

use crate::level::Level;
use crate::{MathError, NoiseSchedule, Sde, TimestepSpacing};
use std::fmt;

/// What a sampler walks: a discrete train schedule, a continuous SDE on t ∈ [t_min, 1], or the straight path
/// of flow matching, x_t = (1 − t)·x₀ + t·ε on t ∈ [0, 1], which starts at pure noise (α = 0).
#[derive(Clone, Debug, PartialEq)]
pub enum Process {
    Discrete(NoiseSchedule),
    Sde(Sde),
    Flow,
}

/// The smallest σ/α a σ grid on the flow path goes down to unless told (EDM's σ_min) before its clean end.
pub const FLOW_SIGMA_MIN: f64 = 0.002;

/// The level of the flow path at time t.
pub fn flow_level(t: f64) -> Level {
    Level {
        alpha: 1.0 - t,
        sigma: t,
    }
}

impl Process {
    /// The VE-equivalent noise level σ/α at the start (t = 1, the last train step) and at the end (t_min, the
    /// first train step) of the process.
    pub fn sigma_range(&self) -> (f64, f64) {
        let ratio = |l: Level| l.sigma / l.alpha;
        match self {
            Process::Discrete(s) => (
                ratio(Level::vp(s.alpha_bar(s.len() as i64 - 1))),
                ratio(Level::vp(s.alpha_bar(0))),
            ),
            Process::Sde(sde) => (ratio(sde.marginal(1.0)), ratio(sde.marginal(sde.t_min()))),
            Process::Flow => (f64::INFINITY, FLOW_SIGMA_MIN),
        }
    }

    /// The process's knot at VE-equivalent level `r` = σ/α: a fractional train step of a discrete schedule
    /// (variance-preserving level), or the SDE time with that signal-to-noise ratio.
    fn knot_at_ratio(&self, r: f64) -> Knot {
        let alpha = 1.0 / (1.0 + r * r).sqrt();
        let vp = Level {
            alpha,
            sigma: r * alpha,
        };
        match self {
            Process::Discrete(s) => Knot {
                t: s.timestep_of(vp.alpha_bar()),
                level: vp,
            },
            Process::Sde(sde) => {
                let t = sde.time_of(vp);
                Knot {
                    t,
                    level: sde.marginal(t),
                }
            }
            Process::Flow => {
                let t = r / (1.0 + r);
                Knot {
                    t,
                    level: flow_level(t),
                }
            }
        }
    }

    /// The end every grid on this process reaches.
    fn end(&self) -> Knot {
        match self {
            Process::Discrete(_) => Knot {
                t: -1.0,
                level: Level::CLEAN,
            },
            Process::Flow => Knot {
                t: 0.0,
                level: Level::CLEAN,
            },
            Process::Sde(sde) => Knot {
                t: sde.t_min(),
                level: sde.marginal(sde.t_min()),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            Process::Discrete(s) => format!("{}-step discrete schedule", s.len()),
            Process::Sde(sde) => format!("{sde} SDE"),
            Process::Flow => "flow-matching path".into(),
        }
    }
}

/// One point of a grid: the process's time (a train step for discrete schedules, fractional on σ grids, −1 at
/// the clean end; t for SDEs) and its noise level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knot {
    pub t: f64,
    pub level: Level,
}

/// Where a sampler's K steps go. Serialised as `{"kind": "karras", "rho": 7.0, …}`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Grid {
    /// K train timesteps of a discrete schedule placed as diffusers' DDIM scheduler does, each moved up by
    /// `offset` (diffusers' `steps_offset`, which it applies to leading spacing), then clean.
    Timesteps {
        spacing: TimestepSpacing,
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: usize,
    },
    /// K train timesteps placed as diffusers' DPM-Solver multistep scheduler does (K + 1 points, the last
    /// dropped; repeats from rounding dropped too), then clean.
    SolverTimesteps { spacing: TimestepSpacing },
    /// Uniform in SDE time, t_i = s − i(s − t_min)/K (score_sde's grid).
    UniformT,
    /// Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ on σ/α, with the
    /// process's own ends unless given; N = K points and then the clean end, or N = K + 1 when σ_min is the
    /// process's own last level (an SDE's t_min), so that every grid has K steps.
    Karras {
        rho: f64,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
    },
    /// Uniform in λ = log(α/σ) (half the log-SNR; DPM-Solver's time variable) between the same ends.
    LogSnr {
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
    },
    /// Uniform in flow time from t = 1 (pure noise) to 0, each t then shifted to s·t/(1 + (s − 1)·t) (SD3's
    /// resolution shift, Esser et al. 2024, eq. 23; s > 1 spends more steps at high noise). Flow path only.
    FlowT { shift: f64 },
}

impl Grid {
    /// The grids `--time-grid` names (the solver-timesteps placement comes with `--timestep-spacing` on
    /// dpmpp-2m).
    pub const NAMES: &'static str = "timesteps, uniform-t, karras, log-snr, flow-t";

    /// Karras's grid with EDM's ρ = 7 and the process's ends.
    pub const KARRAS: Grid = Grid::Karras {
        rho: 7.0,
        sigma_min: None,
        sigma_max: None,
    };

    /// The K + 1 knots of a K-step walk on `process`. A start part-way (`strength` s ∈ (0, 1), SDEdit) keeps
    /// the last ⌈s·K⌉ steps of the grid, as diffusers' img2img does, except on a uniform-t grid, which runs its
    /// K steps from t = s. Fails when the grid cannot be laid on the process, naming both.
    pub fn knots(&self, process: &Process, steps: usize, strength: f64) -> Result<Vec<Knot>, MathError> {
        if steps == 0 {
            return Err(MathError::Invalid(match (self, process) {
                (Grid::Timesteps { .. } | Grid::SolverTimesteps { .. }, Process::Discrete(s)) => {
                    format!("steps must be between 1 and the {} train timesteps, got 0", s.len())
                }
                (_, Process::Discrete(_) | Process::Sde(_) | Process::Flow) => "steps must be at least 1".into(),
            }));
        }
        let refuse = |why: &str| MathError::Invalid(format!("the {self} grid {why} ({})", process.name()));
        let end = process.end();
        let mut knots: Vec<Knot> = match (*self, process) {
            (Grid::Timesteps { spacing, offset }, Process::Discrete(s)) => {
                let ts: Vec<i64> = spacing
                    .timesteps(s.len(), steps)?
                    .iter()
                    .map(|t| t + offset as i64)
                    .collect();
                if ts[0] >= s.len() as i64 {
                    return Err(refuse(&format!("moved up by {offset} passes the last train timestep")));
                }
                steps_knots(s, &ts)
            }
            (Grid::SolverTimesteps { spacing }, Process::Discrete(s)) => {
                steps_knots(s, &spacing.dpm_solver_timesteps(s.len(), steps)?)
            }
            (Grid::Timesteps { .. } | Grid::SolverTimesteps { .. }, Process::Sde(_) | Process::Flow) => {
                return Err(refuse("places train timesteps: it needs a discrete schedule"));
            }
            (Grid::UniformT, Process::Discrete(_) | Process::Flow) => {
                return Err(refuse("is uniform in SDE time: it needs an SDE"));
            }
            (Grid::FlowT { .. }, Process::Discrete(_) | Process::Sde(_)) => {
                return Err(refuse("is laid in flow time: it needs the flow-matching path"));
            }
            (Grid::FlowT { shift }, Process::Flow) => {
                if !(shift > 0.0 && shift.is_finite()) {
                    return Err(refuse(&format!("needs a shift > 0, got {shift}")));
                }
                (0..steps)
                    .map(|i| {
                        let t = 1.0 - i as f64 / steps as f64;
                        // s·t/(s·t + 1 − t): exactly 1 at t = 1 in floating point.
                        let t = (shift * t / (shift * t + (1.0 - t))).clamp(0.0, 1.0);
                        Knot {
                            t,
                            level: flow_level(t),
                        }
                    })
                    .collect()
            }
            (Grid::UniformT, Process::Sde(sde)) => {
                let t_min = sde.t_min();
                if strength <= t_min {
                    return Err(refuse(&format!(
                        "cannot start at {strength}, at or below t_min {t_min}"
                    )));
                }
                let ts = (0..steps).map(|i| strength - i as f64 * (strength - t_min) / steps as f64);
                return Ok(ts
                    .map(|t| Knot {
                        t,
                        level: sde.marginal(t),
                    })
                    .chain([end])
                    .collect());
            }
            (
                Grid::Karras {
                    rho,
                    sigma_min,
                    sigma_max,
                },
                _,
            ) => {
                if !(rho > 0.0 && rho.is_finite()) {
                    return Err(refuse(&format!("needs ρ > 0, got {rho}")));
                }
                let (lo, hi) = ends(process, sigma_min, sigma_max).map_err(|e| refuse(&e))?;
                let (a, b) = (hi.powf(1.0 / rho), lo.powf(1.0 / rho));
                sigma_knots(process, steps, lo, &end, |f| (a + f * (b - a)).powf(rho))
            }
            (Grid::LogSnr { sigma_min, sigma_max }, _) => {
                let (lo, hi) = ends(process, sigma_min, sigma_max).map_err(|e| refuse(&e))?;
                let (a, b) = (hi.ln(), lo.ln());
                sigma_knots(process, steps, lo, &end, |f| (a + f * (b - a)).exp())
            }
        };
        knots.push(end);
        let k = knots.len() - 1;
        Ok(knots.split_off(k - kept(k, strength)))
    }
}

/// How many of `k` grid steps a start at strength `s` keeps: ⌈s·k⌉, at least one.
pub fn kept(k: usize, s: f64) -> usize {
    ((s * k as f64 - 1e-9).ceil() as usize).clamp(1, k)
}

fn steps_knots(s: &NoiseSchedule, ts: &[i64]) -> Vec<Knot> {
    ts.iter()
        .map(|&t| Knot {
            t: t as f64,
            level: Level::vp(s.alpha_bar(t)),
        })
        .collect()
}

/// The σ/α range of a σ grid: the given ends, within the process's own. An end given within 0.1% of the
/// process's is that end: an SDE's last level is its σ at t_min, a hair above its nominal σ_min (VE 0.01 →
/// 0.0100009), so `--sigma-min 0.01` means the end rather than an error.
fn ends(process: &Process, lo: Option<f64>, hi: Option<f64>) -> Result<(f64, f64), String> {
    let (p_hi, p_lo) = process.sigma_range();
    let snap = |v: f64, end: f64| if (v / end - 1.0).abs() < 1e-3 { end } else { v };
    let (lo, hi) = (lo.map_or(p_lo, |v| snap(v, p_lo)), hi.map_or(p_hi, |v| snap(v, p_hi)));
    if hi.is_infinite() {
        return Err("needs --sigma-max: the process starts at pure noise (σ/α = ∞)".into());
    }
    // The flow path's own σ_min is only a default: it reaches every level down to clean.
    let floor = if *process == Process::Flow { 0.0 } else { p_lo };
    if !(lo > 0.0 && lo < hi && lo >= floor && hi <= p_hi) {
        return Err(format!(
            "needs 0 < σ_min < σ_max within the process's σ/α range {p_lo}..{p_hi}, got {lo}..{hi}"
        ));
    }
    Ok((lo, hi))
}

/// The knots before the end of a K-step σ grid: `sigma(f)` for f from 0 (σ_max) to 1 (σ_min). When σ_min is the
/// end's own level (an SDE's t_min) the ramp's last point is the end, so it takes K + 1 points; otherwise K,
/// and the last step goes from σ_min to the end (clean, for discrete schedules).
fn sigma_knots(process: &Process, steps: usize, lo: f64, end: &Knot, sigma: impl Fn(f64) -> f64) -> Vec<Knot> {
    let end_ratio = end.level.sigma / end.level.alpha;
    let at_end = (lo / end_ratio - 1.0).abs() < 1e-9;
    let points = if at_end { steps + 1 } else { steps };
    (0..steps)
        .map(|i| {
            let f = if points == 1 {
                0.0
            } else {
                i as f64 / (points - 1) as f64
            };
            process.knot_at_ratio(sigma(f))
        })
        .collect()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grid::Timesteps { spacing: s, offset: 0 } => write!(f, "{s}-spaced timesteps"),
            Grid::Timesteps { spacing: s, offset } => write!(f, "{s}-spaced timesteps + {offset}"),
            Grid::SolverTimesteps { spacing: s } => write!(f, "{s}-spaced solver timesteps"),
            Grid::UniformT => f.write_str("uniform-t"),
            Grid::Karras { rho, .. } => write!(f, "karras (ρ {rho})"),
            Grid::LogSnr { .. } => f.write_str("log-snr"),
            Grid::FlowT { shift } => write!(f, "flow-t (shift {shift})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BetaSchedule;

    fn ratio(k: &Knot) -> f64 {
        k.level.sigma / k.level.alpha
    }

    fn linear() -> Process {
        Process::Discrete(NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap())
    }

    #[test]
    fn timestep_grids_are_the_spacings_then_clean() {
        let p = linear();
        let k = Grid::Timesteps {
            spacing: TimestepSpacing::Trailing,
            offset: 0,
        }
        .knots(&p, 10, 1.0)
        .unwrap();
        let ts = TimestepSpacing::Trailing.timesteps(1000, 10).unwrap();
        assert_eq!(k.len(), 11);
        assert!(k[..10].iter().zip(&ts).all(|(k, &t)| k.t == t as f64));
        assert_eq!(k[10].level, Level::CLEAN);
        // SDEdit at 0.3 keeps the last 3 steps.
        let part = Grid::Timesteps {
            spacing: TimestepSpacing::Trailing,
            offset: 0,
        }
        .knots(&p, 10, 0.3)
        .unwrap();
        assert_eq!(part, k[7..].to_vec());
    }

    #[test]
    fn uniform_t_is_score_sdes_grid() {
        let sde = Sde::ve();
        let k = Grid::UniformT.knots(&Process::Sde(sde), 4, 1.0).unwrap();
        let want = [1.0, 0.75 + 0.25e-5, 0.5 + 0.5e-5, 0.25 + 0.75e-5, 1e-5];
        for (k, w) in k.iter().zip(want) {
            assert!((k.t - w).abs() < 1e-12, "{} vs {w}", k.t);
            assert_eq!(k.level, sde.marginal(k.t));
        }
    }

    #[test]
    fn karras_follows_its_formula_between_the_processes_ends() {
        let sde = Sde::Ve {
            sigma_min: 0.002,
            sigma_max: 80.0,
        };
        let p = Process::Sde(sde);
        let k = Grid::KARRAS.knots(&p, 18, 1.0).unwrap();
        // σ_i = (80^{1/7} + i/18 (σ_end^{1/7} − 80^{1/7}))^7, i = 0…18, where σ_end is the level at t_min.
        let end = sde.marginal(sde.t_min()).sigma;
        assert_eq!(k.len(), 19);
        for (i, knot) in k[..18].iter().enumerate() {
            let f = i as f64 / 18.0;
            let want = (80f64.powf(1.0 / 7.0) + f * (end.powf(1.0 / 7.0) - 80f64.powf(1.0 / 7.0))).powi(7);
            assert!(
                (ratio(knot) / want - 1.0).abs() < 1e-9,
                "{i}: {} vs {want}",
                ratio(knot)
            );
        }
        assert_eq!(k[18].t, sde.t_min());
        // On a discrete schedule: σ/α from the last train step's down to the first's, then clean.
        let p = linear();
        let (hi, lo) = p.sigma_range();
        let k = Grid::KARRAS.knots(&p, 10, 1.0).unwrap();
        assert!((ratio(&k[0]) / hi - 1.0).abs() < 1e-9 && (ratio(&k[9]) / lo - 1.0).abs() < 1e-9);
        assert!((k[0].t - 999.0).abs() < 1e-6 && k[9].t.abs() < 1e-6);
        assert_eq!(k[10].level, Level::CLEAN);
        // Levels are variance-preserving and σ falls strictly.
        assert!(k.windows(2).all(|w| w[1].level.sigma < w[0].level.sigma));
        assert!(
            k[..10]
                .iter()
                .all(|k| (k.level.alpha.powi(2) + k.level.sigma.powi(2) - 1.0).abs() < 1e-12)
        );
    }

    #[test]
    fn log_snr_steps_are_equal_in_lambda() {
        let k = Grid::LogSnr {
            sigma_min: Some(0.02),
            sigma_max: Some(10.0),
        }
        .knots(&linear(), 7, 1.0)
        .unwrap();
        let lambdas: Vec<f64> = k[..7].iter().map(|k| k.level.lambda()).collect();
        let h = (10f64 / 0.02).ln() / 6.0;
        assert!(
            lambdas.windows(2).all(|w| (w[1] - w[0] - h).abs() < 1e-9),
            "{lambdas:?}"
        );
        assert!((lambdas[0] + 10f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn flow_t_is_shifted_uniform_flow_time_from_pure_noise() {
        let k = Grid::FlowT { shift: 3.0 }.knots(&Process::Flow, 4, 1.0).unwrap();
        let want = [1.0, 0.9, 0.75, 0.5, 0.0]; // 3t/(1 + 2t) at t = 1, ¾, ½, ¼, then clean
        assert_eq!(k.len(), 5);
        for (k, w) in k.iter().zip(want) {
            assert!((k.t - w).abs() < 1e-12, "{} vs {w}", k.t);
        }
        assert_eq!(k[0].level, Level { alpha: 0.0, sigma: 1.0 });
        assert_eq!(k[4].level, Level::CLEAN);
        // Shift 1 is uniform; a σ grid on the path needs its top given, and then lands on the path's levels.
        let u = Grid::FlowT { shift: 1.0 }.knots(&Process::Flow, 4, 1.0).unwrap();
        assert!((u[1].t - 0.75).abs() < 1e-12);
        let e = Grid::KARRAS.knots(&Process::Flow, 4, 1.0).unwrap_err().to_string();
        assert!(e.contains("--sigma-max"), "{e}");
        let k = Grid::Karras {
            rho: 7.0,
            sigma_min: None,
            sigma_max: Some(80.0),
        }
        .knots(&Process::Flow, 4, 1.0)
        .unwrap();
        assert!((k[0].level.sigma / k[0].level.alpha - 80.0).abs() < 1e-9 && (k[0].t - 80.0 / 81.0).abs() < 1e-12);
        assert!((k[3].level.sigma / k[3].level.alpha - FLOW_SIGMA_MIN).abs() < 1e-12);
        assert!(Grid::FlowT { shift: 1.0 }.knots(&linear(), 4, 1.0).is_err());
    }

    #[test]
    fn grids_that_do_not_fit_the_process_are_refused_by_name() {
        let ve = Process::Sde(Sde::ve());
        let e = Grid::Timesteps {
            spacing: TimestepSpacing::Leading,
            offset: 0,
        }
        .knots(&ve, 10, 1.0)
        .unwrap_err()
        .to_string();
        assert!(e.contains("leading-spaced timesteps") && e.contains("ve SDE"), "{e}");
        let e = Grid::UniformT.knots(&linear(), 10, 1.0).unwrap_err().to_string();
        assert!(e.contains("uniform-t") && e.contains("discrete"), "{e}");
        let too_wide = Grid::Karras {
            rho: 7.0,
            sigma_min: Some(0.002),
            sigma_max: Some(80.0),
        };
        assert!(too_wide.knots(&ve, 10, 1.0).unwrap_err().to_string().contains("range"));
        // The nominal ends of an SDE name its own ends (its level at t_min sits a hair above σ_min).
        let edm = Process::Sde(Sde::Ve {
            sigma_min: 0.002,
            sigma_max: 80.0,
        });
        assert_eq!(
            too_wide.knots(&edm, 10, 1.0).unwrap(),
            Grid::KARRAS.knots(&edm, 10, 1.0).unwrap()
        );
        assert!(
            Grid::Timesteps {
                spacing: TimestepSpacing::Leading,
                offset: 0,
            }
            .knots(&linear(), 0, 1.0)
            .is_err()
        );
    }
}
