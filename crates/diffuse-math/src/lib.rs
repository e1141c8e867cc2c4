//! Scalar diffusion maths in f64, free of any tensor library so that it compiles and tests in seconds.
//!
//! - [`schedule`]: discrete β schedules and the quantities derived from them (ᾱ, σ, SNR, posterior).
//! - [`spacing`]: which train timesteps a K-step sampler visits.
//! - [`step`]: the per-step coefficients of the DDPM and DDIM updates.

pub mod prediction;
pub mod schedule;
pub mod spacing;
pub mod step;

pub use prediction::Prediction;
pub use schedule::{BetaSchedule, NoiseSchedule};
pub use spacing::TimestepSpacing;

/// Errors from invalid schedule or sampler parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MathError {
    #[error("unknown {kind} '{value}' (expected one of: {expected})")]
    Unknown {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}
