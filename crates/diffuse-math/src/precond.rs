//! How a network's input, output and training target relate to (x₀, ε) at a noise level x = α·x₀ + σ·ε:
//! EDM's "preconditioning" (Karras et al. 2022, Table 1), generalised so that one denoiser and one training
//! loop serve every objective:
//! - [`Precond::Vp`]: the network sees x at the variance-preserving level of the same SNR and predicts ε, x₀
//!   or v (DDPM, score SDEs).
//! - [`Precond::Edm`]: the network sees c_in·x/α and outputs F; D(x) = c_skip·x/α + c_out·F with
//!   c_skip = σ_d²/(s² + σ_d²), c_out = s·σ_d/√(s² + σ_d²), c_in = 1/√(s² + σ_d²), s = σ/α; the target
//!   (x₀ − c_skip·x/α)/c_out, unweighted, is EDM's loss with λ(σ) = 1/c_out².
//! - [`Precond::Flow`]: rectified flow / flow matching (Liu et al. 2022, Lipman et al. 2022): the network sees
//!   x at the level (1 − t, t) of the same SNR, t = σ/(α + σ), and predicts the velocity v = ε − x₀.
//!
//! Every map is invariant to scaling (α, σ, x) together, so a sampler may ask at any process's level.

use crate::level::Level;
use crate::prediction::{Affine, Prediction};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Precond {
    Vp(Prediction),
    Edm { sigma_data: f64 },
    Flow,
}

/// The network input is `input`·x; (x̂₀, ε̂) are affine in (x, output); the training target is
/// `target.0`·x₀ + `target.1`·ε.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefs {
    pub input: f64,
    pub x0: Affine,
    pub eps: Affine,
    pub target: (f64, f64),
}

impl Precond {
    /// The coefficients at `level` (σ > 0; EDM also needs α > 0, flow and v-prediction do not).
    pub fn coefs(&self, level: Level) -> Coefs {
        let Level { alpha: a, sigma: s } = level;
        let aff = |x_coef, out_coef| Affine { x_coef, out_coef };
        match *self {
            Precond::Vp(p) => {
                let k = 1.0 / (a * a + s * s).sqrt();
                let (fx0, feps) = p.to_x0_eps(level.alpha_bar());
                Coefs {
                    input: k,
                    x0: aff(fx0.x_coef * k, fx0.out_coef),
                    eps: aff(feps.x_coef * k, feps.out_coef),
                    target: p.target(level.alpha_bar()),
                }
            }
            Precond::Edm { sigma_data: sd } => {
                let r = s / a;
                let n2 = r * r + sd * sd;
                let c_skip = sd * sd / n2;
                let c_out = r * sd / n2.sqrt();
                Coefs {
                    input: 1.0 / (n2.sqrt() * a),
                    x0: aff(c_skip / a, c_out),
                    // ε̂ = (x − α·x̂₀)/σ.
                    eps: aff((1.0 - c_skip) / s, -c_out * a / s),
                    target: ((1.0 - c_skip) / c_out, -c_skip * r / c_out),
                }
            }
            Precond::Flow => {
                let k = 1.0 / (a + s);
                let t = s * k;
                Coefs {
                    input: k,
                    x0: aff(k, -t),
                    eps: aff(k, 1.0 - t),
                    target: (-1.0, 1.0),
                }
            }
        }
    }

    /// Min-SNR-γ loss weight (Hang et al. 2023) at `level` for what the network predicts: min(SNR, γ) on the
    /// x₀ error, the same expressed on the ε error (÷ SNR) or the v error (÷ (SNR + 1)). EDM and flow have
    /// their own weighting built in (1 here).
    pub fn min_snr_weight(&self, level: Level, gamma: f64) -> f64 {
        let snr = (level.alpha / level.sigma).powi(2);
        match self {
            Precond::Vp(Prediction::Eps) => snr.min(gamma) / snr,
            Precond::Vp(Prediction::X0) => snr.min(gamma),
            Precond::Vp(Prediction::V) => snr.min(gamma) / (snr + 1.0),
            Precond::Edm { .. } | Precond::Flow => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Precond; 5] = [
        Precond::Vp(Prediction::Eps),
        Precond::Vp(Prediction::X0),
        Precond::Vp(Prediction::V),
        Precond::Edm { sigma_data: 0.5 },
        Precond::Flow,
    ];

    #[test]
    fn the_target_as_output_recovers_x0_and_eps_at_any_scaling() {
        let (x0, eps) = (0.37, -1.3);
        for p in ALL {
            for level in [
                Level::vp(0.9999),
                Level::vp(0.3),
                Level {
                    alpha: 1.0,
                    sigma: 80.0,
                },
                Level { alpha: 0.7, sigma: 0.3 },
            ] {
                for k in [1.0, 0.25, 3.0] {
                    let l = Level {
                        alpha: level.alpha * k,
                        sigma: level.sigma * k,
                    };
                    let x = l.alpha * x0 + l.sigma * eps;
                    let c = p.coefs(l);
                    let out = c.target.0 * x0 + c.target.1 * eps;
                    let got = |a: Affine| a.x_coef * x + a.out_coef * out;
                    assert!((got(c.x0) - x0).abs() < 1e-9, "{p:?} {l:?}");
                    assert!((got(c.eps) - eps).abs() < 1e-9, "{p:?} {l:?}");
                    // The network sees the same input whatever the scaling.
                    let base = p.coefs(level).input * (level.alpha * x0 + level.sigma * eps);
                    assert!((c.input * x - base).abs() < 1e-9, "{p:?}");
                }
            }
        }
    }

    #[test]
    fn edm_is_the_papers_table_and_v_prediction_when_sigma_data_is_one() {
        // Karras et al. 2022, Table 1, on the VE level (α = 1): c_in = 1/√(σ² + σ_d²), the target
        // (x₀ − c_skip·x)/c_out with x = x₀ + σε.
        let (sd, sigma) = (0.5, 2.0);
        let c = Precond::Edm { sigma_data: sd }.coefs(Level { alpha: 1.0, sigma });
        let c_skip = sd * sd / (sigma * sigma + sd * sd);
        let c_out = sigma * sd / (sigma * sigma + sd * sd).sqrt();
        assert!((c.input - 1.0 / (sigma * sigma + sd * sd).sqrt()).abs() < 1e-12);
        assert!((c.x0.x_coef - c_skip).abs() < 1e-12 && (c.x0.out_coef - c_out).abs() < 1e-12);
        // With σ_d = 1 the network sees the VP input and its target is −v.
        let l = Level::vp(0.4);
        let (e, v) = (
            Precond::Edm { sigma_data: 1.0 }.coefs(l),
            Precond::Vp(Prediction::V).coefs(l),
        );
        assert!((e.input - v.input).abs() < 1e-12);
        assert!((e.target.0 + v.target.0).abs() < 1e-12 && (e.target.1 + v.target.1).abs() < 1e-12);
    }

    #[test]
    fn flow_works_at_pure_noise_and_its_velocity_is_eps_minus_x0() {
        // t = 1: α = 0, the network sees x = ε and x̂₀ = x − v.
        let c = Precond::Flow.coefs(Level { alpha: 0.0, sigma: 1.0 });
        assert_eq!((c.input, c.x0.x_coef, c.x0.out_coef), (1.0, 1.0, -1.0));
        assert_eq!(c.target, (-1.0, 1.0));
        let v = Precond::Vp(Prediction::V).coefs(Level { alpha: 0.0, sigma: 1.0 });
        assert_eq!((v.x0.x_coef, v.x0.out_coef), (0.0, -1.0));
    }

    #[test]
    fn min_snr_weights_clip_the_x0_weight_at_gamma() {
        let gamma = 5.0;
        for ab in [0.99, 0.5, 0.01] {
            let l = Level::vp(ab);
            let snr = ab / (1.0 - ab);
            let on_x0 = |p: Prediction| {
                // The x₀ error is (∂x̂₀/∂out)·(output error): weight × coefficient² is the x₀-space weight.
                let c = Precond::Vp(p).coefs(l);
                Precond::Vp(p).min_snr_weight(l, gamma) / (c.x0.out_coef * c.x0.out_coef)
            };
            for p in [Prediction::Eps, Prediction::X0, Prediction::V] {
                assert!((on_x0(p) - snr.min(gamma)).abs() < 1e-9 * snr.max(1.0), "{p} {ab}");
            }
        }
    }
}
