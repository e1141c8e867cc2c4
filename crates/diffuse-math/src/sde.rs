//! Continuous-time SDEs dx = f(x, t) dt + g(t) dw on t ∈ [0, 1] with linear drift f = a(t)·x (Song et al.
//! 2021, "Score-Based Generative Modeling through SDEs", §3.4 and appendix B):
//! - VP: f = −½β(t)x, g = √β(t), β(t) = β_min + t(β_max − β_min); the continuous limit of DDPM.
//! - sub-VP: same drift, g = √(β(t)(1 − e^{−2∫β})); its variance stays below VP's.
//! - VE: f = 0, g = σ(t)√(2 ln(σ_max/σ_min)), σ(t) = σ_min (σ_max/σ_min)^t (geometric); the limit of SMLD.

use crate::MathError;
use crate::level::Level;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sde {
    Vp { beta_min: f64, beta_max: f64 },
    SubVp { beta_min: f64, beta_max: f64 },
    Ve { sigma_min: f64, sigma_max: f64 },
}

impl Sde {
    pub const NAMES: &'static str = "vp, subvp, ve";

    pub fn vp() -> Sde {
        Sde::Vp {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }

    pub fn subvp() -> Sde {
        Sde::SubVp {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }

    pub fn ve() -> Sde {
        Sde::Ve {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sde::Vp { .. } => "vp",
            Sde::SubVp { .. } => "subvp",
            Sde::Ve { .. } => "ve",
        }
    }

    /// The smallest time samplers stop at (score_sde's sampling ε).
    pub fn t_min(&self) -> f64 {
        match self {
            Sde::Ve { .. } => 1e-5,
            _ => 1e-3,
        }
    }

    fn betas(&self) -> (f64, f64) {
        match *self {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => (beta_min, beta_max),
            Sde::Ve { .. } => (0.0, 0.0),
        }
    }

    /// β(t) (VP, sub-VP).
    pub fn beta(&self, t: f64) -> f64 {
        let (b0, b1) = self.betas();
        b0 + t * (b1 - b0)
    }

    /// ∫₀ᵗ β(s) ds.
    fn int_beta(&self, t: f64) -> f64 {
        let (b0, b1) = self.betas();
        b0 * t + 0.5 * (b1 - b0) * t * t
    }

    /// The drift coefficient a(t) in f(x, t) = a(t)·x.
    pub fn drift_coef(&self, t: f64) -> f64 {
        match self {
            Sde::Ve { .. } => 0.0,
            _ => -0.5 * self.beta(t),
        }
    }

    /// g(t).
    pub fn diffusion(&self, t: f64) -> f64 {
        match *self {
            Sde::Vp { .. } => self.beta(t).sqrt(),
            Sde::SubVp { .. } => (self.beta(t) * (1.0 - (-2.0 * self.int_beta(t)).exp())).sqrt(),
            Sde::Ve { sigma_min, sigma_max } => self.marginal(t).sigma * (2.0 * (sigma_max / sigma_min).ln()).sqrt(),
        }
    }

    /// The marginal x_t = α(t)·x₀ + σ(t)·ε.
    pub fn marginal(&self, t: f64) -> Level {
        match *self {
            Sde::Vp { .. } => {
                let alpha = (-0.5 * self.int_beta(t)).exp();
                Level {
                    alpha,
                    sigma: (1.0 - alpha * alpha).max(0.0).sqrt(),
                }
            }
            Sde::SubVp { .. } => {
                let alpha = (-0.5 * self.int_beta(t)).exp();
                Level {
                    alpha,
                    sigma: 1.0 - alpha * alpha,
                }
            }
            Sde::Ve { sigma_min, sigma_max } => Level {
                alpha: 1.0,
                sigma: sigma_min * (sigma_max / sigma_min).powf(t),
            },
        }
    }

    /// Standard deviation of the prior p_1 = N(0, s²) that sampling starts from.
    pub fn prior_std(&self) -> f64 {
        match *self {
            Sde::Ve { sigma_max, .. } => sigma_max,
            _ => 1.0,
        }
    }

    /// log p_1(x) summed over the values of x.
    pub fn prior_logp(&self, x: &[f64]) -> f64 {
        let s = self.prior_std();
        let n = x.len() as f64;
        -0.5 * n * (2.0 * std::f64::consts::PI * s * s).ln() - x.iter().map(|v| v * v).sum::<f64>() / (2.0 * s * s)
    }

    /// The exact Gaussian transition from `s` to `t > s`: x_t = a·x_s + √v·z, returned as (a, v).
    pub fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        self.marginal(t).transition_from(self.marginal(s))
    }

    /// The time whose marginal has the same signal-to-noise ratio as `level` (bisection; SNR falls with t).
    pub fn time_of(&self, level: Level) -> f64 {
        let target = level.alpha_bar();
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.marginal(mid).alpha_bar() > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

/// The name alone for the default parameters (as run configs have always stored it), else
/// `name:LO,HI` (β_min,β_max for vp and subvp, σ_min,σ_max for ve), which [`FromStr`] reads back.
impl fmt::Display for Sde {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default: Sde = self.name().parse().expect("own name");
        if *self == default {
            return f.write_str(self.name());
        }
        let (lo, hi) = match *self {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => (beta_min, beta_max),
            Sde::Ve { sigma_min, sigma_max } => (sigma_min, sigma_max),
        };
        write!(f, "{}:{lo},{hi}", self.name())
    }
}

impl FromStr for Sde {
    type Err = MathError;
    /// `vp`, `subvp`, `ve` with their defaults, or with parameters as `ve:0.002,80`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        let mut sde = match name {
            "vp" => Sde::vp(),
            "subvp" | "sub-vp" => Sde::subvp(),
            "ve" => Sde::ve(),
            _ => {
                return Err(MathError::Unknown {
                    kind: "SDE",
                    value: s.into(),
                    expected: "vp, subvp, ve (optionally with parameters, as ve:0.002,80 or vp:0.1,20)",
                });
            }
        };
        if let Some(p) = params {
            let bad = || MathError::Invalid(format!("SDE '{s}': expected {name}:LO,HI with 0 < LO < HI"));
            let (lo, hi) = p.split_once(',').ok_or_else(bad)?;
            let (lo, hi): (f64, f64) = (
                lo.trim().parse().map_err(|_| bad())?,
                hi.trim().parse().map_err(|_| bad())?,
            );
            if !(lo > 0.0 && lo < hi && hi.is_finite()) {
                return Err(bad());
            }
            sde = match sde {
                Sde::Vp { .. } => Sde::Vp {
                    beta_min: lo,
                    beta_max: hi,
                },
                Sde::SubVp { .. } => Sde::SubVp {
                    beta_min: lo,
                    beta_max: hi,
                },
                Sde::Ve { .. } => Sde::Ve {
                    sigma_min: lo,
                    sigma_max: hi,
                },
            };
        }
        Ok(sde)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// d/dt of the marginal variance must satisfy the SDE's moment equation dΣ/dt = 2aΣ + g² with Σ the
    /// variance of x_t for x₀ = 0, and dα/dt = a·α: checks drift, diffusion and marginals against each other.
    #[test]
    fn marginals_solve_the_moment_equations() {
        for sde in [Sde::vp(), Sde::subvp(), Sde::ve()] {
            for t in [0.05, 0.3, 0.7, 0.95] {
                let h = 1e-6;
                let (l0, l1) = (sde.marginal(t - h), sde.marginal(t + h));
                let dvar = (l1.sigma.powi(2) - l0.sigma.powi(2)) / (2.0 * h);
                let var = sde.marginal(t).sigma.powi(2);
                let want = 2.0 * sde.drift_coef(t) * var + sde.diffusion(t).powi(2);
                // VE's marginal omits the σ_min² at t = 0, as score_sde's does; the equation still holds.
                assert!(
                    (dvar - want).abs() < 1e-5 * want.abs().max(1.0),
                    "{sde} t={t}: {dvar} vs {want}"
                );
                let dalpha = (l1.alpha - l0.alpha) / (2.0 * h);
                assert!((dalpha - sde.drift_coef(t) * sde.marginal(t).alpha).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn vp_is_the_limit_of_the_ddpm_linear_schedule() {
        // β_i = β(t)/T for T = 1000 reproduces ᾱ of the DDPM schedule up to the second-order term Σβ²/2 of
        // log ∏(1 − β) (≈ 0.07 at the end).
        let s = crate::NoiseSchedule::with_defaults(crate::BetaSchedule::Linear, 1000).unwrap();
        let sde = Sde::vp();
        for i in [10usize, 300, 999] {
            let t = (i + 1) as f64 / 1000.0;
            let ab = sde.marginal(t).alpha_bar();
            let gap = (ab.ln() - s.alphas_cumprod[i].ln()).abs();
            assert!(gap < 0.08, "{i}: {ab} vs {}", s.alphas_cumprod[i]);
        }
    }

    #[test]
    fn time_of_inverts_the_marginal_and_transitions_compose() {
        for sde in [Sde::vp(), Sde::subvp(), Sde::ve()] {
            for t in [0.01, 0.5, 0.99] {
                assert!((sde.time_of(sde.marginal(t)) - t).abs() < 1e-9, "{sde}");
            }
            let (a1, v1) = sde.transition(0.2, 0.5);
            let (a2, v2) = sde.transition(0.5, 0.8);
            let (a, v) = sde.transition(0.2, 0.8);
            assert!(
                (a1 * a2 - a).abs() < 1e-12 && (a2 * a2 * v1 + v2 - v).abs() < 1e-9,
                "{sde}"
            );
        }
        assert_eq!(Sde::ve().marginal(1.0).sigma, 50.0);
        assert!((Sde::ve().marginal(0.0).sigma - 0.01).abs() < 1e-15);
        assert!("ve2".parse::<Sde>().is_err());
    }

    #[test]
    fn parameters_round_trip_through_the_name() {
        let edm: Sde = "ve:0.002,80".parse().unwrap();
        assert_eq!(
            edm,
            Sde::Ve {
                sigma_min: 0.002,
                sigma_max: 80.0
            }
        );
        assert_eq!(edm.to_string(), "ve:0.002,80");
        assert!((edm.marginal(1.0).sigma - 80.0).abs() < 1e-9);
        assert_eq!(Sde::vp().to_string(), "vp");
        assert_eq!("subvp:0.1,20".parse::<Sde>().unwrap().to_string(), "subvp");
        for bad in ["ve:80,0.002", "ve:0,1", "vp:1", "vp:a,b", "ve:1,inf"] {
            assert!(bad.parse::<Sde>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prior_log_density_is_the_gaussian_one() {
        let lp = Sde::ve().prior_logp(&[0.0, 50.0]);
        let one = |x: f64| -0.5 * (2.0 * std::f64::consts::PI * 2500.0).ln() - x * x / 5000.0;
        assert!((lp - one(0.0) - one(50.0)).abs() < 1e-12);
    }
}
