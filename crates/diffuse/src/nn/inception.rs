//! The FID network: Inception-v3 as TensorFlow's 2015-12-05 graph computes it up to `pool_3` (2048
//! features), the network of Heusel et al.'s FID. Read from the weights file that the FID reference ports
//! carry (`fid_inception_2015-12-05_features.safetensors`: per convolution a kernel and BatchNorm's β, mean
//! and variance, no γ, ε 0.001). BatchNorm is folded into each convolution at load time.
//!
//! Layer names and order follow that file (`net.layers.mixed_4.tower_1.conv_3`, …). The graph's quirks are
//! kept: average pools that divide by in-image taps only, and a max pool in the last block's pool branch.

use crate::safetensors_io::{self, NamedTensor};
use crate::{Error, Result};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Input size; other sizes are resized to it first.
pub const SIZE: usize = 299;
/// Feature dimension.
pub const FEATURES: usize = 2048;
const PREFIX: &str = "net.layers.";
const BN_EPS: f64 = 1e-3;

/// The convolutions with stride 2, and those without padding; all others pad to keep the size.
const STRIDE_2: [&str; 5] = [
    "conv",
    "mixed_3.conv",
    "mixed_3.tower.conv_2",
    "mixed_8.tower.conv_1",
    "mixed_8.tower_1.conv_3",
];
const UNPADDED: [&str; 2] = ["conv_1", "conv_4"];

/// A convolution with its BatchNorm folded in, then ReLU.
struct ConvBn {
    weight: Tensor<4>,
    bias: Tensor<1>,
    options: ConvOptions<2>,
}

impl ConvBn {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(crate::kernels::conv2d_with(
            x,
            self.weight.clone(),
            self.bias.clone(),
            self.options.clone(),
        ))
    }
}

pub struct Inception {
    convs: HashMap<String, ConvBn>,
}

fn max_pool(x: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([3, 3])
            .with_stride([stride, stride])
            .with_padding([padding, padding]),
    )
}

/// 3×3 average, stride 1, dividing by the taps inside the image (TF's SAME average pooling).
fn avg_pool(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(
        x,
        AvgPoolOptions::new([3, 3])
            .with_stride([1, 1])
            .with_padding([1, 1])
            .with_count_include_pad(false),
    )
}

impl Inception {
    /// Reads the weights file; every convolution must be there with its three BatchNorm tensors.
    pub fn load(path: &Path, device: &Device) -> Result<Inception> {
        let contents = safetensors_io::read(path)?;
        let tensors = contents
            .groups
            .get("")
            .ok_or_else(|| Error::checkpoint(path, "holds no tensors"))?;
        let mut convs = HashMap::new();
        for (key, weight) in tensors {
            let Some(name) = key.strip_prefix(PREFIX).and_then(|k| k.strip_suffix(".weight")) else {
                continue;
            };
            convs.insert(name.to_string(), fold(name, weight, tensors, path, device)?);
        }
        let net = Inception { convs };
        // Fails on a file that lacks a layer, naming it, before any image is processed.
        for name in net.names() {
            if !net.convs.contains_key(&name) {
                return Err(Error::checkpoint(path, format!("has no convolution {PREFIX}{name}")));
            }
        }
        if net.convs.len() != 94 {
            return Err(Error::checkpoint(
                path,
                format!("holds {} convolutions, not Inception's 94", net.convs.len()),
            ));
        }
        Ok(net)
    }

    fn c(&self, name: &str, x: Tensor<4>) -> Tensor<4> {
        self.convs[name].forward(x)
    }

    /// Applies the named convolutions one after another.
    fn chain(&self, prefix: &str, names: &[&str], mut x: Tensor<4>) -> Tensor<4> {
        for n in names {
            x = self.c(&format!("{prefix}.{n}"), x);
        }
        x
    }

    /// Mixed_5b–5d: 1×1; 1×1 → 5×5; 1×1 → 3×3 → 3×3; average pool → 1×1.
    fn block_a(&self, p: &str, x: Tensor<4>) -> Tensor<4> {
        Tensor::cat(
            vec![
                self.c(&format!("{p}.conv"), x.clone()),
                self.chain(p, &["tower.conv", "tower.conv_1"], x.clone()),
                self.chain(p, &["tower_1.conv", "tower_1.conv_1", "tower_1.conv_2"], x.clone()),
                self.c(&format!("{p}.tower_2.conv"), avg_pool(x)),
            ],
            1,
        )
    }

    /// Mixed_6a: 3×3 stride 2; 1×1 → 3×3 → 3×3 stride 2; max pool stride 2.
    fn block_b(&self, p: &str, x: Tensor<4>) -> Tensor<4> {
        Tensor::cat(
            vec![
                self.c(&format!("{p}.conv"), x.clone()),
                self.chain(p, &["tower.conv", "tower.conv_1", "tower.conv_2"], x.clone()),
                max_pool(x, 2, 0),
            ],
            1,
        )
    }

    /// Mixed_6b–6e: 1×1; 1×1 → 1×7 → 7×1; 1×1 → 7×1 → 1×7 → 7×1 → 1×7; average pool → 1×1.
    fn block_c(&self, p: &str, x: Tensor<4>) -> Tensor<4> {
        let double = [
            "tower_1.conv",
            "tower_1.conv_1",
            "tower_1.conv_2",
            "tower_1.conv_3",
            "tower_1.conv_4",
        ];
        Tensor::cat(
            vec![
                self.c(&format!("{p}.conv"), x.clone()),
                self.chain(p, &["tower.conv", "tower.conv_1", "tower.conv_2"], x.clone()),
                self.chain(p, &double, x.clone()),
                self.c(&format!("{p}.tower_2.conv"), avg_pool(x)),
            ],
            1,
        )
    }

    /// Mixed_7a: 1×1 → 3×3 stride 2; 1×1 → 1×7 → 7×1 → 3×3 stride 2; max pool stride 2.
    fn block_d(&self, p: &str, x: Tensor<4>) -> Tensor<4> {
        let tower_1 = ["tower_1.conv", "tower_1.conv_1", "tower_1.conv_2", "tower_1.conv_3"];
        Tensor::cat(
            vec![
                self.chain(p, &["tower.conv", "tower.conv_1"], x.clone()),
                self.chain(p, &tower_1, x.clone()),
                max_pool(x, 2, 0),
            ],
            1,
        )
    }

    /// Mixed_7b–7c: 1×1; 1×1 → (1×3, 3×1); 1×1 → 3×3 → (1×3, 3×1); pool → 1×1. The pool averages in
    /// Mixed_7b and takes the maximum in Mixed_7c, as the TF graph does.
    fn block_e(&self, p: &str, x: Tensor<4>, max: bool) -> Tensor<4> {
        let a = self.c(&format!("{p}.tower_conv"), x.clone());
        let b = self.chain(p, &["tower_1_conv", "tower_1_conv_1"], x.clone());
        let pooled = if max {
            max_pool(x.clone(), 1, 1)
        } else {
            avg_pool(x.clone())
        };
        Tensor::cat(
            vec![
                self.c(&format!("{p}.conv"), x),
                self.c(&format!("{p}.tower_mixed_conv"), a.clone()),
                self.c(&format!("{p}.tower_mixed_conv_1"), a),
                self.c(&format!("{p}.tower_1_mixed_conv"), b.clone()),
                self.c(&format!("{p}.tower_1_mixed_conv_1"), b),
                self.c(&format!("{p}.tower_2_conv"), pooled),
            ],
            1,
        )
    }

    /// Layer outputs up to Mixed_7c, for checking against the reference stage by stage.
    fn stages(&self, x: Tensor<4>, mut tap: impl FnMut(&str, &Tensor<4>)) -> Tensor<4> {
        let mut x = self.c("conv", x);
        tap("Conv2d_1a_3x3", &x);
        x = max_pool(self.c("conv_2", self.c("conv_1", x)), 2, 0);
        x = max_pool(self.c("conv_4", self.c("conv_3", x)), 2, 0);
        for (i, m) in ["mixed", "mixed_1", "mixed_2"].iter().enumerate() {
            x = self.block_a(m, x);
            if i == 0 {
                tap("Mixed_5b", &x);
            }
        }
        x = self.block_b("mixed_3", x);
        tap("Mixed_6a", &x);
        for m in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"] {
            x = self.block_c(m, x);
        }
        tap("Mixed_6e", &x);
        x = self.block_d("mixed_8", x);
        tap("Mixed_7a", &x);
        x = self.block_e("mixed_9", x, false);
        self.block_e("mixed_10", x, true)
    }

    /// Images [b, 3, 299, 299] scaled as (v − 128) / 128 from 0..255 → pool_3 features [b, 2048].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, ..] = x.dims();
        // The graph's 8×8 average pool over the 8×8 map is the spatial mean.
        self.stages(x, |_, _| {}).mean_dim(3).mean_dim(2).reshape([b, FEATURES])
    }

    /// Per-channel spatial means of the named stages' outputs (Conv2d_1a_3x3, Mixed_5b, Mixed_6a, Mixed_6e,
    /// Mixed_7a), each [b, channels].
    pub fn stage_means(&self, x: Tensor<4>) -> BTreeMap<String, Tensor<2>> {
        let mut out = BTreeMap::new();
        self.stages(x, |name, t| {
            let [b, c, ..] = t.dims();
            out.insert(name.to_string(), t.clone().mean_dim(3).mean_dim(2).reshape([b, c]));
        });
        out
    }

    /// Every convolution's name, in the order the forward pass uses them.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["conv", "conv_1", "conv_2", "conv_3", "conv_4"]
            .map(String::from)
            .to_vec();
        let add = |names: &mut Vec<String>, p: &str, list: &[&str]| {
            names.extend(list.iter().map(|n| format!("{p}.{n}")));
        };
        for p in ["mixed", "mixed_1", "mixed_2"] {
            add(
                &mut names,
                p,
                &["conv", "tower.conv", "tower.conv_1", "tower_1.conv", "tower_1.conv_1"],
            );
            add(&mut names, p, &["tower_1.conv_2", "tower_2.conv"]);
        }
        add(
            &mut names,
            "mixed_3",
            &["conv", "tower.conv", "tower.conv_1", "tower.conv_2"],
        );
        for p in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"] {
            add(
                &mut names,
                p,
                &["conv", "tower.conv", "tower.conv_1", "tower.conv_2", "tower_2.conv"],
            );
            add(
                &mut names,
                p,
                &["tower_1.conv", "tower_1.conv_1", "tower_1.conv_2", "tower_1.conv_3"],
            );
            add(&mut names, p, &["tower_1.conv_4"]);
        }
        add(
            &mut names,
            "mixed_8",
            &["tower.conv", "tower.conv_1", "tower_1.conv", "tower_1.conv_1"],
        );
        add(&mut names, "mixed_8", &["tower_1.conv_2", "tower_1.conv_3"]);
        for p in ["mixed_9", "mixed_10"] {
            add(
                &mut names,
                p,
                &[
                    "conv",
                    "tower_conv",
                    "tower_1_conv",
                    "tower_1_conv_1",
                    "tower_mixed_conv",
                ],
            );
            add(
                &mut names,
                p,
                &["tower_mixed_conv_1", "tower_1_mixed_conv", "tower_1_mixed_conv_1"],
            );
            add(&mut names, p, &["tower_2_conv"]);
        }
        names
    }
}

/// w' = w / √(var + ε) per output channel, b' = β − mean / √(var + ε); computed in f64.
fn fold(
    name: &str,
    weight: &NamedTensor,
    all: &BTreeMap<String, NamedTensor>,
    path: &Path,
    device: &Device,
) -> Result<ConvBn> {
    let &[out, _, kh, kw] = weight.shape.as_slice() else {
        return Err(Error::checkpoint(path, format!("{name}.weight is not a 4-d kernel")));
    };
    let bn = |what: &str| -> Result<&Vec<f32>> {
        let t = all
            .get(&format!("{PREFIX}{name}.{what}"))
            .ok_or_else(|| Error::checkpoint(path, format!("has no {PREFIX}{name}.{what}")))?;
        if t.shape != [out] {
            return Err(Error::checkpoint(path, format!("{name}.{what} is not [{out}]")));
        }
        Ok(&t.data)
    };
    let (beta, mean, var) = (bn("beta")?, bn("mean")?, bn("var")?);
    let inv: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + BN_EPS).sqrt()).collect();
    let per = weight.data.len() / out;
    let w: Vec<f32> = weight
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * inv[i / per]) as f32)
        .collect();
    let b: Vec<f32> = (0..out)
        .map(|o| (beta[o] as f64 - mean[o] as f64 * inv[o]) as f32)
        .collect();
    let stride = if STRIDE_2.contains(&name) { 2 } else { 1 };
    let pad = |k: usize| {
        if UNPADDED.contains(&name) || stride == 2 {
            0
        } else {
            (k - 1) / 2
        }
    };
    Ok(ConvBn {
        weight: Tensor::from_data(TensorData::new(w, weight.shape.clone()), device),
        bias: Tensor::from_data(TensorData::new(b, [out]), device),
        options: ConvOptions::new([stride, stride], [pad(kh), pad(kw)], [1, 1], 1),
    })
}
