//! Matrix products with bfloat16 operands and f32 accumulation, on CPUs with AVX512-BF16.
//!
//! `vdpbf16ps` multiplies 16 pairs of bf16 values and adds each pair's two products into one f32 lane: 32
//! products per instruction, twice an f32 FMA's, at the same instruction throughput on the development machine
//! (3.5 G instructions/s per core for both, measured). The operands are rounded to bf16 (8 bits of mantissa)
//! while they are packed; sums stay f32.
//!
//! The layout is the usual packed GEMM: A is packed in panels of [`MR`] rows and B in panels of [`NR`]
//! columns, both as bf16 pairs along k, so that one 32-bit broadcast of A and one 512-bit load of B feed one
//! `vdpbf16ps`. k is cut into blocks of [`KC`], so that a B panel stays in L1 while every A panel passes it.

use super::matmul::Mat;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Rows of A (and of the output tile) per micro-kernel call.
const MR: usize = 8;
/// Columns of B per micro-kernel call: two 16-lane registers.
const NR: usize = 32;
/// k per block: a B panel of 256 pairs × 32 columns takes 32 KB of the 48 KB L1.
const KC: usize = 512;

/// Whether this CPU runs the bf16 kernels (AVX512-BF16, checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `x` rounded to the nearest bf16, ties to even; NaN stays a (quiet) NaN.
pub fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Two consecutive k entries as one 32-bit lane: the first in the low half, as `vdpbf16ps` pairs them.
fn pair(lo: f32, hi: f32) -> u32 {
    round(lo) as u32 | (round(hi) as u32) << 16
}

/// `dst[t] = pair(src[2t], src[2t + 1])`, with a zero after an odd `src`.
fn convert_pairs(src: &[f32], dst: &mut [u32]) {
    debug_assert_eq!(dst.len(), src.len().div_ceil(2));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX512-BF16 is present.
        done = unsafe { simd::convert_pairs(src, dst) };
    }
    for (d, two) in dst[done..].iter_mut().zip(src[2 * done..].chunks(2)) {
        *d = pair(two[0], two.get(1).copied().unwrap_or(0.0));
    }
}

/// `dst[i] = pair(lo[i], hi[i])` (`hi` zero when absent).
fn interleave(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(hi)) = (available(), hi) {
        // SAFETY: AVX512-BF16 is present.
        done = unsafe { simd::interleave(lo, hi, dst) };
    }
    for (i, d) in dst.iter_mut().enumerate().skip(done) {
        *d = pair(lo[i], hi.map_or(0.0, |h| h[i]));
    }
}

/// Packs the lines (rows of A, or columns of B) `lines` over k in `k0..k1` into `out` as
/// `[line panel][k pair][lane]` with `lanes` lanes per panel, zero beyond the matrix. A line's entry `k` is
/// `data[line · line_step + k · k_step]`.
#[allow(clippy::too_many_arguments)]
fn pack(
    data: &[f32],
    line_step: isize,
    k_step: isize,
    lines: std::ops::Range<usize>,
    k0: usize,
    k1: usize,
    lanes: usize,
    out: &mut Vec<u32>,
) {
    let pairs = (k1 - k0).div_ceil(2);
    let panels = lines.len().div_ceil(lanes);
    // Every lane of a line inside the matrix is written below: only a last, partial panel needs zeros.
    out.resize(panels * pairs * lanes, 0);
    let at = |line: usize, k: usize| (line as isize * line_step + k as isize * k_step) as usize;
    for (panel, dst) in out.chunks_exact_mut(pairs * lanes).enumerate() {
        let first = lines.start + panel * lanes;
        let count = lanes.min(lines.end - first);
        if count < lanes {
            dst.chunks_exact_mut(lanes).for_each(|p| p[count..].fill(0));
        }
        if k_step == 1 {
            // k contiguous (A row-major, or B transposed): 16 pairs of each line are converted at once, then
            // spread over the lanes, a block small enough for L1 at a time.
            let mut block = [[0u32; 16]; NR];
            for p0 in (0..pairs).step_by(16) {
                let (from, to) = (k0 + 2 * p0, (k0 + 2 * p0 + 32).min(k1));
                let np = (to - from).div_ceil(2);
                for (l, b) in block.iter_mut().enumerate().take(count) {
                    convert_pairs(&data[at(first + l, from)..][..to - from], &mut b[..np]);
                }
                for t in 0..np {
                    let row = &mut dst[(p0 + t) * lanes..][..count];
                    row.iter_mut().zip(&block).for_each(|(d, b)| *d = b[t]);
                }
            }
        } else if line_step == 1 {
            // Lines contiguous: two k rows side by side, interleaved.
            for p in 0..pairs {
                let k = k0 + 2 * p;
                let lo = &data[at(first, k)..][..count];
                let hi = (k + 1 < k1).then(|| &data[at(first, k + 1)..][..count]);
                interleave(lo, hi, &mut dst[p * lanes..][..count]);
            }
        } else {
            for p in 0..pairs {
                let k = k0 + 2 * p;
                for l in 0..count {
                    let hi = if k + 1 < k1 { data[at(first + l, k + 1)] } else { 0.0 };
                    dst[p * lanes + l] = pair(data[at(first + l, k)], hi);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// [`super::convert_pairs`] for whole groups of 16 pairs; returns how many pairs it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn convert_pairs(src: &[f32], dst: &mut [u32]) -> usize {
        let groups = (src.len() / 32).min(dst.len() / 16);
        for g in 0..groups {
            // SAFETY: 32 floats read and 16 lanes written inside the slices.
            unsafe {
                let lo = _mm512_loadu_ps(src.as_ptr().add(32 * g));
                let hi = _mm512_loadu_ps(src.as_ptr().add(32 * g + 16));
                // bf16 lanes in memory order: lane t of the 32-bit view is (src[2t], src[2t + 1]).
                let v = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    dst.as_mut_ptr().add(16 * g).cast(),
                    std::mem::transmute::<__m512bh, __m512i>(v),
                );
            }
        }
        groups * 16
    }

    /// [`super::interleave`] for whole groups of 16; returns how many it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16 (and so AVX512-BW).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn interleave(lo: &[f32], hi: &[f32], dst: &mut [u32]) -> usize {
        let groups = lo.len().min(hi.len()).min(dst.len()) / 16;
        // 16-bit lanes: lo's i-th value (lane i) then hi's (lane 16 + i).
        let order = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        for g in 0..groups {
            // SAFETY: 16 floats read from each and 16 lanes written inside the slices.
            unsafe {
                let l = _mm512_loadu_ps(lo.as_ptr().add(16 * g));
                let h = _mm512_loadu_ps(hi.as_ptr().add(16 * g));
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
                _mm512_storeu_si512(dst.as_mut_ptr().add(16 * g).cast(), _mm512_permutexvar_epi16(order, v));
            }
        }
        groups * 16
    }
}

/// Where a micro-kernel's tile goes: `rows` rows from `row` and `cols` (≤ [`NR`]) columns from `col` of the
/// output, added to what is there when `add`.
#[derive(Clone, Copy)]
struct Tile {
    row: usize,
    rows: usize,
    col: usize,
    cols: usize,
    add: bool,
}

/// The product of one packed A panel and one packed B panel over `pairs` k pairs, stored (or added) into `out`
/// at `tile`; masked loads and stores keep to the tile's columns.
///
/// # Safety
/// The CPU must have AVX512-BF16 ([`available`]); `a` holds `pairs · MR` and `b` `pairs · NR` lanes; the tile
/// lies inside the output and no other thread writes it meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn micro_kernel(pairs: usize, a: &[u32], b: &[u32], out: Out, tile: Tile) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= pairs * MR && b.len() >= pairs * NR && tile.rows <= MR && tile.cols <= NR);
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    let (a, b) = (a.as_ptr(), b.as_ptr());
    for p in 0..pairs {
        // SAFETY: in bounds by the caller's contract; unaligned loads.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
            for (i, ci) in c.iter_mut().enumerate() {
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(p * MR + i) as i32));
                ci[0] = _mm512_dpbf16_ps(ci[0], ai, b0);
                ci[1] = _mm512_dpbf16_ps(ci[1], ai, b1);
            }
        }
    }
    let all = (1u64 << tile.cols) - 1;
    let masks = [all as u16, (all >> 16) as u16];
    for (i, ci) in c.iter().enumerate().take(tile.rows) {
        // SAFETY: the row and the masked columns lie inside the output (the caller's contract).
        unsafe {
            let row = out.ptr.add((tile.row + i) * out.stride + tile.col);
            for (h, (&mask, &v)) in masks.iter().zip(ci).enumerate() {
                let at = row.add(16 * h);
                let v = if tile.add {
                    _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, at))
                } else {
                    v
                };
                _mm512_mask_storeu_ps(at, mask, v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn micro_kernel(_: usize, _: &[u32], _: &[u32], _: Out, _: Tile) {
    unreachable!("the bf16 kernels are only chosen where `available()`")
}

/// The output's rows, shared by the threads that write disjoint column ranges of it.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    stride: usize,
}
// SAFETY: every thread writes its own columns (B panels are split between threads, never shared).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

thread_local! {
    /// Packed panels kept per thread between calls, so that they are not allocated and faulted in per product.
    static PACKED: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]` with bf16 operands and f32 sums, `dst` row-major `dst_stride` apart; adds
/// to `dst` when `accumulate`. Splits B's panels over the threads when `parallel`.
///
/// # Panics
/// Where the CPU lacks AVX512-BF16 ([`available`]): callers choose the f32 product there.
pub fn matmul(dst: &mut [f32], dst_stride: usize, a: Mat, b: Mat, accumulate: bool, parallel: bool) {
    assert!(available(), "bf16 products need AVX512-BF16");
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2);
    assert!(n <= dst_stride && dst.len() >= m.saturating_sub(1) * dst_stride + n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_stride).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let out = Out {
        ptr: dst.as_mut_ptr(),
        stride: dst_stride,
    };
    let ((ars, acs), (brs, bcs)) = (a.strides(), b.strides());
    let mut packed_a = Vec::new();
    // Blocks of equal size (even, so that pairs never straddle two), at most KC.
    let kc = k.div_ceil(k.div_ceil(KC)).next_multiple_of(2);
    for k0 in (0..k).step_by(kc) {
        let k1 = (k0 + kc).min(k);
        let pairs = (k1 - k0).div_ceil(2);
        pack(a.data, ars, acs, 0..m, k0, k1, MR, &mut packed_a);
        let add = accumulate || k0 > 0;
        let panel = |j0: usize, packed_b: &mut Vec<u32>| {
            let cols = NR.min(n - j0);
            pack(b.data, bcs, brs, j0..j0 + cols, k0, k1, NR, packed_b);
            for (ip, ap) in packed_a.chunks_exact(pairs * MR).enumerate() {
                let tile = Tile {
                    row: ip * MR,
                    rows: MR.min(m - ip * MR),
                    col: j0,
                    cols,
                    add,
                };
                // SAFETY: `available()` was asserted; the panels hold `pairs` pairs of MR and NR lanes; the tile's
                // rows (< m) and columns (j0..j0 + cols ≤ n) lie inside `dst` (asserted above), and this thread
                // alone writes these columns.
                unsafe { micro_kernel(pairs, ap, packed_b, out, tile) };
            }
        };
        let starts = (0..n).step_by(NR);
        if parallel {
            starts
                .collect::<Vec<_>>()
                .into_par_iter()
                .for_each_init(Vec::new, |buf, j0| panel(j0, buf));
        } else {
            PACKED.with(|cell| match cell.try_borrow_mut() {
                Ok(mut bufs) => starts.for_each(|j0| panel(j0, &mut bufs.1)),
                Err(_) => {
                    let mut buf = Vec::new();
                    starts.for_each(|j0| panel(j0, &mut buf))
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan_and_infinities() {
        assert_eq!(round(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(round(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(round(f32::INFINITY), 0x7f80);
        assert_eq!(round(-f32::INFINITY), 0xff80);
        assert!(widen(round(f32::NAN)).is_nan());
        assert!(widen(round(f32::from_bits(0x7fff_ffff))).is_nan());
        for x in [0.1f32, -3.7, 1e-30, 6.5e4] {
            assert!((widen(round(x)) - x).abs() <= x.abs() / 256.0, "{x}");
        }
    }

    /// The product of the bf16-rounded operands in f64.
    fn reference(a: &Mat, b: &Mat) -> Vec<f64> {
        let ((m, k), (_, n)) = (a.shape(), b.shape());
        let ((ars, acs), (brs, bcs)) = (a.strides(), b.strides());
        let q = |v: f32| widen(round(v)) as f64;
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|l| {
                        q(a.data[(i as isize * ars + l as isize * acs) as usize])
                            * q(b.data[(l as isize * brs + j as isize * bcs) as usize])
                    })
                    .sum();
            }
        }
        c
    }

    #[test]
    fn products_equal_the_rounded_operands_product_for_every_layout_and_edge() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut rng = crate::rng::stream(11, 0);
        // Edges of every kind: m and n off the tile, odd k, k across blocks of KC, and each operand transposed.
        for (m, k, n) in [
            (1, 1, 1),
            (8, 2, 32),
            (9, 7, 33),
            (13, 1100, 70),
            (64, 576, 64),
            (3, 27, 100),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = crate::rng::normals(&mut rng, m * k);
                let bv = crate::rng::normals(&mut rng, k * n);
                let a = if ta {
                    Mat::new(&av, k, m).t()
                } else {
                    Mat::new(&av, m, k)
                };
                let b = if tb {
                    Mat::new(&bv, n, k).t()
                } else {
                    Mat::new(&bv, k, n)
                };
                let want = reference(&a, &b);
                for (accumulate, parallel) in [(false, false), (true, true)] {
                    let stride = n + 3;
                    let mut dst = vec![0.5f32; m * stride];
                    matmul(&mut dst, stride, a, b, accumulate, parallel);
                    for i in 0..m {
                        for j in 0..stride {
                            let got = dst[i * stride + j] as f64;
                            let expect = if j >= n {
                                0.5
                            } else {
                                want[i * n + j] + if accumulate { 0.5 } else { 0.0 }
                            };
                            // f32 sums of k products: a few ulps of the sum of magnitudes.
                            let scale = (k as f64).sqrt() * 4.0 + 1.0;
                            assert!(
                                (got - expect).abs() <= 1e-5 * scale,
                                "{m}×{k}×{n} t=({ta},{tb}) acc={accumulate} [{i},{j}]: {got} vs {expect}"
                            );
                        }
                    }
                }
            }
        }
    }
}
