//! `diffuse import --diffusers` and `diffuse export --diffusers`: diffusers pipeline folders to and from runs.

use clap::Args;
use diffuse::data::DataSpec;
use diffuse::diffusers::pipeline::{self, ImportOptions};
use diffuse::run::Weights;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse import --diffusers ddpm-cifar10-32 --out runs/cifar10 --data folder:cifar10-test\n  \
diffuse sample --run runs/cifar10 --sampler ddim --steps 50 --n 16 --grid runs/out/cifar10.png\n  \
diffuse import --diffusers my-unet --scheduler my-scheduler.json --size 64x64 --out runs/mine\n  \
diffuse import --diffusers stable-diffusion-v1-5 --out runs/sd15\n  \
diffuse sample --run runs/sd15 --prompt \"a red heart\" --guidance 7.5 --steps 20 --n 1 --out-dir runs/out/sd\n\n\
DIR is a DDPMPipeline or DDIMPipeline folder (model_index.json, unet/, scheduler/), a bare UNet2DModel folder \
(config.json, diffusion_pytorch_model.safetensors) with --scheduler, or a Stable Diffusion 1.x folder \
(StableDiffusionPipeline: also vae/, text_encoder/ and tokenizer/), which becomes a latent run that takes \
--prompt. Weights may be f32, f16 or bf16; they are \
held in f32. Nothing is downloaded: bring the folder.")]
pub struct ImportArgs {
    /// The diffusers folder to read.
    #[arg(long, value_name = "DIR")]
    diffusers: PathBuf,
    /// The run directory to write (new or empty).
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    /// A scheduler_config.json for a bare UNet folder (default: diffusers' DDPMScheduler defaults).
    #[arg(long, value_name = "FILE")]
    scheduler: Option<PathBuf>,
    /// Image size HxW, where the config names none or another size is wanted (Stable Diffusion: the decoded
    /// image's, a multiple of 8).
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// The data `eval` measures the model against (its held-out split), e.g. folder:cifar10-test.
    #[arg(long, value_name = "SPEC")]
    data: Option<DataSpec>,
    /// Names of a class-conditional model's classes, comma-separated (default: their indices).
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    class_names: Option<Vec<String>>,
}

#[derive(Args)]
#[command(after_help = "Example:\n  \
diffuse export --diffusers runs/digits --out exported/digits\n  \
python -c \"from diffusers import UNet2DModel; UNet2DModel.from_pretrained('exported/digits/unet')\"\n\n\
Writes model_index.json, unet/ (config.json, diffusion_pytorch_model.safetensors), scheduler/ \
(DDPMScheduler for discrete diffusion runs, FlowMatchEulerDiscreteScheduler for flow-matching runs) and \
diffuse_run.json (the run's config, which import reads back). A conditional model's null class is its last \
class embedding; DDPMPipeline passes no class labels, so call a conditional UNet2DModel directly. EDM, score-SDE and latent runs have no diffusers pipeline that asks the network the same \
question and are refused.")]
pub struct ExportArgs {
    /// The run to export.
    #[arg(long, value_name = "RUN")]
    diffusers: PathBuf,
    /// The folder to write (new or empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Which weights: the exponential moving average (ema) or the raw optimised ones (raw).
    #[arg(long, default_value = "ema", value_parser = super::one_of::<Weights>(&["ema", "raw"]))]
    weights: Weights,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected HxW (e.g. 32x32), got '{s}'");
    let (h, w) = s.split_once(['x', '×', ',']).ok_or_else(bad)?;
    let side = |v: &str| v.trim().parse::<usize>().ok().filter(|v| *v > 0).ok_or_else(bad);
    Ok((side(h)?, side(w)?))
}

pub fn import(a: ImportArgs) -> anyhow::Result<()> {
    let opts = ImportOptions {
        size: a.size,
        scheduler: a.scheduler,
        data: a.data,
        class_names: a.class_names,
    };
    let device = diffuse::device::device();
    let imported = pipeline::import(&a.diffusers, &a.out, &opts, &device)?;
    let cfg = &imported.config;
    let [c, h, w] = cfg.output_shape();
    let space = match &cfg.latent {
        Some(_) => format!(
            "{}×{}×{} latents of {c}×{h}×{w} images",
            cfg.channels, cfg.height, cfg.width
        ),
        None => format!("{c}×{h}×{w} images"),
    };
    let conditioning = match (&cfg.text, cfg.class_names.len()) {
        (Some(_), _) => "prompts".to_string(),
        (None, 0) => "no classes".to_string(),
        (None, k) => format!("{k} classes"),
    };
    println!(
        "imported {} into {}: {} parameters, {space}, {} objective predicting {}, {conditioning}",
        a.diffusers.display(),
        a.out.display(),
        imported.params,
        cfg.objective.name(),
        cfg.prediction,
    );
    let plan = cfg.default_sampler()?.plan(&cfg.schedule.build()?)?;
    println!("default sampler: {}", plan.describe());
    for note in &imported.notes {
        println!("note: {note}");
    }
    Ok(())
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    pipeline::export(&a.diffusers, &a.out, a.weights, &diffuse::device::device())?;
    println!(
        "wrote {} (diffusers {} layout)",
        a.out.display(),
        pipeline::DIFFUSERS_VERSION
    );
    Ok(())
}
