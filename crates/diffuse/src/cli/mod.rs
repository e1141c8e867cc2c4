//! Command-line interface: argument definitions and dispatch.

mod bench_cmd;
mod clip_cmd;
mod compare_cmd;
mod diffusers_cmd;
mod distill_cmd;
mod edit_cmd;
mod eval_cmd;
mod fetch_cmd;
mod fid_cmd;
mod guide_args;
mod lab_cmd;
mod likelihood_cmd;
mod lpips_cmd;
mod plot_cmd;
mod precision_args;
mod restore_cmd;
mod sample_cmd;
mod sampler_args;
mod schedule_cmd;
mod schedule_flags;
mod serve;
mod text_cmd;
mod train_cmd;
mod vae_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Train, sample, edit and evaluate diffusion models (DDPM, DDIM, latent, conditional, score SDEs) on the CPU or, built with --features vulkan, a GPU",
    long_about = "Train, sample, edit and evaluate diffusion models (DDPM, DDIM, latent, conditional, score SDEs) on the CPU or, built with --features vulkan, a GPU.\n\n\
Quick start:\n  diffuse train --data digits --out runs/digits --seed 0\n  \
diffuse sample --run runs/digits --sampler ddim --steps 50 --n 64 --seed 1 --out-dir runs/out/ddim --grid runs/out/ddim.png"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a diffusion model (DDPM, score SDE, EDM or flow matching), or resume one, into a run directory.
    Train(train_cmd::TrainArgs),
    /// Distil a run into a few-step sampler (progressive distillation).
    Distill(distill_cmd::DistillArgs),
    /// Draw images from a trained run with any sampler (DDPM, DDIM, DPM-Solver++, SDE, probability-flow ODE).
    Sample(sample_cmd::SampleArgs),
    /// Run a sampler against an exact target distribution (no training) and measure it.
    Lab(lab_cmd::LabArgs),
    /// Negative log-likelihood of images in bits/dim, through the probability-flow ODE.
    Likelihood(likelihood_cmd::LikelihoodArgs),
    /// Plot columns of a CSV file as lines (figures of scripts).
    Plot(plot_cmd::PlotArgs),
    /// Print a noise schedule (β, ᾱ, log-SNR per train step), optionally as JSON or a plot.
    Schedule(schedule_cmd::ScheduleArgs),
    /// Train or apply the small classifier that measures sample quality.
    #[command(subcommand)]
    Classifier(train_cmd::ClassifierCommand),
    /// Edit images with a trained run: inpaint, outpaint, sdedit, invert, interpolate, restore.
    #[command(subcommand)]
    Edit(edit_cmd::EditCommand),
    /// Train or apply the autoencoder of latent diffusion.
    #[command(subcommand)]
    Vae(vae_cmd::VaeCommand),
    /// Sample a run and measure the samples: FID, KID, precision/recall (Inception), classifier scores.
    Eval(eval_cmd::EvalArgs),
    /// LPIPS between two images or folders of images (a user-provided AlexNet or VGG16 backbone).
    Lpips(lpips_cmd::LpipsArgs),
    /// FID between two image sets in the reference Inception's features.
    Fid(fid_cmd::FidArgs),
    /// CLIP score: how well images match a prompt, in a user-provided CLIP model's embedding space.
    ClipScore(clip_cmd::ClipScoreArgs),
    /// Train or apply the project's own text encoder (for text-to-image runs, retrieval and its own score).
    #[command(subcommand)]
    Text(text_cmd::TextCommand),
    /// Download the Inception weights, MNIST or Fashion-MNIST into the cache, checking SHA-256.
    Fetch(fetch_cmd::FetchArgs),
    /// Train (or reuse) the five variants on the same data and measure them into one table.
    Compare(compare_cmd::CompareArgs),
    /// Turn a diffusers DDPMPipeline/DDIMPipeline or StableDiffusionPipeline folder (or a UNet2DModel folder)
    /// into a run directory.
    Import(diffusers_cmd::ImportArgs),
    /// Write a run as a diffusers DDPMPipeline folder (UNet2DModel and scheduler config).
    Export(diffusers_cmd::ExportArgs),
    /// Time training steps and inference of the reference UNet and the default models (and PyTorch's).
    Bench(bench_cmd::BenchArgs),
    /// A local web studio: browse runs, sample with live previews, inpaint with a drawn mask, the lab.
    Serve(serve::ServeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train_cmd::train(a),
        Command::Distill(a) => distill_cmd::distill(a),
        Command::Sample(a) => sample_cmd::sample(a),
        Command::Schedule(a) => schedule_cmd::schedule(a),
        Command::Lab(a) => lab_cmd::lab(a),
        Command::Likelihood(a) => likelihood_cmd::likelihood(a),
        Command::Plot(a) => plot_cmd::plot(a),
        Command::Classifier(c) => train_cmd::classifier(c),
        Command::Vae(c) => vae_cmd::vae(c),
        Command::Edit(c) => edit_cmd::edit(c),
        Command::Bench(a) => bench_cmd::bench(a),
        Command::Fid(a) => fid_cmd::fid(a),
        Command::ClipScore(a) => clip_cmd::clip_score(a),
        Command::Text(c) => text_cmd::text(c),
        Command::Lpips(a) => lpips_cmd::lpips(a),
        Command::Eval(a) => eval_cmd::eval(a),
        Command::Fetch(a) => fetch_cmd::fetch(a),
        Command::Compare(a) => compare_cmd::compare(a),
        Command::Import(a) => diffusers_cmd::import(a),
        Command::Export(a) => diffusers_cmd::export(a),
        Command::Serve(a) => serve::serve(a),
    }
}

/// Refuses an output folder that already holds files, before any work: images of two draws mixed in one folder
/// cannot be told apart afterwards.
pub fn fresh_out_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    Ok(diffuse::atomic::require_empty_dir(dir)?)
}

/// The index of the class `spec` names, by index or by name, among `names`.
pub fn class_index(spec: &str, names: &[String]) -> anyhow::Result<usize> {
    spec.parse::<usize>()
        .ok()
        .filter(|&i| i < names.len())
        .or_else(|| names.iter().position(|n| n == spec))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown class '{spec}' (classes 0..{}: {})",
                names.len().saturating_sub(1),
                names.join(", ")
            )
        })
}

/// A value parser for a library type named by `names` (listed in --help), read with its `FromStr`: the CLI's
/// mapping onto library enums, so that they need no command-line derive.
pub fn one_of<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = diffuse::Error> + Clone + Send + Sync + 'static,
{
    clap::builder::TypedValueParser::try_map(clap::builder::PossibleValuesParser::new(names), |s| s.parse::<T>())
}

/// Parses "1,2,2" into numbers.
pub fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|v| v.trim().parse::<T>().map_err(|_| format!("'{v}' is not a number")))
        .collect()
}
