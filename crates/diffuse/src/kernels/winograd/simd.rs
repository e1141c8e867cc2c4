//! The plane transforms on sixteen tiles at a time. They run only where [`super::applies`] found the packed kernels,
//! so on CPUs with AVX-512.

use super::{Dest, Lane, Variant, build, sandwich};
use std::arch::x86_64::*;
use std::ops::{Add, Mul, Neg, Sub};

/// Sixteen tiles' entries in one register.
#[derive(Clone, Copy)]
pub struct Block(__m512);

impl Lane for Block {
    #[inline(always)]
    fn neg_zero() -> Block {
        Block::splat(-0.0)
    }
}

// SAFETY (every intrinsic in this module): a `Block` is only made inside the `avx512f` functions below, into
// which these always-inlined operations are inlined.
impl Add for Block {
    type Output = Block;
    #[inline(always)]
    fn add(self, o: Block) -> Block {
        Block(unsafe { _mm512_add_ps(self.0, o.0) })
    }
}

impl Sub for Block {
    type Output = Block;
    #[inline(always)]
    fn sub(self, o: Block) -> Block {
        Block(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
}

impl Neg for Block {
    type Output = Block;
    #[inline(always)]
    fn neg(self) -> Block {
        Block(unsafe { _mm512_sub_ps(_mm512_setzero_ps(), self.0) })
    }
}

impl Mul<f32> for Block {
    type Output = Block;
    #[inline(always)]
    fn mul(self, k: f32) -> Block {
        Block(unsafe { _mm512_mul_ps(self.0, _mm512_set1_ps(k)) })
    }
}

impl Block {
    /// The first `n` (≤ 16) entries of `src`, zero after.
    #[inline(always)]
    fn load(src: &[f32], n: usize) -> Block {
        assert!(n <= 16 && src.len() >= n);
        // An empty slice's pointer is dangling: AMD's CPUs take a slow assist for a masked load at an address
        // that would fault, even with no lane enabled.
        if n == 0 {
            return Block::splat(0.0);
        }
        // SAFETY: the mask reads only the first n entries, which `src` holds.
        Block(unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, src.as_ptr()) })
    }

    /// Writes the first `n` (≤ 16) entries to `dst`.
    #[inline(always)]
    fn store(self, dst: &mut [f32], n: usize) {
        assert!(n <= 16 && dst.len() >= n);
        // SAFETY: the mask writes only the first n entries, which `dst` holds.
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << n) - 1) as u16, self.0) }
    }

    #[inline(always)]
    fn splat(v: f32) -> Block {
        Block(unsafe { _mm512_set1_ps(v) })
    }
}

/// A row's chunk `c` of 16·M pixels as its M phases: lane i of phase j is `row[16Mc + Mi + j]`, zero beyond
/// the row (M is 2 or 4).
#[inline(always)]
fn phases<const M: usize>(row: &[f32], c: usize) -> [Block; M] {
    let chunk = row.get(16 * M * c..).unwrap_or(&[]);
    // No closures in these helpers: see `one_d`.
    let mut out = [Block::splat(0.0); M];
    unsafe {
        if M == 2 {
            let (lo, hi) = (sixteen(chunk, 0).0, sixteen(chunk, 1).0);
            for (j, o) in out.iter_mut().enumerate() {
                *o = Block(_mm512_permutex2var_ps(lo, pick::<M>(j), hi));
            }
        } else {
            // Each pair of registers gives eight lanes of the phase; the halves are joined.
            let (z0, z1) = (sixteen(chunk, 0).0, sixteen(chunk, 1).0);
            let (z2, z3) = (sixteen(chunk, 2).0, sixteen(chunk, 3).0);
            for (j, o) in out.iter_mut().enumerate() {
                let idx = pick::<M>(j);
                let (a, b) = (_mm512_permutex2var_ps(z0, idx, z1), _mm512_permutex2var_ps(z2, idx, z3));
                *o = Block(_mm512_shuffle_f32x4::<0b0100_0100>(a, b));
            }
        }
    }
    out
}

/// Entries `16q..16q + 16` of `chunk`, zero beyond it.
#[inline(always)]
fn sixteen(chunk: &[f32], q: usize) -> Block {
    let n = chunk.len().saturating_sub(16 * q).min(16);
    Block::load(chunk.get(16 * q..).unwrap_or(&[]), n)
}

/// Lane indices j, j + M, j + 2M, … into the 32 entries of two registers (lanes past 31 wrap and are not used).
#[inline(always)]
fn pick<const M: usize>(j: usize) -> __m512i {
    let (j, m) = (j as i32, M as i32);
    unsafe {
        _mm512_set_epi32(
            j + 15 * m,
            j + 14 * m,
            j + 13 * m,
            j + 12 * m,
            j + 11 * m,
            j + 10 * m,
            j + 9 * m,
            j + 8 * m,
            j + 7 * m,
            j + 6 * m,
            j + 5 * m,
            j + 4 * m,
            j + 3 * m,
            j + 2 * m,
            j + m,
            j,
        )
    }
}

/// Lanes `SHIFT..16` of `a` followed by lanes `0..SHIFT` of `b`.
#[inline(always)]
fn align<const SHIFT: i32>(a: Block, b: Block) -> Block {
    Block(unsafe {
        _mm512_castsi512_ps(_mm512_alignr_epi32::<SHIFT>(
            _mm512_castps_si512(b.0),
            _mm512_castps_si512(a.0),
        ))
    })
}

/// Stores the first `n` lanes of `b`, tiles `t..t + n` of transform `xi`, where `dest` puts them: split where
/// the tiles cross from one panel of 32 into the next.
#[inline(always)]
fn store_tiles(b: Block, out: &mut [f32], dest: Dest, xi: usize, t: usize, n: usize) {
    let first = if dest.panel == 32 { n } else { n.min(32 - t % 32) };
    b.store(&mut out[dest.at(xi, t)..], first);
    if first < n {
        let rest = unsafe {
            let lanes = _mm512_add_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(first as i32),
            );
            Block(_mm512_permutexvar_ps(lanes, b.0))
        };
        rest.store(&mut out[dest.at(xi, t + first)..], n - first);
    }
}

/// `taps[(r·K + k)·T + ty·cols + tx] = plane[M·ty + r − pad][M·tx + k − pad]` for the tiles (stride M) of
/// `R × K` pixels of a plane (`h × w`, `rows × cols` tiles, `T = rows·cols`), zero outside the plane, with
/// `pad` 1 (the input, K = M + 2) or 0 (the output gradient, K = M): the tiles' pixels laid out so that the
/// transforms run over sixteen consecutive tiles, across tile rows, with full registers. Each row is split
/// into its M phases in registers, sixteen tiles at a time, and written to the tap rows that read it;
/// padding is written as zeros, so the buffer is reused without clearing.
#[inline(always)]
fn gather_taps<const M: usize, const R: usize, const K: usize>(
    plane: &[f32],
    (h, w): (usize, usize),
    pad: usize,
    taps: &mut Vec<f32>,
) {
    let (rows, cols) = (h.div_ceil(M), w.div_ceil(M));
    let t = rows * cols;
    taps.resize(R * K * t, 0.0);
    let none = [Block::splat(0.0); M];
    for ty in 0..rows {
        for r in 0..R {
            let y = (M * ty + r).checked_sub(pad).filter(|&y| y < h);
            let row = y.map(|y| &plane[y * w..][..w]);
            let (mut prev, mut next) = (none, row.map_or(none, |row| phases::<M>(row, 0)));
            for c in 0..cols.div_ceil(16) {
                let (cur, n) = (next, 16.min(cols - 16 * c));
                next = row.map_or(none, |row| phases::<M>(row, c + 1));
                // Tile tx = 16c + i reads pixel M·tx + k − pad: with pad 1, k = 0 is the last phase of the
                // tile before, k = 1..=M the phases k − 1, and k = M + 1 the first phase of the tile after.
                for k in 0..K {
                    let line = match (pad, k) {
                        (0, _) => cur[k],
                        (_, 0) => align::<15>(prev[M - 1], cur[M - 1]),
                        (_, k) if k <= M => cur[k - 1],
                        _ => align::<1>(cur[0], next[0]),
                    };
                    line.store(&mut taps[(r * K + k) * t + ty * cols + 16 * c..], n);
                }
                prev = cur;
            }
        }
    }
}

/// The transform `mat · d · matᵀ` (or, `transposed`, `matᵀ · d · mat`) of every K×K tile (stride M) of one
/// plane (`h × w`, padded by `pad`), into `out` where `dest` puts it, from tile `at`; `taps` is scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn transform_plane<const M: usize, const K: usize, const R: usize, const A: usize>(
    (plane, hw, pad): (&[f32], (usize, usize), usize),
    mat: &[[f32; A]; R],
    transposed: bool,
    out: &mut [f32],
    dest: Dest,
    at: usize,
    taps: &mut Vec<f32>,
) {
    gather_taps::<M, K, K>(plane, hw, pad, taps);
    let t = taps.len() / (K * K);
    for t0 in (0..t).step_by(16) {
        let n = 16.min(t - t0);
        let mut d = [[Block::splat(0.0); K]; K];
        for r in 0..K {
            for k in 0..K {
                d[r][k] = Block::load(&taps[(K * r + k) * t + t0..], n);
            }
        }
        let v: [[Block; A]; A] = sandwich(mat, transposed, d);
        for xi in 0..A * A {
            store_tiles(v[xi / A][xi % A], out, dest, xi, at + t0, n);
        }
    }
}

/// `V = Bᵀ d B` of every tile of one input plane (`h × w`, padded by one), into `out` where `dest` puts it,
/// from tile `at`; `taps` is scratch.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn input_plane<const M: usize, const A: usize, W: Variant<M, A>>(
    plane: &[f32],
    hw: (usize, usize),
    out: &mut [f32],
    dest: Dest,
    at: usize,
    taps: &mut Vec<f32>,
) {
    transform_plane::<M, A, A, A>((plane, hw, 1), &W::MATS.bt, false, out, dest, at, taps);
}

/// `A dY Aᵀ` of every tile of one output-gradient plane (`h × w`, zero beyond it), into `out` as
/// [`input_plane`] writes.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn output_gradient_plane<const M: usize, const A: usize, W: Variant<M, A>>(
    plane: &[f32],
    hw: (usize, usize),
    out: &mut [f32],
    dest: Dest,
    at: usize,
    taps: &mut Vec<f32>,
) {
    transform_plane::<M, M, M, A>((plane, hw, 0), &W::MATS.at, true, out, dest, at, taps);
}

/// One output plane (`h × w`) from its tiles' products `m` (a² rows of `stride`, from entry `at`):
/// `Aᵀ M A` plus `bias`; `tiles` is scratch.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn output_plane<const M: usize, const A: usize, W: Variant<M, A>>(
    m: &[f32],
    stride: usize,
    at: usize,
    bias: f32,
    (h, w): (usize, usize),
    plane: &mut [f32],
    tiles: &mut Vec<f32>,
) {
    let (rows, cols) = (h.div_ceil(M), w.div_ceil(M));
    let t = rows * cols;
    // The tiles' m² outputs, as `tiles[(M·i + j)·T + tile]`.
    tiles.resize(M * M * t, 0.0);
    for t0 in (0..t).step_by(16) {
        let n = 16.min(t - t0);
        let tile: [[Block; A]; A] = build(|a| build(|c| Block::load(&m[(A * a + c) * stride + at + t0..], n)));
        let y: [[Block; M]; M] = sandwich(&W::MATS.at, false, tile);
        for i in 0..M * M {
            (y[i / M][i % M] + Block::splat(bias)).store(&mut tiles[i * t + t0..], n);
        }
    }
    for y in 0..h {
        let (i, base) = (y % M, y / M * cols);
        let src: [&[f32]; M] = build(|j| &tiles[(M * i + j) * t + base..][..cols]);
        let dst = &mut plane[y * w..][..w];
        let mut pixels = dst.chunks_exact_mut(M);
        for (tx, p) in pixels.by_ref().enumerate() {
            for (j, v) in p.iter_mut().enumerate() {
                *v = src[j][tx];
            }
        }
        for (j, v) in pixels.into_remainder().iter_mut().enumerate() {
            *v = src[j][w / M];
        }
    }
}
