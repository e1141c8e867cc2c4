//! A small CNN classifier for measuring samples: three 3×3 convolutions (two of stride 2), SiLU, global
//! average pooling and a linear head. Works at any image size.

use crate::kernels::conv2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::silu;

#[derive(Module, Debug)]
pub struct ClassifierNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    head: Linear,
}

impl ClassifierNet {
    pub fn new(channels: usize, classes: usize, device: &Device) -> Self {
        let conv = |cin, cout, stride| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(channels, 32, 1),
            conv2: conv(32, 64, 2),
            conv3: conv(64, 128, 2),
            head: LinearConfig::new(128, classes).init(device),
        }
    }

    /// Logits [b, classes] for images [b, c, h, w] in [-1, 1].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits(self.features(x))
    }

    /// Logits from pooled features.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// The pooled 128-d features [b, 128] under the head: the space of the classifier-feature FID.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = silu(conv2d(&self.conv1, x));
        let h = silu(conv2d(&self.conv2, h));
        let h = silu(conv2d(&self.conv3, h));
        let [b, c, _, _] = h.dims();
        h.mean_dims(&[2, 3]).reshape([b, c])
    }
}
