//! Drawing images from a loaded run, the workflow behind `sample`, `eval` and `compare`: a plan, guidance and
//! classes or prompts' encodings in; decoded images, the denoising strip, NFE and timings out. The command line only parses flags
//! into a [`Request`].

use crate::denoise::{Cond, Guidance};
use crate::run::LoadedRun;
use crate::sample::{self, Plan};
use crate::{Error, Result};
use std::time::Instant;

/// What to draw.
pub struct Request {
    pub plan: Plan,
    pub guidance: Guidance,
    /// One class or prompt encoding per image for conditional draws (their number is the number of images
    /// then).
    pub cond: Cond,
    /// Images to draw when `cond` does not say.
    pub n: usize,
    /// Image i is the same for any n and batch size.
    pub seed: u64,
    pub batch_size: usize,
    /// Standard normal starting noise, n × c × h × w, instead of the seed's.
    pub init_noise: Option<Vec<f32>>,
    /// Never clamp x̂₀, even for pixel runs.
    pub no_clip: bool,
    /// Keep x̂₀ of the first batch at ten points of the trajectory.
    pub strip: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// `per_class` images of every one of `classes` classes, class by class (a grid row each).
pub fn every_class(classes: usize, per_class: usize) -> Vec<u32> {
    (0..classes as u32)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect()
}

/// What was drawn.
pub struct Samples {
    /// Decoded images, n × c × h × w in [−1, 1].
    pub images: Vec<f32>,
    /// x̂₀ (x_t for ODE and Langevin samplers) of the first batch at the strip's steps, decoded.
    pub strip: Vec<Vec<f32>>,
    pub n: usize,
    /// The class of each image, for conditional draws.
    pub classes: Option<Vec<u32>>,
    pub nfe: usize,
    pub secs: f64,
    pub decode_secs: f64,
    pub describe: String,
    /// The plan's settings, from which it can be rebuilt.
    pub spec: crate::sample::Spec,
}

/// Draws the request's images from `run`, decoding latent runs' samples.
pub fn draw(run: &LoadedRun, req: &Request) -> Result<Samples> {
    if run.net.takes_context() && req.cond.context.is_none() {
        return Err(Error::Invalid(
            "a text-conditioned run draws from prompts' encodings (LoadedRun::encode_prompts)".into(),
        ));
    }
    let n = req.cond.items().unwrap_or(req.n);
    if n == 0 {
        return Err(Error::Invalid("--n must be at least 1".into()));
    }
    let cfg = &run.config;
    let shape = [cfg.channels, cfg.height, cfg.width];
    if let Some(noise) = &req.init_noise
        && noise.len() != n * shape.iter().product::<usize>()
    {
        return Err(Error::Invalid(format!(
            "the starting noise holds {} values, {n} images of {shape:?} need {}",
            noise.len(),
            n * shape.iter().product::<usize>()
        )));
    }
    let plan = &req.plan;
    let strip_at: Vec<usize> = if req.strip {
        let k = plan.reported_steps().unwrap_or(plan.steps());
        (0..10).map(|i| i * (k - 1) / 9).collect()
    } else {
        Vec::new()
    };
    let mut den = run.denoiser(req.guidance);
    if req.no_clip {
        den.clip = None;
    }
    let bar = plan.progress(n, req.batch_size, req.progress);
    let started = Instant::now();
    let drawn = sample::draw(
        &den,
        plan,
        req.seed,
        n,
        shape,
        req.batch_size,
        req.init_noise.as_deref(),
        &req.cond,
        &strip_at,
        &crate::device::device(),
        &mut |_| bar.inc(1),
    );
    bar.finish_and_clear();
    // Latent runs: decode the samples and the strip's x̂₀ (decoding is part of the sampling time).
    let decode_started = Instant::now();
    let images = run.to_images(drawn.images, n);
    let decode_secs = decode_started.elapsed().as_secs_f64();
    let strip = drawn
        .strip
        .into_iter()
        .map(|x0| run.to_images(x0, n.min(req.batch_size.max(1))))
        .collect();
    Ok(Samples {
        images,
        strip,
        n,
        classes: req.cond.classes.clone(),
        nfe: drawn.nfe_per_image,
        secs: started.elapsed().as_secs_f64(),
        decode_secs,
        describe: plan.describe(),
        spec: plan.spec(),
    })
}
