//! Matrix products over `f32` slices, in f32 or with bf16 operands, and the precision a thread's products run
//! in. On AVX-512 CPUs both run on the project's packed kernels ([`packed`]); elsewhere f32 runs on the `gemm`
//! crate and bf16 falls back to it.

use super::packed::{self, Lanes, Packed};
use gemm::Parallelism;
use std::cell::Cell;

/// The operand precision of the kernels' matrix products. Sums, weights, optimiser state and normalisation
/// statistics stay f32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    /// bfloat16 operands, f32 sums (mixed precision), where the CPU has AVX512-BF16; f32 elsewhere.
    Bf16,
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision this thread's convolutions run in: set by [`with_precision`], f32 otherwise.
pub fn precision() -> Precision {
    PRECISION.with(Cell::get)
}

/// Runs `f` with this thread's products in `precision` (as an autocast scope), restoring the previous setting
/// afterwards, also when `f` panics. The backward pass of an operation uses the precision of its forward pass.
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRECISION.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PRECISION.with(|p| p.replace(precision)));
    f()
}

/// A row-major (or transposed) view of a matrix for [`matmul`]; `stride` is the distance between stored rows.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride && data.len() >= rows.saturating_sub(1) * stride + cols);
        Self {
            data,
            rows,
            cols,
            stride,
            transposed: false,
        }
    }

    pub fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) of the logical matrix.
    pub fn strides(&self) -> (isize, isize) {
        let s = self.stride as isize;
        if self.transposed { (1, s) } else { (s, 1) }
    }
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]` with `dst` row-major, `dst_stride` apart; adds to `dst` when `accumulate`.
/// On the packed kernels where this CPU has them ([`packed_lanes`]: bf16 where `precision` asks for it and
/// AVX512-BF16 is there), else in f32 on the `gemm` crate.
pub fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    a: Mat,
    b: Mat,
    accumulate: bool,
    par: Parallelism,
    precision: Precision,
) {
    match packed_lanes(precision) {
        Some(lanes) => packed::matmul(dst, dst_stride, &Packed::new(a, lanes), b, accumulate, parallel(par)),
        None => crate_matmul(dst, dst_stride, a, b, accumulate, par),
    }
}

/// [`matmul`] in f32 on the `gemm` crate, for CPUs without AVX-512.
fn crate_matmul(dst: &mut [f32], dst_stride: usize, a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2);
    assert!(n <= dst_stride && dst.len() >= m.saturating_sub(1) * dst_stride + n);
    let ((ars, acs), (brs, bcs)) = (a.strides(), b.strides());
    // SAFETY: the asserts above (and in `Mat::strided`) keep every strided access inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            acs,
            ars,
            b.data.as_ptr(),
            bcs,
            brs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// The packed format of products in `precision` on this CPU, if it has one.
pub fn packed_lanes(precision: Precision) -> Option<Lanes> {
    match precision {
        Precision::Bf16 if Lanes::Bf16.available() => Some(Lanes::Bf16),
        _ if Lanes::F32.available() => Some(Lanes::F32),
        _ => None,
    }
}

/// Whether a product splits its own work over the threads (the packed kernels' form of `par`).
pub fn parallel(par: Parallelism) -> bool {
    !matches!(par, Parallelism::None)
}

/// A layer's weights as the left operand of many products (one per image): on the packed kernels they are
/// packed (and in bf16 rounded) once per call rather than per image.
pub struct Weights<'a> {
    mat: Mat<'a>,
    packed: Option<Packed>,
}

impl<'a> Weights<'a> {
    pub fn new(mat: Mat<'a>, precision: Precision) -> Self {
        let packed = packed_lanes(precision).map(|lanes| Packed::new(mat, lanes));
        Self { mat, packed }
    }

    /// The packing, where the project's kernels run on this CPU.
    pub fn packed(&self) -> Option<&Packed> {
        self.packed.as_ref()
    }

    /// `dst (+)= W · b`, as [`matmul`] in the weights' precision.
    pub fn matmul(&self, dst: &mut [f32], dst_stride: usize, b: Mat, accumulate: bool, par: Parallelism) {
        match &self.packed {
            Some(p) => packed::matmul(dst, dst_stride, p, b, accumulate, parallel(par)),
            None => crate_matmul(dst, dst_stride, self.mat, b, accumulate, par),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback of CPUs without AVX-512 is not what this machine runs: it is checked here directly, against
    /// the packed f32 product (and so against the direct sums the packed one is tested with).
    #[test]
    fn the_gemm_crate_fallback_gives_the_packed_products() {
        let mut rng = crate::rng::stream(17, 0);
        for (m, k, n) in [(5, 9, 7), (64, 576, 100), (3, 1, 40)] {
            let av = crate::rng::normals(&mut rng, m * k);
            let bv = crate::rng::normals(&mut rng, k * n);
            let (a, b) = (Mat::new(&av, m, k), Mat::new(&bv, n, k).t());
            let mut fallback = vec![1f32; m * n];
            crate_matmul(&mut fallback, n, a, b, true, Parallelism::None);
            let mut reference = vec![1f32; m * n];
            match Lanes::F32.available() {
                true => packed::matmul(&mut reference, n, &Packed::new(a, Lanes::F32), b, true, false),
                false => return eprintln!("skipped: no AVX-512 here, so the fallback is what every test runs"),
            }
            for (x, y) in fallback.iter().zip(&reference) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}×{k}×{n}: {x} vs {y}");
            }
        }
    }
}
