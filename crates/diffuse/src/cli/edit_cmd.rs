//! `diffuse edit inpaint|outpaint|sdedit|invert|interpolate|restore`: editing images with a trained run (pixel or
//! latent). Inputs are a PNG, a folder of PNGs (each result keeps its file name), or a data set's held-out
//! split (`--data`; results in class sub-folders, so that `classifier score --images` knows their labels).

use super::sample_cmd::DrawArgs;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use diffuse::data::{Dataset, Split};
use diffuse::denoise::Cond;
use diffuse::edit::{self, Editor, Mask, Naive};
use diffuse::kernels::matmul::with_precision;
use diffuse::sample;
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
    /// Inverse problems with the run as prior: super-resolution, deblurring, denoising, colourisation, MRI
    /// from undersampled k-space (DDRM or ΠGDM), beside the naive inverse.
    Restore(super::restore_cmd::RestoreArgs),
}

#[derive(Args)]
pub(super) struct Common {
    /// The run (pixel or latent), its sampler and seed; for conditional runs --class K|name (or `label`: each
    /// --data input's own label) and guidance.
    #[command(flatten)]
    pub draw: DrawArgs,
    /// Where results go.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Also a grid: inputs (masked where a mask applies) in the first row, results in the second.
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct Inputs {
    /// A PNG or a folder of PNGs.
    #[arg(long, conflicts_with = "data")]
    input: Option<PathBuf>,
    /// Or a data set's held-out split (e.g. digits).
    #[arg(long)]
    data: Option<String>,
    /// Only the --data inputs of this class (by index or name), e.g. the 3s to turn into 8s.
    #[arg(long, value_name = "CLASS", requires = "data")]
    of_class: Option<String>,
    /// At most this many inputs.
    #[arg(long)]
    limit: Option<usize>,
}

/// RePaint's resampling, for inpainting and outpainting.
#[derive(Args)]
pub struct RepaintArgs {
    /// RePaint passes at each jump point (1: no resampling; ddpm, ddim and euler-ancestral).
    #[arg(long, default_value_t = 1)]
    resample: usize,
    /// RePaint jump length in sampler steps.
    #[arg(long, default_value_t = 10)]
    jump_length: usize,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit inpaint --run runs/digits --data digits --mask left-half --out-dir runs/out/inpaint"
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
    /// Fill naively instead of with the model (a baseline): mean (the mean of the kept pixels) or blur (kept
    /// pixels diffused into the hole by repeated neighbour averaging).
    #[arg(long, value_parser = super::one_of::<Naive>(Naive::NAMES))]
    naive: Option<Naive>,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit outpaint --run runs/digits --data digits --pad 0,0,8,0 --out-dir runs/out/outpaint"
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
    after_help = "Example:\n  diffuse edit sdedit --run runs/digits --data digits --limit 16 --strength 0.5 --out-dir runs/out/sdedit"
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
    after_help = "Example:\n  diffuse edit invert --run runs/digits --data digits --sampler ddim --steps 100 --out-dir runs/out/invert"
)]
pub struct InvertArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    inputs: Inputs,
    /// Also save the noises (one f32 tensor [n, c, h, w], usable as `sample --init-noise`).
    #[arg(long)]
    noise_out: Option<PathBuf>,
    /// Class-to-class editing: draw the inverted noises under this class (by index or name) instead of the one
    /// they were inverted under (--class, or `label`).
    #[arg(long, value_name = "CLASS")]
    to_class: Option<String>,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  diffuse edit interpolate --run runs/digits --seeds 1,2 --frames 8 --out-dir runs/out/lerp --grid runs/out/lerp.png"
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
pub(super) struct Batch {
    pub images: Vec<f32>,
    pub names: Vec<String>,
    pub labels: Option<Vec<u32>>,
}

pub(super) fn read_inputs(inp: &Inputs, shape: [usize; 3]) -> anyhow::Result<Batch> {
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
            let mut d = Dataset::load(spec, Split::Test)?;
            if let Some(class) = &inp.of_class {
                let Some(labels) = &d.labels else {
                    bail!("--of-class needs labelled data; {} has none", d.name);
                };
                let k = super::class_index(class, &d.class_names)?;
                let keep: Vec<usize> = (0..d.len()).filter(|&i| labels[i] as usize == k).collect();
                d = d.subset(&keep);
            }
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

pub(super) fn write_all(dir: &Path, names: &[String], images: &[f32], shape: [usize; 3]) -> anyhow::Result<()> {
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
        eprintln!("grid: {}", path.display());
    }
    Ok(())
}

pub(super) fn load(c: &Common) -> anyhow::Result<Editor> {
    let d = &c.draw;
    let batch_size = d.batch_size.unwrap_or(64);
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let run = d.load()?;
    if run.config.is_points() {
        bail!("editing is for image runs; {} holds points", d.run.display());
    }
    Ok(Editor {
        plan: d.sampler.plan_for(&run)?,
        guidance: d.guide.guidance()?,
        run,
        batch_size,
        seed: d.seed,
        progress: true,
    })
}

/// Checks the output folder once the inputs are read, before the work; the work's start time.
pub(super) fn begin(c: &Common) -> anyhow::Result<Instant> {
    super::fresh_out_dir(&c.out_dir)?;
    Ok(Instant::now())
}

impl RepaintArgs {
    /// The editor of `c`, with RePaint's resampling.
    fn load(&self, c: &Common) -> anyhow::Result<Editor> {
        let mut l = load(c)?;
        l.plan = l.plan.clone().with_resampling(self.jump_length, self.resample)?;
        Ok(l)
    }
}

/// The conditioning of `n` inputs: --class for all of them, `label` for each its own.
fn conditioning(l: &Editor, c: &Common, n: usize, labels: Option<&[u32]>) -> anyhow::Result<Cond> {
    if c.draw.guide.class_spec() == Some("all") {
        bail!("--class all is for `diffuse sample`; edits take one class, or `label`");
    }
    if c.draw.guide.class_spec() == Some("label") {
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
        c.draw.guide.check_null_class(&l.run.net)?;
        return Ok(Cond::of_classes(labels.to_vec()));
    }
    let (cond, rows) = c.draw.guide.cond(n, &l.run)?;
    if rows > 1 {
        bail!("edits take one --prompt");
    }
    Ok(cond)
}

pub fn edit(cmd: EditCommand) -> anyhow::Result<()> {
    let common = match &cmd {
        EditCommand::Inpaint(a) => &a.common,
        EditCommand::Outpaint(a) => &a.common,
        EditCommand::Sdedit(a) => &a.common,
        EditCommand::Invert(a) => &a.common,
        EditCommand::Interpolate(a) => &a.common,
        EditCommand::Restore(a) => a.common(),
    };
    with_precision(common.draw.precision.resolve(), || match cmd {
        EditCommand::Inpaint(a) => inpaint(a),
        EditCommand::Outpaint(a) => outpaint(a),
        EditCommand::Sdedit(a) => sdedit(a),
        EditCommand::Invert(a) => invert(a),
        EditCommand::Interpolate(a) => interpolate(a),
        EditCommand::Restore(a) => super::restore_cmd::restore(a),
    })
}

fn inpaint(a: InpaintArgs) -> anyhow::Result<()> {
    let l = a.repaint.load(&a.common)?;
    let (shape, _) = l.shapes();
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    let mask = Mask::parse(&a.mask, shape[1], shape[2])?;
    let cond = conditioning(&l, &a.common, n, b.labels.as_deref())?;
    let started = begin(&a.common)?;
    let out = match a.naive {
        Some(how) => edit::naive_fill(&mask, &b.images, n, shape[0], how),
        None => l.inpaint(&b.images, n, &mask, &cond)?,
    };
    let secs = started.elapsed().as_secs_f64();
    write_all(&a.common.out_dir, &b.names, &out, shape)?;
    let masked_input = edit::naive_fill(&mask, &b.images, n, shape[0], Naive::Mean);
    write_grid(&a.common.grid, &masked_input, &out, n, shape)?;
    println!(
        "{n} images inpainted ({}) in {secs:.2} s; masked-region PSNR against the inputs {:.2} dB; written to {}",
        match a.naive {
            Some(Naive::Mean) => "naive: mean fill".to_string(),
            Some(Naive::Blur) => "naive: blur fill".to_string(),
            None => l.plan.describe(),
        },
        edit::masked_psnr(&mask, &b.images, &out),
        a.common.out_dir.display()
    );
    Ok(())
}

fn outpaint(a: OutpaintArgs) -> anyhow::Result<()> {
    let mut l = a.repaint.load(&a.common)?;
    let (shape, model_shape) = l.shapes();
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
    let (canvas, mask) = edit::outpaint_canvas(&b.images, n, shape, [left, top, right, bottom]);
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
    let cond = conditioning(&l, &a.common, n, big.labels.as_deref())?;
    let started = begin(&a.common)?;
    let out = l.inpaint(&big.images, n, &mask, &cond)?;
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
    let (shape, _) = l.shapes();
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    let plan = l.plan.clone();
    let cond = conditioning(&l, &a.common, n, b.labels.as_deref())?;
    let started = begin(&a.common)?;
    let out = l.sdedit(&b.images, n, &cond)?;
    let secs = started.elapsed().as_secs_f64();
    write_all(&a.common.out_dir, &b.names, &out, shape)?;
    write_grid(&a.common.grid, &b.images, &out, n, shape)?;
    let l0 = plan.start_level();
    // How far the edits moved from their inputs.
    let mse = diffuse::edit::mse(&b.images, &out);
    println!(
        "{n} images edited at strength {} (noise level σ/α = {:.3}) with {} in {secs:.2} s; PSNR against the inputs {:.2} dB; written to {}",
        a.strength,
        l0.sigma / l0.alpha,
        plan.describe(),
        diffuse_math::metrics::psnr(mse),
        a.common.out_dir.display()
    );
    Ok(())
}

fn invert(a: InvertArgs) -> anyhow::Result<()> {
    let l = load(&a.common)?;
    let (shape, model_shape) = l.shapes();
    let b = read_inputs(&a.inputs, shape)?;
    let n = b.names.len();
    l.check_invertible()?;
    let cond = conditioning(&l, &a.common, n, b.labels.as_deref())?;
    let started = begin(&a.common)?;
    let noise = l.invert(&b.images, n, &cond)?;
    let target = match &a.to_class {
        None => cond,
        Some(spec) => {
            if l.run.net.num_classes().is_none() {
                bail!("--to-class needs a class-conditional run");
            }
            let class = super::class_index(spec, &l.run.config.class_names)?;
            Cond::of_classes(vec![class as u32; n])
        }
    };
    let recon = l.from_noise(&noise, n, &target, false)?;
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
    let mse = diffuse::edit::mse(&b.images, &recon);
    let done = match &a.to_class {
        Some(c) => format!("inverted and drawn as class {c}"),
        None => "inverted and reconstructed".into(),
    };
    let what = if a.to_class.is_some() {
        "PSNR against the inputs"
    } else {
        "reconstruction PSNR"
    };
    println!(
        "{n} images {done} with {} in {secs:.2} s: {what} {:.2} dB (MSE {:.6}, pixels in [0, 1]); written to {}",
        l.plan.describe(),
        diffuse_math::metrics::psnr(mse),
        mse,
        a.common.out_dir.display()
    );
    Ok(())
}

fn interpolate(a: InterpolateArgs) -> anyhow::Result<()> {
    let l = load(&a.common)?;
    let (shape, model_shape) = l.shapes();
    let per = model_shape.iter().product::<usize>();
    let device = diffuse::device::device();
    if a.frames < 2 {
        bail!("--frames must be at least 2");
    }
    // The two ends: seeds' starting noises, or images to invert (read and checked here, inverted below).
    enum Ends {
        Seeds(u64, u64),
        Images(Vec<f32>),
    }
    let ends = match (&a.seeds, &a.images) {
        (Some(s), None) => {
            let seeds: Vec<u64> = super::parse_list(s).map_err(|e| anyhow::anyhow!("--seeds: {e}"))?;
            let [s0, s1] = seeds[..] else {
                bail!("--seeds takes two seeds, A,B")
            };
            Ends::Seeds(s0, s1)
        }
        (None, Some(paths)) => {
            l.check_invertible()?;
            let mut images = Vec::new();
            for p in paths {
                let inputs = Inputs {
                    input: Some(p.clone()),
                    data: None,
                    of_class: None,
                    limit: Some(1),
                };
                images.extend(read_inputs(&inputs, shape)?.images);
            }
            Ends::Images(images)
        }
        _ => bail!("give --seeds A,B or --images IMG1,IMG2"),
    };
    let cond = conditioning(&l, &a.common, a.frames, None)?;
    begin(&a.common)?;
    let ends: Vec<f32> = match ends {
        Ends::Seeds(s0, s1) => [s0, s1]
            .iter()
            .flat_map(|&s| sample::to_vec(sample::start(s, 0, 1, model_shape, l.plan.prior_std(), &device).0))
            .collect(),
        Ends::Images(images) => l.invert(&images, 2, &conditioning(&l, &a.common, 2, None)?)?,
    };
    let k = a.frames;
    let out = l.interpolate(&ends[..per], &ends[per..], k, &cond)?;
    let names: Vec<String> = (0..k).map(|i| format!("{i:05}.png")).collect();
    write_all(&a.common.out_dir, &names, &out, shape)?;
    if let Some(path) = &a.common.grid {
        imageio::write_grid(path, &out, k, shape[0], shape[1], shape[2], k)?;
        eprintln!("grid: {}", path.display());
    }
    println!("{k} frames interpolated; written to {}", a.common.out_dir.display());
    Ok(())
}
