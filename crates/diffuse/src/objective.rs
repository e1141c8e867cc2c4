//! What a run trains its network to do: DDPM-style ε/x₀/v regression (on the discrete schedule, or an SDE for
//! score models), EDM's preconditioned denoising, or flow matching. Each objective fixes the network's
//! preconditioning ([`Precond`]), how it is told the noise level and which levels it trains on
//! ([`LevelInput`]), and the process its samples are drawn on ([`Process`]); the training loop, the run format
//! and the denoiser are the same for all.

use crate::denoise::{FlowTimes, LevelInput};
use crate::{Error, Result};
use diffuse_math::{NoiseSchedule, Precond, Prediction, Process, Sde};
use serde::{Deserialize, Serialize};

/// Serialised as `{"kind": "edm", "sigma_data": 0.5, …}`; runs written before objectives existed have none
/// and are `Diffusion`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Objective {
    /// The run's `prediction` (ε, x₀ or v) on its discrete schedule, or on its `sde` for score models.
    #[default]
    Diffusion,
    /// EDM (Karras et al. 2022): preconditioning for data of standard deviation `sigma_data`, training levels
    /// ln σ ~ N(p_mean, p_std²), sampling on the VE path σ ∈ [sigma_min, sigma_max]. EDM's values are
    /// 0.5, −1.2, 1.2, 0.002, 80; EDM2 (Karras et al. 2024) trains with p_mean −0.4, p_std 1.0.
    Edm {
        sigma_data: f64,
        p_mean: f64,
        p_std: f64,
        sigma_min: f64,
        sigma_max: f64,
    },
    /// Flow matching / rectified flow: x_t = (1 − t)·x₀ + t·ε, the velocity ε − x₀ as target, t drawn by
    /// `times`.
    Flow { times: FlowTimes },
}

impl Objective {
    /// The objectives `--objective` names.
    pub const NAMES: &'static str = "diffusion, edm, flow";

    /// The objective called `name` with its published defaults (EDM's; flow matching with SD3's logit-normal
    /// times).
    pub fn from_name(name: &str) -> Result<Objective> {
        Ok(match name {
            "diffusion" | "ddpm" => Objective::Diffusion,
            "edm" => Objective::Edm {
                sigma_data: 0.5,
                p_mean: -1.2,
                p_std: 1.2,
                sigma_min: 0.002,
                sigma_max: 80.0,
            },
            "flow" => Objective::Flow {
                times: FlowTimes::LogitNormal { mean: 0.0, std: 1.0 },
            },
            _ => {
                return Err(Error::Config(format!(
                    "unknown objective '{name}' (expected one of: {})",
                    Self::NAMES
                )));
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::Diffusion => "diffusion",
            Objective::Edm { .. } => "edm",
            Objective::Flow { .. } => "flow",
        }
    }

    /// The network's preconditioning; `prediction` is a diffusion run's.
    pub fn precond(&self, prediction: Prediction) -> Precond {
        match *self {
            Objective::Diffusion => Precond::Vp(prediction),
            Objective::Edm { sigma_data, .. } => Precond::Edm { sigma_data },
            Objective::Flow { .. } => Precond::Flow,
        }
    }

    /// How the network is told the noise level; `schedule` and `sde` are a diffusion run's.
    pub fn level_input(&self, schedule: &NoiseSchedule, sde: Option<Sde>) -> LevelInput {
        match (*self, sde) {
            (Objective::Diffusion, Some(sde)) => LevelInput::Continuous(sde),
            (Objective::Diffusion, None) => LevelInput::Discrete(schedule.clone()),
            (Objective::Edm { p_mean, p_std, .. }, _) => LevelInput::Edm { p_mean, p_std },
            (Objective::Flow { times }, _) => LevelInput::Flow(times),
        }
    }

    /// The process the model's samples are drawn on unless a sampler asks for another.
    pub fn process(&self, schedule: &NoiseSchedule, sde: Option<Sde>) -> Process {
        match (*self, sde) {
            (Objective::Diffusion, Some(sde)) => Process::Sde(sde),
            (Objective::Diffusion, None) => Process::Discrete(schedule.clone()),
            (
                Objective::Edm {
                    sigma_min, sigma_max, ..
                },
                _,
            ) => Process::Sde(Sde::Ve { sigma_min, sigma_max }),
            (Objective::Flow { .. }, _) => Process::Flow,
        }
    }

    /// Checks the objective's parameters.
    pub fn validate(&self, prediction: Prediction) -> Result<()> {
        let bad = |why: String| Err(Error::Config(format!("{} objective: {why}", self.name())));
        match *self {
            Objective::Diffusion => Ok(()),
            _ if prediction != Prediction::Eps => bad(format!(
                "its network predicts what the objective says; --prediction {prediction} applies to diffusion"
            )),
            Objective::Edm {
                sigma_data,
                p_std,
                p_mean,
                sigma_min,
                sigma_max,
            } => {
                let ok = sigma_data > 0.0 && p_std > 0.0 && p_mean.is_finite();
                if !(ok && sigma_min > 0.0 && sigma_min < sigma_max && sigma_max.is_finite()) {
                    return bad(format!(
                        "need σ_data > 0, P_std > 0 and 0 < σ_min < σ_max, got {sigma_data}, {p_std}, {sigma_min}, {sigma_max}"
                    ));
                }
                Ok(())
            }
            Objective::Flow {
                times: FlowTimes::LogitNormal { mean, std },
            } if !(std > 0.0 && mean.is_finite()) => bad(format!("logit-normal times need std > 0, got {std}")),
            Objective::Flow { .. } => Ok(()),
        }
    }
}
