//! The five variants on the same data, the workflow behind `diffuse compare`: each run trained with the
//! library's defaults (or reused when its folder holds one), sampled and measured by [`evaluate`] into one
//! typed report per row.

use crate::classifier;
use crate::data::{DataSpec, Split};
use crate::denoise::{Cond, Guidance};
use crate::evaluate::{self, Report};
use crate::fid::{self, Extractor};
use crate::generate::{self, Request};
use crate::nn::vae::VaeConfig;
use crate::run::{self, CHECKPOINT_FILE, RunConfig, Weights};
use crate::sample::Method;
use crate::train::{self, Options};
use crate::vae::{self, LatentSpace, VaeTrainConfig};
use crate::{Error, Result};
use diffuse_math::Sde;
use std::path::PathBuf;

/// Which trained run a row samples; each is a sub-folder of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    Ddpm,
    Conditional,
    Score,
    Latent,
}

impl RunKind {
    pub fn folder(self) -> &'static str {
        match self {
            RunKind::Ddpm => "ddpm",
            RunKind::Conditional => "conditional",
            RunKind::Score => "score",
            RunKind::Latent => "latent",
        }
    }
}

/// One row: its name for `--only`, its label, the run it samples, the sampler (by name, with its default
/// settings) and steps, and whether it draws every class under guidance w = 3.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub name: &'static str,
    pub variant: &'static str,
    pub run: RunKind,
    pub sampler: &'static str,
    pub steps: usize,
    pub guided: bool,
}

const fn row(name: &'static str, variant: &'static str, run: RunKind, sampler: &'static str, steps: usize) -> Row {
    Row {
        name,
        variant,
        run,
        sampler,
        steps,
        guided: false,
    }
}

pub const ROWS: &[Row] = &[
    row("ddpm", "DDPM, ancestral", RunKind::Ddpm, "ddpm", 1000),
    row("ddim", "DDIM, η = 0", RunKind::Ddpm, "ddim", 50),
    row("latent", "latent diffusion, DDIM", RunKind::Latent, "ddim", 50),
    Row {
        guided: true,
        ..row("cfg", "conditional, CFG w = 3", RunKind::Conditional, "ddim", 50)
    },
    row(
        "em",
        "score SDE (VP), Euler–Maruyama",
        RunKind::Score,
        "euler-maruyama",
        500,
    ),
    row("pc", "score SDE (VP), predictor–corrector", RunKind::Score, "pc", 500),
    row("ode", "score SDE (VP), probability-flow ODE", RunKind::Score, "ode", 1),
];

/// What to compare, and where.
pub struct Settings {
    /// Folder of the compared runs (ddpm/, conditional/, score/, vae/, latent/, classifier/).
    pub out: PathBuf,
    /// Labelled image data every variant trains on.
    pub data: DataSpec,
    /// Images per row (the guided row draws n / classes per class).
    pub n: usize,
    /// Training steps of runs that have to be trained (None: the library's default for the data).
    pub steps: Option<usize>,
    pub seed: u64,
    /// The Inception weights (None: the usual places).
    pub inception: Option<PathBuf>,
}

/// The rows named in `only` (all without it), refusing unknown names before any work.
pub fn select(only: Option<&[&str]>) -> Result<Vec<Row>> {
    if let Some(bad) = only.and_then(|names| names.iter().find(|n| !ROWS.iter().any(|r| r.name == **n))) {
        let names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
        return Err(Error::Invalid(format!(
            "--only: no row '{bad}' (rows: {})",
            names.join(", ")
        )));
    }
    Ok(ROWS
        .iter()
        .filter(|r| only.is_none_or(|o| o.contains(&r.name)))
        .copied()
        .collect())
}

/// Trains each row's run unless its folder holds one, samples and measures it.
pub fn run(s: &Settings, rows: &[Row]) -> Result<Vec<(Row, Report)>> {
    if s.n < 2 {
        return Err(Error::Invalid("--n must be at least 2".into()));
    }
    // Fail on missing weights before hours of training.
    let ex = Extractor::load(&fid::locate_weights(s.inception.as_deref())?)?;
    std::fs::create_dir_all(&s.out).map_err(|e| Error::io(&s.out, e))?;
    let data = s.data.absolute()?;
    let reference = data.load(Split::Test)?;
    if reference.num_classes() < 2 {
        return Err(Error::Data(format!(
            "{data} has no class labels; compare needs labelled data"
        )));
    }
    let clf = classifier::Classifier::load(&classifier(s, &data)?)?;
    let mut measured = Vec::new();
    for row in rows {
        let dir = prepare(s, &data, row.run)?;
        eprintln!(
            "compare: {} ({} sampler, {} steps)",
            row.variant, row.sampler, row.steps
        );
        let loaded = run::load(&dir, Weights::Ema, &crate::device::device())?;
        loaded.config.refuse_text("compare")?;
        let classes = loaded.config.class_names.len();
        let n = if row.guided { (s.n / classes).max(2) } else { s.n };
        let request = Request {
            plan: loaded.plan(Method::from_name(row.sampler)?, row.steps)?,
            guidance: Guidance::scale(if row.guided { 3.0 } else { 1.0 }),
            cond: Cond {
                classes: row.guided.then(|| generate::every_class(classes, n)),
                ..Cond::default()
            },
            n,
            seed: s.seed + 1,
            batch_size: 64,
            init_noise: None,
            no_clip: false,
            strip: false,
            progress: true,
        };
        let samples = generate::draw(&loaded, &request)?;
        let cfg = &loaded.config;
        let report = evaluate::evaluate(
            &dir,
            &samples,
            cfg.output_shape(),
            &cfg.class_names,
            &reference,
            &ex,
            Some(&clf),
            true,
        )?;
        measured.push((*row, report));
    }
    Ok(measured)
}

fn train_options() -> Options {
    Options {
        progress: true,
        ..Options::default()
    }
}

/// The run a row needs, trained with the library's defaults unless its folder holds a checkpoint already (so
/// runs trained by hand or by the examples can be linked in).
fn prepare(s: &Settings, data: &DataSpec, kind: RunKind) -> Result<PathBuf> {
    let dir = s.out.join(kind.folder());
    if dir.join(CHECKPOINT_FILE).is_file() {
        return Ok(dir);
    }
    let train_data = data.load(Split::Train)?;
    let (cfg, items) = match kind {
        RunKind::Ddpm | RunKind::Conditional | RunKind::Score => {
            let mut cfg = RunConfig::for_data(data, &train_data);
            match kind {
                RunKind::Conditional => cfg = cfg.conditional(0.1),
                RunKind::Score => cfg.sde = Some(Sde::vp()),
                RunKind::Ddpm | RunKind::Latent => {}
            }
            (cfg, train_data)
        }
        RunKind::Latent => {
            let vae_dir = vae_for(s, data)?;
            let space = LatentSpace::load(&vae_dir)?;
            let latents = space.encode(&train_data)?;
            let mut cfg = RunConfig::for_data(data, &latents);
            run::attach_latent(&mut cfg, &space, &vae_dir, &dir)?;
            (cfg, latents)
        }
    };
    let mut cfg = cfg;
    cfg.train.seed = s.seed;
    cfg.train.steps = s.steps.unwrap_or(cfg.train.steps);
    eprintln!("compare: training {} in {}", kind.folder(), dir.display());
    train::train(&cfg, &items, &dir, &train_options())?;
    Ok(dir)
}

/// The latent row's VAE (factor 2, 4 latent channels, `vae train`'s defaults), trained unless present.
fn vae_for(s: &Settings, data: &DataSpec) -> Result<PathBuf> {
    let dir = s.out.join("vae");
    if dir.join(vae::META).is_file() {
        return Ok(dir);
    }
    eprintln!(
        "compare: training the VAE (factor 2, 4 latent channels) in {}",
        dir.display()
    );
    let (train, test) = (data.load(Split::Train)?, data.load(Split::Test)?);
    let net = VaeConfig::for_image(train.channels, train.height, train.width, 2);
    let cfg = VaeTrainConfig {
        seed: s.seed,
        ..VaeTrainConfig::default()
    };
    vae::train(&net, &cfg, &train, &test, &dir, true)?;
    Ok(dir)
}

/// The scoring classifier, trained unless present.
fn classifier(s: &Settings, data: &DataSpec) -> Result<PathBuf> {
    let dir = s.out.join("classifier");
    if !dir.join(classifier::META).is_file() {
        eprintln!("compare: training the scoring classifier in {}", dir.display());
        let (train, test) = (data.load(Split::Train)?, data.load(Split::Test)?);
        classifier::train(&train, &test, &dir, classifier::DEFAULT_STEPS, s.seed)?;
    }
    Ok(dir)
}

/// The comparison as a markdown table.
pub fn markdown(rows: &[(Row, Report)]) -> String {
    let mut md = String::from(
        "| variant | sampler | NFE | time per image | FID | classifier FID | recall | classes present | accuracy |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (row, r) in rows {
        let c = r.classifier.as_ref();
        let accuracy = c
            .and_then(|c| c.accuracy)
            .map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
        let present = c.map_or("–".into(), |c| format!("{}/{}", c.classes_present, c.num_classes));
        md += &format!(
            "| {} | {} | {} | {:.0} ms | {:.1} | {:.1} | {:.2} | {present} | {accuracy} |\n",
            row.variant,
            r.sampler,
            r.nfe_per_image,
            1000.0 * r.sampling_seconds_per_image,
            r.fid,
            c.and_then(|c| c.fid).unwrap_or(f64::NAN),
            r.recall,
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_a_sampler_that_runs_on_its_run_kind() {
        for r in ROWS {
            let m = Method::from_name(r.sampler).unwrap();
            assert_eq!(
                m.needs_sde(),
                r.run == RunKind::Score && r.sampler != "ddim",
                "{}",
                r.name
            );
        }
        let e = select(Some(&["ddim", "gan"])).unwrap_err().to_string();
        assert!(e.contains("no row 'gan'"), "{e}");
        assert_eq!(select(Some(&["pc", "ddpm"])).unwrap().len(), 2);
        assert_eq!(select(None).unwrap().len(), ROWS.len());
    }

    #[test]
    fn too_few_images_are_refused_before_any_work() {
        let s = Settings {
            out: PathBuf::from("/nonexistent/compare"),
            data: DataSpec::Digits,
            n: 1,
            steps: None,
            seed: 0,
            inception: None,
        };
        assert!(run(&s, ROWS).unwrap_err().to_string().contains("at least 2"));
    }
}
