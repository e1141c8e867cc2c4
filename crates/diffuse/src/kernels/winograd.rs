//! 3×3 "same" convolutions (stride 1, padding 1) by Winograd's minimal filtering F(m×m, 3×3): Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks" (2016), eq. 7–8, with the matrices of §4.1 (F(2×2, 3×3))
//! and §4.2 (F(4×4, 3×3)).
//!
//! Each m×m output tile is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` of its a×a input tile `d` (a = m + 2; the tiles overlap by
//! two pixels) and the 3×3 kernel `g`: a² multiplications per tile and channel pair where direct convolution
//! needs 9m² (16 against 36 for m = 2, 36 against 144 for m = 4). Over the channels, the a² positions ξ of a
//! transformed tile are a² independent matrix products, which run on the packed kernels ([`super::packed`]):
//!
//! - forward: `M_ξ[co, t] = Σ_ci U_ξ[co, ci] · V_ξ[ci, t]` with `U = G g Gᵀ` per channel pair and `V = Bᵀ d B`
//!   per tile and input channel; the output tile is `Aᵀ M A`;
//! - weight gradient: the output is linear in `U`, so `dU_ξ[co, ci] = Σ_t (A dY Aᵀ)_ξ[co, t] · V_ξ[ci, t]` and
//!   `dW = Gᵀ dU G`;
//! - input gradient: the forward pass of the flipped kernel ([`super::conv`] builds it), itself 3×3 "same".
//!
//! f32 runs F(4×4, 3×3) on wide images and F(2×2, 3×3) on the others ([`large_tiles`]); F(4×4)'s transforms
//! multiply by up to 8 and 1/24, which f32 absorbs (the tests bound the error against direct f64 sums). Tiles are taken a group of whole images at a time, so that a group's
//! transformed tiles stay in the caches; groups run in parallel, or, when there are fewer groups than threads,
//! the products (and the channels of the other transforms) do.

use super::conv::ConvShape;
use super::matmul::{Mat, Precision};
use super::packed::{self, Lanes, NR, Packed};
use rayon::prelude::*;
use std::ops::{Add, Mul, Neg, Sub};

/// The matrices of F(m×m, 3×3) with a = m + 2: `bt` is Bᵀ, `g` is G and `at` is Aᵀ.
pub struct Algorithm<const M: usize, const A: usize> {
    bt: [[f32; A]; A],
    g: [[f32; 3]; A],
    at: [[f32; A]; M],
}

/// An algorithm as a type, so that its matrices are constants where the transforms are compiled (a matrix read
/// at run time would leave every zero and ±1 to be tested and multiplied).
pub trait Variant<const M: usize, const A: usize> {
    const MATS: Algorithm<M, A>;
}

/// F(2×2, 3×3) (§4.1 of the paper): its transforms only add, subtract and halve.
pub struct F2;

impl Variant<2, 4> for F2 {
    const MATS: Algorithm<2, 4> = Algorithm {
        bt: [
            [1., 0., -1., 0.],
            [0., 1., 1., 0.],
            [0., -1., 1., 0.],
            [0., 1., 0., -1.],
        ],
        g: [[1., 0., 0.], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0., 0., 1.]],
        at: [[1., 1., 1., 0.], [0., 1., -1., -1.]],
    };
}

/// F(4×4, 3×3) (§4.2 of the paper, interpolation points 0, ±1, ±2 and ∞).
pub struct F4;

impl Variant<4, 6> for F4 {
    const MATS: Algorithm<4, 6> = Algorithm {
        bt: [
            [4., 0., -5., 0., 1., 0.],
            [0., -4., -4., 1., 1., 0.],
            [0., 4., -4., -1., 1., 0.],
            [0., -2., -1., 2., 1., 0.],
            [0., 2., -1., -2., 1., 0.],
            [0., 4., 0., -5., 0., 1.],
        ],
        g: [
            [1. / 4., 0., 0.],
            [-1. / 6., -1. / 6., -1. / 6.],
            [-1. / 6., 1. / 6., -1. / 6.],
            [1. / 24., 1. / 12., 1. / 6.],
            [1. / 24., -1. / 12., 1. / 6.],
            [0., 0., 1.],
        ],
        at: [
            [1., 1., 1., 1., 1., 0.],
            [0., 1., -1., 2., -2., 0.],
            [0., 1., 1., 4., 4., 0.],
            [0., 1., -1., 8., -8., 1.],
        ],
    };
}

/// About how many transformed entries per channel a group takes (whole images, at least one): 128 tiles of
/// F(2×2) or 57 of F(4×4), so 128 channels transform to 1 MB. Half and twice this measured within a few percent.
const GROUP_ENTRIES: usize = if cfg!(test) { 640 } else { 2048 };
/// Fewer channels than this on either side leave the products too thin to pay for the transforms (the 3-channel
/// first and last layers; thinner ones were not measured).
const MIN_CHANNELS: usize = 16;
/// Smaller images keep the direct convolution. The transforms run over the tiles of one plane at a time, so a
/// small plane leaves registers part empty; measured (kernel bench, batch 64, forward / backward ms, Winograd
/// against direct): 64 channels at 14×14 5.1 / 11.1 against 5.8 / 12.7, but at 8×8 2.0 / 4.4 against 1.6 / 3.9
/// and at 7×7 1.8 / 4.0 against 1.6 / 3.5.
const MIN_SIDE: usize = 14;
/// The most transformed entries of one group (16 MB): larger images (latents of 64×64 and more with hundreds of
/// channels) keep the direct path rather than leave the caches.
const MAX_GROUP: usize = 1 << 22;

/// Whether shape `s` runs with Winograd's algorithm in `precision`: a 3×3 kernel, stride 1, padding 1, enough
/// channels, and f32 products on the packed kernels (AVX-512). bf16 keeps the direct convolution: its products
/// are twice as fast already, so the transforms cost about what the fewer products save, and transformed
/// operands rounded to bf16 lose more than direct ones.
pub fn applies(s: &ConvShape, precision: Precision) -> bool {
    let same = s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad_h == 1 && s.pad_w == 1;
    let wide = s.cin >= MIN_CHANNELS && s.cout >= MIN_CHANNELS;
    let fits = match large_tiles(s) {
        true => 36 * Tiles::of::<4, 6>(s).per_group(),
        false => 16 * Tiles::of::<2, 4>(s).per_group(),
    } * s.cin.max(s.cout)
        <= MAX_GROUP;
    let f32_packed = precision == Precision::F32 && Lanes::F32.available();
    let large = s.height.min(s.width) >= MIN_SIDE;
    same && wide && large && fits && f32_packed
}

/// The convolution's output, `[batch, cout, h, w]`, for a shape [`applies`] accepts.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    match large_tiles(s) {
        true => forward_with::<4, 6, F4>(x, weight, bias, s),
        false => forward_with::<2, 4, F2>(x, weight, bias, s),
    }
}

/// The weight gradient `[cout, cin, 3, 3]` from the input `x` and the output gradient `dy`, for a shape
/// [`applies`] accepts.
pub fn weight_gradient(x: &[f32], dy: &[f32], s: &ConvShape) -> Vec<f32> {
    match large_tiles(s) {
        true => weight_gradient_with::<4, 6, F4>(x, dy, s),
        false => weight_gradient_with::<2, 4, F2>(x, dy, s),
    }
}

/// F(4×4, 3×3) for images at least 32 pixels wide, F(2×2, 3×3) below. The transforms run over sixteen tiles of
/// one plane at a time, so a narrow plane leaves most of a register empty, and F(4×4)'s tiles are four times as
/// large: measured (kernel bench, batch 32), F(4×4) took 10.1 / 22.0 ms (forward / backward) against F(2×2)'s
/// 11.8 / 27.2 on the 64-channel 32×32 layer, but 10.6 / 22.4 against 8.3 / 18.4 on the 128-channel 16×16 one.
fn large_tiles(s: &ConvShape) -> bool {
    s.width >= 32
}

/// How the output is cut into m×m tiles, and the tiles into groups of whole images.
#[derive(Clone, Copy)]
struct Tiles {
    /// Tile rows and columns of an image.
    rows: usize,
    cols: usize,
    /// Images per group.
    images: usize,
}

impl Tiles {
    fn of<const M: usize, const A: usize>(s: &ConvShape) -> Self {
        let (rows, cols) = (s.height.div_ceil(M), s.width.div_ceil(M));
        let images = (GROUP_ENTRIES / (A * A * rows * cols).max(1)).max(1);
        Self { rows, cols, images }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    fn per_group(&self) -> usize {
        self.images * self.per_image()
    }
}

/// What the transforms compute on: one f32 (the weights, once per call) or a `simd::Block` of sixteen tiles.
trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> + Neg<Output = Self> + Mul<f32, Output = Self> {
    /// −0, the sum of nothing: `−0 + x` is exactly `x`, so the compiler drops the first addition of a sum.
    fn neg_zero() -> Self;
}

impl Lane for f32 {
    #[inline(always)]
    fn neg_zero() -> f32 {
        -0.0
    }
}

/// `[f(0), …, f(N − 1)]`, always inlined (`std::array::from_fn` is not, and would leave the AVX-512 functions).
/// Plain index loops here and below: iterator adapters such as `skip` may stay out of line.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn build<T: Copy, const N: usize>(f: impl Fn(usize) -> T) -> [T; N] {
    let mut a = [f(0); N];
    for i in 1..N {
        a[i] = f(i);
    }
    a
}

/// `mat · v` (or, `transposed`, `matᵀ · v`) for one of the constant matrices: once inlined, zero entries vanish
/// and ±1 become additions and subtractions. No closures here or in [`sandwich`]: a closure is its own function,
/// which may stay out of line and, outside the AVX-512 functions, be compiled without AVX-512.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn one_d<T: Lane, const R: usize, const C: usize, const N: usize, const O: usize>(
    mat: &[[f32; C]; R],
    transposed: bool,
    v: [T; N],
) -> [T; O] {
    let mut out = [v[0]; O];
    for o in 0..O {
        let mut acc = T::neg_zero();
        for i in 0..N {
            let k = if transposed { mat[i][o] } else { mat[o][i] };
            acc = add_term(acc, k, v[i]);
        }
        out[o] = acc;
    }
    out
}

/// `acc + k·v`, with nothing added for a zero `k` and no product for ±1.
#[inline(always)]
fn add_term<T: Lane>(acc: T, k: f32, v: T) -> T {
    if k == 0.0 {
        acc
    } else if k == 1.0 {
        acc + v
    } else if k == -1.0 {
        acc - v
    } else {
        acc + v * k
    }
}

/// `mat · tile · matᵀ` (or, `transposed`, `matᵀ · tile · mat`) of a square tile given as rows: the transform of
/// a tile in two dimensions, columns first.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn sandwich<T: Lane, const R: usize, const C: usize, const N: usize, const O: usize>(
    mat: &[[f32; C]; R],
    transposed: bool,
    tile: [[T; N]; N],
) -> [[T; O]; O] {
    let mut cols = [[tile[0][0]; O]; N];
    for c in 0..N {
        let mut col = [tile[0][c]; N];
        for r in 0..N {
            col[r] = tile[r][c];
        }
        cols[c] = one_d(mat, transposed, col);
    }
    let mut out = [[tile[0][0]; O]; O];
    for r in 0..O {
        let mut row = [cols[0][r]; N];
        for c in 0..N {
            row[c] = cols[c][r];
        }
        out[r] = one_d(mat, transposed, row);
    }
    out
}

/// `U = G g Gᵀ` of every channel pair, as a² packed `[cout, cin]` operands (one per ξ).
fn transform_weights<const M: usize, const A: usize, W: Variant<M, A>>(weight: &[f32], s: &ConvShape) -> Vec<Packed> {
    let pairs = s.cout * s.cin;
    let mut u = vec![0f32; A * A * pairs];
    for (p, g) in weight.chunks_exact(9).enumerate() {
        let g = [[g[0], g[1], g[2]], [g[3], g[4], g[5]], [g[6], g[7], g[8]]];
        let t: [[f32; A]; A] = sandwich(&W::MATS.g, false, g);
        for (xi, v) in t.into_iter().flatten().enumerate() {
            u[xi * pairs + p] = v;
        }
    }
    u.par_chunks(pairs)
        .map(|u| Packed::new(Mat::new(u, s.cout, s.cin), Lanes::F32))
        .collect()
}

/// Where a plane's transformed tiles go in a buffer: entry (ξ, tile t) at `base + ξ·xi + (t / 32)·panel + t % 32`.
/// With `panel` 32 the tiles are contiguous (`[c][ξ][tile]`, one channel's block per `base`); otherwise they are
/// the packed product's panels of 32 columns (`[ξ][panel][c][32]`, `base` the channel's lane offset), so the
/// product reads them without packing.
#[derive(Clone, Copy)]
pub struct Dest {
    base: usize,
    xi: usize,
    panel: usize,
}

impl Dest {
    fn at(&self, xi: usize, t: usize) -> usize {
        self.base + xi * self.xi + t / NR * self.panel + t % NR
    }
}

/// The plane transforms on sixteen tiles at a time. They run only where [`applies`] found the packed kernels,
/// so on CPUs with AVX-512.
#[cfg(target_arch = "x86_64")]
mod simd {
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
        let quarter = |q: usize| {
            let n = chunk.len().saturating_sub(16 * q).min(16);
            Block::load(chunk.get(16 * q..).unwrap_or(&[]), n).0
        };
        unsafe {
            // Lanes j, j + M, j + 2M, … of the 32 entries of two registers.
            let pick = |j: i32| {
                let m = M as i32;
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
                ) // lanes past 31 wrap modulo 32 and are not used
            };
            match M {
                2 => {
                    let (lo, hi) = (quarter(0), quarter(1));
                    build(|j| Block(_mm512_permutex2var_ps(lo, pick(j as i32), hi)))
                }
                _ => {
                    // Each pair of registers gives eight lanes of the phase; the halves are joined.
                    let (z0, z1, z2, z3) = (quarter(0), quarter(1), quarter(2), quarter(3));
                    build(|j| {
                        let idx = pick(j as i32);
                        let (a, b) = (_mm512_permutex2var_ps(z0, idx, z1), _mm512_permutex2var_ps(z2, idx, z3));
                        Block(_mm512_shuffle_f32x4::<0b0100_0100>(a, b))
                    })
                }
            }
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
                    let lines: [Block; K] = build(|k| match (pad, k) {
                        (0, _) => cur[k],
                        (_, 0) => align::<15>(prev[M - 1], cur[M - 1]),
                        (_, k) if k <= M => cur[k - 1],
                        _ => align::<1>(cur[0], next[0]),
                    });
                    for (k, line) in lines.iter().enumerate() {
                        line.store(&mut taps[(r * K + k) * t + ty * cols + 16 * c..], n);
                    }
                    prev = cur;
                }
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
        gather_taps::<M, A, A>(plane, hw, 1, taps);
        let t = taps.len() / (A * A);
        for t0 in (0..t).step_by(16) {
            let n = 16.min(t - t0);
            let d: [[Block; A]; A] = build(|r| build(|k| Block::load(&taps[(A * r + k) * t + t0..], n)));
            let v: [[Block; A]; A] = sandwich(&W::MATS.bt, false, d);
            for xi in 0..A * A {
                store_tiles(v[xi / A][xi % A], out, dest, xi, at + t0, n);
            }
        }
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
        gather_taps::<M, M, M>(plane, hw, 0, taps);
        let t = taps.len() / (M * M);
        for t0 in (0..t).step_by(16) {
            let n = 16.min(t - t0);
            let g: [[Block; M]; M] = build(|r| build(|k| Block::load(&taps[(M * r + k) * t + t0..], n)));
            let m: [[Block; A]; A] = sandwich(&W::MATS.at, true, g);
            for xi in 0..A * A {
                store_tiles(m[xi / A][xi % A], out, dest, xi, at + t0, n);
            }
        }
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
}

/// The plane transforms, on CPUs with AVX-512 (the only ones [`applies`] lets reach them).
#[cfg(target_arch = "x86_64")]
mod planes {
    use super::{Dest, Lanes, Variant, simd};

    fn assert_avx512() {
        assert!(Lanes::F32.available(), "Winograd's transforms need AVX-512");
    }

    pub fn input_plane<const M: usize, const A: usize, W: Variant<M, A>>(
        plane: &[f32],
        hw: (usize, usize),
        out: &mut [f32],
        dest: Dest,
        at: usize,
        taps: &mut Vec<f32>,
    ) {
        assert_avx512();
        // SAFETY: the CPU has AVX-512F (asserted).
        unsafe { simd::input_plane::<M, A, W>(plane, hw, out, dest, at, taps) }
    }

    pub fn output_gradient_plane<const M: usize, const A: usize, W: Variant<M, A>>(
        plane: &[f32],
        hw: (usize, usize),
        out: &mut [f32],
        dest: Dest,
        at: usize,
        taps: &mut Vec<f32>,
    ) {
        assert_avx512();
        // SAFETY: as above.
        unsafe { simd::output_gradient_plane::<M, A, W>(plane, hw, out, dest, at, taps) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn output_plane<const M: usize, const A: usize, W: Variant<M, A>>(
        m: &[f32],
        stride: usize,
        at: usize,
        bias: f32,
        hw: (usize, usize),
        plane: &mut [f32],
        tiles: &mut Vec<f32>,
    ) {
        assert_avx512();
        // SAFETY: as above.
        unsafe { simd::output_plane::<M, A, W>(m, stride, at, bias, hw, plane, tiles) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod planes {
    use super::{Dest, Variant};

    pub fn input_plane<const M: usize, const A: usize, W: Variant<M, A>>(
        _: &[f32],
        _: (usize, usize),
        _: &mut [f32],
        _: Dest,
        _: usize,
        _: &mut Vec<f32>,
    ) {
        unreachable!("Winograd's convolutions only run where the packed kernels do")
    }

    pub use input_plane as output_gradient_plane;

    #[allow(clippy::too_many_arguments)]
    pub fn output_plane<const M: usize, const A: usize, W: Variant<M, A>>(
        _: &[f32],
        _: usize,
        _: usize,
        _: f32,
        _: (usize, usize),
        _: &mut [f32],
        _: &mut Vec<f32>,
    ) {
        unreachable!("Winograd's convolutions only run where the packed kernels do")
    }
}

use planes::{input_plane, output_gradient_plane, output_plane};

/// Runs `f(i, chunk, scratch)` on the `size`-entry chunks of `data`, in parallel when `par`, with a scratch
/// buffer per thread.
fn each_chunk(par: bool, data: &mut [f32], size: usize, f: impl Fn(usize, &mut [f32], &mut Vec<f32>) + Sync) {
    match par {
        true => data
            .par_chunks_mut(size)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, c)| f(i, c, scratch)),
        false => {
            let mut scratch = Vec::new();
            data.chunks_mut(size)
                .enumerate()
                .for_each(|(i, c)| f(i, c, &mut scratch))
        }
    }
}

/// A plane transform: `(plane, (h, w), out, dest, first tile, scratch)`.
type PlaneFn<const M: usize, const A: usize> = fn(&[f32], (usize, usize), &mut [f32], Dest, usize, &mut Vec<f32>);

/// How a group's transformed tiles are laid out (see [`Dest`]).
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `[c][ξ][tile]`: channels in parallel.
    Channels,
    /// `[ξ][panel][c][32]`, the product's B panels (a channel's lanes are strided, so one thread writes them).
    Panels,
}

/// Transforms the tiles of a group of images (`images`: `[n, c, h, w]`) with `plane_fn` into `out`, laid out as
/// `layout`; returns the group's tile count.
fn transform_group<const M: usize, const A: usize>(
    images: &[f32],
    (c, h, w): (usize, usize, usize),
    tiles: &Tiles,
    (plane_fn, layout): (PlaneFn<M, A>, Layout),
    out: &mut Vec<f32>,
    par: bool,
) -> usize {
    let n = images.len() / (c * h * w);
    let t = n * tiles.per_image();
    let plane = |i: usize, ch: usize| &images[(i * c + ch) * h * w..][..h * w];
    match layout {
        Layout::Channels => {
            out.resize(c * A * A * t, 0.0);
            let dest = Dest {
                base: 0,
                xi: t,
                panel: NR,
            };
            each_chunk(par, out, A * A * t, |ch, block, scratch| {
                for i in 0..n {
                    plane_fn(plane(i, ch), (h, w), block, dest, i * tiles.per_image(), scratch);
                }
            });
        }
        Layout::Panels => {
            let panels = t.div_ceil(NR);
            out.resize(A * A * panels * c * NR, 0.0);
            let mut scratch = Vec::new();
            for ch in 0..c {
                let dest = Dest {
                    base: ch * NR,
                    xi: panels * c * NR,
                    panel: c * NR,
                };
                for i in 0..n {
                    plane_fn(plane(i, ch), (h, w), out, dest, i * tiles.per_image(), &mut scratch);
                }
            }
        }
    }
    t
}

thread_local! {
    /// The transformed tiles and products of one group, kept per thread between calls.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers (fresh ones if they are in use further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut pair) => {
            let (a, b) = &mut *pair;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// Whether the groups themselves run in parallel (else the work inside each group does).
fn across_groups(groups: usize) -> bool {
    groups >= rayon::current_num_threads()
}

/// [`forward`] with algorithm `W`.
fn forward_with<const M: usize, const A: usize, W: Variant<M, A>>(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
) -> Vec<f32> {
    let tiles = Tiles::of::<M, A>(s);
    let (hw, per) = (s.height * s.width, tiles.images);
    let u = transform_weights::<M, A, W>(weight, s);
    let mut y = vec![0f32; s.batch * s.cout * hw];
    let group = |yg: &mut [f32], xg: &[f32], par: bool| {
        with_scratch(|v, m| {
            let input = (input_plane::<M, A, W> as PlaneFn<M, A>, Layout::Panels);
            let t = transform_group::<M, A>(xg, (s.cin, s.height, s.width), &tiles, input, v, par);
            let per_xi = v.len() / (A * A);
            m.resize(A * A * s.cout * t, 0.0);
            each_chunk(par, m, s.cout * t, |xi, mx, _| {
                packed::matmul_prepacked(mx, t, &u[xi], t, &v[xi * per_xi..][..per_xi], false, false);
            });
            each_chunk(par, yg, hw, |p, plane, scratch| {
                let (i, co) = (p / s.cout, p % s.cout);
                let at = i * tiles.per_image();
                let b = bias.map_or(0.0, |b| b[co]);
                let hw = (s.height, s.width);
                output_plane::<M, A, W>(&m[co * t..], s.cout * t, at, b, hw, plane, scratch);
            });
        })
    };
    let (out, inp) = (per * s.cout * hw, per * s.cin * hw);
    if across_groups(s.batch.div_ceil(per)) {
        let chunks = y.par_chunks_mut(out).zip(x.par_chunks(inp));
        chunks.for_each(|(yg, xg)| group(yg, xg, false));
    } else {
        let chunks = y.chunks_mut(out).zip(x.chunks(inp));
        chunks.for_each(|(yg, xg)| group(yg, xg, true));
    }
    y
}

/// [`weight_gradient`] with algorithm `W`. Groups are summed in at most eight partial sums whose count depends
/// on the batch only, so the result does not depend on the number of threads.
fn weight_gradient_with<const M: usize, const A: usize, W: Variant<M, A>>(
    x: &[f32],
    dy: &[f32],
    s: &ConvShape,
) -> Vec<f32> {
    let tiles = Tiles::of::<M, A>(s);
    let (hw, per) = (s.height * s.width, tiles.images);
    let (pairs, xis) = (s.cout * s.cin, A * A);
    let groups = s.batch.div_ceil(per);
    let chunk = groups.div_ceil(8).max(1);
    let partial = |images: std::ops::Range<usize>, par: bool| {
        let mut du = vec![0f32; xis * pairs];
        for first in images.clone().step_by(per) {
            let n = per.min(images.end - first);
            with_scratch(|v, g| {
                let xg = &x[first * s.cin * hw..][..n * s.cin * hw];
                let dyg = &dy[first * s.cout * hw..][..n * s.cout * hw];
                let input = (input_plane::<M, A, W> as PlaneFn<M, A>, Layout::Channels);
                let t = transform_group::<M, A>(xg, (s.cin, s.height, s.width), &tiles, input, v, par);
                let output = (output_gradient_plane::<M, A, W> as PlaneFn<M, A>, Layout::Channels);
                transform_group::<M, A>(dyg, (s.cout, s.height, s.width), &tiles, output, g, par);
                let add = first > images.start;
                each_chunk(par, &mut du, pairs, |xi, dux, _| {
                    let a = Packed::new(Mat::strided(&g[xi * t..], s.cout, t, xis * t), Lanes::F32);
                    let b = Mat::strided(&v[xi * t..], s.cin, t, xis * t).t();
                    packed::matmul(dux, s.cin, &a, b, add, false);
                });
            });
        }
        du
    };
    let ranges: Vec<_> = (0..s.batch)
        .step_by(chunk * per)
        .map(|i| i..(i + chunk * per).min(s.batch))
        .collect();
    let partials: Vec<Vec<f32>> = if across_groups(ranges.len()) {
        ranges.into_par_iter().map(|r| partial(r, false)).collect()
    } else {
        ranges.into_iter().map(|r| partial(r, true)).collect()
    };
    let du = super::conv::sum(&partials, xis * pairs);
    let mut dw = vec![0f32; pairs * 9];
    for (p, g) in dw.chunks_exact_mut(9).enumerate() {
        let u: [[f32; A]; A] = build(|a| build(|c| du[(A * a + c) * pairs + p]));
        let w: [[f32; 3]; 3] = sandwich(&W::MATS.g, true, u);
        g.copy_from_slice(w.as_flattened());
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{self, tests::direct};

    fn dot<const N: usize>(a: [f32; N], b: [f32; N]) -> f64 {
        a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    /// F(m, 3) in one dimension: m outputs of the correlation of a inputs with a 3-tap kernel from a products;
    /// and the adjoints: ⟨G g, u⟩ = ⟨g, Gᵀ u⟩ and ⟨Aᵀ m, e⟩ = ⟨m, A e⟩.
    fn check_1d<const M: usize, const A: usize, W: Variant<M, A>>(tolerance: f64) {
        let mut rng = crate::rng::stream(5, M as u64);
        for _ in 0..20 {
            let v = crate::rng::normals(&mut rng, 2 * A + M + 3);
            let d: [f32; A] = build(|i| v[i]);
            let g: [f32; 3] = build(|i| v[A + i]);
            let (u, w): ([f32; A], [f32; A]) = (one_d(&W::MATS.g, false, g), one_d(&W::MATS.bt, false, d));
            let y: [f32; M] = one_d(&W::MATS.at, false, build::<f32, A>(|i| u[i] * w[i]));
            for (o, &y) in y.iter().enumerate() {
                let want: f64 = (0..3).map(|k| g[k] as f64 * d[o + k] as f64).sum();
                assert!(
                    (y as f64 - want).abs() < tolerance,
                    "F({M}, 3) output {o}: {y} vs {want}"
                );
            }
            let m: [f32; A] = build(|i| v[A + 3 + i]);
            let e: [f32; M] = build(|i| v[2 * A + 3 + i]);
            let (gg, gtm): ([f32; A], [f32; 3]) = (one_d(&W::MATS.g, false, g), one_d(&W::MATS.g, true, m));
            assert!((dot(gg, m) - dot(g, gtm)).abs() < tolerance);
            let (am, ae): ([f32; M], [f32; A]) = (one_d(&W::MATS.at, false, m), one_d(&W::MATS.at, true, e));
            assert!((dot(am, e) - dot(m, ae)).abs() < tolerance);
        }
    }

    #[test]
    fn one_dimensional_transforms_compute_f_m_3_and_their_adjoints() {
        check_1d::<2, 4, F2>(1e-5);
        check_1d::<4, 6, F4>(1e-4);
    }

    /// The largest error against the f64 reference, over the largest reference magnitude.
    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        got.iter()
            .zip(want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max)
            / scale
    }

    fn shape(batch: usize, cin: usize, (h, w): (usize, usize), cout: usize) -> ConvShape {
        ConvShape {
            batch,
            cin,
            height: h,
            width: w,
            cout,
            kh: 3,
            kw: 3,
            stride: 1,
            pad_h: 1,
            pad_w: 1,
        }
    }

    /// Odd and even sizes, images smaller than a tile, groups cut mid-batch (640 entries in tests), images
    /// crossing the product's panels of 32 tiles, a full register of tile columns and a tail, and a batch across
    /// the partial sums.
    const SHAPES: [(usize, usize, (usize, usize), usize); 11] = [
        (3, 16, (7, 8), 17),
        (2, 24, (8, 8), 16),
        (17, 16, (3, 5), 16),
        (9, 16, (5, 5), 16),
        (5, 16, (9, 9), 16),
        (2, 16, (1, 1), 16),
        (3, 16, (1, 2), 20),
        (1, 33, (11, 6), 18),
        (2, 16, (5, 70), 16),
        (1, 16, (32, 32), 16),
        (0, 16, (4, 4), 16),
    ];

    /// Forward, input and weight gradients through [`conv::forward`] and [`conv::backward`], which choose
    /// Winograd's algorithm for these shapes in f32 (F(2×2) below 32 wide, F(4×4) from there), against direct
    /// f64 sums.
    #[test]
    fn convolutions_match_direct_summation() {
        let mut rng = crate::rng::stream(11, 0);
        for (batch, cin, hw, cout) in [
            (3, 16, (15, 14), 17),
            (5, 16, (14, 14), 16),
            (2, 24, (16, 16), 16),
            (1, 16, (33, 32), 18),
            (2, 16, (14, 70), 16),
        ] {
            let s = shape(batch, cin, hw, cout);
            if !applies(&s, Precision::F32) {
                return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
            }
            let x = crate::rng::normals(&mut rng, batch * cin * hw.0 * hw.1);
            let w = crate::rng::normals(&mut rng, cout * cin * 9);
            let b = crate::rng::normals(&mut rng, cout);
            let dy = crate::rng::normals(&mut rng, batch * cout * hw.0 * hw.1);
            let [y, dx, dw, db] = direct(&x, &w, &b, &dy, &s);
            let (gx, gw, gb) = conv::backward(&x, &w, &dy, &s, true, Precision::F32);
            for (name, got, want) in [
                ("y", conv::forward(&x, &w, &b, &s, Precision::F32), y),
                ("dx", gx, dx),
                ("dw", gw, dw),
                ("db", gb, db),
            ] {
                // The largest error over the largest output: f32 roundings of sums whose terms the transforms
                // scale by up to 8 and 1/24.
                let e = relative_error(&got, &want);
                assert!(e <= 2e-5, "{name} of {s:?}: relative error {e:e}");
            }
        }
    }

    /// Each algorithm on every shape, whichever [`forward`] would choose: F(2×2, 3×3), whose transforms only add,
    /// subtract and halve, ten times tighter than F(4×4, 3×3).
    fn check_algorithm<const M: usize, const A: usize, W: Variant<M, A>>(bound: f64) {
        let mut rng = crate::rng::stream(13, M as u64);
        for (batch, cin, hw, cout) in SHAPES {
            let s = shape(batch, cin, hw, cout);
            let x = crate::rng::normals(&mut rng, batch * cin * hw.0 * hw.1);
            let w = crate::rng::normals(&mut rng, cout * cin * 9);
            let b = crate::rng::normals(&mut rng, cout);
            let dy = crate::rng::normals(&mut rng, batch * cout * hw.0 * hw.1);
            let [y, _, dw, _] = direct(&x, &w, &b, &dy, &s);
            for (name, got, want) in [
                ("y", forward_with::<M, A, W>(&x, &w, Some(&b), &s), y),
                ("dw", weight_gradient_with::<M, A, W>(&x, &dy, &s), dw),
            ] {
                let e = relative_error(&got, &want);
                assert!(e <= bound, "F({M}×{M}, 3×3) {name} of {s:?}: relative error {e:e}");
            }
        }
    }

    #[test]
    fn both_algorithms_match_direct_summation() {
        if !Lanes::F32.available() {
            return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
        }
        check_algorithm::<2, 4, F2>(2e-6);
        check_algorithm::<4, 6, F4>(2e-5);
    }

    #[test]
    fn small_thin_strided_unpadded_and_bf16_layers_keep_the_direct_path() {
        if !Lanes::F32.available() {
            return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
        }
        assert!(applies(&shape(2, 16, (14, 16), 16), Precision::F32));
        assert!(!applies(&shape(2, 16, (14, 16), 16), Precision::Bf16));
        assert!(!applies(&shape(2, 16, (8, 8), 16), Precision::F32));
        assert!(!applies(&shape(2, 3, (16, 16), 64), Precision::F32));
        assert!(!applies(&shape(2, 64, (16, 16), 3), Precision::F32));
        let strided = ConvShape {
            stride: 2,
            ..shape(2, 16, (16, 16), 16)
        };
        assert!(!applies(&strided, Precision::F32));
        let unpadded = ConvShape {
            pad_h: 0,
            pad_w: 0,
            ..shape(2, 16, (16, 16), 16)
        };
        assert!(!applies(&unpadded, Precision::F32));
        assert!(!applies(&shape(1, 512, (128, 128), 512), Precision::F32));
    }
}
