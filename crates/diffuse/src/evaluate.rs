//! Measuring a run's samples, the workflow behind `eval` and `compare`: against its data's held-out images in
//! the reference Inception's features (FID, KID, precision, recall), and with a classifier (accuracy for
//! class-conditional draws, Inception-style score, class coverage), into one typed [`Report`].

use crate::classifier::{self, Classifier};
use crate::data::Dataset;
use crate::fid::{self, Extractor};
use crate::generate::Samples;
use crate::safetensors_io::{self, Contents, NamedTensor};
use crate::{Error, Result};
use diffuse_math::metrics::{kid, precision_recall};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The reference features' cache in a run directory.
pub const REFERENCE_CACHE: &str = "fid-reference.safetensors";

/// What `eval --json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub run: String,
    /// The held-out data measured against.
    pub data: String,
    pub sampler: String,
    /// The sampler's settings, as [`crate::sample::Spec`] reads them back.
    pub sampler_spec: crate::sample::Spec,
    pub images: usize,
    pub reference_images: usize,
    pub nfe_per_image: usize,
    pub sampling_seconds_per_image: f64,
    pub fid: f64,
    pub kid: f64,
    pub kid_std: f64,
    pub precision: f64,
    pub recall: f64,
    pub inception_images_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier: Option<classifier::Report>,
}

/// The held-out images' features, computed once per run directory and data set and cached there.
pub fn reference_features(dir: &Path, data: &Dataset, ex: &Extractor, progress: bool) -> Result<Vec<Vec<f64>>> {
    let path = dir.join(REFERENCE_CACHE);
    let key = format!("{}:{}", data.name, data.len());
    if let Ok(c) = safetensors_io::read(&path)
        && c.metadata.get("reference").is_some_and(|k| *k == key)
        && let Some(t) = c.groups.get("ref").and_then(|g| g.get("features"))
    {
        return Ok(t
            .data
            .chunks(t.shape[1])
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect());
    }
    if progress {
        eprintln!(
            "Inception features of the {} held-out images of {} (cached for later)",
            data.len(),
            data.name
        );
    }
    let features = ex.features(&fid::dataset_images(data), progress);
    let mut c = Contents::default();
    c.groups.entry("ref".into()).or_default().insert(
        "features".into(),
        NamedTensor {
            id: 0,
            shape: vec![features.len(), features[0].len()],
            data: features.iter().flatten().map(|&v| v as f32).collect(),
        },
    );
    c.metadata.insert("reference".into(), key);
    safetensors_io::write(&path, &c)?;
    Ok(features)
}

/// Measures `samples` (images of `shape`, classes named `class_names`) drawn from the run in `run_dir`
/// against the held-out `reference` images.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    run_dir: &Path,
    samples: &Samples,
    shape: [usize; 3],
    class_names: &[String],
    reference: &Dataset,
    ex: &Extractor,
    classifier: Option<&Classifier>,
    progress: bool,
) -> Result<Report> {
    if reference.len() < 2 {
        return Err(Error::Invalid("the reference needs at least 2 images".into()));
    }
    let started = Instant::now();
    let fake = ex.features(&fid::u8_images(&samples.images, samples.n, shape), progress);
    let feature_secs = started.elapsed().as_secs_f64();
    let real = reference_features(run_dir, reference, ex, progress)?;
    // Means, covariances, their matrix square root, KID and the k-NN manifolds take seconds: say so.
    let spin = crate::progress::spinner("FID, KID, precision and recall from the features", progress);
    let fid_value = fid::fid(&fid::moments(&real, "reference")?, &fid::moments(&fake, "sampled")?)?;
    let (kid_mean, kid_std) = kid(&real, &fake, 50, 100, 0);
    let (precision, recall) = precision_recall(&real, &fake, 3);
    spin.finish_and_clear();
    let classifier = classifier
        .map(|clf| {
            let [c, h, w] = shape;
            let drawn = Dataset {
                name: "samples".into(),
                channels: c,
                height: h,
                width: w,
                images: samples.images.clone(),
                labels: samples.classes.clone(),
                class_names: class_names.to_vec(),
                captions: None,
            };
            clf.score(&drawn, 0.9, Some(reference))
        })
        .transpose()?;
    Ok(Report {
        run: run_dir.display().to_string(),
        data: reference.name.clone(),
        sampler: samples.describe.clone(),
        sampler_spec: samples.spec.clone(),
        images: samples.n,
        reference_images: real.len(),
        nfe_per_image: samples.nfe,
        sampling_seconds_per_image: samples.secs / samples.n as f64,
        fid: fid_value,
        kid: kid_mean,
        kid_std,
        precision,
        recall,
        inception_images_per_second: samples.n as f64 / feature_secs,
        classifier,
    })
}
