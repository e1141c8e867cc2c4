//! Latent diffusion's autoencoder: training a KL-VAE (`diffuse vae train`), measuring its reconstructions,
//! and the latent space a latent run's UNet works in: latents are the encoder's means times a scale that gives
//! them unit variance over the training set (Rombach et al. 2022, §4.3.2 and appendix G).
//!
//! A VAE directory holds `vae.json` (shape, training settings, scale, reconstruction figures),
//! `weights.safetensors`, `loss.csv` and `reconstructions.png` (held-out originals above their reconstructions).
//! `import` makes one from a diffusers AutoencoderKL folder (`diffusers/autoencoder_kl.rs`).

use crate::data::Dataset;
use crate::nn::vae::{Vae, VaeConfig, kl_divergence};
use crate::safetensors_io::{self, Contents};
use crate::sample::to_vec;
use crate::train::clip_grad_norm;
use crate::{Error, Result, rng};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use diffuse_math::metrics::{psnr, ssim};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const META: &str = "vae.json";
pub const WEIGHTS: &str = "weights.safetensors";

/// The reconstruction term of the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    L1,
    L2,
}
crate::names::named!(Reconstruction, "reconstruction loss", { L1 => "l1", L2 => "l2" });

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeTrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Weight of the KL term (mean over latent elements) against the reconstruction (mean over pixels).
    pub kl_weight: f64,
    pub loss: Reconstruction,
    pub seed: u64,
}

impl Default for VaeTrainConfig {
    /// What `diffuse vae train` uses without flags.
    fn default() -> VaeTrainConfig {
        VaeTrainConfig {
            steps: 1500,
            batch_size: 32,
            lr: 1e-3,
            kl_weight: 1e-4,
            loss: Reconstruction::L1,
            seed: 0,
        }
    }
}

/// Quality of images against their references (pixels measured in [0, 1]): VAE reconstructions, restorations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub images: usize,
    pub psnr_db: f64,
    pub ssim: f64,
    pub mse: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaeMeta {
    /// The data it was trained on, or whose latents set the scale of an imported VAE ("" if none).
    pub data: String,
    pub net: VaeConfig,
    /// Absent for imported VAEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<VaeTrainConfig>,
    /// The diffusers AutoencoderKL folder an imported VAE was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// Latents are encoder means × scale (1 / their standard deviation over the training set).
    pub scale: f64,
    pub quality: Quality,
    pub seconds: f64,
}

impl VaeMeta {
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::Config(format!("latent scale {} is not positive", self.scale)));
        }
        Ok(())
    }
}

/// A trained VAE, ready to move images to and from the scaled latent space.
pub struct LatentSpace {
    pub meta: VaeMeta,
    vae: Vae,
}

fn tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

const BATCH: usize = 64;

impl LatentSpace {
    pub fn load(dir: &Path) -> Result<LatentSpace> {
        let path = dir.join(META);
        let meta: VaeMeta = crate::atomic::read_json(&path)?;
        meta.validate()?;
        let wpath = dir.join(WEIGHTS);
        let c = safetensors_io::read(&wpath)?;
        let group = c
            .groups
            .get("vae")
            .ok_or_else(|| Error::checkpoint(&wpath, "holds no VAE weights"))?;
        let vae = safetensors_io::load(meta.net.init(&crate::device::device())?, group, false, &wpath)?;
        Ok(LatentSpace { meta, vae })
    }

    /// Takes images of another size (the networks are convolutional; outpainting uses this). The size must
    /// divide by the VAE's factor.
    pub fn resize(&mut self, height: usize, width: usize) {
        self.meta.net.height = height;
        self.meta.net.width = width;
    }

    /// (channels, height, width) of the images this VAE takes.
    pub fn image_shape(&self) -> [usize; 3] {
        let n = &self.meta.net;
        [n.in_channels, n.height, n.width]
    }

    fn check(&self, data: &Dataset) -> Result<()> {
        let [c, h, w] = self.image_shape();
        if (data.channels, data.height, data.width) != (c, h, w) {
            return Err(Error::Data(format!(
                "{} images are {}×{}×{}, the VAE takes {c}×{h}×{w}",
                data.name, data.channels, data.height, data.width
            )));
        }
        Ok(())
    }

    /// The data set as scaled latents (encoder means), labels kept.
    pub fn encode(&self, data: &Dataset) -> Result<Dataset> {
        self.check(data)?;
        let [z, lh, lw] = self.meta.net.latent_shape();
        Ok(Dataset {
            name: format!("latent({})", data.name),
            channels: z,
            height: lh,
            width: lw,
            images: encode_means(&self.vae, data, self.meta.scale as f32),
            ..data.clone()
        })
    }

    /// `n` scaled latents back to images in [−1, 1].
    pub fn decode(&self, latents: &[f32], n: usize) -> Vec<f32> {
        let device = crate::device::device();
        let [z, h, w] = self.meta.net.latent_shape();
        let per = z * h * w;
        let mut out = Vec::new();
        for start in (0..n).step_by(BATCH) {
            let b = BATCH.min(n - start);
            let x = tensor(latents[start * per..(start + b) * per].to_vec(), [b, z, h, w], &device);
            out.extend(to_vec(
                self.vae.decode(x.mul_scalar(1.0 / self.meta.scale)).clamp(-1.0, 1.0),
            ));
        }
        out
    }

    /// Reconstructions (decoded encoder means) of `data`, in [−1, 1].
    pub fn reconstruct(&self, data: &Dataset) -> Result<Vec<f32>> {
        Ok(self.decode(&self.encode(data)?.images, data.len()))
    }

    /// Measures the reconstructions of `test` into the metadata and writes `reconstructions.png` (16
    /// originals above their reconstructions) into `out`.
    fn measure(&mut self, test: &Dataset, out: &Path) -> Result<()> {
        let recon = self.reconstruct(test)?;
        self.meta.quality = quality(test, &recon);
        let k = test.len().min(16);
        let mut tiles = test.gather(&(0..k).collect::<Vec<_>>());
        tiles.extend_from_slice(&recon[..k * test.image_size()]);
        crate::imageio::write_grid(
            &out.join("reconstructions.png"),
            &tiles,
            2 * k,
            test.channels,
            test.height,
            test.width,
            k,
        )
    }

    /// Writes the weights, then vae.json: a directory with vae.json is complete.
    fn save(&self, out: &Path) -> Result<()> {
        let mut c = Contents::default();
        c.groups.insert("vae".into(), safetensors_io::collect(&self.vae));
        safetensors_io::write(&out.join(WEIGHTS), &c)?;
        crate::atomic::write(
            &out.join(META),
            serde_json::to_string_pretty(&self.meta).expect("serialises").as_bytes(),
        )
    }
}

/// Encoder means × scale for every image of `data`.
fn encode_means(vae: &Vae, data: &Dataset, scale: f32) -> Vec<f32> {
    let device = crate::device::device();
    let mut out = Vec::new();
    for start in (0..data.len()).step_by(BATCH) {
        let idx: Vec<usize> = (start..(start + BATCH).min(data.len())).collect();
        let x = tensor(
            data.gather(&idx),
            [idx.len(), data.channels, data.height, data.width],
            &device,
        );
        out.extend(to_vec(vae.encode(x).0.mul_scalar(scale)));
    }
    out
}

/// PSNR, SSIM and MSE of reconstructions against originals, pixels mapped to [0, 1].
pub fn quality(originals: &Dataset, recon: &[f32]) -> Quality {
    let shape = [originals.channels, originals.height, originals.width];
    image_quality(&originals.images, recon, shape)
}

/// Mean per-image PSNR, SSIM (averaged over channels) and MSE of `got` against `want`, n images of `shape` in
/// [−1, 1], measured on [0, 1].
pub fn image_quality(want: &[f32], got: &[f32], shape: [usize; 3]) -> Quality {
    let [c, h, w] = shape;
    let unit = |v: f32| (v as f64 + 1.0) / 2.0;
    let (mut mse, mut psnr_sum, mut ssim_sum) = (0.0, 0.0, 0.0);
    let n = want.len() / (c * h * w);
    for i in 0..n {
        let img = i * c * h * w..(i + 1) * c * h * w;
        let a: Vec<f64> = want[img.clone()].iter().map(|&v| unit(v)).collect();
        let b: Vec<f64> = got[img].iter().map(|&v| unit(v)).collect();
        let m = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64;
        mse += m;
        psnr_sum += psnr(m);
        ssim_sum += (0..c)
            .map(|k| ssim(&a[k * h * w..(k + 1) * h * w], &b[k * h * w..(k + 1) * h * w], h, w))
            .sum::<f64>()
            / c as f64;
    }
    let images = n;
    let n = n.max(1) as f64;
    Quality {
        images,
        psnr_db: psnr_sum / n,
        ssim: ssim_sum / n,
        mse: mse / n,
    }
}

/// Trains a VAE on `train`, measures it on `test`, and writes the VAE directory `out`.
pub fn train(
    net: &VaeConfig,
    cfg: &VaeTrainConfig,
    train: &Dataset,
    test: &Dataset,
    out: &Path,
    progress: bool,
) -> Result<VaeMeta> {
    net.validate()?;
    if train.is_empty() || test.is_empty() {
        return Err(Error::Data("a VAE needs training and held-out images".into()));
    }
    if (train.channels, train.height, train.width) != (net.in_channels, net.height, net.width) {
        return Err(Error::Data(format!(
            "images are {}×{}×{}, the VAE is for {}×{}×{}",
            train.channels, train.height, train.width, net.in_channels, net.height, net.width
        )));
    }
    let started = std::time::Instant::now();
    let device = crate::device::train_device();
    let mut model = crate::device::init_seeded(cfg.seed, &device, |d| net.init(d).expect("validated"));
    let mut optim = AdamWConfig::new().init();
    let bar = crate::progress::bar(cfg.steps, 0, "steps", progress);
    let mut csv = String::from("step,loss,reconstruction,kl\n");
    let [z, lh, lw] = net.latent_shape();
    let b = cfg.batch_size;
    for step in 0..cfg.steps {
        let mut r = rng::stream(cfg.seed, step as u64);
        let idx: Vec<usize> = (0..b).map(|_| r.random_range(0..train.len())).collect();
        let x = tensor(
            train.gather(&idx),
            [b, train.channels, train.height, train.width],
            &device,
        );
        let eps = tensor(rng::normals(&mut r, b * z * lh * lw), [b, z, lh, lw], &device);
        let (mean, logvar) = model.encode(x.clone());
        // The reparameterised sample μ + σ·ε keeps the decoder robust to the spread it will see.
        let latent = mean.clone() + logvar.clone().mul_scalar(0.5).exp() * eps;
        let diff = model.decode(latent) - x;
        let rec = match cfg.loss {
            Reconstruction::L1 => diff.abs().mean(),
            Reconstruction::L2 => diff.square().mean(),
        };
        let kl = kl_divergence(mean, logvar);
        let loss = rec.clone() + kl.clone().mul_scalar(cfg.kl_weight);
        let grads = loss.backward();
        let value = loss.into_scalar::<f32>();
        if !value.is_finite() {
            bar.abandon();
            return Err(Error::NonFinite { step: step + 1, value });
        }
        let mut grads = GradientsParams::from_grads(grads, &model);
        clip_grad_norm(&model, &mut grads, 1.0);
        // Linear warm-up over 100 steps, a tenth of the rate for the last quarter.
        let lr = cfg.lr * ((step + 1) as f64 / 100.0).min(1.0) * if step >= cfg.steps * 3 / 4 { 0.1 } else { 1.0 };
        model = optim.step(lr, model, grads);
        let (rec, kl) = (rec.into_scalar::<f32>(), kl.into_scalar::<f32>());
        csv.push_str(&format!("{},{value},{rec},{kl}\n", step + 1));
        bar.set_position(step as u64 + 1);
        bar.set_message(format!("rec {rec:.4} kl {kl:.3}"));
    }
    bar.finish_and_clear();
    let vae = model.valid();
    let mut space = LatentSpace {
        meta: VaeMeta {
            data: train.name.clone(),
            net: net.clone(),
            train: Some(cfg.clone()),
            imported_from: None,
            scale: latent_scale(&vae, train)?,
            quality: Quality::default(),
            seconds: 0.0,
        },
        vae,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    space.measure(test, out)?;
    space.meta.seconds = started.elapsed().as_secs_f64();
    crate::atomic::write(&out.join("loss.csv"), csv.as_bytes())?;
    space.save(out)?;
    Ok(space.meta)
}

/// 1 / the standard deviation of all latent means of `train`: the scale that gives latents unit variance.
fn latent_scale(vae: &Vae, train: &Dataset) -> Result<f64> {
    let means = encode_means(vae, train, 1.0);
    let n = means.len() as f64;
    let mu = means.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (means.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / n).sqrt();
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::Invalid(format!(
            "latent standard deviation {std}: the VAE collapsed"
        )));
    }
    Ok(1.0 / std)
}

/// Imports a diffusers AutoencoderKL folder as a VAE directory for `height`×`width` images. With data, the
/// latent scale is measured on its training split and the reconstructions on its held-out split; without,
/// the folder's `scaling_factor` is the scale.
pub fn import(
    dir: &Path,
    height: usize,
    width: usize,
    data: Option<(&Dataset, &Dataset)>,
    out: &Path,
) -> Result<VaeMeta> {
    let started = std::time::Instant::now();
    let (akl, net, vae) = crate::diffusers::autoencoder_kl::load(dir, height, width, &crate::device::device())?;
    let scale = match data {
        Some((train, _)) => latent_scale(&vae, train)?,
        None => akl.scaling_factor,
    };
    let mut space = LatentSpace {
        meta: VaeMeta {
            data: data.map_or(String::new(), |(train, _)| train.name.clone()),
            net,
            train: None,
            imported_from: Some(dir.display().to_string()),
            scale,
            quality: Quality::default(),
            seconds: 0.0,
        },
        vae,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    if let Some((_, test)) = data {
        space.measure(test, out)?;
    }
    space.meta.seconds = started.elapsed().as_secs_f64();
    space.save(out)?;
    Ok(space.meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn tiny_net() -> VaeConfig {
        VaeConfig {
            base_channels: 8,
            ..VaeConfig::for_image(1, 8, 8, 2)
        }
    }

    #[test]
    fn latent_scaling_is_applied_and_undone_exactly() {
        let device = crate::device::device();
        let net = tiny_net();
        let vae = crate::device::init_seeded(1, &device, |d| net.init(d).unwrap());
        let data = Dataset::load("digits", Split::Test).unwrap().subset(&[0, 1, 2]);
        let x = tensor(data.images.clone(), [3, 1, 8, 8], &device);
        let raw_means = to_vec(vae.encode(x).0);
        let space = LatentSpace {
            meta: VaeMeta {
                data: "digits".into(),
                net: net.clone(),
                train: None,
                imported_from: None,
                scale: 2.5,
                quality: Quality::default(),
                seconds: 0.0,
            },
            vae,
        };
        let latents = space.encode(&data).unwrap();
        assert_eq!((latents.channels, latents.height, latents.width), (4, 4, 4));
        assert_eq!(latents.labels, data.labels, "labels follow the images");
        for (l, m) in latents.images.iter().zip(&raw_means) {
            assert!((l - 2.5 * m).abs() <= 1e-6 * (1.0 + m.abs()));
        }
        // Decoding divides by the scale before the decoder: the decoder's output of the raw means, clamped.
        let direct = to_vec(
            space
                .vae
                .decode(tensor(raw_means, [3, 4, 4, 4], &device))
                .clamp(-1.0, 1.0),
        );
        let decoded = space.decode(&latents.images, 3);
        for (a, b) in decoded.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_tiny_vae_overfits_a_few_digits() {
        let data = Dataset::load("digits", Split::Train).unwrap().subset(&[0, 1, 2, 3]);
        let out = std::env::temp_dir().join(format!("diffuse-test-vae-{}", std::process::id()));
        let cfg = VaeTrainConfig {
            steps: 400,
            batch_size: 4,
            lr: 3e-3,
            kl_weight: 1e-4,
            loss: Reconstruction::L1,
            seed: 0,
        };
        let meta = train(&tiny_net(), &cfg, &data, &data, &out, false).unwrap();
        // Four images through a 64-value latent: memorised (about 50 dB when written; 30 dB leaves room).
        assert!(meta.quality.psnr_db > 30.0, "PSNR {} dB", meta.quality.psnr_db);
        assert!(meta.quality.ssim > 0.95, "SSIM {}", meta.quality.ssim);
        // The written directory loads and reproduces the figures.
        let space = LatentSpace::load(&out).unwrap();
        let again = quality(&data, &space.reconstruct(&data).unwrap());
        assert!((again.psnr_db - meta.quality.psnr_db).abs() < 1e-6);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
