//! Exact 1-D targets for testing samplers: a Gaussian N(m, s²) and a mixture Σ w_k N(μ_k, s²), with their
//! exact denoisers' ingredients, CDFs, quantiles, and the 1-Wasserstein distance of a sample to them.

use crate::MathError;

/// A 1-D data distribution with a closed-form posterior mean E[x₀ | x = αx₀ + σε].
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub means: Vec<f64>,
    pub weights: Vec<f64>,
    pub std: f64,
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

impl Target {
    pub fn gaussian(mean: f64, std: f64) -> Result<Target, MathError> {
        Target::mixture(vec![mean], vec![1.0], std)
    }

    /// A mixture; weights are normalised to sum to one.
    pub fn mixture(means: Vec<f64>, weights: Vec<f64>, std: f64) -> Result<Target, MathError> {
        if means.is_empty() || means.len() != weights.len() {
            return Err(MathError::Invalid(format!(
                "need as many weights as means (got {} means, {} weights)",
                means.len(),
                weights.len()
            )));
        }
        if !(std > 0.0 && std.is_finite()) || weights.iter().any(|w| !(*w > 0.0 && w.is_finite())) {
            return Err(MathError::Invalid("std and weights must be positive and finite".into()));
        }
        let total: f64 = weights.iter().sum();
        Ok(Target {
            means,
            weights: weights.iter().map(|w| w / total).collect(),
            std,
        })
    }

    pub fn mean(&self) -> f64 {
        self.means.iter().zip(&self.weights).map(|(m, w)| m * w).sum()
    }

    pub fn std_dev(&self) -> f64 {
        let m = self.mean();
        let second: f64 = self
            .means
            .iter()
            .zip(&self.weights)
            .map(|(mu, w)| w * (self.std * self.std + mu * mu))
            .sum();
        (second - m * m).sqrt()
    }

    pub fn cdf(&self, x: f64) -> f64 {
        self.means
            .iter()
            .zip(&self.weights)
            .map(|(m, w)| w * normal_cdf((x - m) / self.std))
            .sum()
    }

    /// The p-quantile, by bisection on the CDF.
    pub fn quantile(&self, p: f64) -> f64 {
        let lo_m = self.means.iter().cloned().fold(f64::MAX, f64::min);
        let hi_m = self.means.iter().cloned().fold(f64::MIN, f64::max);
        let (mut lo, mut hi) = (lo_m - 40.0 * self.std, hi_m + 40.0 * self.std);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// The exact posterior mean E[x₀ | x] at level (α, σ), in f64 (the tensor denoiser computes the same).
    pub fn posterior_mean(&self, x: f64, alpha: f64, sigma: f64) -> f64 {
        let v = alpha * alpha * self.std * self.std + sigma * sigma;
        let logits: Vec<f64> = self
            .means
            .iter()
            .zip(&self.weights)
            .map(|(m, w)| w.ln() - (x - alpha * m).powi(2) / (2.0 * v))
            .collect();
        let top = logits.iter().cloned().fold(f64::MIN, f64::max);
        let r: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let z: f64 = r.iter().sum();
        let shrink = alpha * self.std * self.std / v;
        self.means
            .iter()
            .zip(&r)
            .map(|(m, ri)| ri / z * (m + shrink * (x - alpha * m)))
            .sum()
    }

    /// 1-Wasserstein distance ∫|F_n − F| dx of `samples` to the target, on a grid fine enough that its
    /// error is far below the sampling error of any sample size used here.
    pub fn w1(&self, samples: &[f64]) -> f64 {
        let mut xs: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if xs.len() != samples.len() || xs.is_empty() {
            return f64::INFINITY;
        }
        xs.sort_by(f64::total_cmp);
        let lo = xs[0].min(self.quantile(1e-10));
        let hi = xs[xs.len() - 1].max(self.quantile(1.0 - 1e-10));
        let m = 400_000;
        let dx = (hi - lo) / m as f64;
        let n = xs.len() as f64;
        let (mut k, mut total) = (0usize, 0.0);
        for i in 0..m {
            let x = lo + (i as f64 + 0.5) * dx;
            while k < xs.len() && xs[k] <= x {
                k += 1;
            }
            total += (k as f64 / n - self.cdf(x)).abs() * dx;
        }
        total
    }
}

/// Sample quantiles of `samples` at probabilities `ps` (linear interpolation, as numpy's default).
pub fn quantiles(samples: &[f64], ps: &[f64]) -> Vec<f64> {
    let mut xs = samples.to_vec();
    xs.sort_by(f64::total_cmp);
    ps.iter()
        .map(|&p| {
            let pos = p * (xs.len() - 1) as f64;
            let (i, f) = (pos.floor() as usize, pos.fract());
            xs[i] + f * (xs[(i + 1).min(xs.len() - 1)] - xs[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_cdf_and_quantiles() {
        let g = Target::gaussian(0.1, 0.8).unwrap();
        assert!((g.cdf(0.1) - 0.5).abs() < 1e-15);
        assert!((g.quantile(0.975) - (0.1 + 0.8 * 1.959963984540054)).abs() < 1e-9);
        let m = Target::mixture(vec![-1.0, 2.0], vec![1.0, 3.0], 0.5).unwrap();
        assert!((m.mean() - 1.25).abs() < 1e-12);
        assert!((m.std_dev() - (0.25f64 + 0.25 * 1.0 + 0.75 * 4.0 - 1.5625).sqrt()).abs() < 1e-12);
        assert!(Target::mixture(vec![0.0], vec![1.0, 2.0], 1.0).is_err());
        assert!(Target::gaussian(0.0, 0.0).is_err());
    }

    #[test]
    fn posterior_mean_of_a_gaussian_is_the_linear_shrinkage() {
        let g = Target::gaussian(0.3, 0.7).unwrap();
        let (a, s, x) = (0.6, 0.8, 1.1);
        let want = 0.3 + a * 0.49 / (a * a * 0.49 + s * s) * (x - a * 0.3);
        assert!((g.posterior_mean(x, a, s) - want).abs() < 1e-12);
        // At σ → 0 the posterior mean returns x/α.
        assert!((g.posterior_mean(0.5, 1.0, 1e-9) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn w1_of_exact_quantiles_is_tiny_and_of_a_shift_is_the_shift() {
        let g = Target::gaussian(0.0, 1.0).unwrap();
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| g.quantile((i as f64 + 0.5) / n as f64)).collect();
        assert!(g.w1(&xs) < 2e-3, "{}", g.w1(&xs));
        let shifted: Vec<f64> = xs.iter().map(|x| x + 0.25).collect();
        assert!((g.w1(&shifted) - 0.25).abs() < 3e-3);
        assert_eq!(quantiles(&[3.0, 1.0, 2.0], &[0.0, 0.5, 1.0]), vec![1.0, 2.0, 3.0]);
        assert!(g.w1(&[f64::NAN]).is_infinite());
    }
}
