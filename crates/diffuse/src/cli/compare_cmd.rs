//! `diffuse compare`: the five variants on the same data, trained with the defaults (or reused), each
//! sampled and measured by `eval` into one table: NFE, time per image, FID, classifier FID, recall, class
//! coverage and, under guidance, class accuracy. Written as markdown, JSON and a PNG (FID against time).

use super::{Cli, Command};
use anyhow::{Context, bail};
use clap::{Args, Parser};
use diffuse::plot::{self, Series};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse compare --out runs/compare                 # trains what is missing, then measures seven rows\n  \
diffuse compare --out runs/compare --only ddim,cfg --n 100\n\n\
OUT holds ddpm/, conditional/, score/, vae/, latent/ and classifier/; a folder already there is reused, so \
runs trained by hand (or by the examples) can be linked in. Rows: ddpm, ddim, latent, cfg, em, pc, ode.")]
pub struct CompareArgs {
    /// Folder of the compared runs and of compare.md, compare.json and compare.png.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Labelled image data all variants train on (see `diffuse train --help`).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Images per row (the conditional row draws n / classes per class).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Only these rows, comma-separated.
    #[arg(long)]
    only: Option<String>,
    /// Training steps of the runs that have to be trained (default: train's default for the data).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of training and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The Inception weights (default: $DIFFUSE_INCEPTION, the fetch cache, or the shared folder).
    #[arg(long, value_name = "PATH")]
    inception: Option<PathBuf>,
}

/// One row: its name for --only, its label, the run folder it samples, and the sampler flags.
struct Row {
    name: &'static str,
    variant: &'static str,
    run: &'static str,
    flags: &'static [&'static str],
}

const ROWS: &[Row] = &[
    Row {
        name: "ddpm",
        variant: "DDPM, ancestral",
        run: "ddpm",
        flags: &["--sampler", "ddpm", "--steps", "1000"],
    },
    Row {
        name: "ddim",
        variant: "DDIM, η = 0",
        run: "ddpm",
        flags: &["--sampler", "ddim", "--steps", "50"],
    },
    Row {
        name: "latent",
        variant: "latent diffusion, DDIM",
        run: "latent",
        flags: &["--sampler", "ddim", "--steps", "50"],
    },
    Row {
        name: "cfg",
        variant: "conditional, CFG w = 3",
        run: "conditional",
        flags: &[
            "--sampler",
            "ddim",
            "--steps",
            "50",
            "--class",
            "all",
            "--guidance",
            "3",
        ],
    },
    Row {
        name: "em",
        variant: "score SDE (VP), Euler–Maruyama",
        run: "score",
        flags: &["--sampler", "euler-maruyama", "--steps", "500"],
    },
    Row {
        name: "pc",
        variant: "score SDE (VP), predictor–corrector",
        run: "score",
        flags: &["--sampler", "pc", "--steps", "500", "--corrector-steps", "1"],
    },
    Row {
        name: "ode",
        variant: "score SDE (VP), probability-flow ODE",
        run: "score",
        flags: &["--sampler", "ode", "--ode-solver", "rk45"],
    },
];

/// A diffuse command line, parsed by the same definitions the user's is.
fn parse(args: &[String]) -> anyhow::Result<Cli> {
    Ok(Cli::try_parse_from(
        std::iter::once("diffuse").chain(args.iter().map(String::as_str)),
    )?)
}

/// Runs a diffuse command line in this process.
fn diffuse(args: &[String]) -> anyhow::Result<()> {
    super::run(parse(args)?)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).is_file()
}

/// Trains the run a row needs unless it is there (and the VAE of the latent run, the scoring classifier).
fn prepare(a: &CompareArgs, run: &str) -> anyhow::Result<PathBuf> {
    let dir = a.out.join(run);
    if exists(&dir, "config.json") {
        return Ok(dir);
    }
    let seed = a.seed.to_string();
    let steps = a.steps.map(|s| s.to_string());
    let mut args = strings(&["train", "--data", &a.data, "--seed", &seed, "--out"]);
    args.push(dir.display().to_string());
    if let Some(s) = &steps {
        args.extend(strings(&["--steps", s]));
    }
    match run {
        "conditional" => args.push("--conditional".into()),
        "score" => args.extend(strings(&["--sde", "vp"])),
        "latent" => {
            let vae = a.out.join("vae");
            if !exists(&vae, "vae.json") {
                eprintln!(
                    "compare: training the VAE (factor 2, 4 latent channels) in {}",
                    vae.display()
                );
                let mut v = strings(&[
                    "vae", "train", "--data", &a.data, "--factor", "2", "--seed", &seed, "--out",
                ]);
                v.push(vae.display().to_string());
                diffuse(&v)?;
            }
            args.push("--vae".into());
            args.push(vae.display().to_string());
        }
        _ => {}
    }
    eprintln!("compare: training {run} in {}", dir.display());
    diffuse(&args).with_context(|| format!("training {run}"))?;
    Ok(dir)
}

fn classifier(a: &CompareArgs) -> anyhow::Result<PathBuf> {
    let dir = a.out.join("classifier");
    if !exists(&dir, "classifier.json") {
        eprintln!("compare: training the scoring classifier in {}", dir.display());
        let mut args = strings(&[
            "classifier",
            "train",
            "--data",
            &a.data,
            "--seed",
            &a.seed.to_string(),
            "--out",
        ]);
        args.push(dir.display().to_string());
        diffuse(&args)?;
    }
    Ok(dir)
}

/// `eval` of one row, as the JSON object `eval --json` prints.
fn measure(a: &CompareArgs, row: &Row, run: &Path, classifier: &Path, classes: usize) -> anyhow::Result<Value> {
    let n = if row.name == "cfg" { (a.n / classes).max(2) } else { a.n };
    let mut args = vec!["eval".to_string(), "--run".into(), run.display().to_string()];
    args.extend(strings(row.flags));
    args.extend(strings(&[
        "--n",
        &n.to_string(),
        "--seed",
        &(a.seed + 1).to_string(),
        "--classifier",
    ]));
    args.push(classifier.display().to_string());
    if let Some(p) = &a.inception {
        args.extend(["--inception".to_string(), p.display().to_string()]);
    }
    let Command::Eval(e) = parse(&args)?.command else {
        unreachable!("parsed as eval")
    };
    super::eval_cmd::measure(&e, false)
}

fn markdown(rows: &[(&Row, Value)]) -> String {
    let mut md = String::from(
        "| variant | sampler | NFE | time per image | FID | classifier FID | recall | classes present | accuracy |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (row, r) in rows {
        let c = &r["classifier"];
        let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let accuracy = c["accuracy"]
            .as_f64()
            .map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
        md += &format!(
            "| {} | {} | {} | {:.0} ms | {:.1} | {:.1} | {:.2} | {}/{} | {accuracy} |\n",
            row.variant,
            r["sampler"].as_str().unwrap_or_default(),
            r["nfe_per_image"],
            1000.0 * num(&r["sampling_seconds_per_image"]),
            num(&r["fid"]),
            num(&c["fid"]),
            num(&r["recall"]),
            c["classes_present"],
            c["num_classes"],
        );
    }
    md
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let only: Option<Vec<&str>> = a.only.as_deref().map(|s| s.split(',').map(str::trim).collect());
    if let Some(names) = &only
        && let Some(bad) = names.iter().find(|n| !ROWS.iter().any(|r| r.name == **n))
    {
        bail!("--only: no row '{bad}' (rows: ddpm, ddim, latent, cfg, em, pc, ode)");
    }
    if a.n < 2 {
        bail!("--n must be at least 2");
    }
    // Fail on missing weights before hours of training.
    diffuse::fid::locate_weights(a.inception.as_deref())?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let data = diffuse::data::Dataset::load(&a.data, diffuse::data::Split::Test)?;
    if data.num_classes() < 2 {
        bail!("{} has no class labels; compare needs labelled data", a.data);
    }
    let clf = classifier(&a)?;
    let mut measured = Vec::new();
    for row in ROWS
        .iter()
        .filter(|r| only.as_ref().is_none_or(|o| o.contains(&r.name)))
    {
        let run = prepare(&a, row.run)?;
        eprintln!("compare: {} ({})", row.variant, row.flags.join(" "));
        measured.push((row, measure(&a, row, &run, &clf, data.num_classes())?));
    }
    let md = markdown(&measured);
    print!("{md}");
    let json: Vec<Value> = measured
        .iter()
        .map(|(row, r)| json!({"row": row.name, "variant": row.variant, "eval": r}))
        .collect();
    let points: Vec<[(f64, f64); 1]> = measured
        .iter()
        .map(|(_, r)| {
            let ms = 1000.0 * r["sampling_seconds_per_image"].as_f64().unwrap_or(f64::NAN);
            [(ms, r["fid"].as_f64().unwrap_or(f64::NAN))]
        })
        .collect();
    let series: Vec<Series> = points.iter().map(|p| Series { points: p }).collect();
    let names: Vec<&str> = measured.iter().map(|(row, _)| row.name).collect();
    let png = plot::with_legend(plot::line_plot(&series, true, false), &names);
    diffuse::atomic::write(&a.out.join("compare.md"), md.as_bytes())?;
    diffuse::atomic::write(
        &a.out.join("compare.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    diffuse::imageio::write_rgb(&a.out.join("compare.png"), png)?;
    eprintln!(
        "compare: {} rows of {} images; written {}/compare.{{md,json,png}} (the PNG: FID against milliseconds per \
         image, log scale)",
        measured.len(),
        a.n,
        a.out.display()
    );
    Ok(())
}
