//! `diffuse vae train|reconstruct`: the autoencoder of latent diffusion.

use anyhow::bail;
use clap::{Args, Subcommand};
use diffuse::data::{Dataset, Split};
use diffuse::nn::VaeConfig;
use diffuse::vae::{self, LatentSpace, Reconstruction, VaeTrainConfig};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum VaeCommand {
    /// Train a KL-VAE on a data set and write a VAE directory (weights, vae.json with the latent scale and
    /// held-out PSNR/SSIM, reconstructions.png).
    Train(VaeTrainArgs),
    /// Reconstruct a data set's held-out images and report PSNR and SSIM.
    Reconstruct(VaeReconstructArgs),
    /// Import a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors, e.g. the
    /// Stable Diffusion VAE) as a VAE directory that `diffuse train --vae` takes.
    Import(VaeImportArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse vae import --diffusers sd-vae-ft-mse --out runs/sd-vae --data folder:my-images-256\n  \
diffuse vae import --diffusers sd-vae-ft-mse --out runs/sd-vae --size 256,256")]
pub struct VaeImportArgs {
    /// The diffusers folder (float32 weights).
    #[arg(long, value_name = "DIR")]
    diffusers: PathBuf,
    /// Output VAE directory.
    #[arg(long)]
    out: PathBuf,
    /// Data whose training latents set the latent scale and whose held-out images measure the
    /// reconstructions; it also fixes the image size.
    #[arg(long, conflicts_with = "size")]
    data: Option<String>,
    /// Image size H,W when no --data is given (the latent scale is then the folder's scaling_factor).
    #[arg(long, value_name = "H,W")]
    size: Option<String>,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse vae train --data emoji:../shared/data/emoji-noto --out runs/emoji-vae --factor 4"
)]
pub struct VaeTrainArgs {
    /// Training data (see `diffuse train --help`); its held-out split measures the reconstructions.
    #[arg(long)]
    data: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Downsampling factor: 4 (32×32 → 8×8 latents) or 8.
    #[arg(long, default_value_t = 4)]
    factor: usize,
    /// Latent channels.
    #[arg(long, default_value_t = 4)]
    latent_channels: usize,
    /// Channels at the top level (each lower level has twice as many).
    #[arg(long, default_value_t = 32)]
    base_channels: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = VaeTrainConfig::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = VaeTrainConfig::default().batch_size)]
    batch_size: usize,
    /// Peak AdamW learning rate.
    #[arg(long, default_value_t = VaeTrainConfig::default().lr)]
    lr: f64,
    /// Weight of the KL term (mean over latent elements) against the reconstruction loss (mean over pixels).
    #[arg(long, default_value_t = VaeTrainConfig::default().kl_weight)]
    kl_weight: f64,
    /// Reconstruction loss.
    #[arg(long, default_value = "l1", value_parser = super::one_of::<Reconstruction>(Reconstruction::NAMES))]
    loss: Reconstruction,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  diffuse vae reconstruct --vae runs/emoji-vae --data emoji:../shared/data/emoji-noto --out pairs.png\n  \
diffuse vae reconstruct --vae runs/emoji-vae --data emoji:../shared/data/emoji-noto --out-dir recon && diffuse fid recon emoji:../shared/data/emoji-noto"
)]
pub struct VaeReconstructArgs {
    /// A directory written by `diffuse vae train`.
    #[arg(long)]
    vae: PathBuf,
    /// Images to reconstruct (held-out split).
    #[arg(long)]
    data: String,
    /// Also write originals above their reconstructions (first 16).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write every reconstruction as a PNG here (00000.png, …), e.g. for `diffuse fid DIR DATA`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub fn vae(c: VaeCommand) -> anyhow::Result<()> {
    match c {
        VaeCommand::Train(a) => {
            if a.out.join(vae::META).exists() {
                bail!("{} already holds a VAE; choose another --out", a.out.display());
            }
            if !(a.kl_weight.is_finite() && a.kl_weight >= 0.0 && a.lr.is_finite() && a.lr > 0.0) {
                bail!("--kl-weight must be ≥ 0 and --lr > 0");
            }
            if a.steps == 0 || a.batch_size == 0 {
                bail!("--steps and --batch-size must be at least 1");
            }
            let train = Dataset::load(&a.data, Split::Train)?;
            let test = Dataset::load(&a.data, Split::Test)?;
            if !a.factor.is_power_of_two() || a.factor < 2 {
                bail!("--factor must be a power of two ≥ 2, got {}", a.factor);
            }
            let net = VaeConfig {
                base_channels: a.base_channels,
                latent_channels: a.latent_channels,
                ..VaeConfig::for_image(train.channels, train.height, train.width, a.factor)
            };
            let cfg = VaeTrainConfig {
                steps: a.steps,
                batch_size: a.batch_size,
                lr: a.lr,
                kl_weight: a.kl_weight,
                loss: a.loss,
                seed: a.seed,
            };
            let [z, h, w] = net.latent_shape();
            println!(
                "training a VAE on {} ({} images {}×{}×{}) → latents {z}×{h}×{w}, {} steps of batch {}",
                train.name,
                train.len(),
                train.channels,
                train.height,
                train.width,
                a.steps,
                a.batch_size
            );
            let meta = vae::train(&net, &cfg, &train, &test, &a.out, !a.quiet)?;
            let q = &meta.quality;
            println!(
                "trained in {:.1} s; latent scale {:.4}; held-out ({} images) PSNR {:.2} dB, SSIM {:.4}; written to {}",
                meta.seconds,
                meta.scale,
                q.images,
                q.psnr_db,
                q.ssim,
                a.out.display()
            );
        }
        VaeCommand::Import(a) => import(a)?,
        VaeCommand::Reconstruct(a) => {
            let space = LatentSpace::load(&a.vae)?;
            let test = Dataset::load(&a.data, Split::Test)?;
            let recon = space.reconstruct(&test)?;
            let q = vae::quality(&test, &recon);
            if let Some(path) = &a.out {
                let k = test.len().min(16);
                let mut tiles = test.gather(&(0..k).collect::<Vec<_>>());
                tiles.extend_from_slice(&recon[..k * test.image_size()]);
                diffuse::imageio::write_grid(path, &tiles, 2 * k, test.channels, test.height, test.width, k)?;
            }
            if let Some(dir) = &a.out_dir {
                std::fs::create_dir_all(dir)?;
                let per = test.image_size();
                for (i, img) in recon.chunks(per).enumerate() {
                    let path = dir.join(format!("{i:05}.png"));
                    diffuse::imageio::write_png(&path, img, test.channels, test.height, test.width)?;
                }
            }
            println!(
                "{} images: PSNR {:.2} dB, SSIM {:.4}, MSE {:.5} (pixels in [0, 1])",
                q.images, q.psnr_db, q.ssim, q.mse
            );
        }
    }
    Ok(())
}

fn import(a: VaeImportArgs) -> anyhow::Result<()> {
    if a.out.join(vae::META).exists() {
        bail!("{} already holds a VAE; choose another --out", a.out.display());
    }
    let data = match &a.data {
        Some(spec) => Some((Dataset::load(spec, Split::Train)?, Dataset::load(spec, Split::Test)?)),
        None => None,
    };
    let (height, width) = match (&data, &a.size) {
        (Some((train, _)), _) => (train.height, train.width),
        (None, Some(s)) => match super::parse_list::<usize>(s).map_err(anyhow::Error::msg)?[..] {
            [h, w] => (h, w),
            _ => bail!("--size takes H,W, got '{s}'"),
        },
        (None, None) => bail!("give --data (to measure the latent scale) or --size H,W"),
    };
    let meta = vae::import(&a.diffusers, height, width, data.as_ref().map(|(t, h)| (t, h)), &a.out)?;
    let [z, lh, lw] = meta.net.latent_shape();
    println!(
        "imported {} ({} levels, factor {}) for {height}×{width} images → latents {z}×{lh}×{lw}; latent scale {:.5}",
        a.diffusers.display(),
        meta.net.channel_mults.len(),
        meta.net.factor(),
        meta.scale
    );
    if data.is_some() {
        let q = &meta.quality;
        println!(
            "held-out ({} images) PSNR {:.2} dB, SSIM {:.4}; written to {}",
            q.images,
            q.psnr_db,
            q.ssim,
            a.out.display()
        );
    } else {
        println!("written to {}", a.out.display());
    }
    Ok(())
}
