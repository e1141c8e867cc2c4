//! The forward process x = α·x₀ + σ·ε at one noise level per batch item, as training draws it.

use burn::prelude::*;
use diffuse_math::Level;

/// x = α x₀ + σ ε with one level per batch item.
pub fn add_noise(x0: Tensor<4>, eps: Tensor<4>, levels: &[Level]) -> Tensor<4> {
    let device = x0.device();
    x0 * column(levels.iter().map(|l| l.alpha), &device) + eps * column(levels.iter().map(|l| l.sigma), &device)
}

/// A [b, 1, 1, 1] column of per-item values, to scale a batch item by item.
pub fn column(values: impl Iterator<Item = f64>, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = values.map(|x| x as f32).collect();
    let b = v.len();
    Tensor::<4>::from_data(TensorData::new(v, [b, 1, 1, 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_math::{BetaSchedule, NoiseSchedule};

    #[test]
    fn forward_marginal_has_closed_form_moments() {
        // x₀ = 0.5 everywhere: x_t must have mean √ᾱ·0.5 and variance 1 − ᾱ.
        let device = crate::device::device();
        let s = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
        let n = 20_000;
        let noise = crate::rng::normals(&mut crate::rng::stream(3, 0), 2 * n);
        let x0 = Tensor::<4>::full([2, 1, 1, n], 0.5, &device);
        let eps = Tensor::<4>::from_data(TensorData::new(noise, [2, 1, 1, n]), &device);
        let ab = [s.alphas_cumprod[100], s.alphas_cumprod[900]];
        let levels = ab.map(Level::vp);
        let xt: Vec<f32> = add_noise(x0, eps, &levels).into_data().try_into_vec().unwrap();
        for (i, &abar) in ab.iter().enumerate() {
            let v = &xt[i * n..(i + 1) * n];
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - 0.5 * abar.sqrt()).abs() < 0.02, "mean {mean}");
            assert!((var - (1.0 - abar)).abs() < 0.03, "var {var}");
        }
    }
}
