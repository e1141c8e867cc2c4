//! Whole diffusers pipeline folders (`DDPMPipeline`, `DDIMPipeline`: `model_index.json`, `unet/`,
//! `scheduler/`) to and from run directories, so that every sampler, edit and metric of diffuse applies to
//! published models, and a model trained here loads in Python. `StableDiffusionPipeline` folders (SD 1.x: also
//! `vae/`, `text_encoder/`, `tokenizer/`) import as latent runs that take prompts.

use super::autoencoder_kl::AutoencoderKlConfig;
use super::scheduler::{self, SchedulerConfig};
use super::unet::{self as names, UNet2DModelConfig};
use super::{CONFIG, WEIGHTS};
use crate::data::DataSpec;
use crate::nn::clip::ClipText;
use crate::nn::{Net, NetConfig};
use crate::run::{self, LatentConfig, RunConfig, TextEncoderConfig, TrainConfig, Weights};
use crate::safetensors_io::{self, Contents};
use crate::sample::{Method, Spec, Walked};
use crate::{Error, Result};
use burn::module::Module;
use burn::prelude::Device;
use diffuse_math::Grid;
use std::path::{Path, PathBuf};

/// The run config of an exported run, kept beside the diffusers files: what diffusers has no key for (class
/// names, the null class, the default sampler) comes back from it on import.
pub const RUN_FILE: &str = "diffuse_run.json";
/// The diffusers version whose file layout export writes and the parity fixtures were made with.
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// What `import` may be told beyond the folder.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Image size, where the config has no `sample_size` or another size is wanted (the network is
    /// convolutional; attention stays at the same levels).
    pub size: Option<(usize, usize)>,
    /// A scheduler_config.json for a bare `unet/` folder (default: diffusers' DDPMScheduler defaults).
    pub scheduler: Option<PathBuf>,
    /// The data `eval` measures against.
    pub data: Option<DataSpec>,
    /// Names of a conditional model's classes (default: their indices).
    pub class_names: Option<Vec<String>>,
}

/// What `import` made.
#[derive(Debug)]
pub struct Imported {
    pub config: RunConfig,
    pub params: usize,
    /// The scheduler config's notes and the defaults that were assumed.
    pub notes: Vec<String>,
}

/// The pipelines whose folders are a UNet2DModel and a scheduler in pixel space.
const PIPELINES: [&str; 2] = ["DDPMPipeline", "DDIMPipeline"];
/// Stable Diffusion 1.x: a UNet2DConditionModel on the latents of `vae/`, attending to `text_encoder/`.
const TEXT_PIPELINE: &str = "StableDiffusionPipeline";
/// A text pipeline's folders besides `unet/` and `scheduler/`.
const VAE: &str = "vae";
const TEXT_ENCODER: &str = "text_encoder";
const TOKENIZER: &str = "tokenizer";

/// Where a folder's parts are.
struct Folder {
    unet: PathBuf,
    scheduler: Option<PathBuf>,
    /// A Stable Diffusion folder (with `vae/`, `text_encoder/` and `tokenizer/`).
    text: bool,
}

/// A pipeline folder (`unet/`, `scheduler/`, and Stable Diffusion's other parts), or a bare UNet folder. A
/// pipeline of another kind is refused by name.
fn layout(dir: &Path) -> Result<Folder> {
    if !dir.join("unet").join(CONFIG).exists() {
        return Ok(Folder {
            unet: dir.to_path_buf(),
            scheduler: None,
            text: false,
        });
    }
    let index = dir.join("model_index.json");
    let class = match index.exists() {
        true => crate::atomic::read_json::<serde_json::Value>(&index)?["_class_name"].clone(),
        false => serde_json::Value::Null,
    };
    let supported = || format!("{}, {TEXT_PIPELINE}", PIPELINES.join(", "));
    if let Some(c) = class.as_str().filter(|c| !PIPELINES.contains(c) && *c != TEXT_PIPELINE) {
        return Err(Error::Config(format!(
            "{}: _class_name {c} is not supported ({})",
            index.display(),
            supported()
        )));
    }
    let text = class == TEXT_PIPELINE || dir.join(TEXT_ENCODER).exists();
    if text {
        if let Some(d) = [VAE, TEXT_ENCODER, TOKENIZER].iter().find(|d| !dir.join(d).is_dir()) {
            return Err(Error::Config(format!(
                "{}: a {TEXT_PIPELINE} folder needs {d}/",
                dir.display()
            )));
        }
    } else if let Some(d) = [VAE, "vqvae"].iter().find(|d| dir.join(d).exists()) {
        return Err(Error::Config(format!(
            "{}: has {d}/ but no {TEXT_ENCODER}/; import takes pixel-space pipelines and Stable Diffusion ({})",
            dir.display(),
            supported()
        )));
    }
    Ok(Folder {
        unet: dir.join("unet"),
        scheduler: Some(dir.join("scheduler").join(scheduler::FILE)),
        text,
    })
}

/// The UNet's weights file: the f32 one, or the half-precision variant where only it is there.
fn weights_file(unet: &Path) -> Result<PathBuf> {
    let candidates = [WEIGHTS, "diffusion_pytorch_model.fp16.safetensors"];
    if let Some(found) = candidates.iter().map(|f| unet.join(f)).find(|p| p.exists()) {
        return Ok(found);
    }
    let why = if unet.join("diffusion_pytorch_model.bin").exists() {
        "holds only diffusion_pytorch_model.bin (PyTorch pickle), which diffuse does not read: save it with \
         safe_serialization=True"
    } else {
        "has no diffusion_pytorch_model.safetensors"
    };
    Err(Error::checkpoint(unet, why))
}

/// Reads a diffusers folder into a run's config and network.
pub fn read(dir: &Path, opts: &ImportOptions, device: &Device) -> Result<(Imported, Net)> {
    let folder = layout(dir)?;
    let (unet_dir, sched_file) = (folder.unet.clone(), folder.scheduler.clone());
    let config_path = unet_dir.join(CONFIG);
    if !config_path.exists() {
        return Err(Error::Config(format!(
            "{}: not a diffusers pipeline or UNet folder (no unet/{CONFIG} or {CONFIG})",
            dir.display()
        )));
    }
    let ucfg = UNet2DModelConfig::read(&config_path)?;
    if ucfg.is_text() != folder.text {
        return Err(Error::Config(format!(
            "{}: a {} in a {} folder",
            config_path.display(),
            if ucfg.is_text() {
                "UNet2DConditionModel"
            } else {
                "UNet2DModel"
            },
            if folder.text {
                TEXT_PIPELINE
            } else {
                "pixel-space pipeline"
            },
        )));
    }
    // A text pipeline's UNet works on the VAE's latents: --size names the images, sample_size the latents.
    let vae = folder
        .text
        .then(|| AutoencoderKlConfig::read(&dir.join(VAE)))
        .transpose()?;
    let factor = vae.as_ref().map_or(1, |v| v.factor());
    let given = match opts.size {
        Some((h, w)) if h % factor != 0 || w % factor != 0 => {
            return Err(Error::Config(format!(
                "--size {h}x{w}: the VAE makes latents of 1/{factor} the side, so the size must divide by {factor}"
            )));
        }
        other => other.map(|(h, w)| (h / factor, w / factor)),
    };
    let (height, width) = match (given, ucfg.sample_size()?) {
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => {
            return Err(Error::Config(format!(
                "{}: no sample_size; give the image size (--size HxW)",
                config_path.display()
            )));
        }
    };
    let mut net_cfg = ucfg
        .unet_config(height, width)
        .map_err(|e| Error::Config(format!("{}: {e}", config_path.display())))?;
    let mut notes = Vec::new();
    let sched = match opts.scheduler.clone().or(sched_file) {
        Some(path) if path.exists() => SchedulerConfig::read(&path)?
            .model_process()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        Some(path) if opts.scheduler.is_some() => return Err(Error::io(&path, std::io::ErrorKind::NotFound.into())),
        _ => {
            notes.push("no scheduler config: diffusers' DDPMScheduler defaults (linear β 1e-4 → 0.02 over 1000 steps, ε, clipped x̂₀)".into());
            serde_json::from_str::<SchedulerConfig>("{}")
                .expect("an empty config takes the defaults")
                .model_process()?
        }
    };
    notes.extend(sched.notes.iter().cloned());
    // A folder diffuse exported says what diffusers cannot: the null class and the class names.
    let ours: Option<RunConfig> = match dir.join(RUN_FILE) {
        p if p.exists() => Some(crate::atomic::read_json(&p)?),
        _ => None,
    };
    if let Some(NetConfig::Unet(u)) = ours.as_ref().map(|r| &r.net)
        && u.null_class
        && let (Some(k), Some(rows)) = (u.num_classes, net_cfg.num_classes)
        && rows == k + 1
    {
        net_cfg.num_classes = Some(k);
        net_cfg.null_class = true;
    }
    if folder.text {
        // Read now, so that a folder that cannot be used is refused before anything is written.
        let text = ClipText::load(&dir.join(TEXT_ENCODER), &dir.join(TOKENIZER), device)?;
        if Some(text.width()) != net_cfg.context_dim {
            return Err(Error::Config(format!(
                "{}: the text encoder's width is {}, the UNet's cross_attention_dim {:?}",
                dir.display(),
                text.width(),
                net_cfg.context_dim
            )));
        }
    }
    // The weights first: a file too large for memory is refused before the network is built.
    let weights = weights_file(&unet_dir)?;
    let theirs = super::read_weights(&weights)?;
    let net = net_cfg.init(device)?;
    let src = super::import(&safetensors_io::shapes(&net), &theirs, names::source, &weights)?;
    // Held once: the file's tensors go before the network takes the renamed ones.
    drop(theirs);
    let net = Net::UNet(safetensors_io::load(net, &src, false, &weights)?);
    let class_names = match (net_cfg.num_classes, &opts.class_names, &ours) {
        (None, _, _) => Vec::new(),
        (Some(k), Some(given), _) if given.len() != k => {
            return Err(Error::Config(format!(
                "{} class names for a model of {k} classes",
                given.len()
            )));
        }
        (Some(_), Some(given), _) => given.clone(),
        (Some(k), None, Some(r)) if r.class_names.len() == k => r.class_names.clone(),
        (Some(k), None, _) => (0..k).map(|i| i.to_string()).collect(),
    };
    let (spacing, offset) = (sched.spacing, sched.offset);
    let mut config = RunConfig {
        format: run::FORMAT,
        data: opts
            .data
            .clone()
            .or_else(|| ours.as_ref().map(|r| r.data.clone()))
            .unwrap_or_else(|| DataSpec::Folder(PathBuf::from("none (import --data, or eval --data)"))),
        channels: net_cfg.in_channels,
        height,
        width,
        class_names,
        prediction: sched.prediction,
        schedule: sched.schedule,
        sde: None,
        objective: crate::objective::Objective::Diffusion,
        net: NetConfig::Unet(net_cfg),
        // Not trained here: the settings a `diffuse train --resume` of it would start from.
        train: TrainConfig::new(1, 64),
        sampler: None,
        latent: None,
        clip_sample: match sched.clip {
            Some(1.0) => None,
            Some(r) => Some(r),
            None => Some(0.0),
        },
        text: None,
    }
    .with_objective(sched.objective);
    // The scheduler's own placement of DDIM's timesteps (diffusers' DDPM and DDIM schedulers lead by default).
    if config.sampler.is_none() {
        let method = Method::Ddim { eta: 0.0 };
        config.sampler = Some(Spec {
            method,
            grid: Grid::Timesteps { spacing, offset },
            steps: 50,
            process: Walked::of(&config.process()?),
            strength: 1.0,
            thin: 1,
        });
    }
    if let Some(r) = &ours
        && r.objective == config.objective
        && r.sampler.is_some()
    {
        config.sampler = r.sampler.clone();
    }
    if let Some(vae) = &vae {
        vae.vae_config(height * factor, width * factor)?;
        if vae.latent_channels != config.channels {
            return Err(Error::Config(format!(
                "{}: the VAE makes {} latent channels, the UNet takes {}",
                dir.display(),
                vae.latent_channels,
                config.channels
            )));
        }
        config.latent = Some(LatentConfig {
            vae: run::VAE_DIR.into(),
            scale: vae.scaling_factor,
            image: [vae.out_channels, height * factor, width * factor],
        });
        config.text = Some(TextEncoderConfig::Clip {
            encoder: TEXT_ENCODER.into(),
            tokenizer: TOKENIZER.into(),
        });
    }
    config.validate()?;
    let params = net.num_params();
    Ok((Imported { config, params, notes }, net))
}

/// Refuses to write into `out` where something is already there, so that nothing is overwritten.
fn fresh_dir(out: &Path) -> Result<()> {
    crate::atomic::require_empty_dir(out)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// `diffuse import --diffusers DIR --out RUN`: a run directory that `sample`, `edit` and `eval` take, and
/// `likelihood` for pixel runs (its checkpoint holds the one set of weights, as the raw ones, at step 0;
/// `--weights ema` reads them too).
pub fn import(dir: &Path, out: &Path, opts: &ImportOptions, device: &Device) -> Result<Imported> {
    // Checked first too: reading a Stable Diffusion folder takes a minute.
    crate::atomic::require_empty_dir(out)?;
    let existed = out.is_dir();
    let (imported, net) = read(dir, opts, device)?;
    fresh_dir(out)?;
    // The folder was empty or absent: on failure it is left so again.
    write_run(dir, out, &imported, &net).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(out);
        if existed {
            let _ = std::fs::create_dir(out);
        }
    })?;
    Ok(imported)
}

/// Writes an imported run into the fresh folder `out`: checkpoint and config, and a text pipeline's VAE, text
/// encoder and tokenizer.
fn write_run(dir: &Path, out: &Path, imported: &Imported, net: &Net) -> Result<()> {
    let cfg = &imported.config;
    if let Some(l) = &cfg.latent {
        let [_, h, w] = l.image;
        crate::vae::import(&dir.join(VAE), h, w, None, &out.join(&l.vae))?;
    }
    if let Some(TextEncoderConfig::Clip { encoder, tokenizer }) = &cfg.text {
        let files: [(&str, &[&str]); 2] = [
            (encoder, &["config.json", "model.safetensors"]),
            (
                tokenizer,
                &[
                    "tokenizer.json",
                    "vocab.json",
                    "merges.txt",
                    "tokenizer_config.json",
                    "special_tokens_map.json",
                ],
            ),
        ];
        for (sub, names) in files {
            std::fs::create_dir_all(out.join(sub)).map_err(|e| Error::io(out, e))?;
            for name in names.iter().filter(|n| dir.join(sub).join(n).is_file()) {
                let (from, to) = (dir.join(sub).join(name), out.join(sub).join(name));
                std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            }
        }
    }
    let mut contents = Contents::default();
    contents.groups.insert("model".into(), safetensors_io::collect(net));
    contents.metadata.insert("step".into(), "0".into());
    contents
        .metadata
        .insert(run::IMPORTED_FROM.into(), dir.display().to_string());
    safetensors_io::write(&out.join(run::CHECKPOINT_FILE), &contents)?;
    cfg.write(out)
}

/// `diffuse export --diffusers RUN --out DIR`: a `DDPMPipeline` folder of a pixel-space run's `weights`.
pub fn export(run_dir: &Path, out: &Path, weights: Weights, device: &Device) -> Result<()> {
    let loaded = run::load(run_dir, weights, device)?;
    let cfg = &loaded.config;
    let refuse = |why: &str| Err(Error::Config(format!("{}: {why}", run_dir.display())));
    if cfg.latent.is_some() {
        return refuse("a latent run: export takes pixel-space runs (diffusers' pipeline would also need the VAE)");
    }
    let (NetConfig::Unet(net_cfg), Net::UNet(unet)) = (&cfg.net, &loaded.net) else {
        return refuse("a point-cloud run (an MLP): export takes UNet runs");
    };
    let sched = SchedulerConfig::of(cfg)?;
    let ucfg = UNet2DModelConfig::of(net_cfg)?;
    fresh_dir(out)?;
    let tensors = super::export(&safetensors_io::collect(unet), names::source);
    std::fs::create_dir_all(out.join("unet")).map_err(|e| Error::io(out, e))?;
    super::write_weights(&out.join("unet").join(WEIGHTS), &tensors)?;
    write_json(out.join("unet").join(CONFIG), &ucfg)?;
    write_json(out.join("scheduler").join(scheduler::FILE), &sched)?;
    let index = serde_json::json!({
        "_class_name": "DDPMPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", sched["_class_name"]],
    });
    write_json(out.join("model_index.json"), &index)?;
    write_json(out.join(RUN_FILE), cfg)
}

/// Writes `value` as pretty JSON at `path`, making its folder.
fn write_json(path: PathBuf, value: &impl serde::Serialize) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).map_err(|e| Error::io(&path, e))?;
    let text = serde_json::to_string_pretty(value).expect("configs serialise") + "\n";
    crate::atomic::write(&path, text.as_bytes())
}
