//! The forward process q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I), shared by training and editing.

use burn::prelude::*;

/// x_t = √ᾱ x₀ + √(1−ᾱ) ε with one ᾱ per batch item.
pub fn add_noise(x0: Tensor<4>, eps: Tensor<4>, alpha_bar: &[f64]) -> Tensor<4> {
    let (a, s) = per_item(alpha_bar, &x0.device(), |ab| (ab.sqrt(), (1.0 - ab).sqrt()));
    x0 * a + eps * s
}

/// Two [b, 1, 1, 1] coefficient tensors from one function of each item's ᾱ.
pub fn per_item(alpha_bar: &[f64], device: &Device, f: impl Fn(f64) -> (f64, f64)) -> (Tensor<4>, Tensor<4>) {
    let b = alpha_bar.len();
    let (p, q): (Vec<f32>, Vec<f32>) = alpha_bar
        .iter()
        .map(|&ab| {
            let (p, q) = f(ab);
            (p as f32, q as f32)
        })
        .unzip();
    let make = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, 1, 1, 1]), device);
    (make(p), make(q))
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
        let xt: Vec<f32> = add_noise(x0, eps, &ab).into_data().try_into_vec().unwrap();
        for (i, &abar) in ab.iter().enumerate() {
            let v = &xt[i * n..(i + 1) * n];
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - 0.5 * abar.sqrt()).abs() < 0.02, "mean {mean}");
            assert!((var - (1.0 - abar)).abs() < 0.03, "var {var}");
        }
    }
}
