use super::parse_list;
use super::precision_args::PrecisionArg;
use super::schedule_flags::ScheduleFlags;
use anyhow::{Context, bail};
use burn::module::Module;
use clap::{Args, Subcommand};
use diffuse::classifier;
use diffuse::data::{DataSpec, Dataset, Split};
use diffuse::denoise::FlowTimes;
use diffuse::nn::NetConfig;
use diffuse::objective::Objective;
use diffuse::run::{self, CHECKPOINT_FILE, CONFIG_FILE, RunConfig};
use diffuse::train::{self, Options};
use diffuse::vae::LatentSpace;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  diffuse train --data digits --out runs/digits --seed 0\n  \
diffuse train --data mnist:../shared/data/mnist --out runs/mnist --steps 20000 --batch-size 64\n  \
diffuse train --out runs/digits --resume --steps 8000   # continue a run, or extend it\n  \
diffuse train --data emoji:../shared/data/emoji-noto --vae runs/emoji-vae --out runs/emoji-latent   # latent diffusion"
)]
pub struct TrainArgs {
    /// Training data: digits (embedded), mnist[:DIR], fashion-mnist[:DIR], idx:IMAGES[,LABELS], folder:DIR,
    /// emoji[:DIR][@BG] (BG: white, black, grey or RRGGBB), points:circle|sphere|torus|letter.
    #[arg(long, default_value = "digits")]
    data: String,
    /// Which part of the data to train on.
    #[arg(long, default_value = "train", value_parser = super::one_of::<Split>(Split::NAMES))]
    split: Split,
    /// Run directory: config.json, checkpoint.safetensors, loss.csv, loss.png, samples.png.
    #[arg(long)]
    out: PathBuf,
    /// Seed for initialisation and every training draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimiser steps (default: 800 for images up to 16×16, about 2 minutes on 2 cores; 3000 for points;
    /// 20000 otherwise).
    #[arg(long)]
    steps: Option<usize>,
    /// Train for at most this many seconds of wall-clock time (stopping after the step in progress), then
    /// write the final checkpoint and samples; the steps made become the run's step count. Without --steps
    /// the step count is unlimited. With --resume: this many more seconds.
    #[arg(long)]
    time_budget: Option<f64>,
    /// Continue the run in --out from its last checkpoint (its config.json decides everything but --steps
    /// and --time-budget).
    #[arg(long)]
    resume: bool,
    /// Images (or points) per step (default: 64 images, 256 points).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak AdamW learning rate (default: 1e-3 for flow matching, 3e-4 otherwise).
    #[arg(long)]
    lr: Option<f64>,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Clip the global gradient norm to this (0: off).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    /// EMA decay of the sampling weights.
    #[arg(long, default_value_t = 0.995)]
    ema_decay: f64,
    /// What the network is trained to do: flow (flow matching, velocity target; the default for images,
    /// chosen by measurement, docs/guide/objectives.md), diffusion (DDPM's ε/x₀/v regression, --prediction;
    /// the default for points, and implied by --prediction, --sde, --min-snr-gamma, --zero-terminal-snr), edm
    /// (Karras et al. 2022 preconditioning, log-normal σ).
    #[arg(long)]
    objective: Option<String>,
    /// What a diffusion objective's network predicts: eps (the default) | x0 | v.
    #[arg(long)]
    prediction: Option<String>,
    /// EDM: the data's standard deviation σ_data (default 0.5).
    #[arg(long)]
    sigma_data: Option<f64>,
    /// EDM: mean and standard deviation of ln σ in training (default -1.2 and 1.2; EDM2: -0.4 and 1.0).
    #[arg(long, num_args = 2, value_names = ["P_MEAN", "P_STD"], allow_negative_numbers = true)]
    p_mean_std: Option<Vec<f64>>,
    /// Flow matching: training times uniform, or logit-normal with this mean and std (default 0 1, SD3's).
    #[arg(long, num_args = 1..=2, value_names = ["uniform|MEAN", "STD"], allow_negative_numbers = true)]
    flow_times: Option<Vec<String>>,
    /// Diffusion objectives: weigh the loss by Min-SNR-γ (Hang et al. 2023 use γ = 5).
    #[arg(long)]
    min_snr_gamma: Option<f64>,
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Train a continuous-time score model on this SDE (vp, subvp, ve) instead of a discrete DDPM:
    /// t ~ U(1e-5, 1), the network told 999·t (the ε loss is denoising score matching with weight σ²).
    #[arg(long)]
    sde: Option<String>,
    /// UNet channels at the top level (default depends on image size).
    #[arg(long)]
    base_channels: Option<usize>,
    /// Channel multiplier per level, e.g. 1,2,2.
    #[arg(long)]
    channel_mults: Option<String>,
    /// ResBlocks per level.
    #[arg(long)]
    blocks_per_level: Option<usize>,
    /// Resolutions (in pixels) with self-attention, e.g. 4 or 14,7 (empty: middle block only).
    #[arg(long)]
    attention: Option<String>,
    /// Attention heads.
    #[arg(long)]
    heads: Option<usize>,
    /// Train a class-conditional model on the data's labels (for classifier-free guidance).
    #[arg(long)]
    conditional: bool,
    /// Probability that a label is replaced by the null class (conditional models), or a caption by the empty one
    /// (--text), during training.
    #[arg(long, default_value_t = 0.1)]
    label_dropout: f64,
    /// Hidden width of the MLP (point data).
    #[arg(long)]
    hidden: Option<usize>,
    /// Hidden layers of the MLP (point data).
    #[arg(long)]
    layers: Option<usize>,
    /// Octaves K of Fourier features of the points' coordinates (sin, cos of 2^k·π·x, k < K), for thin
    /// structures; 0 (the default) feeds the coordinates alone.
    #[arg(long)]
    fourier: Option<usize>,
    /// Dropout inside ResBlocks.
    #[arg(long)]
    dropout: Option<f64>,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Write a sample grid (samples/step-N.png) every N steps (and at the end); 0: only at the end.
    #[arg(long, default_value_t = 400)]
    sample_every: usize,
    /// Text-to-image: condition on captions through this text encoder (a `diffuse text train` folder, copied into
    /// the run and frozen); captions are dropped to the empty one with --label-dropout's probability.
    #[arg(long, value_name = "DIR")]
    text: Option<PathBuf>,
    /// Latent diffusion: train on the scaled latents of this VAE (a `diffuse vae train` directory, copied into
    /// the run); samples are decoded to images.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Recompute memory-bound activations in the backward pass instead of keeping them: about half the
    /// peak memory for a few percent more time (same losses).
    #[arg(long)]
    gradient_checkpointing: bool,
    #[command(flatten)]
    precision: PrecisionArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The step count of a run trained to a time budget without --steps.
const UNLIMITED: usize = 100_000_000;

fn new_config(a: &TrainArgs, data: &Dataset) -> anyhow::Result<RunConfig> {
    let list = |s: &Option<String>, name: &str| -> anyhow::Result<Option<Vec<usize>>> {
        s.as_deref()
            .map(|v| parse_list::<usize>(v).map_err(|e| anyhow::anyhow!("--{name}: {e}")))
            .transpose()
    };
    // The library's defaults for this data, then every flag given.
    let mut cfg = RunConfig::recommended(&a.data.parse::<DataSpec>()?.absolute()?, data);
    match &mut cfg.net {
        NetConfig::Unet(unet) => {
            unet.base_channels = a.base_channels.unwrap_or(unet.base_channels);
            unet.channel_mults = list(&a.channel_mults, "channel-mults")?.unwrap_or(unet.channel_mults.clone());
            unet.blocks_per_level = a.blocks_per_level.unwrap_or(unet.blocks_per_level);
            unet.attention_resolutions = list(&a.attention, "attention")?.unwrap_or(unet.attention_resolutions.clone());
            unet.heads = a.heads.unwrap_or(unet.heads);
            unet.dropout = a.dropout.unwrap_or(unet.dropout);
        }
        NetConfig::Mlp(_) if a.conditional => bail!("--conditional is for images; point data has no labels"),
        NetConfig::Mlp(mlp) => {
            mlp.hidden = a.hidden.unwrap_or(mlp.hidden);
            mlp.layers = a.layers.unwrap_or(mlp.layers);
            mlp.fourier = a.fourier.unwrap_or(mlp.fourier);
        }
    }
    if a.conditional {
        if data.labels.is_none() || data.num_classes() < 2 {
            bail!(
                "--conditional needs labelled data with at least two classes; {} has none",
                data.name
            );
        }
        cfg = cfg.conditional(a.label_dropout);
    }
    if a.text.is_some() {
        if a.conditional {
            bail!("--text and --conditional: a run is conditioned on captions or on classes, not both");
        }
        if data.captions.is_none() {
            bail!("--text needs captioned data (emoji); {} has no captions", data.name);
        }
        cfg.train.label_dropout = a.label_dropout;
    }
    cfg.prediction = a.prediction.as_deref().unwrap_or("eps").parse()?;
    cfg.schedule = a.schedule.config()?;
    cfg.sde = a.sde.as_deref().map(str::parse).transpose()?;
    let diffusion_flags =
        a.prediction.is_some() || a.sde.is_some() || a.min_snr_gamma.is_some() || a.schedule.zero_terminal_snr;
    let mut objective = match (&a.objective, diffusion_flags) {
        (Some(name), _) => Objective::from_name(name)?,
        (None, true) => Objective::Diffusion,
        (None, false) => cfg.objective,
    };
    match &mut objective {
        Objective::Edm {
            sigma_data,
            p_mean,
            p_std,
            ..
        } => {
            *sigma_data = a.sigma_data.unwrap_or(*sigma_data);
            if let Some(v) = &a.p_mean_std {
                (*p_mean, *p_std) = (v[0], v[1]);
            }
        }
        Objective::Flow { times } => {
            if let Some(v) = &a.flow_times {
                *times = match v.as_slice() {
                    [u] if u == "uniform" => FlowTimes::Uniform,
                    [m, s] => FlowTimes::LogitNormal {
                        mean: m.parse().context("--flow-times MEAN")?,
                        std: s.parse().context("--flow-times STD")?,
                    },
                    _ => bail!("--flow-times takes 'uniform' or MEAN STD"),
                };
            }
        }
        Objective::Diffusion => {}
    }
    let given = [
        (
            "--sigma-data",
            a.sigma_data.is_some(),
            matches!(objective, Objective::Edm { .. }),
        ),
        (
            "--p-mean-std",
            a.p_mean_std.is_some(),
            matches!(objective, Objective::Edm { .. }),
        ),
        (
            "--flow-times",
            a.flow_times.is_some(),
            matches!(objective, Objective::Flow { .. }),
        ),
        (
            "--min-snr-gamma",
            a.min_snr_gamma.is_some(),
            objective == Objective::Diffusion,
        ),
        ("--sde", a.sde.is_some(), objective == Objective::Diffusion),
    ];
    if let Some((flag, ..)) = given.iter().find(|(_, given, applies)| *given && !applies) {
        bail!("{flag} does not apply to the {} objective", objective.name());
    }
    cfg = cfg.with_objective(objective);
    cfg.train.min_snr_gamma = a.min_snr_gamma;
    if let Some(b) = a.time_budget
        && !(b > 0.0 && b.is_finite())
    {
        bail!("--time-budget must be a positive number of seconds, got {b}");
    }
    let t = &mut cfg.train;
    t.steps = a
        .steps
        .unwrap_or(if a.time_budget.is_some() { UNLIMITED } else { t.steps });
    t.batch_size = a.batch_size.unwrap_or(t.batch_size);
    t.lr = a.lr.unwrap_or(RunConfig::default_lr(&objective));
    t.warmup_steps = a.warmup;
    t.weight_decay = a.weight_decay;
    t.grad_clip = a.grad_clip;
    t.ema_decay = a.ema_decay;
    t.seed = a.seed;
    t.checkpoint_every = a.checkpoint_every;
    t.sample_every = a.sample_every;
    cfg.validate()?;
    Ok(cfg)
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let ckpt = a.out.join(CHECKPOINT_FILE);
    let (cfg, data) = if a.resume {
        let mut cfg = RunConfig::read(&a.out).context("--resume needs an existing run in --out")?;
        if let Some(steps) = a.steps {
            cfg.train.steps = steps;
        } else if a.time_budget.is_some() {
            cfg.train.steps = UNLIMITED;
        } else if cfg.train.steps == UNLIMITED {
            // A budgeted run killed before its budget ran out: without a limit it would train for ever.
            bail!(
                "{} was trained to a time budget; resume it with --time-budget SECONDS or --steps N",
                a.out.display()
            );
        }
        let data = cfg.data.load(a.split)?;
        let data = match cfg.latent_space(&a.out)? {
            Some(space) => space.encode(&data)?,
            None => data,
        };
        (cfg, data)
    } else {
        if ckpt.exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                a.out.display()
            );
        }
        if a.out.join(CONFIG_FILE).exists() {
            // A run stopped before its first checkpoint: nothing can be resumed, so it starts afresh.
            eprintln!(
                "{} holds a run that stopped before its first checkpoint; starting it afresh",
                a.out.display()
            );
        }
        let data = Dataset::load(&a.data, a.split)?;
        match &a.vae {
            Some(dir) => {
                let space = LatentSpace::load(dir)?;
                let latents = space.encode(&data)?;
                let mut cfg = new_config(&a, &latents)?;
                run::attach_latent(&mut cfg, &space, dir, &a.out)?;
                (cfg, latents)
            }
            None => (new_config(&a, &data)?, data),
        }
    };
    let mut cfg = cfg;
    match (&a.text, a.resume) {
        (Some(_), true) => bail!("--text is for a new run; a resumed run keeps the encoder in its text/"),
        (Some(dir), false) => {
            run::attach_text(&mut cfg, dir, &a.out)?;
            cfg.validate()?;
        }
        (None, _) => {}
    }
    let net_params = cfg.net.init(&diffuse::device::device())?.num_params();
    eprintln!(
        "training {} ({} items {}×{}×{}), {} with {net_params} parameters, {} objective, {} of batch {}",
        cfg.data,
        data.len(),
        cfg.channels,
        cfg.height,
        cfg.width,
        cfg.net.describe(),
        cfg.objective.name(),
        match (a.time_budget, cfg.train.steps) {
            (Some(b), UNLIMITED) => format!("steps for {b} s"),
            (Some(b), k) => format!("{k} steps or {b} s, whichever ends first,"),
            (None, k) => format!("{k} steps"),
        },
        cfg.train.batch_size
    );
    let s = train::train(
        &cfg,
        &data,
        &a.out,
        &Options {
            resume: a.resume,
            progress: !a.quiet,
            stop_after: None,
            gradient_checkpointing: a.gradient_checkpointing,
            precision: a.precision.resolve(),
            time_budget: a.time_budget,
        },
    )?;
    let done = s.steps - s.resumed_from.unwrap_or(0);
    if s.out_of_time {
        println!("the time budget is spent: the run ends at step {}", s.steps);
    }
    println!(
        "trained {} steps{} in {:.1} s ({:.2} steps/s; {:.1} s of it in optimiser steps, {:.3} s each), final loss {:.4}; run in {}",
        done,
        s.resumed_from.map(|k| format!(" (resumed at {k})")).unwrap_or_default(),
        s.seconds,
        done as f64 / s.seconds.max(1e-9),
        s.step_seconds,
        s.step_seconds / done.max(1) as f64,
        s.final_loss,
        a.out.display()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum ClassifierCommand {
    /// Train the evaluation classifier on a labelled data set.
    Train(ClassifierTrainArgs),
    /// Classify images (a folder of PNGs or a data set) and report confidence and class coverage.
    Score(ClassifierScoreArgs),
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  diffuse classifier train --data digits --out runs/quality/classifier\n  \
diffuse classifier train --data digits --synthetic runs/digits-cond --ratio 4 --out runs/augment/x4\n\n\
With --synthetic, a class-conditional run of the same images and classes draws --ratio samples per real image \
(evenly over the classes, with its default sampler) that join the training set, or replace it with \
--synthetic-only; the held-out accuracy is on real images either way (scripts/augment.sh measures the mixes)."
)]
pub struct ClassifierTrainArgs {
    /// Labelled training data (see `diffuse train --help`).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Output directory for the classifier.
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps (batch 64).
    #[arg(long, default_value_t = classifier::DEFAULT_STEPS)]
    steps: usize,
    /// Seed for initialisation and batches (and the synthetic draws).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A class-conditional run whose samples augment the training set.
    #[arg(long, value_name = "RUN")]
    synthetic: Option<PathBuf>,
    /// Synthetic images per real training image.
    #[arg(long, default_value_t = 1.0, requires = "synthetic")]
    ratio: f64,
    /// Train on the synthetic images alone.
    #[arg(long, requires = "synthetic")]
    synthetic_only: bool,
    /// Classifier-free guidance of the synthetic draws (1: plain conditional).
    #[arg(long, default_value_t = 1.0, requires = "synthetic")]
    guidance: f64,
    /// Train on the first K training images of each class only (a small labelled set; --ratio counts per
    /// image of it).
    #[arg(long, value_name = "K")]
    per_class: Option<usize>,
}

#[derive(Args)]
#[command(after_help = "Example:\n  diffuse classifier score --classifier runs/digits-clf --images out --json")]
pub struct ClassifierScoreArgs {
    /// A directory written by `diffuse classifier train`.
    #[arg(long)]
    classifier: PathBuf,
    /// A folder of PNG images to classify.
    #[arg(long, conflicts_with = "data")]
    images: Option<PathBuf>,
    /// Or a data set (its held-out split unless --split says otherwise).
    #[arg(long)]
    data: Option<String>,
    /// Which part of --data to classify.
    #[arg(long, default_value = "test", value_parser = super::one_of::<Split>(Split::NAMES))]
    split: Split,
    /// The class every image should be (by index or name): reports accuracy against it.
    #[arg(long)]
    class: Option<String>,
    /// Real images to compare with: the classifier-feature FID of the scored set against this data set's
    /// held-out split (e.g. digits).
    #[arg(long)]
    reference: Option<String>,
    /// A prediction counts as confident at or above this probability.
    #[arg(long, default_value_t = 0.9)]
    threshold: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Class folders are labelled by their names in the classifier's classes (not by their sorted position), so
/// a folder holding only some classes scores correctly.
fn label_by_name(images: &mut Dataset, names: &[String]) -> anyhow::Result<()> {
    let Some(labels) = images.labels.as_mut() else {
        return Ok(());
    };
    let index: Vec<u32> = images
        .class_names
        .iter()
        .map(|folder| {
            names.iter().position(|n| n == folder).map(|k| k as u32).ok_or_else(|| {
                anyhow::anyhow!(
                    "class folder '{folder}' is not a class of the classifier (classes: {})",
                    names.join(", ")
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    labels.iter_mut().for_each(|l| *l = index[*l as usize]);
    images.class_names = names.to_vec();
    Ok(())
}

pub fn classifier(c: ClassifierCommand) -> anyhow::Result<()> {
    match c {
        ClassifierCommand::Train(a) => {
            let mut real = Dataset::load(&a.data, Split::Train)?;
            if let Some(k) = a.per_class {
                real = diffuse::augment::per_class_subset(&real, k)?;
            }
            let test = Dataset::load(&a.data, Split::Test)?;
            let run = match &a.synthetic {
                Some(dir) => Some(diffuse::run::load(
                    dir,
                    diffuse::run::Weights::Ema,
                    &diffuse::device::device(),
                )?),
                None => None,
            };
            let mix = diffuse::augment::Mix {
                ratio: if run.is_some() { a.ratio } else { 0.0 },
                synthetic_only: a.synthetic_only,
                guidance: a.guidance,
                seed: a.seed,
                batch_size: 256,
            };
            let train = diffuse::augment::training_set(&real, run.as_ref(), &mix)?;
            let composition = match (&run, a.synthetic_only) {
                (None, _) => format!("{} real images", real.len()),
                (Some(_), true) => format!("{} synthetic images", train.len()),
                (Some(_), false) => format!("{} real + {} synthetic images", real.len(), train.len() - real.len()),
            };
            let acc = classifier::train(&train, &test, &a.out, a.steps, a.seed)?;
            println!(
                "classifier trained on {composition}; held-out accuracy {:.2}% ({} real images); saved in {}",
                acc * 100.0,
                test.len(),
                a.out.display()
            );
            Ok(())
        }
        ClassifierCommand::Score(a) => {
            let clf = classifier::Classifier::load(&a.classifier)?;
            let mut images = match (&a.images, &a.data) {
                (Some(dir), None) => {
                    let mut images = Dataset::load(&format!("folder:{}", dir.display()), Split::All)?;
                    label_by_name(&mut images, &clf.meta.class_names)?;
                    images
                }
                (None, Some(spec)) => Dataset::load(spec, a.split)?,
                _ => bail!("give --images DIR or --data SPEC"),
            };
            if let Some(spec) = &a.class {
                let k = super::class_index(spec, &clf.meta.class_names)?;
                images.labels = Some(vec![k as u32; images.len()]);
            }
            let reference = a
                .reference
                .as_deref()
                .map(|s| Dataset::load(s, Split::Test))
                .transpose()?;
            let r = clf.score(&images, a.threshold, reference.as_ref())?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{r}");
            }
            Ok(())
        }
    }
}
