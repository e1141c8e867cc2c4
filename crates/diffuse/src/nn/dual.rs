//! The project's own image–text dual encoder, trained contrastively as CLIP is (Radford et al. 2021) but small
//! enough to train on two cores in minutes: words by a vocabulary of the training captions, a pre-norm
//! transformer over them, and a small CNN over images, each projected into one space. Its text tower's hidden
//! states are what a text-conditioned UNet of this project attends to; its scores are the project's own, not
//! CLIP's.

use crate::kernels::{conv2d, group_norm};
use crate::{Error, Result};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput};
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear};
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Token 0 pads, 1 is an unknown word, 2 starts every text (so that the empty text is one token).
pub const PAD: u32 = 0;
pub const UNKNOWN: u32 = 1;
pub const START: u32 = 2;
const RESERVED: usize = 3;

/// Lower-case words: runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The words a text encoder knows, each with its token id (from 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "VocabFile")]
pub struct Vocab {
    pub words: Vec<String>,
    /// Tokens per text, the start token and padding included.
    pub max_tokens: usize,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

/// A vocabulary as written: the index is rebuilt from the words when read.
#[derive(Deserialize)]
struct VocabFile {
    words: Vec<String>,
    max_tokens: usize,
}

impl From<VocabFile> for Vocab {
    fn from(f: VocabFile) -> Vocab {
        Vocab::new(f.words, f.max_tokens)
    }
}

impl Vocab {
    /// Every word of `captions`, in order of first appearance.
    pub fn of(captions: &[String], max_tokens: usize) -> Vocab {
        let mut seen = Vec::new();
        for w in captions.iter().flat_map(|c| words(c)) {
            if !seen.contains(&w) {
                seen.push(w);
            }
        }
        Vocab::new(seen, max_tokens)
    }

    pub fn new(words: Vec<String>, max_tokens: usize) -> Vocab {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), (i + RESERVED) as u32))
            .collect();
        Vocab {
            words,
            max_tokens,
            index,
        }
    }

    /// Token ids, the vocabulary's size included.
    pub fn size(&self) -> usize {
        self.words.len() + RESERVED
    }

    /// The start token, then each word's id (unknown words as [`UNKNOWN`]), padded to `max_tokens`; a text of
    /// more words is an error, not cut.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        let mut ids = vec![START];
        ids.extend(
            words(text)
                .iter()
                .map(|w| self.index.get(w).copied().unwrap_or(UNKNOWN)),
        );
        if ids.len() > self.max_tokens {
            return Err(Error::Invalid(format!(
                "{text:?} is {} words; this text encoder takes at most {}",
                ids.len() - 1,
                self.max_tokens - 1
            )));
        }
        let used = ids.len();
        ids.resize(self.max_tokens, PAD);
        Ok((ids, used))
    }

    /// The words of `text` the vocabulary does not know (they all become one token).
    pub fn unknown(&self, text: &str) -> Vec<String> {
        words(text)
            .into_iter()
            .filter(|w| !self.index.contains_key(w))
            .collect()
    }
}

/// The shape of a dual encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DualConfig {
    pub vocab: Vocab,
    /// Width of the text transformer (and of the hidden states a UNet attends to).
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Width of the shared embedding space.
    pub embed: usize,
    pub image_channels: usize,
    /// Channels of the image CNN's first level (doubled at each of its three stride-2 levels).
    pub image_base: usize,
}

impl DualConfig {
    pub fn new(vocab: Vocab, image_channels: usize) -> DualConfig {
        DualConfig {
            vocab,
            width: 64,
            layers: 2,
            heads: 4,
            embed: 64,
            image_channels,
            image_base: 32,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("text encoder: {m}")));
        super::check_sizes(
            "text encoder",
            &[
                ("width", self.width, super::MAX_SIZE),
                ("layers", self.layers, super::MAX_DEPTH),
                ("embed", self.embed, super::MAX_SIZE),
                ("image_base", self.image_base, super::MAX_SIZE),
                ("max_tokens", self.vocab.max_tokens, 1024),
            ],
        )?;
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) || self.vocab.max_tokens < 2 {
            return bad(format!(
                "{} heads must divide the width {}, and texts need at least 2 tokens",
                self.heads, self.width
            ));
        }
        if [
            self.width,
            self.layers,
            self.embed,
            self.image_channels,
            self.image_base,
        ]
        .contains(&0)
        {
            return bad("sizes must be positive".into());
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> DualEncoder {
        let w = self.width;
        let conv = |cin, cout, stride| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let b = self.image_base;
        let widths = [b, 2 * b, 4 * b, 4 * b];
        DualEncoder {
            text: TextTower {
                tokens: EmbeddingConfig::new(self.vocab.size(), w).init(device),
                positions: EmbeddingConfig::new(self.vocab.max_tokens, w).init(device),
                encoder: TransformerEncoderConfig::new(w, 4 * w, self.heads, self.layers)
                    .with_dropout(0.0)
                    .with_norm_first(true)
                    .init(device),
                norm: LayerNormConfig::new(w).init(device),
                proj: LinearConfig::new(w, self.embed).with_bias(false).init(device),
            },
            image: ImageTower {
                stem: conv(self.image_channels, widths[0], 1),
                convs: (0..3).map(|i| conv(widths[i], widths[i + 1], 2)).collect(),
                norms: widths[1..]
                    .iter()
                    .map(|&c| GroupNormConfig::new(super::groups_for(c, 8), c).init(device))
                    .collect(),
                proj: LinearConfig::new(widths[3], self.embed).with_bias(false).init(device),
            },
            // CLIP's initial temperature 0.07: logits are cos / 0.07.
            log_scale: Param::from_tensor(Tensor::from_floats([(1.0f32 / 0.07).ln()], device)),
        }
    }
}

#[derive(Module, Debug)]
pub struct TextTower {
    tokens: Embedding,
    positions: Embedding,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    proj: Linear,
}

impl TextTower {
    /// Hidden states after the final norm [b, tokens, width] of token ids [b, tokens]; padding is masked from
    /// attention (its own states are still computed, and a UNet sees them as SD's UNet sees CLIP's).
    pub fn hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let pad = ids.clone().equal_elem(PAD as i64);
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, b);
        let x = self.tokens.forward(ids) + self.positions.forward(positions);
        let x = self.encoder.forward(TransformerEncoderInput::new(x).mask_pad(pad));
        self.norm.forward(x)
    }

    /// The text embeddings [b, embed]: the mean of the hidden states of each text's `used` tokens, projected.
    pub fn embed(&self, ids: Tensor<2, Int>, used: &[usize]) -> Tensor<2> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let weights: Vec<f32> = used
            .iter()
            .flat_map(|&u| (0..l).map(move |j| if j < u { 1.0 / u as f32 } else { 0.0 }))
            .collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, l]), &device);
        let h = self.hidden(ids);
        let d = h.dims()[2];
        let pooled = (h * weights.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d]);
        self.proj.forward(pooled)
    }
}

#[derive(Module, Debug)]
pub struct ImageTower {
    stem: Conv2d,
    convs: Vec<Conv2d>,
    norms: Vec<GroupNorm>,
    proj: Linear,
}

impl ImageTower {
    /// Image embeddings [b, embed] of images [b, c, h, w] in [−1, 1].
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = silu(conv2d(&self.stem, x));
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            h = silu(group_norm(norm, conv2d(conv, h), false));
        }
        let [b, c, _, _] = h.dims();
        self.proj.forward(h.mean_dims(&[2, 3]).reshape([b, c]))
    }
}

#[derive(Module, Debug)]
pub struct DualEncoder {
    pub text: TextTower,
    pub image: ImageTower,
    /// ln of the logits' scale (CLIP's learned inverse temperature).
    log_scale: Param<Tensor<1>>,
}

/// Rows scaled to unit length.
pub fn unit(x: Tensor<2>) -> Tensor<2> {
    x.clone() / (x.square().sum_dim(1).sqrt() + 1e-8)
}

impl DualEncoder {
    /// The symmetric contrastive loss of a batch of matching pairs (CLIP's): cross-entropy of each image
    /// against every text of the batch and of each text against every image, the pair's own as the target.
    pub fn loss(&self, images: Tensor<4>, ids: Tensor<2, Int>, used: &[usize]) -> Tensor<1> {
        let i = unit(self.image.embed(images));
        let t = unit(self.text.embed(ids, used));
        let b = i.dims()[0];
        // The scale is capped at 100, as CLIP's.
        let scale = self.log_scale.val().clamp_max(100f32.ln()).exp();
        let logits = i.matmul(t.transpose()) * scale.unsqueeze::<2>();
        let target = Tensor::<1, Int>::arange(0..b as i64, &logits.device()).unsqueeze_dim::<2>(1);
        let ce = |l: Tensor<2>| {
            burn::tensor::activation::log_softmax(l, 1)
                .gather(1, target.clone())
                .mean()
                .neg()
        };
        (ce(logits.clone()) + ce(logits.transpose())).div_scalar(2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_case_runs_of_letters_and_digits() {
        assert_eq!(words("Red  HEART, no.2!"), ["red", "heart", "no", "2"]);
        let v = Vocab::of(&["red heart".into(), "Blue heart".into()], 5);
        assert_eq!(v.words, ["red", "heart", "blue"]);
        assert_eq!(
            v.tokenize("blue RED cat").unwrap(),
            (vec![START, 5, 3, UNKNOWN, PAD], 4)
        );
        assert_eq!(v.tokenize("").unwrap(), (vec![START, PAD, PAD, PAD, PAD], 1));
        assert_eq!(v.unknown("red cat"), ["cat"]);
        let err = v.tokenize("red red red red red").unwrap_err().to_string();
        assert!(err.contains("5 words") && err.contains("at most 4"), "{err}");
        // The index is rebuilt from the words when read back.
        let back: Vocab = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.tokenize("blue heart").unwrap(), v.tokenize("blue heart").unwrap());
    }

    #[test]
    fn padding_and_unused_positions_do_not_change_a_texts_states() {
        let device = crate::device::device();
        let v = Vocab::of(&["red heart".into(), "blue cat".into()], 6);
        let net = crate::device::init_seeded(3, &device, |d| DualConfig::new(v.clone(), 3).init(d));
        let ids = |texts: &[&str]| {
            let flat: Vec<i64> = texts
                .iter()
                .flat_map(|t| v.tokenize(t).unwrap().0.into_iter().map(i64::from))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(flat, [texts.len(), 6]), &device)
        };
        let h = crate::sample::to_vec(net.text.hidden(ids(&["red heart", "blue cat"])).unsqueeze::<4>());
        let alone = crate::sample::to_vec(net.text.hidden(ids(&["red heart"])).unsqueeze::<4>());
        // A text's states do not depend on the batch it is in; the two texts differ.
        let per = 6 * 64;
        let d = h[..per]
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{d}");
        assert!(h[..3 * 64] != h[per..per + 3 * 64]);
        // Padding is masked: the states of "red heart" are those of its three tokens alone, without padding.
        let unpadded = Tensor::<2, Int>::from_data(TensorData::new(vec![START as i64, 3, 4], [1, 3]), &device);
        let bare = crate::sample::to_vec(net.text.hidden(unpadded).unsqueeze::<4>());
        let d = bare
            .iter()
            .zip(&alone[..3 * 64])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "padding leaks into the words' states by {d}");
    }
}
