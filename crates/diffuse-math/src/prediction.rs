//! What a network predicts, and how its output converts to (x̂₀, ε̂) at noise level ᾱ.
//! With x_t = √ᾱ x₀ + √(1−ᾱ) ε and v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022):
//! - ε:  x̂₀ = (x − √(1−ᾱ) ε̂)/√ᾱ
//! - x₀: ε̂ = (x − √ᾱ x̂₀)/√(1−ᾱ)
//! - v:  x̂₀ = √ᾱ x − √(1−ᾱ) v̂,  ε̂ = √(1−ᾱ) x + √ᾱ v̂

use crate::MathError;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Prediction {
    #[default]
    Eps,
    X0,
    V,
}

/// y = x_coef · x + out_coef · output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub x_coef: f64,
    pub out_coef: f64,
}

impl Prediction {
    pub const NAMES: &'static str = "eps, x0, v";

    pub fn name(self) -> &'static str {
        match self {
            Prediction::Eps => "eps",
            Prediction::X0 => "x0",
            Prediction::V => "v",
        }
    }

    /// The training target as (coefficient of x₀, coefficient of ε).
    pub fn target(self, alpha_bar: f64) -> (f64, f64) {
        match self {
            Prediction::Eps => (0.0, 1.0),
            Prediction::X0 => (1.0, 0.0),
            Prediction::V => (-(1.0 - alpha_bar).sqrt(), alpha_bar.sqrt()),
        }
    }

    /// (x̂₀, ε̂) as affine maps of (x_t, network output).
    pub fn to_x0_eps(self, alpha_bar: f64) -> (Affine, Affine) {
        let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        let aff = |x_coef, out_coef| Affine { x_coef, out_coef };
        match self {
            Prediction::Eps => (aff(1.0 / a, -s / a), aff(0.0, 1.0)),
            Prediction::X0 => (aff(0.0, 1.0), aff(1.0 / s, -a / s)),
            Prediction::V => (aff(a, -s), aff(s, a)),
        }
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Prediction {
    type Err = MathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "eps" | "epsilon" => Ok(Prediction::Eps),
            "x0" | "sample" => Ok(Prediction::X0),
            "v" | "v_prediction" => Ok(Prediction::V),
            _ => Err(MathError::Unknown {
                kind: "prediction",
                value: s.into(),
                expected: Self::NAMES,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameterisation_recovers_x0_and_eps_from_its_target() {
        let (x0, eps) = (0.37, -1.3);
        for p in [Prediction::Eps, Prediction::X0, Prediction::V] {
            for abar in [0.9999f64, 0.5, 0.01] {
                let x = abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps;
                let (cx, ce) = p.target(abar);
                let out = cx * x0 + ce * eps;
                let (fx0, feps) = p.to_x0_eps(abar);
                assert!((fx0.x_coef * x + fx0.out_coef * out - x0).abs() < 1e-9, "{p} {abar}");
                assert!((feps.x_coef * x + feps.out_coef * out - eps).abs() < 1e-9, "{p} {abar}");
            }
        }
    }
}
