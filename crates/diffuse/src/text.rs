//! The project's own text encoder ([`crate::nn::dual`]): trained contrastively on captioned images, measured by
//! retrieval on held-out pairs, and used frozen by text-conditioned runs (its text tower's hidden states are the
//! UNet's context) and for the project's own text–image score.

use crate::data::Dataset;
use crate::nn::dual::{DualConfig, DualEncoder, Vocab, unit};
use crate::safetensors_io::{self, Contents};
use crate::{Error, Result, rng};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const META: &str = "text_encoder.json";
pub const WEIGHTS: &str = "weights.safetensors";
/// Tokens per caption: the start token and up to 15 words (the longest emoji name has 11).
pub const MAX_TOKENS: usize = 16;

/// How well images find their own caption among a set's captions, and captions their image: the share whose
/// match ranks first, and within the first five.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    pub pairs: usize,
    pub image_to_text_top1: f64,
    pub image_to_text_top5: f64,
    pub text_to_image_top1: f64,
    pub text_to_image_top5: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TextEncoderMeta {
    pub config: DualConfig,
    /// The data it was trained on.
    pub data: String,
    pub steps: usize,
    pub train: Retrieval,
    pub held_out: Retrieval,
    pub seconds: f64,
}

/// A trained dual encoder, for inference.
pub struct OwnText {
    pub meta: TextEncoderMeta,
    net: DualEncoder,
}

fn captions(data: &Dataset) -> Result<&[String]> {
    data.captions
        .as_deref()
        .ok_or_else(|| Error::Data(format!("{} has no captions (emoji has: their names)", data.name)))
}

fn ids_tensor(vocab: &Vocab, texts: &[&str], device: &Device) -> Result<(Tensor<2, Int>, Vec<usize>)> {
    let mut flat = Vec::with_capacity(texts.len() * vocab.max_tokens);
    let mut used = Vec::with_capacity(texts.len());
    for t in texts {
        let (ids, u) = vocab.tokenize(t)?;
        flat.extend(ids.into_iter().map(i64::from));
        used.push(u);
    }
    let data = TensorData::new(flat, [texts.len(), vocab.max_tokens]);
    Ok((Tensor::from_data(data, device), used))
}

fn images(data: &Dataset, idx: &[usize], device: &Device) -> Tensor<4> {
    let shape = [idx.len(), data.channels, data.height, data.width];
    Tensor::from_data(TensorData::new(data.gather(idx), shape), device)
}

/// Trains a dual encoder on `train`'s images and captions for `steps` batches of 128 (AdamW, lr 1e-3 with the
/// last quarter at 1e-4), measures retrieval on both splits and writes it to `out`.
pub fn train(train: &Dataset, test: &Dataset, out: &Path, steps: usize, seed: u64) -> Result<TextEncoderMeta> {
    let started = std::time::Instant::now();
    let caps = captions(train)?;
    captions(test)?;
    if steps == 0 {
        return Err(Error::Invalid("--steps must be at least 1".into()));
    }
    let config = DualConfig::new(Vocab::of(caps, MAX_TOKENS), train.channels);
    config.validate()?;
    // Every caption fits, checked before the first step rather than at the step that draws a long one.
    for (i, c) in caps.iter().chain(captions(test)?).enumerate() {
        config
            .vocab
            .tokenize(c)
            .map_err(|e| Error::Data(format!("caption {i}: {e}")))?;
    }
    crate::atomic::require_empty_dir(out)?;
    let device = crate::device::train_device();
    let mut net = crate::device::init_seeded(seed, &device, |d| config.init(d));
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let b = 128.min(train.len());
    for step in 0..steps {
        let mut r = rng::stream(seed, step as u64);
        // Distinct items (two emoji of one name, rare, are still each other's negatives).
        let mut idx: Vec<usize> = Vec::with_capacity(b);
        while idx.len() < b {
            let i = r.random_range(0..train.len());
            if !idx.contains(&i) {
                idx.push(i);
            }
        }
        let texts: Vec<&str> = idx.iter().map(|&i| caps[i].as_str()).collect();
        let (ids, used) = ids_tensor(&config.vocab, &texts, &device)?;
        let loss = net.loss(images(train, &idx, &device), ids, &used);
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(Error::Invalid(format!(
                "the contrastive loss is {value} at step {step}"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let lr = if step < steps * 3 / 4 { 1e-3 } else { 1e-4 };
        net = optim.step(lr, net, grads);
    }
    let mut enc = OwnText {
        meta: TextEncoderMeta {
            config,
            data: train.name.clone(),
            steps,
            train: Retrieval::default(),
            held_out: Retrieval::default(),
            seconds: 0.0,
        },
        net: net.valid(),
    };
    enc.meta.train = enc.retrieval(train)?;
    enc.meta.held_out = enc.retrieval(test)?;
    enc.meta.seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut c = Contents::default();
    c.groups.insert("dual".into(), safetensors_io::collect(&enc.net));
    safetensors_io::write(&out.join(WEIGHTS), &c)?;
    let text = serde_json::to_string_pretty(&enc.meta).expect("serialises") + "\n";
    crate::atomic::write(&out.join(META), text.as_bytes())?;
    Ok(enc.meta)
}

impl OwnText {
    pub fn load(dir: &Path) -> Result<OwnText> {
        let path = dir.join(META);
        let mut meta: TextEncoderMeta = crate::atomic::read_json(&path)?;
        meta.config.validate()?;
        // The index is rebuilt from the word list.
        let v = &meta.config.vocab;
        meta.config.vocab = Vocab::new(v.words.clone(), v.max_tokens);
        let wpath = dir.join(WEIGHTS);
        let c = safetensors_io::read(&wpath)?;
        let group = c
            .groups
            .get("dual")
            .ok_or_else(|| Error::checkpoint(&wpath, "holds no text encoder weights"))?;
        let net = safetensors_io::load(meta.config.init(&crate::device::device()), group, false, &wpath)?;
        Ok(OwnText { meta, net })
    }

    /// Width of the hidden states.
    pub fn width(&self) -> usize {
        self.meta.config.width
    }

    /// The text tower's hidden states [n, tokens, width]: what a text-conditioned UNet attends to.
    pub fn hidden(&self, texts: &[&str]) -> Result<Tensor<3>> {
        let (ids, _) = ids_tensor(&self.meta.config.vocab, texts, &crate::device::device())?;
        Ok(self.net.text.hidden(ids))
    }

    /// Unit text embeddings [n, embed].
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let (ids, used) = ids_tensor(&self.meta.config.vocab, texts, &crate::device::device())?;
        Ok(unit(self.net.text.embed(ids, &used)))
    }

    /// Unit image embeddings [n, embed] of n images (c × h × w each, in [−1, 1]), in batches.
    pub fn embed_images(&self, pixels: &[f32], shape: [usize; 3]) -> Tensor<2> {
        let device = crate::device::device();
        let per: usize = shape.iter().product();
        let chunks: Vec<Tensor<2>> = pixels
            .chunks(256 * per)
            .map(|c| {
                let x = Tensor::<4>::from_data(
                    TensorData::new(c.to_vec(), [c.len() / per, shape[0], shape[1], shape[2]]),
                    &device,
                );
                unit(self.net.image.embed(x))
            })
            .collect();
        Tensor::cat(chunks, 0)
    }

    /// Retrieval among all of `data`'s pairs.
    pub fn retrieval(&self, data: &Dataset) -> Result<Retrieval> {
        let caps = captions(data)?;
        let texts: Vec<&str> = caps.iter().map(String::as_str).collect();
        let t = self.embed_texts(&texts)?;
        let i = self.embed_images(&data.images, [data.channels, data.height, data.width]);
        let sim = crate::sample::to_vec(i.matmul(t.transpose()).unsqueeze::<4>());
        let n = caps.len();
        // The rank of the match: how many other captions score at least as high (a tie counts against it, so that
        // captions the encoder cannot tell apart do not count as found). Equal captions are the same match.
        let rank = |row: &dyn Fn(usize) -> f32, own: usize, same: &dyn Fn(usize) -> bool| {
            (0..n).filter(|&j| !same(j) && row(j) >= row(own)).count()
        };
        let (mut i2t, mut t2i) = ([0usize; 2], [0usize; 2]);
        for k in 0..n {
            let same = |j: usize| caps[j] == caps[k];
            let r = rank(&|j| sim[k * n + j], k, &same);
            let c = rank(&|j| sim[j * n + k], k, &same);
            for (hits, r) in [(&mut i2t, r), (&mut t2i, c)] {
                hits[0] += usize::from(r == 0);
                hits[1] += usize::from(r < 5);
            }
        }
        let share = |h: usize| h as f64 / n.max(1) as f64;
        Ok(Retrieval {
            pairs: n,
            image_to_text_top1: share(i2t[0]),
            image_to_text_top5: share(i2t[1]),
            text_to_image_top1: share(t2i[0]),
            text_to_image_top5: share(t2i[1]),
        })
    }
}

/// How well a text run draws a set of captions: its samples measured by this encoder against the set's
/// captions, and by a classifier where one is given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptReport {
    /// None for real images.
    pub guidance: Option<f64>,
    pub captions: usize,
    pub images: usize,
    /// Mean text–image score (100 · max(cos, 0)) of each image against its own caption.
    pub score: f64,
    /// Share of images whose own caption ranks first, and within the first five, among the set's captions.
    pub top1: f64,
    pub top5: f64,
    /// Mean 1 − cos between the embeddings of two images of the same caption: 0 when they are all alike.
    pub diversity: f64,
    /// Share of images the classifier puts in their caption's class (the emoji's category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_accuracy: Option<f64>,
}

/// Measures `per` images of each caption (`images`, caption by caption; `per` 1 for real images) against the
/// captions; `classes` are each caption's class and `predicted` each image's class by a classifier.
pub fn measure(
    enc: &OwnText,
    captions: &[String],
    images: &[f32],
    shape: [usize; 3],
    per: usize,
    guidance: Option<f64>,
    classes: Option<(&[u32], &[u32])>,
) -> Result<PromptReport> {
    let m = captions.len();
    let n = m * per;
    if per == 0 || images.len() != n * shape.iter().product::<usize>() {
        return Err(Error::Invalid(format!(
            "{} values are not {per} images of {shape:?} for each of {m} captions",
            images.len()
        )));
    }
    if let Some((want, got)) = classes
        && (want.len() != m || got.len() != n)
    {
        return Err(Error::Invalid(format!(
            "{} classes for {m} captions and {} predictions for {n} images",
            want.len(),
            got.len()
        )));
    }
    let texts: Vec<&str> = captions.iter().map(String::as_str).collect();
    let t = enc.embed_texts(&texts)?;
    let i = enc.embed_images(images, shape);
    let sim = crate::sample::to_vec(i.clone().matmul(t.transpose()).unsqueeze::<4>());
    let own = crate::sample::to_vec(i.clone().matmul(i.transpose()).unsqueeze::<4>());
    let (mut score, mut hits, mut div, mut pairs) = (0.0, [0usize; 2], 0.0, 0usize);
    for img in 0..n {
        let k = img / per;
        let row = &sim[img * m..(img + 1) * m];
        score += 100.0 * row[k].max(0.0) as f64;
        // Equal captions (two emoji of one name) are the same match; a tie with another counts against it.
        let rank = (0..m)
            .filter(|&j| captions[j] != captions[k] && row[j] >= row[k])
            .count();
        hits[0] += usize::from(rank == 0);
        hits[1] += usize::from(rank < 5);
        for other in (img + 1)..(k + 1) * per {
            div += 1.0 - own[img * n + other] as f64;
            pairs += 1;
        }
    }
    let class_accuracy = classes.map(|(want, got)| {
        let right = (0..n).filter(|&img| got[img] == want[img / per]).count();
        right as f64 / n.max(1) as f64
    });
    Ok(PromptReport {
        guidance,
        captions: m,
        images: n,
        score: score / n.max(1) as f64,
        top1: hits[0] as f64 / n.max(1) as f64,
        top5: hits[1] as f64 / n.max(1) as f64,
        diversity: if pairs > 0 { div / pairs as f64 } else { 0.0 },
        class_accuracy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    /// Eight digits of different classes, each captioned by its name.
    fn captioned() -> Dataset {
        let data = Dataset::load("digits", Split::Train).unwrap();
        let labels = data.labels.clone().unwrap();
        let idx: Vec<usize> = (0..8u32)
            .map(|c| labels.iter().position(|&l| l == c).unwrap())
            .collect();
        let names = ["zero", "one", "two", "three", "four", "five", "six", "seven"];
        Dataset {
            captions: Some(names.iter().map(|n| format!("the digit {n}")).collect()),
            ..data.subset(&idx)
        }
    }

    #[test]
    fn a_tiny_encoder_learns_to_match_eight_captions() {
        let data = captioned();
        let out = std::env::temp_dir().join(format!("diffuse-text-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let meta = train(&data, &data, &out, 150, 1).unwrap();
        assert_eq!(meta.config.vocab.words.len(), 10);
        assert_eq!(meta.train.pairs, 8);
        // Chance is 1 in 8 at top-1.
        assert!(meta.train.image_to_text_top1 >= 0.875, "{:?}", meta.train);
        assert!(meta.train.text_to_image_top1 >= 0.875, "{:?}", meta.train);
        // Written and read back: the same embeddings and scores.
        let enc = OwnText::load(&out).unwrap();
        assert_eq!(enc.retrieval(&data).unwrap(), meta.train);
        let i = enc.embed_images(&data.images[..64], [1, 8, 8]);
        let s = crate::nn::clip::scores(
            &i.clone().repeat_dim(0, 2),
            &enc.embed_texts(&["the digit zero", "the digit one"]).unwrap(),
        );
        assert!(s[0] > s[1], "the zero matches its own caption best: {s:?}");
        assert!(s.iter().all(|&x| (0.0..=100.0).contains(&x)));
        // The real images measured as samples of their own captions: the same ranks as the retrieval; two
        // copies of each are alike (no diversity).
        let caps = data.captions.clone().unwrap();
        let r = measure(&enc, &caps, &data.images, [1, 8, 8], 1, None, None).unwrap();
        assert_eq!((r.top1, r.top5, r.images), (meta.train.image_to_text_top1, 1.0, 8));
        let twice: Vec<f32> = data.images.chunks(64).flat_map(|c| c.repeat(2)).collect();
        let labels: Vec<u32> = (0..8).collect();
        let predicted: Vec<u32> = (0..16).map(|i| if i < 2 { 1 } else { i / 2 }).collect();
        let r2 = measure(
            &enc,
            &caps,
            &twice,
            [1, 8, 8],
            2,
            Some(1.0),
            Some((&labels, &predicted)),
        )
        .unwrap();
        assert_eq!((r2.top1, r2.images), (r.top1, 16));
        assert!(r2.diversity.abs() < 1e-6 && (r2.score - r.score).abs() < 1e-3, "{r2:?}");
        assert_eq!(r2.class_accuracy, Some(14.0 / 16.0));
        // A folder is never written over.
        assert!(train(&data, &data, &out, 1, 1).is_err());
        std::fs::remove_dir_all(&out).unwrap();
        let uncaptioned = Dataset { captions: None, ..data };
        let err = train(&uncaptioned, &uncaptioned, &out, 1, 1).unwrap_err().to_string();
        assert!(err.contains("has no captions"), "{err}");
    }
}
