//! diffuse: train, sample and evaluate diffusion models on burn.
//!
//! Every model is a denoiser and every sampler talks only to a denoiser:
//! [`nn`] holds the networks, [`denoise`] turns a network's output into (x̂₀, ε̂),
//! [`sample`] walks a time grid (`diffuse_math::Grid` on a `diffuse_math::Process`) with the step coefficients
//! of `diffuse_math::step`, [`train`] fits a network with the forward process of [`forward`]; [`vae`] gives
//! latent diffusion its autoencoder and latent space. The commands' workflows are library calls too:
//! [`generate`], [`evaluate`], [`likelihood`], [`compare`] and [`edit::Editor`].
//!
//! Train a run, load it, and sample it with a chosen sampler on a chosen grid (a few steps here, so that the
//! example runs as a test; `RunConfig::for_data` holds the real defaults):
//!
//! ```
//! use diffuse::data::{DataSpec, Split};
//! use diffuse::denoise::{Cond, Guidance};
//! use diffuse::run::{self, RunConfig, Weights};
//! use diffuse::sample::{self, Method, Plan, Process};
//! use diffuse::train::{self, Options};
//! use diffuse_math::{Grid, Sde};
//!
//! # fn main() -> anyhow::Result<()> {
//! let out = std::env::temp_dir().join(format!("diffuse-doc-{}", std::process::id()));
//! let spec: DataSpec = "digits".parse()?;
//! let data = spec.load(Split::Train)?;
//! let mut cfg = RunConfig::for_data(&spec, &data);
//! (cfg.train.steps, cfg.train.batch_size) = (4, 8);
//! let opts = Options::default();
//! train::train(&cfg, &data, &out, &opts)?;
//!
//! let run = run::load(&out, Weights::Ema, &diffuse::device::device())?;
//! let den = run.denoiser(Guidance::default());
//! // Euler ancestral on the Karras grid of EDM's VE SDE (σ 0.002 → 80), asked of this DDPM model.
//! let edm: Sde = "ve:0.002,80".parse()?;
//! let plan = Plan::new(Method::from_name("euler-ancestral")?, Process::Sde(edm), 10)?.with_grid(Grid::KARRAS)?;
//! let shape = [run.config.channels, run.config.height, run.config.width];
//! let device = diffuse::device::device();
//! let drawn = sample::draw(&den, &plan, 1, 4, shape, 4, None, &Cond::default(), &[], &device, &mut |_| {});
//! assert_eq!(drawn.images.len(), 4 * 64);
//! assert_eq!(drawn.nfe_per_image, 11); // ten steps, then one denoising at t_min
//! # std::fs::remove_dir_all(&out)?;
//! # Ok(())
//! # }
//! ```

/// Deflate cannot expand data by more than about 1032:1: a zlib stream (PNG, .npz) declaring more decoded bytes
/// than this many times its compressed size is lying, and is refused before anything is allocated for it.
pub(crate) const MAX_INFLATE_RATIO: u64 = 1100;

pub mod atomic;
pub mod augment;
pub mod bench;
pub mod classifier;
pub mod compare;
pub mod data;
pub mod denoise;
pub mod device;
pub mod diffusers;
pub mod distill;
pub mod edit;
pub mod error;
pub mod evaluate;
pub mod fetch;
pub mod fid;
pub mod forward;
pub mod fuzzing;
pub mod generate;
pub mod imageio;
pub mod kernels;
pub mod likelihood;
pub mod mesh;
mod names;
pub mod nn;
pub mod npz;
pub mod objective;
pub mod plot;
pub mod points_eval;
pub mod progress;
pub mod restore;
pub mod rng;
pub mod run;
pub mod safetensors_io;
pub mod sample;
pub mod text;
pub mod train;
pub mod vae;

pub use error::{Error, Result};
