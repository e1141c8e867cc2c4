//! `diffuse eval`: samples a run and measures the samples against its data's held-out images in the
//! reference Inception's features (FID, KID, precision, recall), and with a classifier (accuracy for
//! class-conditional draws, Inception-style score, class coverage).

use super::sample_cmd::{DrawArgs, draw_samples};
use anyhow::bail;
use clap::Args;
use diffuse::classifier::Classifier;
use diffuse::data::{Dataset, Split};
use diffuse::fid::{self, Extractor};
use diffuse_math::metrics::{kid, precision_recall};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse eval --run runs/digits --sampler ddim --steps 50 --n 297\n  \
diffuse eval --run runs/digits-cond --sampler ddim --steps 50 --n 30 --class all --guidance 3 \
--classifier runs/quality/classifier --json\n\n\
The reference is the held-out split of the run's data; its Inception features are cached in the run \
directory (fid-reference.safetensors). FID and KID are biased by small sets: compare values at equal sizes.")]
pub struct EvalArgs {
    #[command(flatten)]
    draw: DrawArgs,
    /// Number of images (per class with --class all).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Measure against only the first N held-out images (default: all; MNIST has 10,000, about an hour of
    /// Inception on 2 cores). Fewer bias FID upwards, so compare values at equal sizes.
    #[arg(long, value_name = "N")]
    reference: Option<usize>,
    /// The Inception weights (default: $DIFFUSE_INCEPTION, the fetch cache, or the shared folder).
    #[arg(long, value_name = "PATH")]
    inception: Option<PathBuf>,
    /// A classifier directory (`diffuse classifier train`): adds accuracy, Inception-style score, coverage.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

const REFERENCE: &str = "fid-reference.safetensors";

/// The held-out images' features, computed once per run and data set.
fn reference_features(dir: &Path, data: &Dataset, ex: &Extractor, quiet: bool) -> anyhow::Result<Vec<Vec<f64>>> {
    let path = dir.join(REFERENCE);
    let key = format!("{}:{}", data.name, data.len());
    if let Ok(c) = diffuse::safetensors_io::read(&path)
        && c.metadata.get("reference").is_some_and(|k| *k == key)
        && let Some(t) = c.groups.get("ref").and_then(|g| g.get("features"))
    {
        return Ok(t
            .data
            .chunks(t.shape[1])
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect());
    }
    if !quiet {
        eprintln!(
            "Inception features of the {} held-out images of {} (cached for later)",
            data.len(),
            data.name
        );
    }
    let features = ex.features(&fid::dataset_images(data), !quiet);
    let mut c = diffuse::safetensors_io::Contents::default();
    let flat: Vec<f32> = features.iter().flatten().map(|&v| v as f32).collect();
    c.groups.entry("ref".into()).or_default().insert(
        "features".into(),
        diffuse::safetensors_io::NamedTensor {
            id: 0,
            shape: vec![features.len(), features[0].len()],
            data: flat,
        },
    );
    c.metadata.insert("reference".into(), key);
    diffuse::safetensors_io::write(&path, &c)?;
    Ok(features)
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let out = measure(&a, a.json)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let per_image = out["sampling_seconds_per_image"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{} images with {} (NFE {} per image, {per_image:.3} s per image) against {} held-out images of {}:",
        out["images"],
        out["sampler"].as_str().unwrap_or_default(),
        out["nfe_per_image"],
        out["reference_images"],
        out["data"].as_str().unwrap_or_default()
    );
    let num = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "FID {:.2}  KID {:.4} ± {:.4}  precision {:.3}  recall {:.3}  (Inception {:.1} images/s)",
        num("fid"),
        num("kid"),
        num("kid_std"),
        num("precision"),
        num("recall"),
        num("inception_images_per_second")
    );
    if let Some(r) = out.get("classifier") {
        let pct = |k: &str| r[k].as_f64().map_or("–".into(), |v| format!("{:.1}%", v * 100.0));
        println!(
            "classifier: accuracy {}, Inception-style score {:.2}, {}/{} classes present, classifier FID {:.1}",
            pct("accuracy"),
            r["inception_score"].as_f64().unwrap_or(f64::NAN),
            r["classes_present"],
            r["num_classes"],
            r["fid"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// Samples as `a` says and measures; the JSON object `eval --json` prints. `quiet`: no progress output.
pub(super) fn measure(a: &EvalArgs, quiet: bool) -> anyhow::Result<serde_json::Value> {
    let loaded = a.draw.load()?;
    let run_dir = a.draw.run_dir();
    let cfg = &loaded.config;
    if (cfg.height, cfg.width) == (1, 1) {
        bail!("{} is a point-cloud run; eval measures images", run_dir.display());
    }
    let mut data = Dataset::load(&cfg.data, Split::Test)?;
    if let Some(k) = a.reference {
        if k < 2 {
            bail!("--reference needs at least 2 images");
        }
        data = data.subset(&(0..k.min(data.len())).collect::<Vec<_>>());
    }
    let ex = Extractor::load(&fid::locate_weights(a.inception.as_deref())?)?;
    let classifier = a.classifier.as_deref().map(Classifier::load).transpose()?;
    let drawn = draw_samples(&loaded, &a.draw, a.n, false, None, false)?;
    let shape = cfg.output_shape();
    let started = Instant::now();
    let fake = ex.features(&fid::u8_images(&drawn.images, drawn.n, shape), !quiet);
    let feature_secs = started.elapsed().as_secs_f64();
    let real = reference_features(run_dir, &data, &ex, quiet)?;
    let fid_value = fid::fid(&fid::moments(&real, "reference")?, &fid::moments(&fake, "sampled")?)?;
    let (kid_mean, kid_std) = kid(&real, &fake, 50, 100, 0);
    let (precision, recall) = precision_recall(&real, &fake, 3);
    let mut out = json!({
        "run": run_dir.display().to_string(),
        "data": data.name.clone(),
        "sampler": drawn.describe,
        "images": drawn.n,
        "reference_images": real.len(),
        "nfe_per_image": drawn.nfe,
        "sampling_seconds_per_image": drawn.secs / drawn.n as f64,
        "fid": fid_value,
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "inception_images_per_second": drawn.n as f64 / feature_secs,
    });
    if let Some(clf) = &classifier {
        let [c, h, w] = shape;
        let samples = Dataset {
            name: "samples".into(),
            channels: c,
            height: h,
            width: w,
            images: drawn.images.clone(),
            labels: drawn.classes.clone(),
            class_names: cfg.class_names.clone(),
        };
        let report = clf.score(&samples, 0.9, Some(&data))?;
        out["classifier"] = serde_json::to_value(&report)?;
    }
    Ok(out)
}
