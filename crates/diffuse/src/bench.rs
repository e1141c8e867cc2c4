//! Timings of a UNet as the PyTorch reference script takes them (`reference/ref_unet.py` in the shared
//! folder): a training step (forward, MSE against noise, backward, AdamW at lr 2e-4) at one batch size and a
//! forward pass without the autodiff tape at batch 64, each the median of timed repeats after warm-up, and the
//! process's peak resident memory. Inputs are seeded: x and the target noise standard normal, t uniform
//! integers in [0, 1000).

use crate::nn::UNetConfig;
use crate::{Error, Result, rng};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::Rng;
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The reference script's inference batch size, fixed by it.
pub const INFER_BATCH: usize = 64;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub train_batch: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub seed: u64,
    /// Recompute memory-bound activations in the backward pass instead of keeping them (burn's balanced
    /// gradient checkpointing).
    pub checkpointing: bool,
}

impl Default for BenchConfig {
    /// The reference script's protocol: batch 32, two warm-up steps, median of five.
    fn default() -> Self {
        Self {
            train_batch: 32,
            warmup: 2,
            repeats: 5,
            seed: 0,
            checkpointing: false,
        }
    }
}

/// One measurement; the field names are those the reference script prints.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub params: usize,
    pub train_step_ms: f64,
    pub infer_b64_ms: f64,
    /// Peak resident memory of the whole process so far (Linux only).
    pub peak_rss_mb: Option<f64>,
}

fn inputs(cfg: &UNetConfig, batch: usize, seed: u64, stream: u64, device: &Device) -> (Tensor<4>, Tensor<1>) {
    let shape = [batch, cfg.in_channels, cfg.height, cfg.width];
    let mut g = rng::stream(seed, stream);
    let x = rng::normals(&mut g, shape.iter().product());
    let t: Vec<f32> = (0..batch).map(|_| g.random_range(0..1000) as f32).collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(t, [batch]), device),
    )
}

/// The middle value (the upper one of an even count).
fn middle(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `f` `warmup` times, then times it `repeats` times; the device is synchronised inside each timing so
/// that an asynchronous (GPU) backend is measured to the end of its work.
fn time(warmup: usize, repeats: usize, device: &Device, mut f: impl FnMut()) -> Result<f64> {
    let sync = || {
        device
            .sync()
            .map_err(|e| Error::Config(format!("device failed: {e:?}")))
    };
    for _ in 0..warmup {
        f();
    }
    sync()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f();
        sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(middle(times) * 1e3)
}

/// Measures one UNet shape with freshly initialised weights.
pub fn unet(net: &UNetConfig, bench: &BenchConfig) -> Result<Timing> {
    if bench.train_batch == 0 || bench.repeats == 0 {
        return Err(Error::Config(
            "benchmark batch size and repeats must be positive".into(),
        ));
    }
    if net.context_dim.is_some() {
        return Err(Error::Config(
            "the benchmark times UNets without a text context (cross-attention is not timed yet)".into(),
        ));
    }
    net.validate()?;
    let device = crate::device::train_device_with(bench.checkpointing);
    let model = crate::device::init_seeded(bench.seed, &device, |d| net.init(d).expect("validated"));
    let params = model.num_params();
    let mut model = Some(model);
    // PyTorch's AdamW defaults, as the reference script uses them.
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let (x, t) = inputs(net, bench.train_batch, bench.seed, 0, &device);
    let (noise, _) = inputs(net, bench.train_batch, bench.seed, 1, &device);
    let train_step_ms = time(bench.warmup, bench.repeats, &device, || {
        let m = model.take().expect("model is put back after each step");
        let loss = (m.forward(x.clone(), t.clone(), None) - noise.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(2e-4, m, grads));
    })?;
    let eval = model.expect("model is put back after each step").valid();
    let device = crate::device::device();
    let (xb, tb) = inputs(net, INFER_BATCH, bench.seed, 2, &device);
    let infer_b64_ms = time(1, bench.repeats, &device, || {
        let _ = eval.forward(xb.clone(), tb.clone(), None);
    })?;
    Ok(Timing {
        params,
        train_step_ms,
        infer_b64_ms,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// The process's peak resident set size (VmHWM), in MiB like the reference script's `ru_maxrss / 1024`.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs a PyTorch benchmark script (`python script batch extra…`) and reads the lines it prints:
/// `params N`, `train_step_ms median X`, `infer_b64_ms median X`, `peak_rss_mb X`.
pub fn torch(python: &str, script: &Path, batch: usize, extra: &[String]) -> Result<Timing> {
    if !script.is_file() {
        return Err(Error::Config(format!(
            "PyTorch benchmark script {} not found (give --torch-script, or set DIFFUSE_SHARED to the shared folder)",
            script.display()
        )));
    }
    let out = Command::new(python)
        .arg(script)
        .arg(batch.to_string())
        .args(extra)
        .output()
        .map_err(|e| Error::Config(format!("cannot run {python}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::Config(format!(
            "{python} {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )));
    }
    parse_torch(&text).ok_or_else(|| Error::Config(format!("unexpected output of {}:\n{text}", script.display())))
}

fn parse_torch(text: &str) -> Option<Timing> {
    let value = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(key))?;
        line.split_whitespace().last()?.parse().ok()
    };
    Some(Timing {
        params: value("params")? as usize,
        train_step_ms: value("train_step_ms")?,
        infer_b64_ms: value("infer_b64_ms")?,
        peak_rss_mb: value("peak_rss_mb"),
    })
}

/// Median of each field over rounds (the rounds of an interleaved comparison).
pub fn median(rounds: &[Timing]) -> Timing {
    let pick = |f: &dyn Fn(&Timing) -> f64| middle(rounds.iter().map(f).collect());
    Timing {
        params: rounds[0].params,
        train_step_ms: pick(&|t| t.train_step_ms),
        infer_b64_ms: pick(&|t| t.infer_b64_ms),
        peak_rss_mb: rounds
            .iter()
            .map(|t| t.peak_rss_mb)
            .collect::<Option<Vec<_>>>()
            .map(middle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_script_output_is_read() {
        let text = "params 6339587\ntrain_step_ms median 1234.5\ninfer_b64_ms median 987.25\npeak_rss_mb 1700.5\n";
        let t = parse_torch(text).unwrap();
        assert_eq!(t.params, 6_339_587);
        assert_eq!(
            (t.train_step_ms, t.infer_b64_ms, t.peak_rss_mb),
            (1234.5, 987.25, Some(1700.5))
        );
        assert!(parse_torch("params 5\n").is_none());
    }

    #[test]
    fn a_tiny_unet_is_timed() {
        let net = UNetConfig {
            base_channels: 8,
            heads: 2,
            ..UNetConfig::for_image(1, 8, 8)
        };
        let b = BenchConfig {
            train_batch: 2,
            warmup: 1,
            repeats: 3,
            seed: 0,
            checkpointing: false,
        };
        let t = unet(&net, &b).unwrap();
        assert!(
            t.params > 1000 && t.train_step_ms > 0.0 && t.infer_b64_ms > 0.0,
            "{t:?}"
        );
        assert!(unet(&net, &BenchConfig { repeats: 0, ..b }).is_err());
    }
}
