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
//! multiply by up to 8 and 1/24, which f32 absorbs (the tests bound the error against direct f64 sums). Tiles are
//! taken a group of whole images at a time, so that a group's transformed tiles stay in the caches; groups run in
//! parallel, or, when there are fewer groups than threads, the channels of the transforms and the products do.
//! The transforms themselves, on sixteen tiles per AVX-512 register, are in `simd`.

use super::conv::{ConvShape, with_scratch};
use super::matmul::{Mat, Precision};
use super::packed::{self, Lanes, NR, Packed};
use rayon::prelude::*;
use std::ops::{Add, Mul, Neg, Sub};

/// The matrices of F(m×m, 3×3) with a = m + 2: `bt` is Bᵀ, `g` is G and `at` is Aᵀ.
pub(crate) struct Algorithm<const M: usize, const A: usize> {
    bt: [[f32; A]; A],
    g: [[f32; 3]; A],
    at: [[f32; A]; M],
}

/// An algorithm as a type, so that its matrices are constants where the transforms are compiled (a matrix read
/// at run time would leave every zero and ±1 to be tested and multiplied).
pub(crate) trait Variant<const M: usize, const A: usize> {
    const MATS: Algorithm<M, A>;
}

/// F(2×2, 3×3) (§4.1 of the paper): its transforms only add, subtract and halve.
pub(crate) struct F2;

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
pub(crate) struct F4;

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
/// F(2×2) or 56 of F(4×4), so 128 channels transform to 1 MB. Half and twice this measured within a few percent.
const GROUP_ENTRIES: usize = if cfg!(test) { 640 } else { 2048 };
/// Fewer channels than this on either side leave the products too thin to pay for the transforms (the 3-channel
/// first and last layers; thinner ones were not measured).
const MIN_CHANNELS: usize = 16;
/// Smaller images keep the direct convolution. The transforms run over the tiles of one plane at a time, so a
/// small plane leaves registers part empty; measured (kernel bench, batch 64, forward / backward ms, Winograd
/// against direct): 64 channels at 14×14 5.1 / 11.1 against 5.8 / 12.7, but at 8×8 2.0 / 4.4 against 1.6 / 3.9
/// and at 7×7 1.8 / 4.0 against 1.6 / 3.5.
const MIN_SIDE: usize = 14;
/// The most transformed entries of one group's input or output (16 MB each): larger images keep the direct path
/// rather than leave the caches (F(4×4) at 64×64 up to 455 channels; at 128×128 up to 113).
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
    check(s, &[(x, s.cin), (weight, 0)]);
    assert!(bias.is_none_or(|b| b.len() == s.cout));
    match large_tiles(s) {
        true => forward_with::<4, 6, F4>(x, weight, bias, s),
        false => forward_with::<2, 4, F2>(x, weight, bias, s),
    }
}

/// The weight gradient `[cout, cin, 3, 3]` from the input `x` and the output gradient `dy`, for a shape
/// [`applies`] accepts.
pub fn weight_gradient(x: &[f32], dy: &[f32], s: &ConvShape) -> Vec<f32> {
    check(s, &[(x, s.cin), (dy, s.cout)]);
    match large_tiles(s) {
        true => weight_gradient_with::<4, 6, F4>(x, dy, s),
        false => weight_gradient_with::<2, 4, F2>(x, dy, s),
    }
}

/// Asserts the shape is one this module computes and each `(tensor, channels)` holds `[batch, channels, h, w]`
/// (channels 0: the weights, `[cout, cin, 3, 3]`).
fn check(s: &ConvShape, tensors: &[(&[f32], usize)]) {
    let same = s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad_h == 1 && s.pad_w == 1;
    assert!(
        same && s.height > 0 && s.width > 0,
        "Winograd's convolutions are 3×3, stride 1, padding 1: {s:?}"
    );
    for &(data, c) in tensors {
        match c {
            0 => assert_eq!(data.len(), s.cout * s.cin * 9, "the weights of {s:?}"),
            c => assert_eq!(data.len(), s.batch * c * s.height * s.width, "a tensor of {s:?}"),
        }
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
pub(crate) struct Dest {
    base: usize,
    xi: usize,
    panel: usize,
}

impl Dest {
    fn at(&self, xi: usize, t: usize) -> usize {
        self.base + xi * self.xi + t / NR * self.panel + t % NR
    }
}

#[cfg(target_arch = "x86_64")]
mod simd;

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
/// buffer per piece of work rayon splits off.
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
            // The product's panels are written by one thread (a channel's lanes are strided), so where the group's
            // work is split over the threads the tiles are laid out by channel and packed by the product.
            let layout = if par { Layout::Channels } else { Layout::Panels };
            let input = (input_plane::<M, A, W> as PlaneFn<M, A>, layout);
            let t = transform_group::<M, A>(xg, (s.cin, s.height, s.width), &tiles, input, v, par);
            let per_xi = v.len() / (A * A);
            m.resize(A * A * s.cout * t, 0.0);
            each_chunk(par, m, s.cout * t, |xi, mx, _| match layout {
                Layout::Panels => packed::matmul_prepacked(mx, t, &u[xi], t, &v[xi * per_xi..][..per_xi], false, false),
                Layout::Channels => {
                    let b = Mat::strided(&v[xi * t..], s.cin, t, A * A * t);
                    packed::matmul(mx, t, &u[xi], b, false, false)
                }
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
mod tests;
