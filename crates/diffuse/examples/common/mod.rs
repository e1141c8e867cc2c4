//! What the five examples share: where they write, training a run (or reusing one trained with the same
//! configuration), drawing images, pictures, and the evaluation classifier that says how recognisable they are.
#![allow(dead_code)] // each example uses its own part of this

use diffuse::classifier::{self, Classifier};
use diffuse::data::{Dataset, Split};
use diffuse::denoise::{Cond, Guidance, NetDenoiser};
use diffuse::run::{self, LoadedRun, RunConfig, Weights};
use diffuse::sample::{self, Plan};
use diffuse::train::{self, Options};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub type Result<T> = anyhow::Result<T>;

/// `runs/examples/NAME`, created.
pub fn out_dir(name: &str) -> Result<PathBuf> {
    let dir = PathBuf::from("runs/examples").join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Trains `cfg` on `data` into `dir`, unless `dir` already holds a finished run of the same configuration.
pub fn train_or_reuse(dir: &Path, cfg: &RunConfig, data: &Dataset) -> Result<LoadedRun> {
    let done = RunConfig::read(dir).ok().as_ref() == Some(cfg)
        && run::load(dir, Weights::Ema, &diffuse::device::device()).is_ok_and(|r| r.step == cfg.train.steps);
    if done {
        println!("reusing the trained run in {}", dir.display());
    } else {
        // A fresh start: drop an older run's files (other files, such as a latent run's vae/, stay).
        for f in [run::CONFIG_FILE, run::CHECKPOINT_FILE] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        println!(
            "training {} steps on {} ({} images) into {} ...",
            cfg.train.steps,
            cfg.data,
            data.len(),
            dir.display()
        );
        let opts = Options {
            progress: true,
            ..Options::default()
        };
        let s = train::train(cfg, data, dir, &opts)?;
        println!("  trained in {:.0} s, final loss {:.4}", s.seconds, s.final_loss);
    }
    Ok(run::load(dir, Weights::Ema, &diffuse::device::device())?)
}

/// The run's network as a denoiser: x̂₀ clipped to [−1, 1] for pixel runs, classifier-free guidance scale `w`.
pub fn denoiser(run: &LoadedRun, w: f64) -> Result<NetDenoiser<'_>> {
    Ok(run.denoiser(Guidance::scale(w)))
}

/// `n` images (decoded, for latent runs) from `plan`, image i from seed `seed`'s stream i; prints the time.
pub fn draw(run: &LoadedRun, plan: &Plan, n: usize, seed: u64, cond: &Cond, guidance: f64) -> Result<Vec<f32>> {
    let den = denoiser(run, guidance)?;
    let cfg = &run.config;
    let started = Instant::now();
    let drawn = sample::draw(
        &den,
        plan,
        seed,
        n,
        [cfg.channels, cfg.height, cfg.width],
        64,
        None,
        cond,
        &[],
        &diffuse::device::device(),
        &mut |_| {},
    );
    let images = run.to_images(drawn.images, n);
    println!(
        "  {n} images, {} NFE each, in {:.1} s",
        drawn.nfe_per_image,
        started.elapsed().as_secs_f64()
    );
    Ok(images)
}

/// A grid of `n` images of `run`'s output shape, `cols` per row.
pub fn grid(path: &Path, run: &LoadedRun, images: &[f32], n: usize, cols: usize) -> Result<()> {
    let [c, h, w] = run.config.output_shape();
    diffuse::imageio::write_grid(path, images, n, c, h, w, cols)?;
    println!("  wrote {}", path.display());
    Ok(())
}

/// The digits classifier (trained once into runs/examples/classifier, about a minute).
pub fn digits_classifier() -> Result<Classifier> {
    let dir = out_dir("classifier")?;
    if Classifier::load(&dir).is_err() {
        println!("training the evaluation classifier on the digits ...");
        let train = Dataset::load("digits", Split::Train)?;
        let test = Dataset::load("digits", Split::Test)?;
        let acc = classifier::train(&train, &test, &dir, 1500, 0)?;
        println!("  held-out accuracy {:.1}%", acc * 100.0);
    }
    Ok(Classifier::load(&dir)?)
}

/// Digits (8×8 grey) as a data set, labelled with `classes` when given, for the classifier.
pub fn as_digits(images: Vec<f32>, classes: Option<Vec<u32>>) -> Dataset {
    let mut d = Dataset::load("digits", Split::Test).expect("embedded");
    d.images = images;
    d.labels = classes;
    d
}
