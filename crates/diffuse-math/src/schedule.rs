//! Discrete noise schedules: β₁…β_T and ᾱ_t = ∏ (1 − β_s).
//!
//! Definitions follow diffusers (`DDPMScheduler.__init__`), so that numbers compare with it:
//! - linear: β evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020).
//! - scaled-linear: √β evenly spaced, then squared (latent diffusion).
//! - cosine ("squaredcos_cap_v2"): ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999)
//!   (Nichol & Dhariwal 2021).
//! - sigmoid: β = sigmoid(linspace(−6, 6, T)) · (end − start) + start (GeoDiff).

use crate::MathError;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BetaSchedule {
    #[default]
    Linear,
    ScaledLinear,
    Cosine,
    Sigmoid,
}

impl BetaSchedule {
    pub const NAMES: &'static str = "linear, scaled-linear, cosine, sigmoid";
    pub const ALL: [BetaSchedule; 4] = [
        BetaSchedule::Linear,
        BetaSchedule::ScaledLinear,
        BetaSchedule::Cosine,
        BetaSchedule::Sigmoid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled-linear",
            BetaSchedule::Cosine => "cosine",
            BetaSchedule::Sigmoid => "sigmoid",
        }
    }

    /// The default (β_start, β_end) of the schedule; unused by cosine.
    pub fn default_range(self) -> (f64, f64) {
        match self {
            BetaSchedule::ScaledLinear => (0.00085, 0.012),
            _ => (1e-4, 0.02),
        }
    }
}

impl fmt::Display for BetaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BetaSchedule {
    type Err = MathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled-linear" | "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "cosine" | "squaredcos_cap_v2" => Ok(BetaSchedule::Cosine),
            "sigmoid" => Ok(BetaSchedule::Sigmoid),
            _ => Err(MathError::Unknown {
                kind: "schedule",
                value: s.to_string(),
                expected: Self::NAMES,
            }),
        }
    }
}

/// `n` evenly spaced values from `a` to `b` inclusive, as numpy/torch `linspace`.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect(),
    }
}

/// The most training timesteps a schedule may have (published models use 1000 to 4000); a config naming
/// more is refused rather than allocated.
pub const MAX_TIMESTEPS: usize = 100_000;

/// A discrete schedule with its cumulative products, indexed by train timestep 0..T.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    pub kind: BetaSchedule,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    pub fn new(kind: BetaSchedule, timesteps: usize, beta_start: f64, beta_end: f64) -> Result<Self, MathError> {
        if !(2..=MAX_TIMESTEPS).contains(&timesteps) {
            return Err(MathError::Invalid(format!(
                "timesteps must be between 2 and {MAX_TIMESTEPS}, got {timesteps}"
            )));
        }
        if kind != BetaSchedule::Cosine && !(beta_start > 0.0 && beta_start <= beta_end && beta_end < 1.0) {
            return Err(MathError::Invalid(format!(
                "need 0 < beta-start <= beta-end < 1, got {beta_start} and {beta_end}"
            )));
        }
        let t = timesteps;
        let betas = match kind {
            BetaSchedule::Linear => linspace(beta_start, beta_end, t),
            BetaSchedule::ScaledLinear => linspace(beta_start.sqrt(), beta_end.sqrt(), t)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::Cosine => {
                let abar = |s: f64| ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..t)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - abar(t2) / abar(t1)).min(0.999)
                    })
                    .collect()
            }
            BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t)
                .into_iter()
                .map(|x| 1.0 / (1.0 + (-x).exp()) * (beta_end - beta_start) + beta_start)
                .collect(),
        };
        Ok(Self::from_betas(kind, betas))
    }

    /// The schedule with its default β range.
    pub fn with_defaults(kind: BetaSchedule, timesteps: usize) -> Result<Self, MathError> {
        let (a, b) = kind.default_range();
        Self::new(kind, timesteps, a, b)
    }

    /// The schedule rescaled to zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and
    /// Sample Steps are Flawed", Algorithm 1): √ᾱ shifted so that its last value is 0 and scaled so that its
    /// first is kept, then β recomputed; the last step is pure noise (β_T = 1). Models trained on it need
    /// v or x₀ prediction (ε says nothing about x₀ where α = 0).
    pub fn rescaled_to_zero_terminal_snr(self) -> Self {
        let roots: Vec<f64> = self.alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let (first, last) = (roots[0], roots[roots.len() - 1]);
        let abar: Vec<f64> = roots
            .iter()
            .map(|r| ((r - last) * first / (first - last)).powi(2))
            .collect();
        let betas = abar
            .iter()
            .enumerate()
            .map(|(i, &a)| 1.0 - a / if i == 0 { 1.0 } else { abar[i - 1] })
            .collect();
        Self::from_betas(self.kind, betas)
    }

    /// A schedule of explicit β values (diffusers' `trained_betas`), each in (0, 1); `kind` only names it.
    pub fn from_trained_betas(kind: BetaSchedule, betas: Vec<f64>) -> Result<Self, MathError> {
        if !(2..=MAX_TIMESTEPS).contains(&betas.len()) {
            return Err(MathError::Invalid(format!(
                "trained betas: between 2 and {MAX_TIMESTEPS} values, got {}",
                betas.len()
            )));
        }
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b < 1.0)) {
            return Err(MathError::Invalid(format!("trained beta {i} is {b}, not in (0, 1)")));
        }
        Ok(Self::from_betas(kind, betas))
    }

    fn from_betas(kind: BetaSchedule, betas: Vec<f64>) -> Self {
        let alphas_cumprod = betas
            .iter()
            .scan(1.0, |acc, b| {
                *acc *= 1.0 - b;
                Some(*acc)
            })
            .collect();
        Self {
            kind,
            betas,
            alphas_cumprod,
        }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// ᾱ at train step t; ᾱ = 1 before the first step (t < 0), DDIM's `set_alpha_to_one`.
    pub fn alpha_bar(&self, t: i64) -> f64 {
        if t < 0 { 1.0 } else { self.alphas_cumprod[t as usize] }
    }

    /// The (fractional) train timestep whose ᾱ equals `alpha_bar`, interpolating log ᾱ linearly between
    /// neighbours and clamping to [0, T − 1]: how a model trained on this schedule is asked about any noise
    /// level (the VP correspondence used by the SDE samplers).
    pub fn timestep_of(&self, alpha_bar: f64) -> f64 {
        let a = &self.alphas_cumprod;
        if alpha_bar >= a[0] {
            return 0.0;
        }
        if alpha_bar <= a[a.len() - 1] {
            return (a.len() - 1) as f64;
        }
        // ᾱ decreases: the first index with ᾱ < alpha_bar.
        let hi = a.partition_point(|&v| v >= alpha_bar);
        let lo = hi - 1;
        let (la, lb, lx) = (a[lo].ln(), a[hi].ln(), alpha_bar.ln());
        lo as f64 + (la - lx) / (la - lb)
    }

    /// log-SNR λ_t = log(ᾱ / (1 − ᾱ)).
    pub fn log_snr(&self, t: usize) -> f64 {
        let a = self.alphas_cumprod[t];
        (a / (1.0 - a)).ln()
    }

    /// Coefficients of the true posterior q(x_{t−1} | x_t, x₀) = N(c₀·x₀ + c_t·x_t, σ²) (Ho et al. eq. 6–7).
    pub fn posterior(&self, t: usize) -> Posterior {
        let abar = self.alphas_cumprod[t];
        let abar_prev = self.alpha_bar(t as i64 - 1);
        let beta = self.betas[t];
        Posterior {
            coef_x0: abar_prev.sqrt() * beta / (1.0 - abar),
            coef_xt: (1.0 - beta).sqrt() * (1.0 - abar_prev) / (1.0 - abar),
            variance_small: (1.0 - abar_prev) / (1.0 - abar) * beta,
            variance_large: beta,
        }
    }
}

/// DDPM posterior mean coefficients and the two classic variance choices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Posterior {
    pub coef_x0: f64,
    pub coef_xt: f64,
    /// β̃_t, the true posterior variance ("fixed small").
    pub variance_small: f64,
    /// β_t ("fixed large"), the upper bound of Ho et al.
    pub variance_large: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_terminal_snr_keeps_the_first_level_and_ends_at_pure_noise() {
        let s = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
        let z = s.clone().rescaled_to_zero_terminal_snr();
        assert!((z.alphas_cumprod[0] - s.alphas_cumprod[0]).abs() < 1e-12);
        assert!(z.alphas_cumprod[999].abs() < 1e-20 && (z.betas[999] - 1.0).abs() < 1e-12);
        // √ᾱ is an affine map of the original's: the same shape, shifted down to 0 (Lin et al., Algorithm 1).
        let (r, q) = (
            |t: usize| s.alphas_cumprod[t].sqrt(),
            |t: usize| z.alphas_cumprod[t].sqrt(),
        );
        let k = (q(0) - q(500)) / (r(0) - r(500));
        assert!(((q(0) - q(800)) / (r(0) - r(800)) - k).abs() < 1e-9);
        assert!(z.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(z.timestep_of(0.0), 999.0);
    }
}
