//! An MLP noise predictor for low-dimensional data (point clouds): the point's coordinates in, a hidden
//! state shifted by the time embedding at every layer, the same number of coordinates out. Points travel as
//! [b, d, 1, 1] tensors, so every sampler and the training loop treat them like 1×1 images of d channels.

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
}

impl MlpConfig {
    pub fn for_points(dim: usize) -> Self {
        Self {
            dim,
            hidden: 256,
            layers: 4,
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
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    time: TimeEmbedding,
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
            input: LinearConfig::new(cfg.dim, h).init(device),
            layers: (0..cfg.layers).map(|_| LinearConfig::new(h, h).init(device)).collect(),
            shifts: (0..cfg.layers).map(|_| LinearConfig::new(h, h).init(device)).collect(),
            output: LinearConfig::new(h, cfg.dim)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// `x`: [b, d, 1, 1] points; `t`: [b] time inputs.
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let [b, d, h, w] = x.dims();
        let temb = silu(self.time.forward(t));
        let mut hs = self.input.forward(x.reshape([b, d * h * w]));
        for (layer, shift) in self.layers.iter().zip(&self.shifts) {
            hs = silu(layer.forward(hs) + shift.forward(temb.clone()));
        }
        self.output.forward(hs).reshape([b, d, h, w])
    }
}
