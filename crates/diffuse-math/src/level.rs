//! A noise level: x = α·x₀ + σ·ε. Every process here (discrete VP schedules, VP / sub-VP / VE SDEs) has
//! marginals of this form, so samplers and denoisers speak in levels and never care which produced them.

/// The mean coefficient α and standard deviation σ of x given x₀.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub alpha: f64,
    pub sigma: f64,
}

impl Level {
    /// The clean end: x = x₀.
    pub const CLEAN: Level = Level { alpha: 1.0, sigma: 0.0 };

    /// A variance-preserving level from ᾱ: α = √ᾱ, σ = √(1 − ᾱ).
    pub fn vp(alpha_bar: f64) -> Level {
        Level {
            alpha: alpha_bar.sqrt(),
            sigma: (1.0 - alpha_bar).max(0.0).sqrt(),
        }
    }

    /// The ᾱ of the variance-preserving level with the same signal-to-noise ratio.
    pub fn alpha_bar(&self) -> f64 {
        self.alpha * self.alpha / (self.alpha * self.alpha + self.sigma * self.sigma)
    }

    /// λ = log(α/σ), half the log-SNR (DPM-Solver's time variable).
    pub fn lambda(&self) -> f64 {
        (self.alpha / self.sigma).ln()
    }

    /// The forward transition from an `earlier` (less noisy) level to this one, x = a·x_earlier + √v·z:
    /// a = α/α_earlier, v = σ² − a²σ_earlier². Returned as (a, v).
    pub fn transition_from(&self, earlier: Level) -> (f64, f64) {
        let a = self.alpha / earlier.alpha;
        (
            a,
            (self.sigma * self.sigma - a * a * earlier.sigma * earlier.sigma).max(0.0),
        )
    }

    /// The score ∇ log p(x) = (α·x̂₀ − x)/σ² = −ε̂/σ as a coefficient on ε̂.
    pub fn score_coef(&self) -> f64 {
        -1.0 / self.sigma
    }
}
