//! The spatial transformer of latent diffusion (Rombach et al. 2022, appendix E), the block that lets a UNet
//! attend to a text: GroupNorm and a 1×1 projection into a sequence of pixels, then blocks of self-attention,
//! cross-attention to a context sequence (a text encoder's hidden states) and a GEGLU MLP, each after a
//! LayerNorm and added back, then a 1×1 projection out, added to the input. Laid out as diffusers'
//! `Transformer2DModel` of Stable Diffusion 1.x, so that [`source`] names each parameter there.

use crate::diffusers::{Layout, Source};
use crate::kernels::{conv2d, group_norm};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

/// The shape of a spatial transformer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpatialTransformerConfig {
    /// Channels of the feature map (also the attention's width).
    pub channels: usize,
    pub heads: usize,
    /// Width of the context sequence's vectors (768 for SD 1.x's CLIP text encoder).
    pub context_dim: usize,
    /// Transformer blocks (1 in SD 1.x).
    pub layers: usize,
    /// GroupNorm groups (32 in SD 1.x).
    pub groups: usize,
}

/// diffusers' ε of the GroupNorm before the projection in (its LayerNorms use 1e-5, burn's default).
const GROUP_NORM_EPS: f64 = 1e-6;

/// Multi-head attention of a sequence to itself, or to a context (cross-attention); q, k and v without bias.
#[derive(Module, Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    fn new(dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let plain = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Self {
            to_q: plain(dim, dim),
            to_k: plain(context_dim, dim),
            to_v: plain(context_dim, dim),
            to_out: LinearConfig::new(dim, dim).init(device),
            heads,
        }
    }

    /// `x` [b, n, d] attends to `context` [b, m, dc] (to itself when None).
    fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let context = context.unwrap_or_else(|| x.clone());
        let m = context.dims()[1];
        let (h, dh) = (self.heads, d / self.heads);
        let q = self.to_q.forward(x).reshape([b, n, h, dh]).swap_dims(1, 2);
        let k = self
            .to_k
            .forward(context.clone())
            .reshape([b, m, h, dh])
            .swap_dims(1, 2);
        let v = self.to_v.forward(context).reshape([b, m, h, dh]).swap_dims(1, 2);
        let out = super::attention(q, k, v, None).swap_dims(1, 2).reshape([b, n, d]);
        self.to_out.forward(out)
    }
}

/// GEGLU (Shazeer 2020): one projection to twice the hidden width, its first half gated by GELU of the second,
/// then back to the model width.
#[derive(Module, Debug)]
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [hidden, gate] = self.proj.forward(x).chunk(2, 2).try_into().expect("two halves");
        self.out.forward(hidden * gelu(gate))
    }
}

/// One transformer block: x + self-attention, x + cross-attention, x + MLP, each of a LayerNorm of x.
#[derive(Module, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl Block {
    fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn1.forward(self.norm1.forward(x), None);
        let x = x.clone() + self.attn2.forward(self.norm2.forward(x), Some(context));
        x.clone() + self.ff.forward(self.norm3.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Conv2d,
    blocks: Vec<Block>,
    proj_out: Conv2d,
}

impl SpatialTransformerConfig {
    pub fn init(&self, device: &Device) -> SpatialTransformer {
        let c = self.channels;
        let norm = |device| LayerNormConfig::new(c).init(device);
        SpatialTransformer {
            norm: GroupNormConfig::new(self.groups, c)
                .with_epsilon(GROUP_NORM_EPS)
                .init(device),
            proj_in: Conv2dConfig::new([c, c], [1, 1]).init(device),
            blocks: (0..self.layers)
                .map(|_| Block {
                    norm1: norm(device),
                    attn1: Attention::new(c, c, self.heads, device),
                    norm2: norm(device),
                    attn2: Attention::new(c, self.context_dim, self.heads, device),
                    norm3: norm(device),
                    ff: FeedForward {
                        proj: LinearConfig::new(c, 8 * c).init(device),
                        out: LinearConfig::new(4 * c, c).init(device),
                    },
                })
                .collect(),
            proj_out: Conv2dConfig::new([c, c], [1, 1]).init(device),
        }
    }
}

impl SpatialTransformer {
    /// `x` [b, c, h, w] attends to `context` [b, m, context_dim]; the result has x's shape.
    pub fn forward(&self, x: Tensor<4>, context: Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let y = conv2d(&self.proj_in, group_norm(&self.norm, x.clone(), false));
        // [b, c, h, w] → a sequence of h·w pixels [b, h·w, c].
        let mut seq = y.reshape([b, c, h * w]).swap_dims(1, 2);
        for block in &self.blocks {
            seq = block.forward(seq, context.clone());
        }
        let y = seq.swap_dims(1, 2).reshape([b, c, h, w]);
        x + conv2d(&self.proj_out, y)
    }
}

/// The diffusers (`Transformer2DModel`) name of one of our parameter paths, relative to the transformer:
/// `blocks.0.attn2.to_k.weight` → `transformer_blocks.0.attn2.to_k.weight` (a Linear, transposed),
/// `blocks.0.ff.proj.weight` → `transformer_blocks.0.ff.net.0.proj.weight`, `norm.gamma` → `norm.weight`.
pub fn source(ours: &str) -> Source {
    let parts: Vec<&str> = ours.split('.').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, &p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match p {
            "blocks" => out.push("transformer_blocks"),
            "proj" if i > 0 && parts[i - 1] == "ff" => out.extend(["net", "0", "proj"]),
            "out" if i > 0 && parts[i - 1] == "ff" => out.extend(["net", "2"]),
            "to_out" => out.extend(["to_out", "0"]),
            "gamma" if last => out.push("weight"),
            "beta" if last => out.push("bias"),
            other => out.push(other),
        }
    }
    // Every Linear (attention and MLP) is stored [out, in] by PyTorch; the convolutions and norms as they are.
    let linear = parts.iter().any(|p| p.starts_with("attn") || *p == "ff") && parts.last() == Some(&"weight");
    Source::One(out.join("."), if linear { Layout::Linear } else { Layout::Same })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors_io;
    use std::path::Path;

    /// 8 channels, 2 heads, contexts of width 6, one block.
    const TINY: SpatialTransformerConfig = SpatialTransformerConfig {
        channels: 8,
        heads: 2,
        context_dim: 6,
        layers: 1,
        groups: 2,
    };

    /// diffusers' Transformer2DModel (scripts/make_transformer_fixture.py: 16 channels, 2 heads, 2 blocks,
    /// context width 12, every weight perturbed) against the same weights read here.
    #[test]
    fn matches_diffusers_transformer_2d() {
        let device = crate::device::device();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transformer/transformer_2d.safetensors");
        let mut theirs = safetensors_io::read(&path).unwrap().groups.remove("").unwrap();
        let t = |theirs: &mut std::collections::BTreeMap<String, safetensors_io::NamedTensor>, k: &str| {
            let v = theirs.remove(k).unwrap();
            (v.data, v.shape)
        };
        let (x, xs) = t(&mut theirs, "x");
        let (context, cs) = t(&mut theirs, "context");
        let (want, _) = t(&mut theirs, "out");
        let cfg = SpatialTransformerConfig {
            channels: 16,
            heads: 2,
            context_dim: 12,
            layers: 2,
            groups: 4,
        };
        let net = cfg.init(&device);
        let ours = safetensors_io::collect(&net);
        let src = crate::diffusers::import(&ours, &theirs, source, &path).unwrap();
        let net = safetensors_io::load(net, &src, false, &path).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(x, xs), &device);
        let context = Tensor::<3>::from_data(TensorData::new(context, cs), &device);
        let got = crate::sample::to_vec(net.forward(x, context));
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // Measured: 3.8e-6, on outputs of standard deviation 2.5 (2026-12-01).
        assert!(d < 1e-4, "largest difference {d}");
    }

    /// It trains: a few AdamW steps fit a context-dependent target (the gradients reach every part).
    #[test]
    fn a_tiny_transformer_fits_a_target_that_depends_on_the_context() {
        use burn::optim::{AdamWConfig, GradientsParams};
        let device = crate::device::train_device();
        let cfg = TINY;
        let mut net = crate::device::init_seeded(5, &device, |d| cfg.init(d));
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([4, 8, 2, 2], normal, &device);
        let context = Tensor::<3>::random([4, 3, 6], normal, &device);
        // The target: the input plus a shift that only the context knows.
        let shift = context.clone().mean_dim(1).narrow(2, 0, 1).reshape([4, 1, 1, 1]);
        let target = x.clone() + shift.repeat_dim(1, 8).repeat_dim(2, 2).repeat_dim(3, 2);
        let mut optim = AdamWConfig::new().init();
        let loss = |net: &SpatialTransformer| {
            (net.forward(x.clone(), context.clone()) - target.clone())
                .square()
                .mean()
        };
        let first: f32 = loss(&net).into_scalar();
        for _ in 0..150 {
            let l = loss(&net);
            let grads = GradientsParams::from_grads(l.backward(), &net);
            net = optim.step(3e-3, net, grads);
        }
        let last: f32 = loss(&net).into_scalar();
        assert!(last < 0.1 * first, "loss {first} → {last}");
    }

    #[test]
    fn the_context_changes_the_output_and_its_length_is_free() {
        let device = crate::device::device();
        let cfg = TINY;
        let net = crate::device::init_seeded(3, &device, |d| cfg.init(d));
        let x = Tensor::<4>::random([2, 8, 3, 3], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let a = Tensor::<3>::random([2, 4, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<3>::random([2, 7, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let (ya, yb) = (net.forward(x.clone(), a), net.forward(x, b));
        assert_eq!(ya.dims(), [2, 8, 3, 3]);
        let d = crate::sample::to_vec(ya - yb)
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(d > 1e-3, "the output ignores the context ({d})");
    }
}
