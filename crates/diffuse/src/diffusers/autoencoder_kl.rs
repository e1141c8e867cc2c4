//! diffusers' `AutoencoderKL` folders (config.json + diffusion_pytorch_model.safetensors, the Stable
//! Diffusion VAE among them) read into the project's VAE. The layers are the same (`nn/vae.rs`, with ε 1e-6,
//! right-bottom padding before the stride-2 convolutions); only the names differ, and the attention's
//! q, k and v projections are one 1×1 convolution here.

use super::{CONFIG, Layout, Source, WEIGHTS};
use crate::nn::DownsamplePad;
use crate::nn::{Vae, VaeConfig};
use crate::safetensors_io;
use crate::{Error, Result};
use burn::prelude::Device;
use serde::Deserialize;
use std::path::Path;

/// The keys of diffusers' config.json that shape the network, with diffusers' defaults.
#[derive(Debug, Deserialize)]
pub struct AutoencoderKlConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(default = "super::default::three")]
    pub in_channels: usize,
    #[serde(default = "super::default::three")]
    pub out_channels: usize,
    #[serde(default = "down_blocks")]
    pub down_block_types: Vec<String>,
    #[serde(default = "up_blocks")]
    pub up_block_types: Vec<String>,
    #[serde(default = "channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "super::default::one")]
    pub layers_per_block: usize,
    #[serde(default = "super::default::silu")]
    pub act_fn: String,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    /// Used by pipelines, not by the VAE: latents are multiplied by it after encoding.
    #[serde(default = "scaling")]
    pub scaling_factor: f64,
    /// Subtracted by some pipelines (SD3, Flux) before scaling; diffuse does not shift latents.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "super::default::yes")]
    pub use_quant_conv: bool,
    #[serde(default = "super::default::yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "super::default::yes")]
    pub mid_block_add_attention: bool,
}

fn four() -> usize {
    4
}
fn groups() -> usize {
    32
}
fn scaling() -> f64 {
    0.18215
}
fn channels() -> Vec<usize> {
    vec![64]
}
fn down_blocks() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}
fn up_blocks() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}

impl AutoencoderKlConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        crate::atomic::read_json(&dir.join(CONFIG))
    }

    /// How many times smaller the latents' sides are than the images': one halving between levels.
    pub fn factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// The equivalent VAE shape, for images of `height`×`width`.
    pub fn vae_config(&self, height: usize, width: usize) -> Result<VaeConfig> {
        let bad = |m: String| Err(Error::Config(format!("AutoencoderKL config: {m}")));
        if let Some(c) = &self.class_name
            && c != "AutoencoderKL"
        {
            return bad(format!("_class_name is {c}, not AutoencoderKL"));
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad("block_out_channels, down_block_types and up_block_types must have one entry per level".into());
        }
        if let Some(t) = self
            .down_block_types
            .iter()
            .chain(&self.up_block_types)
            .find(|t| !matches!(t.as_str(), "DownEncoderBlock2D" | "UpDecoderBlock2D"))
        {
            return bad(format!(
                "block type {t} is not supported (DownEncoderBlock2D, UpDecoderBlock2D)"
            ));
        }
        if self.act_fn != "silu" {
            return bad(format!("act_fn {} is not supported (silu)", self.act_fn));
        }
        if self.in_channels != self.out_channels {
            return bad(format!(
                "{} input and {} output channels; diffuse's VAE gives back what it takes",
                self.in_channels, self.out_channels
            ));
        }
        let base = self.block_out_channels[0];
        if base == 0 || self.block_out_channels.iter().any(|c| c % base != 0) {
            return bad(format!(
                "block_out_channels {:?} are not multiples of the first",
                self.block_out_channels
            ));
        }
        let cfg = VaeConfig {
            in_channels: self.in_channels,
            height,
            width,
            base_channels: base,
            channel_mults: self.block_out_channels.iter().map(|c| c / base).collect(),
            blocks_per_level: self.layers_per_block,
            latent_channels: self.latent_channels,
            heads: 1,
            max_groups: self.norm_num_groups,
            norm_eps: 1e-6,
            downsample_pad: DownsamplePad::RightBottom,
            mid_attention: self.mid_block_add_attention,
            quant_conv: self.use_quant_conv,
            post_quant_conv: self.use_post_quant_conv,
        };
        if let Some(c) = self.block_out_channels.iter().find(|c| *c % self.norm_num_groups != 0) {
            return bad(format!(
                "{c} channels do not split into {} groups",
                self.norm_num_groups
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The diffusers name of one of our parameter paths (`encoder.levels.1.blocks.0.norm1.gamma` →
/// `encoder.down_blocks.1.resnets.0.norm1.weight`).
fn source(ours: &str) -> Source {
    let parts: Vec<&str> = ours.split('.').collect();
    let decoder = parts.first() == Some(&"decoder");
    let mut out: Vec<String> = Vec::new();
    let (mut qkv, mut flat) = (false, false);
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mapped: &[&str] = match *p {
            "levels" if decoder => &["up_blocks"],
            "levels" => &["down_blocks"],
            "blocks" => &["resnets"],
            "skip" => &["conv_shortcut"],
            "resample" if decoder => &["upsamplers", "0", "conv"],
            "resample" => &["downsamplers", "0", "conv"],
            "mid" => &["mid_block"],
            "block1" => &["resnets", "0"],
            "block2" => &["resnets", "1"],
            "attn" => &["attentions", "0"],
            "norm" => &["group_norm"],
            "proj" => {
                flat = true;
                &["to_out", "0"]
            }
            "qkv" => {
                qkv = true;
                &["QKV"]
            }
            "norm_out" => &["conv_norm_out"],
            // The 1×1 convolutions around the latent sit at the top level in diffusers.
            "quant" => {
                out.clear();
                &["quant_conv"]
            }
            "post_quant" => {
                out.clear();
                &["post_quant_conv"]
            }
            "gamma" if last => &["weight"],
            "beta" if last => &["bias"],
            other => {
                out.push(other.to_string());
                continue;
            }
        };
        out.extend(mapped.iter().map(|s| s.to_string()));
    }
    let name = out.join(".");
    if qkv {
        Source::Stacked(["to_q", "to_k", "to_v"].map(|p| name.replace("QKV", p)))
    } else if flat {
        Source::One(name, Layout::Flat)
    } else {
        Source::same(name)
    }
}

/// Reads a diffusers AutoencoderKL folder as a VAE for `height`×`width` images.
pub fn load(dir: &Path, height: usize, width: usize, device: &Device) -> Result<(AutoencoderKlConfig, VaeConfig, Vae)> {
    let akl = AutoencoderKlConfig::read(dir)?;
    let cfg = akl.vae_config(height, width)?;
    let path = dir.join(WEIGHTS);
    let theirs = super::read_weights(&path)?;
    let vae = cfg.init(device)?;
    let src = super::import(&safetensors_io::shapes(&vae), &theirs, source, &path)?;
    drop(theirs);
    let vae = safetensors_io::load(vae, &src, false, &path)?;
    Ok((akl, cfg, vae))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors_io::NamedTensor;
    use burn::prelude::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autoencoder_kl")
    }

    fn max_diff(a: Tensor<4>, b: &NamedTensor) -> f32 {
        assert_eq!(a.dims().to_vec(), b.shape);
        let a = crate::sample::to_vec(a);
        a.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Outputs of diffusers' AutoencoderKL (scripts/make_autoencoder_kl_fixture.py: a random 2-level config
    /// with every parameter perturbed) against the same weights read here.
    #[test]
    fn encoder_and_decoder_match_diffusers() {
        let device = crate::device::device();
        let (akl, cfg, vae) = load(&fixture(), 16, 16, &device).unwrap();
        assert_eq!((akl.scaling_factor, cfg.latent_shape()), (0.18215, [4, 8, 8]));
        let want = &safetensors_io::read(&fixture().join("parity.safetensors"))
            .unwrap()
            .groups[""];
        let t = |k: &str| Tensor::<4>::from_data(TensorData::new(want[k].data.clone(), want[k].shape.clone()), &device);
        let (mean, logvar) = vae.encode(t("input"));
        // GroupNorm ε 1e-5 instead of 1e-6 would move these by 2e-5.
        assert!(max_diff(mean, &want["posterior_mean"]) < 5e-6);
        assert!(max_diff(logvar, &want["posterior_logvar"]) < 5e-6);
        assert!(max_diff(vae.decode(t("latent")), &want["decoded"]) < 1e-5);
    }

    #[test]
    fn older_attention_names_and_wrong_configs() {
        let dir = std::env::temp_dir().join(format!("diffuse-akl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = std::fs::read(fixture().join(WEIGHTS)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let renamed: Vec<(String, safetensors::tensor::TensorView)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| (super::super::legacy(&k).unwrap_or(k), v))
            .collect();
        assert!(renamed.iter().any(|(k, _)| k.ends_with("attentions.0.query.weight")));
        std::fs::write(dir.join(WEIGHTS), safetensors::serialize(renamed, None).unwrap()).unwrap();
        std::fs::copy(fixture().join(CONFIG), dir.join(CONFIG)).unwrap();
        let device = crate::device::device();
        let x = Tensor::<4>::ones([1, 3, 16, 16], &device);
        let (new, _) = load(&fixture(), 16, 16, &device).unwrap().2.encode(x.clone());
        let (old, _) = load(&dir, 16, 16, &device).unwrap().2.encode(x);
        assert_eq!(crate::sample::to_vec(new), crate::sample::to_vec(old));
        // A config that does not describe the weights is refused, naming what does not fit.
        let config = std::fs::read_to_string(fixture().join(CONFIG)).unwrap();
        std::fs::write(
            dir.join(CONFIG),
            config.replace("\"latent_channels\": 4", "\"latent_channels\": 8"),
        )
        .unwrap();
        let e = load(&dir, 16, 16, &device).unwrap_err().to_string();
        assert!(e.contains("where the config asks for"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn our_names_map_to_diffusers_names() {
        let one = |s: &str| Source::same(s);
        assert_eq!(
            source("encoder.levels.1.blocks.0.norm1.gamma"),
            one("encoder.down_blocks.1.resnets.0.norm1.weight")
        );
        assert_eq!(
            source("decoder.levels.0.blocks.2.skip.weight"),
            one("decoder.up_blocks.0.resnets.2.conv_shortcut.weight")
        );
        assert_eq!(
            source("encoder.levels.0.resample.bias"),
            one("encoder.down_blocks.0.downsamplers.0.conv.bias")
        );
        assert_eq!(
            source("decoder.levels.1.resample.weight"),
            one("decoder.up_blocks.1.upsamplers.0.conv.weight")
        );
        assert_eq!(
            source("encoder.mid.block2.conv1.bias"),
            one("encoder.mid_block.resnets.1.conv1.bias")
        );
        assert_eq!(
            source("decoder.mid.attn.norm.beta"),
            one("decoder.mid_block.attentions.0.group_norm.bias")
        );
        assert_eq!(
            source("decoder.mid.attn.proj.weight"),
            Source::One("decoder.mid_block.attentions.0.to_out.0.weight".into(), Layout::Flat)
        );
        assert_eq!(
            source("encoder.mid.attn.qkv.bias"),
            Source::Stacked([
                "encoder.mid_block.attentions.0.to_q.bias".into(),
                "encoder.mid_block.attentions.0.to_k.bias".into(),
                "encoder.mid_block.attentions.0.to_v.bias".into(),
            ])
        );
        assert_eq!(source("encoder.quant.weight"), one("quant_conv.weight"));
        assert_eq!(source("decoder.post_quant.bias"), one("post_quant_conv.bias"));
        assert_eq!(source("encoder.norm_out.gamma"), one("encoder.conv_norm_out.weight"));
        assert_eq!(
            super::super::legacy("encoder.mid_block.attentions.0.to_out.0.weight").as_deref(),
            Some("encoder.mid_block.attentions.0.proj_attn.weight")
        );
    }

    #[test]
    fn unsupported_configs_are_named() {
        let cfg = |json: &str| serde_json::from_str::<AutoencoderKlConfig>(json).unwrap();
        let e = |json: &str| cfg(json).vae_config(16, 16).unwrap_err().to_string();
        assert!(e(r#"{"_class_name": "AutoencoderTiny"}"#).contains("not AutoencoderKL"));
        assert!(e(r#"{"act_fn": "gelu"}"#).contains("gelu"));
        assert!(e(r#"{"out_channels": 1}"#).contains("output channels"));
        assert!(e(r#"{"block_out_channels": [64, 96], "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}"#).contains("multiples"));
        // The Stable Diffusion VAE's shape: 83,653,863 parameters (diffusers' count).
        let sd = cfg(r#"{"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#);
        let net = sd.vae_config(64, 64).unwrap();
        assert_eq!(net.factor(), 8);
        use burn::module::Module;
        assert_eq!(net.init(&crate::device::device()).unwrap().num_params(), 83_653_863);
    }
}
