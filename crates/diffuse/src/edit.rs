//! Image editing with any trained model: inpainting and outpainting (regenerate a masked region), SDEdit
//! (noise an image part-way and denoise it), DDIM inversion (image → noise) and interpolation between noises.
//!
//! Inpainting replaces the known region of x̂₀ by the known image at every denoiser call ([`Inpaint`]), so it
//! works with every sampler. With DDPM this is RePaint's update of the known region (Lugmayr et al. 2022):
//! x_{t−1} is drawn from q(x_{t−1} | x_t, x₀ = known) there, whose marginal is the forward process's
//! q(x_{t−1} | x₀); RePaint's resampling (jump length, count) is [`crate::sample::Plan::with_resampling`].

use crate::data::Dataset;
use crate::denoise::{Cond, Denoised, Denoiser, Guidance};
use crate::run::LoadedRun;
use crate::sample::{self, Ctx, Plan};
use crate::{Error, Result};
use burn::prelude::*;
use diffuse_math::Level;
use std::path::Path;

/// Which pixels to regenerate: 1 regenerated, 0 kept; height × width, the same for every channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    pub height: usize,
    pub width: usize,
    pub regen: Vec<f32>,
}

impl Mask {
    /// A mask from a spec: `box:x,y,w,h`, `left-half`, `right-half`, `top-half`, `bottom-half`, `center:r`
    /// (a centred square of side 2r), or a PNG of the image's size (white regenerated).
    pub fn parse(spec: &str, height: usize, width: usize) -> Result<Mask> {
        let bad = |why: String| Error::Invalid(format!("mask '{spec}': {why}"));
        let rect = |x0: usize, y0: usize, x1: usize, y1: usize| Mask {
            height,
            width,
            regen: (0..height * width)
                .map(|i| {
                    let (y, x) = (i / width, i % width);
                    (x >= x0 && x < x1 && y >= y0 && y < y1) as u8 as f32
                })
                .collect(),
        };
        let nums = |s: &str, k: usize| -> Result<Vec<usize>> {
            let v: Vec<usize> = s
                .split(',')
                .map(|p| p.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(format!("expected {k} whole numbers")))?;
            if v.len() != k {
                return Err(bad(format!("expected {k} numbers, got {}", v.len())));
            }
            Ok(v)
        };
        let (h, w) = (height, width);
        let mask = match spec.split_once(':') {
            None if spec == "left-half" => rect(0, 0, w / 2, h),
            None if spec == "right-half" => rect(w / 2, 0, w, h),
            None if spec == "top-half" => rect(0, 0, w, h / 2),
            None if spec == "bottom-half" => rect(0, h / 2, w, h),
            Some(("box", args)) => {
                let v = nums(args, 4)?;
                let (x, y, bw, bh) = (v[0], v[1], v[2], v[3]);
                if bw == 0 || bh == 0 || bw > w || bh > h || x > w - bw || y > h - bh {
                    return Err(bad(format!("the box must be non-empty and inside the {w}×{h} image")));
                }
                rect(x, y, x + bw, y + bh)
            }
            Some(("center", args)) => {
                let r = nums(args, 1)?[0];
                if r == 0 || r > w.min(h) / 2 {
                    return Err(bad(format!("r must be between 1 and {}", w.min(h) / 2)));
                }
                rect(w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r)
            }
            _ if spec.to_ascii_lowercase().ends_with(".png") => {
                let img = crate::imageio::read_png(Path::new(spec), Some(1))?;
                if (img.height, img.width) != (h, w) {
                    return Err(bad(format!(
                        "the mask is {}×{}, the images {w}×{h}",
                        img.width, img.height
                    )));
                }
                Mask {
                    height,
                    width,
                    regen: img.pixels.iter().map(|&p| (p >= 128) as u8 as f32).collect(),
                }
            }
            _ => {
                return Err(bad(
                    "expected box:x,y,w,h, left-half, right-half, top-half, bottom-half, center:r or a PNG file".into(),
                ));
            }
        };
        if mask.regen.iter().all(|&m| m == 0.0) {
            return Err(bad("it covers no pixel".into()));
        }
        Ok(mask)
    }

    /// The mask at 1/`factor` of the size, for latents: a position is kept only when its whole block is.
    pub fn downsample(&self, factor: usize) -> Mask {
        let (h, w) = (self.height / factor, self.width / factor);
        let regen = (0..h * w)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                let any = (0..factor * factor)
                    .any(|k| self.regen[(y * factor + k / factor) * self.width + x * factor + k % factor] > 0.0);
                any as u8 as f32
            })
            .collect();
        Mask {
            height: h,
            width: w,
            regen,
        }
    }

    /// 1 where kept, shaped [b, c, h, w].
    pub fn keep(&self, b: usize, c: usize, device: &Device) -> Tensor<4> {
        let keep: Vec<f32> = self.regen.iter().map(|m| 1.0 - m).collect();
        Tensor::<4>::from_data(TensorData::new(keep, [1, 1, self.height, self.width]), device).repeat(&[b, c, 1, 1])
    }

    /// Replaces the regenerated pixels of `images` (n × c × h × w) with `fill`'s and keeps the rest.
    pub fn paste(&self, kept: &[f32], fill: &[f32]) -> Vec<f32> {
        let hw = self.height * self.width;
        kept.iter()
            .zip(fill)
            .enumerate()
            .map(|(i, (&k, &f))| if self.regen[i % hw] > 0.0 { f } else { k })
            .collect()
    }
}

/// A naive fill of the masked pixels: a baseline for inpainting, and what latent inpainting encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naive {
    /// The mean of the kept pixels.
    Mean,
    /// Kept pixels diffused into the hole (repeated neighbour averaging).
    Blur,
}

crate::names::named!(Naive, "naive fill", { Mean => "mean", Blur => "blur" });

/// Fills the masked pixels naively: the mean of the kept ones, or repeated neighbour averaging.
pub fn naive_fill(mask: &Mask, images: &[f32], n: usize, c: usize, how: Naive) -> Vec<f32> {
    let (h, w) = (mask.height, mask.width);
    let mut out = images.to_vec();
    for plane in out.chunks_mut(h * w).take(n * c) {
        let kept: Vec<f32> = (0..h * w).filter(|&i| mask.regen[i] == 0.0).map(|i| plane[i]).collect();
        let mean = kept.iter().sum::<f32>() / kept.len().max(1) as f32;
        for (p, &m) in plane.iter_mut().zip(&mask.regen) {
            if m > 0.0 {
                *p = mean;
            }
        }
        if how == Naive::Blur {
            for _ in 0..4 * (h + w) {
                let prev = plane.to_vec();
                for i in (0..h * w).filter(|&i| mask.regen[i] > 0.0) {
                    let (y, x) = (i / w, i % w);
                    let nb: Vec<f32> = [(0i64, -1i64), (0, 1), (-1, 0), (1, 0)]
                        .iter()
                        .filter_map(|(dy, dx)| {
                            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                            (yy >= 0 && xx >= 0 && yy < h as i64 && xx < w as i64)
                                .then(|| prev[yy as usize * w + xx as usize])
                        })
                        .collect();
                    plane[i] = nb.iter().sum::<f32>() / nb.len() as f32;
                }
            }
        }
    }
    out
}

/// An outpainting canvas: `n` images of `[c, h, w]` placed with `pad` = [left, top, right, bottom] pixels
/// around them (−1, black, outside), and the mask that regenerates the padding.
pub fn outpaint_canvas(images: &[f32], n: usize, [c, h, w]: [usize; 3], pad: [usize; 4]) -> (Vec<f32>, Mask) {
    let [left, top, right, bottom] = pad;
    let (nh, nw) = (h + top + bottom, w + left + right);
    let mut canvas = vec![-1.0f32; n * c * nh * nw];
    let mut regen = vec![1.0f32; nh * nw];
    for y in 0..h {
        for x in 0..w {
            regen[(y + top) * nw + x + left] = 0.0;
            for i in 0..n * c {
                canvas[i * nh * nw + (y + top) * nw + x + left] = images[i * h * w + y * w + x];
            }
        }
    }
    let mask = Mask {
        height: nh,
        width: nw,
        regen,
    };
    (canvas, mask)
}

/// A denoiser that knows part of the image: x̂₀ there is the known image, and ε̂ the noise that explains x
/// with it; elsewhere the inner denoiser's answer.
pub struct Inpaint<'a> {
    pub inner: &'a dyn Denoiser,
    pub known: Tensor<4>,
    /// 1 where known.
    pub keep: Tensor<4>,
}

impl Denoiser for Inpaint<'_> {
    fn denoise(&self, x: Tensor<4>, level: Level, cond: &Cond) -> Denoised {
        let d = self.inner.denoise(x.clone(), level, cond);
        let free = self.keep.clone().neg().add_scalar(1.0);
        let eps_known = (x - self.known.clone().mul_scalar(level.alpha)).mul_scalar(1.0 / level.sigma);
        Denoised {
            x0: self.known.clone() * self.keep.clone() + d.x0 * free.clone(),
            eps: eps_known * self.keep.clone() + d.eps * free,
        }
    }
}

/// DDIM inversion (η = 0): walks the discrete plan's grid upwards from x₀ (taken as x at the first train
/// timestep), x_next = α_next x̂₀ + σ_next ε̂ — the sampling step read backwards. Returns x at the plan's first
/// level, which DDIM(η = 0) with the same plan maps back near x₀.
pub fn invert(den: &dyn Denoiser, plan: &Plan, x0: Tensor<4>, cond: &Cond) -> Result<(Tensor<4>, usize)> {
    let knots = plan.knots();
    // x₀ stands at the process's lowest noise level rather than at σ = 0, where ε̂ is undefined: the first train
    // timestep of a discrete schedule, an SDE's t_min, the flow path's σ_min.
    let r = plan.process().sigma_range().1;
    let first = Level::vp(1.0 / (1.0 + r * r));
    let level = |k: &diffuse_math::Knot| if k.level.sigma > 0.0 { k.level } else { first };
    let mut streams = Vec::new();
    let mut ctx = Ctx::new(den, &mut streams).with_cond(cond.clone());
    let mut x = x0;
    for w in knots.windows(2).rev() {
        let (from, to) = (level(&w[1]), level(&w[0]));
        if from == to {
            continue;
        }
        let d = ctx.denoise(x, from);
        x = d.x0.mul_scalar(to.alpha) + d.eps.mul_scalar(to.sigma);
    }
    Ok((x, ctx.nfe))
}

/// A loaded run with the plan, guidance, batch size and seed an edit samples with: the workflows behind
/// `diffuse edit`. Images go in and come out in pixel space ([−1, 1], n × c × h × w); latent runs encode and
/// decode through their VAE.
pub struct Editor {
    pub run: LoadedRun,
    pub plan: Plan,
    pub guidance: Guidance,
    pub batch_size: usize,
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Editor {
    /// (image shape, model shape): they differ for latent runs.
    pub fn shapes(&self) -> ([usize; 3], [usize; 3]) {
        let cfg = &self.run.config;
        (cfg.output_shape(), [cfg.channels, cfg.height, cfg.width])
    }

    /// Images in the run's model space: scaled VAE latents for latent runs, the pixels otherwise.
    pub fn to_model(&self, images: &[f32]) -> Result<Vec<f32>> {
        let Some(space) = &self.run.latent else {
            return Ok(images.to_vec());
        };
        let [c, h, w] = self.shapes().0;
        let d = Dataset {
            name: "inputs".into(),
            channels: c,
            height: h,
            width: w,
            images: images.to_vec(),
            labels: None,
            class_names: Vec::new(),
            captions: None,
        };
        Ok(space.encode(&d)?.images)
    }

    /// Samples batch by batch from starting points made by `start(first, model_inputs)`. With `known`, the
    /// inputs are known where the mask keeps them (inpainting); returns images in pixel space.
    fn sample_batches(
        &self,
        cond: &Cond,
        model: &[f32],
        n: usize,
        known: Option<&Mask>,
        start: &dyn Fn(usize, Tensor<4>) -> (Tensor<4>, Vec<rand_chacha::ChaCha8Rng>),
    ) -> Result<Vec<f32>> {
        let model_shape = self.shapes().1;
        let base = self.run.denoiser(self.guidance);
        let per = model_shape.iter().product::<usize>();
        let mut out = Vec::with_capacity(n * per);
        let bar = self.plan.progress(n, self.batch_size, self.progress);
        for first in (0..n).step_by(self.batch_size.max(1)) {
            let m = self.batch_size.max(1).min(n - first);
            let x0 = tensor(model[first * per..(first + m) * per].to_vec(), m, model_shape);
            let inpaint = known.map(|mask| Inpaint {
                inner: &base,
                keep: mask.keep(m, model_shape[0], &x0.device()),
                known: x0.clone(),
            });
            let den: &dyn Denoiser = match &inpaint {
                Some(i) => i,
                None => &base,
            };
            let (x, mut streams) = start(first, x0);
            let s = sample::run(
                den,
                &self.plan,
                x,
                &mut streams,
                cond.slice(first..first + m),
                &[],
                &mut |_| bar.inc(1),
            );
            out.extend(sample::to_vec(s.x));
        }
        bar.finish_and_clear();
        Ok(self.run.to_images(out, n))
    }

    /// Inpaints `n` images where `mask` says; the kept pixels come back exact.
    pub fn inpaint(&self, images: &[f32], n: usize, mask: &Mask, cond: &Cond) -> Result<Vec<f32>> {
        let (shape, model_shape) = self.shapes();
        // Latent runs encode the inputs with the hole already filled: the encoder sees every pixel (its attention
        // spans the image), so encoding the originals would leak the region to regenerate into the known latents.
        let holed;
        let inputs = if self.run.latent.is_some() {
            holed = naive_fill(mask, images, n, shape[0], Naive::Mean);
            &holed
        } else {
            images
        };
        let model = self.to_model(inputs)?;
        let model_mask = mask.downsample(shape[1] / model_shape[1]);
        let prior = self.plan.prior_std();
        let filled = self.sample_batches(cond, &model, n, Some(&model_mask), &|first, x0| {
            let [m, ..] = x0.dims();
            sample::start(self.seed, first, m, model_shape, prior, &x0.device())
        })?;
        Ok(mask.paste(images, &filled))
    }

    /// SDEdit: each image noised to the plan's start level (its strength), then denoised.
    pub fn sdedit(&self, images: &[f32], n: usize, cond: &Cond) -> Result<Vec<f32>> {
        let model = self.to_model(images)?;
        self.sample_batches(cond, &model, n, None, &|first, x0| {
            noised(&self.plan, x0, self.seed, first)
        })
    }

    /// DDIM-inverts `n` images to their noises in model space (the plan must be DDIM with η = 0).
    pub fn invert(&self, images: &[f32], n: usize, cond: &Cond) -> Result<Vec<f32>> {
        self.check_invertible()?;
        let model_shape = self.shapes().1;
        let model = self.to_model(images)?;
        let den = self.run.denoiser(self.guidance);
        let per = model_shape.iter().product::<usize>();
        let mut out = Vec::new();
        for first in (0..n).step_by(self.batch_size.max(1)) {
            let m = self.batch_size.max(1).min(n - first);
            let x0 = tensor(model[first * per..(first + m) * per].to_vec(), m, model_shape);
            let (z, _) = invert(&den, &self.plan, x0, &cond.slice(first..first + m))?;
            out.extend(sample::to_vec(z));
        }
        Ok(out)
    }

    /// Inversion reads the deterministic DDIM step backwards, so it needs DDIM with η = 0.
    pub fn check_invertible(&self) -> Result<()> {
        if matches!(self.plan.method(), sample::Method::Ddim { eta } if eta == 0.0) {
            Ok(())
        } else {
            Err(Error::Invalid("inversion needs --sampler ddim --eta 0".into()))
        }
    }

    /// Samples from given noises in model space (an inversion's, an interpolation's frames). With
    /// `shared_stream`, every image draws its step noise from one stream, so stochastic samplers vary only
    /// with the start.
    pub fn from_noise(&self, noise: &[f32], n: usize, cond: &Cond, shared_stream: bool) -> Result<Vec<f32>> {
        let model_shape = self.shapes().1;
        self.sample_batches(cond, noise, n, None, &|first, z| {
            let [m, ..] = z.dims();
            if shared_stream {
                let (_, streams) = sample::start(self.seed, 0, 1, model_shape, 1.0, &z.device());
                (z, vec![streams[0].clone(); m])
            } else {
                let (_, streams) = sample::start(self.seed, first, m, model_shape, 1.0, &z.device());
                (z, streams)
            }
        })
    }

    /// `frames` noises on the great circle between `a` and `b` (model space), sampled with one shared stream.
    pub fn interpolate(&self, a: &[f32], b: &[f32], frames: usize, cond: &Cond) -> Result<Vec<f32>> {
        if frames < 2 {
            return Err(Error::Invalid("--frames must be at least 2".into()));
        }
        let z: Vec<f32> = (0..frames)
            .flat_map(|i| slerp(a, b, i as f64 / (frames - 1) as f64))
            .collect();
        self.from_noise(&z, frames, cond, true)
    }
}

fn tensor(v: Vec<f32>, n: usize, shape: [usize; 3]) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(v, [n, shape[0], shape[1], shape[2]]),
        &crate::device::device(),
    )
}

/// Spherical interpolation between two noises (per image), t ∈ [0, 1]; exact at both ends.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let theta = (dot / (na * nb).max(1e-30)).clamp(-1.0, 1.0).acos();
    let (wa, wb) = if theta.abs() < 1e-6 {
        (1.0 - t, t)
    } else {
        (((1.0 - t) * theta).sin() / theta.sin(), (t * theta).sin() / theta.sin())
    };
    a.iter()
        .zip(b)
        .map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32)
        .collect()
}

/// Mean squared difference of `got` from `want`, pixels mapped from [−1, 1] to [0, 1] (the scale of every PSNR
/// here).
pub fn mse(want: &[f32], got: &[f32]) -> f64 {
    let se: f64 = want
        .iter()
        .zip(got)
        .map(|(a, b)| ((*a as f64 - *b as f64) / 2.0).powi(2))
        .sum();
    se / want.len().max(1) as f64
}

/// Peak signal-to-noise ratio (dB, pixels mapped to [0, 1]) of `got` against `want` over the pixels the mask
/// regenerates, pooled over all images.
pub fn masked_psnr(mask: &Mask, want: &[f32], got: &[f32]) -> f64 {
    let hw = mask.height * mask.width;
    let (mut se, mut n) = (0.0, 0usize);
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        if mask.regen[i % hw] > 0.0 {
            se += ((*a as f64 - *b as f64) / 2.0).powi(2);
            n += 1;
        }
    }
    diffuse_math::metrics::psnr(se / n.max(1) as f64)
}

/// Noisy inputs for SDEdit: x = α·x₀ + σ·ε at the plan's start level, ε from each image's stream (images
/// `first..` of `seed`), with the streams to continue sampling from.
pub fn noised(plan: &Plan, x0: Tensor<4>, seed: u64, first: usize) -> (Tensor<4>, Vec<rand_chacha::ChaCha8Rng>) {
    let [b, c, h, w] = x0.dims();
    let (eps, streams) = sample::start(seed, first, b, [c, h, w], 1.0, &x0.device());
    let l = plan.start_level();
    (x0.mul_scalar(l.alpha) + eps.mul_scalar(l.sigma), streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_fills_keep_the_kept_pixels_and_fill_the_hole_from_them() {
        let mask = Mask::parse("right-half", 2, 4).unwrap();
        let img = vec![0.2, 0.6, 9.0, 9.0, -0.4, 0.2, 9.0, 9.0];
        let mean = naive_fill(&mask, &img, 1, 1, Naive::Mean);
        assert_eq!(mean, vec![0.2, 0.6, 0.15, 0.15, -0.4, 0.2, 0.15, 0.15]);
        let blur = naive_fill(&mask, &img, 1, 1, Naive::Blur);
        assert_eq!(&blur[..2], &[0.2, 0.6]);
        // Diffused from the neighbours: the pixel beside 0.6 ends closer to it than the far one.
        assert!(
            (blur[2] - 0.6).abs() < (blur[3] - 0.6).abs() + 1e-6 && blur[2] > 0.15,
            "{blur:?}"
        );
        assert!("smear".parse::<Naive>().is_err());
    }

    #[test]
    fn outpaint_canvases_place_the_image_and_regenerate_only_the_padding() {
        let img: Vec<f32> = (0..4).map(|v| v as f32 / 4.0).collect();
        let (canvas, mask) = outpaint_canvas(&img, 1, [1, 2, 2], [1, 0, 0, 1]);
        assert_eq!((mask.height, mask.width), (3, 3));
        assert_eq!(canvas, vec![-1.0, 0.0, 0.25, -1.0, 0.5, 0.75, -1.0, -1.0, -1.0]);
        assert_eq!(mask.regen, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn masks_parse_and_bad_specs_are_named() {
        let m = Mask::parse("left-half", 4, 6).unwrap();
        assert_eq!(&m.regen[..6], &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        let m = Mask::parse("bottom-half", 4, 2).unwrap();
        assert_eq!(m.regen, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let m = Mask::parse("box:1,0,2,1", 2, 4).unwrap();
        assert_eq!(m.regen, vec![0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let m = Mask::parse("center:1", 4, 4).unwrap();
        assert_eq!(m.regen.iter().sum::<f32>(), 4.0);
        assert_eq!(m.regen[5], 1.0);
        for (spec, said) in [
            ("box:1,2,3", "expected 4 numbers"),
            ("box:a,b,c,d", "whole numbers"),
            ("box:6,0,4,4", "inside the 8×8 image"),
            ("center:5", "between 1 and 4"),
            ("middle", "expected box:"),
            ("missing.png", "missing.png"),
        ] {
            let e = Mask::parse(spec, 8, 8).unwrap_err().to_string();
            assert!(e.contains(said), "{spec}: {e}");
        }
        // Latent masks keep a position only if its whole block is kept.
        let m = Mask::parse("box:0,0,3,8", 8, 8).unwrap().downsample(2);
        assert_eq!(&m.regen[..4], &[1.0, 1.0, 0.0, 0.0]);
    }

    use crate::denoise::ExactDenoiser;
    use crate::sample::{Method, Predictor, Process};
    use diffuse_math::dist::Target;
    use diffuse_math::{BetaSchedule, NoiseSchedule, Sde, TimestepSpacing};

    fn discrete(method: Method, steps: usize) -> Plan {
        let schedule = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
        Plan::new(method, Process::Discrete(schedule), steps).unwrap()
    }

    #[test]
    fn inpainting_keeps_the_known_pixels_and_draws_the_rest_from_the_data_for_every_sampler_family() {
        // Pixels are independent N(0.3, 0.5²): whatever is known, a masked pixel's law is that marginal.
        let device = crate::device::device();
        let den = ExactDenoiser::new(&Target::gaussian(0.3, 0.5).unwrap());
        let mask = Mask::parse("left-half", 8, 8).unwrap();
        let known: Vec<f32> = (0..64 * 64).map(|i| ((i * 7919 % 200) as f32 / 100.0) - 1.0).collect();
        let known = Tensor::<4>::from_data(TensorData::new(known, [64, 1, 8, 8]), &device);
        let vp = Process::Sde(Sde::vp());
        let em = Method::Sde {
            predictor: Predictor::EulerMaruyama,
            corrector_steps: 0,
            snr: 0.16,
        };
        let plans = [
            discrete(Method::Ddpm { large_variance: false }, 1000),
            discrete(Method::Ddim { eta: 0.0 }, 100),
            discrete(Method::Ddpm { large_variance: false }, 500)
                .with_resampling(10, 3)
                .unwrap(),
            Plan::new(em, vp, 500).unwrap(),
        ];
        for plan in plans {
            let inpaint = Inpaint {
                inner: &den,
                keep: mask.keep(64, 1, &device),
                known: known.clone(),
            };
            let (x, mut streams) = sample::start(4, 0, 64, [1, 8, 8], plan.prior_std(), &device);
            let out =
                sample::to_vec(sample::run(&inpaint, &plan, x, &mut streams, Cond::default(), &[], &mut |_| {}).x);
            let want = sample::to_vec(known.clone());
            let (mut free, mut worst) = (Vec::new(), 0.0f32);
            for (i, (o, k)) in out.iter().zip(&want).enumerate() {
                if mask.regen[i % 64] > 0.0 {
                    free.push(*o as f64);
                } else {
                    worst = worst.max((o - k).abs());
                }
            }
            assert!(worst < 1e-3, "{}: a known pixel moved by {worst}", plan.method().name());
            let n = free.len() as f64;
            let mean = free.iter().sum::<f64>() / n;
            let std = (free.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(
                (mean - 0.3).abs() < 0.05 && (std - 0.5).abs() < 0.05,
                "{}: regenerated pixels have mean {mean}, std {std}",
                plan.method().name()
            );
        }
    }

    #[test]
    fn ddim_inversion_reconstructs_better_with_more_steps_on_every_process() {
        // A discrete schedule, the flow path (from its clean end to pure noise) and the VP SDE (down to t_min).
        let device = crate::device::device();
        let den = ExactDenoiser::new(&Target::mixture(vec![-0.6, 0.5], vec![0.4, 0.6], 0.2).unwrap());
        let x0: Vec<f32> = (0..64).map(|i| (i as f32 / 32.0) - 1.0).collect();
        let x0 = Tensor::<4>::from_data(TensorData::new(x0, [1, 1, 8, 8]), &device);
        let schedule = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
        for process in [Process::Discrete(schedule), Process::Flow, Process::Sde(Sde::vp())] {
            let err = |steps: usize| {
                let plan = Plan::new(Method::Ddim { eta: 0.0 }, process.clone(), steps).unwrap();
                let (z, nfe) = invert(&den, &plan, x0.clone(), &Cond::default()).unwrap();
                assert_eq!(nfe, steps, "{}: one call per step", process.name());
                let (_, mut streams) = sample::start(0, 0, 1, [1, 8, 8], 1.0, &device);
                let back = sample::run(&den, &plan, z, &mut streams, Cond::default(), &[], &mut |_| {}).x;
                let d = sample::to_vec(back - x0.clone());
                d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / d.len() as f64
            };
            let (coarse, fine) = (err(10), err(200));
            assert!(
                fine < coarse / 4.0 && fine < 1e-3,
                "{}: MSE {coarse} at 10 steps, {fine} at 200",
                process.name()
            );
        }
    }

    #[test]
    fn sdedit_strength_must_leave_something_to_denoise() {
        let em = Method::Sde {
            predictor: Predictor::EulerMaruyama,
            corrector_steps: 0,
            snr: 0.16,
        };
        let plan = Plan::new(em, Process::Sde(Sde::vp()), 10).unwrap();
        let e = plan.clone().with_strength(5e-4).unwrap_err().to_string();
        assert!(e.contains("t_min"), "{e}");
        assert!((plan.with_strength(0.5).unwrap().start_level().alpha - Sde::vp().marginal(0.5).alpha).abs() < 1e-12);
        // Discrete: strength s keeps ⌈s·K⌉ steps and starts at the first kept one.
        let p = discrete(Method::Ddim { eta: 0.0 }, 10).with_strength(0.3).unwrap();
        let s = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
        let pairs = TimestepSpacing::Trailing.pairs(1000, 10).unwrap();
        assert_eq!(p.start_level(), Level::vp(s.alpha_bar(pairs[7].0)));
    }

    #[test]
    fn repaint_walks_back_up_at_every_jump_point_and_ends_at_the_bottom() {
        let moves = sample::repaint_moves(6, Some(sample::Resample { jump: 2, count: 3 }));
        let ups = moves.iter().filter(|m| !m.1).count();
        assert_eq!(
            ups,
            2 * 2 * 2,
            "two jump points (2 and 4), two extra passes each, two steps up"
        );
        assert_eq!(moves.len() - 2 * ups, 6, "net six steps down");
        let mut at = 0i64;
        for &(i, down) in &moves {
            assert_eq!(i as i64, if down { at } else { at - 1 });
            at += if down { 1 } else { -1 };
            assert!((0..=6).contains(&at));
        }
        assert_eq!(at, 6);
        assert_eq!(sample::repaint_moves(3, None), vec![(0, true), (1, true), (2, true)]);
    }

    #[test]
    fn slerp_endpoints_are_exact_and_the_norm_is_kept_between_orthogonal_noises() {
        let a = vec![3.0f32, 0.0, 0.0, 0.0];
        let b = vec![0.0f32, 3.0, 0.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a);
        assert_eq!(slerp(&a, &b, 1.0), b);
        let mid = slerp(&a, &b, 0.5);
        let norm = mid.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 3.0).abs() < 1e-5, "{norm}");
    }
}
