//! `diffuse edit restore`: inverse problems (super-resolution, deblurring, denoising, colourisation, MRI from
//! undersampled k-space) solved with a trained run as the prior, beside the task's naive inverse.

use super::edit_cmd::{Common, Inputs, begin, load, read_inputs, write_all};
use anyhow::bail;
use clap::Args;
use diffuse::restore::{self, Ddrm, Degradation, Posterior, Solver, Task};
use std::time::Instant;

#[derive(Args)]
#[command(after_help = "Examples:
  diffuse edit restore --run runs/mnist --data mnist --limit 64 --task sr:4 --noise 0.05 --out-dir runs/out/sr4
  diffuse edit restore --run runs/mnist --data mnist --task mri:radial:8 --method pigdm --steps 50 --out-dir runs/out/mri8

Tasks: denoise, sr:K (K×K block means), blur:S (Gaussian, S pixels), colourise (colour runs),
mri:random:A / mri:radial:A (k-space at acceleration A: Cartesian lines with a full centre, or radial spokes).
DDRM walks the sampler's grid (--steps, --time-grid) with its own update; ΠGDM runs the sampler itself with a
posterior denoiser (one backward pass through the network per call). The measurement's noise is drawn
from --seed. Results go to OUT/restored, with OUT/original, OUT/measured and OUT/naive beside them (same
file names: `diffuse lpips --net vgg OUT/original OUT/restored --backbone …` measures LPIPS), and the
scores to OUT/scores.json.")]
pub struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// The degradation: denoise, sr:K, blur:S, colourise, mri:random:A or mri:radial:A.
    #[arg(long)]
    task: String,
    /// σ_y, the measurement noise's standard deviation in pixel units of [−1, 1].
    #[arg(long, default_value_t = 0.05)]
    noise: f64,
    /// ddrm, pigdm, or naive (the task's naive inverse only).
    #[arg(long, default_value = "ddrm", value_parser = super::one_of::<Solver>(Solver::NAMES))]
    method: Solver,
    /// DDRM's η, noise of the unmeasured and noisily measured coefficients [default: 0.85, the paper's].
    #[arg(long)]
    ddrm_eta: Option<f64>,
    /// DDRM's η_b, weight of the measurement where it is cleaner than the level [default: 1].
    #[arg(long)]
    ddrm_eta_b: Option<f64>,
    /// ΠGDM's data standard deviation σ_d in r_t² = σ_d²σ²/(σ_d² + σ²) [default: 1, the paper's].
    #[arg(long)]
    data_std: Option<f64>,
    /// Seed of the random k-space mask (mri:random).
    #[arg(long)]
    mask_seed: Option<u64>,
}

impl RestoreArgs {
    pub(super) fn common(&self) -> &Common {
        &self.common
    }
}

pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let l = load(&a.common)?;
    let (shape, _) = l.shapes();
    let task = Task::parse(&a.task)?;
    // Flags of another method or task are refused by name rather than ignored.
    let misplaced = |flag: &str, given: bool, applies: bool| -> anyhow::Result<()> {
        if given && !applies {
            bail!("{flag} does not apply to --method {} --task {}", a.method, a.task);
        }
        Ok(())
    };
    misplaced("--ddrm-eta", a.ddrm_eta.is_some(), a.method == Solver::Ddrm)?;
    misplaced("--ddrm-eta-b", a.ddrm_eta_b.is_some(), a.method == Solver::Ddrm)?;
    misplaced("--data-std", a.data_std.is_some(), a.method == Solver::Pigdm)?;
    let random_mask = matches!(
        task,
        Task::Mri {
            pattern: diffuse::restore::mri::Pattern::Random,
            ..
        }
    );
    misplaced("--mask-seed", a.mask_seed.is_some(), random_mask)?;
    let op = Degradation::new(task, shape, a.noise, a.mask_seed.unwrap_or(0))?;
    let defaults = Ddrm::default();
    let (eta, eta_b) = (
        a.ddrm_eta.unwrap_or(defaults.eta),
        a.ddrm_eta_b.unwrap_or(defaults.eta_b),
    );
    for (name, v) in [("--ddrm-eta", eta), ("--ddrm-eta-b", eta_b)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must lie in [0, 1], got {v}");
        }
    }
    let data_std = a.data_std.unwrap_or(1.0);
    if !(data_std > 0.0 && data_std.is_finite()) {
        bail!("--data-std must be positive, got {data_std}");
    }
    let method = match a.method {
        Solver::Ddrm => Some(Posterior::Ddrm(Ddrm { eta, eta_b })),
        Solver::Pigdm => Some(Posterior::Pigdm { data_std }),
        Solver::Naive => None,
    };
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    if n == 0 {
        bail!("no inputs to restore");
    }
    let started: Instant = begin(&a.common)?;
    let y = op.measure(&b.images, n, l.seed);
    let naive = op.naive(&y, n);
    let restored = match method {
        Some(m) => restore::restore(&l, &op, &y, n, m)?,
        None => naive.clone(),
    };
    let secs = started.elapsed().as_secs_f64();
    let shown = op.shown(&y, n);
    let out = &a.common.out_dir;
    for (dir, images) in [
        ("original", &b.images),
        ("measured", &shown),
        ("naive", &naive),
        ("restored", &restored),
    ] {
        write_all(&out.join(dir), &b.names, images, shape)?;
    }
    if let Some(path) = &a.common.grid {
        let k = n.min(16);
        let per = shape.iter().product::<usize>();
        let tiles: Vec<f32> = [&b.images, &shown, &naive, &restored]
            .iter()
            .flat_map(|v| v[..k * per].iter().copied())
            .collect();
        diffuse::imageio::write_grid(path, &tiles, 4 * k, shape[0], shape[1], shape[2], k)?;
        eprintln!("grid (rows: original, measured, naive, restored): {}", path.display());
    }
    let quality = |got: &[f32]| {
        let q = diffuse::vae::image_quality(&b.images, got, shape);
        (q.psnr_db, q.ssim)
    };
    let ((psnr, ssim), (naive_psnr, naive_ssim)) = (quality(&restored), quality(&naive));
    let how = match method {
        Some(m) => m.describe(&l.plan),
        None => format!("naive: {}", op.task.naive_name()),
    };
    let scores = serde_json::json!({
        "task": op.task.name(),
        "noise": a.noise,
        "acceleration": op.acceleration(),
        "method": how,
        "images": n,
        "seconds": secs,
        "restored": {"psnr": psnr, "ssim": ssim},
        "naive": {"inverse": op.task.naive_name(), "psnr": naive_psnr, "ssim": naive_ssim},
    });
    diffuse::atomic::write(
        &out.join("scores.json"),
        serde_json::to_string_pretty(&scores)?.as_bytes(),
    )?;
    let accel = op
        .acceleration()
        .map(|a| format!(", {a:.2}× undersampled"))
        .unwrap_or_default();
    println!(
        "{n} images restored ({}{accel}, σ_y = {}) with {how} in {secs:.1} s: PSNR {psnr:.2} dB, SSIM {ssim:.3}; {} {naive_psnr:.2} dB, SSIM {naive_ssim:.3}; written to {}",
        op.task.name(),
        a.noise,
        op.task.naive_name(),
        out.display()
    );
    Ok(())
}
