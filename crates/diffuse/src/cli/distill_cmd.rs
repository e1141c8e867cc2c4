//! `diffuse distill`: progressive distillation of a run into a few-step DDIM sampler.

use clap::Args;
use diffuse::data::Split;
use diffuse::distill::{self, Settings};
use diffuse::run::RunConfig;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse distill --run runs/digits --out runs/digits-4 --from-steps 64 --to-steps 4\n  \
diffuse eval --run runs/digits-4 --n 297   # its default sampler: DDIM, 4 steps"
)]
pub struct DistillArgs {
    /// The teacher run (unconditional, pixel space).
    #[arg(long)]
    run: PathBuf,
    /// Where the distilled run goes (its default sampler is DDIM with --to-steps steps).
    #[arg(long)]
    out: PathBuf,
    /// Steps of the first teacher: DDIM on the run's default grid.
    #[arg(long, default_value_t = 64)]
    from_steps: usize,
    /// Steps of the final student (--from-steps over a power of two).
    #[arg(long, default_value_t = 4)]
    to_steps: usize,
    /// Optimiser steps per halving.
    #[arg(long, default_value_t = 300)]
    steps_per_round: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// AdamW learning rate (constant).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn distill(a: DistillArgs) -> anyhow::Result<()> {
    if a.out.join(diffuse::run::CHECKPOINT_FILE).exists() {
        anyhow::bail!("{} already holds a run; choose another --out", a.out.display());
    }
    let cfg = RunConfig::read(&a.run)?;
    let data = cfg.data.load(Split::Train)?;
    let s = distill::distill(
        &a.run,
        &data,
        &a.out,
        &Settings {
            from_steps: a.from_steps,
            to_steps: a.to_steps,
            steps_per_round: a.steps_per_round,
            batch_size: a.batch_size,
            lr: a.lr,
            seed: a.seed,
            progress: !a.quiet,
        },
    )?;
    for (steps, loss) in &s.rounds {
        println!("student of {steps} steps: loss {loss:.5}");
    }
    println!(
        "distilled {} into {} in {:.0} s: its default sampler walks {} steps",
        a.run.display(),
        a.out.display(),
        s.seconds,
        s.spec.steps
    );
    Ok(())
}
