//! Class, prompt and classifier-free guidance flags, shared by `sample` and `edit`.

use anyhow::{Context, bail};
use clap::Args;
use diffuse::denoise::{Cond, Guidance};
use diffuse::run::LoadedRun;

#[derive(Args)]
pub struct GuideArgs {
    /// Class-conditional models: the class to draw, by index or name, or `all` for --n images of every class
    /// (a grid row per class). Without it a conditional model draws unconditionally (the null class).
    #[arg(long)]
    class: Option<String>,
    /// Text-conditioned runs (Stable Diffusion imports, runs trained with --text): what to draw. Given several times, --n images of each
    /// (a grid row per prompt). Without it, the empty prompt (unconditional).
    #[arg(long, value_name = "TEXT")]
    prompt: Vec<String>,
    /// Text-conditioned runs: what guidance steers away from (default: the empty prompt).
    #[arg(long, value_name = "TEXT")]
    negative_prompt: Option<String>,
    /// Classifier-free guidance scale w: ε̂ = ε̂_u + w (ε̂_c − ε̂_u); 1 is plain conditional, 0 unconditional.
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Guide only at noise levels σ/α in [LO, HI] (e.g. 0.3,5), the plain conditional output elsewhere.
    #[arg(long, value_name = "LO,HI")]
    guidance_interval: Option<String>,
    /// Rescale the guided output to the conditional one's standard deviation, blended by φ ∈ [0, 1].
    #[arg(long, default_value_t = 0.0, value_name = "PHI")]
    guidance_rescale: f64,
}

impl GuideArgs {
    /// The --class value as given.
    pub fn class_spec(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// The guidance flags, checked.
    pub fn guidance(&self) -> anyhow::Result<Guidance> {
        if !(self.guidance.is_finite() && (0.0..=100.0).contains(&self.guidance)) {
            bail!("--guidance must be between 0 and 100, got {}", self.guidance);
        }
        if !(0.0..=1.0).contains(&self.guidance_rescale) {
            bail!(
                "--guidance-rescale must be between 0 and 1, got {}",
                self.guidance_rescale
            );
        }
        let interval = self
            .guidance_interval
            .as_deref()
            .map(|spec| {
                let v: Vec<f64> = spec.split(',').map(|p| p.trim().parse()).collect::<Result<_, _>>()?;
                match v[..] {
                    [lo, hi] if lo >= 0.0 && lo < hi && hi.is_finite() => Ok((lo, hi)),
                    _ => Err(anyhow::anyhow!("need two numbers 0 <= LO < HI")),
                }
            })
            .transpose()
            .with_context(|| {
                format!(
                    "--guidance-interval {:?}",
                    self.guidance_interval.as_deref().unwrap_or("")
                )
            })?;
        Ok(Guidance {
            scale: self.guidance,
            interval,
            rescale: self.guidance_rescale,
        })
    }

    /// Refuses what a conditional model without a null class (trained without label dropout, as imported models
    /// may be) cannot do: guidance other than 1, and drawing without a class.
    pub fn check_null_class(&self, net: &diffuse::nn::Net) -> anyhow::Result<()> {
        if net.num_classes().is_none() || net.has_null_class() {
            return Ok(());
        }
        if self.guidance != 1.0 || self.guidance_interval.is_some() || self.guidance_rescale != 0.0 {
            bail!(
                "this model has no null class (it was trained without label dropout), so it samples at guidance 1 only"
            );
        }
        if self.class.is_none() {
            bail!("this model has no null class (no unconditional output): give --class");
        }
        Ok(())
    }

    /// Whether any guidance flag asks for more than the plain conditional output.
    fn guided(&self) -> bool {
        self.guidance != 1.0 || self.guidance_interval.is_some() || self.guidance_rescale != 0.0
    }

    /// What every image to draw is conditioned on (a class or a prompt's encoding each), and the number of grid
    /// rows (one per class with `--class all`, one per prompt).
    pub fn cond(&self, n: usize, run: &LoadedRun) -> anyhow::Result<(Cond, usize)> {
        if !run.net.takes_context() {
            if !self.prompt.is_empty() || self.negative_prompt.is_some() {
                bail!(
                    "--prompt and --negative-prompt need a text-conditioned run (a Stable Diffusion import, or trained with --text)"
                );
            }
            let (classes, rows) = self.classes(n, &run.config.class_names, &run.net)?;
            let cond = Cond {
                classes,
                ..Cond::default()
            };
            return Ok((cond, rows));
        }
        if self.class.is_some() {
            bail!("--class is for class-conditional runs; this one takes --prompt");
        }
        if self.prompt.is_empty() && self.guided() {
            bail!("--guidance needs --prompt");
        }
        if self.negative_prompt.is_some() && !self.guided() {
            bail!("--negative-prompt steers guidance: give --guidance other than 1");
        }
        let prompts: Vec<&str> = match self.prompt.len() {
            0 => vec![""],
            _ => self.prompt.iter().map(String::as_str).collect(),
        };
        let negative = self.negative_prompt.as_deref().unwrap_or("");
        if let Some(text) = &run.text {
            for p in prompts.iter().chain([&negative]) {
                let unknown = text.unknown_words(p);
                if !unknown.is_empty() {
                    eprintln!(
                        "warning: the text encoder does not know {unknown:?} in {p:?} (read as one unknown word)"
                    );
                }
            }
        }
        let context = run.encode_prompts(&prompts, negative)?.repeat_each(n);
        let cond = Cond {
            classes: None,
            context: Some(context),
        };
        Ok((cond, prompts.len()))
    }

    /// The class of every image to draw, and the number of grid rows (one per class with `--class all`).
    fn classes(&self, n: usize, names: &[String], net: &diffuse::nn::Net) -> anyhow::Result<(Option<Vec<u32>>, usize)> {
        let guided = self.guided();
        let Some(k) = net.num_classes() else {
            if self.class.is_some() || guided {
                bail!("--class and --guidance need a class-conditional model (train with --conditional)");
            }
            return Ok((None, 1));
        };
        self.check_null_class(net)?;
        let Some(spec) = self.class.as_deref() else {
            if guided {
                bail!("--guidance needs --class");
            }
            return Ok((None, 1));
        };
        if spec == "all" {
            return Ok((Some(diffuse::generate::every_class(k, n)), k));
        }
        let class = super::class_index(spec, &names[..k.min(names.len())])?;
        Ok((Some(vec![class as u32; n]), 1))
    }
}
