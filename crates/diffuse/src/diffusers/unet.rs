//! diffusers' `UNet2DModel` (the network of `DDPMPipeline` and `DDIMPipeline`) as the project's UNet, and back;
//! and `UNet2DConditionModel` (Stable Diffusion 1.x's), whose cross-attention blocks are the project's UNet with
//! a context. The layers are the same (ResBlocks with a time shift or scale-shift, attention with GroupNorm,
//! spatial transformers, skips, nearest ×2 upsampling); the config names them per level instead of per
//! resolution, and the self-attention's q, k and v are three `Linear`s there and one 1×1 convolution here.

use super::{Layout, Source};
use crate::nn::{DownsamplePad, UNetConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The keys of a `UNet2DModel` or `UNet2DConditionModel` config.json, with diffusers' defaults (diffusers 0.42;
/// [`UNet2DModelConfig::read`] puts in UNet2DConditionModel's where they differ).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UNet2DModelConfig {
    #[serde(rename = "_class_name", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// An image side, or [height, width].
    #[serde(default)]
    pub sample_size: Option<Value>,
    #[serde(default = "super::default::three")]
    pub in_channels: usize,
    #[serde(default = "super::default::three")]
    pub out_channels: usize,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "super::default::yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default = "down_blocks")]
    pub down_block_types: Vec<String>,
    #[serde(default = "mid_block")]
    pub mid_block_type: Option<String>,
    #[serde(default = "up_blocks")]
    pub up_block_types: Vec<String>,
    #[serde(default = "channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    pub layers_per_block: usize,
    #[serde(default = "one_f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "super::default::one")]
    pub downsample_padding: usize,
    #[serde(default = "conv")]
    pub downsample_type: String,
    #[serde(default = "conv")]
    pub upsample_type: String,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "super::default::silu")]
    pub act_fn: String,
    /// UNet2DModel: channels per head (absent: 8; null: one head per attention block). UNet2DConditionModel: heads
    /// per block.
    #[serde(default = "eight")]
    pub attention_head_dim: Option<PerLevel>,
    #[serde(default = "groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default)]
    pub attn_norm_num_groups: Option<usize>,
    #[serde(default = "eps")]
    pub norm_eps: f64,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "super::default::yes")]
    pub add_attention: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default)]
    pub num_train_timesteps: Option<usize>,
    // UNet2DConditionModel only.
    /// Width of the text encoding the cross-attention blocks attend to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_attention_dim: Option<usize>,
    /// Heads per block; absent: `attention_head_dim`, which UNet2DConditionModel reads as a head count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<PerLevel>,
    /// The keys of UNet2DConditionModel options diffuse's UNet does not have, refused when not at their
    /// defaults (SD 2's linear projections, SDXL's deeper transformers and added embeddings, …).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A value given once for the model or once per level (`[5, 10, 20, 20]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerLevel {
    One(usize),
    Each(Vec<usize>),
}

impl PerLevel {
    /// The one value, where every level has the same.
    fn uniform(&self) -> Option<usize> {
        match self {
            PerLevel::One(v) => Some(*v),
            PerLevel::Each(v) => v.first().copied().filter(|f| v.iter().all(|x| x == f)),
        }
    }
}

/// Whether a config's value means `want`, as diffusers reads it: numbers by value (1 and 1.0), a per-level list
/// by each of its entries, null as false.
fn same(v: &Value, want: &Value) -> bool {
    match (v, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(items), w) if !w.is_array() => items.iter().all(|i| same(i, w)),
        (Value::Null, Value::Bool(false)) => true,
        (a, b) => a == b,
    }
}

/// The two UNet classes, by the `_class_name` of their configs.
const PIXEL: &str = "UNet2DModel";
const TEXT: &str = "UNet2DConditionModel";

/// UNet2DConditionModel's defaults where they differ from UNet2DModel's (diffusers 0.42): Stable Diffusion's
/// shape, with latents in and out.
fn text_defaults() -> Value {
    serde_json::json!({
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [320, 640, 1280, 1280],
        "cross_attention_dim": 1280,
    })
}

/// UNet2DConditionModel keys with the only value diffuse's UNet can be (null where the option is off), compared
/// by [`same`].
const TEXT_FIXED: [(&str, &str); 18] = [
    ("use_linear_projection", "false"),
    ("only_cross_attention", "false"),
    ("dual_cross_attention", "false"),
    ("transformer_layers_per_block", "1"),
    ("reverse_transformer_layers_per_block", "null"),
    ("encoder_hid_dim", "null"),
    ("encoder_hid_dim_type", "null"),
    ("addition_embed_type", "null"),
    ("addition_time_embed_dim", "null"),
    ("time_cond_proj_dim", "null"),
    ("timestep_post_act", "null"),
    ("time_embedding_act_fn", "null"),
    ("projection_class_embeddings_input_dim", "null"),
    ("class_embeddings_concat", "false"),
    ("conv_in_kernel", "3"),
    ("conv_out_kernel", "3"),
    ("attention_type", "\"default\""),
    ("cross_attention_norm", "null"),
];

fn two() -> usize {
    2
}
fn one_f() -> f64 {
    1.0
}
fn eight() -> Option<PerLevel> {
    Some(PerLevel::One(8))
}
fn groups() -> Option<usize> {
    Some(32)
}
fn eps() -> f64 {
    1e-5
}
fn positional() -> String {
    "positional".into()
}
fn conv() -> String {
    "conv".into()
}
fn default_shift() -> String {
    "default".into()
}
fn mid_block() -> Option<String> {
    Some("UNetMidBlock2D".into())
}
fn channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn down_blocks() -> Vec<String> {
    ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
        .map(String::from)
        .to_vec()
}
fn up_blocks() -> Vec<String> {
    ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        .map(String::from)
        .to_vec()
}

const DOWN: [&str; 2] = ["DownBlock2D", "AttnDownBlock2D"];
const UP: [&str; 2] = ["UpBlock2D", "AttnUpBlock2D"];
/// A text UNet's blocks with attention (spatial transformers), in place of `DOWN[1]`, `UP[1]` and the middle.
const TEXT_BLOCKS: [&str; 3] = ["CrossAttnDownBlock2D", "CrossAttnUpBlock2D", "UNetMidBlock2DCrossAttn"];

impl UNet2DModelConfig {
    /// Reads a `UNet2DModel` or `UNet2DConditionModel` config, each with its own class's defaults.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        Self::parse(crate::atomic::read_json(path)?).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// [`UNet2DModelConfig::read`] of a config already parsed.
    pub fn parse(mut v: Value) -> Result<Self> {
        if v["_class_name"] == TEXT
            && let (Some(obj), Value::Object(defaults)) = (v.as_object_mut(), text_defaults())
        {
            for (k, d) in defaults {
                obj.entry(k).or_insert(d);
            }
        }
        serde_json::from_value(v).map_err(|e| Error::Config(e.to_string()))
    }

    /// Whether this is a UNet2DConditionModel (Stable Diffusion's), which attends to a text.
    pub fn is_text(&self) -> bool {
        self.class_name.as_deref() == Some(TEXT)
    }

    /// The image (height, width) the config names, if it names one.
    pub fn sample_size(&self) -> Result<Option<(usize, usize)>> {
        let side = |v: &Value| v.as_u64().filter(|s| *s > 0).map(|s| s as usize);
        let size = match &self.sample_size {
            None | Some(Value::Null) => return Ok(None),
            Some(v @ Value::Number(_)) => side(v).map(|s| (s, s)),
            Some(Value::Array(a)) if a.len() == 2 => side(&a[0]).zip(side(&a[1])),
            Some(_) => None,
        };
        match (size, &self.sample_size) {
            (Some(s), _) => Ok(Some(s)),
            (None, other) => Err(Error::Config(format!(
                "UNet2DModel config: sample_size {} is neither a positive side nor [height, width]",
                other.clone().unwrap_or_default()
            ))),
        }
    }

    /// The project's UNet of this shape for `height`×`width` images. Everything it cannot express is refused by
    /// its key.
    pub fn unet_config(&self, height: usize, width: usize) -> Result<UNetConfig> {
        let class = self.class_name.as_deref().unwrap_or(PIXEL);
        let bad = |m: String| Err(Error::Config(format!("{class} config: {m}")));
        if let Some(c) = &self.class_name
            && c != PIXEL
            && c != TEXT
        {
            return bad(format!("_class_name is {c}, not {PIXEL} or {TEXT}"));
        }
        let text = self.is_text();
        // A text UNet's attention is every spatial transformer, a pixel UNet's self-attention.
        let (down, up, mid) = if text {
            ([DOWN[0], TEXT_BLOCKS[0]], [UP[0], TEXT_BLOCKS[1]], TEXT_BLOCKS[2])
        } else {
            (DOWN, UP, "UNetMidBlock2D")
        };
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad("block_out_channels, down_block_types and up_block_types must have one entry per level".into());
        }
        if let Some(t) = self.down_block_types.iter().find(|t| !down.contains(&t.as_str())) {
            return bad(format!("down block type {t} is not supported ({})", down.join(", ")));
        }
        if let Some(t) = self.up_block_types.iter().find(|t| !up.contains(&t.as_str())) {
            return bad(format!("up block type {t} is not supported ({})", up.join(", ")));
        }
        match self.mid_block_type.as_deref() {
            Some(m) if m == mid => {}
            other => return bad(format!("mid_block_type {other:?} is not supported ({mid})")),
        }
        if let Some((key, want)) = TEXT_FIXED.iter().find(|(key, want)| {
            let want = serde_json::from_str::<Value>(want).expect("a JSON value");
            self.other.get(*key).is_some_and(|v| !same(v, &want))
        }) {
            return bad(format!("{key} {} is not supported ({want})", self.other[*key]));
        }
        if text && self.cross_attention_dim.is_none_or(|d| d == 0) {
            return bad("cross_attention_dim must be a positive width".into());
        }
        if text && self.num_class_embeds.is_some() {
            // Prompts are the condition; class labels beside them have no null class to guide from here.
            return bad("num_class_embeds is not supported with cross-attention".into());
        }
        // UNet2DModel's attention_head_dim is channels per head; UNet2DConditionModel reads it as a head count
        // where num_attention_heads is absent (a naming diffusers keeps for Stable Diffusion's configs).
        let per_level = |v: &Option<PerLevel>, key: &str| match v {
            None => Ok(None),
            Some(p) => p.uniform().filter(|h| *h > 0).map(Some).ok_or_else(|| {
                let given = match p {
                    PerLevel::One(v) => v.to_string(),
                    PerLevel::Each(v) => format!("{v:?}"),
                };
                Error::Config(format!(
                    "{class} config: {key} {given} is not one positive value for every level"
                ))
            }),
        };
        let (heads, head_dim) = if text {
            let heads = match per_level(&self.num_attention_heads, "num_attention_heads")? {
                Some(h) => h,
                None => per_level(&self.attention_head_dim, "attention_head_dim")?.unwrap_or(1),
            };
            (heads, None)
        } else {
            (1, per_level(&self.attention_head_dim, "attention_head_dim")?)
        };
        let unsupported = [
            (
                self.time_embedding_type != "positional",
                "time_embedding_type (positional)",
            ),
            (self.act_fn != "silu", "act_fn (silu)"),
            (self.center_input_sample, "center_input_sample (false)"),
            (self.downsample_type != "conv", "downsample_type (conv)"),
            (self.upsample_type != "conv", "upsample_type (conv)"),
            (self.mid_block_scale_factor != 1.0, "mid_block_scale_factor (1)"),
            (!self.add_attention, "add_attention (true)"),
            (
                self.class_embed_type.is_some(),
                "class_embed_type (null, with num_class_embeds)",
            ),
            (self.downsample_padding > 1, "downsample_padding (0 or 1)"),
        ];
        if let Some((_, key)) = unsupported.iter().find(|(refused, _)| *refused) {
            return bad(format!("this value of {key} is not supported"));
        }
        let scale_shift = match self.resnet_time_scale_shift.as_str() {
            "default" => false,
            "scale_shift" => true,
            other => {
                return bad(format!(
                    "resnet_time_scale_shift {other} is not supported (default, scale_shift)"
                ));
            }
        };
        if self.in_channels != self.out_channels {
            return bad(format!(
                "{} input and {} output channels (a learned variance?); diffuse's UNet predicts what it takes",
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
        if let Some(d) = self.time_embedding_dim.filter(|d| *d != 4 * base) {
            return bad(format!(
                "time_embedding_dim {d} is not 4 × {base} (the only one supported)"
            ));
        }
        let Some(groups) = self.norm_num_groups else {
            return bad("norm_num_groups null is not supported".into());
        };
        if let Some(c) = self.block_out_channels.iter().find(|c| groups == 0 || *c % groups != 0) {
            return bad(format!("{c} channels do not split into {groups} norm_num_groups"));
        }
        if let Some(g) = self.attn_norm_num_groups.filter(|g| *g != groups) {
            return bad(format!(
                "attn_norm_num_groups {g} differs from norm_num_groups {groups}"
            ));
        }
        if scale_shift && self.attn_norm_num_groups.is_some() {
            // diffusers then keeps the middle attention's GroupNorm, which diffuse's scale-shift UNet drops.
            return bad("attn_norm_num_groups with resnet_time_scale_shift scale_shift is not supported".into());
        }
        // Level i is at height >> i; the up path's block i is level n − 1 − i.
        let at = |attn: &dyn Fn(usize) -> bool| (0..n).filter(|&i| attn(i)).map(|i| height >> i).collect::<Vec<_>>();
        let down_at = at(&|i| self.down_block_types[i] == down[1]);
        let up_at = at(&|i| self.up_block_types[n - 1 - i] == up[1]);
        let cfg = UNetConfig {
            in_channels: self.in_channels,
            height,
            width,
            base_channels: base,
            channel_mults: self.block_out_channels.iter().map(|c| c / base).collect(),
            blocks_per_level: self.layers_per_block,
            down_attention: down_at == up_at,
            down_attention_resolutions: (down_at != up_at).then_some(down_at),
            attention_resolutions: up_at,
            heads,
            head_dim,
            max_groups: groups,
            dropout: self.dropout,
            num_classes: self.num_class_embeds,
            null_class: false,
            norm_eps: self.norm_eps,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            scale_shift,
            downsample_pad: if self.downsample_padding == 0 {
                DownsamplePad::RightBottom
            } else {
                DownsamplePad::Centered
            },
            context_dim: self.cross_attention_dim.filter(|_| text),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `UNet2DModel` config of one of the project's UNets: every key written, so that the file does not
    /// depend on diffusers' defaults. A conditional model's null class is its last class embedding.
    pub fn of(cfg: &UNetConfig) -> Result<UNet2DModelConfig> {
        if cfg.context_dim.is_some() {
            return Err(Error::Config(
                "a text-conditioned UNet: export writes UNet2DModel, which has no cross-attention".into(),
            ));
        }
        let levels = cfg.channel_mults.len();
        // diffusers names one head size per model; ours may name a head count, which gives one size if every
        // block with attention (and the middle) has the same width.
        let width = |level: usize| cfg.base_channels * cfg.channel_mults[level];
        let head_dim = match cfg.head_dim {
            Some(d) => Some(d),
            // One head everywhere is diffusers' null head size.
            None if cfg.heads == 1 => None,
            None => {
                let attended = (0..levels).filter(|&l| cfg.attends_at_level(true, l) || cfg.attends_at_level(false, l));
                let mut dims: Vec<usize> = attended.chain([levels - 1]).map(|l| width(l) / cfg.heads).collect();
                dims.sort_unstable();
                dims.dedup();
                match dims[..] {
                    [d] => Some(d),
                    _ => {
                        return Err(Error::Config(format!(
                            "{} heads make heads of {dims:?} channels at different levels; diffusers' UNet2DModel has \
                             one head size per model",
                            cfg.heads
                        )));
                    }
                }
            }
        };
        let block = |down: bool, level: usize| {
            let attn = cfg.attends_at_level(down, level);
            match (down, attn) {
                (true, false) => DOWN[0],
                (true, true) => DOWN[1],
                (false, false) => UP[0],
                (false, true) => UP[1],
            }
            .to_string()
        };
        let groups = cfg.max_groups;
        let widths: Vec<usize> = cfg.channel_mults.iter().map(|m| m * cfg.base_channels).collect();
        if cfg.channel_mults[0] != 1 {
            return Err(Error::Config(format!(
                "channel multipliers {:?}: diffusers' first level has the input convolution's width, so they must \
                 start at 1",
                cfg.channel_mults
            )));
        }
        // Every GroupNorm (the up path's too, over concatenated skips) sees a multiple of the base width;
        // diffusers splits each into exactly norm_num_groups groups.
        if !cfg.base_channels.is_multiple_of(groups) {
            return Err(Error::Config(format!(
                "{} base channels do not split into {groups} groups, as diffusers' GroupNorm needs",
                cfg.base_channels
            )));
        }
        Ok(UNet2DModelConfig {
            class_name: Some("UNet2DModel".into()),
            sample_size: Some(if cfg.height == cfg.width {
                Value::from(cfg.height)
            } else {
                Value::from(vec![cfg.height, cfg.width])
            }),
            in_channels: cfg.in_channels,
            out_channels: cfg.in_channels,
            center_input_sample: false,
            time_embedding_type: positional(),
            time_embedding_dim: Some(4 * cfg.base_channels),
            freq_shift: cfg.freq_shift,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            down_block_types: (0..levels).map(|l| block(true, l)).collect(),
            mid_block_type: mid_block(),
            up_block_types: (0..levels).rev().map(|l| block(false, l)).collect(),
            block_out_channels: widths,
            layers_per_block: cfg.blocks_per_level,
            mid_block_scale_factor: 1.0,
            downsample_padding: match cfg.downsample_pad {
                DownsamplePad::Centered => 1,
                DownsamplePad::RightBottom => 0,
            },
            downsample_type: conv(),
            upsample_type: conv(),
            dropout: cfg.dropout,
            act_fn: super::default::silu(),
            attention_head_dim: head_dim.map(PerLevel::One),
            norm_num_groups: Some(groups),
            attn_norm_num_groups: None,
            norm_eps: cfg.norm_eps,
            resnet_time_scale_shift: if cfg.scale_shift { "scale_shift" } else { "default" }.into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: cfg.num_classes.map(|k| k + usize::from(cfg.null_class)),
            num_train_timesteps: None,
            cross_attention_dim: None,
            num_attention_heads: None,
            other: Default::default(),
        })
    }
}

/// The diffusers name of one of our UNet parameter paths (`down.1.attns.0.qkv.weight` →
/// `down_blocks.1.attentions.0.to_{q,k,v}.weight`).
pub fn source(ours: &str) -> Source {
    let parts: Vec<&str> = ours.split('.').collect();
    // A spatial transformer (`down.0.texts.1.*`, `mid_text.*`): the block's attention, named inside as
    // diffusers' Transformer2DModel.
    let text = match parts[..] {
        [level @ ("down" | "up"), l, "texts", i, ..] => Some((format!("{level}_blocks.{l}.attentions.{i}"), 4)),
        ["mid_text", ..] => Some(("mid_block.attentions.0".to_string(), 1)),
        _ => None,
    };
    if let Some((block, inner)) = text {
        let Source::One(name, layout) = crate::nn::transformer::source(&parts[inner..].join(".")) else {
            unreachable!("a transformer's parameters are single tensors")
        };
        return Source::One(format!("{block}.{name}"), layout);
    }
    let n = parts.len();
    let mut out: Vec<&str> = Vec::new();
    let (mut layout, mut qkv) = (Layout::Same, false);
    for (i, &p) in parts.iter().enumerate() {
        let mapped: &[&str] = match (i, p) {
            (0, "time") => &["time_embedding"],
            (0, "down") => &["down_blocks"],
            (0, "up") => &["up_blocks"],
            (_, "down") => &["downsamplers", "0", "conv"],
            (_, "up") => &["upsamplers", "0", "conv"],
            // A ResBlock's time projection, and the time MLP: Linear layers.
            (_, "time") => {
                layout = Layout::Linear;
                &["time_emb_proj"]
            }
            (_, "lin1" | "lin2") => {
                layout = Layout::Linear;
                if p == "lin1" { &["linear_1"] } else { &["linear_2"] }
            }
            (_, "class_emb") => &["class_embedding"],
            (_, "blocks") => &["resnets"],
            (_, "attns") => &["attentions"],
            (_, "skip") => &["conv_shortcut"],
            (_, "mid1") => &["mid_block", "resnets", "0"],
            (_, "mid_attn") => &["mid_block", "attentions", "0"],
            (_, "mid2") => &["mid_block", "resnets", "1"],
            (_, "norm") => &["group_norm"],
            (_, "proj") => {
                layout = Layout::Flat;
                &["to_out", "0"]
            }
            (_, "qkv") => {
                qkv = true;
                &["QKV"]
            }
            (_, "norm_out") => &["conv_norm_out"],
            (i, "gamma") if i + 1 == n => &["weight"],
            (i, "beta") if i + 1 == n => &["bias"],
            _ => std::slice::from_ref(&parts[i]),
        };
        out.extend_from_slice(mapped);
    }
    let name = out.join(".");
    if qkv {
        return Source::Stacked(["to_q", "to_k", "to_v"].map(|p| name.replace("QKV", p)));
    }
    // A Linear's bias is laid out alike.
    if layout == Layout::Linear && parts.last() != Some(&"weight") {
        layout = Layout::Same;
    }
    Source::One(name, layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names_map_to_diffusers_names() {
        let one = |s: &str| Source::same(s);
        let cases = [
            (
                "time.lin1.weight",
                Source::One("time_embedding.linear_1.weight".into(), Layout::Linear),
            ),
            ("time.lin2.bias", one("time_embedding.linear_2.bias")),
            ("class_emb.weight", one("class_embedding.weight")),
            ("conv_in.weight", one("conv_in.weight")),
            (
                "down.0.blocks.1.norm1.gamma",
                one("down_blocks.0.resnets.1.norm1.weight"),
            ),
            (
                "down.2.blocks.0.time.weight",
                Source::One("down_blocks.2.resnets.0.time_emb_proj.weight".into(), Layout::Linear),
            ),
            (
                "down.2.blocks.0.time.bias",
                one("down_blocks.2.resnets.0.time_emb_proj.bias"),
            ),
            (
                "down.1.blocks.0.skip.weight",
                one("down_blocks.1.resnets.0.conv_shortcut.weight"),
            ),
            ("down.0.down.weight", one("down_blocks.0.downsamplers.0.conv.weight")),
            (
                "down.1.attns.0.norm.beta",
                one("down_blocks.1.attentions.0.group_norm.bias"),
            ),
            (
                "down.1.attns.0.qkv.bias",
                Source::Stacked([
                    "down_blocks.1.attentions.0.to_q.bias".into(),
                    "down_blocks.1.attentions.0.to_k.bias".into(),
                    "down_blocks.1.attentions.0.to_v.bias".into(),
                ]),
            ),
            (
                "mid_attn.proj.weight",
                Source::One("mid_block.attentions.0.to_out.0.weight".into(), Layout::Flat),
            ),
            ("mid1.conv2.bias", one("mid_block.resnets.0.conv2.bias")),
            ("mid2.norm2.gamma", one("mid_block.resnets.1.norm2.weight")),
            ("up.0.blocks.2.conv1.weight", one("up_blocks.0.resnets.2.conv1.weight")),
            ("up.1.up.bias", one("up_blocks.1.upsamplers.0.conv.bias")),
            (
                "up.3.attns.1.qkv.weight",
                Source::Stacked([
                    "up_blocks.3.attentions.1.to_q.weight".into(),
                    "up_blocks.3.attentions.1.to_k.weight".into(),
                    "up_blocks.3.attentions.1.to_v.weight".into(),
                ]),
            ),
            ("norm_out.gamma", one("conv_norm_out.weight")),
            ("conv_out.bias", one("conv_out.bias")),
        ];
        for (ours, theirs) in cases {
            assert_eq!(source(ours), theirs, "{ours}");
        }
    }

    #[test]
    fn unsupported_configs_are_named() {
        let e = |json: &str| {
            let cfg: UNet2DModelConfig = serde_json::from_str(json).unwrap();
            cfg.sample_size()
                .and_then(|_| cfg.unet_config(32, 32))
                .unwrap_err()
                .to_string()
        };
        assert!(e(r#"{"_class_name": "UNet2DConditionModel3"}"#).contains("not UNet2DModel or UNet2DConditionModel"));
        // Values that mean the option's default pass; others are refused by key.
        let text = |extra: &str| {
            let json = format!(r#"{{"_class_name": "UNet2DConditionModel", "cross_attention_dim": 8, {extra}}}"#);
            let cfg = UNet2DModelConfig::parse(serde_json::from_str(&json).unwrap()).unwrap();
            cfg.unet_config(64, 64).map(|_| ()).map_err(|e| e.to_string())
        };
        text(r#""transformer_layers_per_block": [1, 1.0, 1, 1], "only_cross_attention": null"#).unwrap();
        assert!(
            text(r#""transformer_layers_per_block": 2"#)
                .unwrap_err()
                .contains("transformer_layers_per_block 2")
        );
        assert!(
            text(r#""num_class_embeds": 10"#)
                .unwrap_err()
                .contains("num_class_embeds")
        );
        assert!(e(r#"{"mid_block_type": null}"#).contains("mid_block_type None"));
        assert!(e(r#"{"time_embedding_type": "fourier"}"#).contains("time_embedding_type"));
        assert!(e(r#"{"out_channels": 6}"#).contains("learned variance"));
        assert!(
            e(r#"{"resnet_time_scale_shift": "scale_shift", "attn_norm_num_groups": 32}"#)
                .contains("attn_norm_num_groups")
        );
        assert!(e(r#"{"sample_size": 32.5}"#).contains("sample_size 32.5"));
        assert!(e(r#"{"sample_size": 0}"#).contains("sample_size 0"));
        let odd = r#"{"block_out_channels": [33, 66], "norm_num_groups": 3, "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"]}"#;
        assert!(e(odd).contains("must be even"), "{}", e(odd));
        let zero = r#"{"block_out_channels": [32, 0], "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"]}"#;
        assert!(e(zero).contains("non-zero"), "{}", e(zero));
    }
}
