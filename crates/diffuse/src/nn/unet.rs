//! The DDPM UNet (Ho et al. 2020, appendix B): sinusoidal time embedding and MLP, ResBlocks with GroupNorm,
//! SiLU and a per-channel time shift, self-attention at chosen resolutions, skip connections between the
//! down and up paths.

use super::transformer::{SpatialTransformer, SpatialTransformerConfig};
use super::{DownsamplePad, Norm, downsample};
use crate::kernels::{conv2d, group_norm};
use crate::{Error, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, GroupNorm, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};

/// Shape of a UNet; stored in the run's config.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    /// Image height and width; each level halves them, so they must divide by 2^(levels − 1).
    pub height: usize,
    pub width: usize,
    pub base_channels: usize,
    /// Channel multiplier per resolution level.
    pub channel_mults: Vec<usize>,
    pub blocks_per_level: usize,
    /// Resolutions (height in pixels) where self-attention follows each ResBlock; the middle always has one.
    pub attention_resolutions: Vec<usize>,
    /// Whether the down path has attention too (at those resolutions), or only the up path.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub down_attention: bool,
    pub heads: usize,
    pub max_groups: usize,
    pub dropout: f64,
    /// Class-conditional models: the number of classes. A learned embedding of the class (index
    /// `num_classes` is the null class of classifier-free guidance) is added to the time embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    /// Whether a conditional model has the null class: imported models trained without label dropout have
    /// only their `num_classes` classes, and sample them at guidance 1 only.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub null_class: bool,
    /// Channels per attention head (diffusers' `attention_head_dim`): a block of c channels has c / head_dim
    /// heads. Absent: `heads` heads in every attention block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// The down path's attention resolutions where they differ from the up path's (imported models).
    /// Absent: `attention_resolutions` if `down_attention`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_attention_resolutions: Option<Vec<usize>>,
    /// GroupNorm ε: 1e-5 in the networks diffuse trains, 1e-6 in the DDPM models of diffusers.
    #[serde(default = "default_eps", skip_serializing_if = "is_default_eps")]
    pub norm_eps: f64,
    /// The sinusoidal time features as diffusers' `Timesteps` options: cosines first, and frequencies
    /// exp(−ln(10⁴)·i / (half − freq_shift)). The networks diffuse trains use sines first and shift 0.
    #[serde(default, skip_serializing_if = "is_false")]
    pub flip_sin_to_cos: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freq_shift: f64,
    /// ResBlocks take a scale and a shift from the time embedding after their second GroupNorm,
    /// h·(1 + scale) + shift (diffusers' `resnet_time_scale_shift: "scale_shift"`), instead of adding a shift
    /// before it; the middle attention then has no GroupNorm, as in diffusers without `attn_norm_num_groups`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub scale_shift: bool,
    /// Where the stride-2 downsampling convolutions pad (diffusers' `downsample_padding` 0 is right-bottom).
    #[serde(default, skip_serializing_if = "is_centered")]
    pub downsample_pad: DownsamplePad,
    /// Text-conditioned models: the width of the context sequence (a text encoder's hidden states). Every
    /// attention block, the middle's included, is then a spatial transformer, self-attention and
    /// cross-attention to the context (latent diffusion's; SD 1.x's `CrossAttnDownBlock2D` and kin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_dim: Option<usize>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn default_eps() -> f64 {
    Norm::DEFAULT_EPS
}

fn is_default_eps(e: &f64) -> bool {
    *e == Norm::DEFAULT_EPS
}

fn is_centered(p: &DownsamplePad) -> bool {
    *p == DownsamplePad::Centered
}

impl UNetConfig {
    /// The default for an image size: small enough to train in minutes on two cores.
    pub fn for_image(channels: usize, height: usize, width: usize) -> Self {
        let small = height.max(width) <= 16;
        Self {
            in_channels: channels,
            height,
            width,
            base_channels: 32,
            channel_mults: if small { vec![1, 2] } else { vec![1, 2, 2] },
            blocks_per_level: if small { 1 } else { 2 },
            attention_resolutions: if small { vec![4] } else { vec![height / 4] },
            down_attention: true,
            heads: 4,
            max_groups: 8,
            dropout: 0.0,
            num_classes: None,
            null_class: true,
            head_dim: None,
            down_attention_resolutions: None,
            norm_eps: Norm::DEFAULT_EPS,
            flip_sin_to_cos: false,
            freq_shift: 0.0,
            scale_shift: false,
            downsample_pad: DownsamplePad::Centered,
            context_dim: None,
        }
    }

    /// Whether the down (or up) path has attention at resolution `res`.
    fn attends(&self, down: bool, res: usize) -> bool {
        match (&self.down_attention_resolutions, down) {
            (Some(at), true) => at.contains(&res),
            (None, true) => self.down_attention && self.attention_resolutions.contains(&res),
            (_, false) => self.attention_resolutions.contains(&res),
        }
    }

    /// Whether the down (or up) path has attention at level `level` (the image side halved `level` times).
    pub fn attends_at_level(&self, down: bool, level: usize) -> bool {
        self.attends(down, self.height >> level)
    }

    /// Heads of an attention block over `channels` channels.
    fn heads_for(&self, channels: usize) -> usize {
        self.head_dim.map_or(self.heads, |d| channels / d)
    }

    /// The class embedding's rows: the classes, and the null class where there is one.
    fn class_rows(&self) -> Option<usize> {
        self.num_classes.map(|k| k + usize::from(self.null_class))
    }

    /// The network `diffuse train` gives images of this shape unless told: [`UNetConfig::for_image`], except that
    /// greyscale images above 16×16 (MNIST, Fashion-MNIST) get the small UNet that won at 15 minutes on MNIST
    /// (base 16, one block per level, two heads: 280,177 parameters against 1,623,169; FID 40.4 against 53.7).
    pub fn recommended(channels: usize, height: usize, width: usize) -> Self {
        let net = Self::for_image(channels, height, width);
        if channels == 1 && height.max(width) > 16 {
            return Self {
                base_channels: 16,
                blocks_per_level: 1,
                heads: 2,
                ..net
            };
        }
        net
    }

    /// The layers of the PyTorch reference UNet of the benchmarks (`reference/ref_unet.py` in the shared
    /// folder, 6,339,587 parameters): 3×32×32, channels 64 → (64, 128, 128), two ResBlocks per level,
    /// GroupNorm(32), one attention head at 8×8 in the middle and the up path only.
    pub fn reference() -> Self {
        Self {
            base_channels: 64,
            channel_mults: vec![1, 2, 2],
            blocks_per_level: 2,
            attention_resolutions: vec![8],
            down_attention: false,
            heads: 1,
            max_groups: 32,
            ..Self::for_image(3, 32, 32)
        }
    }

    pub fn validate(&self) -> Result<()> {
        let widest = self.channel_mults.iter().max().copied().unwrap_or(0);
        let (size, depth) = (super::MAX_SIZE, super::MAX_DEPTH);
        super::check_sizes(
            "UNet",
            &[
                ("in_channels", self.in_channels, size),
                ("height", self.height, size),
                ("width", self.width, size),
                (
                    "widest level's channels",
                    self.base_channels.saturating_mul(widest),
                    size,
                ),
                ("levels", self.channel_mults.len(), depth),
                ("blocks_per_level", self.blocks_per_level, depth),
                ("heads", self.heads, size),
                ("head_dim", self.head_dim.unwrap_or(1), size),
                ("max_groups", self.max_groups, size),
                ("num_classes", self.num_classes.unwrap_or(0), size),
                ("context_dim", self.context_dim.unwrap_or(1), size),
            ],
        )?;
        let levels = self.channel_mults.len();
        let factor = 1usize << levels.saturating_sub(1);
        let bad = |m: String| Err(Error::Config(m));
        if levels == 0
            || self.base_channels == 0
            || self.blocks_per_level == 0
            || self.in_channels == 0
            || self.heads == 0
            || self.height == 0
            || self.width == 0
            || self.channel_mults.contains(&0)
        {
            return bad(
                "UNet needs at least one level, one block, one head, a non-zero image size and non-zero channels"
                    .into(),
            );
        }
        if !self.base_channels.is_multiple_of(2) {
            return bad(format!(
                "{} base channels: the time features are sines and cosines, half each, so they must be even",
                self.base_channels
            ));
        }
        if !self.height.is_multiple_of(factor) || !self.width.is_multiple_of(factor) {
            return bad(format!(
                "image {}×{} does not divide by 2^{} for {} levels; use fewer channel multipliers",
                self.height,
                self.width,
                levels - 1,
                levels
            ));
        }
        let width = |level: usize| self.base_channels * self.channel_mults[level];
        let mid = width(levels - 1);
        match self.head_dim {
            // A head size need only divide the widths that have attention (and the middle's), as in diffusers.
            Some(d) => {
                let attended =
                    (0..levels).filter(|&l| self.attends_at_level(true, l) || self.attends_at_level(false, l));
                if let Some(c) = attended
                    .map(width)
                    .chain([mid])
                    .find(|c| d == 0 || !c.is_multiple_of(d))
                {
                    return bad(format!("{c} channels do not split into heads of {d}"));
                }
            }
            None => {
                if let Some(c) = (0..levels).map(width).find(|c| !c.is_multiple_of(self.heads)) {
                    return bad(format!("{c} channels do not split into {} heads", self.heads));
                }
            }
        }
        let half = (self.base_channels / 2) as f64;
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0 && self.freq_shift.is_finite() && self.freq_shift < half) {
            return bad(format!(
                "need 0 < norm_eps < 1 and freq_shift below half the base channels, got {} and {}",
                self.norm_eps, self.freq_shift
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.context_dim == Some(0) {
            return bad("a text-conditioned UNet needs a context width above 0".into());
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Result<UNet> {
        self.validate()?;
        Ok(UNet::new(self, device))
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

/// Sinusoidal features of the timestep (Vaswani et al.), then a two-layer MLP.
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    lin1: Linear,
    lin2: Linear,
    dim: usize,
    /// Cosines before sines (diffusers' `flip_sin_to_cos`).
    flip: bool,
    /// Frequencies exp(−ln(10⁴)·i / (half − shift)) (diffusers' `freq_shift`).
    shift: f64,
}

impl TimeEmbedding {
    pub(crate) fn new(dim: usize, out: usize, device: &Device) -> Self {
        Self {
            lin1: LinearConfig::new(dim, out).init(device),
            lin2: LinearConfig::new(out, out).init(device),
            dim,
            flip: false,
            shift: 0.0,
        }
    }

    /// `t`: [b] timesteps (train-step units) → [b, out].
    pub fn forward(&self, t: Tensor<1>) -> Tensor<2> {
        let half = self.dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - self.shift)).exp() as f32)
            .collect();
        let freqs = Tensor::<1>::from_floats(freqs.as_slice(), &t.device()).unsqueeze_dim::<2>(0);
        let args = t.unsqueeze_dim::<2>(1) * freqs;
        let (sin, cos) = (args.clone().sin(), args.cos());
        let emb = Tensor::cat(if self.flip { vec![cos, sin] } else { vec![sin, cos] }, 1);
        self.lin2.forward(silu(self.lin1.forward(emb)))
    }
}

/// GroupNorm → SiLU → conv → + time shift → GroupNorm → SiLU → dropout → conv, with a 1×1 skip when the
/// channel count changes. Without a time embedding (the VAE's blocks) there is no shift. Where the time
/// projection gives twice the channels it is a scale and a shift applied after the second GroupNorm instead.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Option<Linear>,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub(crate) fn new(cin: usize, cout: usize, temb: Option<usize>, norm: Norm, dropout: f64, device: &Device) -> Self {
        Self {
            norm1: norm.init(cin, device),
            conv1: conv3(cin, cout, device),
            time: temb.map(|t| LinearConfig::new(t, cout).init(device)),
            norm2: norm.init(cout, device),
            dropout: DropoutConfig::new(dropout).init(),
            // Zero-initialised: each block starts as the identity, which steadies early training.
            conv2: Conv2dConfig::new([cout, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device),
            skip: (cin != cout).then(|| conv1(cin, cout, device)),
        }
    }

    /// The block with a time projection to a scale and a shift (2 × `cout` values) instead of a shift.
    pub(crate) fn with_scale_shift(mut self, temb: usize, device: &Device) -> Self {
        let cout = self.conv1.weight.dims()[0];
        self.time = Some(LinearConfig::new(temb, 2 * cout).init(device));
        self
    }

    pub(crate) fn forward(&self, x: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let h = conv2d(&self.conv1, group_norm(&self.norm1, x.clone(), true));
        let time = match (&self.time, temb) {
            (Some(time), Some(temb)) => Some(time.forward(silu(temb)).unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3)),
            _ => None,
        };
        let cout = h.dims()[1];
        let h = match time {
            Some(film) if film.dims()[1] == 2 * cout => {
                let (scale, shift) = (film.clone().narrow(1, 0, cout), film.narrow(1, cout, cout));
                let h = group_norm(&self.norm2, h, false);
                silu(h.clone() * scale + h + shift)
            }
            Some(shift) => group_norm(&self.norm2, h + shift, true),
            None => group_norm(&self.norm2, h, true),
        };
        let h = conv2d(&self.conv2, self.dropout.forward(h));
        let skip = match &self.skip {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        skip + h
    }
}

/// Multi-head self-attention over the pixels of a feature map, with a residual connection.
#[derive(Module, Debug)]
pub struct AttnBlock {
    /// Absent in the middle of diffusers' scale-shift UNets.
    norm: Option<GroupNorm>,
    qkv: Conv2d,
    proj: Conv2d,
    heads: usize,
}

impl AttnBlock {
    pub(crate) fn new(c: usize, heads: usize, norm: Norm, device: &Device) -> Self {
        Self {
            norm: Some(norm.init(c, device)),
            qkv: conv1(c, 3 * c, device),
            proj: Conv2dConfig::new([c, c], [1, 1])
                .with_initializer(Initializer::Zeros)
                .init(device),
            heads,
        }
    }

    /// The block without its GroupNorm.
    fn without_norm(mut self) -> Self {
        self.norm = None;
        self
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (heads, n) = (self.heads, h * w);
        let d = c / heads;
        let normed = match &self.norm {
            Some(norm) => group_norm(norm, x.clone(), false),
            None => x.clone(),
        };
        let mut qkv = conv2d(&self.qkv, normed).chunk(3, 1).into_iter();
        // [b, c, h, w] → [b, heads, n, d]
        let mut split = || qkv.next().unwrap().reshape([b, heads, d, n]).swap_dims(2, 3);
        let (q, k, v) = (split(), split(), split());
        let out = super::attention(q, k, v, None); // [b, heads, n, d]
        let out = out.swap_dims(2, 3).reshape([b, c, h, w]);
        x + conv2d(&self.proj, out)
    }
}

/// One resolution of the down path: ResBlocks (each followed by attention where configured), then a
/// stride-2 convolution unless it is the last level.
#[derive(Module, Debug)]
pub struct DownLevel {
    blocks: Vec<ResBlock>,
    attns: Vec<AttnBlock>,
    /// A text-conditioned UNet's attention (in place of `attns`, which then stays empty, as `texts` does
    /// otherwise: a field of its own keeps the parameter paths of existing checkpoints).
    texts: Vec<SpatialTransformer>,
    down: Option<Conv2d>,
}

/// One resolution of the up path: one more ResBlock than the down path (it also takes the level's input
/// skip), then a nearest-neighbour ×2 upsampling and a convolution unless it is the top level.
#[derive(Module, Debug)]
pub struct UpLevel {
    blocks: Vec<ResBlock>,
    attns: Vec<AttnBlock>,
    texts: Vec<SpatialTransformer>,
    up: Option<Conv2d>,
}

#[derive(Module, Debug)]
pub struct UNet {
    time: TimeEmbedding,
    class_emb: Option<Embedding>,
    num_classes: Option<usize>,
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid1: ResBlock,
    /// The middle's attention: self-attention, or for a text-conditioned UNet a spatial transformer.
    mid_attn: Option<AttnBlock>,
    mid_text: Option<SpatialTransformer>,
    mid2: ResBlock,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Classes of a class-conditional model; index `num_classes` is the null class.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// Whether a conditional model has the null class (unconditional outputs, guidance other than 1).
    pub fn has_null_class(&self) -> bool {
        match (&self.class_emb, self.num_classes) {
            (Some(emb), Some(k)) => emb.weight.dims()[0] > k,
            _ => false,
        }
    }

    fn new(cfg: &UNetConfig, device: &Device) -> Self {
        let base = cfg.base_channels;
        let temb = 4 * base;
        let norm = Norm {
            max_groups: cfg.max_groups,
            eps: cfg.norm_eps,
        };
        let block = |cin, cout| {
            let b = ResBlock::new(cin, cout, Some(temb), norm, cfg.dropout, device);
            if cfg.scale_shift {
                b.with_scale_shift(temb, device)
            } else {
                b
            }
        };
        let attn = |c| AttnBlock::new(c, cfg.heads_for(c), norm, device);
        let text = |c| {
            cfg.context_dim.map(|context_dim| {
                SpatialTransformerConfig {
                    channels: c,
                    heads: cfg.heads_for(c),
                    context_dim,
                    layers: 1,
                    groups: super::groups_for(c, cfg.max_groups),
                }
                .init(device)
            })
        };
        let levels = cfg.channel_mults.len();
        let mut skips = vec![base];
        let (mut ch, mut res) = (base, cfg.height);
        let mut down = Vec::new();
        for (i, m) in cfg.channel_mults.iter().enumerate() {
            let out = base * m;
            let attn_here = cfg.attends(true, res);
            let (mut blocks, mut attns, mut texts) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..cfg.blocks_per_level {
                blocks.push(block(ch, out));
                ch = out;
                if attn_here {
                    match text(ch) {
                        Some(t) => texts.push(t),
                        None => attns.push(attn(ch)),
                    }
                }
                skips.push(ch);
            }
            let last = i + 1 == levels;
            let down_conv = (!last).then(|| downsample(ch, cfg.downsample_pad, device));
            if !last {
                skips.push(ch);
                res /= 2;
            }
            down.push(DownLevel {
                blocks,
                attns,
                texts,
                down: down_conv,
            });
        }
        let mid1 = block(ch, ch);
        let mid_text = text(ch);
        let mid_attn = match (&mid_text, cfg.scale_shift) {
            (Some(_), _) => None,
            (None, true) => Some(attn(ch).without_norm()),
            (None, false) => Some(attn(ch)),
        };
        let mid2 = block(ch, ch);
        let mut up = Vec::new();
        for (i, m) in cfg.channel_mults.iter().enumerate().rev() {
            let out = base * m;
            let attn_here = cfg.attends(false, res);
            let (mut blocks, mut attns, mut texts) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..=cfg.blocks_per_level {
                let skip = skips.pop().expect("one skip per down block");
                blocks.push(block(ch + skip, out));
                ch = out;
                if attn_here {
                    match text(ch) {
                        Some(t) => texts.push(t),
                        None => attns.push(attn(ch)),
                    }
                }
            }
            let up_conv = (i > 0).then(|| conv3(ch, ch, device));
            if i > 0 {
                res *= 2;
            }
            up.push(UpLevel {
                blocks,
                attns,
                texts,
                up: up_conv,
            });
        }
        let time = TimeEmbedding {
            flip: cfg.flip_sin_to_cos,
            shift: cfg.freq_shift,
            ..TimeEmbedding::new(base, temb, device)
        };
        Self {
            time,
            class_emb: cfg
                .class_rows()
                .map(|rows| EmbeddingConfig::new(rows, temb).init(device)),
            num_classes: cfg.num_classes,
            conv_in: conv3(cfg.in_channels, base, device),
            down,
            mid1,
            mid_attn,
            mid_text,
            mid2,
            up,
            norm_out: norm.init(ch, device),
            conv_out: Conv2dConfig::new([ch, cfg.in_channels], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// `x`: [b, c, h, w] noisy images; `t`: [b] time inputs; `classes`: [b] class indices of a conditional
    /// model (`num_classes` = null; absent = all null). Returns the network output (ε, x₀ or v).
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>, classes: Option<Tensor<1, Int>>) -> Tensor<4> {
        self.forward_with(x, t, classes, None)
    }

    /// Whether the network attends to a context sequence (a text). The middle always attends, so its block
    /// tells for the whole network.
    pub fn takes_context(&self) -> bool {
        self.mid_text.is_some()
    }

    /// [`UNet::forward`] with `context` [b, m, context_dim], which a text-conditioned network attends to (the
    /// encoding of the empty text is its unconditional input).
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        classes: Option<Tensor<1, Int>>,
        context: Option<Tensor<3>>,
    ) -> Tensor<4> {
        assert!(
            context.is_some() == self.takes_context(),
            "a text-conditioned UNet needs a context and only it takes one (callers check)"
        );
        // The attention after block i of a level: self-attention, or the spatial transformer over the context.
        let attend = |h: Tensor<4>, attn: Option<&AttnBlock>, text: Option<&SpatialTransformer>| match (attn, text) {
            (Some(_), Some(_)) => unreachable!("a level has self-attention or spatial transformers, not both"),
            (Some(a), None) => a.forward(h),
            (None, Some(tr)) => tr.forward(h, context.clone().expect("checked above")),
            (None, None) => h,
        };
        let mut temb = self.time.forward(t);
        assert!(
            classes.is_some() || self.num_classes.is_none() || self.has_null_class(),
            "a conditional UNet without a null class needs classes (callers check)"
        );
        if let Some(emb) = &self.class_emb {
            let [b, _] = temb.dims();
            let null = self.num_classes.unwrap_or(0) as i64;
            let classes = classes.unwrap_or_else(|| Tensor::<1, Int>::full([b], null, &temb.device()));
            temb = temb + emb.forward(classes.unsqueeze_dim::<2>(1)).reshape([b as i32, -1]);
        }
        let mut h = conv2d(&self.conv_in, x);
        let mut skips = vec![h.clone()];
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(h, Some(temb.clone()));
                h = attend(h, level.attns.get(i), level.texts.get(i));
                skips.push(h.clone());
            }
            if let Some(down) = &level.down {
                h = conv2d(down, h);
                skips.push(h.clone());
            }
        }
        h = self.mid1.forward(h, Some(temb.clone()));
        h = attend(h, self.mid_attn.as_ref(), self.mid_text.as_ref());
        h = self.mid2.forward(h, Some(temb.clone()));
        for level in &self.up {
            for (i, block) in level.blocks.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), Some(temb.clone()));
                h = attend(h, level.attns.get(i), level.texts.get(i));
            }
            if let Some(up) = &level.up {
                let [_, _, hh, ww] = h.dims();
                let opts = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([hh * 2, ww * 2]);
                h = conv2d(up, interpolate(h, opts));
            }
        }
        conv2d(&self.conv_out, group_norm(&self.norm_out, h, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(c: usize, h: usize, w: usize, mults: Vec<usize>) -> UNetConfig {
        UNetConfig {
            base_channels: 8,
            channel_mults: mults,
            attention_resolutions: vec![h / 2],
            heads: 2,
            ..UNetConfig::for_image(c, h, w)
        }
    }

    #[test]
    fn output_shape_matches_input_at_every_supported_size() {
        let device = crate::device::device();
        for (c, h, w, mults) in [
            (1, 8, 8, vec![1, 2]),
            (1, 28, 28, vec![1, 2, 2]),
            (3, 32, 32, vec![1, 2, 2, 2]),
        ] {
            let net = tiny(c, h, w, mults).init(&device).unwrap();
            let x = Tensor::<4>::zeros([2, c, h, w], &device);
            let t = Tensor::<1>::from_floats([3.0, 900.0], &device);
            assert_eq!(net.forward(x, t, None).dims(), [2, c, h, w]);
            assert!(net.num_params() > 1000);
        }
    }

    #[test]
    fn a_text_conditioned_unet_attends_to_its_context_everywhere_it_attends() {
        let device = crate::device::device();
        let cfg = UNetConfig {
            context_dim: Some(6),
            ..tiny(1, 8, 8, vec![1, 2])
        };
        let mut net = crate::device::init_seeded(2, &device, |d| cfg.init(d).unwrap());
        // The output convolution starts at zero (so a new network predicts 0); a random one lets the context show.
        net.conv_out = crate::device::init_seeded(3, &device, |d| conv3(8, 1, d));
        assert!(net.takes_context() && !tiny(1, 8, 8, vec![1, 2]).init(&device).unwrap().takes_context());
        // Spatial transformers where self-attention was: after the down path's block at 4×4, the up path's two
        // there, and in the middle.
        let count = |f: &dyn Fn(&[AttnBlock], &[SpatialTransformer]) -> usize| {
            net.down.iter().map(|l| f(&l.attns, &l.texts)).sum::<usize>()
                + net.up.iter().map(|l| f(&l.attns, &l.texts)).sum::<usize>()
        };
        let (texts, attns) = (count(&|_, t| t.len()), count(&|a, _| a.len()));
        assert_eq!((texts, attns), (3, 0));
        assert!(net.mid_text.is_some() && net.mid_attn.is_none());
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([2, 1, 8, 8], normal, &device);
        let t = Tensor::<1>::from_floats([10.0, 500.0], &device);
        let a = Tensor::<3>::random([2, 5, 6], normal, &device);
        let b = Tensor::<3>::random([2, 3, 6], normal, &device);
        let ya = net.forward_with(x.clone(), t.clone(), None, Some(a.clone()));
        let yb = net.forward_with(x.clone(), t.clone(), None, Some(b));
        assert_eq!(ya.dims(), [2, 1, 8, 8]);
        let changed = crate::sample::to_vec(ya.clone() - yb)
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(changed > 1e-4, "the output ignores the context ({changed})");
        // The same context, the same output: nothing else varies.
        let again = crate::sample::to_vec(net.forward_with(x, t, None, Some(a)) - ya);
        assert!(again.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn configs_without_a_context_keep_their_format() {
        let plain = serde_json::to_value(UNetConfig::for_image(1, 8, 8)).unwrap();
        assert!(plain.get("context_dim").is_none());
        let text = UNetConfig {
            context_dim: Some(768),
            ..UNetConfig::for_image(1, 8, 8)
        };
        let v = serde_json::to_value(&text).unwrap();
        assert_eq!(v["context_dim"], 768);
        assert_eq!(serde_json::from_value::<UNetConfig>(v).unwrap(), text);
        let zero = UNetConfig {
            context_dim: Some(0),
            ..UNetConfig::for_image(1, 8, 8)
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn reference_port_has_the_reference_parameter_count() {
        let net = UNetConfig::reference().init(&crate::device::device()).unwrap();
        assert_eq!(net.num_params(), 6_339_587);
    }

    #[test]
    fn bad_shapes_are_rejected() {
        let device = crate::device::device();
        let e = tiny(1, 28, 28, vec![1, 2, 2, 2]).init(&device).unwrap_err().to_string();
        assert!(e.contains("does not divide"), "{e}");
        let mut cfg = tiny(1, 8, 8, vec![1, 2]);
        cfg.heads = 3;
        assert!(cfg.init(&device).is_err());
    }
}
