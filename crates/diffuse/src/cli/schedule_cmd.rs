use super::schedule_flags::ScheduleFlags;
use anyhow::Context;
use clap::Args;
use diffuse::plot::{Axes, Series, line_plot};
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  diffuse schedule --schedule cosine --timesteps 1000 --json\n  \
diffuse schedule --schedule linear --plot runs/linear.png"
)]
pub struct ScheduleArgs {
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Print {"betas": [...], "alphas_cumprod": [...]} instead of the table.
    #[arg(long)]
    json: bool,
    /// Write a PNG plot of ᾱ and log-SNR rescaled to [0, 1] against t, instead of the table
    /// (--json still prints).
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn schedule(a: ScheduleArgs) -> anyhow::Result<()> {
    let s = a.schedule.build()?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "betas": s.betas, "alphas_cumprod": s.alphas_cumprod })
        );
    } else if a.plot.is_none() {
        println!("t\tbeta\talpha_bar\tlog_snr");
        for t in 0..s.len() {
            println!(
                "{t}\t{:.8e}\t{:.8e}\t{:.5}",
                s.betas[t],
                s.alphas_cumprod[t],
                s.log_snr(t)
            );
        }
    }
    if let Some(path) = a.plot {
        let abar: Vec<(f64, f64)> = (0..s.len()).map(|t| (t as f64, s.alphas_cumprod[t])).collect();
        let snr: Vec<f64> = (0..s.len()).map(|t| s.log_snr(t)).collect();
        let (lo, hi) = snr.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let scaled: Vec<(f64, f64)> = snr
            .iter()
            .enumerate()
            .map(|(t, v)| (t as f64, (v - lo) / (hi - lo)))
            .collect();
        let series = [
            Series::new("ᾱ", &abar),
            Series::new("log-SNR, rescaled to [0, 1]", &scaled),
        ];
        let axes = Axes {
            x: "train timestep t",
            y: "ᾱ_t, rescaled log-SNR",
            log_x: false,
            log_y: false,
        };
        let img = line_plot(&series, &axes);
        diffuse::imageio::write_rgb(&path, img).with_context(|| "writing the schedule plot")?;
        eprintln!("plot: {}", path.display());
    }
    Ok(())
}
