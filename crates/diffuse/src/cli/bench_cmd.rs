//! `diffuse bench`: training-step and inference timings of the reference UNet and the default models,
//! optionally interleaved with the PyTorch reference script and reported as ratios.

use super::precision_args::PrecisionArg;
use anyhow::bail;
use clap::Args;
use diffuse::bench::{self, BenchConfig, Timing};
use diffuse::kernels::matmul::{Precision, with_precision};
use diffuse::nn::{NetConfig, UNetConfig};
use diffuse::run::RunConfig;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse bench\n  \
diffuse bench --reference-unet --json\n  \
diffuse bench --reference-unet --torch /work/venv/bin/python --rounds 3\n  \
diffuse bench --run runs/digits\n  diffuse bench --image 1x64x64 --batch 128 --warmup 1 --repeats 3\n\n\
The PyTorch side is `PYTHON SCRIPT BATCH [--torch-arg …]`; SCRIPT defaults to reference/ref_unet.py in the \
shared folder ($DIFFUSE_SHARED, else ../shared). burn uses every core (RAYON_NUM_THREADS limits it); the \
reference script uses two threads.")]
pub struct BenchArgs {
    /// Only the port of the PyTorch reference UNet (6,339,587 parameters, 3×32×32).
    #[arg(long, conflicts_with = "run")]
    reference_unet: bool,
    /// Only the network of this run directory.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Only the default network (`diffuse train`'s) for images of this shape, CxHxW (e.g. 1x64x64): one process
    /// per shape gives each its own peak memory.
    #[arg(long, value_name = "CxHxW", conflicts_with_all = ["run", "reference_unet"], value_parser = parse_image)]
    image: Option<[usize; 3]>,
    /// Training batch size (inference uses 64, as the reference script does).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Untimed training steps before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Rounds, alternating with PyTorch when --torch is given; the median over rounds is reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// A Python interpreter with PyTorch: run the reference script in the same invocation and print ratios.
    #[arg(long, value_name = "PYTHON")]
    torch: Option<String>,
    /// The PyTorch benchmark script (default: reference/ref_unet.py of the shared folder).
    #[arg(long, value_name = "PATH", requires = "torch")]
    torch_script: Option<PathBuf>,
    /// Extra argument for the script, after the batch size (repeatable).
    #[arg(long, value_name = "ARG", requires = "torch", allow_hyphen_values = true)]
    torch_arg: Vec<String>,
    /// Train with burn's gradient checkpointing (memory-bound activations recomputed in the backward pass).
    #[arg(long)]
    gradient_checkpointing: bool,
    #[command(flatten)]
    precision: PrecisionArg,
    /// Print JSON: one object for --reference-unet, else an array.
    #[arg(long)]
    json: bool,
}

/// `CxHxW`, each at least 1.
fn parse_image(text: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = text
        .split(['x', '×'])
        .map(|d| d.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{text}` is not CxHxW"))?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(format!("`{text}` is not CxHxW with three positive sizes")),
    }
}

fn reference_script() -> PathBuf {
    diffuse::fetch::shared_dir().join("reference/ref_unet.py")
}

fn models(a: &BenchArgs) -> anyhow::Result<Vec<(String, UNetConfig)>> {
    if let Some(dir) = &a.run {
        return match RunConfig::read(dir)?.net {
            NetConfig::Unet(u) => Ok(vec![(dir.display().to_string(), u)]),
            other => bail!(
                "{} holds a {}; the benchmark times UNets",
                dir.display(),
                other.describe()
            ),
        };
    }
    if let Some([c, h, w]) = a.image {
        return Ok(vec![(
            format!("default, {c}×{h}×{w}"),
            UNetConfig::recommended(c, h, w),
        )]);
    }
    let mut list = vec![("reference UNet (ref_unet.py)".to_string(), UNetConfig::reference())];
    if !a.reference_unet {
        for (name, c, h) in [
            ("default, digits 1×8×8", 1, 8),
            ("default, MNIST 1×28×28", 1, 28),
            ("default, emoji 3×32×32", 3, 32),
        ] {
            list.push((name.to_string(), UNetConfig::recommended(c, h, h)));
        }
    }
    Ok(list)
}

fn ratio(ours: &Timing, torch: &Timing) -> serde_json::Value {
    let rss = ours.peak_rss_mb.zip(torch.peak_rss_mb).map(|(a, b)| a / b);
    json!({
        "train_step": ours.train_step_ms / torch.train_step_ms,
        "infer_b64": ours.infer_b64_ms / torch.infer_b64_ms,
        "peak_rss": rss,
    })
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let precision = a.precision.resolve();
    with_precision(precision, || bench_in(a, precision))
}

fn bench_in(a: BenchArgs, precision: Precision) -> anyhow::Result<()> {
    let cfg = BenchConfig {
        train_batch: a.batch,
        warmup: a.warmup,
        repeats: a.repeats,
        seed: 0,
        checkpointing: a.gradient_checkpointing,
    };
    let script = a.torch_script.clone().unwrap_or_else(reference_script);
    let device = format!("{:?}", diffuse::device::device());
    let mut rows = Vec::new();
    for (name, net) in models(&a)? {
        let is_reference = net == UNetConfig::reference();
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for round in 0..a.rounds {
            // Interleaved, so that a slow spell of the machine touches both sides alike.
            if let (Some(python), true) = (&a.torch, is_reference) {
                let t = bench::torch(python, &script, a.batch, &a.torch_arg)?;
                if !a.json {
                    eprintln!("round {}: PyTorch {t:?}", round + 1);
                }
                theirs.push(t);
            }
            let t = bench::unet(&net, &cfg)?;
            if !a.json {
                eprintln!("round {}: diffuse {t:?}", round + 1);
            }
            ours.push(t);
        }
        let ours = bench::median(&ours);
        let mut row = json!({
            "model": name,
            "device": device,
            "params": ours.params,
            "train_batch": a.batch,
            "train_step_ms": ours.train_step_ms,
            "infer_b64_ms": ours.infer_b64_ms,
            "peak_rss_mb": ours.peak_rss_mb,
            "rounds": a.rounds,
            "gradient_checkpointing": a.gradient_checkpointing,
            "precision": format!("{precision:?}").to_lowercase(),
        });
        if !theirs.is_empty() {
            let theirs = bench::median(&theirs);
            if theirs.params != ours.params {
                bail!(
                    "the PyTorch model has {} parameters, the port {}",
                    theirs.params,
                    ours.params
                );
            }
            row["ratio"] = ratio(&ours, &theirs);
            row["torch"] = serde_json::to_value(&theirs)?;
        }
        rows.push(row);
    }
    if a.json {
        let out = if a.reference_unet { rows[0].clone() } else { json!(rows) };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[serde_json::Value]) {
    let ms = |v: &serde_json::Value| v.as_f64().map_or("–".into(), |x| format!("{x:.1}"));
    let mb = |v: &serde_json::Value| v.as_f64().map_or("–".into(), |x| format!("{x:.0}"));
    println!(
        "device: {}, precision {}",
        rows[0]["device"].as_str().unwrap_or("?"),
        rows[0]["precision"].as_str().unwrap_or("?")
    );
    println!(
        "| model | params | train step (ms, batch {}) | inference (ms, batch 64) | peak RSS (MB) |",
        rows[0]["train_batch"]
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r["model"].as_str().unwrap_or("?"),
            r["params"],
            ms(&r["train_step_ms"]),
            ms(&r["infer_b64_ms"]),
            mb(&r["peak_rss_mb"])
        );
        if let Some(t) = r.get("torch") {
            let x = |k: &str| r["ratio"][k].as_f64().map_or("–".into(), |v| format!("{v:.2}×"));
            println!(
                "| PyTorch reference | {} | {} | {} | {} |",
                t["params"],
                ms(&t["train_step_ms"]),
                ms(&t["infer_b64_ms"]),
                mb(&t["peak_rss_mb"])
            );
            println!(
                "| ratio diffuse / PyTorch | | {} | {} | {} |",
                x("train_step"),
                x("infer_b64"),
                x("peak_rss")
            );
        }
    }
}
