//! diffuse: train, sample and evaluate diffusion models on burn.
//!
//! Every model is a denoiser and every sampler talks only to a denoiser:
//! [`nn`] holds the networks, [`denoise`] turns a network's output into (x̂₀, ε̂),
//! [`sample`] walks a timestep grid with the step coefficients of `diffuse_math::step`,
//! [`train`] fits a network with the forward process of [`forward`]; [`vae`] gives latent diffusion its
//! autoencoder and latent space.

/// Deflate cannot expand data by more than about 1032:1: a zlib stream (PNG, .npz) declaring more decoded bytes
/// than this many times its compressed size is lying, and is refused before anything is allocated for it.
pub(crate) const MAX_INFLATE_RATIO: u64 = 1100;

pub mod atomic;
pub mod autoencoder_kl;
pub mod bench;
pub mod classifier;
pub mod compare;
pub mod data;
pub mod denoise;
pub mod device;
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
pub mod nn;
pub mod npz;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod run;
pub mod safetensors_io;
pub mod sample;
pub mod train;
pub mod vae;

pub use error::{Error, Result};
