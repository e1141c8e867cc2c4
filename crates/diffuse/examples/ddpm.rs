//! DDPM (Ho et al. 2020) on the embedded 8×8 digits: a UNet with time embedding and attention learns to predict
//! the noise ε in x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε (linear β 1e-4 → 0.02 over T = 1000, AdamW at 3e-4), then draws
//! digits with the full 1000-step ancestral reverse process.
//!
//!     cargo run --release --example ddpm        (about 3 minutes on 2 cores)
//!
//! Writes runs/examples/ddpm/: the run (config.json, checkpoint, loss.png), ddpm-1000.png and strip.png.

mod common;

use common::*;
use diffuse::data::{Dataset, Split};
use diffuse::denoise::Cond;
use diffuse::run::RunConfig;
use diffuse::sample::{self, Method, Plan, Process};
use diffuse_math::TimestepSpacing;

fn main() -> Result<()> {
    let dir = out_dir("ddpm")?;
    // 1. Training: the library's defaults for this data (what `diffuse train --data digits` does).
    let data = Dataset::load("digits", Split::Train)?;
    let cfg = RunConfig::for_data(&diffuse::data::DataSpec::Digits, &data);
    let run = train_or_reuse(&dir.join("run"), &cfg, &data)?;

    // 2. Sampling: ancestral steps x_{t−1} = μ̃(x_t, x̂₀) + σ_t z through all 1000 train timesteps.
    let ddpm = Method::Ddpm { large_variance: false };
    let plan = Plan::new(ddpm, Process::Discrete(run.schedule.clone()), 1000)?
        .with_grid(ddpm.timestep_grid(TimestepSpacing::Leading))?;
    println!("sampling with DDPM, 1000 steps ...");
    let images = draw(&run, &plan, 64, 1, &Cond::default(), 1.0)?;
    grid(&dir.join("ddpm-1000.png"), &run, &images, 64, 8)?;

    // 3. The reverse process as pictures: x̂₀ every 100 steps of the first 8 images, then the result.
    let den = denoiser(&run, 1.0)?;
    let keep: Vec<usize> = (0..10).map(|k| k * 111).collect();
    let device = diffuse::device::device();
    let drawn = sample::draw(
        &den,
        &plan,
        1,
        8,
        [1, 8, 8],
        8,
        None,
        &Cond::default(),
        &keep,
        &device,
        &mut |_| {},
    );
    let mut tiles = Vec::new();
    for i in 0..8 {
        for x0 in &drawn.strip {
            tiles.extend_from_slice(&x0[i * 64..(i + 1) * 64]);
        }
        tiles.extend_from_slice(&drawn.images[i * 64..(i + 1) * 64]);
    }
    grid(&dir.join("strip.png"), &run, &tiles, tiles.len() / 64, 11)?;

    // 4. How recognisable are the samples? The project's classifier (93.9% on real held-out digits).
    let report = digits_classifier()?.score(&as_digits(images, None), 0.9, None)?;
    println!("DDPM-1000 samples: {report}");
    Ok(())
}
