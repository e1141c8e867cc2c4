//! Training: regression on the forward process for every objective (ε / x₀ / v, EDM, flow matching: the
//! target and the network's input come from the run's [`diffuse_math::Precond`], the levels from its
//! [`LevelInput`]), optionally Min-SNR-γ weighted; AdamW with linear warm-up, global gradient-norm clipping,
//! EMA weights, atomic checkpoints and exact resume; a step count or a wall-clock budget.
//!
//! Every random draw of step k (batch, timesteps, noise, dropout) comes from a stream seeded by
//! (seed, k), so a run resumed from its checkpoint at step k repeats the uninterrupted run's losses.

mod ema;
pub(crate) mod log;

use crate::data::Dataset;
use crate::denoise::{Cond, Context, LevelInput};
use crate::forward::{add_noise, column};
use crate::nn::Net;
use crate::run::{self, CHECKPOINT_FILE, RunConfig};
use crate::safetensors_io::{self, Contents};
use crate::sample;
use crate::{Error, Result, rng};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use diffuse_math::{Level, NoiseSchedule};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub use log::LossRow;

/// Tag mixed into the seed so training draws never coincide with sampling draws.
const TRAIN_STREAM: u64 = 0x7472_6169_6e00;

/// What a finished (or stopped) training reports.
#[derive(Debug)]
pub struct Summary {
    pub steps: usize,
    pub resumed_from: Option<usize>,
    pub seconds: f64,
    /// Of which in optimiser steps (without checkpoints and preview grids).
    pub step_seconds: f64,
    pub final_loss: f64,
    pub params: usize,
    /// Whether the time budget ended training before its step count.
    pub out_of_time: bool,
}

/// Options that do not change the trained model (a time budget changes only where it stops).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub resume: bool,
    pub progress: bool,
    /// Stop (as if killed) after this step: for tests of resume.
    pub stop_after: Option<usize>,
    /// Recompute memory-bound activations in the backward pass (less memory, a little more time).
    pub gradient_checkpointing: bool,
    /// The convolutions' operand precision (bf16: mixed precision; weights and AdamW's state stay f32).
    pub precision: crate::kernels::matmul::Precision,
    /// Stop after the step during which this many seconds of this call have passed, then write the final
    /// checkpoint and samples as at the end of the run, and record the steps made as the run's step count.
    pub time_budget: Option<f64>,
}

struct State {
    model: Net,
    ema: Net,
    optim: ModuleOptimizer,
    step: usize,
    losses: Vec<LossRow>,
}

/// AdamW as every training here uses it (β 0.9, 0.999, ε 1e-8).
pub(crate) fn optimizer(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// The AdamW state a checkpoint carries (burn's burnpack bytes), as resuming reads it. `params` maps each
/// parameter id of the model it belongs to to the parameter's shape.
///
/// burn's loader panics on state that does not match its parameters (found by fuzzing: a tensor without a
/// parameter id, a rank other than the parameter's), so every tensor and rank entry is checked against
/// `params` first: the state must be named `{id}.…` for a parameter of the model and have its shape.
pub fn optimizer_state(
    weight_decay: f64,
    bytes: &[u8],
    params: &BTreeMap<u64, Vec<usize>>,
) -> std::result::Result<ModuleOptimizer, String> {
    let bad = |why: String| format!("bad optimizer state: {why}");
    let reader =
        burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(|e| bad(e.to_string()))?;
    let param_of = |name: &str| {
        name.split_once('.')
            .and_then(|(id, _)| id.parse::<u64>().ok())
            .and_then(|id| params.get(&id).map(|shape| (id, shape)))
    };
    for (name, value) in &reader.scalars().clone() {
        if let Some(id) = name.strip_suffix(".__rank") {
            let rank = params.get(&id.parse().unwrap_or(u64::MAX)).map(Vec::len);
            if rank.is_none() || usize::try_from(*value).ok() != rank {
                return Err(bad(format!("'{name}' does not match a parameter of the model")));
            }
        }
    }
    for t in reader.into_tensors().map_err(|e| bad(e.to_string()))? {
        match param_of(&t.name) {
            Some((id, shape)) if t.param_id == Some(id) && t.shape.as_slice() == shape.as_slice() => {}
            _ => {
                return Err(bad(format!(
                    "tensor '{}' {:?} is not the state of a parameter of the model",
                    t.name,
                    t.shape.as_slice()
                )));
            }
        }
    }
    optimizer(weight_decay)
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| bad(e.to_string()))
}

/// The optimizer state of a parsed checkpoint, checked against its "model" weights.
pub fn checkpoint_optimizer(c: &Contents, weight_decay: f64, path: &Path) -> Result<ModuleOptimizer> {
    let model = c
        .groups
        .get("model")
        .ok_or_else(|| Error::checkpoint(path, "holds no 'model' weights"))?;
    let params = model.values().map(|t| (t.id, t.shape.clone())).collect();
    let blob = c
        .blobs
        .get("optimizer")
        .ok_or_else(|| Error::checkpoint(path, "holds no optimizer state"))?;
    optimizer_state(weight_decay, blob, &params).map_err(|e| Error::checkpoint(path, e))
}

fn fresh(cfg: &RunConfig, device: &Device) -> Result<State> {
    cfg.net.validate()?;
    let model = crate::device::init_seeded(cfg.train.seed, device, |d| cfg.net.init(d).expect("validated"));
    let ema = model.valid();
    Ok(State {
        model,
        ema,
        optim: optimizer(cfg.train.weight_decay),
        step: 0,
        losses: Vec::new(),
    })
}

fn restore(cfg: &RunConfig, out: &Path, device: &Device) -> Result<State> {
    let path = out.join(CHECKPOINT_FILE);
    let c = safetensors_io::read(&path)?;
    let group = |name: &str| {
        c.groups
            .get(name)
            .ok_or_else(|| Error::checkpoint(&path, format!("holds no '{name}' weights")))
    };
    let model = safetensors_io::load(cfg.net.init(device)?, group("model")?, true, &path)?;
    let ema = safetensors_io::load(cfg.net.init(&crate::device::device())?, group("ema")?, true, &path)?;
    let optim = checkpoint_optimizer(&c, cfg.train.weight_decay, &path)?;
    let step = run::checkpoint_step(&c, &path)?;
    let losses = log::read(out)?.into_iter().filter(|r| r.step <= step).collect();
    Ok(State {
        model,
        ema,
        optim,
        step,
        losses,
    })
}

fn save(cfg: &RunConfig, out: &Path, s: &State) -> Result<()> {
    let mut c = Contents::default();
    c.groups.insert("model".into(), safetensors_io::collect(&s.model));
    c.groups.insert("ema".into(), safetensors_io::collect(&s.ema));
    let bytes = s
        .optim
        .into_bytes()
        .map_err(|e| Error::checkpoint(out, format!("optimizer state: {e}")))?;
    c.blobs.insert("optimizer".into(), bytes.to_vec());
    c.metadata.insert("step".into(), s.step.to_string());
    c.metadata.insert("format".into(), run::FORMAT.to_string());
    // Loss log first: a crash between the two leaves a log that is ahead, which resume truncates.
    log::write(out, &s.losses, cfg.train.steps)?;
    safetensors_io::write(&out.join(CHECKPOINT_FILE), &c)
}

/// Global L2 norm of all gradients, scaled down to `max` if above it; returns the norm before clipping.
pub(crate) fn clip_grad_norm<M: Module>(model: &M, grads: &mut GradientsParams, max: f64) -> f64 {
    struct Norm<'a>(&'a GradientsParams, f64);
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(p.id) {
                self.1 += g.square().sum().into_scalar::<f32>() as f64;
            }
        }
    }
    struct Scale<'a>(&'a mut GradientsParams, f64);
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.0.remove::<D>(p.id) {
                self.0.register::<D>(p.id, g.mul_scalar(self.1));
            }
        }
    }
    let mut n = Norm(grads, 0.0);
    model.visit(&mut n);
    let norm = n.1.sqrt();
    if max > 0.0 && norm > max {
        model.visit(&mut Scale(grads, max / norm));
    }
    norm
}

/// One batch of step `step`, all drawn from that step's stream.
struct Batch {
    input: Tensor<4>,
    t: Tensor<1>,
    classes: Option<Tensor<1, Int>>,
    target: Tensor<4>,
    /// Per-item loss weights, where the objective weighs levels unequally.
    weight: Option<Tensor<4>>,
    /// Text runs: each item's caption encoding, or the empty caption's.
    context: Option<Tensor<3>>,
}

fn batch(
    cfg: &RunConfig,
    data: &Dataset,
    cond: &LevelInput,
    text: Option<&Context>,
    step: usize,
    device: &Device,
) -> Result<Batch> {
    let mut r = rng::stream(cfg.train.seed ^ TRAIN_STREAM, step as u64);
    let b = cfg.train.batch_size;
    let idx: Vec<usize> = (0..b).map(|_| r.random_range(0..data.len())).collect();
    let levels: Vec<(Level, f64)> = (0..b).map(|_| cond.training_level(&mut r)).collect();
    let shape = [b, data.channels, data.height, data.width];
    let x0 = Tensor::<4>::from_data(TensorData::new(data.gather(&idx), shape), device);
    let eps = Tensor::<4>::from_data(
        TensorData::new(rng::normals(&mut r, b * data.image_size()), shape),
        device,
    );
    let precond = cfg.objective.precond(cfg.prediction);
    let coefs: Vec<_> = levels.iter().map(|(l, _)| precond.coefs(*l)).collect();
    let col = |f: &dyn Fn(usize) -> f64| column((0..b).map(f), device);
    let target = x0.clone() * col(&|i| coefs[i].target.0) + eps.clone() * col(&|i| coefs[i].target.1);
    let noise_levels: Vec<Level> = levels.iter().map(|l| l.0).collect();
    let mut input = add_noise(x0, eps, &noise_levels);
    // Variance-preserving levels give the network x itself (bit for bit, as before preconditioning).
    if coefs.iter().any(|c| (c.input - 1.0).abs() > 1e-12) {
        input = input * col(&|i| coefs[i].input);
    }
    let weight = cfg
        .train
        .min_snr_gamma
        .map(|g| col(&|i| precond.min_snr_weight(levels[i].0, g)));
    let t = Tensor::<1>::from_floats(levels.iter().map(|l| l.1 as f32).collect::<Vec<_>>().as_slice(), device);
    // Drawn last, so that unconditional runs draw exactly what they always drew.
    let classes = cfg
        .net
        .num_classes()
        .map(|k| -> Result<Tensor<1, Int>> {
            let labels = data
                .labels
                .as_ref()
                .ok_or_else(|| Error::Data(format!("{} has no labels", data.name)))?;
            let l = draw_labels(&idx, labels, k, cfg.train.label_dropout, &mut r);
            Ok(Tensor::from_data(TensorData::new(l, [b]), device))
        })
        .transpose()?;
    // Captions are dropped to the empty one as labels are to the null class, drawn after them.
    let context = text.map(|c| {
        let per = c.len * c.dim;
        let items: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                if r.random::<f64>() < cfg.train.label_dropout {
                    c.null.clone()
                } else {
                    c.items[i * per..(i + 1) * per].to_vec()
                }
            })
            .collect();
        Tensor::<3>::from_data(TensorData::new(items, [b, c.len, c.dim]), device)
    });
    Ok(Batch {
        input,
        t,
        classes,
        target,
        weight,
        context,
    })
}

/// The class labels of a batch, each replaced by the null class `k` with probability `dropout` (the
/// unconditional half of classifier-free guidance, Ho & Salimans 2022).
pub fn draw_labels(idx: &[usize], labels: &[u32], k: usize, dropout: f64, r: &mut impl Rng) -> Vec<i64> {
    idx.iter()
        .map(|&i| {
            if r.random::<f64>() < dropout {
                k as i64
            } else {
                labels[i] as i64
            }
        })
        .collect()
}

/// Trains (or resumes) the run in `out` on `data`.
pub fn train(cfg: &RunConfig, data: &Dataset, out: &Path, opts: &Options) -> Result<Summary> {
    crate::kernels::matmul::with_precision(opts.precision, || train_in_precision(cfg, data, out, opts))
}

fn train_in_precision(cfg: &RunConfig, data: &Dataset, out: &Path, opts: &Options) -> Result<Summary> {
    cfg.validate()?;
    if matches!(cfg.text, Some(run::TextEncoderConfig::Clip { .. })) {
        return Err(Error::Config(
            "training a Stable Diffusion import is not supported (text runs train with diffuse's own encoder)".into(),
        ));
    }
    if (data.channels, data.height, data.width) != (cfg.channels, cfg.height, cfg.width) {
        return Err(Error::Data(format!(
            "images are {}×{}×{} but the run expects {}×{}×{}",
            data.channels, data.height, data.width, cfg.channels, cfg.height, cfg.width
        )));
    }
    let cond = cfg.conditioning()?;
    let schedule = cfg.schedule.build()?;
    // Text runs: every caption's encoding by the frozen encoder, once, before anything is written.
    let text = match &cfg.text {
        Some(t) => {
            let caps = data
                .captions
                .as_ref()
                .ok_or_else(|| Error::Data(format!("{} has no captions for a text-conditioned run", data.name)))?;
            let encoder = t.load(out, &crate::device::device())?;
            if cfg.net.context_dim() != Some(encoder.width()) {
                return Err(Error::Config(format!(
                    "{}: the text encoder's width is {}, the UNet's context {:?}",
                    out.display(),
                    encoder.width(),
                    cfg.net.context_dim()
                )));
            }
            let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
            Some(encoder.context(&caps, "")?)
        }
        None => None,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::atomic::remove_leftovers(out)?; // a killed run's half-written files
    cfg.write(out)?; // on resume this records an extended step count
    let has_ckpt = out.join(CHECKPOINT_FILE).exists();
    let device = crate::device::train_device_with(opts.gradient_checkpointing);
    let mut s = if opts.resume && has_ckpt {
        restore(cfg, out, &device)?
    } else {
        fresh(cfg, &device)?
    };
    let resumed_from = (s.step > 0).then_some(s.step);
    let params = s.model.num_params();
    let bar = crate::progress::bar(cfg.train.steps, s.step, "steps", opts.progress);
    let started = Instant::now();
    let t = &cfg.train;
    let end = opts.stop_after.map_or(t.steps, |k| k.min(t.steps));
    let mut step_seconds = 0.0;
    let mut out_of_time = false;
    while s.step < end && !out_of_time {
        let step = s.step;
        let step_started = Instant::now();
        if cfg.net.dropout() > 0.0 {
            // Dropout draws from burn's process-wide generator: reseed it per step for an exact resume.
            device.seed(rng::stream(t.seed ^ TRAIN_STREAM, step as u64).random());
        }
        let Batch {
            input,
            t: tt,
            classes,
            target,
            weight,
            context,
        } = batch(cfg, data, &cond, text.as_ref(), step, &device)?;
        let pred = s.model.forward_with(input, tt, classes, context);
        let loss = match weight {
            Some(w) => ((pred - target).square() * w).mean(),
            None => (pred - target).square().mean(),
        };
        let grads = loss.backward();
        let value = loss.into_scalar::<f32>();
        if !value.is_finite() {
            bar.abandon();
            return Err(Error::NonFinite { step: step + 1, value });
        }
        let mut grads = GradientsParams::from_grads(grads, &s.model);
        let grad_norm = clip_grad_norm(&s.model, &mut grads, t.grad_clip);
        let lr = t.lr * ((step + 1) as f64 / t.warmup_steps.max(1) as f64).min(1.0);
        s.model = s.optim.step(lr, s.model, grads);
        s.ema = ema::update(s.ema, &s.model, ema::decay(t.ema_decay, step));
        s.step += 1;
        s.losses.push(LossRow {
            step: s.step,
            loss: value as f64,
            lr,
            grad_norm,
        });
        step_seconds += step_started.elapsed().as_secs_f64();
        bar.set_position(s.step as u64);
        bar.set_message(format!("loss {:.4}", log::recent_mean(&s.losses, 50)));
        out_of_time = opts
            .time_budget
            .is_some_and(|b| started.elapsed().as_secs_f64() >= b && s.step < t.steps);
        if out_of_time {
            // The run is what it made: its step count is the steps done, so that it reads as finished.
            let mut done = cfg.clone();
            done.train.steps = s.step;
            done.write(out)?;
        }
        let last = s.step == t.steps || out_of_time;
        if last || (t.checkpoint_every > 0 && s.step % t.checkpoint_every == 0) {
            save(cfg, out, &s)?;
        }
        if last || (t.sample_every > 0 && s.step % t.sample_every == 0) {
            preview(cfg, &schedule, &cond, text.as_ref(), &s.ema, out, s.step)?;
        }
    }
    bar.finish_and_clear();
    Ok(Summary {
        steps: s.step,
        resumed_from,
        seconds: started.elapsed().as_secs_f64(),
        step_seconds,
        final_loss: log::recent_mean(&s.losses, 100),
        params,
        out_of_time,
    })
}

/// A grid of 64 EMA samples by the run's default sampler (fixed seed 0, so grids of successive steps compare);
/// text runs draw a row for each of the first eight captions.
fn preview(
    cfg: &RunConfig,
    schedule: &NoiseSchedule,
    cond: &LevelInput,
    text: Option<&Context>,
    ema: &Net,
    out: &Path,
    step: usize,
) -> Result<()> {
    let device = crate::device::device();
    let plan = cfg.default_sampler()?.plan(schedule)?;
    let den = cfg.denoiser(ema, cond, Default::default());
    let (c, h, w) = (cfg.channels, cfg.height, cfg.width);
    let points = cfg.is_points();
    // 64 images in a grid, or 2,048 points in one picture.
    let n = if points { 2048 } else { 64 };
    let conditioning = Cond {
        classes: None,
        context: text.map(|c| {
            let per = c.len * c.dim;
            let rows = c.items.len() / per;
            let items = (0..8)
                .flat_map(|row| c.items[(row % rows) * per..(row % rows + 1) * per].repeat(8))
                .collect();
            Context { items, ..c.clone() }
        }),
    };
    let images = sample::draw(
        &den,
        &plan,
        0,
        n,
        [c, h, w],
        n,
        None,
        &conditioning,
        &[],
        &device,
        &mut |_| {},
    )
    .images;
    let picture = if points {
        crate::plot::point_cloud(&images, c)
    } else if let Some(space) = cfg.latent_space(out)? {
        let [c, h, w] = space.image_shape();
        crate::imageio::grid(&space.decode(&images, n), n, c, h, w, 8)
    } else {
        crate::imageio::grid(&images, n, c, h, w, 8)
    };
    let dir = out.join("samples");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::imageio::write_rgb(&dir.join(format!("step-{step:06}.png")), picture.clone())?;
    crate::imageio::write_rgb(&out.join("samples.png"), picture)
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_dropped_at_the_configured_rate() {
        let labels: Vec<u32> = (0..10).collect();
        let idx: Vec<usize> = (0..200_000).map(|i| i % 10).collect();
        let mut r = crate::rng::stream(1, 2);
        let drawn = super::draw_labels(&idx, &labels, 10, 0.1, &mut r);
        let nulls = drawn.iter().filter(|&&l| l == 10).count() as f64 / drawn.len() as f64;
        assert!((nulls - 0.1).abs() < 0.003, "{nulls}");
        assert!(drawn.iter().zip(&idx).all(|(&l, &i)| l == 10 || l == i as i64));
        assert!(
            super::draw_labels(&idx, &labels, 10, 0.0, &mut r)
                .iter()
                .all(|&l| l < 10)
        );
    }

    #[test]
    fn optimizer_state_must_match_the_weights() {
        let fuzz = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
        let load = |file: &str| {
            let path = fuzz.join(file);
            let c = crate::safetensors_io::read(&path).unwrap();
            super::checkpoint_optimizer(&c, 0.0, &path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // A real checkpoint (a 2-step MLP run), then the fuzzer's findings: burn panicked on both.
        load("seeds/optimizer/checkpoint-mlp").unwrap();
        let e = load("regressions/optimizer/no-param-id").unwrap_err();
        assert!(e.contains("is not the state of a parameter"), "{e}");
        let e = load("regressions/optimizer/rank-mismatch").unwrap_err();
        assert!(
            e.contains("does not match a parameter") || e.contains("is not the state"),
            "{e}"
        );
    }
}
