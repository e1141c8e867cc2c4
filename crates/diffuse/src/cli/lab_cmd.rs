//! `diffuse lab`: a sampler against an exact 1-D target, measured; and sweeps of w1 against NFE.

use super::parse_list;
use super::sampler_args::SamplerArgs;
use super::schedule_flags::ScheduleFlags;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use diffuse::denoise::ExactDenoiser;
use diffuse::plot::{Axes, Series, line_plot};
use diffuse::sample::{self, Plan, Process};
use diffuse_math::NoiseSchedule;
use diffuse_math::dist::{Target, quantiles};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum TargetName {
    /// N(m, s²) in 1-D.
    Gaussian,
    /// Σ w_k N(μ_k, s²) in 1-D.
    Mixture,
    /// 2-D: --components Gaussians evenly on a circle of radius 2.
    Ring,
    /// 2-D: a square grid of about --components Gaussians, spacing 1, centred.
    Grid,
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
    /// Standard deviation of the Gaussian target, or of each mixture component (default 1; 0.1 for ring, grid).
    #[arg(long)]
    data_std: Option<f64>,
    /// Components of the ring and grid targets.
    #[arg(long, default_value_t = 8)]
    components: usize,
    /// Write a scatter plot of 2-D samples here (ring, grid).
    #[arg(long)]
    scatter: Option<PathBuf>,
    /// Mixture component means, e.g. -1,1.5.
    #[arg(long, allow_hyphen_values = true)]
    means: Option<String>,
    /// Mixture weights (normalised), e.g. 0.3,0.7.
    #[arg(long)]
    weights: Option<String>,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// The discrete schedule of ddpm, ddim and dpmpp-2m.
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Independent 1-D draws (where a sampler needs a norm, as the Langevin step does, they form one sample).
    #[arg(long, default_value_t = 65536)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON object: mean, std, nfe, w1, quantiles, and the target's.
    #[arg(long)]
    json: bool,
    /// Also write that JSON object to this file (one run, not a sweep).
    #[arg(long, value_name = "PATH", conflicts_with = "sweep")]
    json_out: Option<PathBuf>,
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

/// A lab target: an isotropic mixture of points in d dimensions (d = 1 for gaussian and mixture).
struct LabTarget {
    means: Vec<Vec<f64>>,
    weights: Vec<f64>,
    std: f64,
}

impl LabTarget {
    fn dims(&self) -> usize {
        self.means[0].len()
    }

    /// The 1-D marginal along `axis`: a mixture with the same weights and std.
    fn marginal(&self, axis: usize) -> Target {
        Target::mixture(
            self.means.iter().map(|m| m[axis]).collect(),
            self.weights.clone(),
            self.std,
        )
        .expect("validated when built")
    }
}

/// Per-axis statistics of a sample.
struct Axis {
    mean: f64,
    std: f64,
    w1: f64,
    quantiles: Vec<f64>,
}

struct Outcome {
    axes: Vec<Axis>,
    nfe: usize,
    seconds: f64,
    points: Vec<Vec<f64>>,
}

impl Outcome {
    /// W1 averaged over the axes' marginals.
    fn w1(&self) -> f64 {
        self.axes.iter().map(|a| a.w1).sum::<f64>() / self.axes.len() as f64
    }
}

fn target(a: &LabArgs) -> anyhow::Result<LabTarget> {
    let std = a
        .data_std
        .unwrap_or(if matches!(a.target, TargetName::Ring | TargetName::Grid) {
            0.1
        } else {
            1.0
        });
    let one_d = |t: Target| LabTarget {
        means: t.means.iter().map(|&m| vec![m]).collect(),
        weights: t.weights,
        std: t.std,
    };
    let t = match a.target {
        TargetName::Gaussian => one_d(Target::gaussian(a.data_mean, std)?),
        TargetName::Mixture => {
            let means = parse_list::<f64>(a.means.as_deref().context("--target mixture needs --means")?)
                .map_err(anyhow::Error::msg)?;
            let weights = match &a.weights {
                Some(w) => parse_list::<f64>(w).map_err(anyhow::Error::msg)?,
                None => vec![1.0; means.len()],
            };
            one_d(Target::mixture(means, weights, std)?)
        }
        TargetName::Ring | TargetName::Grid => {
            if a.components == 0 {
                bail!("--components must be at least 1");
            }
            let means: Vec<Vec<f64>> = if a.target == TargetName::Ring {
                (0..a.components)
                    .map(|k| {
                        let phi = 2.0 * std::f64::consts::PI * k as f64 / a.components as f64;
                        vec![2.0 * phi.cos(), 2.0 * phi.sin()]
                    })
                    .collect()
            } else {
                let n = (a.components as f64).sqrt().round().max(1.0) as usize;
                let c = (n as f64 - 1.0) / 2.0;
                (0..n * n)
                    .map(|k| vec![(k % n) as f64 - c, (k / n) as f64 - c])
                    .collect()
            };
            let k = means.len();
            Target::mixture(vec![0.0; k], vec![1.0; k], std)?; // validates std
            LabTarget {
                means,
                weights: vec![1.0 / k as f64; k],
                std,
            }
        }
    };
    Ok(t)
}

fn measure(target: &LabTarget, plan: &Plan, n: usize, seed: u64) -> Outcome {
    let device = diffuse::device::device();
    let den = ExactDenoiser {
        means: target.means.clone(),
        weights: target.weights.clone(),
        std: target.std,
    };
    let d = target.dims();
    let started = Instant::now();
    // One sample of n points: [1, d, 1, n], coordinates along the channels.
    let (x, mut streams) = sample::start(seed, 0, 1, [d, 1, n], plan.prior_std(), &device);
    let s = sample::run(&den, plan, x, &mut streams, Default::default(), &[], &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let flat: Vec<f64> = sample::to_vec(s.x).into_iter().map(|x| x as f64).collect();
    let points: Vec<Vec<f64>> = flat.chunks(n).map(|c| c.to_vec()).collect();
    let axes = points
        .iter()
        .enumerate()
        .map(|(axis, v)| {
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            Axis {
                mean,
                std,
                w1: target.marginal(axis).w1(v),
                quantiles: quantiles(v, &PROBS),
            }
        })
        .collect();
    Outcome {
        axes,
        nfe: s.nfe,
        seconds,
        points,
    }
}

/// `n` independent draws from the target (component by weight, then its Gaussian), per axis.
fn exact_draws(target: &LabTarget, n: usize, seed: u64) -> Vec<Vec<f64>> {
    use rand::Rng;
    let mut r = diffuse::rng::stream(seed ^ 0x00f1_000d, 0);
    let d = target.dims();
    let mut out = vec![Vec::with_capacity(n); d];
    for _ in 0..n {
        let u: f64 = r.random();
        let mut acc = 0.0;
        let k = target.weights.iter().position(|w| {
            acc += w;
            u < acc
        });
        let m = &target.means[k.unwrap_or(target.means.len() - 1)];
        let z = diffuse::rng::normals(&mut r, d);
        for (axis, col) in out.iter_mut().enumerate() {
            col.push(m[axis] + target.std * z[axis] as f64);
        }
    }
    out
}

pub fn lab(a: LabArgs) -> anyhow::Result<()> {
    if a.samples < 2 {
        bail!("--samples must be at least 2");
    }
    // Output folders must exist before minutes of sampling, not after.
    for path in [&a.table, &a.plot, &a.scatter, &a.json_out].into_iter().flatten() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            bail!("{}: the folder {} does not exist", path.display(), dir.display());
        }
    }
    let target = target(&a)?;
    let schedule = a.schedule.build()?;
    if let Some(list) = &a.sweep {
        return sweep(&a, &target, &schedule, list);
    }
    let plan = a.sampler.plan(&schedule, &Process::Discrete(schedule.clone()), None)?;
    let o = measure(&target, &plan, a.samples, a.seed);
    if let Some(path) = &a.scatter {
        if target.dims() != 2 {
            bail!("--scatter needs a 2-D target (ring, grid)");
        }
        let pts: Vec<(f64, f64)> = o.points[0].iter().zip(&o.points[1]).map(|(&x, &y)| (x, y)).collect();
        diffuse::imageio::write_rgb(path, diffuse::plot::scatter(&pts, 3.0))?;
        eprintln!("scatter: {}", path.display());
    }
    let marginals: Vec<Target> = (0..target.dims()).map(|axis| target.marginal(axis)).collect();
    let q = |v: &[f64]| {
        PROBS
            .iter()
            .zip(v)
            .map(|(p, x)| (p.to_string(), json!(x)))
            .collect::<serde_json::Map<_, _>>()
    };
    let target_q = |t: &Target| PROBS.iter().map(|&p| t.quantile(p)).collect::<Vec<f64>>();
    if a.json || a.json_out.is_some() {
        // 1-D targets report numbers; 2-D ones an array per field, one entry per axis (w1: their mean).
        let per_axis = |f: &dyn Fn(usize) -> serde_json::Value| {
            if target.dims() == 1 {
                f(0)
            } else {
                json!((0..target.dims()).map(f).collect::<Vec<_>>())
            }
        };
        let out = json!({
            "sampler": plan.describe(),
            "samples": a.samples,
            "nfe": o.nfe,
            "w1": o.w1(),
            "mean": per_axis(&|i| json!(o.axes[i].mean)),
            "std": per_axis(&|i| json!(o.axes[i].std)),
            "quantiles": per_axis(&|i| json!(q(&o.axes[i].quantiles))),
            "seconds": o.seconds,
            "target": {
                "mean": per_axis(&|i| json!(marginals[i].mean())),
                "std": per_axis(&|i| json!(marginals[i].std_dev())),
                "quantiles": per_axis(&|i| json!(q(&target_q(&marginals[i])))),
            },
        });
        if let Some(path) = &a.json_out {
            diffuse::atomic::write(path, serde_json::to_string_pretty(&out)?.as_bytes())?;
        }
        if a.json {
            println!("{out}");
            return Ok(());
        }
    }
    println!(
        "{} on {} samples: NFE {}, {:.2} s, W1 {:.5}",
        plan.describe(),
        a.samples,
        o.nfe,
        o.seconds,
        o.w1()
    );
    for (i, (ax, t)) in o.axes.iter().zip(&marginals).enumerate() {
        println!(
            "  axis {i}: mean {:.5} (target {:.5}), std {:.5} (target {:.5}), W1 {:.5}",
            ax.mean,
            t.mean(),
            ax.std,
            t.std_dev(),
            ax.w1
        );
        for ((p, qv), tv) in PROBS.iter().zip(&ax.quantiles).zip(target_q(t)) {
            println!("    quantile {p:<4}: {qv:>9.5} (target {tv:>9.5})");
        }
    }
    Ok(())
}

fn sweep(a: &LabArgs, target: &LabTarget, schedule: &NoiseSchedule, list: &str) -> anyhow::Result<()> {
    let steps = parse_list::<usize>(&a.sweep_steps).map_err(anyhow::Error::msg)?;
    let mut rows = String::from(
        "| sampler | steps / tolerance | NFE | W1 | std (target {ts:.4}) | seconds |\n|---|---|---|---|---|---|\n",
    )
    .replace("{ts:.4}", &format!("{:.4}", target.marginal(0).std_dev()));
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for name in list.split(',').map(str::trim) {
        diffuse::sample::Method::from_name(name).map_err(|e| anyhow::anyhow!("--sweep: {e}"))?;
        let mut args = a.sampler.clone();
        args.sampler = Some(name.to_string());
        let rk45 = name == "ode" && matches!(args.ode_solver.as_deref(), None | Some("rk45"));
        let settings: Vec<(String, SamplerArgs)> = if rk45 {
            [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
                .iter()
                .map(|&tol| {
                    (
                        format!("tol {tol:e}"),
                        SamplerArgs {
                            rtol: Some(tol),
                            atol: Some(tol),
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
                            steps: Some(k),
                            ..args.clone()
                        },
                    )
                })
                .collect()
        };
        let mut curve = Vec::new();
        for (label, s) in settings {
            // The sweep's flags apply to the samplers that take them.
            let plan = match s.plan_with(schedule, &Process::Discrete(schedule.clone()), None, false) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skipping {name} at {label}: {e}");
                    continue;
                }
            };
            let o = measure(target, &plan, a.samples, a.seed);
            let (w1, std) = (o.w1(), o.axes[0].std);
            eprintln!("{name:>18} {label:>10}: NFE {:>5}  W1 {w1:.5}  std {std:.4}", o.nfe);
            rows.push_str(&format!(
                "| {name} | {label} | {} | {w1:.5} | {std:.4} | {:.2} |\n",
                o.nfe, o.seconds
            ));
            curve.push((o.nfe as f64, w1));
        }
        curves.push((name.to_string(), curve));
    }
    // The floor: the W1 of exact draws from the target, the same number of them.
    let draws = exact_draws(target, a.samples, a.seed);
    let floor = draws
        .iter()
        .enumerate()
        .map(|(i, v)| target.marginal(i).w1(v))
        .sum::<f64>()
        / draws.len() as f64;
    rows.push_str(&format!(
        "| exact draws from the target (sampling floor) | | 0 | {floor:.5} | | |\n"
    ));
    eprintln!("W1 of {} exact draws from the target: {floor:.5}", a.samples);
    println!("{rows}");
    if let Some(path) = &a.table {
        diffuse::atomic::write(path, rows.as_bytes())?;
        eprintln!("table: {}", path.display());
    }
    if let Some(path) = &a.plot {
        // The floor as a flat line across the NFE range swept.
        let nfes = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0));
        let (lo, hi) = nfes.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
        let floor_line = [(lo, floor), (hi, floor)];
        let mut series: Vec<Series> = curves.iter().map(|(name, points)| Series::new(name, points)).collect();
        series.push(Series::new("exact draws (floor)", &floor_line).in_colour([0, 0, 0]));
        let axes = Axes {
            x: "network evaluations per sample (NFE)",
            y: "1-Wasserstein distance to the target",
            log_x: true,
            log_y: true,
        };
        diffuse::imageio::write_rgb(path, line_plot(&series, &axes))?;
        eprintln!("plot: {} (W1 against NFE, both log scale)", path.display());
    }
    Ok(())
}
