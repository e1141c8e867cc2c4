//! `diffuse lab`: a sampler against an exact 1-D target, measured; and sweeps of w1 against NFE.

use super::parse_list;
use super::sampler_args::{SamplerArgs, SamplerName, SolverName};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use diffuse::denoise::ExactDenoiser;
use diffuse::plot::{COLOURS, Series, line_plot};
use diffuse::sample::{self, Plan};
use diffuse_math::dist::{Target, quantiles};
use diffuse_math::{BetaSchedule, NoiseSchedule};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetName {
    Gaussian,
    Mixture,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse lab --target gaussian --data-mean 0.1 --data-std 0.8 --sampler ddim --steps 20 --timestep-spacing leading --json\n  \
diffuse lab --target mixture --means -1,1.5 --weights 0.3,0.7 --data-std 0.3 --sampler pc --sde ve --steps 1000 --json\n  \
diffuse lab --target mixture --means -1,1.5 --weights 0.3,0.7 --data-std 0.3 \\\n      \
--sweep ddim,dpmpp-2m,ddpm,euler-maruyama,pc,ode --table lab.md --plot lab.png")]
pub struct LabArgs {
    /// The data distribution the exact denoiser knows: gaussian or mixture.
    #[arg(long, value_enum, default_value = "gaussian")]
    target: TargetName,
    /// Mean of the Gaussian target.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    data_mean: f64,
    /// Standard deviation of the Gaussian target, or of each mixture component.
    #[arg(long, default_value_t = 1.0)]
    data_std: f64,
    /// Mixture component means, e.g. -1,1.5.
    #[arg(long, allow_hyphen_values = true)]
    means: Option<String>,
    /// Mixture weights (normalised), e.g. 0.3,0.7.
    #[arg(long)]
    weights: Option<String>,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Discrete schedule for ddpm, ddim and dpmpp-2m: linear | scaled-linear | cosine | sigmoid.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Train timesteps of that schedule.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// Independent 1-D draws (where a sampler needs a norm, as the Langevin step does, they form one sample).
    #[arg(long, default_value_t = 65536)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON object: mean, std, nfe, w1, quantiles, and the target's.
    #[arg(long)]
    json: bool,
    /// Sweep these samplers (comma-separated names) over --sweep-steps instead of one run; rk45 sweeps tolerance.
    #[arg(long)]
    sweep: Option<String>,
    /// Step counts of the sweep.
    #[arg(long, default_value = "10,20,50,100,200,500,1000")]
    sweep_steps: String,
    /// Write the sweep's markdown table here.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Write the sweep's plot (W1 against NFE, log-log, one colour per sampler) here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

const PROBS: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

struct Outcome {
    mean: f64,
    std: f64,
    nfe: usize,
    w1: f64,
    quantiles: Vec<f64>,
    seconds: f64,
}

fn target(a: &LabArgs) -> anyhow::Result<Target> {
    Ok(match a.target {
        TargetName::Gaussian => Target::gaussian(a.data_mean, a.data_std)?,
        TargetName::Mixture => {
            let means = parse_list::<f64>(a.means.as_deref().context("--target mixture needs --means")?)
                .map_err(anyhow::Error::msg)?;
            let weights = match &a.weights {
                Some(w) => parse_list::<f64>(w).map_err(anyhow::Error::msg)?,
                None => vec![1.0; means.len()],
            };
            Target::mixture(means, weights, a.data_std)?
        }
    })
}

fn measure(target: &Target, plan: &Plan, n: usize, seed: u64) -> Outcome {
    let device = diffuse::device::device();
    let den = ExactDenoiser { target: target.clone() };
    let started = Instant::now();
    let (x, mut streams) = sample::start(seed, 0, 1, [1, 1, n], plan.prior_std(), &device);
    let s = sample::run(&den, plan, x, &mut streams, &[], &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let v: Vec<f64> = sample::to_vec(s.x).into_iter().map(|x| x as f64).collect();
    let mean = v.iter().sum::<f64>() / n as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    Outcome {
        mean,
        std,
        nfe: s.nfe,
        w1: target.w1(&v),
        quantiles: quantiles(&v, &PROBS),
        seconds,
    }
}

/// `n` independent draws from the target (component by weight, then its Gaussian).
fn exact_draws(target: &Target, n: usize, seed: u64) -> Vec<f64> {
    use rand::Rng;
    let mut r = diffuse::rng::stream(seed ^ 0x00f1_000d, 0);
    let z = diffuse::rng::normals(&mut r, n);
    z.iter()
        .map(|&z| {
            let u: f64 = r.random();
            let mut acc = 0.0;
            let k = target.weights.iter().position(|w| {
                acc += w;
                u < acc
            });
            target.means[k.unwrap_or(target.means.len() - 1)] + target.std * z as f64
        })
        .collect()
}

pub fn lab(a: LabArgs) -> anyhow::Result<()> {
    if a.samples < 2 {
        bail!("--samples must be at least 2");
    }
    let target = target(&a)?;
    let schedule = NoiseSchedule::with_defaults(a.schedule.parse::<BetaSchedule>()?, a.timesteps)?;
    if let Some(list) = &a.sweep {
        return sweep(&a, &target, &schedule, list);
    }
    let plan = a.sampler.plan(&schedule, None)?;
    let o = measure(&target, &plan, a.samples, a.seed);
    let target_q: Vec<f64> = PROBS.iter().map(|&p| target.quantile(p)).collect();
    if a.json {
        let q = |v: &[f64]| {
            PROBS
                .iter()
                .zip(v)
                .map(|(p, x)| (p.to_string(), json!(x)))
                .collect::<serde_json::Map<_, _>>()
        };
        let out = json!({
            "sampler": a.sampler.describe(&plan),
            "samples": a.samples,
            "mean": o.mean, "std": o.std, "nfe": o.nfe, "w1": o.w1, "quantiles": q(&o.quantiles),
            "seconds": o.seconds,
            "target": { "mean": target.mean(), "std": target.std_dev(), "quantiles": q(&target_q) },
        });
        println!("{out}");
    } else {
        println!(
            "{} on {} samples: NFE {}, {:.2} s",
            a.sampler.describe(&plan),
            a.samples,
            o.nfe,
            o.seconds
        );
        println!(
            "  mean {:.5} (target {:.5}), std {:.5} (target {:.5}), W1 {:.5}",
            o.mean,
            target.mean(),
            o.std,
            target.std_dev(),
            o.w1
        );
        for ((p, q), t) in PROBS.iter().zip(&o.quantiles).zip(&target_q) {
            println!("  quantile {p:<4}: {q:>9.5} (target {t:>9.5})");
        }
    }
    Ok(())
}

fn sweep(a: &LabArgs, target: &Target, schedule: &NoiseSchedule, list: &str) -> anyhow::Result<()> {
    let steps = parse_list::<usize>(&a.sweep_steps).map_err(anyhow::Error::msg)?;
    let mut rows = String::from(
        "| sampler | steps / tolerance | NFE | W1 | std (target {ts:.4}) | seconds |\n|---|---|---|---|---|---|\n",
    )
    .replace("{ts:.4}", &format!("{:.4}", target.std_dev()));
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let sampler = SamplerName::from_str(name, true).map_err(|e| anyhow::anyhow!("--sweep: {e}"))?;
        let mut args = a.sampler.clone();
        args.sampler = sampler;
        let rk45 = sampler == SamplerName::Ode && matches!(args.ode_solver, SolverName::Rk45);
        let settings: Vec<(String, SamplerArgs)> = if rk45 {
            [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
                .iter()
                .map(|&tol| {
                    (
                        format!("tol {tol:e}"),
                        SamplerArgs {
                            rtol: tol,
                            atol: tol,
                            ..args.clone()
                        },
                    )
                })
                .collect()
        } else {
            steps
                .iter()
                .map(|&k| {
                    (
                        k.to_string(),
                        SamplerArgs {
                            steps: k,
                            ..args.clone()
                        },
                    )
                })
                .collect()
        };
        let mut curve = Vec::new();
        for (label, s) in settings {
            let plan = match s.plan(schedule, None) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skipping {name} at {label}: {e}");
                    continue;
                }
            };
            let o = measure(target, &plan, a.samples, a.seed);
            eprintln!(
                "{name:>18} {label:>10}: NFE {:>5}  W1 {:.5}  std {:.4}",
                o.nfe, o.w1, o.std
            );
            rows.push_str(&format!(
                "| {name} | {label} | {} | {:.5} | {:.4} | {:.2} |\n",
                o.nfe, o.w1, o.std, o.seconds
            ));
            curve.push((o.nfe as f64, o.w1));
        }
        curves.push((name.to_string(), curve));
    }
    // The floor: the W1 of exact draws from the target, the same number of them.
    let floor = target.w1(&exact_draws(target, a.samples, a.seed));
    rows.push_str(&format!(
        "| exact draws from the target (sampling floor) | | 0 | {floor:.5} | | |\n"
    ));
    eprintln!("W1 of {} exact draws from the target: {floor:.5}", a.samples);
    let legend: Vec<String> = curves
        .iter()
        .enumerate()
        .map(|(i, (n, _))| format!("{n}: colour {}", i % COLOURS.len()))
        .collect();
    println!("{rows}");
    if let Some(path) = &a.table {
        diffuse::atomic::write(path, rows.as_bytes())?;
    }
    if let Some(path) = &a.plot {
        let logged: Vec<Vec<(f64, f64)>> = curves
            .iter()
            .map(|(_, c)| c.iter().map(|&(x, y)| (x.log10(), y)).collect())
            .collect();
        let series: Vec<Series> = logged.iter().map(|p| Series { points: p }).collect();
        let names: Vec<&str> = curves.iter().map(|(n, _)| n.as_str()).collect();
        diffuse::imageio::write_rgb(path, diffuse::plot::with_legend(line_plot(&series, true, true), &names))?;
        eprintln!("plot: W1 against NFE, both log scale; {}", legend.join(", "));
    }
    Ok(())
}
