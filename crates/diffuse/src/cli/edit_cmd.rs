//! `diffuse edit inpaint|outpaint|sdedit|invert|interpolate`: editing images with a trained run (pixel or
//! latent). Inputs are a PNG, a folder of PNGs (each result keeps its file name), or a data set's held-out
//! split (`--data`; results in class sub-folders, so that `classifier score --images` knows their labels).

use super::guide_args::GuideArgs;
use super::sampler_args::SamplerArgs;
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use diffuse::data::{Dataset, Split};
use diffuse::denoise::{Cond, Denoiser, UNetDenoiser};
use diffuse::edit::{self, Inpaint, Mask};
use diffuse::run::{self, LoadedRun, Weights};
use diffuse::sample::{self, Plan};
use diffuse::{imageio, safetensors_io};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum EditCommand {
    /// Regenerate a masked region (RePaint-style; every sampler).
    Inpaint(InpaintArgs),
    /// Extend the canvas and generate the new border.
    Outpaint(OutpaintArgs),
    /// Noise the inputs to a level and denoise them (SDEdit).
    Sdedit(SdeditArgs),
    /// DDIM inversion (η = 0): images → noise, with the reconstruction error.
    Invert(InvertArgs),
    /// A strip of samples along a spherical interpolation between two noises (seeds or inverted images).
    Interpolate(InterpolateArgs),
}

#[derive(Args)]
pub struct Common {
    /// A run directory written by `diffuse train` (pixel or latent).
    #[arg(long)]
    run: PathBuf,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per network call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where results go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Also a grid: inputs (masked where a mask applies) in the first row, results in the second.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Conditional runs: --class K|name (or `label`: each --data input's own label) and guidance.
    #[command(flatten)]
    guide: GuideArgs,
}

#[derive(Args)]
pub struct Inputs {
    /// A PNG or a folder of PNGs.
    #[arg(long, conflicts_with = "data")]
    input: Option<PathBuf>,
    /// Or a data set's held-out split (e.g. digits).
    #[arg(long)]
    data: Option<String>,
    /// At most this many inputs.
    #[arg(long)]
    limit: Option<usize>,
}

/// RePaint's resampling, for inpainting and outpainting.
#[derive(Args)]
pub struct RepaintArgs {
    /// RePaint passes at each jump point (1: no resampling; ddpm and ddim).
    #[arg(long, default_value_t = 1)]
    resample: usize,
    /// RePaint jump length in sampler steps.
    #[arg(long, default_value_t = 10)]
    jump_length: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Naive {
    /// The mean of the kept pixels.
    Mean,
    /// Kept pixels diffused into the hole (repeated neighbour averaging).
    Blur,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit inpaint --run runs/digits --data digits --mask left-half --out-dir out/inpaint"
)]
pub struct InpaintArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// box:x,y,w,h, left-half, right-half, top-half, bottom-half, center:r, or a PNG (white = regenerate).
    #[arg(long)]
    mask: String,
    #[command(flatten)]
    repaint: RepaintArgs,
    /// Fill naively instead of with the model (a baseline).
    #[arg(long, value_enum)]
    naive: Option<Naive>,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit outpaint --run runs/digits --data digits --pad 0,0,8,0 --out-dir out/outpaint"
)]
pub struct OutpaintArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// Pixels added: N on every side, or LEFT,TOP,RIGHT,BOTTOM.
    #[arg(long)]
    pad: String,
    #[command(flatten)]
    repaint: RepaintArgs,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit sdedit --run runs/digits --input sketch.png --strength 0.5 --out-dir out/sdedit"
)]
pub struct SdeditArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// How far to noise the inputs: 1 is pure noise (a fresh sample), small values keep more of the input.
    #[arg(long, default_value_t = 0.5)]
    strength: f64,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit invert --run runs/digits --data digits --steps 100 --out-dir out/invert"
)]
pub struct InvertArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// Also save the noises (one f32 tensor [n, c, h, w], usable as `sample --init-noise`).
    #[arg(long)]
    noise_out: Option<PathBuf>,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit interpolate --run runs/digits --seeds 1,2 --frames 8 --out-dir out/lerp --grid out/lerp.png"
)]
pub struct InterpolateArgs {
    #[command(flatten)]
    common: Common,
    /// Two seeds whose starting noises are the ends.
    #[arg(long, conflicts_with = "images")]
    seeds: Option<String>,
    /// Or two images, inverted with DDIM (η = 0) to their noises.
    #[arg(long, num_args = 2, value_delimiter = ',')]
    images: Option<Vec<PathBuf>>,
    /// Frames, the ends included.
    #[arg(long, default_value_t = 8)]
    frames: usize,
}

/// Input images with their output names.
struct Batch {
    images: Vec<f32>,
    names: Vec<String>,
    labels: Option<Vec<u32>>,
}

fn read_inputs(inp: &Inputs, shape: [usize; 3]) -> anyhow::Result<Batch> {
    let [c, h, w] = shape;
    let mut b = match (&inp.input, &inp.data) {
        (Some(path), None) => {
            let files: Vec<PathBuf> = if path.is_dir() {
                imageio::png_files(path)?
            } else {
                vec![path.clone()]
            };
            if files.is_empty() {
                bail!("{}: no PNG images", path.display());
            }
            let mut images = Vec::new();
            let mut names = Vec::new();
            for f in &files {
                let img = imageio::read_png(f, Some(c))?;
                if (img.height, img.width) != (h, w) {
                    bail!(
                        "{}: {}×{} pixels, the run's images are {w}×{h}",
                        f.display(),
                        img.width,
                        img.height
                    );
                }
                images.extend(img.pixels.iter().map(|&p| diffuse::data::to_unit(p as f32, 255.0)));
                names.push(f.file_name().expect("a file").to_string_lossy().into_owned());
            }
            Batch {
                images,
                names,
                labels: None,
            }
        }
        (None, Some(spec)) => {
            let d = Dataset::load(spec, Split::Test)?;
            if (d.channels, d.height, d.width) != (c, h, w) {
                bail!(
                    "{} images are {}×{}×{}, the run's {c}×{h}×{w}",
                    d.name,
                    d.channels,
                    d.height,
                    d.width
                );
            }
            let names = (0..d.len())
                .map(|i| match &d.labels {
                    Some(l) => format!("{}/{i:05}.png", d.class_names[l[i] as usize].replace('/', "_")),
                    None => format!("{i:05}.png"),
                })
                .collect();
            Batch {
                images: d.images,
                names,
                labels: d.labels,
            }
        }
        _ => bail!("give --input PATH or --data SPEC"),
    };
    if let Some(k) = inp.limit {
        let per = c * h * w;
        b.images.truncate(k * per);
        b.names.truncate(k);
        if let Some(l) = &mut b.labels {
            l.truncate(k);
        }
    }
    Ok(b)
}

/// Images in the run's model space: scaled VAE latents for latent runs, the pixels otherwise.
fn to_model(run: &LoadedRun, images: &[f32], shape: [usize; 3]) -> anyhow::Result<Vec<f32>> {
    let Some(space) = &run.latent else {
        return Ok(images.to_vec());
    };
    let [c, h, w] = shape;
    let d = Dataset {
        name: "inputs".into(),
        channels: c,
        height: h,
        width: w,
        images: images.to_vec(),
        labels: None,
        class_names: Vec::new(),
    };
    Ok(space.encode(&d)?.images)
}

fn tensor(v: Vec<f32>, n: usize, shape: [usize; 3]) -> burn::Tensor<4> {
    burn::Tensor::from_data(
        burn::tensor::TensorData::new(v, [n, shape[0], shape[1], shape[2]]),
        &diffuse::device::device(),
    )
}

fn write_all(dir: &Path, names: &[String], images: &[f32], shape: [usize; 3]) -> anyhow::Result<()> {
    let [c, h, w] = shape;
    let per = c * h * w;
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        imageio::write_png(&path, &images[i * per..(i + 1) * per], c, h, w)?;
    }
    Ok(())
}

fn write_grid(path: &Option<PathBuf>, top: &[f32], bottom: &[f32], n: usize, shape: [usize; 3]) -> anyhow::Result<()> {
    if let Some(path) = path {
        let k = n.min(16);
        let per = shape.iter().product::<usize>();
        let mut tiles = top[..k * per].to_vec();
        tiles.extend_from_slice(&bottom[..k * per]);
        imageio::write_grid(path, &tiles, 2 * k, shape[0], shape[1], shape[2], k)?;
    }
    Ok(())
}

struct Loaded {
    run: LoadedRun,
    plan: Plan,
    guidance: diffuse::denoise::Guidance,
}

fn load(c: &Common) -> anyhow::Result<Loaded> {
    if c.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let run = run::load(&c.run, Weights::Ema, &diffuse::device::device())?;
    if (run.config.height, run.config.width) == (1, 1) {
        bail!("editing is for image runs; {} holds points", c.run.display());
    }
    let plan = c.sampler.plan(&run.schedule, run.config.sde.as_deref())?;
    let guidance = c.guide.guidance()?;
    Ok(Loaded { run, plan, guidance })
}

fn denoiser(l: &Loaded) -> anyhow::Result<UNetDenoiser<'_>> {
    Ok(UNetDenoiser {
        net: &l.run.net,
        cond: &l.run.cond,
        prediction: l.run.config.prediction()?,
        clip: l.run.latent.is_none(),
        guidance: l.guidance,
    })
}

/// The conditioning of `n` inputs: --class for all of them, `label` for each its own.
fn conditioning(l: &Loaded, c: &Common, n: usize, labels: Option<&[u32]>) -> anyhow::Result<Cond> {
    if c.guide.class_spec() == Some("all") {
        bail!("--class all is for `diffuse sample`; edits take one class, or `label`");
    }
    if c.guide.class_spec() == Some("label") {
        let Some(labels) = labels else {
            bail!("--class label needs --data inputs, which have labels");
        };
        let k = l
            .run
            .net
            .num_classes()
            .ok_or_else(|| anyhow::anyhow!("--class needs a class-conditional run"))?;
        if labels.iter().any(|&x| x as usize >= k) {
            bail!("the inputs have labels beyond the run's {k} classes");
        }
        return Ok(Cond {
            classes: Some(labels.to_vec()),
        });
    }
    let (classes, _) = c.guide.classes(n, &l.run.config.class_names, l.run.net.num_classes())?;
    Ok(Cond { classes })
}

/// Samples batch by batch from starting points made by `start(first, model_inputs)`. With `known`, the
/// inputs are known where the mask keeps them (inpainting); returns images in pixel space.
#[allow(clippy::too_many_arguments)]
fn sample_batches(
    l: &Loaded,
    c: &Common,
    cond: &Cond,
    model: &[f32],
    n: usize,
    model_shape: [usize; 3],
    known: Option<&Mask>,
    start: &dyn Fn(usize, burn::Tensor<4>) -> (burn::Tensor<4>, Vec<rand_chacha::ChaCha8Rng>),
) -> anyhow::Result<Vec<f32>> {
    let base = denoiser(l)?;
    let per = model_shape.iter().product::<usize>();
    let mut out = Vec::with_capacity(n * per);
    for first in (0..n).step_by(c.batch_size) {
        let m = c.batch_size.min(n - first);
        let x0 = tensor(model[first * per..(first + m) * per].to_vec(), m, model_shape);
        let inpaint = known.map(|mask| Inpaint {
            inner: &base,
            keep: mask.keep(m, model_shape[0], &x0.device()),
            known: x0.clone(),
        });
        let den: &dyn Denoiser = match &inpaint {
            Some(i) => i,
            None => &base,
        };
        let (x, mut streams) = start(first, x0);
        let s = sample::run(
            den,
            &l.plan,
            x,
            &mut streams,
            cond.slice(first..first + m),
            &[],
            &mut |_| {},
        );
        out.extend(sample::to_vec(s.x));
    }
    Ok(l.run.to_images(out, n))
}

pub fn edit(cmd: EditCommand) -> anyhow::Result<()> {
    match cmd {
        EditCommand::Inpaint(a) => inpaint(a),
        EditCommand::Outpaint(a) => outpaint(a),
        EditCommand::Sdedit(a) => sdedit(a),
        EditCommand::Invert(a) => invert(a),
        EditCommand::Interpolate(a) => interpolate(a),
    }
}

fn shapes(run: &LoadedRun) -> ([usize; 3], [usize; 3]) {
    let cfg = &run.config;
    (cfg.output_shape(), [cfg.channels, cfg.height, cfg.width])
}

/// Fills the masked pixels naively: the mean of the kept ones, or repeated neighbour averaging.
fn naive_fill(mask: &Mask, images: &[f32], n: usize, c: usize, how: Naive) -> Vec<f32> {
    let (h, w) = (mask.height, mask.width);
    let mut out = images.to_vec();
    for plane in out.chunks_mut(h * w).take(n * c) {
        let kept: Vec<f32> = (0..h * w).filter(|&i| mask.regen[i] == 0.0).map(|i| plane[i]).collect();
        let mean = kept.iter().sum::<f32>() / kept.len().max(1) as f32;
        for (p, &m) in plane.iter_mut().zip(&mask.regen) {
            if m > 0.0 {
                *p = mean;
            }
        }
        if how == Naive::Blur {
            for _ in 0..4 * (h + w) {
                let prev = plane.to_vec();
                for i in (0..h * w).filter(|&i| mask.regen[i] > 0.0) {
                    let (y, x) = (i / w, i % w);
                    let nb: Vec<f32> = [(0i64, -1i64), (0, 1), (-1, 0), (1, 0)]
                        .iter()
                        .filter_map(|(dy, dx)| {
                            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                            (yy >= 0 && xx >= 0 && yy < h as i64 && xx < w as i64)
                                .then(|| prev[yy as usize * w + xx as usize])
                        })
                        .collect();
                    plane[i] = nb.iter().sum::<f32>() / nb.len() as f32;
                }
            }
        }
    }
    out
}

/// Inpaints `b`'s images where `mask` says, returns the results in pixel space with the kept pixels exact.
fn inpaint_images(l: &Loaded, c: &Common, b: &Batch, mask: &Mask) -> anyhow::Result<Vec<f32>> {
    let cond = conditioning(l, c, b.names.len(), b.labels.as_deref())?;
    let (shape, model_shape) = shapes(&l.run);
    let n = b.names.len();
    // Latent runs encode the inputs with the hole already filled: the encoder sees every pixel (its attention
    // spans the image), so encoding the originals would leak the region to regenerate into the known latents.
    let holed = naive_fill(mask, &b.images, n, shape[0], Naive::Mean);
    let model = to_model(&l.run, if l.run.latent.is_some() { &holed } else { &b.images }, shape)?;
    let model_mask = mask.downsample(shape[1] / model_shape[1]);
    let prior = l.plan.prior_std();
    let filled = sample_batches(l, c, &cond, &model, n, model_shape, Some(&model_mask), &|first, x0| {
        let [m, ..] = x0.dims();
        sample::start(c.seed, first, m, model_shape, prior, &x0.device())
    })?;
    Ok(mask.paste(&b.images, &filled))
}

fn inpaint(a: InpaintArgs) -> anyhow::Result<()> {
    let mut l = load(&a.common)?;
    l.plan = l
        .plan
        .clone()
        .with_resampling(a.repaint.jump_length, a.repaint.resample)?;
    let (shape, _) = shapes(&l.run);
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    let mask = Mask::parse(&a.mask, shape[1], shape[2])?;
    let started = Instant::now();
    let out = match a.naive {
        Some(how) => naive_fill(&mask, &b.images, n, shape[0], how),
        None => inpaint_images(&l, &a.common, &b, &mask)?,
    };
    let secs = started.elapsed().as_secs_f64();
    write_all(&a.common.out_dir, &b.names, &out, shape)?;
    let masked_input = naive_fill(&mask, &b.images, n, shape[0], Naive::Mean);
    write_grid(&a.common.grid, &masked_input, &out, n, shape)?;
    println!(
        "{n} images inpainted ({}) in {secs:.2} s; masked-region PSNR against the inputs {:.2} dB; written to {}",
        match a.naive {
            Some(Naive::Mean) => "naive: mean fill".to_string(),
            Some(Naive::Blur) => "naive: blur fill".to_string(),
            None => a.common.sampler.describe(&l.plan),
        },
        edit::masked_psnr(&mask, &b.images, &out),
        a.common.out_dir.display()
    );
    Ok(())
}

fn outpaint(a: OutpaintArgs) -> anyhow::Result<()> {
    let mut l = load(&a.common)?;
    l.plan = l
        .plan
        .clone()
        .with_resampling(a.repaint.jump_length, a.repaint.resample)?;
    let (shape, model_shape) = shapes(&l.run);
    let v: Vec<usize> = super::parse_list(&a.pad).map_err(|e| anyhow::anyhow!("--pad: {e}"))?;
    let [left, top, right, bottom] = match v[..] {
        [p] => [p; 4],
        [l, t, r, b] => [l, t, r, b],
        _ => bail!("--pad takes N or LEFT,TOP,RIGHT,BOTTOM"),
    };
    let b = read_inputs(&a.inputs, shape)?;
    let [c, h, w] = shape;
    let (nh, nw) = (h + top + bottom, w + left + right);
    // The network is convolutional: it runs on the larger canvas when the UNet's (and VAE's) halvings divide it.
    let factor = (h / model_shape[1])
        * match &l.run.config.net {
            diffuse::nn::NetConfig::Unet(u) => 1 << (u.channel_mults.len() - 1),
            diffuse::nn::NetConfig::Mlp(_) => 1,
        };
    if !nh.is_multiple_of(factor) || !nw.is_multiple_of(factor) {
        bail!("the padded canvas {nw}×{nh} must divide by {factor} for this run's networks");
    }
    let n = b.names.len();
    let mut canvas = vec![-1.0f32; n * c * nh * nw];
    let mut regen = vec![1.0f32; nh * nw];
    for y in 0..h {
        for x in 0..w {
            regen[(y + top) * nw + x + left] = 0.0;
            for i in 0..n * c {
                canvas[i * nh * nw + (y + top) * nw + x + left] = b.images[i * h * w + y * w + x];
            }
        }
    }
    let mask = Mask {
        height: nh,
        width: nw,
        regen,
    };
    let big = Batch {
        images: canvas,
        names: b.names.clone(),
        labels: b.labels.clone(),
    };
    // Latents and noise take the canvas size too.
    if let Some(lat) = &mut l.run.config.latent {
        lat.image = [c, nh, nw];
    }
    l.run.config.height = model_shape[1] * nh / h;
    l.run.config.width = model_shape[2] * nw / w;
    if let Some(space) = &mut l.run.latent {
        space.resize(nh, nw);
    }
    let started = Instant::now();
    let out = inpaint_images(&l, &a.common, &big, &mask)?;
    let secs = started.elapsed().as_secs_f64();
    let big_shape = [c, nh, nw];
    write_all(&a.common.out_dir, &b.names, &out, big_shape)?;
    write_grid(&a.common.grid, &big.images, &out, n, big_shape)?;
    println!(
        "{n} images outpainted from {w}×{h} to {nw}×{nh} in {secs:.2} s; written to {}",
        a.common.out_dir.display()
    );
    Ok(())
}

fn sdedit(a: SdeditArgs) -> anyhow::Result<()> {
    let mut l = load(&a.common)?;
    l.plan = l.plan.clone().with_strength(a.strength)?;
    let (shape, model_shape) = shapes(&l.run);
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    let model = to_model(&l.run, &b.images, shape)?;
    let started = Instant::now();
    let plan = l.plan.clone();
    let cond = conditioning(&l, &a.common, n, b.labels.as_deref())?;
    let out = sample_batches(&l, &a.common, &cond, &model, n, model_shape, None, &|first, x0| {
        edit::noised(&plan, x0, a.common.seed, first)
    })?;
    let secs = started.elapsed().as_secs_f64();
    write_all(&a.common.out_dir, &b.names, &out, shape)?;
    write_grid(&a.common.grid, &b.images, &out, n, shape)?;
    let l0 = plan.start_level();
    println!(
        "{n} images edited at strength {} (noise level σ/α = {:.3}) with {} in {secs:.2} s; written to {}",
        a.strength,
        l0.sigma / l0.alpha,
        a.common.sampler.describe(&plan),
        a.common.out_dir.display()
    );
    Ok(())
}

/// DDIM-inverts `images` (pixel space) to noises in model space.
fn invert_images(l: &Loaded, c: &Common, images: &[f32], n: usize, cond: &Cond) -> anyhow::Result<Vec<f32>> {
    if !matches!(l.plan.method, diffuse::sample::Method::Ddim { eta } if eta == 0.0) {
        bail!("inversion needs --sampler ddim --eta 0");
    }
    let (shape, model_shape) = shapes(&l.run);
    let model = to_model(&l.run, images, shape)?;
    let den = denoiser(l)?;
    let per = model_shape.iter().product::<usize>();
    let mut out = Vec::new();
    for first in (0..n).step_by(c.batch_size) {
        let m = c.batch_size.min(n - first);
        let x0 = tensor(model[first * per..(first + m) * per].to_vec(), m, model_shape);
        let (z, _) = edit::invert(&den, &l.plan, x0, &cond.slice(first..first + m))?;
        out.extend(sample::to_vec(z));
    }
    Ok(out)
}

fn invert(a: InvertArgs) -> anyhow::Result<()> {
    let l = load(&a.common)?;
    let (shape, model_shape) = shapes(&l.run);
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    let started = Instant::now();
    let cond = conditioning(&l, &a.common, n, b.labels.as_deref())?;
    let noise = invert_images(&l, &a.common, &b.images, n, &cond)?;
    let recon = sample_batches(&l, &a.common, &cond, &noise, n, model_shape, None, &|first, z| {
        let [m, ..] = z.dims();
        let (_, streams) = sample::start(a.common.seed, first, m, model_shape, 1.0, &z.device());
        (z, streams)
    })?;
    let secs = started.elapsed().as_secs_f64();
    write_all(&a.common.out_dir, &b.names, &recon, shape)?;
    write_grid(&a.common.grid, &b.images, &recon, n, shape)?;
    if let Some(path) = &a.noise_out {
        let mut contents = safetensors_io::Contents::default();
        contents.groups.entry(String::new()).or_default().insert(
            "noise".into(),
            safetensors_io::NamedTensor {
                id: 0,
                shape: vec![n, model_shape[0], model_shape[1], model_shape[2]],
                data: noise,
            },
        );
        safetensors_io::write(path, &contents)?;
    }
    let mse = b
        .images
        .iter()
        .zip(&recon)
        .map(|(x, y)| ((x - y) as f64 / 2.0).powi(2))
        .sum::<f64>()
        / b.images.len() as f64;
    println!(
        "{n} images inverted and reconstructed with {} in {secs:.2} s: reconstruction PSNR {:.2} dB (MSE {:.6}, pixels in [0, 1]); written to {}",
        a.common.sampler.describe(&l.plan),
        diffuse_math::metrics::psnr(mse),
        mse,
        a.common.out_dir.display()
    );
    Ok(())
}

fn interpolate(a: InterpolateArgs) -> anyhow::Result<()> {
    let l = load(&a.common)?;
    let (shape, model_shape) = shapes(&l.run);
    if a.frames < 2 {
        bail!("--frames must be at least 2");
    }
    let per = model_shape.iter().product::<usize>();
    let device = diffuse::device::device();
    let ends: Vec<f32> = match (&a.seeds, &a.images) {
        (Some(s), None) => {
            let seeds: Vec<u64> = super::parse_list(s).map_err(|e| anyhow::anyhow!("--seeds: {e}"))?;
            let [s0, s1] = seeds[..] else {
                bail!("--seeds takes two seeds, A,B")
            };
            [s0, s1]
                .iter()
                .flat_map(|&s| sample::to_vec(sample::start(s, 0, 1, model_shape, l.plan.prior_std(), &device).0))
                .collect()
        }
        (None, Some(paths)) => {
            let mut images = Vec::new();
            for p in paths {
                let b = read_inputs(
                    &Inputs {
                        input: Some(p.clone()),
                        data: None,
                        limit: Some(1),
                    },
                    shape,
                )?;
                images.extend(b.images);
            }
            invert_images(&l, &a.common, &images, 2, &conditioning(&l, &a.common, 2, None)?)?
        }
        _ => bail!("give --seeds A,B or --images IMG1,IMG2"),
    };
    let k = a.frames;
    let mut z = Vec::with_capacity(k * per);
    for i in 0..k {
        z.extend(edit::slerp(&ends[..per], &ends[per..], i as f64 / (k - 1) as f64));
    }
    let cond = conditioning(&l, &a.common, k, None)?;
    let out = sample_batches(&l, &a.common, &cond, &z, k, model_shape, None, &|_, z| {
        let [m, ..] = z.dims();
        // Every frame shares one noise stream, so stochastic samplers vary only with the start.
        let (_, streams) = sample::start(a.common.seed, 0, 1, model_shape, 1.0, &z.device());
        (z, vec![streams[0].clone(); m])
    })?;
    let names: Vec<String> = (0..k).map(|i| format!("{i:05}.png")).collect();
    write_all(&a.common.out_dir, &names, &out, shape)?;
    if let Some(path) = &a.common.grid {
        imageio::write_grid(path, &out, k, shape[0], shape[1], shape[2], k)?;
    }
    println!("{k} frames interpolated; written to {}", a.common.out_dir.display());
    Ok(())
}
