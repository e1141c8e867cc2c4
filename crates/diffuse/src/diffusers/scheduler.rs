//! `scheduler/scheduler_config.json` to and from what a run stores about its process: the β schedule, what the
//! network predicts, how x̂₀ is clipped, and where the default sampler's timesteps go. diffusers' schedulers
//! are samplers as well as schedules; the sampler here is chosen at sampling time (`--sampler`), so only the
//! keys that describe the model are kept, and every key diffuse cannot honour is refused by name.

use crate::objective::Objective;
use crate::run::{RunConfig, ScheduleConfig};
use crate::{Error, Result};
use diffuse_math::{BetaSchedule, Grid, Prediction, TimestepSpacing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const FILE: &str = "scheduler_config.json";

/// The keys of the DDPM, DDIM and flow-matching Euler schedulers' configs, with diffusers' defaults for DDPM
/// and DDIM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "linear")]
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default = "epsilon")]
    pub prediction_type: String,
    #[serde(default = "super::default::yes")]
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub variance_type: Option<String>,
    #[serde(default = "leading")]
    pub timestep_spacing: String,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "super::default::yes")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    /// Flow matching: the resolution shift of the timesteps (1 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_dynamic_shifting: bool,
    /// Flow matching: σ running the other way (a different time convention).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert_sigmas: bool,
}

fn thousand() -> usize {
    1000
}
fn beta_start() -> f64 {
    1e-4
}
fn beta_end() -> f64 {
    0.02
}
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}
fn one() -> f64 {
    1.0
}

const DIFFUSION: [&str; 3] = ["DDPMScheduler", "DDIMScheduler", PNDM];
/// Stable Diffusion 1.x's scheduler: the same training schedule, its own multistep sampler, never clipping.
const PNDM: &str = "PNDMScheduler";
const FLOW: &str = "FlowMatchEulerDiscreteScheduler";

/// What a scheduler config says about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProcess {
    pub objective: Objective,
    pub prediction: Prediction,
    pub schedule: ScheduleConfig,
    /// x̂₀ clamped to [−r, r]; none: not clipped.
    pub clip: Option<f64>,
    /// The default DDIM sampler's timestep placement, and how far its timesteps move up (`steps_offset`, which
    /// diffusers applies to leading spacing only).
    pub spacing: TimestepSpacing,
    pub offset: usize,
    /// What a user should know (e.g. the variance DDPMPipeline samples with).
    pub notes: Vec<String>,
}

impl SchedulerConfig {
    pub fn read(path: &std::path::Path) -> Result<Self> {
        crate::atomic::read_json(path)
    }

    /// The model's process, or an error naming the first key diffuse cannot honour.
    pub fn model_process(&self) -> Result<ModelProcess> {
        let bad = |m: String| Err(Error::Config(format!("scheduler config: {m}")));
        let class = self.class_name.as_deref().unwrap_or("DDPMScheduler");
        let flow = class == FLOW;
        if !flow && !DIFFUSION.contains(&class) {
            return bad(format!(
                "{class} is not supported ({}, {FLOW}; other schedulers of a DDPM-trained model convert with \
                 DDIMScheduler.from_config)",
                DIFFUSION.join(", ")
            ));
        }
        let mut notes = Vec::new();
        if flow {
            if self.num_train_timesteps != 1000 || self.invert_sigmas {
                return bad(format!(
                    "num_train_timesteps {} or invert_sigmas: diffuse's flow models are asked at 1000·t (1000 steps, \
                     not inverted)",
                    self.num_train_timesteps
                ));
            }
            if self.shift.is_some_and(|s| s != 1.0) || self.use_dynamic_shifting {
                return bad(
                    "shift other than 1 and use_dynamic_shifting are not supported (pass --flow-shift to the \
                            sampler instead)"
                        .into(),
                );
            }
            let schedule = ScheduleConfig::new(BetaSchedule::Linear, 1000, None);
            return Ok(ModelProcess {
                objective: Objective::from_name("flow")?,
                // The flow objective fixes what the network predicts (the velocity); a run's prediction field
                // is diffusion's.
                prediction: Prediction::Eps,
                schedule,
                clip: None,
                spacing: TimestepSpacing::Leading,
                offset: 0,
                notes,
            });
        }
        if self.num_train_timesteps != 1000 {
            notes.push(format!("{} train timesteps", self.num_train_timesteps));
        }
        let kind = match self.beta_schedule.as_str() {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "squaredcos_cap_v2" => BetaSchedule::Cosine,
            "sigmoid" => BetaSchedule::Sigmoid,
            other => {
                return bad(format!(
                    "beta_schedule {other} is not supported (linear, scaled_linear, squaredcos_cap_v2, sigmoid)"
                ));
            }
        };
        let prediction = match self.prediction_type.as_str() {
            "epsilon" => Prediction::Eps,
            "sample" => Prediction::X0,
            "v_prediction" => Prediction::V,
            other => {
                return bad(format!(
                    "prediction_type {other} is not supported (epsilon, sample, v_prediction)"
                ));
            }
        };
        if self.thresholding {
            return bad("thresholding (dynamic thresholding) is not supported; clip_sample is".into());
        }
        match self.variance_type.as_deref() {
            None | Some("fixed_small") => {}
            Some("fixed_large") => notes.push(
                "variance_type fixed_large: `--sampler ddpm --variance large` samples as \
                                               DDPMPipeline does"
                    .into(),
            ),
            Some(other) => {
                return bad(format!(
                    "variance_type {other} is not supported (fixed_small, fixed_large: a learned variance needs an \
                     output the UNet does not have)"
                ));
            }
        }
        let Ok(spacing) = self.timestep_spacing.parse::<TimestepSpacing>() else {
            return bad(format!(
                "timestep_spacing {} is not supported ({})",
                self.timestep_spacing,
                TimestepSpacing::NAMES
            ));
        };
        if !self.set_alpha_to_one {
            notes.push(
                "set_alpha_to_one false: diffusers' DDIM ends at ᾱ of timestep 0, diffuse's samplers at x̂₀ (ᾱ = 1)"
                    .into(),
            );
        }
        if class == PNDM {
            notes.push(format!(
                "{PNDM}: its training schedule is kept; diffuse samples with its own samplers (DDIM by default)"
            ));
        }
        // PNDM has no clipping, whatever the file says.
        let clip_sample = self.clip_sample && class != PNDM;
        if !(self.clip_sample_range > 0.0 && self.clip_sample_range.is_finite()) {
            return bad(format!(
                "clip_sample_range must be positive, got {}",
                self.clip_sample_range
            ));
        }
        if clip_sample {
            notes.push(
                "x̂₀ is clipped and ε̂ recomputed from it, as DDIMPipeline does with use_clipped_model_output=True (its \
                 default, False, keeps the raw ε̂)"
                    .into(),
            );
        }
        if self
            .trained_betas
            .as_ref()
            .is_some_and(|b| b.len() != self.num_train_timesteps)
        {
            return bad(format!(
                "{} trained_betas for num_train_timesteps {}",
                self.trained_betas.as_ref().map_or(0, Vec::len),
                self.num_train_timesteps
            ));
        }
        let schedule = ScheduleConfig {
            trained_betas: self.trained_betas.clone(),
            zero_terminal_snr: self.rescale_betas_zero_snr,
            ..ScheduleConfig::new(kind, self.num_train_timesteps, Some((self.beta_start, self.beta_end)))
        };
        schedule.build()?;
        Ok(ModelProcess {
            objective: Objective::Diffusion,
            prediction,
            schedule,
            clip: clip_sample.then_some(self.clip_sample_range),
            spacing,
            offset: if spacing == TimestepSpacing::Leading {
                self.steps_offset
            } else {
                0
            },
            notes,
        })
    }

    /// The config of a run's process: DDPMScheduler for discrete diffusion runs, the flow-matching Euler scheduler
    /// (its own keys only) for flow runs. EDM and continuous-time runs have no diffusers scheduler that asks their
    /// network the same question, and are refused.
    pub fn of(run: &RunConfig) -> Result<Value> {
        let s = &run.schedule;
        match run.objective {
            Objective::Diffusion if run.sde.is_none() => {}
            Objective::Flow { .. } => {
                return Ok(serde_json::json!({
                    "_class_name": FLOW,
                    "num_train_timesteps": 1000,
                    "shift": 1.0,
                    "use_dynamic_shifting": false,
                }));
            }
            _ => {
                return Err(Error::Config(format!(
                    "{} runs{} have no diffusers scheduler that asks the network the same question; export takes \
                     discrete diffusion and flow-matching runs",
                    run.objective.name(),
                    if run.sde.is_some() { " on an SDE" } else { "" }
                )));
            }
        }
        // The default sampler's timestep placement, where it is DDIM's.
        let (spacing, offset) = match run.sampler.as_ref().map(|s| s.grid) {
            Some(Grid::Timesteps { spacing, offset }) => (spacing, offset),
            _ => (TimestepSpacing::Leading, 0),
        };
        let config = SchedulerConfig {
            class_name: Some("DDPMScheduler".into()),
            num_train_timesteps: s.timesteps,
            beta_start: s.beta_start,
            beta_end: s.beta_end,
            beta_schedule: match s.kind {
                BetaSchedule::Linear => "linear",
                BetaSchedule::ScaledLinear => "scaled_linear",
                BetaSchedule::Cosine => "squaredcos_cap_v2",
                BetaSchedule::Sigmoid => "sigmoid",
            }
            .into(),
            trained_betas: s.trained_betas.clone(),
            prediction_type: match run.prediction {
                Prediction::Eps => "epsilon",
                Prediction::X0 => "sample",
                Prediction::V => "v_prediction",
            }
            .into(),
            clip_sample: run.clip_range().is_some(),
            clip_sample_range: run.clip_range().unwrap_or(1.0),
            thresholding: false,
            variance_type: Some("fixed_small".into()),
            timestep_spacing: spacing.name().into(),
            steps_offset: offset,
            set_alpha_to_one: true,
            rescale_betas_zero_snr: s.zero_terminal_snr,
            shift: None,
            use_dynamic_shifting: false,
            invert_sigmas: false,
        };
        Ok(serde_json::to_value(config).expect("a scheduler config serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> SchedulerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_ddpm_models_scheduler_reads_as_their_training() {
        // The scheduler config of the DDPM CIFAR-10 pipeline (linear β 1e-4 → 0.02, ε, clipped x̂₀).
        let p = cfg(
            r#"{"_class_name": "DDPMScheduler", "beta_end": 0.02, "beta_schedule": "linear",
            "beta_start": 0.0001, "clip_sample": true, "num_train_timesteps": 1000, "trained_betas": null,
            "variance_type": "fixed_large"}"#,
        )
        .model_process()
        .unwrap();
        assert_eq!(p.objective, Objective::Diffusion);
        assert_eq!(p.prediction, Prediction::Eps);
        assert_eq!(
            p.schedule,
            ScheduleConfig::new(BetaSchedule::Linear, 1000, Some((1e-4, 0.02)))
        );
        assert_eq!(p.clip, Some(1.0));
        assert!(p.notes.iter().any(|n| n.contains("--variance large")), "{:?}", p.notes);
        let v = cfg(
            r#"{"_class_name": "DDIMScheduler", "prediction_type": "v_prediction", "clip_sample": false,
            "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing", "rescale_betas_zero_snr": true}"#,
        )
        .model_process()
        .unwrap();
        assert_eq!(
            (v.prediction, v.clip, v.spacing),
            (Prediction::V, None, TimestepSpacing::Trailing)
        );
        assert!(v.schedule.zero_terminal_snr && v.schedule.kind == BetaSchedule::Cosine);
        // steps_offset moves leading timesteps only, as diffusers' DDIM and DDPM schedulers do.
        assert_eq!(cfg(r#"{"steps_offset": 1}"#).model_process().unwrap().offset, 1);
        let trailing = cfg(r#"{"steps_offset": 1, "timestep_spacing": "trailing"}"#);
        assert_eq!(trailing.model_process().unwrap().offset, 0);
    }

    #[test]
    fn keys_diffuse_cannot_honour_are_named() {
        let e = |json: &str| cfg(json).model_process().unwrap_err().to_string();
        assert!(e(r#"{"_class_name": "LMSDiscreteScheduler"}"#).contains("LMSDiscreteScheduler is not supported"));
        assert!(e(r#"{"trained_betas": [0.1, 0.2]}"#).contains("2 trained_betas for num_train_timesteps 1000"));
        // Explicit β values are the schedule.
        let p = cfg(r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.5]}"#)
            .model_process()
            .unwrap();
        let built = p.schedule.build().unwrap();
        assert_eq!(built.betas, vec![0.1, 0.2, 0.5]);
        assert!((built.alphas_cumprod[2] - 0.9 * 0.8 * 0.5).abs() < 1e-15);
        assert!(e(r#"{"num_train_timesteps": 2, "trained_betas": [0.1, 1.5]}"#).contains("not in (0, 1)"));
        assert!(e(r#"{"thresholding": true}"#).contains("thresholding"));
        assert!(e(r#"{"variance_type": "learned_range"}"#).contains("learned_range"));
        // Stable Diffusion 1.5's scheduler: the scaled-linear schedule, unclipped, with the two differences noted.
        let sd = cfg(
            r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1}"#,
        )
        .model_process()
        .unwrap();
        assert_eq!((sd.clip, sd.offset, sd.notes.len()), (None, 1, 2), "{:?}", sd.notes);
        assert!(sd.notes[0].contains("set_alpha_to_one") && sd.notes[1].contains("PNDMScheduler"));
        assert!(e(r#"{"prediction_type": "flow"}"#).contains("prediction_type flow"));
        assert!(e(r#"{"beta_schedule": "exp"}"#).contains("beta_schedule exp"));
        assert!(e(r#"{"timestep_spacing": "karras"}"#).contains("timestep_spacing karras"));
        assert!(e(r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}"#).contains("shift"));
        let flow = r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "invert_sigmas": true}"#;
        assert!(e(flow).contains("invert_sigmas"));
    }
}
