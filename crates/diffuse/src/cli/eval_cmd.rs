//! `diffuse eval`: samples a run and measures the samples against its data's held-out images in the
//! reference Inception's features (FID, KID, precision, recall), and with a classifier (accuracy for
//! class-conditional draws, Inception-style score, class coverage).

use super::sample_cmd::{DrawArgs, draw_samples};
use anyhow::bail;
use clap::Args;
use diffuse::classifier::Classifier;
use diffuse::data::Split;
use diffuse::evaluate;
use diffuse::fid::{self, Extractor};
use std::path::PathBuf;

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
    /// Measure against this data's held-out split instead of the run's (an imported model's data, or
    /// another folder of images of the same shape).
    #[arg(long, value_name = "SPEC")]
    data: Option<diffuse::data::DataSpec>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let loaded = a.draw.load()?;
    if loaded.config.is_points() {
        return eval_points(&a, &loaded);
    }
    let r = measure(&a, &loaded, a.json)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} images with {} (NFE {} per image, {:.3} s per image) against {} held-out images of {}:",
        r.images, r.sampler, r.nfe_per_image, r.sampling_seconds_per_image, r.reference_images, r.data
    );
    println!(
        "FID {:.2}  KID {:.4} ± {:.4}  precision {:.3}  recall {:.3}  (Inception {:.1} images/s)",
        r.fid, r.kid, r.kid_std, r.precision, r.recall, r.inception_images_per_second
    );
    if let Some(c) = &r.classifier {
        let accuracy = c.accuracy.map_or("–".into(), |v| format!("{:.1}%", v * 100.0));
        println!(
            "classifier: accuracy {accuracy}, {:.1}% confident (p ≥ {}), Inception-style score {:.2}, {}/{} classes present, classifier FID {:.1}",
            c.confident_share * 100.0,
            c.threshold,
            c.inception_score,
            c.classes_present,
            c.num_classes,
            c.fid.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// A point-cloud run: its samples against the held-out draw of its shape (Chamfer distance, coverage,
/// fidelity; for the torus, distances from the core circle).
fn eval_points(a: &EvalArgs, loaded: &diffuse::run::LoadedRun) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let data = a.data.as_ref().unwrap_or(&cfg.data);
    let drawn = draw_samples(loaded, &a.draw, a.n)?;
    // As many held-out points as were drawn: coverage and Chamfer distance depend on the counts. The same count of
    // training points against them is the floor a perfect model would reach.
    let d = cfg.channels;
    let first = |split: Split| -> anyhow::Result<Vec<f32>> {
        let mut v = data.load(split)?.images;
        v.truncate(drawn.images.len());
        Ok(v)
    };
    let held = first(Split::Test)?;
    let shape = match data {
        diffuse::data::DataSpec::Points(s) => diffuse::points_eval::Shape::of(s),
        _ => diffuse::points_eval::Shape::Other,
    };
    let r = diffuse::points_eval::compare(&drawn.images, &held, d, shape)?;
    let floor = diffuse::points_eval::compare(&first(Split::Train)?, &held, d, shape)?;
    if a.json {
        println!("{}", serde_json::json!({ "model": r, "real": floor }));
        return Ok(());
    }
    println!(
        "{} points with {} against {} held-out points: Chamfer {:.4}, coverage {:.1}%, fidelity {:.1}% (within {})",
        r.generated,
        drawn.describe,
        r.reference,
        r.chamfer,
        r.coverage * 100.0,
        r.fidelity * 100.0,
        diffuse::points_eval::MATCH_RADIUS
    );
    println!(
        "as many training points against them: Chamfer {:.4}, coverage {:.1}%, fidelity {:.1}%",
        floor.chamfer,
        floor.coverage * 100.0,
        floor.fidelity * 100.0
    );
    if let (Some([model, _]), Some([_, real])) = (r.crossbar_share, floor.crossbar_share) {
        println!(
            "on the crossbar (within {}): {:.1}% of the points, {:.1}% of the real ones",
            diffuse::points_eval::MATCH_RADIUS,
            model * 100.0,
            real * 100.0
        );
    }
    if let Some([q10, q50, q90]) = r.tube_quantiles {
        println!(
            "distance from the torus's core circle: 10% {q10:.3}, median {q50:.3}, 90% {q90:.3} (the surface: {})",
            diffuse::points_eval::TORUS.1
        );
    }
    Ok(())
}

/// Samples as `a` says and measures; `quiet`: no progress output.
fn measure(a: &EvalArgs, loaded: &diffuse::run::LoadedRun, quiet: bool) -> anyhow::Result<evaluate::Report> {
    let run_dir = a.draw.run_dir();
    let cfg = &loaded.config;
    let mut data = a.data.as_ref().unwrap_or(&cfg.data).load(Split::Test)?;
    if let Some(k) = a.reference {
        if k < 2 {
            bail!("--reference needs at least 2 images");
        }
        data = data.subset(&(0..k.min(data.len())).collect::<Vec<_>>());
    }
    let ex = Extractor::load(&fid::locate_weights(a.inception.as_deref())?)?;
    let classifier = a.classifier.as_deref().map(Classifier::load).transpose()?;
    let drawn = draw_samples(loaded, &a.draw, a.n)?;
    Ok(evaluate::evaluate(
        run_dir,
        &drawn,
        cfg.output_shape(),
        &cfg.class_names,
        &data,
        &ex,
        classifier.as_ref(),
        !quiet,
    )?)
}
