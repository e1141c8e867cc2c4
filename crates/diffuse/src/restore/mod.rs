//! Inverse problems with any trained unconditional model: super-resolution, deblurring, denoising,
//! colourisation and MRI-style reconstruction from undersampled Fourier measurements, all linear
//! degradations y = A x + σ_y n with an SVD ([`operator`]).
//!
//! Two posterior samplers, both over the one [`Denoiser`] interface and any grid:
//! - [`ddrm`]: DDRM (Kawar et al. 2022), its own walk of the plan's levels in the spectral basis; one network
//!   call per step, no gradients;
//! - [`pigdm`]: ΠGDM (Song et al. 2023) as a posterior denoiser, which any of the run's samplers walks; one
//!   network call and one backward pass per call.
//!
//! What they are measured against is each task's naive inverse ([`Degradation::naive`]).

pub mod ddrm;
pub mod mri;
pub mod operator;
pub mod pigdm;
#[cfg(test)]
mod tests;

pub use ddrm::Ddrm;
pub use operator::{Degradation, Task};

use crate::denoise::{Cond, Denoiser, NetDenoiser};
use crate::edit::Editor;
use crate::sample::{self, Ctx};
use crate::{Error, Result};

/// Which way to restore, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    Ddrm,
    Pigdm,
    /// The task's naive inverse only.
    Naive,
}

crate::names::named!(Solver, "restoration method", { Ddrm => "ddrm", Pigdm => "pigdm", Naive => "naive" });

/// How the posterior is sampled, with the sampler's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Posterior {
    Ddrm(Ddrm),
    /// ΠGDM with r_t² for data of this standard deviation.
    Pigdm {
        data_std: f64,
    },
}

impl Posterior {
    /// The sampler with its parameters and the walk it takes of `plan`.
    pub fn describe(&self, plan: &sample::Plan) -> String {
        match self {
            Posterior::Ddrm(p) => format!("DDRM (η = {}, η_b = {}) over {}", p.eta, p.eta_b, plan.describe_walk()),
            Posterior::Pigdm { data_std } => format!("ΠGDM (σ_d = {data_std}) with {}", plan.describe()),
        }
    }
}

/// Restores `n` images from their measurements `y` (each of [`Degradation::measured_shape`]) with the
/// editor's run, unconditionally. DDRM walks the editor's plan's levels; ΠGDM runs the plan's sampler.
/// Image i draws its noise from stream i of the editor's seed, whatever batch it is in.
pub fn restore(ed: &Editor, op: &Degradation, y: &[f32], n: usize, method: Posterior) -> Result<Vec<f32>> {
    let run = &ed.run;
    run.config.refuse_text("restoration")?;
    if run.latent.is_some() {
        return Err(Error::Invalid(
            "restoration works in pixel space; this is a latent run".into(),
        ));
    }
    let shape = [run.config.channels, run.config.height, run.config.width];
    if op.shape != shape {
        return Err(Error::Invalid(format!(
            "the degradation is of {:?} images, the run makes {:?}",
            op.shape, shape
        )));
    }
    if run.net.num_classes().is_some() && !run.net.has_null_class() {
        return Err(Error::Invalid(
            "restoration uses the model unconditionally; this conditional run has no null class".into(),
        ));
    }
    if matches!(method, Posterior::Ddrm(_)) && ed.plan.reported_steps().is_none() {
        return Err(Error::Invalid(
            "DDRM walks a fixed grid of steps; an adaptive solver has none (give another --sampler)".into(),
        ));
    }
    let m_per = op.measured_shape().iter().product::<usize>();
    if y.len() != n * m_per {
        return Err(Error::Invalid(format!(
            "{} measurement values for {n} images of {m_per}",
            y.len()
        )));
    }
    let per = shape.iter().product::<usize>();
    let device = crate::device::device();
    let plain = run.denoiser(Default::default());
    let unclipped = NetDenoiser {
        clip: None,
        ..run.denoiser(Default::default())
    };
    let bar = ed.plan.progress(n, ed.batch_size, ed.progress);
    let mut out = Vec::with_capacity(n * per);
    for first in (0..n).step_by(ed.batch_size) {
        let m = ed.batch_size.min(n - first);
        let uty = op.ut(&y[first * m_per..(first + m) * m_per]);
        let (z, mut streams) = sample::start(ed.seed, first, m, shape, 1.0, &device);
        let mut tick = |_: usize| bar.inc(1);
        let restored = match method {
            Posterior::Ddrm(p) => {
                let mut ctx = Ctx::new(&plain, &mut streams)
                    .with_on_step(&mut tick)
                    .walking(ed.plan.knots().len());
                ddrm::run(&mut ctx, op, &uty, ed.plan.knots(), p, z)
            }
            Posterior::Pigdm { data_std } => {
                let den = pigdm::Pigdm {
                    inner: &unclipped as &dyn Denoiser,
                    op,
                    uty,
                    data_std,
                    clip: run.config.clip_range(),
                };
                let x = z.mul_scalar(ed.plan.prior_std());
                sample::run(&den, &ed.plan, x, &mut streams, Cond::default(), &[], &mut tick).x
            }
        };
        out.extend(sample::to_vec(restored));
    }
    bar.finish_and_clear();
    Ok(operator::clamp(out))
}
