//! Progressive distillation (Salimans & Ho 2022): a student, initialised as its teacher, learns to take in one
//! deterministic DDIM step what the teacher takes in two; each round halves the steps, the student becoming
//! the next round's teacher, until a few steps remain.
//!
//! The grids nest by construction: the first teacher walks K₀ steps of the run's default grid; a student of K
//! steps walks every (K₀/K)-th of those knots ([`Plan::with_thinning`]), so that each of its steps spans two of
//! its teacher's. The student's target is the x̂₀ that makes its one DDIM step land where the teacher's two do
//! (the paper's Algorithm 2), with the paper's truncated-SNR weight max(SNR, 1) on the x̂₀ error.

use crate::denoise::{Cond, Denoiser, NetDenoiser};
use crate::nn::Net;
use crate::run::{self, CHECKPOINT_FILE, LoadedRun, Weights};
use crate::safetensors_io::{self, Contents};
use crate::sample::{Method, Plan, Spec};
use crate::{Error, Result, rng};
use burn::optim::GradientsParams;
use burn::prelude::*;
use diffuse_math::{Knot, Level, Precond, Prediction};
use rand::Rng;
use std::path::Path;
use std::time::Instant;

/// Tag mixed into the seed so that distillation draws never coincide with training or sampling draws.
const DISTILL_STREAM: u64 = 0x6469_7374_696c;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Steps of the first teacher (a power of two times `to_steps`).
    pub from_steps: usize,
    /// Steps of the final student.
    pub to_steps: usize,
    /// Optimiser steps per halving.
    pub steps_per_round: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub progress: bool,
}

/// What a distillation reports: per round, the student's steps and its mean loss over the round's last 50
/// optimiser steps.
#[derive(Debug)]
pub struct Summary {
    pub rounds: Vec<(usize, f64)>,
    pub seconds: f64,
    pub spec: Spec,
}

/// Distils the run in `teacher_dir` into a run in `out` whose default sampler is DDIM with `to_steps` steps.
pub fn distill(teacher_dir: &Path, data: &crate::data::Dataset, out: &Path, s: &Settings) -> Result<Summary> {
    let ratio = s.from_steps / s.to_steps.max(1);
    if s.to_steps == 0 || !s.from_steps.is_multiple_of(s.to_steps) || !ratio.is_power_of_two() || ratio < 2 {
        return Err(Error::Invalid(format!(
            "distillation halves the steps: --from-steps must be a power of two (at least 2) times --to-steps, got {} and {}",
            s.from_steps, s.to_steps
        )));
    }
    if s.batch_size == 0 || s.steps_per_round == 0 || !(s.lr > 0.0 && s.lr.is_finite()) {
        return Err(Error::Invalid(
            "batch size, steps per round and lr must be positive".into(),
        ));
    }
    let device = crate::device::device();
    let teacher = run::load(teacher_dir, Weights::Ema, &device)?;
    teacher.config.refuse_text("distillation")?;
    if teacher.net.num_classes().is_some() {
        return Err(Error::Invalid(
            "distillation of class-conditional runs is not supported yet (guidance would need distilling too)".into(),
        ));
    }
    if teacher.config.objective.precond(teacher.config.prediction) == Precond::Vp(Prediction::Eps) {
        // x̂₀ = (x − σε̂)/α amplifies the student's error by 1/α at high noise (Salimans & Ho 2022, §4).
        return Err(Error::Invalid(
            "distillation needs a model whose x̂₀ is well-conditioned at high noise: v or x0 prediction, edm or flow \
             (this run predicts ε)"
                .into(),
        ));
    }
    if teacher.latent.is_some() {
        return Err(Error::Invalid(
            "distillation of latent runs is not supported yet".into(),
        ));
    }
    let cfg = &teacher.config;
    if (data.channels, data.height, data.width) != (cfg.channels, cfg.height, cfg.width) {
        return Err(Error::Data(format!(
            "images are {}×{}×{} but the run expects {}×{}×{}",
            data.channels, data.height, data.width, cfg.channels, cfg.height, cfg.width
        )));
    }
    // The first teacher walks the run's own default grid with DDIM: every student is a thinning of it.
    let base = cfg.default_sampler()?;
    let plan = |steps: usize| -> Result<Plan> {
        Spec {
            method: Method::Ddim { eta: 0.0 },
            steps,
            thin: s.from_steps / steps,
            ..base.clone()
        }
        .plan(&teacher.schedule)
    };
    let train_device = crate::device::train_device();
    let weights = safetensors_io::collect(&teacher.net);
    let mut student: Net = safetensors_io::load(cfg.net.init(&train_device)?, &weights, false, teacher_dir)?;
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut teacher_net = teacher.net.clone();
    let mut steps = s.from_steps;
    let mut round = 0u64;
    while steps > s.to_steps {
        let fine = plan(steps)?;
        let coarse = plan(steps / 2)?;
        let teacher_knots = fine.knots().to_vec();
        let student_knots = coarse.knots().to_vec();
        debug_assert!(student_knots.iter().all(|k| teacher_knots.contains(k)));
        let mut optim = crate::train::optimizer(0.0);
        let bar = crate::progress::bar(
            s.steps_per_round,
            0,
            &format!("steps ({} → {} sampling steps)", steps, steps / 2),
            s.progress,
        );
        let mut losses = Vec::new();
        for k in 0..s.steps_per_round {
            let mut r = rng::stream(s.seed ^ DISTILL_STREAM, (round << 32) | k as u64);
            let j = r.random_range(0..student_knots.len() - 1);
            let (from, to) = (student_knots[j], student_knots[j + 1]);
            let mid = teacher_knots[teacher_knots.iter().position(|t| *t == from).expect("nested") + 1];
            let idx: Vec<usize> = (0..s.batch_size).map(|_| r.random_range(0..data.len())).collect();
            let shape = [s.batch_size, data.channels, data.height, data.width];
            let x0 = Tensor::<4>::from_data(TensorData::new(data.gather(&idx), shape), &device);
            let eps = Tensor::<4>::from_data(
                TensorData::new(rng::normals(&mut r, s.batch_size * data.image_size()), shape),
                &device,
            );
            let x = x0.mul_scalar(from.level.alpha) + eps.mul_scalar(from.level.sigma);
            let target = two_step_target(&teacher, &teacher_net, x.clone(), from, mid, to);
            let weight = (from.level.alpha / from.level.sigma).powi(2).max(1.0);
            // The run's own denoiser on the student, unclipped: clipping would stop the gradients.
            let predicted = NetDenoiser {
                net: &student,
                cond: &teacher.cond,
                precond: cfg.objective.precond(cfg.prediction),
                clip: None,
                guidance: Default::default(),
            }
            .denoise(x.to_device(&train_device), from.level, &Cond::default())
            .x0;
            let loss = (predicted - target.to_device(&train_device))
                .square()
                .mean()
                .mul_scalar(weight);
            let grads = loss.backward();
            let value = loss.into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bar.abandon();
                return Err(Error::NonFinite {
                    step: k + 1,
                    value: value as f32,
                });
            }
            losses.push(value);
            let grads = GradientsParams::from_grads(grads, &student);
            student = optim.step(s.lr, student, grads);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let tail = &losses[losses.len().saturating_sub(50)..];
        rounds.push((steps / 2, tail.iter().sum::<f64>() / tail.len() as f64));
        teacher_net = student.valid();
        steps /= 2;
        round += 1;
    }
    let spec = plan(s.to_steps)?.spec();
    write_run(&teacher, &teacher_net, out, &spec)?;
    Ok(Summary {
        rounds,
        seconds: started.elapsed().as_secs_f64(),
        spec,
    })
}

/// The x̂₀ whose DDIM step from `from` lands where the teacher's two steps (via `mid`) land at `to`:
/// x_to = α_to·x̂₀ + σ_to·(x − α_from·x̂₀)/σ_from, solved for x̂₀ (into σ_to = 0, x̂₀ = x_to/α_to).
fn two_step_target(run: &LoadedRun, net: &Net, x: Tensor<4>, from: Knot, mid: Knot, to: Knot) -> Tensor<4> {
    let den = run.config.denoiser(net, &run.cond, Default::default());
    let ddim = |x: Tensor<4>, a: Level, b: Level| {
        let d = den.denoise(x, a, &Cond::default());
        d.x0.mul_scalar(b.alpha) + d.eps.mul_scalar(b.sigma)
    };
    let x_mid = ddim(x.clone(), from.level, mid.level);
    let x_to = ddim(x_mid, mid.level, to.level);
    let (f, t) = (from.level, to.level);
    let k = t.sigma / f.sigma;
    (x_to - x.mul_scalar(k)).mul_scalar(1.0 / (t.alpha - k * f.alpha))
}

/// A run in `out` with the student's weights (as both weights and EMA), the teacher's config and `spec` as its
/// default sampler.
fn write_run(teacher: &LoadedRun, student: &Net, out: &Path, spec: &Spec) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut cfg = teacher.config.clone();
    cfg.sampler = Some(spec.clone());
    cfg.write(out)?;
    let mut c = Contents::default();
    let weights = safetensors_io::collect(student);
    c.groups.insert("model".into(), weights.clone());
    c.groups.insert("ema".into(), weights);
    c.metadata.insert("step".into(), teacher.step.to_string());
    c.metadata.insert("format".into(), run::FORMAT.to_string());
    c.metadata
        .insert("distilled_from".into(), teacher.dir.display().to_string());
    safetensors_io::write(&out.join(CHECKPOINT_FILE), &c)
}
