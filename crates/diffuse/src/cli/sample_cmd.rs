use super::guide_args::GuideArgs;
use super::precision_args::PrecisionArg;
use super::sampler_args::SamplerArgs;
use anyhow::{Context, bail};
use clap::Args;
use diffuse::generate;
use diffuse::kernels::matmul::with_precision;
use diffuse::run::{self, Weights};
use diffuse::{imageio, safetensors_io};
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  diffuse sample --run runs/digits --sampler ddpm --steps 1000 --n 64 --seed 0 --out-dir runs/out/ddpm --grid runs/out/ddpm.png\n  \
diffuse sample --run runs/digits --sampler ddim --steps 50 --eta 0 --n 64 --seed 0 --out-dir runs/out/ddim --strip runs/out/strip.png"
)]
pub struct SampleArgs {
    #[command(flatten)]
    draw: DrawArgs,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Folder for the images, written as 00000.png, 00001.png, … at native resolution.
    #[arg(long)]
    out_dir: PathBuf,
    /// Also write an upscaled grid of all images.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Also write a denoising strip: x̂₀ of the first 8 images at 10 points of the trajectory, then the result.
    #[arg(long)]
    strip: Option<PathBuf>,
    /// 3-D point runs: also write a mesh of the cloud (PLY with quad faces): the surface where the points'
    /// density crosses the level all but 0.1% of them exceed, by surface nets on a 48³ grid.
    #[arg(long, value_name = "PLY")]
    mesh: Option<PathBuf>,
    /// Width of the density kernels of --mesh: wider closes more (0.25 fills the torus's hole).
    #[arg(long, default_value_t = diffuse::mesh::BANDWIDTH, requires = "mesh")]
    mesh_bandwidth: f64,
    /// Start from this noise (a safetensors file with one f32 tensor [n, c, h, w]) instead of the seed's.
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Do not clamp x̂₀ to [-1, 1] at each step (never done for latent runs and points).
    #[arg(long)]
    no_clip: bool,
}

/// How images are drawn from a run: the flags `sample`, `eval` and `edit` share.
#[derive(Args)]
pub(super) struct DrawArgs {
    /// A run directory written by `diffuse train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// Seed: image i is the same for any --n and --batch-size.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub guide: GuideArgs,
    /// Images per network call (default: for `sample` and `eval`, the fastest of 8, 16, … 256 on this machine,
    /// found by timing one call of each; 64 for `edit`). Images do not depend on it.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Sample with the EMA weights or the raw ones.
    #[arg(long, default_value = "ema", value_parser = super::one_of::<Weights>(Weights::NAMES))]
    pub weights: Weights,
    #[command(flatten)]
    pub precision: PrecisionArg,
}

impl DrawArgs {
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    pub fn load(&self) -> anyhow::Result<run::LoadedRun> {
        Ok(run::load(&self.run, self.weights, &diffuse::device::device())?)
    }
}

fn read_noise(path: &Path, n: usize, shape: [usize; 3]) -> anyhow::Result<Vec<f32>> {
    let c = safetensors_io::read(path)?;
    let tensors: Vec<_> = c.groups.values().flat_map(|g| g.values()).collect();
    let [t] = tensors.as_slice() else {
        bail!(
            "{}: expected exactly one f32 tensor, found {}",
            path.display(),
            tensors.len()
        );
    };
    let want = vec![n, shape[0], shape[1], shape[2]];
    if t.shape != want {
        bail!(
            "{}: noise has shape {:?}, need {want:?} (--n images of the run's size)",
            path.display(),
            t.shape
        );
    }
    if t.data.iter().any(|v| !v.is_finite()) {
        bail!("{}: noise holds non-finite values", path.display());
    }
    Ok(t.data.clone())
}

/// What the flags ask of a loaded run: `n` images (or `n` per class); `noise_from` replaces the seed's starting
/// noise, `strip` keeps x̂₀ of the first batch at ten points of the trajectory. Returns the request and the
/// rows of a per-class grid (1 without classes).
fn request(
    run: &run::LoadedRun,
    a: &DrawArgs,
    n: usize,
    no_clip: bool,
    noise_from: Option<&Path>,
    strip: bool,
) -> anyhow::Result<(generate::Request, usize)> {
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let cfg = &run.config;
    let (cond, rows) = a.guide.cond(n, run)?;
    let shape = [cfg.channels, cfg.height, cfg.width];
    let total = cond.items().unwrap_or(n);
    let request = generate::Request {
        plan: a.sampler.plan_for(run)?,
        guidance: a.guide.guidance()?,
        n,
        seed: a.seed,
        batch_size: match a.batch_size {
            Some(0) => bail!("--batch-size must be at least 1"),
            Some(b) => b,
            None => {
                let den = run.denoiser(a.guide.guidance()?);
                let probe = || diffuse::sample::fastest_batch(&den, total, shape, &cond, &diffuse::device::device());
                with_precision(a.precision.resolve(), probe)
            }
        },
        init_noise: noise_from.map(|p| read_noise(p, total, shape)).transpose()?,
        no_clip,
        strip,
        progress: true,
        cond,
    };
    Ok((request, rows))
}

/// Draws `n` images (or `n` per class) of a loaded run as the flags say.
pub(super) fn draw_samples(run: &run::LoadedRun, a: &DrawArgs, n: usize) -> anyhow::Result<generate::Samples> {
    let (request, _) = request(run, a, n, false, None, false)?;
    Ok(with_precision(a.precision.resolve(), || generate::draw(run, &request))?)
}

pub fn sample(a: SampleArgs) -> anyhow::Result<()> {
    let run = a.draw.load()?;
    let cfg = &run.config;
    let (request, rows) = request(
        &run,
        &a.draw,
        a.n,
        a.no_clip,
        a.init_noise.as_deref(),
        a.strip.is_some(),
    )?;
    super::fresh_out_dir(&a.out_dir)?;
    let drawn = with_precision(a.draw.precision.resolve(), || generate::draw(&run, &request))?;
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let (images, strip, n) = (&drawn.images, &drawn.strip, drawn.n);
    let (secs, decode_secs) = (drawn.secs, drawn.decode_secs);
    let [c, h, w] = cfg.output_shape();
    let per = c * h * w;
    if cfg.is_points() {
        // Point clouds: one CSV row per point, the same as PLY vertices, and the grid is a picture of the cloud.
        let mut csv = String::new();
        for p in images.chunks(c) {
            csv.push_str(&p.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
            csv.push('\n');
        }
        diffuse::atomic::write(&a.out_dir.join("points.csv"), csv.as_bytes())?;
        if (2..=3).contains(&c) {
            let ply = diffuse::data::points::to_ply(images, c)?;
            diffuse::atomic::write(&a.out_dir.join("points.ply"), ply.as_bytes())?;
        }
        if let Some(grid) = &a.grid {
            imageio::write_rgb(grid, diffuse::plot::point_cloud(images, c))?;
            eprintln!("grid: {}", grid.display());
        }
        if let Some(path) = &a.mesh {
            use diffuse::mesh;
            if c != 3 {
                bail!("--mesh needs a 3-D point run; this one has {c} coordinates");
            }
            let m = mesh::from_points(images, mesh::GRID, a.mesh_bandwidth, mesh::INSIDE)?;
            diffuse::atomic::write(path, m.to_ply().as_bytes())?;
            eprintln!(
                "mesh: {} ({} vertices, {} quads, Euler characteristic {})",
                path.display(),
                m.vertices.len(),
                m.quads.len(),
                m.euler_characteristic()
            );
        }
    } else {
        for i in 0..n {
            imageio::write_png(
                &a.out_dir.join(format!("{i:05}.png")),
                &images[i * per..(i + 1) * per],
                c,
                h,
                w,
            )?;
        }
        if let Some(grid) = &a.grid {
            let cols = if rows > 1 {
                a.n
            } else {
                (n as f64).sqrt().ceil() as usize
            };
            imageio::write_grid(grid, images, n, c, h, w, cols)?;
            eprintln!("grid: {}", grid.display());
        }
    }
    if let Some(path) = &a.strip {
        // Rows: images; columns: x̂₀ at the kept steps, then the final sample.
        let rows = n.min(8).min(request.batch_size);
        let cols = strip.len() + 1;
        let mut tiles = Vec::with_capacity(rows * cols * per);
        for r in 0..rows {
            for x0 in strip {
                tiles.extend_from_slice(&x0[r * per..(r + 1) * per]);
            }
            tiles.extend_from_slice(&images[r * per..(r + 1) * per]);
        }
        imageio::write_grid(path, &tiles, rows * cols, c, h, w, cols)?;
        eprintln!("strip: {}", path.display());
    }
    let nfe = drawn.nfe;
    let decoded = if run.latent.is_some() {
        format!(" (VAE decoding {decode_secs:.2} s of it)")
    } else {
        String::new()
    };
    println!(
        "{} images with {} (NFE {nfe} per image, batches of {}) in {:.2} s{decoded}: {:.1} images/s, {:.1} NFE/s; written to {}",
        n,
        drawn.describe,
        request.batch_size,
        secs,
        n as f64 / secs,
        (n * nfe) as f64 / (secs - decode_secs).max(1e-9),
        a.out_dir.display()
    );
    Ok(())
}
