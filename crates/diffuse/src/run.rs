//! A run directory: `config.json` (what was trained, how), `checkpoint.safetensors` (weights, EMA weights,
//! optimizer state, step), `loss.csv`, `loss.png`, sample grids; latent runs also `vae/`, their autoencoder.

use crate::data::{DataSpec, Dataset};
use crate::denoise::{Context, Guidance, LevelInput, NetDenoiser};
use crate::nn::clip::ClipText;
use crate::nn::{Net, NetConfig, UNetConfig};
use crate::objective::Objective;
use crate::safetensors_io;
use crate::sample::{Method, Plan, Process, Spec, Walked};
use crate::text::OwnText;
use crate::vae::LatentSpace;
use crate::{Error, Result};
use burn::prelude::Device;
use burn::prelude::Tensor;
use diffuse_math::{BetaSchedule, NoiseSchedule, Prediction, Sde};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const FORMAT: u32 = 1;

/// The discrete noise schedule a model was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    #[serde(with = "crate::names::as_name")]
    pub kind: BetaSchedule,
    pub timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    /// Rescaled to zero terminal SNR (Lin et al. 2024): the last train step is pure noise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_terminal_snr: bool,
    /// Explicit β values (imported models' `trained_betas`), one per train step, used instead of `kind`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
}

impl ScheduleConfig {
    pub fn new(kind: BetaSchedule, timesteps: usize, range: Option<(f64, f64)>) -> Self {
        let (beta_start, beta_end) = range.unwrap_or(kind.default_range());
        Self {
            kind,
            timesteps,
            beta_start,
            beta_end,
            zero_terminal_snr: false,
            trained_betas: None,
        }
    }

    pub fn build(&self) -> Result<NoiseSchedule> {
        let s = match &self.trained_betas {
            Some(b) if b.len() != self.timesteps => {
                return Err(Error::Config(format!(
                    "{} trained betas for {} timesteps",
                    b.len(),
                    self.timesteps
                )));
            }
            Some(b) => NoiseSchedule::from_trained_betas(self.kind, b.clone())?,
            None => NoiseSchedule::new(self.kind, self.timesteps, self.beta_start, self.beta_end)?,
        };
        Ok(if self.zero_terminal_snr {
            s.rescaled_to_zero_terminal_snr()
        } else {
            s
        })
    }
}

/// Optimisation settings; with the seed they fix every random draw of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables.
    pub grad_clip: f64,
    pub ema_decay: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    pub sample_every: usize,
    /// Class-conditional models: the probability that a label is replaced by the null class.
    #[serde(default)]
    pub label_dropout: f64,
    /// Min-SNR-γ loss weighting (Hang et al. 2023) for diffusion objectives; none weighs all levels alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_snr_gamma: Option<f64>,
}

impl TrainConfig {
    /// `steps` of `batch_size` with the defaults of `diffuse train`: AdamW at 3e-4 after 100 warm-up steps, no
    /// weight decay, gradient norm clipped at 1, EMA 0.995, seed 0, a checkpoint every 200 steps and samples
    /// every 400.
    pub fn new(steps: usize, batch_size: usize) -> TrainConfig {
        TrainConfig {
            steps,
            batch_size,
            lr: 3e-4,
            warmup_steps: 100,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ema_decay: 0.995,
            seed: 0,
            checkpoint_every: 200,
            sample_every: 400,
            label_dropout: 0.0,
            min_snr_gamma: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub format: u32,
    /// Absolute paths for runs created by `train` (older runs may hold relative ones).
    pub data: DataSpec,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    #[serde(with = "crate::names::as_name")]
    pub prediction: Prediction,
    pub schedule: ScheduleConfig,
    /// Set for continuous-time score models (vp, subvp, ve, with parameters as ve:0.002,80); absent for
    /// discrete DDPM models.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::names::as_name::opt"
    )]
    pub sde: Option<Sde>,
    /// What the network is trained to do; absent in runs made before objectives (diffusion).
    #[serde(default, skip_serializing_if = "is_diffusion")]
    pub objective: Objective,
    pub net: NetConfig,
    pub train: TrainConfig,
    /// The sampler `sample`, `eval` and `edit` use when none is named; absent: DDIM, 50 steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<Spec>,
    /// Latent diffusion: the network works on a VAE's scaled latents (channels/height/width above are the
    /// latent's), decoded to images at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentConfig>,
    /// x̂₀ is clamped to [−r, r] while sampling (diffusers' `clip_sample_range`); 0 turns clipping off. Absent:
    /// 1 for pixel runs (the data range), off for points and latents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<f64>,
    /// Text-conditioned runs: the text encoder whose hidden states the UNet attends to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextEncoderConfig>,
}

/// A run's text encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextEncoderConfig {
    /// A transformers `CLIPTextModel` folder and its tokenizer's folder, relative to the run (Stable Diffusion's
    /// `text_encoder/` and `tokenizer/`, copied in on import).
    Clip { encoder: String, tokenizer: String },
    /// The project's own text encoder (`diffuse text train`), copied into the run folder `dir`; frozen while the
    /// UNet trains.
    Own { dir: String },
}

/// The sub-directory of a text-conditioned run trained here holding its text encoder.
pub const TEXT_DIR: &str = "text";

/// A run's text encoder, loaded.
pub enum TextEncoder {
    Clip(Box<ClipText>),
    Own(Box<OwnText>),
}

impl TextEncoder {
    /// Width of the hidden states.
    pub fn width(&self) -> usize {
        match self {
            TextEncoder::Clip(c) => c.width(),
            TextEncoder::Own(o) => o.width(),
        }
    }

    /// The hidden states [n, tokens, width] a text-conditioned UNet attends to.
    pub fn hidden(&self, texts: &[&str]) -> Result<Tensor<3>> {
        match self {
            TextEncoder::Clip(c) => Ok(c.hidden(texts)?.0),
            TextEncoder::Own(o) => o.hidden(texts),
        }
    }

    /// The words of `text` the encoder does not know (the project's own encoder maps them all to one token).
    pub fn unknown_words(&self, text: &str) -> Vec<String> {
        match self {
            TextEncoder::Clip(_) => Vec::new(),
            TextEncoder::Own(o) => o.meta.config.vocab.unknown(text),
        }
    }

    /// Every text's hidden states and the empty text's, as a context of `texts.len()` items.
    pub fn context(&self, texts: &[&str], null: &str) -> Result<Context> {
        let mut items = Vec::new();
        let mut shape = (0, 0);
        // In batches, so that a data set's captions do not make one large tensor.
        for chunk in texts.chunks(256).chain(std::iter::once(&[null][..])) {
            let h = self.hidden(chunk)?;
            let [_, len, dim] = h.dims();
            shape = (len, dim);
            items.extend(crate::sample::to_vec(h.unsqueeze::<4>()));
        }
        let (len, dim) = shape;
        let null = items.split_off(items.len() - len * dim);
        Ok(Context { len, dim, items, null })
    }
}

impl TextEncoderConfig {
    pub fn load(&self, dir: &Path, device: &Device) -> Result<TextEncoder> {
        match self {
            TextEncoderConfig::Clip { encoder, tokenizer } => Ok(TextEncoder::Clip(Box::new(ClipText::load(
                &dir.join(encoder),
                &dir.join(tokenizer),
                device,
            )?))),
            TextEncoderConfig::Own { dir: sub } => Ok(TextEncoder::Own(Box::new(OwnText::load(&dir.join(sub))?))),
        }
    }
}

/// Makes `cfg` a run conditioned on the text encoder in `text_dir` (a `diffuse text train` folder): its UNet
/// attends to the encoder's hidden states, and the encoder is copied into `out/text`, so that the run stands
/// alone.
pub fn attach_text(cfg: &mut RunConfig, text_dir: &Path, out: &Path) -> Result<()> {
    let encoder = OwnText::load(text_dir)?;
    match &mut cfg.net {
        NetConfig::Unet(u) => u.context_dim = Some(encoder.width()),
        NetConfig::Mlp(_) => return Err(Error::Config("text conditioning is for images".into())),
    }
    cfg.text = Some(TextEncoderConfig::Own { dir: TEXT_DIR.into() });
    let copy = out.join(TEXT_DIR);
    std::fs::create_dir_all(&copy).map_err(|e| Error::io(&copy, e))?;
    for f in [crate::text::META, crate::text::WEIGHTS] {
        let from = text_dir.join(f);
        let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
        crate::atomic::write(&copy.join(f), &bytes)?;
    }
    Ok(())
}

fn is_diffusion(o: &Objective) -> bool {
    *o == Objective::Diffusion
}

/// Where a latent run's VAE is and what it makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentConfig {
    /// The VAE directory, relative to the run (training copies the VAE in, so the run stands alone).
    pub vae: String,
    /// Latents are encoder means × scale (unit variance over the training set).
    pub scale: f64,
    /// (channels, height, width) of the decoded images.
    pub image: [usize; 3],
}

/// The sub-directory of a latent run holding its VAE.
pub const VAE_DIR: &str = "vae";

/// Makes `cfg` (built for `space`'s latents) a latent run in `out`: records the latent space and copies the VAE
/// from `vae_dir` into `out/vae`, so that the run stands alone.
pub fn attach_latent(cfg: &mut RunConfig, space: &LatentSpace, vae_dir: &Path, out: &Path) -> Result<()> {
    cfg.latent = Some(LatentConfig {
        vae: VAE_DIR.into(),
        scale: space.meta.scale,
        image: space.image_shape(),
    });
    let copy = out.join(VAE_DIR);
    std::fs::create_dir_all(&copy).map_err(|e| Error::io(&copy, e))?;
    for f in [crate::vae::WEIGHTS, crate::vae::META] {
        let from = vae_dir.join(f);
        let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
        crate::atomic::write(&copy.join(f), &bytes)?;
    }
    Ok(())
}

/// Octaves of Fourier features the point MLP gets by default.
pub const POINT_FOURIER: usize = 6;

impl RunConfig {
    /// What `diffuse train --data SPEC` trains without other flags: the network for the data's shape, the
    /// linear schedule over 1000 steps, ε prediction, AdamW at 3e-4 with 100 warm-up steps, EMA 0.995, and
    /// 800 steps (images up to 16×16), 3000 (points) or 20,000 (larger images).
    pub fn for_data(spec: &DataSpec, data: &Dataset) -> RunConfig {
        let points = data.height == 1 && data.width == 1;
        let small = data.height.max(data.width) <= 16;
        RunConfig {
            format: FORMAT,
            data: spec.clone(),
            channels: data.channels,
            height: data.height,
            width: data.width,
            class_names: data.class_names.clone(),
            prediction: Prediction::Eps,
            schedule: ScheduleConfig::new(BetaSchedule::Linear, 1000, None),
            sde: None,
            net: NetConfig::for_data(data.channels, data.height, data.width),
            train: TrainConfig::new(
                if points {
                    3000
                } else if small {
                    800
                } else {
                    20000
                },
                if points { 256 } else { 64 },
            ),
            objective: Objective::Diffusion,
            sampler: None,
            latent: None,
            clip_sample: None,
            text: None,
        }
    }

    /// The run with `objective` and that objective's default sampler: EDM's Heun on its Karras grid, 18 steps
    /// (Karras et al. 2022, §3; 37 network calls here, as the grid ends at σ_min and one denoising call
    /// follows where EDM takes an Euler step to 0); flow matching's Heun in flow time, 18 steps (35 calls);
    /// DDIM-50 for diffusion.
    pub fn with_objective(mut self, objective: Objective) -> RunConfig {
        self.objective = objective;
        let schedule = self.schedule.build().expect("a valid schedule");
        let process = objective.process(&schedule, self.sde);
        let spec = |name: &str| {
            let method = Method::from_name(name).expect("a sampler name");
            Spec {
                method,
                grid: method.default_grid(&process),
                steps: 18,
                process: Walked::of(&process),
                strength: 1.0,
                thin: 1,
            }
        };
        self.sampler = match objective {
            Objective::Diffusion => None,
            Objective::Edm { .. } => Some(spec("heun")),
            Objective::Flow { .. } => Some(spec("flow-heun")),
        };
        self
    }

    /// What `diffuse train --data SPEC` trains without flags: [`RunConfig::for_data`], and for images flow
    /// matching (logit-normal times) at its learning rate, with Heun in flow time as the default sampler. The
    /// sweep that chose it is `scripts/sweep-digits.sh` (docs/guide/objectives.md). The network is
    /// [`UNetConfig::recommended`] (small for greyscale images above 16×16). Points train by flow matching too,
    /// with uniform times and Fourier features of the coordinates: at equal steps they learn the torus's hole and
    /// the letter's crossbar where DDPM and logit-normal times did not (`scripts/points.sh`, docs/guide/points.md).
    pub fn recommended(spec: &DataSpec, data: &Dataset) -> RunConfig {
        let mut cfg = Self::for_data(spec, data);
        if cfg.is_points() {
            if let NetConfig::Mlp(m) = &mut cfg.net {
                m.fourier = POINT_FOURIER;
            }
            let flow = Objective::Flow {
                times: crate::denoise::FlowTimes::Uniform,
            };
            let mut cfg = cfg.with_objective(flow);
            cfg.train.lr = Self::default_lr(&flow);
            return cfg;
        }
        if let NetConfig::Unet(u) = &mut cfg.net {
            *u = UNetConfig::recommended(cfg.channels, cfg.height, cfg.width);
        }
        let flow = Objective::from_name("flow").expect("a known objective");
        let mut cfg = cfg.with_objective(flow);
        cfg.train.lr = Self::default_lr(&flow);
        cfg
    }

    /// The learning rate an objective trains at unless told: 1e-3 for flow matching and EDM (measured better
    /// than 3e-4 on the digits at 800 steps, and EDM worse at 2e-3), 3e-4 for diffusion (DDPM's range is 1e-4
    /// to 3e-4; the classic recipe stays as published).
    pub fn default_lr(objective: &Objective) -> f64 {
        match objective {
            Objective::Flow { .. } | Objective::Edm { .. } => 1e-3,
            Objective::Diffusion => 3e-4,
        }
    }

    /// Makes the network class-conditional on the data's labels, with label dropout `p`.
    pub fn conditional(mut self, p: f64) -> RunConfig {
        if let NetConfig::Unet(u) = &mut self.net {
            u.num_classes = Some(self.class_names.len());
        }
        self.train.label_dropout = p;
        self
    }

    /// Point clouds are stored as 1×1 "images" with a channel per coordinate.
    pub fn is_points(&self) -> bool {
        (self.height, self.width) == (1, 1) && self.latent.is_none()
    }

    /// The one place that says how this run's network denoises: x̂₀ is clipped to the pixel range [−1, 1] for
    /// pixel runs only (points' coordinates and unit-variance latents are not pixel values), guided by
    /// `guidance` where the network is class-conditional. Likelihoods turn clipping off (it is not part of
    /// the model's density).
    pub fn denoiser<'a>(&self, net: &'a Net, input: &'a LevelInput, guidance: Guidance) -> NetDenoiser<'a> {
        NetDenoiser {
            net,
            cond: input,
            precond: self.objective.precond(self.prediction),
            clip: self.clip_range(),
            guidance,
        }
    }

    /// The range x̂₀ is clipped to while sampling, if it is: the run's `clip_sample`, else 1 for pixel runs.
    pub fn clip_range(&self) -> Option<f64> {
        match self.clip_sample {
            Some(r) => (r > 0.0).then_some(r),
            None => (!self.is_points() && self.latent.is_none()).then_some(1.0),
        }
    }

    /// (channels, height, width) of what the run produces: decoded images for latent runs.
    pub fn output_shape(&self) -> [usize; 3] {
        match &self.latent {
            Some(l) => l.image,
            None => [self.channels, self.height, self.width],
        }
    }

    /// The run's latent space, for latent runs in `dir`.
    pub fn latent_space(&self, dir: &Path) -> Result<Option<LatentSpace>> {
        let Some(l) = &self.latent else { return Ok(None) };
        let space = LatentSpace::load(&dir.join(&l.vae))?;
        let [c, h, w] = space.meta.net.latent_shape();
        if [c, h, w] != [self.channels, self.height, self.width] || space.image_shape() != l.image {
            return Err(Error::Config(format!(
                "{}: the VAE makes {c}×{h}×{w} latents of {:?} images, the run expects {}×{}×{} of {:?}",
                dir.display(),
                space.image_shape(),
                self.channels,
                self.height,
                self.width,
                l.image
            )));
        }
        Ok(Some(space))
    }

    /// How the network is told the noise level.
    pub fn conditioning(&self) -> Result<LevelInput> {
        Ok(self.objective.level_input(&self.schedule.build()?, self.sde))
    }

    /// The process the model's samples are drawn on unless a sampler asks for another.
    pub fn process(&self) -> Result<Process> {
        Ok(self.objective.process(&self.schedule.build()?, self.sde))
    }

    /// The sampler used when none is named: the run's own, else DDIM with 50 steps on its process.
    pub fn default_sampler(&self) -> Result<Spec> {
        if let Some(s) = &self.sampler {
            return Ok(s.clone());
        }
        let process = self.process()?;
        let method = Method::Ddim { eta: 0.0 };
        let steps = match &process {
            Process::Discrete(s) => 50.min(s.len()),
            Process::Sde(_) | Process::Flow => 50,
        };
        Ok(Spec {
            method,
            grid: method.default_grid(&process),
            steps,
            process: Walked::of(&process),
            strength: 1.0,
            thin: 1,
        })
    }

    /// Refuses a text-conditioned run where `what` gives the network no prompts (training on captions and
    /// likelihoods under a prompt are not built yet).
    pub fn refuse_text(&self, what: &str) -> Result<()> {
        match &self.text {
            Some(_) => Err(Error::Config(format!(
                "{what} does not take text-conditioned runs yet (sample, eval and the edits but restore do, with \
                 --prompt)"
            ))),
            None => Ok(()),
        }
    }

    /// Checks everything that can be checked before training starts.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::Config(format!(
                "format {} is not supported (this diffuse reads {FORMAT})",
                self.format
            )));
        }
        self.conditioning()?;
        let context = match &self.net {
            crate::nn::NetConfig::Unet(u) => u.context_dim,
            _ => None,
        };
        if context.is_some() != self.text.is_some() {
            return Err(Error::Config(
                "a text-conditioned UNet (context_dim) and a text encoder (text) come together".into(),
            ));
        }
        self.objective.validate(self.prediction)?;
        let discrete = self.objective == Objective::Diffusion && self.sde.is_none();
        if self.schedule.zero_terminal_snr && !(discrete && self.prediction != Prediction::Eps) {
            return Err(Error::Config(
                "a zero-terminal-SNR schedule is for discrete diffusion models predicting v or x0 \
                 (ε says nothing about x₀ at pure noise)"
                    .into(),
            ));
        }
        if let Some(spec) = &self.sampler {
            spec.plan(&self.schedule.build()?)
                .map_err(|e| Error::Config(format!("the run's default sampler: {e}")))?;
        }
        if let Some(r) = self.clip_sample
            && !(r >= 0.0 && r.is_finite())
        {
            return Err(Error::Config(format!(
                "clip_sample must be 0 (off) or a positive range, got {r}"
            )));
        }
        if let Some(g) = self.train.min_snr_gamma
            && !(g > 0.0 && g.is_finite() && self.objective == Objective::Diffusion)
        {
            return Err(Error::Config(format!(
                "min-SNR γ must be positive and is for the diffusion objective, got {g} with {}",
                self.objective.name()
            )));
        }
        self.net.validate()?;
        let t = &self.train;
        if self.net.shape() != (self.channels, self.height, self.width) {
            return Err(Error::Config(
                "the network's input shape differs from the data's".into(),
            ));
        }
        if t.batch_size == 0 || t.steps == 0 {
            return Err(Error::Config("steps and batch size must be positive".into()));
        }
        if let Some(k) = self.net.num_classes()
            && (k < 2 || k != self.class_names.len())
        {
            return Err(Error::Config(format!(
                "a conditional model needs its data's classes: {k} classes in the network, {} names",
                self.class_names.len()
            )));
        }
        if !(0.0..1.0).contains(&t.label_dropout) {
            return Err(Error::Config(format!(
                "label dropout must be in [0, 1), got {}",
                t.label_dropout
            )));
        }
        let sane = t.lr > 0.0
            && t.lr.is_finite()
            && (0.0..1.0).contains(&t.ema_decay)
            && t.grad_clip >= 0.0
            && t.weight_decay >= 0.0;
        if !sane {
            return Err(Error::Config(format!(
                "need lr > 0, 0 <= ema decay < 1, grad clip >= 0, weight decay >= 0 (got {}, {}, {}, {})",
                t.lr, t.ema_decay, t.grad_clip, t.weight_decay
            )));
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<RunConfig> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Config(format!("{} is not a run: no {CONFIG_FILE}", dir.display())),
            _ => Error::io(&path, e),
        })?;
        let cfg: RunConfig =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("config serialises");
        crate::atomic::write(&dir.join(CONFIG_FILE), text.as_bytes())
    }
}

/// Which weights to sample with: the exponential moving average of the weights (`ema`, usually the better
/// sampler) or the raw optimised ones (`raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    Ema,
    Raw,
}
crate::names::named!(Weights, "weights", { Ema => "ema", Raw => "raw" });

/// A trained model ready to sample.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub schedule: NoiseSchedule,
    pub cond: LevelInput,
    pub net: Net,
    pub step: usize,
    /// Latent runs: the VAE that decodes samples.
    pub latent: Option<LatentSpace>,
    /// Text-conditioned runs: the encoder of prompts.
    pub text: Option<TextEncoder>,
}

impl LoadedRun {
    /// `method` over `steps` on the run's own process, or VP for a sampler that needs an SDE where the run has
    /// none; the sampler's default grid.
    pub fn plan(&self, method: Method, steps: usize) -> Result<Plan> {
        let process = match self.config.process()? {
            Process::Discrete(_) | Process::Flow if method.needs_sde() => Process::Sde(Sde::vp()),
            p => p,
        };
        Plan::new(method, process, steps)
    }

    /// The run's default sampler ([`RunConfig::default_sampler`]) as a plan.
    pub fn default_plan(&self) -> Result<Plan> {
        self.config.default_sampler()?.plan(&self.schedule)
    }

    /// The run's denoiser, by its config's policy ([`RunConfig::denoiser`]).
    pub fn denoiser(&self, guidance: Guidance) -> NetDenoiser<'_> {
        self.config.denoiser(&self.net, &self.cond, guidance)
    }

    /// The context of a text-conditioned run: each prompt's encoding, and the null one of classifier-free
    /// guidance (`negative`'s; the empty prompt's by default).
    pub fn encode_prompts(&self, prompts: &[&str], negative: &str) -> Result<Context> {
        self.text
            .as_ref()
            .ok_or_else(|| Error::Invalid("prompts need a text-conditioned run".into()))?
            .context(prompts, negative)
    }

    /// `n` samples of the network's space as images: decoded by the VAE for latent runs, as they are
    /// otherwise.
    pub fn to_images(&self, samples: Vec<f32>, n: usize) -> Vec<f32> {
        match &self.latent {
            Some(space) => space.decode(&samples, n),
            None => samples,
        }
    }
}

/// The checkpoint metadata key of an imported model: where it came from.
pub const IMPORTED_FROM: &str = "imported_from";

pub fn checkpoint_step(contents: &safetensors_io::Contents, path: &Path) -> Result<usize> {
    contents
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::checkpoint(path, "no training step in its metadata"))
}

/// Loads a run's config and weights for inference.
pub fn load(dir: &Path, weights: Weights, device: &Device) -> Result<LoadedRun> {
    let config = RunConfig::read(dir)?;
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Err(Error::checkpoint(
            &path,
            "missing: the run has not written a checkpoint yet",
        ));
    }
    let contents = safetensors_io::read(&path)?;
    let group = match weights {
        Weights::Ema => "ema",
        Weights::Raw => "model",
    };
    // An imported model has one set of weights, kept as the raw ones.
    let imported = contents.metadata.contains_key(IMPORTED_FROM);
    let tensors = contents
        .groups
        .get(group)
        .or_else(|| imported.then(|| contents.groups.get("model")).flatten())
        .ok_or_else(|| Error::checkpoint(&path, format!("holds no '{group}' weights")))?;
    let net = safetensors_io::load(config.net.init(device)?, tensors, false, &path)?;
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        schedule: config.schedule.build()?,
        cond: config.conditioning()?,
        step: checkpoint_step(&contents, &path)?,
        latent: config.latent_space(dir)?,
        text: match &config.text {
            Some(t) => {
                let text = t.load(dir, device)?;
                let want = config.net.context_dim();
                if want != Some(text.width()) {
                    return Err(Error::Config(format!(
                        "{}: the text encoder's width is {}, the UNet's context {want:?}",
                        dir.display(),
                        text.width()
                    )));
                }
                Some(text)
            }
            None => None,
        },
        config,
        net,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_math::Sde;

    /// `diffuse train`'s defaults: flow matching with its learning rate and sampler for images, and with uniform
    /// times and Fourier features for points; `for_data` stays DDPM.
    #[test]
    fn recommended_defaults_are_flow_for_images_and_points() {
        let spec = DataSpec::Digits;
        let data = spec.load(crate::data::Split::Train).unwrap();
        let cfg = RunConfig::recommended(&spec, &data);
        cfg.validate().unwrap();
        assert!(matches!(cfg.objective, Objective::Flow { .. }) && cfg.train.lr == 1e-3);
        let plan = cfg
            .default_sampler()
            .unwrap()
            .plan(&cfg.schedule.build().unwrap())
            .unwrap();
        assert_eq!((plan.method().name().as_str(), plan.steps()), ("flow-heun", 18));
        let classic = RunConfig::for_data(&spec, &data);
        assert_eq!(
            (classic.objective, classic.train.lr, classic.sampler),
            (Objective::Diffusion, 3e-4, None)
        );
        let points: DataSpec = "points:circle".parse().unwrap();
        let cloud = points.load(crate::data::Split::Train).unwrap();
        let cfg = RunConfig::recommended(&points, &cloud);
        cfg.validate().unwrap();
        let times = crate::denoise::FlowTimes::Uniform;
        assert_eq!((cfg.objective, cfg.train.lr), (Objective::Flow { times }, 1e-3));
        assert!(matches!(&cfg.net, NetConfig::Mlp(m) if m.fourier == POINT_FOURIER));
        assert_eq!(RunConfig::for_data(&points, &cloud).objective, Objective::Diffusion);
    }

    /// A config.json in the format every earlier diffuse wrote (names as strings, a relative data path): it
    /// reads into the typed fields and writes back byte-for-byte the same JSON value.
    #[test]
    fn configs_of_the_stored_format_read_typed_and_write_back_unchanged() {
        let text = include_str!("../tests/fixtures/config-format1.json");
        let cfg: RunConfig = serde_json::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.data, DataSpec::Folder("data/sprites".into()));
        assert_eq!(cfg.prediction, Prediction::V);
        assert_eq!(cfg.schedule.kind, BetaSchedule::Cosine);
        assert_eq!(cfg.sde, Some(Sde::ve()));
        let back: serde_json::Value = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(text).unwrap());
        // EDM's VE range is stored with its parameters and read back.
        let edm = RunConfig {
            sde: Some("ve:0.002,80".parse().unwrap()),
            ..cfg.clone()
        };
        let json = serde_json::to_string(&edm).unwrap();
        assert!(json.contains(r#""sde":"ve:0.002,80""#), "{json}");
        assert_eq!(serde_json::from_str::<RunConfig>(&json).unwrap(), edm);
        // A zero-terminal-SNR schedule needs a prediction that is defined at pure noise.
        let mut z = cfg.clone();
        z.sde = None;
        z.schedule.zero_terminal_snr = true;
        z.validate().unwrap();
        z.prediction = Prediction::Eps;
        assert!(z.validate().unwrap_err().to_string().contains("zero-terminal-SNR"));
        // A misspelt name is an error that names it.
        let bad = text.replace(r#""prediction": "v""#, r#""prediction": "velocity""#);
        let e = serde_json::from_str::<RunConfig>(&bad).unwrap_err().to_string();
        assert!(e.contains("velocity"), "{e}");
    }
}
