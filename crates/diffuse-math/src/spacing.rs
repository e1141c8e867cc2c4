//! Timestep spacings: which train steps a K-step sampler visits, with the names and rounding of diffusers
//! (`DDIMScheduler.set_timesteps`, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2).

use crate::MathError;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestepSpacing {
    /// t = i·⌊T/K⌋ for i = K−1…0: starts below T−1 and ends at 0.
    #[default]
    Leading,
    /// t = round(T − i·T/K) − 1 for i = 0…K−1: starts at T−1.
    Trailing,
    /// K points evenly between 0 and T−1, rounded.
    Linspace,
}

impl TimestepSpacing {
    pub const NAMES: &'static str = "leading, trailing, linspace";

    pub fn name(self) -> &'static str {
        match self {
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Trailing => "trailing",
            TimestepSpacing::Linspace => "linspace",
        }
    }

    /// The K train timesteps visited, in decreasing order.
    pub fn timesteps(self, train_steps: usize, steps: usize) -> Result<Vec<i64>, MathError> {
        if steps == 0 || steps > train_steps {
            return Err(MathError::Invalid(format!(
                "steps must be between 1 and the {train_steps} train timesteps, got {steps}"
            )));
        }
        let (t, k) = (train_steps as f64, steps as f64);
        // numpy rounds half to even; so do we, to land on the same integers.
        let ts: Vec<i64> = match self {
            TimestepSpacing::Leading => {
                let ratio = train_steps / steps;
                (0..steps).rev().map(|i| (i * ratio) as i64).collect()
            }
            TimestepSpacing::Trailing => (0..steps)
                .map(|i| (t - i as f64 * t / k).round_ties_even() as i64 - 1)
                .collect(),
            TimestepSpacing::Linspace => crate::schedule::linspace(0.0, t - 1.0, steps)
                .into_iter()
                .rev()
                .map(|x| x.round_ties_even() as i64)
                .collect(),
        };
        Ok(ts)
    }

    /// The timesteps of diffusers' `DPMSolverMultistepScheduler` for this spacing, after which it steps to
    /// σ = 0. Its "linspace" and "leading" take K + 1 points and drop the last, unlike DDIM's. Rounding can
    /// repeat a timestep when K is close to T; repeats are dropped (a zero-length step would divide by zero in
    /// the multistep update), so fewer than K may come back.
    pub fn dpm_solver_timesteps(self, train_steps: usize, steps: usize) -> Result<Vec<i64>, MathError> {
        if steps == 0 || steps > train_steps {
            return Err(MathError::Invalid(format!(
                "steps must be between 1 and the {train_steps} train timesteps, got {steps}"
            )));
        }
        let mut ts: Vec<i64> = match self {
            TimestepSpacing::Trailing => self.timesteps(train_steps, steps)?,
            TimestepSpacing::Linspace => crate::schedule::linspace(0.0, train_steps as f64 - 1.0, steps + 1)
                .into_iter()
                .rev()
                .take(steps)
                .map(|x| x.round_ties_even() as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = train_steps / (steps + 1);
                (1..=steps).rev().map(|i| (i * ratio) as i64).collect()
            }
        };
        ts.dedup();
        Ok(ts)
    }

    /// Pairs (t, t_prev) a sampler steps through; the last step goes to −1, where ᾱ = 1.
    pub fn pairs(self, train_steps: usize, steps: usize) -> Result<Vec<(i64, i64)>, MathError> {
        let ts = self.timesteps(train_steps, steps)?;
        Ok(ts
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, ts.get(i + 1).copied().unwrap_or(-1)))
            .collect())
    }
}

impl fmt::Display for TimestepSpacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimestepSpacing {
    type Err = MathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leading" => Ok(TimestepSpacing::Leading),
            "trailing" => Ok(TimestepSpacing::Trailing),
            "linspace" => Ok(TimestepSpacing::Linspace),
            _ => Err(MathError::Unknown {
                kind: "timestep spacing",
                value: s.to_string(),
                expected: Self::NAMES,
            }),
        }
    }
}
