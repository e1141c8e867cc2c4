//! 2-D convolution over contiguous NCHW `f32` slices as im2col and matrix products, per image:
//!
//! - forward: `Y_b[Cout, P] = W[Cout, K] · cols(X_b)[K, P] + bias`;
//! - input gradient: for stride 1, the convolution of `dY_b` with the kernel flipped in space and its channel axes
//!   swapped; otherwise `dX_b = col2im(Wᵀ · dY_b)`;
//! - weight gradient: `dW = Σ_b dY_b · cols(X_b)ᵀ`, a well-shaped product (n = K), where burn's default
//!   computes it as a convolution whose output is the 3×3 kernel (n = 9, memory bound: docs/perf-profile.md §4).
//!
//! K = Cin·kh·kw and P = the output pixels. Images run in parallel; gradients are summed over fixed chunks of
//! the batch in a fixed order, so results do not depend on the number of threads.
//!
//! On the packed kernels ([`super::packed`], AVX-512), stride-1 layers whose output is as wide as the input
//! never write `cols` out: its rows are shifted, masked windows of the image (`Windows`), packed straight into
//! the product's panels. The products run in f32 or, with [`Precision::Bf16`], with bf16 operands.

use super::matmul::{Mat, Precision, Weights, matmul, packed_lanes, parallel};
use super::packed::{self, Lanes, Packed};
use super::winograd;
use gemm::Parallelism;
use rayon::prelude::*;
use std::ops::Range;

/// Shapes of one convolution (groups 1, dilation 1, the same stride on both axes, each axis padded evenly).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvShape {
    pub batch: usize,
    pub cin: usize,
    pub height: usize,
    pub width: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl ConvShape {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.pad_h - self.kh) / self.stride + 1,
            (self.width + 2 * self.pad_w - self.kw) / self.stride + 1,
        )
    }

    fn pixels(&self) -> usize {
        let (h, w) = self.out_hw();
        h * w
    }

    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    fn image_in(&self) -> usize {
        self.cin * self.height * self.width
    }

    fn image_out(&self) -> usize {
        self.cout * self.pixels()
    }

    /// A 1×1 kernel with stride 1 and no padding reads the image itself as its columns.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad_h == 0 && self.pad_w == 0
    }
}

/// The outputs `o` in `lo..hi` (with `lo ≤ hi ≤ n_out`) whose input `o·stride + offset − pad` falls inside
/// `0..n_in`, for the kernel offset `offset`.
fn inside(n_out: usize, n_in: usize, offset: usize, stride: usize, pad: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(offset).div_ceil(stride).min(n_out);
    let hi = (n_in + pad).saturating_sub(offset).div_ceil(stride).min(n_out);
    (lo, hi.max(lo))
}

/// Visits every (column row, input plane, kernel offset) of [`im2col`] with the in-image output ranges, the rows
/// cut to the block `rows`.
fn for_each_row(
    s: &ConvShape,
    rows: &Range<usize>,
    mut f: impl FnMut(usize, usize, (usize, usize), (usize, usize), usize, usize),
) {
    let (oh, ow) = s.out_hw();
    let mut row = 0;
    for ci in 0..s.cin {
        for ky in 0..s.kh {
            let (y0, y1) = inside(oh, s.height, ky, s.stride, s.pad_h);
            let y0 = y0.clamp(rows.start, rows.end);
            let ys = (y0, y1.clamp(y0, rows.end));
            for kx in 0..s.kw {
                let xs = inside(ow, s.width, kx, s.stride, s.pad_w);
                // A kernel column that only ever sees padding reads nothing, whatever the rows.
                let ys = if xs.0 == xs.1 { (rows.start, rows.start) } else { ys };
                f(row, ci, ys, xs, ky, kx);
                row += 1;
            }
        }
    }
}

/// The most column entries built at once (16 MB): the networks' images fit in one block, and larger ones are
/// cut into blocks of output rows, so that the per-thread buffers stay bounded. Smaller blocks were measured
/// slower (docs/perf-profile.md §6). Unit tests use tiny blocks, so that they cover the cutting.
const MAX_COLUMNS: usize = if cfg!(test) { 64 } else { 1 << 22 };

/// The blocks of output rows whose columns are built at once.
fn row_blocks(s: &ConvShape) -> impl Iterator<Item = Range<usize>> {
    let (oh, ow) = s.out_hw();
    let per = (MAX_COLUMNS / (s.k() * ow).max(1)).clamp(1, oh.max(1));
    (0..oh).step_by(per).map(move |r| r..(r + per).min(oh))
}

/// `cols[(ci, ky, kx), (oy, ox)] = x[ci, oy·s + ky − p, ox·s + kx − p]` for the output rows `rows`, zero outside
/// the image. Every entry is written, so the buffer is reused without clearing.
fn im2col(x: &[f32], s: &ConvShape, rows: Range<usize>, cols: &mut Vec<f32>) {
    let (_, ow) = s.out_hw();
    let (plane, st) = (s.height * s.width, s.stride);
    let (base, n) = (rows.start * ow, rows.len() * ow);
    cols.resize(s.k() * n, 0.0);
    // Stride 1 with the output as wide as the input: a row is the plane shifted by (ky − p)·w + kx − p, one long
    // copy, after which only the columns that fell outside the image are zeroed.
    let same_width = st == 1 && ow == s.width;
    for_each_row(s, &rows, |r, ci, (y0, y1), (x0, x1), ky, kx| {
        let row = &mut cols[r * n..][..n];
        let (a, b) = (y0 * ow - base, y1 * ow - base);
        row[..a].fill(0.0);
        row[b..].fill(0.0);
        if same_width {
            let src = &x[ci * plane..][..plane];
            let shift = (ky * ow + kx) as isize - (s.pad_h * ow + s.pad_w) as isize;
            let lo = ((-shift).max(0) as usize).clamp(y0 * ow, y1 * ow);
            let hi = ((plane as isize - shift).max(0) as usize).clamp(lo, y1 * ow);
            row[a..lo - base].fill(0.0);
            row[hi - base..b].fill(0.0);
            if lo < hi {
                let from = (lo as isize + shift) as usize;
                row[lo - base..hi - base].copy_from_slice(&src[from..from + hi - lo]);
            }
            // At most `pad` columns on each side, so a strided pass per column rather than a fill per output row.
            for c in (0..x0).chain(x1..ow).filter(|_| a < b) {
                row[a + c..b].iter_mut().step_by(ow).for_each(|v| *v = 0.0);
            }
            return;
        }
        for oy in y0..y1 {
            let src = &x[ci * plane + (oy * st + ky - s.pad_h) * s.width..][..s.width];
            let dst = &mut row[oy * ow - base..][..ow];
            dst[..x0].fill(0.0);
            dst[x1..].fill(0.0);
            let src = &src[x0 * st + kx - s.pad_w..];
            if st == 1 {
                dst[x0..x1].copy_from_slice(&src[..x1 - x0]);
            } else {
                dst[x0..x1]
                    .iter_mut()
                    .zip(src.iter().step_by(st))
                    .for_each(|(d, &v)| *d = v);
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds each column entry back onto the pixel it was read from.
fn col2im(cols: &[f32], s: &ConvShape, rows: Range<usize>, x: &mut [f32]) {
    let (_, ow) = s.out_hw();
    let (plane, st) = (s.height * s.width, s.stride);
    let (base, n) = (rows.start * ow, rows.len() * ow);
    for_each_row(s, &rows, |r, ci, (y0, y1), (x0, x1), ky, kx| {
        let row = &cols[r * n..][..n];
        for oy in y0..y1 {
            let dst = &mut x[ci * plane + (oy * st + ky - s.pad_h) * s.width..][..s.width];
            let dst = &mut dst[x0 * st + kx - s.pad_w..];
            let src = &row[oy * ow - base..][x0..x1];
            dst.iter_mut().step_by(st).zip(src).for_each(|(d, &v)| *d += v);
        }
    });
}

thread_local! {
    /// Column buffers (and Winograd's transformed tiles) kept per thread between calls: a fresh one per call would
    /// be zeroed and faulted in again (a 64-channel 32×32 image's columns take 2.4 MB).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers (fresh ones if they are already in use further up the stack).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut pair) => {
            let (a, b) = &mut *pair;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// Parallel over images when there are enough of them to keep every thread busy, else inside each product.
fn inner_parallelism(units: usize) -> Parallelism {
    if units >= rayon::current_num_threads() {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    }
}

/// Adds the convolution of one image `xb` with `w` (`[cout, K]`) onto `yb`; `win` is [`Windows::of`] the shape.
fn convolve_image(xb: &[f32], w: &Weights, s: &ConvShape, win: Option<&Windows>, yb: &mut [f32], par: Parallelism) {
    let (p, k) = (s.pixels(), s.k());
    if s.pointwise() {
        return w.matmul(yb, p, Mat::new(xb, k, p), true, par);
    }
    if let (Some(packed), Some(win)) = (w.packed(), win) {
        return convolve_windows(xb, packed, win, yb, par);
    }
    let ow = s.out_hw().1;
    with_scratch(|cols, _| {
        for rows in row_blocks(s) {
            let (at, n) = (rows.start * ow, rows.len() * ow);
            im2col(xb, s, rows, cols);
            w.matmul(&mut yb[at..], p, Mat::new(cols, k, n), true, par);
        }
    });
}

/// For stride 1 with the output as wide as the input, an im2col row (input channel ci, kernel tap (ky, kx)) is a
/// window of the plane ci shifted by (ky − p)·w + kx − p, with the pixels whose source lies outside the image
/// masked off. Per tap: the shift, and a bit per output pixel, set where it reads inside the image.
struct Windows {
    shifts: Vec<isize>,
    masks: Vec<Vec<u32>>,
    plane: usize,
}

impl Windows {
    fn of(s: &ConvShape) -> Option<Self> {
        let (oh, ow) = s.out_hw();
        if s.stride != 1 || ow != s.width || s.pointwise() {
            return None;
        }
        let taps = (0..s.kh).flat_map(|ky| (0..s.kw).map(move |kx| (ky, kx)));
        let (shifts, masks) = taps
            .map(|(ky, kx)| {
                let (y0, y1) = inside(oh, s.height, ky, 1, s.pad_h);
                let (x0, x1) = inside(ow, s.width, kx, 1, s.pad_w);
                let mut mask = vec![0u32; (oh * ow).div_ceil(32)];
                for j in (y0 * ow..y1 * ow).filter(|j| (x0..x1).contains(&(j % ow))) {
                    mask[j / 32] |= 1 << (j % 32);
                }
                ((ky * ow + kx) as isize - (s.pad_h * ow + s.pad_w) as isize, mask)
            })
            .unzip();
        Some(Self {
            shifts,
            masks,
            plane: s.height * s.width,
        })
    }

    /// Where im2col row `r` starts in the image (pixel j of the row reads `x[start + j]`), and its tap's mask.
    fn row(&self, r: usize) -> (isize, &[u32]) {
        let (taps, tap) = (self.shifts.len(), r % self.shifts.len());
        ((r / taps * self.plane) as isize + self.shifts[tap], &self.masks[tap])
    }
}

/// [`convolve_image`] on the packed kernels where [`Windows`] apply: B's panels are packed straight from the
/// image, so the columns are never written out.
fn convolve_windows(xb: &[f32], packed: &Packed, win: &Windows, yb: &mut [f32], par: Parallelism) {
    let p = yb.len() / packed.rows();
    let pack_b = |cols: Range<usize>, k0, k1, out: &mut Vec<u32>| {
        // Panels start at multiples of 32 pixels: one mask word each.
        debug_assert!(cols.start.is_multiple_of(32) && cols.len() <= 32);
        let row = |r: usize| {
            let (start, mask) = win.row(r);
            (start + cols.start as isize, mask[cols.start / 32])
        };
        packed::pack_windows(packed.lanes(), xb, row, k0, k1, out);
    };
    packed::matmul_with(yb, p, packed, p, pack_b, true, parallel(par));
}

/// The weight gradient of one image where [`Windows`] apply, on the packed kernels: `dw (+)= dY_b · im2col(x_b)ᵀ`
/// with im2col's rows built a panel at a time.
#[allow(clippy::too_many_arguments)]
fn weight_gradient_windows(
    xb: &[f32],
    dyb: &[f32],
    s: &ConvShape,
    win: &Windows,
    lanes: Lanes,
    dw: &mut [f32],
    accumulate: bool,
    par: Parallelism,
) {
    let (p, k) = (s.pixels(), s.k());
    let a = Packed::new(Mat::new(dyb, s.cout, p), lanes);
    let pack_b = |lines: Range<usize>, k0, k1, out: &mut Vec<u32>| {
        packed::pack_window_lines(lanes, xb, |r| win.row(r), lines, k0, k1, out);
    };
    packed::matmul_with(dw, k, &a, k, pack_b, accumulate, parallel(par));
}

/// For stride 1, the input gradient is itself a convolution: of `dy` with the kernel flipped in space and its
/// channel axes swapped, padded by k − 1 − p. Returns that kernel (`[cin, cout, kh, kw]`) and shape, or `None`
/// where it does not apply (strides, padding beyond the kernel).
fn input_gradient_as_convolution(weight: &[f32], s: &ConvShape) -> Option<(Vec<f32>, ConvShape)> {
    if s.stride != 1 || s.pad_h >= s.kh || s.pad_w >= s.kw {
        return None;
    }
    let (oh, ow) = s.out_hw();
    let taps = s.kh * s.kw;
    let mut flipped = vec![0f32; weight.len()];
    for co in 0..s.cout {
        for ci in 0..s.cin {
            let src = &weight[(co * s.cin + ci) * taps..][..taps];
            let dst = &mut flipped[(ci * s.cout + co) * taps..][..taps];
            dst.iter_mut().zip(src.iter().rev()).for_each(|(d, &v)| *d = v);
        }
    }
    let shape = ConvShape {
        batch: s.batch,
        cin: s.cout,
        height: oh,
        width: ow,
        cout: s.cin,
        pad_h: s.kh - 1 - s.pad_h,
        pad_w: s.kw - 1 - s.pad_w,
        ..*s
    };
    Some((flipped, shape))
}

/// The convolution's output, `[batch, cout, oh, ow]`, its products in `precision`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], s: &ConvShape, precision: Precision) -> Vec<f32> {
    assert_eq!(x.len(), s.batch * s.image_in());
    assert_eq!(weight.len(), s.cout * s.k());
    assert_eq!(bias.len(), s.cout);
    if winograd::applies(s, precision) {
        return winograd::forward(x, weight, Some(bias), s);
    }
    let (p, k) = (s.pixels(), s.k());
    let par = inner_parallelism(s.batch);
    let w = Weights::new(Mat::new(weight, s.cout, k), precision);
    let win = Windows::of(s);
    let mut y = vec![0f32; s.batch * s.image_out()];
    let image = |(yb, xb): (&mut [f32], &[f32])| {
        for (row, &b) in yb.chunks_exact_mut(p).zip(bias) {
            row.fill(b);
        }
        convolve_image(xb, &w, s, win.as_ref(), yb, par);
    };
    if matches!(par, Parallelism::None) {
        y.par_chunks_mut(s.image_out())
            .zip(x.par_chunks(s.image_in()))
            .for_each(image);
    } else {
        y.chunks_mut(s.image_out()).zip(x.chunks(s.image_in())).for_each(image);
    }
    y
}

/// Gradients `(∂L/∂x, ∂L/∂W, ∂L/∂bias)` from the output gradient `dy`; ∂L/∂x stays zero unless `need_dx`
/// (the first layer's input, the data, needs none). The products run in `precision`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    s: &ConvShape,
    need_dx: bool,
    precision: Precision,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.batch * s.image_in());
    assert_eq!(weight.len(), s.cout * s.k());
    assert_eq!(dy.len(), s.batch * s.image_out());
    let (p, k) = (s.pixels(), s.k());
    // At most eight partial sums: their count depends on the batch only, never on the threads.
    let chunk = s.batch.div_ceil(8).max(1);
    let db = bias_gradient(dy, s, chunk);
    if winograd::applies(s, precision) {
        let dx = match input_gradient_as_convolution(weight, s).filter(|_| need_dx) {
            Some((flipped, st)) => winograd::forward(dy, &flipped, None, &st),
            None => vec![0f32; x.len()],
        };
        return (dx, winograd::weight_gradient(x, dy, s), db);
    }
    let par = inner_parallelism(s.batch.div_ceil(chunk));
    let w = Mat::new(weight, s.cout, k);
    let transposed = input_gradient_as_convolution(weight, s).filter(|_| need_dx);
    // The input gradient as a convolution: its weights (packed once) and shape.
    let input_conv = transposed.as_ref().map(|(f, st)| {
        (
            Weights::new(Mat::new(f, st.cout, st.k()), precision),
            st,
            Windows::of(st),
        )
    });
    // On the packed kernels, the weight gradient builds its im2col rows a panel at a time, where the input
    // gradient needs no col2im from the same loop.
    let windowed = Windows::of(s)
        .filter(|_| input_conv.is_some() || !need_dx)
        .zip(packed_lanes(precision));
    let mut dx = vec![0f32; x.len()];
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(chunk * s.image_in())
        .zip(x.par_chunks(chunk * s.image_in()))
        .zip(dy.par_chunks(chunk * s.image_out()))
        .map(|((dxc, xc), dyc)| {
            let mut dw = vec![0f32; s.cout * k];
            let images = dxc.chunks_mut(s.image_in()).zip(xc.chunks(s.image_in()));
            for (i, ((dxb, xb), dyb)) in images.zip(dyc.chunks(s.image_out())).enumerate() {
                if s.pointwise() {
                    let g = Mat::new(dyb, s.cout, p);
                    matmul(&mut dw, k, g, Mat::new(xb, k, p).t(), i > 0, par, precision);
                    if need_dx {
                        matmul(dxb, p, w.t(), g, false, par, precision);
                    }
                    continue;
                }
                if let Some((win, lanes)) = &windowed {
                    weight_gradient_windows(xb, dyb, s, win, *lanes, &mut dw, i > 0, par);
                } else {
                    let ow = s.out_hw().1;
                    with_scratch(|cols, dcols| {
                        for (j, rows) in row_blocks(s).enumerate() {
                            let (at, n) = (rows.start * ow, rows.len() * ow);
                            let g = Mat::strided(&dyb[at..], s.cout, n, p);
                            im2col(xb, s, rows.clone(), cols);
                            matmul(&mut dw, k, g, Mat::new(cols, k, n).t(), i > 0 || j > 0, par, precision);
                            if need_dx && input_conv.is_none() {
                                dcols.resize(k * n, 0.0);
                                matmul(dcols, n, w.t(), g, false, par, precision);
                                col2im(dcols, s, rows, dxb);
                            }
                        }
                    });
                }
                if let Some((flipped, st, win)) = &input_conv {
                    convolve_image(dyb, flipped, st, win.as_ref(), dxb, par);
                }
            }
            dw
        })
        .collect();
    (dx, sum(&partials, s.cout * k), db)
}

/// ∂L/∂bias: per image, each channel's sum in f64; summed in f32 over `chunk` images at a time, then over the
/// chunks, in that fixed order.
fn bias_gradient(dy: &[f32], s: &ConvShape, chunk: usize) -> Vec<f32> {
    let p = s.pixels();
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(chunk * s.image_out())
        .map(|dyc| {
            let mut db = vec![0f32; s.cout];
            for dyb in dyc.chunks(s.image_out()) {
                for (d, row) in db.iter_mut().zip(dyb.chunks_exact(p)) {
                    *d += row.iter().map(|&v| v as f64).sum::<f64>() as f32;
                }
            }
            db
        })
        .collect();
    sum(&partials, s.cout)
}

/// The sum of `len`-entry partial sums, in their order.
pub(super) fn sum(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::bf16;

    /// The convolution and its gradients by direct summation, in f64.
    pub(crate) fn direct(x: &[f32], w: &[f32], b: &[f32], dy: &[f32], s: &ConvShape) -> [Vec<f64>; 4] {
        let (oh, ow) = s.out_hw();
        let mut y = vec![0f64; s.batch * s.cout * oh * ow];
        let (mut dx, mut dw, mut db) = (vec![0f64; x.len()], vec![0f64; w.len()], vec![0f64; b.len()]);
        for n in 0..s.batch {
            for co in 0..s.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = ((n * s.cout + co) * oh + oy) * ow + ox;
                        y[o] = b[co] as f64;
                        db[co] += dy[o] as f64;
                        for ci in 0..s.cin {
                            for ky in 0..s.kh {
                                for kx in 0..s.kw {
                                    let iy = (oy * s.stride + ky) as isize - s.pad_h as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.pad_w as isize;
                                    if iy < 0 || ix < 0 || iy >= s.height as isize || ix >= s.width as isize {
                                        continue;
                                    }
                                    let xi = ((n * s.cin + ci) * s.height + iy as usize) * s.width + ix as usize;
                                    let wi = ((co * s.cin + ci) * s.kh + ky) * s.kw + kx;
                                    y[o] += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += dy[o] as f64 * w[wi] as f64;
                                    dw[wi] += dy[o] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw, db]
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn matches_direct_summation_for_every_kernel_the_networks_use() {
        let mut rng = crate::rng::stream(7, 0);
        for (batch, cin, hw, cout, (kh, kw), stride, (pad_h, pad_w)) in [
            (3, 4, 7, 5, (3, 3), 1, (1, 1)),  // 3×3 same
            (2, 3, 8, 4, (3, 3), 2, (1, 1)),  // 3×3 stride-2 downsampling
            (5, 6, 5, 3, (1, 1), 1, (0, 0)),  // 1×1 skip
            (1, 2, 6, 3, (3, 3), 1, (0, 0)),  // valid, batch 1 (parallel inside the products)
            (17, 2, 4, 2, (3, 3), 1, (1, 1)), // batch over the partial-sum chunking
            (2, 3, 1, 2, (3, 3), 1, (1, 1)),  // a 1×2 image under a 3×3 kernel
            (2, 2, 2, 3, (3, 3), 2, (1, 1)),  // stride 2 on a 2×3 image
            (2, 3, 6, 4, (1, 7), 1, (0, 3)),  // Inception's 1×7
            (2, 3, 9, 4, (7, 1), 1, (3, 0)),  // and 7×1
            (2, 2, 5, 3, (1, 3), 2, (0, 0)),  // uneven kernel, stride 2, no padding
            (2, 2, 1, 2, (5, 5), 2, (2, 2)),  // kernel columns that see only padding
            (1, 2, 1, 2, (3, 3), 3, (1, 1)),  // stride beyond the image
            (2, 2, 1, 3, (1, 7), 1, (0, 3)),  // 1×7 on a 1×2 image
            (0, 2, 3, 2, (3, 3), 1, (1, 1)),  // an empty batch
        ] {
            let s = ConvShape {
                batch,
                cin,
                height: hw,
                width: hw + 1,
                cout,
                kh,
                kw,
                stride,
                pad_h,
                pad_w,
            };
            let (oh, ow) = s.out_hw();
            let x = crate::rng::normals(&mut rng, batch * cin * hw * (hw + 1));
            let w = crate::rng::normals(&mut rng, cout * cin * kh * kw);
            let b = crate::rng::normals(&mut rng, cout);
            let dy = crate::rng::normals(&mut rng, batch * cout * oh * ow);
            let db = direct(&x, &w, &b, &dy, &s)[3].clone();
            for precision in precisions() {
                // In bf16 every product's operands are rounded to bf16 and summed in f32: the direct f64 sums of
                // the rounded operands are what it must give, to f32's tolerance.
                let q = |v: &[f32]| match precision {
                    Precision::F32 => v.to_vec(),
                    Precision::Bf16 => v.iter().map(|&v| bf16::widen(bf16::round(v))).collect(),
                };
                let [y, dx, dw, _] = direct(&q(&x), &q(&w), &b, &q(&dy), &s);
                let what = |name: &str| format!("{name} in {precision:?} of {s:?}");
                close(&forward(&x, &w, &b, &s, precision), &y, &what("y"));
                let (gx, gw, gb) = backward(&x, &w, &dy, &s, true, precision);
                close(&gx, &dx, &what("dx"));
                close(&gw, &dw, &what("dw"));
                close(&gb, &db, &what("db"));
                let (no_dx, same_dw, same_db) = backward(&x, &w, &dy, &s, false, precision);
                assert!(no_dx.iter().all(|&v| v == 0.0) && same_dw == gw && same_db == gb);
            }
        }
    }

    /// f32, and bf16 where this CPU has it.
    pub(crate) fn precisions() -> Vec<Precision> {
        if bf16::available() {
            vec![Precision::F32, Precision::Bf16]
        } else {
            eprintln!("bf16 not checked: this CPU has no AVX512-BF16");
            vec![Precision::F32]
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let s = ConvShape {
            batch: 12,
            cin: 8,
            height: 9,
            width: 9,
            cout: 6,
            kh: 3,
            kw: 3,
            stride: 1,
            pad_h: 1,
            pad_w: 1,
        };
        let mut rng = crate::rng::stream(3, 0);
        let x = crate::rng::normals(&mut rng, 12 * 8 * 81);
        let w = crate::rng::normals(&mut rng, 6 * 8 * 9);
        let dy = crate::rng::normals(&mut rng, 12 * 6 * 81);
        for precision in precisions() {
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| backward(&x, &w, &dy, &s, true, precision))
            };
            let a = run(1);
            for threads in [3, 8] {
                let b = run(threads);
                assert!(
                    a.0 == b.0 && a.1 == b.1 && a.2 == b.2,
                    "{threads} threads in {precision:?}"
                );
            }
        }
    }
}
