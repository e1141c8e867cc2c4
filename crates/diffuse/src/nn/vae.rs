//! The KL-autoencoder of latent diffusion (Rombach et al. 2022): an encoder of ResBlocks with stride-2
//! downsampling and attention at the lowest resolution, giving the mean and log-variance of a diagonal
//! Gaussian over `latent_channels` channels at 1/factor of the image size, and a mirrored decoder.

pub use super::DownsamplePad;
use super::unet::{AttnBlock, ResBlock};
use super::{Norm, downsample};
use crate::kernels::{conv2d, group_norm};
use crate::{Error, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};

/// Shape of a VAE; stored in the VAE directory's vae.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub base_channels: usize,
    /// Channel multiplier per level; each level after the first halves the size, so the downsampling
    /// factor is 2^(levels − 1).
    pub channel_mults: Vec<usize>,
    pub blocks_per_level: usize,
    pub latent_channels: usize,
    pub heads: usize,
    pub max_groups: usize,
    /// GroupNorm ε: 1e-5 in the VAEs diffuse trains, 1e-6 in diffusers' AutoencoderKL.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Where the stride-2 convolutions pad.
    #[serde(default)]
    pub downsample_pad: DownsamplePad,
    /// Attention between the middle ResBlocks (diffusers' `mid_block_add_attention`).
    #[serde(default = "yes")]
    pub mid_attention: bool,
    /// The 1×1 convolutions on the encoder's moments and on the decoder's input (diffusers'
    /// `use_quant_conv`, `use_post_quant_conv`).
    #[serde(default = "yes")]
    pub quant_conv: bool,
    #[serde(default = "yes")]
    pub post_quant_conv: bool,
}

fn default_eps() -> f64 {
    Norm::DEFAULT_EPS
}

fn yes() -> bool {
    true
}

impl VaeConfig {
    /// A small VAE with downsampling `factor` (4 or 8) and 4 latent channels.
    pub fn for_image(channels: usize, height: usize, width: usize, factor: usize) -> VaeConfig {
        let levels = factor.max(1).ilog2() as usize + 1;
        VaeConfig {
            in_channels: channels,
            height,
            width,
            base_channels: 32,
            channel_mults: (0..levels).map(|i| if i == 0 { 1 } else { 2 }).collect(),
            blocks_per_level: 1,
            latent_channels: 4,
            heads: 1,
            max_groups: 8,
            norm_eps: Norm::DEFAULT_EPS,
            downsample_pad: DownsamplePad::Centered,
            mid_attention: true,
            quant_conv: true,
            post_quant_conv: true,
        }
    }

    fn norm(&self) -> Norm {
        Norm {
            max_groups: self.max_groups,
            eps: self.norm_eps,
        }
    }

    pub fn factor(&self) -> usize {
        1 << self.channel_mults.len().saturating_sub(1)
    }

    /// (channels, height, width) of a latent.
    pub fn latent_shape(&self) -> [usize; 3] {
        [
            self.latent_channels,
            self.height / self.factor(),
            self.width / self.factor(),
        ]
    }

    pub fn validate(&self) -> Result<()> {
        let widest = self.channel_mults.iter().max().copied().unwrap_or(0);
        let (size, depth) = (super::MAX_SIZE, super::MAX_DEPTH);
        super::check_sizes(
            "VAE",
            &[
                ("in_channels", self.in_channels, size),
                ("height", self.height, size),
                ("width", self.width, size),
                (
                    "widest level's channels",
                    self.base_channels.saturating_mul(widest),
                    size,
                ),
                ("latent_channels", self.latent_channels, size),
                ("levels", self.channel_mults.len(), depth),
                ("blocks_per_level", self.blocks_per_level, depth),
                ("heads", self.heads, size),
                ("max_groups", self.max_groups, size),
            ],
        )?;
        let f = self.factor();
        let bad = |m: String| Err(Error::Config(m));
        if self.channel_mults.is_empty()
            || self.base_channels == 0
            || self.latent_channels == 0
            || self.in_channels == 0
        {
            return bad("VAE needs at least one level and non-zero channels".into());
        }
        if self.channel_mults.contains(&0) || self.blocks_per_level == 0 || self.heads == 0 {
            return bad("VAE channel multipliers, blocks per level and heads must be at least 1".into());
        }
        if !self.height.is_multiple_of(f) || !self.width.is_multiple_of(f) {
            return bad(format!(
                "image {}×{} does not divide by the VAE's factor {f}",
                self.height, self.width
            ));
        }
        let low = self.base_channels * self.channel_mults.last().expect("non-empty");
        if !low.is_multiple_of(self.heads) {
            return bad(format!("{low} channels do not split into {} heads", self.heads));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Result<Vae> {
        self.validate()?;
        Ok(Vae::new(self, device))
    }
}

fn conv3(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn conv1(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [1, 1]).init(device)
}

/// ResBlocks at one resolution, then a resampling convolution (stride 2 down, or nearest ×2 and a
/// convolution up) unless it is the level at the end of the path.
#[derive(Module, Debug)]
pub struct VaeLevel {
    blocks: Vec<ResBlock>,
    resample: Option<Conv2d>,
}

/// The middle of both halves: ResBlock, attention, ResBlock at the lowest resolution.
#[derive(Module, Debug)]
pub struct VaeMiddle {
    block1: ResBlock,
    attn: Option<AttnBlock>,
    block2: ResBlock,
}

impl VaeMiddle {
    fn new(c: usize, cfg: &VaeConfig, device: &Device) -> Self {
        let norm = cfg.norm();
        Self {
            block1: ResBlock::new(c, c, None, norm, 0.0, device),
            attn: cfg.mid_attention.then(|| AttnBlock::new(c, cfg.heads, norm, device)),
            block2: ResBlock::new(c, c, None, norm, 0.0, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.block1.forward(x, None);
        if let Some(attn) = &self.attn {
            h = attn.forward(h);
        }
        self.block2.forward(h, None)
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    levels: Vec<VaeLevel>,
    mid: VaeMiddle,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// 1×1 convolution on (mean, log-variance), as in the LDM and diffusers layouts.
    quant: Option<Conv2d>,
}

#[derive(Module, Debug)]
pub struct Decoder {
    post_quant: Option<Conv2d>,
    conv_in: Conv2d,
    mid: VaeMiddle,
    levels: Vec<VaeLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
}

impl Vae {
    fn new(cfg: &VaeConfig, device: &Device) -> Self {
        let base = cfg.base_channels;
        let z = cfg.latent_channels;
        let res = |cin, cout| ResBlock::new(cin, cout, None, cfg.norm(), 0.0, device);
        let n = cfg.channel_mults.len();
        let mut ch = base;
        let mut down = Vec::new();
        for (i, m) in cfg.channel_mults.iter().enumerate() {
            let out = base * m;
            let blocks = (0..cfg.blocks_per_level)
                .map(|b| res(if b == 0 { ch } else { out }, out))
                .collect();
            ch = out;
            down.push(VaeLevel {
                blocks,
                resample: (i + 1 < n).then(|| downsample(ch, cfg.downsample_pad, device)),
            });
        }
        let norm = |c: usize| cfg.norm().init(c, device);
        let encoder = Encoder {
            conv_in: conv3(cfg.in_channels, base, device),
            levels: down,
            mid: VaeMiddle::new(ch, cfg, device),
            norm_out: norm(ch),
            conv_out: conv3(ch, 2 * z, device),
            quant: cfg.quant_conv.then(|| conv1(2 * z, 2 * z, device)),
        };
        let mut up = Vec::new();
        let top = ch;
        for (i, m) in cfg.channel_mults.iter().enumerate().rev() {
            let out = base * m;
            let blocks = (0..=cfg.blocks_per_level)
                .map(|b| res(if b == 0 { ch } else { out }, out))
                .collect();
            ch = out;
            up.push(VaeLevel {
                blocks,
                resample: (i > 0).then(|| conv3(ch, ch, device)),
            });
        }
        let decoder = Decoder {
            post_quant: cfg.post_quant_conv.then(|| conv1(z, z, device)),
            conv_in: conv3(z, top, device),
            mid: VaeMiddle::new(top, cfg, device),
            levels: up,
            norm_out: norm(ch),
            conv_out: conv3(ch, cfg.in_channels, device),
        };
        Vae { encoder, decoder }
    }

    /// Images [b, c, h, w] in [−1, 1] → (mean, log-variance) of the latent, each [b, z, h/f, w/f]. The
    /// log-variance is clamped to [−30, 20] as in LDM, so that exp never overflows.
    pub fn encode(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let e = &self.encoder;
        let mut h = conv2d(&e.conv_in, x);
        for level in &e.levels {
            for block in &level.blocks {
                h = block.forward(h, None);
            }
            if let Some(down) = &level.resample {
                h = conv2d(down, h);
            }
        }
        let h = e.mid.forward(h);
        let mut moments = conv2d(&e.conv_out, group_norm(&e.norm_out, h, true));
        if let Some(quant) = &e.quant {
            moments = conv2d(quant, moments);
        }
        let mut halves = moments.chunk(2, 1).into_iter();
        let mean = halves.next().expect("two halves");
        (mean, halves.next().expect("two halves").clamp(-30.0, 20.0))
    }

    /// Latents [b, z, h/f, w/f] → images [b, c, h, w] (unclamped).
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let z = match &d.post_quant {
            Some(conv) => conv2d(conv, z),
            None => z,
        };
        let mut h = d.mid.forward(conv2d(&d.conv_in, z));
        for level in &d.levels {
            for block in &level.blocks {
                h = block.forward(h, None);
            }
            if let Some(up) = &level.resample {
                let [_, _, hh, ww] = h.dims();
                let opts = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([hh * 2, ww * 2]);
                h = conv2d(up, interpolate(h, opts));
            }
        }
        conv2d(&d.conv_out, group_norm(&d.norm_out, h, true))
    }
}

/// KL(N(μ, e^logvar) ‖ N(0, 1)) per latent element, averaged: ½(μ² + e^logvar − 1 − logvar).
pub fn kl_divergence(mean: Tensor<4>, logvar: Tensor<4>) -> Tensor<1> {
    (mean.square() + logvar.clone().exp() - logvar)
        .sub_scalar(1.0)
        .mul_scalar(0.5)
        .mean()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_and_decoder_shapes_for_each_factor() {
        let device = crate::device::device();
        for (factor, c, size) in [(4, 3, 32), (8, 3, 32), (4, 1, 28)] {
            let cfg = VaeConfig {
                base_channels: 8,
                ..VaeConfig::for_image(c, size, size, factor)
            };
            assert_eq!(cfg.factor(), factor);
            let vae = cfg.init(&device).unwrap();
            let x = Tensor::<4>::zeros([2, c, size, size], &device);
            let (mean, logvar) = vae.encode(x);
            let [z, h, w] = cfg.latent_shape();
            assert_eq!(mean.dims(), [2, 4, size / factor, size / factor]);
            assert_eq!(logvar.dims(), [2, z, h, w]);
            assert_eq!(vae.decode(mean).dims(), [2, c, size, size]);
        }
        let e = VaeConfig::for_image(1, 28, 28, 8)
            .init(&device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not divide"), "{e}");
    }

    #[test]
    fn kl_term_has_its_closed_form() {
        let device = crate::device::device();
        let mean = Tensor::<4>::from_floats([[[[0.0, 1.0], [-2.0, 0.5]]]], &device);
        let logvar = Tensor::<4>::from_floats([[[[0.0, 0.0], [1.0, -1.0]]]], &device);
        let want: f64 = [(0.0f64, 0.0f64), (1.0, 0.0), (-2.0, 1.0), (0.5, -1.0)]
            .iter()
            .map(|&(m, lv)| 0.5 * (m * m + lv.exp() - 1.0 - lv))
            .sum::<f64>()
            / 4.0;
        let got = kl_divergence(mean, logvar).into_scalar::<f32>() as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Zero exactly at the prior.
        let zeros = Tensor::<4>::zeros([1, 4, 2, 2], &device);
        assert_eq!(kl_divergence(zeros.clone(), zeros).into_scalar::<f32>(), 0.0);
    }
}
