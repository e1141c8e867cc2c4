//! The noise-schedule flags shared by `train`, `schedule` and `lab`.

use clap::Args;
use diffuse::run::ScheduleConfig;
use diffuse_math::{BetaSchedule, NoiseSchedule};

#[derive(Args, Clone, Debug)]
pub struct ScheduleFlags {
    /// β schedule: linear | scaled-linear | cosine | sigmoid.
    #[arg(long, default_value = "linear")]
    pub schedule: String,
    /// Number of train timesteps T.
    #[arg(long, default_value_t = 1000)]
    pub timesteps: usize,
    /// First β (default: 1e-4, or 8.5e-4 for scaled-linear; unused by cosine).
    #[arg(long)]
    pub beta_start: Option<f64>,
    /// Last β (default: 0.02, or 0.012 for scaled-linear; unused by cosine).
    #[arg(long)]
    pub beta_end: Option<f64>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2024): the last step is pure noise. For models
    /// that predict v or x0.
    #[arg(long)]
    pub zero_terminal_snr: bool,
}

impl ScheduleFlags {
    /// The schedule's config; a missing β end takes the schedule's default.
    pub fn config(&self) -> anyhow::Result<ScheduleConfig> {
        let kind: BetaSchedule = self.schedule.parse()?;
        let (ds, de) = kind.default_range();
        let range = (self.beta_start.is_some() || self.beta_end.is_some())
            .then(|| (self.beta_start.unwrap_or(ds), self.beta_end.unwrap_or(de)));
        let cfg = ScheduleConfig {
            zero_terminal_snr: self.zero_terminal_snr,
            ..ScheduleConfig::new(kind, self.timesteps, range)
        };
        cfg.build()?;
        Ok(cfg)
    }

    pub fn build(&self) -> anyhow::Result<NoiseSchedule> {
        Ok(self.config()?.build()?)
    }
}
