//! CLIP (Radford et al. 2021) read from a transformers `CLIPModel` folder, for the CLIP score (Hessel et al.
//! 2021): the vision transformer, the text transformer and their projections, inference only, with the
//! folder's own tokenizer (`tokenizer.json`, or CLIP's BPE built from `vocab.json` and `merges.txt`, both read by
//! the `tokenizers` crate) and image preprocessing (`preprocessor_config.json`); and its text side alone
//! ([`ClipText`]), the text encoder of Stable Diffusion 1.x. The weights stay tensors by their transformers
//! names; nothing here trains.

use crate::diffusers::read_weights;
use crate::safetensors_io::NamedTensor;
use crate::{Error, Result};
use burn::prelude::*;
use burn::tensor::activation;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One tower's settings, as transformers' `text_config` / `vision_config` hold them.
#[derive(Clone, Debug, Deserialize)]
struct TowerConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    // Text only.
    #[serde(default)]
    max_position_embeddings: usize,
    #[serde(default)]
    eos_token_id: Option<u32>,
    // Vision only.
    #[serde(default)]
    image_size: usize,
    #[serde(default)]
    patch_size: usize,
}

fn default_act() -> String {
    "quick_gelu".into()
}

fn default_eps() -> f64 {
    1e-5
}

#[derive(Clone, Debug, Deserialize)]
struct ClipConfig {
    text_config: TowerConfig,
    vision_config: TowerConfig,
}

/// The image preprocessing of `preprocessor_config.json` (CLIPImageProcessor): resize the shorter side, crop
/// the centre, scale to [0, 1], normalise per channel.
#[derive(Clone, Debug, Deserialize)]
struct Preprocess {
    size: Side,
    crop_size: Crop,
    image_mean: [f32; 3],
    image_std: [f32; 3],
}

/// The shorter side's length: `{"shortest_edge": 224}`, or a bare 224 in older files.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Side {
    Edge { shortest_edge: usize },
    Bare(usize),
}

impl Side {
    fn shortest_edge(&self) -> usize {
        match self {
            Side::Edge { shortest_edge } | Side::Bare(shortest_edge) => *shortest_edge,
        }
    }
}

/// The crop: `{"height": 224, "width": 224}`, or a bare 224 (square) in older files.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Crop {
    Sides { height: usize, width: usize },
    Bare(usize),
}

impl Crop {
    fn sides(&self) -> (usize, usize) {
        match self {
            Crop::Sides { height, width } => (*height, *width),
            Crop::Bare(s) => (*s, *s),
        }
    }
}

/// A linear map y = x Wᵀ + b.
struct Linear {
    /// [in, out]: Wᵀ, transposed once at load.
    wt: Tensor<2>,
    b: Option<Tensor<1>>,
}

impl Linear {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let out = self.wt.dims()[1];
        let y = x.reshape([b * l, d]).matmul(self.wt.clone());
        let y = match &self.b {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, l, out])
    }
}

struct LayerNorm {
    w: Tensor<1>,
    b: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean = x.clone().mean_dim(D - 1);
        let centred = x - mean;
        let var = centred.clone().square().mean_dim(D - 1);
        let normed = centred / (var + self.eps).sqrt();
        normed * self.w.clone().unsqueeze::<D>() + self.b.clone().unsqueeze::<D>()
    }
}

/// One pre-norm transformer layer: x + attention(LN x), then x + MLP(LN x).
struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

struct Tower {
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
}

/// The MLP's activation, by transformers' names.
#[derive(Clone, Copy, Debug)]
enum Activation {
    /// x·σ(1.702x), the original CLIP's approximation (`quick_gelu`).
    Quick,
    /// GELU with erf (`gelu`).
    Exact,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    Tanh,
}

impl Activation {
    fn parse(name: &str) -> std::result::Result<Activation, String> {
        match name {
            "quick_gelu" => Ok(Activation::Quick),
            "gelu" => Ok(Activation::Exact),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::Tanh),
            other => Err(format!(
                "hidden_act '{other}' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"
            )),
        }
    }

    fn apply(self, y: Tensor<3>) -> Tensor<3> {
        match self {
            Activation::Quick => y.clone() * activation::sigmoid(y.mul_scalar(1.702)),
            Activation::Exact => activation::gelu(y),
            Activation::Tanh => {
                let inner = (y.clone() + y.clone().powi_scalar(3).mul_scalar(0.044715))
                    .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
                y.mul_scalar(0.5) * (inner.tanh() + 1.0)
            }
        }
    }
}

impl Tower {
    /// The encoder over `x` [B, L, D]; `causal` masks each position from the ones after it (the text tower).
    fn forward(&self, mut x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let (h, dh) = (self.heads, d / self.heads);
        let device = x.device();
        let mask = causal.then(|| {
            let m: Vec<f32> = (0..l * l)
                .map(|i| if i % l > i / l { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            Tensor::<2>::from_data(TensorData::new(m, [l, l]), &device).unsqueeze::<4>()
        });
        let split = |t: Tensor<3>| t.reshape([b, l, h, dh]).swap_dims(1, 2);
        for layer in &self.layers {
            let y = layer.ln1.forward(x.clone());
            let (q, k, v) = (
                split(layer.q.forward(y.clone())),
                split(layer.k.forward(y.clone())),
                split(layer.v.forward(y)),
            );
            let attended = super::attention(q, k, v, mask.clone())
                .swap_dims(1, 2)
                .reshape([b, l, d]);
            x = x + layer.o.forward(attended);
            let y = layer.fc1.forward(layer.ln2.forward(x.clone()));
            x = x + layer.fc2.forward(self.act.apply(y));
        }
        x
    }
}

/// CLIP's text side: the tokenizer and the text transformer up to its final layer norm. Stable Diffusion 1.x
/// attends to its hidden states (a `CLIPTextModel` folder with its `tokenizer/`); CLIP's score pools and
/// projects them.
pub struct ClipText {
    tokenizer: tokenizers::Tokenizer,
    max_tokens: usize,
    eos: u32,
    /// The token that fills a prompt out to `max_tokens`.
    pad: u32,
    /// Read each text at its largest token id rather than at its first end token (see `load`).
    legacy_pooling: bool,
    token_embedding: Tensor<2>,
    positions: Tensor<2>,
    tower: Tower,
    final_ln: LayerNorm,
}

/// A CLIP model and its tokenizer and preprocessing.
pub struct Clip {
    text: ClipText,
    preprocess: Preprocess,
    text_projection: Linear,
    patch: usize,
    image_size: usize,
    /// [3·p·p, D]: the patch convolution (stride p, no bias) as a matrix.
    patch_embedding: Tensor<2>,
    class_embedding: Tensor<1>,
    vision_positions: Tensor<2>,
    pre_ln: LayerNorm,
    vision: Tower,
    post_ln: LayerNorm,
    visual_projection: Linear,
}

/// A folder's file, or an error naming what the folder lacks.
fn file(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Invalid(format!(
            "{}: no {name} (a transformers CLIPModel folder has config.json, model.safetensors, tokenizer.json and \
             preprocessor_config.json)",
            dir.display()
        )))
    }
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// The folder's tensors, taken by name and checked against the shapes the config implies.
struct Weights {
    tensors: BTreeMap<String, NamedTensor>,
    device: Device,
}

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::Invalid(format!("model.safetensors has no {name}")))?;
        if t.shape != shape {
            return Err(Error::Invalid(format!(
                "model.safetensors: {name} is {:?}, the config needs {shape:?}",
                t.shape
            )));
        }
        Ok(t.data)
    }

    fn vector(&mut self, name: &str, d: usize) -> Result<Tensor<1>> {
        Ok(Tensor::from_data(
            TensorData::new(self.take(name, &[d])?, [d]),
            &self.device,
        ))
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Tensor<2>> {
        let data = self.take(name, &[rows, cols])?;
        Ok(Tensor::from_data(TensorData::new(data, [rows, cols]), &self.device))
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        Ok(Linear {
            wt: self.matrix(&format!("{name}.weight"), out, inp)?.transpose(),
            b: if bias {
                Some(self.vector(&format!("{name}.bias"), out)?)
            } else {
                None
            },
        })
    }

    fn norm(&mut self, name: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: self.vector(&format!("{name}.weight"), d)?,
            b: self.vector(&format!("{name}.bias"), d)?,
            eps,
        })
    }

    fn tower(&mut self, prefix: &str, c: &TowerConfig) -> Result<Tower> {
        let (d, m) = (c.hidden_size, c.intermediate_size);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = format!("{prefix}.encoder.layers.{i}");
                Ok(Layer {
                    ln1: self.norm(&format!("{p}.layer_norm1"), d, c.layer_norm_eps)?,
                    q: self.linear(&format!("{p}.self_attn.q_proj"), d, d, true)?,
                    k: self.linear(&format!("{p}.self_attn.k_proj"), d, d, true)?,
                    v: self.linear(&format!("{p}.self_attn.v_proj"), d, d, true)?,
                    o: self.linear(&format!("{p}.self_attn.out_proj"), d, d, true)?,
                    ln2: self.norm(&format!("{p}.layer_norm2"), d, c.layer_norm_eps)?,
                    fc1: self.linear(&format!("{p}.mlp.fc1"), m, d, true)?,
                    fc2: self.linear(&format!("{p}.mlp.fc2"), d, m, true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tower {
            layers,
            heads: c.num_attention_heads,
            act: Activation::parse(&c.hidden_act).map_err(Error::Invalid)?,
        })
    }
}

/// CLIP's byte-level BPE over `vocab.json` and `merges.txt`, as transformers' CLIPTokenizerFast builds it: NFC,
/// runs of whitespace to one space and lower case; words, single digits and runs of other symbols as pieces;
/// bytes as characters; words marked at their end by `</w>`; the start and end tokens around each text.
fn clip_bpe(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let vocab_path = dir.join("vocab.json");
    let vocab: serde_json::Map<String, serde_json::Value> = json(&vocab_path)?;
    let merges_path = dir.join("merges.txt");
    let text = std::fs::read_to_string(&merges_path).map_err(|e| Error::io(&merges_path, e))?;
    let merges: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    if let Some(bad) = merges.iter().find(|l| l.split(' ').count() != 2) {
        return Err(Error::Invalid(format!(
            "{}: {bad:?} is not a merge of two tokens",
            merges_path.display()
        )));
    }
    let id = |token: &str| {
        vocab
            .get(token)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::Invalid(format!("{}: no {token} token", vocab_path.display())))
    };
    let (bos, eos) = (id(BOS)?, id(EOS)?);
    let special = |token: &str, id: u64| {
        serde_json::json!({"id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true})
    };
    let spec = serde_json::json!({
        "version": "1.0",
        "added_tokens": [special(BOS, bos), special(EOS, eos)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "behavior": "Removed", "invert": true, "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"}},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOS, eos], "cls": [BOS, bos],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges},
    });
    spec.to_string()
        .parse()
        .map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))
}

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// A folder's tokenizer: its `tokenizer.json`, or CLIP's BPE over `vocab.json` and `merges.txt` (what Stable
/// Diffusion's `tokenizer/` holds). Also the padding token its config names (`<|endoftext|>` if none).
fn read_tokenizer(dir: &Path) -> Result<(tokenizers::Tokenizer, Option<String>)> {
    let full = dir.join("tokenizer.json");
    let tokenizer = if full.is_file() {
        tokenizers::Tokenizer::from_file(&full).map_err(|e| Error::Invalid(format!("{}: {e}", full.display())))?
    } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
        clip_bpe(dir)?
    } else {
        return Err(Error::Invalid(format!(
            "{}: no tokenizer.json (nor vocab.json and merges.txt)",
            dir.display()
        )));
    };
    // `"pad_token": "<|endoftext|>"`, or `{"content": ...}` in older files.
    let pad = ["tokenizer_config.json", "special_tokens_map.json"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .find_map(|p| {
            let v: serde_json::Value = json(&p).ok()?;
            let pad = &v["pad_token"];
            pad.as_str().or_else(|| pad["content"].as_str()).map(String::from)
        });
    Ok((tokenizer, pad))
}

impl ClipText {
    /// The text transformer of `config`, with the tensors named `text_model.*` in `w`.
    fn read(
        c: &TowerConfig,
        (tokenizer, pad): (tokenizers::Tokenizer, Option<String>),
        w: &mut Weights,
    ) -> Result<ClipText> {
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::Invalid(format!(
                "text config: {} heads do not divide the width {}",
                c.num_attention_heads, c.hidden_size
            )));
        }
        Activation::parse(&c.hidden_act).map_err(|e| Error::Invalid(format!("text config: {e}")))?;
        // The end-of-text token pads prompts and marks where a text is read.
        let eos = tokenizer
            .token_to_id(EOS)
            .or(c.eos_token_id)
            .ok_or_else(|| Error::Invalid(format!("the tokenizer has no {EOS} token")))?;
        let pad = match pad {
            Some(p) => tokenizer
                .token_to_id(&p)
                .ok_or_else(|| Error::Invalid(format!("the tokenizer has no padding token {p}")))?,
            None => eos,
        };
        let d = c.hidden_size;
        let vocab = w
            .tensors
            .get("text_model.embeddings.token_embedding.weight")
            .map_or(0, |t| t.shape[0]);
        Ok(ClipText {
            tokenizer,
            max_tokens: c.max_position_embeddings,
            eos,
            pad,
            // Configs written before transformers knew the end token say 2 (OpenAI's CLIP among them); the text
            // is then read at its largest id, which the end token has in CLIP's vocabulary (as transformers does).
            legacy_pooling: c.eos_token_id == Some(2),
            token_embedding: w.matrix("text_model.embeddings.token_embedding.weight", vocab, d)?,
            positions: w.matrix(
                "text_model.embeddings.position_embedding.weight",
                c.max_position_embeddings,
                d,
            )?,
            tower: w.tower("text_model", c)?,
            final_ln: w.norm("text_model.final_layer_norm", d, c.layer_norm_eps)?,
        })
    }

    /// Reads a transformers `CLIPTextModel` folder (config.json, model.safetensors) and the tokenizer folder
    /// beside it: Stable Diffusion's `text_encoder/` and `tokenizer/`.
    pub fn load(encoder: &Path, tokenizer: &Path, device: &Device) -> Result<ClipText> {
        let need = |name: &str| {
            let p = encoder.join(name);
            p.is_file().then_some(p.clone()).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no {name} (a transformers CLIPTextModel folder has config.json and model.safetensors)",
                    encoder.display()
                ))
            })
        };
        let config: TowerConfig = json(&need("config.json")?)?;
        let mut tensors = read_weights(&need("model.safetensors")?)?;
        // transformers 5 saves a CLIPTextModel without the `text_model.` prefix that older files have.
        if !tensors.keys().any(|k| k.starts_with("text_model.")) {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (format!("text_model.{k}"), v))
                .collect();
        }
        let mut w = Weights {
            tensors,
            device: device.clone(),
        };
        Self::read(&config, read_tokenizer(tokenizer)?, &mut w)
    }

    /// Width of the hidden states.
    pub fn width(&self) -> usize {
        self.token_embedding.dims()[1]
    }

    /// Tokens per text, padding included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of `texts`, each with its start and end tokens, padded to the model's length; a text longer
    /// than that is an error (CLIP was trained on 77 tokens at most, and a cut text is not the text asked
    /// about).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|text| {
                let enc = self
                    .tokenizer
                    .encode(*text, true)
                    .map_err(|e| Error::Invalid(format!("tokenizing {text:?}: {e}")))?;
                let mut ids = enc.get_ids().to_vec();
                if !ids.contains(&self.eos) {
                    return Err(Error::Invalid(format!(
                        "the tokenizer gave {text:?} no end-of-text token (tokenizer.json needs CLIP's post-processor)"
                    )));
                }
                if ids.len() > self.max_tokens {
                    return Err(Error::Invalid(format!(
                        "{text:?} is {} tokens; this CLIP takes at most {}",
                        ids.len(),
                        self.max_tokens
                    )));
                }
                ids.resize(self.max_tokens, self.pad);
                Ok(ids)
            })
            .collect()
    }

    /// The last hidden states, after the final layer norm, [n, positions, width]: what a text-conditioned UNet
    /// attends to (CLIPTextModel's `last_hidden_state`). With the token ids.
    pub fn hidden(&self, texts: &[&str]) -> Result<(Tensor<3>, Vec<Vec<u32>>)> {
        let ids = self.tokenize(texts)?;
        let (n, l) = (ids.len(), self.max_tokens);
        let device = self.token_embedding.device();
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
        if flat.iter().any(|&i| i as usize >= self.token_embedding.dims()[0]) {
            return Err(Error::Invalid(
                "the tokenizer gives ids beyond the model's vocabulary".into(),
            ));
        }
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat, [n * l]), &device);
        let d = self.width();
        let x =
            self.token_embedding.clone().select(0, index).reshape([n, l, d]) + self.positions.clone().unsqueeze::<3>();
        Ok((self.final_ln.forward(self.tower.forward(x, true)), ids))
    }

    /// Each text's hidden state at its first end token (at its largest id for legacy configs), [n, width].
    fn pooled(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let (x, ids) = self.hidden(texts)?;
        let [n, l, d] = x.dims();
        let rows: Vec<i64> = ids
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = if self.legacy_pooling {
                    (0..l).max_by_key(|&j| (t[j], std::cmp::Reverse(j))).unwrap_or(0)
                } else {
                    t.iter().position(|&id| id == self.eos).unwrap_or(0)
                };
                (i * l + at) as i64
            })
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &x.device());
        Ok(x.reshape([n * l, d]).select(0, index))
    }
}

impl Clip {
    /// Reads a transformers `CLIPModel` folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Clip> {
        let config: ClipConfig = json(&file(dir, "config.json")?)?;
        let preprocess: Preprocess = json(&file(dir, "preprocessor_config.json")?)?;
        let tokenizer = read_tokenizer(dir)?;
        let (tc, vc) = (&config.text_config, &config.vision_config);
        if vc.num_attention_heads == 0 || vc.hidden_size % vc.num_attention_heads != 0 {
            return Err(Error::Invalid(format!(
                "vision_config: {} heads do not divide the width {}",
                vc.num_attention_heads, vc.hidden_size
            )));
        }
        if vc.patch_size == 0 || vc.image_size % vc.patch_size != 0 {
            return Err(Error::Invalid(format!(
                "vision_config: patches of {} do not tile images of {}",
                vc.patch_size, vc.image_size
            )));
        }
        let ((ch, cw), side) = (preprocess.crop_size.sides(), preprocess.size.shortest_edge());
        if (ch, cw) != (vc.image_size, vc.image_size) || side < vc.image_size {
            return Err(Error::Invalid(format!(
                "preprocessor_config.json crops {cw}×{ch} from a shorter side of {side}; the model takes {}×{}",
                vc.image_size, vc.image_size
            )));
        }
        Activation::parse(&vc.hidden_act).map_err(|e| Error::Invalid(format!("vision_config: {e}")))?;
        let mut w = Weights {
            tensors: read_weights(&file(dir, "model.safetensors")?)?,
            device: device.clone(),
        };
        let text = ClipText::read(tc, tokenizer, &mut w)?;
        let (dt, dv, p) = (tc.hidden_size, vc.hidden_size, vc.patch_size);
        let projection = w.tensors.get("text_projection.weight").map_or(0, |t| t.shape[0]);
        let patches = (vc.image_size / p).pow(2);
        Ok(Clip {
            text,
            preprocess,
            text_projection: w.linear("text_projection", projection, dt, false)?,
            patch: p,
            image_size: vc.image_size,
            patch_embedding: {
                let data = w.take("vision_model.embeddings.patch_embedding.weight", &[dv, 3, p, p])?;
                Tensor::<2>::from_data(TensorData::new(data, [dv, 3 * p * p]), device).transpose()
            },
            class_embedding: w.vector("vision_model.embeddings.class_embedding", dv)?,
            vision_positions: w.matrix("vision_model.embeddings.position_embedding.weight", patches + 1, dv)?,
            // transformers' own spelling of the name.
            pre_ln: w.norm("vision_model.pre_layrnorm", dv, vc.layer_norm_eps)?,
            vision: w.tower("vision_model", vc)?,
            post_ln: w.norm("vision_model.post_layernorm", dv, vc.layer_norm_eps)?,
            visual_projection: w.linear("visual_projection", projection, dv, false)?,
        })
    }

    /// The text side: tokenizer and text transformer.
    pub fn text(&self) -> &ClipText {
        &self.text
    }

    /// Projected text embeddings (not normalised), [n, projection]: each text's pooled hidden state,
    /// projected.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let pooled = self.text.pooled(texts)?;
        let n = pooled.dims()[0];
        let out = self.text_projection.wt.dims()[1];
        Ok(self.text_projection.forward(pooled.unsqueeze::<3>()).reshape([n, out]))
    }

    /// The pixels the model sees of an RGB image (h × w × 3 bytes): the shorter side resized to the
    /// preprocessor's (bicubic), the centre cropped, scaled to [0, 1] and normalised; 3 × s × s, channels first.
    pub fn pixels(&self, rgb: &image::RgbImage) -> Vec<f32> {
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let side = self.preprocess.size.shortest_edge();
        let resized = if w.min(h) == side {
            rgb.clone()
        } else {
            // The shorter side to `side`, the other in proportion (rounded as transformers rounds it).
            let (nw, nh) = if w <= h {
                (side, (h as f64 * side as f64 / w as f64) as usize)
            } else {
                ((w as f64 * side as f64 / h as f64) as usize, side)
            };
            image::imageops::resize(rgb, nw as u32, nh as u32, image::imageops::FilterType::CatmullRom)
        };
        let s = self.image_size;
        let (rw, rh) = (resized.width() as usize, resized.height() as usize);
        let (x0, y0) = ((rw - s) / 2, (rh - s) / 2);
        let mut out = vec![0f32; 3 * s * s];
        for c in 0..3 {
            let (mean, std) = (self.preprocess.image_mean[c], self.preprocess.image_std[c]);
            for y in 0..s {
                for x in 0..s {
                    let v = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32).0[c] as f32 / 255.0;
                    out[(c * s + y) * s + x] = (v - mean) / std;
                }
            }
        }
        out
    }

    /// Projected image embeddings (not normalised), [n, projection], of preprocessed pixels (n × 3 × s × s).
    pub fn embed_pixels(&self, pixels: &[f32], n: usize) -> Tensor<2> {
        let (s, p) = (self.image_size, self.patch);
        let g = s / p;
        let device = self.patch_embedding.device();
        let x = Tensor::<1>::from_data(TensorData::new(pixels.to_vec(), [pixels.len()]), &device);
        // The stride-p convolution as one product: each patch's 3·p·p values in the weights' order (c, y, x).
        let patches = x
            .reshape([n, 3, g, p, g, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * g * g, 3 * p * p])
            .matmul(self.patch_embedding.clone());
        let d = self.patch_embedding.dims()[1];
        let class = self.class_embedding.clone().reshape([1, 1, d]).repeat_dim(0, n);
        let x = Tensor::cat(vec![class, patches.reshape([n, g * g, d])], 1)
            + self.vision_positions.clone().unsqueeze::<3>();
        let x = self.vision.forward(self.pre_ln.forward(x), false);
        let pooled = self.post_ln.forward(x.narrow(1, 0, 1));
        let out = self.visual_projection.wt.dims()[1];
        self.visual_projection.forward(pooled).reshape([n, out])
    }
}

/// The score of each row's image–text pair of embeddings (normalised here): 100 · max(cos(image, text), 0), the
/// CLIP score of Hessel et al. 2021 with CLIP's embeddings, the project's own score with its encoder's.
pub fn scores(images: &Tensor<2>, texts: &Tensor<2>) -> Vec<f32> {
    let cos = (super::dual::unit(images.clone()) * super::dual::unit(texts.clone())).sum_dim(1);
    crate::sample::to_vec(cos.unsqueeze::<4>())
        .into_iter()
        .map(|c| 100.0 * c.max(0.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
    }

    fn expected() -> Value {
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap()
    }

    fn rows(v: &Value) -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    fn image(name: &str) -> image::RgbImage {
        image::open(fixture().join("images").join(name)).unwrap().to_rgb8()
    }

    /// Against `scripts/make_clip_fixture.py`: transformers' CLIPModel and CLIPTokenizer on a tiny random
    /// model.
    #[test]
    fn matches_transformers_tokens_pixels_embeddings_and_scores() {
        let e = expected();
        let device = crate::device::device();
        let clip = Clip::load(&fixture().join("model"), &device).unwrap();
        let texts: Vec<&str> = e["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let ids: Vec<Vec<u32>> = rows(&e["input_ids"])
            .iter()
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect();
        assert_eq!(clip.text().tokenize(&texts).unwrap(), ids);

        let names: Vec<&str> = e["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let want_pixels = rows(&e["pixel_values"]);
        let mut pixels = Vec::new();
        for (name, want) in names.iter().zip(&want_pixels) {
            let got = clip.pixels(&image(name));
            let d = max_diff(&got, want);
            // At the model's size the preprocessing is exact; resizing another size differs from PIL's bicubic
            // by a few grey levels (one level is 1/255/std ≈ 0.015 after normalising).
            let tolerance = if *name == "wide.png" { 0.25 } else { 1e-5 };
            assert!(d <= tolerance, "{name}: pixels differ by {d}");
            pixels.extend(got);
        }

        // Embeddings of transformers' own pixels, so that only the network is compared.
        let exact: Vec<f32> = want_pixels.concat();
        let images = clip.embed_pixels(&exact, names.len());
        let want_images = rows(&e["image_embeds"]).concat();
        let got_images = crate::sample::to_vec(images.clone().unsqueeze::<4>());
        assert!(
            max_diff(&got_images, &want_images) < 1e-4,
            "{}",
            max_diff(&got_images, &want_images)
        );
        let (hidden, _) = clip.text().hidden(&texts).unwrap();
        let want_hidden = rows(&e["text_hidden"]).concat();
        let got_hidden = crate::sample::to_vec(hidden.unsqueeze::<4>());
        assert!(
            max_diff(&got_hidden, &want_hidden) < 1e-4,
            "{}",
            max_diff(&got_hidden, &want_hidden)
        );
        let text = clip.embed_texts(&texts).unwrap();
        let want_text = rows(&e["text_embeds"]).concat();
        let got_text = crate::sample::to_vec(text.clone().unsqueeze::<4>());
        assert!(
            max_diff(&got_text, &want_text) < 1e-4,
            "{}",
            max_diff(&got_text, &want_text)
        );

        // Every image against every text, both clamped and positive scores among them.
        let want_scores = rows(&e["scores"]);
        let [n, d] = images.dims();
        for (i, want_row) in want_scores.iter().enumerate() {
            let image_i = images.clone().narrow(0, i, 1).repeat_dim(0, texts.len());
            let got = scores(&image_i, &text);
            assert!(
                max_diff(&got, want_row) < 1e-3,
                "image {i}: {got:?} against {want_row:?}"
            );
        }
        let all = want_scores.concat();
        assert!(all.contains(&0.0) && all.iter().any(|&s| s > 1.0));

        // From the files, through this preprocessing: the resized image's scores stay near transformers'.
        let ours = clip.embed_pixels(&pixels, names.len());
        for (i, want_row) in want_scores.iter().enumerate() {
            let image_i = ours.clone().narrow(0, i, 1).repeat_dim(0, texts.len());
            let got = scores(&image_i, &text);
            let d = max_diff(&got, want_row);
            // Measured: 0.017 points for wide.png (2026-12-01).
            assert!(d < if names[i] == "wide.png" { 0.1 } else { 1e-3 }, "{}: {d}", names[i]);
        }
        assert_eq!((n, d), (3, 16));
    }

    #[test]
    fn long_prompts_and_incomplete_folders_are_refused() {
        let device = crate::device::device();
        let clip = Clip::load(&fixture().join("model"), &device).unwrap();
        let long = "red heart ".repeat(20);
        let err = clip.text().tokenize(&[&long]).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");
        let dir = std::env::temp_dir().join(format!("diffuse-clip-partial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "preprocessor_config.json", "model.safetensors"] {
            std::fs::copy(fixture().join("model").join(f), dir.join(f)).unwrap();
        }
        let err = Clip::load(&dir, &device).err().unwrap().to_string();
        assert!(err.contains("no tokenizer.json"), "{err}");
        std::fs::write(dir.join("tokenizer.json"), b"{ not json").unwrap();
        let err = Clip::load(&dir, &device).err().unwrap().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::copy(fixture().join("model/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        let config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let write = |name: &str, v: &Value| std::fs::write(dir.join(name), serde_json::to_vec(v).unwrap()).unwrap();
        let mut relu = config.clone();
        relu["text_config"]["hidden_act"] = "relu".into();
        write("config.json", &relu);
        let err = Clip::load(&dir, &device).err().unwrap().to_string();
        assert!(err.contains("hidden_act 'relu'"), "{err}");

        // A legacy config (end token 2, as OpenAI's CLIP configs say) with the older preprocessor form reads
        // each text at its largest id, which is the end token here too: the same embeddings.
        let mut legacy = config;
        legacy["text_config"]["eos_token_id"] = 2.into();
        write("config.json", &legacy);
        let mut pre: Value =
            serde_json::from_slice(&std::fs::read(dir.join("preprocessor_config.json")).unwrap()).unwrap();
        (pre["size"], pre["crop_size"]) = (32.into(), 32.into());
        write("preprocessor_config.json", &pre);
        let old = Clip::load(&dir, &device).unwrap();
        let texts = ["a red heart", "smiling face"];
        let a = crate::sample::to_vec(old.embed_texts(&texts).unwrap().unsqueeze::<4>());
        let b = crate::sample::to_vec(clip.embed_texts(&texts).unwrap().unsqueeze::<4>());
        assert_eq!(a, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
