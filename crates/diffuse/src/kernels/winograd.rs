//! 3×3 "same" convolutions (stride 1, padding 1) by Winograd's minimal filtering F(2×2, 3×3): Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks" (2016), eq. 7–8 and the F(2×2, 3×3) matrices of §4.1.
//!
//! Each 2×2 output tile is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` of its 4×4 input tile `d` (the tiles overlap by two pixels)
//! and the 3×3 kernel `g`: 16 multiplications per tile and channel pair instead of direct convolution's 36. Over
//! the channels, the 16 positions ξ of a transformed tile are 16 independent matrix products, which run on the
//! packed kernels ([`super::packed`]):
//!
//! - forward: `M_ξ[co, t] = Σ_ci U_ξ[co, ci] · V_ξ[ci, t]` with `U = G g Gᵀ` per channel pair and `V = Bᵀ d B`
//!   per tile and input channel; the output tile is `Aᵀ M A`;
//! - weight gradient: the output is linear in `U`, so `dU_ξ[co, ci] = Σ_t (A dY Aᵀ)_ξ[co, t] · V_ξ[ci, t]` and
//!   `dW = Gᵀ dU G`;
//! - input gradient: the forward pass of the flipped kernel ([`super::conv`] builds it), itself 3×3 "same".
//!
//! The transforms only add, subtract and halve, so F(2×2, 3×3) loses little accuracy: the tests bound it
//! against direct f64 sums. Tiles are taken a group of whole images at a time, so that a group's transformed
//! tiles stay in the caches; groups run in parallel, or, when there are fewer groups than threads, the
//! channels of the transforms and the 16 products do.

use super::conv::ConvShape;
use super::matmul::{Mat, Precision};
use super::packed::{self, Lanes, Packed};
use rayon::prelude::*;
use std::ops::{Add, Mul, Neg, Sub};

/// About how many tiles a group takes (whole images, at least one: a 32×32 image's 256, or eight 8×8 ones): 128
/// tiles of 128 channels transform to 1 MB. 64 and 256 measured within a few percent of it (kernel bench).
const GROUP_TILES: usize = if cfg!(test) { 40 } else { 128 };
/// Fewer channels than this on either side leave the products too thin to pay for the transforms (the 3-channel
/// first and last layers; thinner ones were not measured).
const MIN_CHANNELS: usize = 16;
/// The most transformed entries of one group (16 MB): larger images (latents of 64×64 and more with hundreds of
/// channels) keep the direct path rather than leave the caches.
const MAX_GROUP: usize = 1 << 22;

/// Whether shape `s` runs with Winograd's algorithm in `precision`: a 3×3 kernel, stride 1, padding 1, enough
/// channels, and f32 products on the packed kernels (AVX-512). In bf16 the products are already twice as fast,
/// so the transforms cost what the fewer products save (the reference UNet's step took as long, measured), and
/// transformed operands rounded to bf16 lose more than direct ones: bf16 keeps the direct convolution.
pub fn applies(s: &ConvShape, precision: Precision) -> bool {
    let same = s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad_h == 1 && s.pad_w == 1;
    let wide = s.cin >= MIN_CHANNELS && s.cout >= MIN_CHANNELS;
    let fits = 16 * s.cin.max(s.cout) * Tiles::of(s).per_group() <= MAX_GROUP;
    let f32_packed = precision == Precision::F32 && Lanes::F32.available();
    same && wide && fits && s.height > 0 && s.width > 0 && f32_packed
}

/// How the output is cut into 2×2 tiles, and the tiles into groups of whole images.
#[derive(Clone, Copy)]
struct Tiles {
    /// Tile rows and columns of an image.
    rows: usize,
    cols: usize,
    /// Images per group.
    images: usize,
}

impl Tiles {
    fn of(s: &ConvShape) -> Self {
        let (rows, cols) = (s.height.div_ceil(2), s.width.div_ceil(2));
        let images = (GROUP_TILES / (rows * cols).max(1)).max(1);
        Self { rows, cols, images }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    fn per_group(&self) -> usize {
        self.images * self.per_image()
    }
}

/// What the transforms compute on: one f32 (the weights, once per call) or a [`simd::Block`] of sixteen tiles.
trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> + Neg<Output = Self> + Mul<f32, Output = Self> {}

impl Lane for f32 {}

/// `[f(0), …, f(N − 1)]`, always inlined (`std::array::from_fn` is not, and would leave the AVX-512 functions).
#[inline(always)]
fn build<T: Copy, const N: usize>(f: impl Fn(usize) -> T) -> [T; N] {
    let mut a = [f(0); N];
    for (i, v) in a.iter_mut().enumerate().skip(1) {
        *v = f(i);
    }
    a
}

/// `Bᵀ d` for a column (or row) `d` of a 4×4 input tile.
#[inline(always)]
fn input_1d<T: Lane>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `G g` for a column (or row) `g` of a 3×3 kernel.
#[inline(always)]
fn kernel_1d<T: Lane>([g0, g1, g2]: [T; 3]) -> [T; 4] {
    let (half, mid) = ((g0 + g2) * 0.5, g1 * 0.5);
    [g0, half + mid, half - mid, g2]
}

/// `Gᵀ u`, the adjoint of [`kernel_1d`].
#[inline(always)]
fn kernel_1d_adjoint<T: Lane>([u0, u1, u2, u3]: [T; 4]) -> [T; 3] {
    let (sum, diff) = ((u1 + u2) * 0.5, (u1 - u2) * 0.5);
    [u0 + sum, diff, sum + u3]
}

/// `Aᵀ m` for a column (or row) `m` of a 4×4 product tile.
#[inline(always)]
fn output_1d<T: Lane>([m0, m1, m2, m3]: [T; 4]) -> [T; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// `A g`, the adjoint of [`output_1d`], for a column (or row) `g` of a 2×2 output-gradient tile.
#[inline(always)]
fn output_1d_adjoint<T: Lane>([g0, g1]: [T; 2]) -> [T; 4] {
    [g0, g0 + g1, g0 - g1, -g1]
}

/// Applies the 1-D transform `f` to the columns, then to the rows, of a tile given as rows.
#[inline(always)]
fn two_d<T: Lane, const R: usize, const C: usize, const R2: usize, const C2: usize>(
    tile: [[T; C]; R],
    f_col: impl Fn([T; R]) -> [T; R2],
    f_row: impl Fn([T; C]) -> [T; C2],
) -> [[T; C2]; R2] {
    let cols: [[T; R2]; C] = build(|c| f_col(build(|r| tile[r][c])));
    build(|r| f_row(build(|c| cols[c][r])))
}

/// `U = G g Gᵀ` of every channel pair, as 16 packed `[cout, cin]` operands (one per ξ).
fn transform_weights(weight: &[f32], s: &ConvShape) -> Vec<Packed> {
    let pairs = s.cout * s.cin;
    let mut u = vec![0f32; 16 * pairs];
    for (p, g) in weight.chunks_exact(9).enumerate() {
        let g = [[g[0], g[1], g[2]], [g[3], g[4], g[5]], [g[6], g[7], g[8]]];
        let t = two_d(g, kernel_1d, kernel_1d);
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
        self.base + xi * self.xi + t / 32 * self.panel + t % 32
    }
}

/// The plane transforms on sixteen tiles at a time. They run only where [`applies`] found the packed kernels,
/// so on CPUs with AVX-512.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Dest, Lane, build, input_1d, output_1d, output_1d_adjoint, two_d};
    use std::arch::x86_64::*;
    use std::ops::{Add, Mul, Neg, Sub};

    /// Sixteen tiles' entries in one register.
    #[derive(Clone, Copy)]
    pub struct Block(__m512);

    impl Lane for Block {}

    // SAFETY (every intrinsic below): a `Block` is only made inside the `avx512f` functions of this module, into
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

    /// A row's 32-pixel chunk `c` as its even and odd pixels, `(row[32c + 2i], row[32c + 2i + 1])` for lane i,
    /// zero beyond the row.
    #[inline(always)]
    fn split(row: &[f32], c: usize) -> (Block, Block) {
        let chunk = row.get(32 * c..).unwrap_or(&[]);
        let n = chunk.len().min(32);
        let (lo, hi) = (
            Block::load(chunk, n.min(16)),
            Block::load(chunk.get(16..).unwrap_or(&[]), n.saturating_sub(16)),
        );
        // SAFETY (intrinsics): inlined into the `avx512f` functions below.
        unsafe {
            let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            let odds = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
            (
                Block(_mm512_permutex2var_ps(lo.0, evens, hi.0)),
                Block(_mm512_permutex2var_ps(lo.0, odds, hi.0)),
            )
        }
    }

    /// Lanes `shift..16` of `a` followed by lanes `0..shift` of `b`.
    #[inline(always)]
    fn align<const SHIFT: i32>(a: Block, b: Block) -> Block {
        // SAFETY (intrinsic): as in `split`.
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
            // SAFETY (intrinsics): as in `split`.
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

    /// `taps[(r·K + k)·T + ty·cols + tx] = plane[2ty + r − pad][2tx + k − pad]` for the 2×2-strided tiles of
    /// `R × K` pixels of a plane (`h × w`, `rows × cols` tiles, `T = rows·cols`), zero outside the plane, with
    /// `pad` 1 (the input, K = 4) or 0 (the output gradient, K = 2): the tiles' pixels laid out so that the
    /// transforms run over sixteen consecutive tiles, across tile rows, with full registers. Each row is split
    /// into its even and odd pixels in registers, sixteen tiles at a time, and written to the tap rows that read
    /// it; padding is written as zeros, so the buffer is reused without clearing.
    #[inline(always)]
    fn gather_taps<const R: usize, const K: usize>(
        plane: &[f32],
        (h, w): (usize, usize),
        pad: usize,
        taps: &mut Vec<f32>,
    ) {
        let (rows, cols) = (h.div_ceil(2), w.div_ceil(2));
        let t = rows * cols;
        taps.resize(R * K * t, 0.0);
        let zero = Block::splat(0.0);
        for ty in 0..rows {
            for r in 0..R {
                let y = (2 * ty + r).checked_sub(pad).filter(|&y| y < h);
                let row = y.map(|y| &plane[y * w..][..w]);
                let (mut prev_odd, mut next) = (zero, row.map_or((zero, zero), |row| split(row, 0)));
                for c in 0..cols.div_ceil(16) {
                    let ((even, odd), n) = (next, 16.min(cols - 16 * c));
                    next = row.map_or((zero, zero), |row| split(row, c + 1));
                    // Tile tx = 16c + i reads pixel 2tx + k − pad: with pad 1, k = 0..4 are odd[i − 1], even[i],
                    // odd[i], even[i + 1]; with pad 0, k = 0..2 are even[i], odd[i].
                    let lines: [Block; K] = match pad {
                        1 => build(|k| [align::<15>(prev_odd, odd), even, odd, align::<1>(even, next.0)][k]),
                        _ => build(|k| [even, odd][k]),
                    };
                    for (k, line) in lines.iter().enumerate() {
                        line.store(&mut taps[(r * K + k) * t + ty * cols + 16 * c..], n);
                    }
                    prev_odd = odd;
                }
            }
        }
    }

    /// `V = Bᵀ d B` of every tile of one input plane (`h × w`, padded by one), into the 16 rows (one per ξ) of
    /// `stride` entries in `out`, from entry `at`; `taps` is scratch.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn input_plane(
        plane: &[f32],
        hw: (usize, usize),
        out: &mut [f32],
        dest: Dest,
        at: usize,
        taps: &mut Vec<f32>,
    ) {
        gather_taps::<4, 4>(plane, hw, 1, taps);
        let t = taps.len() / 16;
        for t0 in (0..t).step_by(16) {
            let n = 16.min(t - t0);
            let d: [[Block; 4]; 4] = build(|r| build(|k| Block::load(&taps[(4 * r + k) * t + t0..], n)));
            let v = two_d(d, input_1d, input_1d);
            for xi in 0..16 {
                store_tiles(v[xi / 4][xi % 4], out, dest, xi, at + t0, n);
            }
        }
    }

    /// `A dY Aᵀ` of every tile of one output-gradient plane (`h × w`, zero beyond it), into `out` as
    /// [`input_plane`] writes.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output_gradient_plane(
        plane: &[f32],
        hw: (usize, usize),
        out: &mut [f32],
        dest: Dest,
        at: usize,
        taps: &mut Vec<f32>,
    ) {
        gather_taps::<2, 2>(plane, hw, 0, taps);
        let t = taps.len() / 4;
        for t0 in (0..t).step_by(16) {
            let n = 16.min(t - t0);
            let g: [[Block; 2]; 2] = build(|r| build(|k| Block::load(&taps[(2 * r + k) * t + t0..], n)));
            let m = two_d(g, output_1d_adjoint, output_1d_adjoint);
            for xi in 0..16 {
                store_tiles(m[xi / 4][xi % 4], out, dest, xi, at + t0, n);
            }
        }
    }

    /// One output plane (`h × w`) from its tiles' products `m` (16 rows of `stride`, from entry `at`):
    /// `Aᵀ M A` plus `bias`; `tiles` is scratch.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output_plane(
        m: &[f32],
        stride: usize,
        at: usize,
        bias: f32,
        (h, w): (usize, usize),
        plane: &mut [f32],
        tiles: &mut Vec<f32>,
    ) {
        let (rows, cols) = (h.div_ceil(2), w.div_ceil(2));
        let t = rows * cols;
        let m: [&[f32]; 16] = build(|xi| &m[xi * stride + at..][..t]);
        // The tiles' four outputs, as `tiles[(2i + j)·T + tile]`.
        tiles.resize(4 * t, 0.0);
        for t0 in (0..t).step_by(16) {
            let n = 16.min(t - t0);
            let tile: [[Block; 4]; 4] = build(|a| build(|c| Block::load(&m[4 * a + c][t0..], n)));
            let y = two_d(tile, output_1d, output_1d);
            for i in 0..4 {
                (y[i / 2][i % 2] + Block::splat(bias)).store(&mut tiles[i * t + t0..], n);
            }
        }
        for y in 0..h {
            let dst = &mut plane[y * w..][..w];
            let at = (y / 2) * cols;
            let (even, odd) = (
                &tiles[2 * (y % 2) * t + at..][..cols],
                &tiles[(2 * (y % 2) + 1) * t + at..][..cols],
            );
            let mut pairs = dst.chunks_exact_mut(2);
            for ((p, &a), &b) in pairs.by_ref().zip(even).zip(odd) {
                (p[0], p[1]) = (a, b);
            }
            if let [last] = pairs.into_remainder() {
                *last = even[cols - 1];
            }
        }
    }
}

/// The transforms of one plane, on CPUs with AVX-512 (the only ones [`applies`] lets reach them).
#[cfg(target_arch = "x86_64")]
mod planes {
    use super::Dest;
    macro_rules! checked {
        ($name:ident($($a:ident: $t:ty),*)) => {
            pub fn $name($($a: $t),*) {
                assert!(super::Lanes::F32.available(), "Winograd's transforms need AVX-512");
                // SAFETY: the CPU has AVX-512F (asserted).
                unsafe { super::simd::$name($($a),*) }
            }
        };
    }
    type Hw = (usize, usize);
    checked!(input_plane(plane: &[f32], hw: Hw, out: &mut [f32], dest: Dest, at: usize, taps: &mut Vec<f32>));
    checked!(output_gradient_plane(plane: &[f32], hw: Hw, out: &mut [f32], dest: Dest, at: usize, taps: &mut Vec<f32>));
    checked!(output_plane(m: &[f32], stride: usize, at: usize, bias: f32, hw: Hw, plane: &mut [f32], tiles: &mut Vec<f32>));
}

#[cfg(not(target_arch = "x86_64"))]
mod planes {
    type Hw = (usize, usize);
    pub fn input_plane(_: &[f32], _: Hw, _: &mut [f32], _: super::Dest, _: usize, _: &mut Vec<f32>) {
        unreachable!("Winograd's convolutions only run where the packed kernels do")
    }
    pub use input_plane as output_gradient_plane;
    pub fn output_plane(_: &[f32], _: usize, _: usize, _: f32, _: Hw, _: &mut [f32], _: &mut Vec<f32>) {
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
type PlaneFn = fn(&[f32], (usize, usize), &mut [f32], Dest, usize, &mut Vec<f32>);

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
fn transform_group(
    images: &[f32],
    (c, h, w): (usize, usize, usize),
    tiles: &Tiles,
    (plane_fn, layout): (PlaneFn, Layout),
    out: &mut Vec<f32>,
    par: bool,
) -> usize {
    let n = images.len() / (c * h * w);
    let t = n * tiles.per_image();
    let plane = |i: usize, ch: usize| &images[(i * c + ch) * h * w..][..h * w];
    match layout {
        Layout::Channels => {
            out.resize(c * 16 * t, 0.0);
            let dest = Dest {
                base: 0,
                xi: t,
                panel: 32,
            };
            each_chunk(par, out, 16 * t, |ch, block, scratch| {
                for i in 0..n {
                    plane_fn(plane(i, ch), (h, w), block, dest, i * tiles.per_image(), scratch);
                }
            });
        }
        Layout::Panels => {
            let panels = t.div_ceil(packed::NR);
            out.resize(16 * panels * c * packed::NR, 0.0);
            let mut scratch = Vec::new();
            for ch in 0..c {
                let dest = Dest {
                    base: ch * packed::NR,
                    xi: panels * c * packed::NR,
                    panel: c * packed::NR,
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

/// The convolution's output, `[batch, cout, h, w]`, for a shape [`applies`] accepts.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let tiles = Tiles::of(s);
    let (hw, per) = (s.height * s.width, tiles.images);
    let u = transform_weights(weight, s);
    let mut y = vec![0f32; s.batch * s.cout * hw];
    let group = |yg: &mut [f32], xg: &[f32], par: bool| {
        with_scratch(|v, m| {
            let input = (input_plane as PlaneFn, Layout::Panels);
            let t = transform_group(xg, (s.cin, s.height, s.width), &tiles, input, v, par);
            let per_xi = v.len() / 16;
            m.resize(16 * s.cout * t, 0.0);
            each_chunk(par, m, s.cout * t, |xi, mx, _| {
                packed::matmul_prepacked(mx, t, &u[xi], t, &v[xi * per_xi..][..per_xi], false, false);
            });
            each_chunk(par, yg, hw, |p, plane, scratch| {
                let (i, co) = (p / s.cout, p % s.cout);
                let at = i * tiles.per_image();
                let b = bias.map_or(0.0, |b| b[co]);
                output_plane(&m[co * t..], s.cout * t, at, b, (s.height, s.width), plane, scratch);
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

/// The weight gradient `[cout, cin, 3, 3]` from the input `x` and the output gradient `dy`, for a shape
/// [`applies`] accepts. Groups are summed in at most eight partial sums whose count depends on the batch only,
/// so the result does not depend on the number of threads.
pub fn weight_gradient(x: &[f32], dy: &[f32], s: &ConvShape) -> Vec<f32> {
    let tiles = Tiles::of(s);
    let (hw, per) = (s.height * s.width, tiles.images);
    let pairs = s.cout * s.cin;
    let groups = s.batch.div_ceil(per);
    let chunk = groups.div_ceil(8).max(1);
    let partial = |images: std::ops::Range<usize>, par: bool| {
        let mut du = vec![0f32; 16 * pairs];
        for first in images.clone().step_by(per) {
            let n = per.min(images.end - first);
            with_scratch(|v, g| {
                let xg = &x[first * s.cin * hw..][..n * s.cin * hw];
                let dyg = &dy[first * s.cout * hw..][..n * s.cout * hw];
                let input = (input_plane as PlaneFn, Layout::Channels);
                let t = transform_group(xg, (s.cin, s.height, s.width), &tiles, input, v, par);
                let output = (output_gradient_plane as PlaneFn, Layout::Channels);
                transform_group(dyg, (s.cout, s.height, s.width), &tiles, output, g, par);
                let add = first > images.start;
                each_chunk(par, &mut du, pairs, |xi, dux, _| {
                    let a = Packed::new(Mat::strided(&g[xi * t..], s.cout, t, 16 * t), Lanes::F32);
                    let b = Mat::strided(&v[xi * t..], s.cin, t, 16 * t).t();
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
    let du = super::conv::sum(&partials, 16 * pairs);
    let mut dw = vec![0f32; pairs * 9];
    for (p, g) in dw.chunks_exact_mut(9).enumerate() {
        let u: [[f32; 4]; 4] = std::array::from_fn(|a| std::array::from_fn(|c| du[(4 * a + c) * pairs + p]));
        let w = two_d(u, kernel_1d_adjoint, kernel_1d_adjoint);
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

    #[test]
    fn one_dimensional_transforms_compute_f2_3_and_their_adjoints() {
        let mut rng = crate::rng::stream(5, 0);
        for _ in 0..20 {
            let v = crate::rng::normals(&mut rng, 13);
            let (d, g) = ([v[0], v[1], v[2], v[3]], [v[4], v[5], v[6]]);
            // F(2, 3): two outputs of the correlation of d with g from four products.
            let (u, w) = (kernel_1d(g), input_1d(d));
            let y = output_1d(std::array::from_fn(|i| u[i] * w[i]));
            for (o, &y) in y.iter().enumerate() {
                let want: f64 = (0..3).map(|k| g[k] as f64 * d[o + k] as f64).sum();
                assert!((y as f64 - want).abs() < 1e-5, "output {o}: {y} vs {want}");
            }
            // ⟨G g, u⟩ = ⟨g, Gᵀ u⟩ and ⟨Aᵀ m, e⟩ = ⟨m, A e⟩.
            let (m, e) = ([v[7], v[8], v[9], v[10]], [v[11], v[12]]);
            assert!((dot(kernel_1d(g), m) - dot(g, kernel_1d_adjoint(m))).abs() < 1e-5);
            assert!((dot(output_1d(m), e) - dot(m, output_1d_adjoint(e))).abs() < 1e-5);
        }
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

    /// Forward, input and weight gradients through [`conv::forward`] and [`conv::backward`], which choose this
    /// algorithm for these shapes, against direct f64 sums: odd and even sizes, images smaller than a tile,
    /// groups cut mid-batch (40 tiles in tests) and a batch across the partial sums.
    #[test]
    fn convolutions_match_direct_summation() {
        let mut rng = crate::rng::stream(11, 0);
        for (batch, cin, hw, cout) in [
            (3, 16, (7, 8), 17),
            (2, 24, (8, 8), 16),
            (17, 16, (3, 5), 16),
            (9, 16, (5, 5), 16), // nine tiles an image: images cross the product's panels of 32
            (2, 16, (1, 1), 16),
            (3, 16, (1, 2), 20),
            (1, 33, (11, 6), 18),
            (2, 16, (5, 35), 16), // a full block of 16 tile columns and a tail
            (1, 16, (32, 32), 16),
            (0, 16, (4, 4), 16),
        ] {
            let s = shape(batch, cin, hw, cout);
            if !applies(&s, Precision::F32) {
                return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
            }
            {
                let x = crate::rng::normals(&mut rng, batch * cin * hw.0 * hw.1);
                let w = crate::rng::normals(&mut rng, cout * cin * 9);
                let b = crate::rng::normals(&mut rng, cout);
                let dy = crate::rng::normals(&mut rng, batch * cout * hw.0 * hw.1);
                let [y, dx, dw, db] = direct(&x, &w, &b, &dy, &s);
                let precision = Precision::F32;
                let (gx, gw, gb) = conv::backward(&x, &w, &dy, &s, true, precision);
                for (name, got, want) in [
                    ("y", conv::forward(&x, &w, &b, &s, precision), y),
                    ("dx", gx, dx),
                    ("dw", gw, dw),
                    ("db", gb, db),
                ] {
                    let e = relative_error(&got, &want);
                    // The largest error over the largest output: a few f32 roundings of sums of nine terms.
                    assert!(e <= 2e-6, "{name} of {s:?}: relative error {e:e}");
                }
            }
        }
    }

    #[test]
    fn thin_strided_unpadded_and_bf16_layers_keep_the_direct_path() {
        if !Lanes::F32.available() {
            return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
        }
        assert!(applies(&shape(2, 16, (8, 8), 16), Precision::F32));
        assert!(!applies(&shape(2, 16, (8, 8), 16), Precision::Bf16));
        assert!(!applies(&shape(2, 3, (8, 8), 64), Precision::F32));
        assert!(!applies(&shape(2, 64, (8, 8), 3), Precision::F32));
        assert!(!applies(
            &ConvShape {
                stride: 2,
                ..shape(2, 16, (8, 8), 16)
            },
            Precision::F32
        ));
        assert!(!applies(
            &ConvShape {
                pad_h: 0,
                pad_w: 0,
                ..shape(2, 16, (8, 8), 16)
            },
            Precision::F32
        ));
        assert!(!applies(&shape(1, 512, (128, 128), 512), Precision::F32));
    }
}
