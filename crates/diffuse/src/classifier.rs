//! The evaluation classifier: trained on real labelled images, it measures how recognisable generated
//! images are (share classified with confidence, Inception-style score), whether every class appears
//! (coverage), and how far their features lie from real ones (classifier-feature FID).

use crate::data::Dataset;
use crate::nn::classifier_net::ClassifierNet;
use crate::safetensors_io::{self, Contents};
use crate::{Error, Result, rng};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use diffuse_math::metrics::{Moments, frechet_distance, inception_score, kid, precision_recall};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const META: &str = "classifier.json";
/// Optimiser steps of `diffuse classifier train` without `--steps` (batch 64).
pub const DEFAULT_STEPS: usize = 1500;
const WEIGHTS: &str = "weights.safetensors";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub data: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub test_accuracy: f64,
}

impl ClassifierMeta {
    pub fn validate(&self) -> Result<()> {
        let size = crate::nn::MAX_SIZE;
        crate::nn::check_sizes(
            "classifier",
            &[
                ("channels", self.channels, size),
                ("height", self.height, size),
                ("width", self.width, size),
                ("classes", self.class_names.len(), size),
            ],
        )
    }
}

pub struct Classifier {
    pub meta: ClassifierMeta,
    net: ClassifierNet,
}

/// One vector per image.
pub type Rows = Vec<Vec<f64>>;

/// What the classifier says about a set of images.
#[derive(Debug, Serialize)]
pub struct Report {
    pub n: usize,
    pub threshold: f64,
    /// Share of images whose top class has probability ≥ threshold.
    pub confident_share: f64,
    pub mean_confidence: f64,
    /// Images per predicted class.
    pub histogram: Vec<usize>,
    pub classes_present: usize,
    pub num_classes: usize,
    /// Accuracy against the images' labels, when they have some.
    pub accuracy: Option<f64>,
    /// Mean L2 distance between two images of the set (its first 500 at most, so that a 10,000-image test set
    /// does not cost 50 million pairs), in [−1, 1] pixel units: a simple diversity measure.
    pub mean_pairwise_distance: f64,
    /// exp E[KL(p(y|x) ‖ p(y))] with this classifier's probabilities: 1 to the number of classes.
    pub inception_score: f64,
    /// Fréchet distance between this set's and a reference set's pooled classifier features, when a reference
    /// is given. Small sets bias it upwards: compare values at equal sizes only.
    pub fid: Option<f64>,
    /// With a reference: KID (mean, std over 50 subsets of up to 100 images) in the same feature space, the
    /// features divided by the reference's RMS feature value.
    pub kid: Option<(f64, f64)>,
    /// With a reference: improved precision (share of images on the reference's k = 3 manifold) and recall.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images: {:.1}% classified with confidence >= {}, mean confidence {:.3}, {}/{} classes present, per class {:?}, mean pairwise distance {:.3}",
            self.n,
            self.confident_share * 100.0,
            self.threshold,
            self.mean_confidence,
            self.classes_present,
            self.num_classes,
            self.histogram,
            self.mean_pairwise_distance
        )?;
        write!(f, ", inception-style score {:.3}", self.inception_score)?;
        if let Some(d) = self.fid {
            write!(f, ", classifier FID {d:.3}")?;
        }
        if let (Some((k, s)), Some(p), Some(r)) = (self.kid, self.precision, self.recall) {
            write!(f, ", KID {k:.4} ± {s:.4}, precision {p:.3}, recall {r:.3}")?;
        }
        if let Some(a) = self.accuracy {
            write!(f, ", accuracy {:.2}%", a * 100.0)?;
        }
        Ok(())
    }
}

fn images(data: &Dataset, idx: &[usize], device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(data.gather(idx), [idx.len(), data.channels, data.height, data.width]),
        device,
    )
}

/// Trains on `train`, reports accuracy on `test`, and saves to `out`. Returns the test accuracy.
pub fn train(train: &Dataset, test: &Dataset, out: &Path, steps: usize, seed: u64) -> Result<f64> {
    let labels = train
        .labels
        .as_ref()
        .ok_or_else(|| Error::Data(format!("{} has no labels", train.name)))?;
    if train.num_classes() < 2 {
        return Err(Error::Data("a classifier needs at least two classes".into()));
    }
    let device = crate::device::train_device();
    let mut net = crate::device::init_seeded(seed, &device, |d| {
        ClassifierNet::new(train.channels, train.num_classes(), d)
    });
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let b = 64;
    for step in 0..steps {
        let mut r = rng::stream(seed, step as u64);
        let idx: Vec<usize> = (0..b).map(|_| r.random_range(0..train.len())).collect();
        let y: Vec<i64> = idx.iter().map(|&i| labels[i] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [b]), &device);
        let logp = log_softmax(net.forward(images(train, &idx, &device)), 1);
        let loss = logp.gather(1, y.unsqueeze_dim::<2>(1)).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let lr = if step < steps * 3 / 4 { 2e-3 } else { 2e-4 };
        net = optim.step(lr, net, grads);
    }
    let clf = Classifier {
        meta: ClassifierMeta {
            data: train.name.clone(),
            channels: train.channels,
            height: train.height,
            width: train.width,
            class_names: train.class_names.clone(),
            test_accuracy: 0.0,
        },
        net: net.valid(),
    };
    let acc = clf.score(test, 0.9, None)?.accuracy.unwrap_or(0.0);
    let meta = ClassifierMeta {
        test_accuracy: acc,
        ..clf.meta.clone()
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut c = Contents::default();
    c.groups.insert("classifier".into(), safetensors_io::collect(&clf.net));
    safetensors_io::write(&out.join(WEIGHTS), &c)?;
    crate::atomic::write(
        &out.join(META),
        serde_json::to_string_pretty(&meta).expect("serialises").as_bytes(),
    )?;
    Ok(acc)
}

impl Classifier {
    pub fn load(dir: &Path) -> Result<Classifier> {
        let path = dir.join(META);
        let meta: ClassifierMeta = crate::atomic::read_json(&path)?;
        meta.validate()?;
        let device = crate::device::device();
        let wpath = dir.join(WEIGHTS);
        let c = safetensors_io::read(&wpath)?;
        let group = c
            .groups
            .get("classifier")
            .ok_or_else(|| Error::checkpoint(&wpath, "holds no classifier weights"))?;
        let net = safetensors_io::load(
            ClassifierNet::new(meta.channels, meta.class_names.len(), &device),
            group,
            false,
            &wpath,
        )?;
        Ok(Classifier { meta, net })
    }

    /// Class probabilities [n][classes] and pooled features [n][128].
    pub fn outputs(&self, data: &Dataset) -> Result<(Rows, Rows)> {
        let m = &self.meta;
        if (data.channels, data.height, data.width) != (m.channels, m.height, m.width) {
            return Err(Error::Data(format!(
                "images are {}×{}×{}, the classifier takes {}×{}×{}",
                data.channels, data.height, data.width, m.channels, m.height, m.width
            )));
        }
        let device = crate::device::device();
        let k = m.class_names.len();
        let (mut probs, mut feats) = (Vec::with_capacity(data.len()), Vec::with_capacity(data.len()));
        let rows = |t: Tensor<2>| -> Vec<Vec<f64>> {
            let [_, d] = t.dims();
            let v: Vec<f32> = t.into_data().try_into_vec().expect("f32");
            v.chunks(d).map(|c| c.iter().map(|&x| x as f64).collect()).collect()
        };
        for start in (0..data.len()).step_by(256) {
            let idx: Vec<usize> = (start..(start + 256).min(data.len())).collect();
            let f = self.net.features(images(data, &idx, &device));
            probs.extend(rows(softmax(self.net.logits(f.clone()), 1)));
            feats.extend(rows(f));
        }
        debug_assert!(probs.iter().all(|p| p.len() == k));
        Ok((probs, feats))
    }

    /// Scores `data`; with a `reference` set (real images) also the classifier-feature FID against it.
    pub fn score(&self, data: &Dataset, threshold: f64, reference: Option<&Dataset>) -> Result<Report> {
        let (probs, feats) = self.outputs(data)?;
        let (mut fid, mut kid_value, mut precision, mut recall) = (None, None, None, None);
        if let Some(r) = reference {
            let moments = |f: &[Vec<f64>], what: &str| {
                Moments::of(f).ok_or_else(|| Error::Data(format!("FID needs at least two {what} images")))
            };
            let (_, ref_feats) = self.outputs(r)?;
            fid = Some(frechet_distance(
                &moments(&feats, "scored")?,
                &moments(&ref_feats, "reference")?,
            ));
            // The cubic kernel is scale-sensitive: features are first divided by the reference's RMS value, so
            // that they have the O(1) scale the kernel was designed for (Inception's pool features).
            let rms = (ref_feats.iter().flatten().map(|v| v * v).sum::<f64>()
                / ref_feats.iter().map(Vec::len).sum::<usize>().max(1) as f64)
                .sqrt()
                .max(1e-12);
            let unit =
                |f: &[Vec<f64>]| -> Vec<Vec<f64>> { f.iter().map(|r| r.iter().map(|v| v / rms).collect()).collect() };
            kid_value = Some(kid(&unit(&feats), &unit(&ref_feats), 50, 100, 0));
            let (p, rc) = precision_recall(&ref_feats, &feats, 3);
            (precision, recall) = (Some(p), Some(rc));
        }
        let k = self.meta.class_names.len();
        let mut histogram = vec![0; k];
        let (mut confident, mut conf_sum, mut correct) = (0, 0.0, 0);
        for (i, p) in probs.iter().enumerate() {
            let (arg, &max) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("classes");
            histogram[arg] += 1;
            conf_sum += max;
            confident += (max >= threshold) as usize;
            if let Some(l) = &data.labels {
                correct += (l[i] as usize == arg) as usize;
            }
        }
        let n = probs.len().max(1) as f64;
        let (mut dist, mut pairs) = (0.0, 0usize);
        let m = data.len().min(500);
        for i in 0..m {
            for j in i + 1..m {
                let d: f64 = data
                    .image(i)
                    .iter()
                    .zip(data.image(j))
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum();
                dist += d.sqrt();
                pairs += 1;
            }
        }
        Ok(Report {
            mean_pairwise_distance: dist / pairs.max(1) as f64,
            n: probs.len(),
            threshold,
            confident_share: confident as f64 / n,
            mean_confidence: conf_sum / n,
            classes_present: histogram.iter().filter(|&&c| c > 0).count(),
            num_classes: k,
            histogram,
            accuracy: data.labels.as_ref().map(|_| correct as f64 / n),
            inception_score: inception_score(&probs),
            fid,
            kid: kid_value,
            precision,
            recall,
        })
    }
}
