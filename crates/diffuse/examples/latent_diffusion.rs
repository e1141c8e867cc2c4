//! Latent diffusion (Rombach et al. 2022): a KL-autoencoder compresses each image to a small latent (here the
//! 8×8 digits to 4 channels of 4×4), a diffusion model is trained on the latents scaled to unit variance, and
//! samples are decoded at the end. The same sampler then works on 4× fewer positions. (For 32×32 colour
//! emoji → 4×8×8 latents and the measured saving, see `scripts/latent.sh` and the README.)
//!
//!     cargo run --release --example latent_diffusion        (about 2½ minutes on 2 cores)
//!
//! Writes runs/examples/latent/: vae/ (with reconstructions.png), run/, samples.png.

mod common;

use common::*;
use diffuse::data::{Dataset, Split};
use diffuse::denoise::Cond;
use diffuse::nn::VaeConfig;
use diffuse::run::{LatentConfig, RunConfig, VAE_DIR};
use diffuse::sample::{Method, Plan, Process};
use diffuse::vae::{self, LatentSpace, VaeTrainConfig};

fn main() -> Result<()> {
    let dir = out_dir("latent")?;
    let train = Dataset::load("digits", Split::Train)?;
    let test = Dataset::load("digits", Split::Test)?;

    // 1. The autoencoder: factor 2, 4 latent channels; L1 reconstruction + a small KL term.
    let vae_dir = dir.join("vae");
    if LatentSpace::load(&vae_dir).is_err() {
        println!("training the VAE ...");
        let net = VaeConfig {
            base_channels: 16,
            ..VaeConfig::for_image(1, 8, 8, 2)
        };
        let cfg = VaeTrainConfig::default(); // `diffuse vae train`'s defaults: 1500 steps of 32, L1 loss
        vae::train(&net, &cfg, &train, &test, &vae_dir, true)?;
    }
    let space = LatentSpace::load(&vae_dir)?;
    let q = &space.meta.quality;
    println!(
        "VAE: held-out PSNR {:.2} dB, SSIM {:.3}; latent scale {:.3}",
        q.psnr_db, q.ssim, space.meta.scale
    );

    // 2. Diffusion on the scaled latents: the data set becomes the encoder's means × scale.
    let latents = space.encode(&train)?;
    let mut cfg = RunConfig::for_data(&diffuse::data::DataSpec::Digits, &latents);
    cfg.latent = Some(LatentConfig {
        vae: VAE_DIR.into(),
        scale: space.meta.scale,
        image: space.image_shape(),
    });
    let run_dir = dir.join("run");
    std::fs::create_dir_all(run_dir.join(VAE_DIR))?;
    for f in [vae::WEIGHTS, vae::META] {
        diffuse::atomic::write(&run_dir.join(VAE_DIR).join(f), &std::fs::read(vae_dir.join(f))?)?;
    }
    let run = train_or_reuse(&run_dir, &cfg, &latents)?;

    // 3. Sampling in the latent space, decoding at the end.
    let process = Process::Discrete(run.schedule.clone());
    println!("DDIM-50 in the latent space:");
    let images = draw(
        &run,
        &Plan::new(Method::Ddim { eta: 0.0 }, process, 50)?,
        64,
        1,
        &Cond::default(),
        1.0,
    )?;
    grid(&dir.join("samples.png"), &run, &images, 64, 8)?;
    let r = digits_classifier()?.score(&as_digits(images, None), 0.9, None)?;
    println!("  {:.1}% classified with confidence >= 0.9", r.confident_share * 100.0);
    Ok(())
}
