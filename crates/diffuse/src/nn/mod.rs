//! Networks: the UNet (images) and the MLP (points) noise predictors, the latent-diffusion VAE, and the small
//! evaluation classifier.

pub mod classifier_net;
pub mod clip;
pub mod dual;
pub mod inception;
pub mod lpips;
pub mod mlp;
pub mod transformer;
pub mod unet;
pub mod vae;

use crate::Result;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
pub use mlp::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
pub use unet::{UNet, UNetConfig};
pub use vae::{Vae, VaeConfig};

/// The largest size (channels, image side, classes, heads, groups) a network config may name: far above any
/// model here, and small enough that products of a few sizes cannot overflow.
pub const MAX_SIZE: usize = 1 << 16;
/// The most resolution levels (each halves the image) and blocks per level a config may name.
pub const MAX_DEPTH: usize = 16;

/// Refuses a config naming a size above its limit (a hostile or mistyped file), before any other check
/// computes with it. Each entry is (name, value, limit).
pub(crate) fn check_sizes(what: &str, sizes: &[(&str, usize, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, v, max)| v > max) {
        Some((name, v, max)) => Err(crate::Error::Config(format!(
            "{what} {name} {v} is above the limit of {max}"
        ))),
        None => Ok(()),
    }
}

/// Scaled dot-product attention of heads laid out [b, heads, n, d]: softmax(q kᵀ/√d + mask) v, the one
/// attention of the UNet's self-attention, the spatial transformer and CLIP.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4>>) -> Tensor<4> {
    attention_in_blocks(q, k, v, mask, MAX_SCORES)
}

/// The most attention scores held at once (16 MB of f32). Stable Diffusion's 64×64 latents attend over 4,096
/// pixels with 8 heads: half a gigabyte of scores per image, which the allocator maps, zeroes and returns on every
/// call; blocks of queries this small are reused from the heap instead.
const MAX_SCORES: usize = 1 << 22;

/// [`attention`], its queries taken in blocks whose scores hold at most `max_scores` entries (without a mask:
/// the masked callers, CLIP's text, attend over 77 tokens).
fn attention_in_blocks(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4>>,
    max_scores: usize,
) -> Tensor<4> {
    let ([b, h, n, d], m) = (q.dims(), k.dims()[2]);
    let rows = (max_scores / (b * h * m).max(1)).max(1);
    if mask.is_some() || rows >= n {
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
        let scores = match mask {
            Some(m) => scores + m,
            None => scores,
        };
        return burn::tensor::activation::softmax(scores, 3).matmul(v);
    }
    let blocks = (0..n)
        .step_by(rows)
        .map(|i| {
            let block = q.clone().slice([0..b, 0..h, i..(i + rows).min(n), 0..d]);
            attention_in_blocks(block, k.clone(), v.clone(), None, usize::MAX)
        })
        .collect();
    Tensor::cat(blocks, 2)
}

/// The largest group count ≤ `max` that divides `channels` (GroupNorm needs an exact split).
pub fn groups_for(channels: usize, max: usize) -> usize {
    (1..=max.min(channels))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

/// How a network builds its GroupNorms: at most `max_groups` groups, and ε.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Norm {
    pub max_groups: usize,
    pub eps: f64,
}

impl Norm {
    /// burn's default ε, which the UNet and the VAEs trained by diffuse use.
    pub const DEFAULT_EPS: f64 = 1e-5;

    pub fn init(self, channels: usize, device: &Device) -> burn::nn::GroupNorm {
        burn::nn::GroupNormConfig::new(groups_for(channels, self.max_groups), channels)
            .with_epsilon(self.eps)
            .init(device)
    }
}

/// Which noise predictor a run trains, with its shape; stored in config.json as `{"kind": "unet", …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NetConfig {
    Unet(UNetConfig),
    Mlp(MlpConfig),
}

impl NetConfig {
    /// The network for data of this shape: an MLP for points (1×1 "images"), a UNet otherwise.
    pub fn for_data(channels: usize, height: usize, width: usize) -> NetConfig {
        if height == 1 && width == 1 {
            NetConfig::Mlp(MlpConfig::for_points(channels))
        } else {
            NetConfig::Unet(UNetConfig::for_image(channels, height, width))
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            NetConfig::Unet(c) => c.validate(),
            NetConfig::Mlp(c) => c.validate(),
        }
    }

    /// The (channels, height, width) of the data the network takes.
    pub fn shape(&self) -> (usize, usize, usize) {
        match self {
            NetConfig::Unet(c) => (c.in_channels, c.height, c.width),
            NetConfig::Mlp(c) => (c.dim, 1, 1),
        }
    }

    /// Classes of a class-conditional network.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            NetConfig::Unet(c) => c.num_classes,
            NetConfig::Mlp(_) => None,
        }
    }

    pub fn dropout(&self) -> f64 {
        match self {
            NetConfig::Unet(c) => c.dropout,
            NetConfig::Mlp(_) => 0.0,
        }
    }

    /// Width of the context a text-conditioned network attends to.
    pub fn context_dim(&self) -> Option<usize> {
        match self {
            NetConfig::Unet(c) => c.context_dim,
            NetConfig::Mlp(_) => None,
        }
    }

    pub fn init(&self, device: &Device) -> Result<Net> {
        self.validate()?;
        Ok(match self {
            NetConfig::Unet(c) => Net::UNet(c.init(device)?),
            NetConfig::Mlp(c) => Net::Mlp(Mlp::new(c, device)),
        })
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        match self {
            NetConfig::Unet(u) => format!(
                "UNet (base {}, mults {:?}, attention at {:?})",
                u.base_channels, u.channel_mults, u.attention_resolutions
            ),
            NetConfig::Mlp(m) => format!("MLP ({} layers of {})", m.layers, m.hidden),
        }
    }
}

/// A noise predictor: x (images or points) and time inputs in, the network's output out.
// A run holds one or two of these, never a collection: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    UNet(UNet),
    Mlp(Mlp),
}

impl Net {
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Net::UNet(n) => n.num_classes(),
            Net::Mlp(_) => None,
        }
    }

    /// Whether a conditional network has the null class, which unconditional outputs and guidance other than 1
    /// need.
    pub fn has_null_class(&self) -> bool {
        matches!(self, Net::UNet(n) if n.has_null_class())
    }

    /// `classes`: per-item class indices of a class-conditional UNet (the MLP takes none).
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>, classes: Option<Tensor<1, Int>>) -> Tensor<4> {
        self.forward_with(x, t, classes, None)
    }

    /// Whether the network attends to a context sequence (a text-conditioned UNet).
    pub fn takes_context(&self) -> bool {
        matches!(self, Net::UNet(n) if n.takes_context())
    }

    /// [`Net::forward`] with the context [b, len, dim] of a text-conditioned UNet.
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        classes: Option<Tensor<1, Int>>,
        context: Option<Tensor<3>>,
    ) -> Tensor<4> {
        match self {
            Net::UNet(n) => n.forward_with(x, t, classes, context),
            Net::Mlp(n) => {
                assert!(context.is_none(), "the point MLP takes no context (callers check)");
                n.forward(x, t)
            }
        }
    }
}

/// Padding of the downsampling convolutions (3×3, stride 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownsamplePad {
    /// One pixel on every side.
    #[default]
    Centered,
    /// One pixel on the right and bottom only, as diffusers' `Downsample2D` pads.
    RightBottom,
}

/// A stride-2 3×3 convolution that halves the size, padded as `pad` says.
pub(crate) fn downsample(c: usize, pad: DownsamplePad, device: &Device) -> Conv2d {
    let padding = match pad {
        DownsamplePad::Centered => PaddingConfig2d::Explicit(1, 1, 1, 1),
        DownsamplePad::RightBottom => PaddingConfig2d::Explicit(0, 0, 1, 1),
    };
    Conv2dConfig::new([c, c], [3, 3])
        .with_stride([2, 2])
        .with_padding(padding)
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries in blocks (of 5 rows, and of 1) give what attention over all of them at once gives, to f32 rounding.
    #[test]
    fn attention_in_blocks_equals_attention_at_once() {
        let device = crate::device::train_device();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let q = Tensor::<4>::random([2, 3, 23, 8], normal, &device);
        let k = Tensor::<4>::random([2, 3, 17, 8], normal, &device);
        let v = Tensor::<4>::random([2, 3, 17, 8], normal, &device);
        let whole = attention_in_blocks(q.clone(), k.clone(), v.clone(), None, usize::MAX);
        for rows in [5, 1] {
            let blocks = attention_in_blocks(q.clone(), k.clone(), v.clone(), None, rows * 2 * 3 * 17);
            let diff: f32 = (blocks - whole.clone()).abs().max().into_scalar();
            assert!(diff < 1e-5, "blocks of {rows} queries: {diff}");
        }
    }
}
