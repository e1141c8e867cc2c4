//! An MLP noise predictor for low-dimensional data (point clouds): the point's coordinates in, a hidden
//! state shifted by the time embedding at every layer, the same number of coordinates out. Points travel as
//! [b, d, 1, 1] tensors, so every sampler and the training loop treat them like 1×1 images of d channels.
//! Optionally the coordinates enter with Fourier features (sin and cos of 2^k·π·x for k < K, beside x itself;
//! Tancik et al. 2020): an MLP of raw low-dimensional coordinates is slow to learn thin structures.

use super::unet::TimeEmbedding;
use crate::{Error, Result};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Coordinates per point.
    pub dim: usize,
    pub hidden: usize,
    pub layers: usize,
    /// K, octaves of Fourier features of the coordinates (0: the coordinates alone).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fourier: usize,
}

fn is_zero(k: &usize) -> bool {
    *k == 0
}

/// The most octaves: 2^16·π already aliases at f32's resolution of unit-scale coordinates.
const MAX_FOURIER: usize = 16;

impl MlpConfig {
    pub fn for_points(dim: usize) -> Self {
        Self {
            dim,
            hidden: 256,
            layers: 4,
            fourier: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let (size, depth) = (super::MAX_SIZE, super::MAX_DEPTH);
        super::check_sizes(
            "MLP",
            &[
                ("dim", self.dim, size),
                ("hidden", self.hidden, size),
                ("layers", self.layers, depth),
            ],
        )?;
        if self.dim == 0 || self.hidden < 2 || self.layers == 0 || !self.hidden.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "MLP needs dim ≥ 1, an even hidden width ≥ 2 and ≥ 1 layer (got {self:?})"
            )));
        }
        if self.fourier > MAX_FOURIER {
            return Err(Error::Config(format!(
                "MLP Fourier features: at most {MAX_FOURIER} octaves, got {}",
                self.fourier
            )));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    time: TimeEmbedding,
    /// Octaves of Fourier features of the input.
    fourier: usize,
    input: Linear,
    layers: Vec<Linear>,
    shifts: Vec<Linear>,
    output: Linear,
}

impl Mlp {
    pub fn new(cfg: &MlpConfig, device: &Device) -> Self {
        let h = cfg.hidden;
        Self {
            time: TimeEmbedding::new(h, h, device),
            fourier: cfg.fourier,
            input: LinearConfig::new(cfg.dim * (1 + 2 * cfg.fourier), h).init(device),
            layers: (0..cfg.layers).map(|_| LinearConfig::new(h, h).init(device)).collect(),
            shifts: (0..cfg.layers).map(|_| LinearConfig::new(h, h).init(device)).collect(),
            output: LinearConfig::new(h, cfg.dim)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// x beside sin(2^k·π·x) and cos(2^k·π·x) for each octave k: [b, d·(1 + 2K)].
    fn features(&self, x: Tensor<2>) -> Tensor<2> {
        let mut parts = vec![x.clone()];
        for k in 0..self.fourier {
            let scaled = x.clone().mul_scalar(std::f64::consts::PI * (1u64 << k) as f64);
            parts.push(scaled.clone().sin());
            parts.push(scaled.cos());
        }
        Tensor::cat(parts, 1)
    }

    /// `x`: [b, d, 1, 1] points; `t`: [b] time inputs.
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let [b, d, h, w] = x.dims();
        let temb = silu(self.time.forward(t));
        let x = x.reshape([b, d * h * w]);
        let mut hs = self.input.forward(self.features(x));
        for (layer, shift) in self.layers.iter().zip(&self.shifts) {
            hs = silu(layer.forward(hs) + shift.forward(temb.clone()));
        }
        self.output.forward(hs).reshape([b, d, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourier_features_widen_the_input_and_configs_without_them_read_as_before() {
        let device = crate::device::device();
        let old: MlpConfig = serde_json::from_str(r#"{"dim": 2, "hidden": 8, "layers": 1}"#).unwrap();
        assert_eq!(
            old,
            MlpConfig {
                hidden: 8,
                layers: 1,
                ..MlpConfig::for_points(2)
            }
        );
        assert!(
            !serde_json::to_string(&old).unwrap().contains("fourier"),
            "written as before"
        );
        let cfg = MlpConfig { fourier: 3, ..old };
        let net = Mlp::new(&cfg, &device);
        let x = Tensor::<2>::from_floats([[0.5, -0.25]], &device);
        let f: Vec<f32> = net.features(x).into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(f.len(), 2 * 7);
        // [x, sin πx, cos πx, sin 2πx, cos 2πx, sin 4πx, cos 4πx] for x = 0.5, −0.25.
        let pi = std::f32::consts::PI;
        let want = [
            0.5,
            -0.25,
            1.0,
            -(pi / 4.0).sin(),
            0.0,
            (pi / 4.0).cos(),
            0.0,
            -1.0,
            -1.0,
            0.0,
            0.0,
            0.0,
            1.0,
            -1.0,
        ];
        for (g, w) in f.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{f:?}");
        }
        let out = net.forward(
            Tensor::<4>::zeros([3, 2, 1, 1], &device),
            Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device),
        );
        assert_eq!(out.dims(), [3, 2, 1, 1]);
        let e = MlpConfig { fourier: 17, ..cfg }.validate().unwrap_err().to_string();
        assert!(e.contains("at most 16"), "{e}");
    }
}
