//! DDIM (Song et al. 2021) with the DDPM model: same training, fast sampling in 20–250 steps,
//! x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z with σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev).
//! η = 0 is deterministic (same noise, same image); η = 1 is DDPM on the shorter grid. Latents interpolate
//! smoothly along a spherical path.
//!
//!     cargo run --release --example ddim        (about 11 s after the ddpm example; without it, first about 2 minutes to train its model)
//!
//! Writes runs/examples/ddim/: ddim-20.png, ddim-50.png, ddim-250.png, eta.png and interpolation.png.

mod common;

use common::*;
use diffuse::data::{Dataset, Split};
use diffuse::denoise::Cond;
use diffuse::run::RunConfig;
use diffuse::sample::{self, Method, Plan, Process};

fn main() -> Result<()> {
    let dir = out_dir("ddim")?;
    // The DDPM example's model: DDIM needs no other training (it is trained here if that example has not run).
    let data = Dataset::load("digits", Split::Train)?;
    let run = train_or_reuse(
        &out_dir("ddpm")?.join("run"),
        &RunConfig::for_data(&diffuse::data::DataSpec::Digits, &data),
        &data,
    )?;
    let plan = |eta: f64, steps: usize| {
        let process = Process::Discrete(run.schedule.clone());
        Plan::new(Method::Ddim { eta }, process, steps)
    };
    let classifier = digits_classifier()?;

    // 1. Fewer steps: 20, 50 and 250 network calls instead of 1000.
    for steps in [20, 50, 250] {
        println!("DDIM, {steps} steps, eta 0:");
        let images = draw(&run, &plan(0.0, steps)?, 64, 1, &Cond::default(), 1.0)?;
        grid(&dir.join(format!("ddim-{steps}.png")), &run, &images, 64, 8)?;
        let r = classifier.score(&as_digits(images, None), 0.9, None)?;
        println!("  {:.1}% classified with confidence >= 0.9", r.confident_share * 100.0);
    }

    // 2. Determinism: with η = 0 the same starting noise gives the same image; η = 1 adds fresh noise per step.
    let twice = |eta: f64, seed_of_steps: u64| -> Result<Vec<f32>> {
        let den = denoiser(&run, 1.0)?;
        let device = diffuse::device::device();
        let (x, _) = sample::start(7, 0, 8, [1, 8, 8], 1.0, &device); // the same noise every time
        let (_, mut streams) = sample::start(seed_of_steps, 0, 8, [1, 8, 8], 1.0, &device);
        let out = sample::run(
            &den,
            &plan(eta, 50)?,
            x,
            &mut streams,
            Cond::default(),
            &[],
            &mut |_| {},
        );
        Ok(sample::to_vec(out.x))
    };
    let (a, b) = (twice(0.0, 1)?, twice(0.0, 2)?);
    assert_eq!(
        a, b,
        "DDIM with eta 0 is a deterministic function of the starting noise"
    );
    let (c, d) = (twice(1.0, 1)?, twice(1.0, 2)?);
    let moved = c.iter().zip(&d).map(|(x, y)| (x - y).abs()).sum::<f32>() / c.len() as f32;
    println!("same noise, eta 0: identical images; eta 1: mean pixel change {moved:.3} between two runs");
    let rows = [a, c, d].concat();
    let [ch, h, w] = run.config.output_shape();
    let labels = ["η = 0 (either run)", "η = 1, run 1", "η = 1, run 2"];
    let path = dir.join("eta.png");
    let picture = diffuse::plot::label_rows(&diffuse::imageio::grid(&rows, 24, ch, h, w, 8), &labels);
    diffuse::imageio::write_rgb(&path, picture)?;
    println!("  wrote {}", path.display());

    // 3. Interpolation: slerp between two starting noises, each frame sampled with DDIM(η = 0).
    let device = diffuse::device::device();
    let ends: Vec<Vec<f32>> = [3u64, 4]
        .iter()
        .map(|&s| sample::to_vec(sample::start(s, 0, 1, [1, 8, 8], 1.0, &device).0))
        .collect();
    let frames = 10;
    let mut z = Vec::new();
    for i in 0..frames {
        z.extend(diffuse::edit::slerp(&ends[0], &ends[1], i as f64 / (frames - 1) as f64));
    }
    let den = denoiser(&run, 1.0)?;
    let drawn = sample::draw(
        &den,
        &plan(0.0, 50)?,
        0,
        frames,
        [1, 8, 8],
        frames,
        Some(&z),
        &Cond::default(),
        &[],
        &device,
        &mut |_| {},
    );
    grid(&dir.join("interpolation.png"), &run, &drawn.images, frames, frames)?;
    Ok(())
}
