//! The degradations y = A x + σ_y n that restoration inverts, each with a singular value decomposition
//! A = U S Vᵀ: the posterior samplers work coefficient by coefficient in the spectral basis x̄ = Vᵀx, where
//! the measurement reads ȳ_i = (Uᵀy)_i / s_i with noise σ_y / s_i (Kawar et al. 2022, §3.1).
//!
//! Every degradation but MRI is separable, A = A_c ⊗ A_h ⊗ A_w (channels, rows, columns), so its SVD is the
//! Kronecker product of three small per-axis SVDs. MRI samples the orthonormal 2-D Fourier transform on a
//! mask that is symmetric under k → −k; for a real image those samples are the same information as the
//! orthonormal Hartley transform's on that mask (F_k = (H_k + H₋ₖ)/2 − i(H_k − H₋ₖ)/2), and the Hartley
//! transform is real, orthogonal and its own inverse, so A = M H and V = H.

use super::mri::{self, Pattern};
use crate::{Error, Result};
use nalgebra::{DMatrix, SymmetricEigen};

/// What the measurement keeps of the image.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// A = I: only the noise.
    Denoise,
    /// Each factor × factor block averaged.
    SuperRes(usize),
    /// A Gaussian blur of this standard deviation in pixels (rows normalised at the borders).
    Blur(f64),
    /// The mean of the colour channels.
    Colourise,
    /// The 2-D Fourier transform sampled on a mask of this pattern and acceleration.
    Mri { pattern: Pattern, accel: f64 },
}

impl Task {
    /// `denoise`, `sr:K`, `blur:S`, `colourise` (or `colorize`), `mri:random:A` or `mri:radial:A`.
    pub fn parse(spec: &str) -> Result<Task> {
        let bad = |why: &str| Error::Invalid(format!("task '{spec}': {why}"));
        let parts: Vec<&str> = spec.split(':').collect();
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad("expected a number after ':'"));
        Ok(match parts[..] {
            ["denoise"] => Task::Denoise,
            ["colourise"] | ["colorize"] => Task::Colourise,
            ["sr", k] => match k.parse::<usize>() {
                Ok(k) if k >= 2 => Task::SuperRes(k),
                _ => return Err(bad("the factor must be a whole number of at least 2")),
            },
            ["blur", s] => match num(s)? {
                s if s > 0.0 && s.is_finite() => Task::Blur(s),
                _ => return Err(bad("the blur's standard deviation must be positive")),
            },
            ["mri", pattern, a] => {
                let pattern = pattern.parse::<Pattern>()?;
                match num(a)? {
                    a if a > 1.0 && a.is_finite() => Task::Mri { pattern, accel: a },
                    _ => return Err(bad("the acceleration must be above 1")),
                }
            }
            _ => {
                return Err(bad(
                    "expected denoise, sr:K, blur:S, colourise, mri:random:A or mri:radial:A",
                ));
            }
        })
    }

    /// The task as it is written.
    pub fn name(&self) -> String {
        match self {
            Task::Denoise => "denoise".into(),
            Task::SuperRes(k) => format!("sr:{k}"),
            Task::Blur(s) => format!("blur:{s}"),
            Task::Colourise => "colourise".into(),
            Task::Mri { pattern, accel } => format!("mri:{}:{accel}", pattern.name()),
        }
    }

    /// The naive inverse it is compared with.
    pub fn naive_name(&self) -> &'static str {
        match self {
            Task::Denoise => "the noisy input",
            Task::SuperRes(_) => "bicubic upsampling",
            Task::Blur(_) => "Wiener deconvolution",
            Task::Colourise => "the grey image",
            Task::Mri { .. } => "zero-filled inverse FFT",
        }
    }
}

/// One axis's factor A (m × n) with its SVD: V (n × n, columns the right singular vectors, by decreasing
/// singular value) and Vᵀ, the transpose of U's first r columns (r × m, r the rank), the singular values
/// padded with zeros to n.
struct AxisSvd {
    a: DMatrix<f64>,
    ut: DMatrix<f64>,
    v: DMatrix<f64>,
    vt: DMatrix<f64>,
    s: Vec<f64>,
}

/// Singular values below this fraction of the largest count as zero: what they carry is below f32 rounding
/// of the measurement once divided by them.
const RANK_TOL: f64 = 1e-3;

impl AxisSvd {
    /// The SVD through the symmetric eigendecomposition of AᵀA, which gives the full V (the null space
    /// included) that a thin SVD leaves out.
    fn of(a: DMatrix<f64>) -> AxisSvd {
        let n = a.ncols();
        let eig = SymmetricEigen::new(a.transpose() * &a);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
        let v = DMatrix::from_fn(n, n, |r, c| eig.eigenvectors[(r, order[c])]);
        let mut s: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0).sqrt()).collect();
        let top = s[0];
        let rank = s.iter().filter(|&&x| x > RANK_TOL * top).count().min(a.nrows());
        s.iter_mut().skip(rank).for_each(|x| *x = 0.0);
        let ut = DMatrix::from_fn(rank, a.nrows(), |c, r| (a.row(r) * v.column(c))[(0, 0)] / s[c]);
        let vt = v.transpose();
        AxisSvd { a, ut, v, vt, s }
    }

    fn identity(n: usize) -> AxisSvd {
        AxisSvd::of(DMatrix::identity(n, n))
    }
}

/// The image basis of the spectral coefficients.
enum Basis {
    /// A = A_c ⊗ A_h ⊗ A_w.
    Kron(Box<[AxisSvd; 3]>),
    /// A = M H, H the orthonormal 2-D Hartley transform of each channel.
    Hartley {
        mask: Vec<f64>,
        cas_h: [DMatrix<f64>; 2],
        cos_sin_w: [DMatrix<f64>; 2],
    },
}

/// A degradation of c × h × w images, with its SVD.
pub struct Degradation {
    pub task: Task,
    pub shape: [usize; 3],
    /// σ_y, in the pixels' [−1, 1] units.
    pub noise: f64,
    basis: Basis,
    /// s_i of every spectral coefficient (c·h·w, the basis's order); 0 where A sees nothing.
    singular: Vec<f64>,
}

impl Degradation {
    /// The degradation `task` of `shape` images with measurement noise σ_y = `noise`; MRI masks are drawn
    /// from `mask_seed`.
    pub fn new(task: Task, shape: [usize; 3], noise: f64, mask_seed: u64) -> Result<Degradation> {
        let [c, h, w] = shape;
        if !(noise >= 0.0 && noise.is_finite()) {
            return Err(Error::Invalid(format!(
                "the measurement noise must be ≥ 0, got {noise}"
            )));
        }
        let basis = match &task {
            Task::Denoise => Basis::Kron(Box::new([
                AxisSvd::identity(c),
                AxisSvd::identity(h),
                AxisSvd::identity(w),
            ])),
            Task::SuperRes(k) => {
                if !h.is_multiple_of(*k) || !w.is_multiple_of(*k) {
                    return Err(Error::Invalid(format!(
                        "sr:{k} needs a size that {k} divides; the images are {w}×{h}"
                    )));
                }
                Basis::Kron(Box::new([
                    AxisSvd::identity(c),
                    AxisSvd::of(block_mean(h, *k)),
                    AxisSvd::of(block_mean(w, *k)),
                ]))
            }
            Task::Blur(s) => Basis::Kron(Box::new([
                AxisSvd::identity(c),
                AxisSvd::of(gaussian(h, *s)),
                AxisSvd::of(gaussian(w, *s)),
            ])),
            Task::Colourise => {
                if c != 3 {
                    return Err(Error::Invalid(format!(
                        "colourisation needs colour (3-channel) images; these have {c}"
                    )));
                }
                Basis::Kron(Box::new([
                    AxisSvd::of(DMatrix::from_element(1, 3, 1.0 / 3.0)),
                    AxisSvd::identity(h),
                    AxisSvd::identity(w),
                ]))
            }
            Task::Mri { pattern, accel } => {
                let (cos, sin) = (mri::dft(h, f64::cos), mri::dft(h, f64::sin));
                let (cos_w, sin_w) = (mri::dft(w, f64::cos), mri::dft(w, f64::sin));
                Basis::Hartley {
                    mask: mri::mask(*pattern, h, w, *accel, mask_seed)?,
                    cas_h: [&cos + &sin, &cos - &sin],
                    cos_sin_w: [cos_w, sin_w],
                }
            }
        };
        let singular = match &basis {
            Basis::Kron(axes) => {
                let mut s = Vec::with_capacity(c * h * w);
                for &a in &axes[0].s {
                    for &b in &axes[1].s {
                        for &d in &axes[2].s {
                            s.push(a * b * d);
                        }
                    }
                }
                s
            }
            Basis::Hartley { mask, .. } => (0..c).flat_map(|_| mask.iter().copied()).collect(),
        };
        Ok(Degradation {
            task,
            shape,
            noise,
            basis,
            singular,
        })
    }

    /// How many times fewer values MRI measures than the image has (the mask's actual acceleration); None for
    /// the other tasks.
    pub fn acceleration(&self) -> Option<f64> {
        match &self.basis {
            Basis::Hartley { mask, .. } => Some(mask.len() as f64 / mask.iter().sum::<f64>()),
            Basis::Kron(_) => None,
        }
    }

    /// The singular value of every spectral coefficient.
    pub fn singular(&self) -> &[f64] {
        &self.singular
    }

    fn per(&self) -> usize {
        self.shape.iter().product()
    }

    /// The measurement's own shape: the small image of super-resolution, the grey image of colourisation,
    /// the (zero-filled) k-space of MRI.
    pub fn measured_shape(&self) -> [usize; 3] {
        match &self.basis {
            Basis::Kron(axes) => [axes[0].a.nrows(), axes[1].a.nrows(), axes[2].a.nrows()],
            Basis::Hartley { .. } => self.shape,
        }
    }

    /// x̄ = Vᵀx of each of the images (n × c·h·w).
    pub fn vt(&self, x: &[f64]) -> Vec<f64> {
        each(x, self.per(), |img| match &self.basis {
            Basis::Kron(axes) => kron(img, self.shape, [&axes[0].vt, &axes[1].vt, &axes[2].vt]),
            Basis::Hartley { .. } => self.hartley(img),
        })
    }

    /// x = V x̄ of each of the coefficient vectors.
    pub fn v(&self, coef: &[f64]) -> Vec<f64> {
        each(coef, self.per(), |c| match &self.basis {
            Basis::Kron(axes) => kron(c, self.shape, [&axes[0].v, &axes[1].v, &axes[2].v]),
            Basis::Hartley { .. } => self.hartley(c), // H is its own inverse
        })
    }

    /// The noiseless measurements A x of each image, in the measurement's own shape.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        each(x, self.per(), |img| match &self.basis {
            Basis::Kron(axes) => kron(img, self.shape, [&axes[0].a, &axes[1].a, &axes[2].a]),
            Basis::Hartley { .. } => {
                let k = self.hartley(img);
                k.iter().zip(&self.singular).map(|(v, m)| v * m).collect()
            }
        })
    }

    /// Measurements y = A x + σ_y n of `n` images, the noise of image i from stream i of `seed` (only on the
    /// sampled coefficients of MRI, which are the measurement).
    pub fn measure(&self, x: &[f32], n: usize, seed: u64) -> Vec<f32> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let clean = self.apply(&x);
        let m = self.measured_shape().iter().product::<usize>();
        let mut y = Vec::with_capacity(n * m);
        for (i, img) in clean.chunks(m).take(n).enumerate() {
            let z = crate::rng::normals(&mut crate::rng::stream(seed ^ MEASURE_STREAM, i as u64), m);
            for (j, (v, z)) in img.iter().zip(z).enumerate() {
                let seen = match self.basis {
                    Basis::Hartley { .. } => self.singular[j],
                    Basis::Kron(_) => 1.0,
                };
                y.push((v + self.noise * z as f64 * seen) as f32);
            }
        }
        y
    }

    /// Uᵀy in the spectral order of each measurement (zero where s = 0): the coefficients that s_i x̄_i + σ_y n̄_i
    /// gives.
    pub fn ut(&self, y: &[f32]) -> Vec<f64> {
        let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        let m = self.measured_shape().iter().product::<usize>();
        each(&y, m, |img| match &self.basis {
            Basis::Kron(axes) => {
                let small = kron(img, self.measured_shape(), [&axes[0].ut, &axes[1].ut, &axes[2].ut]);
                let r = [axes[0].ut.nrows(), axes[1].ut.nrows(), axes[2].ut.nrows()];
                let [_, h, w] = self.shape;
                let mut out = vec![0.0; self.per()];
                for (k, v) in small.iter().enumerate() {
                    let (a, b, d) = (k / (r[1] * r[2]), k / r[2] % r[1], k % r[2]);
                    out[(a * h + b) * w + d] = *v;
                }
                out
            }
            Basis::Hartley { .. } => img.to_vec(),
        })
    }

    /// The measurement shown as an image of the input's shape: nearest-neighbour upsampled (super-resolution),
    /// repeated over the channels (colourisation), the zero-filled inverse (MRI).
    pub fn shown(&self, y: &[f32], n: usize) -> Vec<f32> {
        if let Basis::Hartley { .. } = self.basis {
            return self.naive(y, n);
        }
        let [c, h, w] = self.shape;
        let [mc, mh, mw] = self.measured_shape();
        let mut out = Vec::with_capacity(n * self.per());
        for img in y.chunks(mc * mh * mw).take(n) {
            for ci in 0..c {
                for yi in 0..h {
                    for xi in 0..w {
                        out.push(img[((ci * mc / c) * mh + yi * mh / h) * mw + xi * mw / w]);
                    }
                }
            }
        }
        out
    }

    /// The naive inverse of the measurements, clamped to [−1, 1]: the noisy image (denoising), bicubic
    /// upsampling, Wiener deconvolution in the blur's SVD basis with the noise-to-signal ratio
    /// σ_y²/(var(y) − σ_y²) (σ_y² at least 10⁻⁴, so that a noiseless blur stays regularised), the
    /// grey image in every channel (colourisation), the zero-filled inverse transform (MRI).
    pub fn naive(&self, y: &[f32], n: usize) -> Vec<f32> {
        let m = self.measured_shape().iter().product::<usize>();
        let out: Vec<f64> = match &self.task {
            Task::SuperRes(k) => {
                let [c, h, w] = self.shape;
                y.chunks(m)
                    .take(n)
                    .flat_map(|img| bicubic(img, [c, h / k, w / k], *k))
                    .collect()
            }
            Task::Blur(_) => {
                let coef = self.ut(y);
                let mut x = Vec::with_capacity(n * self.per());
                for (img, c) in y.chunks(m).zip(coef.chunks(self.per())).take(n) {
                    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
                    let var = img.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
                    let noise = self.noise.powi(2).max(1e-4);
                    let nsr = noise / (var - self.noise.powi(2)).max(1e-6);
                    let base = self.vt(&vec![mean; self.per()]);
                    let bar: Vec<f64> = c
                        .iter()
                        .zip(&self.singular)
                        .zip(&base)
                        .map(|((&yc, &s), &b)| {
                            if s > 0.0 {
                                b + s * (yc - s * b) / (s * s + nsr)
                            } else {
                                b
                            }
                        })
                        .collect();
                    x.extend(self.v(&bar));
                }
                x
            }
            Task::Mri { .. } => {
                let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                self.v(&y[..n * m])
            }
            Task::Denoise | Task::Colourise => return clamp(self.shown(y, n)),
        };
        clamp(out.into_iter().map(|v| v as f32).collect())
    }

    /// The orthonormal 2-D Hartley transform of each channel: H = cas_h X C_w + cas'_h X S_w, with
    /// cas = cos + sin and cas' = cos − sin (cas(a + b) expanded).
    fn hartley(&self, img: &[f64]) -> Vec<f64> {
        let Basis::Hartley { cas_h, cos_sin_w, .. } = &self.basis else {
            unreachable!("the Hartley basis")
        };
        let [c, h, w] = self.shape;
        let id = DMatrix::identity(c, c);
        let a = kron(img, [c, h, w], [&id, &cas_h[0], &cos_sin_w[0]]);
        let b = kron(img, [c, h, w], [&id, &cas_h[1], &cos_sin_w[1]]);
        a.iter().zip(&b).map(|(p, q)| p + q).collect()
    }
}

/// `f` applied to each `per`-long item of `x`, concatenated.
fn each(x: &[f64], per: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    x.chunks(per).flat_map(f).collect()
}

/// Stream of the measurement noise, apart from the samplers' streams of the same seed.
const MEASURE_STREAM: u64 = 0x5e5e_0b5e_0000_0001;

pub(super) fn clamp(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|p| p.clamp(-1.0, 1.0)).collect()
}

/// The (n/k) × n matrix averaging blocks of k.
fn block_mean(n: usize, k: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n / k, n, |r, c| if c / k == r { 1.0 / k as f64 } else { 0.0 })
}

/// The n × n Gaussian blur of standard deviation `s` (support ±3s), each row normalised to sum to 1 so that
/// the borders keep their brightness.
fn gaussian(n: usize, s: f64) -> DMatrix<f64> {
    let reach = (3.0 * s).ceil() as i64;
    let mut a = DMatrix::from_fn(n, n, |r, c| {
        let d = r as i64 - c as i64;
        if d.abs() <= reach {
            (-(d * d) as f64 / (2.0 * s * s)).exp()
        } else {
            0.0
        }
    });
    for mut row in a.row_iter_mut() {
        let sum: f64 = row.iter().sum();
        row /= sum;
    }
    a
}

/// Each axis of one [d0, d1, d2] array multiplied by its matrix (p × d_axis): (M₀ ⊗ M₁ ⊗ M₂) x.
fn kron(x: &[f64], dims: [usize; 3], mats: [&DMatrix<f64>; 3]) -> Vec<f64> {
    let mut cur = x.to_vec();
    let mut d = dims;
    for (axis, m) in mats.iter().enumerate() {
        assert_eq!(m.ncols(), d[axis], "matrix of axis {axis}");
        let mut out_d = d;
        out_d[axis] = m.nrows();
        let stride = |d: [usize; 3]| [d[1] * d[2], d[2], 1];
        let (si, so) = (stride(d), stride(out_d));
        let mut out = vec![0.0; out_d.iter().product()];
        for i0 in 0..out_d[0] {
            for i1 in 0..out_d[1] {
                for i2 in 0..out_d[2] {
                    let idx = [i0, i1, i2];
                    let base = idx[0] * si[0] + idx[1] * si[1] + idx[2] - idx[axis] * si[axis];
                    let k = idx[axis];
                    out[i0 * so[0] + i1 * so[1] + i2] =
                        (0..d[axis]).map(|j| m[(k, j)] * cur[base + j * si[axis]]).sum();
                }
            }
        }
        cur = out;
        d = out_d;
    }
    cur
}

/// Bicubic upsampling by `k` (Keys' kernel, a = −0.5; pixel centres aligned; borders repeated).
fn bicubic(img: &[f32], [c, h, w]: [usize; 3], k: usize) -> Vec<f64> {
    let keys = |t: f64| {
        let t = t.abs();
        let a = -0.5;
        if t <= 1.0 {
            (a + 2.0) * t.powi(3) - (a + 3.0) * t * t + 1.0
        } else if t < 2.0 {
            a * t.powi(3) - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a
        } else {
            0.0
        }
    };
    // Taps and weights of each output coordinate along an axis of n inputs.
    let taps = |n: usize| -> Vec<Vec<(usize, f64)>> {
        (0..n * k)
            .map(|o| {
                let src = (o as f64 + 0.5) / k as f64 - 0.5;
                let f = src.floor();
                (-1..=2)
                    .map(|d| {
                        let i = (f as i64 + d).clamp(0, n as i64 - 1) as usize;
                        (i, keys(src - (f + d as f64)))
                    })
                    .collect()
            })
            .collect()
    };
    let (ty, tx) = (taps(h), taps(w));
    let mut out = Vec::with_capacity(c * h * w * k * k);
    for ci in 0..c {
        let plane = &img[ci * h * w..(ci + 1) * h * w];
        for row in &ty {
            for col in &tx {
                let v: f64 = row
                    .iter()
                    .flat_map(|&(y, wy)| col.iter().map(move |&(x, wx)| wy * wx * plane[y * w + x] as f64))
                    .sum();
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(per: usize, seed: u64) -> Vec<f64> {
        crate::rng::normals(&mut crate::rng::stream(seed, 0), per)
            .into_iter()
            .map(|v| v as f64)
            .collect()
    }

    fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst < tol, "{what}: off by {worst}");
    }

    fn all(shape: [usize; 3]) -> Vec<Degradation> {
        let rgb = [3, shape[1], shape[2]];
        ["denoise", "sr:2", "sr:4", "blur:1.5", "mri:random:4", "mri:radial:8"]
            .iter()
            .map(|t| Degradation::new(Task::parse(t).unwrap(), shape, 0.1, 3).unwrap())
            .chain([Degradation::new(Task::Colourise, rgb, 0.1, 3).unwrap()])
            .collect()
    }

    #[test]
    fn every_degradation_is_u_s_v_transposed() {
        // V is orthogonal, and A x = U (s ⊙ Vᵀx): Uᵀ(Ax) gives s ⊙ Vᵀx back, and ‖Ax‖ = ‖s ⊙ Vᵀx‖.
        for op in all([1, 8, 8]) {
            let per = op.per();
            let x = image(2 * per, 1);
            let bar = op.vt(&x);
            close(&op.v(&bar), &x, 1e-9, &format!("{}: V Vᵀ = I", op.task.name()));
            let ax: Vec<f32> = op.apply(&x).iter().map(|&v| v as f32).collect();
            let want: Vec<f64> = bar.iter().enumerate().map(|(i, b)| b * op.singular[i % per]).collect();
            close(
                &op.ut(&ax),
                &want,
                1e-5,
                &format!("{}: Uᵀ A x = S Vᵀ x", op.task.name()),
            );
            let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
            let ax64: Vec<f64> = ax.iter().map(|&v| v as f64).collect();
            assert!(
                (norm(&ax64) - norm(&want)).abs() < 1e-4 * norm(&want),
                "{}: ‖Ax‖",
                op.task.name()
            );
        }
    }

    #[test]
    fn the_measurements_are_what_each_task_says() {
        let x: Vec<f32> = (0..16).map(|i| i as f32 / 8.0 - 1.0).collect();
        let sr = Degradation::new(Task::SuperRes(2), [1, 4, 4], 0.0, 0).unwrap();
        assert_eq!(sr.measured_shape(), [1, 2, 2]);
        let y = sr.measure(&x, 1, 0);
        // The top-left block holds 0, 1, 4, 5 (over 8, minus 1).
        assert!((y[0] - (2.5 / 8.0 - 1.0)).abs() < 1e-6, "{y:?}");
        let grey = Degradation::new(Task::Colourise, [3, 2, 2], 0.0, 0).unwrap();
        let rgb: Vec<f32> = vec![0.3, 0.3, 0.3, 0.3, -0.3, -0.3, -0.3, -0.3, 0.6, 0.6, 0.6, 0.6];
        assert!(grey.measure(&rgb, 1, 0).iter().all(|v| (v - 0.2).abs() < 1e-6));
        // A blur keeps a constant image (rows sum to 1).
        let blur = Degradation::new(Task::Blur(2.0), [1, 6, 6], 0.0, 0).unwrap();
        assert!(blur.measure(&[0.4; 36], 1, 0).iter().all(|v| (v - 0.4).abs() < 1e-6));
        // Noise has the asked σ and is the same for the same seed.
        let noisy = Degradation::new(Task::Denoise, [1, 32, 32], 0.2, 0).unwrap();
        let y = noisy.measure(&[0.0; 1024], 1, 5);
        let sd = (y.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 1024.0).sqrt();
        assert!((sd - 0.2).abs() < 0.02, "{sd}");
        assert_eq!(y, noisy.measure(&[0.0; 1024], 1, 5));
    }

    #[test]
    fn mri_measures_the_fourier_transform_on_a_symmetric_mask() {
        // |F_k|² = (H_k² + H₋ₖ²)/2 for a real image: the Hartley samples carry the Fourier samples.
        let (h, w) = (8, 8);
        let op = Degradation::new(Task::parse("mri:random:2").unwrap(), [1, h, w], 0.0, 1).unwrap();
        let x = image(h * w, 2);
        let hx = op.vt(&x);
        for ky in 0..h {
            for kx in 0..w {
                let (re, im) = (0..h * w).fold((0.0, 0.0), |(re, im), p| {
                    let ang =
                        std::f64::consts::TAU * ((ky * (p / w)) as f64 / h as f64 + (kx * (p % w)) as f64 / w as f64);
                    (re + x[p] * ang.cos(), im - x[p] * ang.sin())
                });
                let neg = ((h - ky) % h) * w + (w - kx) % w;
                let power = (re * re + im * im) / (h * w) as f64;
                assert!((power - (hx[ky * w + kx].powi(2) + hx[neg].powi(2)) / 2.0).abs() < 1e-9);
                assert_eq!(op.singular[ky * w + kx], op.singular[neg], "symmetric mask");
            }
        }
    }

    #[test]
    fn naive_inverses_invert_what_they_can() {
        // Bicubic upsampling of a constant is that constant; Wiener deconvolution of a noiseless blur of a
        // smooth image comes back close; the zero-filled inverse of a full mask is the image.
        let sr = Degradation::new(Task::SuperRes(4), [1, 8, 8], 0.0, 0).unwrap();
        assert!(sr.naive(&[0.25; 4], 1).iter().all(|v| (v - 0.25).abs() < 1e-6));
        let x: Vec<f32> = (0..64).map(|i| ((i % 8) as f32 / 4.0 - 1.0) * 0.5).collect();
        let blur = Degradation::new(Task::Blur(0.8), [1, 8, 8], 0.0, 0).unwrap();
        let back = blur.naive(&blur.measure(&x, 1, 0), 1);
        let err = crate::edit::mse(&x, &back);
        let blurred = crate::edit::mse(&x, &blur.measure(&x, 1, 0));
        assert!(err < blurred / 10.0, "Wiener MSE {err} vs blurred {blurred}");
        let full = Degradation::new(Task::parse("mri:random:1.01").unwrap(), [1, 8, 8], 0.0, 0).unwrap();
        let back = full.naive(&full.measure(&x, 1, 0), 1);
        assert!(crate::edit::mse(&x, &back) < 1e-10);
    }

    #[test]
    fn bad_tasks_are_named() {
        for (spec, said) in [
            ("sr:1", "at least 2"),
            ("blur:-1", "positive"),
            ("mri:spiral:4", "spiral"),
            ("mri:random:1", "above 1"),
            ("deblur", "expected denoise"),
        ] {
            let e = Task::parse(spec).unwrap_err().to_string();
            assert!(e.contains(said), "{spec}: {e}");
        }
        let e = Degradation::new(Task::SuperRes(3), [1, 8, 8], 0.0, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("divides"), "{e}");
        let e = Degradation::new(Task::Colourise, [1, 8, 8], 0.0, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
