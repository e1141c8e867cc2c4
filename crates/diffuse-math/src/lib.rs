//! Scalar diffusion maths in f64, free of any tensor library so that it compiles and tests in seconds.
//!
//! - [`schedule`]: discrete β schedules and the quantities derived from them (ᾱ, σ, SNR, posterior).
//! - [`spacing`]: which train timesteps a K-step sampler visits.
//! - [`grid`]: the levels a sampler walks on a process: timesteps, uniform t, Karras ρ, uniform log-SNR.
//! - [`step`]: the per-step coefficients of the DDPM, DDIM, ancestral and DPM-Solver++ updates.
//! - [`level`], [`sde`]: noise levels x = αx₀ + σε, and the VP / sub-VP / VE SDEs that produce them.
//! - [`precond`]: how a network's input, output and target relate to (x₀, ε): ε/x₀/v, EDM, flow matching.
//! - [`dist`]: exact targets (Gaussian, mixtures) with their CDFs, and the 1-Wasserstein distance to them.
//! - [`metrics`]: sample-quality statistics over feature vectors (Fréchet distance, Inception-style score).

pub mod dist;
pub mod grid;
pub mod level;
pub mod metrics;
pub mod precond;
pub mod prediction;
pub mod schedule;
pub mod sde;
pub mod spacing;
pub mod step;

pub use grid::{Grid, Knot, Process};
pub use level::Level;
pub use precond::Precond;
pub use prediction::Prediction;
pub use schedule::{BetaSchedule, NoiseSchedule};
pub use sde::Sde;
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
