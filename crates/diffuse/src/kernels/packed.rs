//! The project's packed matrix product on AVX-512, with f32 operands or bf16 ones (f32 sums in both).
//!
//! The layout is the usual packed GEMM: A is packed in panels of `MR` (8) rows and B in panels of [`NR`] (32)
//! columns, as 32-bit lanes along k, so that one 32-bit broadcast of A and two 512-bit loads of B feed 2·MR
//! multiply-adds: `vfmadd231ps` on one f32 per lane, or `vdpbf16ps` on a pair of bf16 values per lane (two
//! consecutive k), which does twice the products at the same instruction throughput (3.5 G instructions/s per
//! core for both on the development machine, measured). k is cut into blocks, so that a B panel (32 KB) stays
//! near L1 while every A panel passes it.
//!
//! B is given by a packer, so that a convolution can pack its im2col columns straight from the image
//! ([`pack_windows`]) rather than write them out first.

use super::bf16;
use super::matmul::Mat;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::OnceLock;

/// Rows of A (and of the output tile) per micro-kernel call.
const MR: usize = 8;
/// Columns of B per micro-kernel call: two 16-lane registers.
pub const NR: usize = 32;
/// The most lanes of k per block: a B panel of 256 × 32 lanes takes 32 KB, about L1. Blocks of 128 lanes measured
/// no faster (kernel bench, 2026-11-30).
const KC_LANES: usize = 256;

/// How operands sit in a 32-bit lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// One f32 per lane.
    F32,
    /// Two bf16 values (consecutive k, the first in the low half) per lane, as `vdpbf16ps` pairs them.
    Bf16,
}

impl Lanes {
    /// Whether this CPU runs the kernels of this format (checked once).
    pub fn available(self) -> bool {
        static AVX512: OnceLock<bool> = OnceLock::new();
        let avx512 = *AVX512.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        });
        match self {
            Lanes::F32 => avx512,
            Lanes::Bf16 => avx512 && bf16::available(),
        }
    }
}

/// k entries per lane: 1 (f32) or 2 (bf16 pairs).
const fn per_lane(lanes: Lanes) -> usize {
    match lanes {
        Lanes::F32 => 1,
        Lanes::Bf16 => 2,
    }
}

/// One lane from `P` consecutive k entries (`hi` is ignored for f32).
fn lane<const P: usize>(lo: f32, hi: f32) -> u32 {
    if P == 1 {
        lo.to_bits()
    } else {
        bf16::round(lo) as u32 | (bf16::round(hi) as u32) << 16
    }
}

/// `dst[t] = lane(src[P·t], src[P·t + 1])`, with a zero after a last odd entry.
fn convert<const P: usize>(src: &[f32], dst: &mut [u32]) {
    debug_assert_eq!(dst.len(), src.len().div_ceil(P));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if P == 2 && bf16::available() {
        // SAFETY: AVX512-BF16 is present.
        done = unsafe { simd::convert_pairs(src, dst) };
    }
    for (d, k) in dst[done..].iter_mut().zip(src[P * done..].chunks(P)) {
        *d = lane::<P>(k[0], k.get(1).copied().unwrap_or(0.0));
    }
}

/// `dst[i] = lane(lo[i], hi[i])` (`hi` zero when absent; unused for f32).
fn interleave<const P: usize>(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    if P == 1 {
        dst.iter_mut().zip(lo).for_each(|(d, v)| *d = v.to_bits());
        return;
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(hi)) = (bf16::available(), hi) {
        // SAFETY: AVX512-BF16 is present.
        done = unsafe { simd::interleave(lo, hi, dst) };
    }
    for (i, d) in dst.iter_mut().enumerate().skip(done) {
        *d = lane::<P>(lo[i], hi.map_or(0.0, |h| h[i]));
    }
}

/// Packs the lines (rows of A, or columns of B) `lines` over k in `k0..k1` into `out` as
/// `[line panel][k lane][lane of the panel]` with `width` lanes per panel, zero beyond the matrix. A line's
/// entry `k` is `data[line · line_step + k · k_step]`.
#[allow(clippy::too_many_arguments)]
fn pack<const P: usize>(
    data: &[f32],
    line_step: isize,
    k_step: isize,
    lines: Range<usize>,
    k0: usize,
    k1: usize,
    width: usize,
    out: &mut Vec<u32>,
) {
    let depth = (k1 - k0).div_ceil(P);
    let panels = lines.len().div_ceil(width);
    // Every lane of a line inside the matrix is written below: only a last, partial panel needs zeros.
    out.resize(panels * depth * width, 0);
    let at = |line: usize, k: usize| (line as isize * line_step + k as isize * k_step) as usize;
    for (panel, dst) in out.chunks_exact_mut(depth * width).enumerate() {
        let first = lines.start + panel * width;
        let count = width.min(lines.end - first);
        if count < width {
            dst.chunks_exact_mut(width).for_each(|p| p[count..].fill(0));
        }
        if k_step == 1 {
            // k contiguous (A row-major, or B transposed).
            let line = |l: usize| &data[at(first + l, k0)..][..k1 - k0];
            spread::<P>(line, count, width, dst);
        } else if line_step == 1 {
            // Lines contiguous: P rows of k side by side, interleaved.
            for d in 0..depth {
                let k = k0 + P * d;
                let lo = &data[at(first, k)..][..count];
                let hi = (P == 2 && k + 1 < k1).then(|| &data[at(first, k + 1)..][..count]);
                interleave::<P>(lo, hi, &mut dst[d * width..][..count]);
            }
        } else {
            for d in 0..depth {
                let k = k0 + P * d;
                for l in 0..count {
                    let hi = if P == 2 && k + 1 < k1 {
                        data[at(first + l, k + 1)]
                    } else {
                        0.0
                    };
                    dst[d * width + l] = lane::<P>(data[at(first + l, k)], hi);
                }
            }
        }
    }
}

/// Packs a panel of `count` lines whose k entries are contiguous, `line(l)` being line `l`'s entries over the
/// block: 16 lanes of each line are converted at once, then spread over the panel (`width` lanes per k lane),
/// a block small enough for L1 at a time.
fn spread<'a, const P: usize>(line: impl Fn(usize) -> &'a [f32], count: usize, width: usize, dst: &mut [u32]) {
    let Some(len) = (count > 0).then(|| line(0).len()) else {
        return;
    };
    let mut block = [[0u32; 16]; NR];
    for d0 in (0..len.div_ceil(P)).step_by(16) {
        let (from, to) = (P * d0, (P * (d0 + 16)).min(len));
        let nd = (to - from).div_ceil(P);
        for (l, b) in block.iter_mut().enumerate().take(count) {
            convert::<P>(&line(l)[from..to], &mut b[..nd]);
        }
        for t in 0..nd {
            let row = &mut dst[(d0 + t) * width..][..count];
            row.iter_mut().zip(&block).for_each(|(d, b)| *d = b[t]);
        }
    }
}

/// Packs the B panel of the lines `lines` (at most [`NR`]) over k in `k0..k1`, where line `r`'s entry `k` is
/// `src[start + k]` if bit `k` of `mask` is set and zero otherwise, with `(start, mask) = line(r)`; `mask` has a
/// bit for every k of the matrix. This is a convolution's weight gradient B = im2col(x)ᵀ:
/// a line is one kernel tap of one input channel, k runs over the output pixels, and the columns are built a
/// panel at a time in a small buffer instead of for the whole image.
pub fn pack_window_lines<'m>(
    lanes: Lanes,
    src: &[f32],
    line: impl Fn(usize) -> (isize, &'m [u32]),
    lines: Range<usize>,
    k0: usize,
    k1: usize,
    out: &mut Vec<u32>,
) {
    let (count, len) = (lines.len(), k1 - k0);
    out.resize(len.div_ceil(per_lane(lanes)) * NR, 0);
    if count < NR {
        out.chunks_exact_mut(NR).for_each(|p| p[count..].fill(0));
    }
    COLUMNS.with(|cell| {
        let mut fresh = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let buf = borrowed.as_deref_mut().unwrap_or(&mut fresh);
        buf.resize(count * len, 0.0);
        for (r, dst) in lines.zip(buf.chunks_exact_mut(len)) {
            let (start, mask) = line(r);
            window_line(src, start, mask, k0, dst);
        }
        let buf = &*buf;
        match lanes {
            Lanes::F32 => spread::<1>(|l| &buf[l * len..][..len], count, NR, out),
            Lanes::Bf16 => spread::<2>(|l| &buf[l * len..][..len], count, NR, out),
        }
    });
}

/// `dst[i] = src[start + k0 + i]` where bit `k0 + i` of `mask` is set, else zero.
fn window_line(src: &[f32], start: isize, mask: &[u32], k0: usize, dst: &mut [f32]) {
    let bits = |k: usize| {
        let (w, b) = (k / 32, k % 32);
        let pair = mask[w] as u64 | (mask.get(w + 1).copied().unwrap_or(0) as u64) << 32;
        (pair >> b) as u16
    };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if Lanes::F32.available() {
        for (c, chunk) in dst.chunks_exact_mut(16).enumerate() {
            let k = k0 + 16 * c;
            // SAFETY: AVX-512 is present; set bits index inside `src` (pack_window_lines' contract).
            unsafe { simd::masked_copy(src, start + k as isize, bits(k), chunk) };
        }
        done = dst.len() / 16 * 16;
    }
    for (i, d) in dst.iter_mut().enumerate().skip(done) {
        let k = k0 + i;
        *d = if bits(k) & 1 == 1 {
            src[(start + k as isize) as usize]
        } else {
            0.0
        };
    }
}

/// Packs one B panel of [`NR`] lanes whose k row `r` is a window of `src`: lane `t` is `src[start + t]` where
/// bit `t` of `mask` is set, zero elsewhere, with `(start, mask) = row(r)` for `r` in `k0..k1`. This is how a
/// stride-1 convolution's im2col columns are packed straight from the image, without writing them out.
/// Every set bit must index inside `src`.
pub fn pack_windows(
    lanes: Lanes,
    src: &[f32],
    row: impl Fn(usize) -> (isize, u32),
    k0: usize,
    k1: usize,
    out: &mut Vec<u32>,
) {
    match lanes {
        Lanes::F32 => pack_windows_in::<1>(src, row, k0, k1, out),
        Lanes::Bf16 => pack_windows_in::<2>(src, row, k0, k1, out),
    }
}

fn pack_windows_in<const P: usize>(
    src: &[f32],
    row: impl Fn(usize) -> (isize, u32),
    k0: usize,
    k1: usize,
    out: &mut Vec<u32>,
) {
    let depth = (k1 - k0).div_ceil(P);
    out.resize(depth * NR, 0);
    let window = |r: usize| {
        let (start, mask) = if r < k1 { row(r) } else { (0, 0) };
        debug_assert!((0..32).all(|t| mask >> t & 1 == 0 || (0..src.len() as isize).contains(&(start + t))));
        (start, mask)
    };
    #[cfg(target_arch = "x86_64")]
    if Lanes::F32.available() && (P == 1 || bf16::available()) {
        for (d, lanes) in out.chunks_exact_mut(NR).enumerate() {
            let (lo, hi) = (window(k0 + P * d), window(k0 + P * d + 1));
            // SAFETY: AVX-512 (and AVX512-BF16 for pairs) is present; set bits index inside `src` (the contract
            // above).
            unsafe {
                if P == 1 {
                    simd::window(src, lo, lanes)
                } else {
                    simd::window_pair(src, lo, hi, lanes)
                }
            };
        }
        return;
    }
    let at = |(start, mask): (isize, u32), t: usize| {
        if mask >> t & 1 == 1 {
            src[(start + t as isize) as usize]
        } else {
            0.0
        }
    };
    for (d, lanes) in out.chunks_exact_mut(NR).enumerate() {
        let (lo, hi) = (window(k0 + P * d), window(k0 + P * d + 1));
        for (t, v) in lanes.iter_mut().enumerate() {
            *v = lane::<P>(at(lo, t), if P == 2 { at(hi, t) } else { 0.0 });
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// [`super::convert`] of pairs for whole groups of 16 lanes; returns how many lanes it wrote.
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

    /// `dst[i] = src[start + i]` for the set bits of `mask`, zero elsewhere (16 lanes).
    ///
    /// # Safety
    /// The CPU must have AVX-512; set bits index inside `src`; `dst` has 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn masked_copy(src: &[f32], start: isize, mask: u16, dst: &mut [f32]) {
        // SAFETY: only the lanes of set bits are read, and they lie inside `src`; 16 lanes written.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().wrapping_offset(start));
            _mm512_storeu_ps(dst.as_mut_ptr(), v);
        }
    }

    /// One k lane of [`super::pack_windows`] in f32: 32 lanes from one masked window.
    ///
    /// # Safety
    /// The CPU must have AVX-512; set mask bits index inside `src`; `dst` has 32 lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn window(src: &[f32], (start, mask): (isize, u32), dst: &mut [u32]) {
        for h in 0..2 {
            // Masked-off lanes are not read, so the window may start before or end after `src`.
            let at = src.as_ptr().wrapping_offset(start + 16 * h as isize);
            // SAFETY: only the lanes of set bits are read, and they lie inside `src`; 16 lanes written in `dst`.
            unsafe {
                let v = _mm512_maskz_loadu_ps((mask >> (16 * h)) as u16, at);
                _mm512_storeu_ps(dst.as_mut_ptr().add(16 * h).cast(), v);
            }
        }
    }

    /// One k pair of [`super::pack_windows`] in bf16: 32 lanes from two masked windows.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16; set mask bits index inside `src`; `dst` has 32 lanes.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn window_pair(src: &[f32], (lo, ml): (isize, u32), (hi, mh): (isize, u32), dst: &mut [u32]) {
        let order = interleaving();
        for h in 0..2 {
            let (ml, mh) = ((ml >> (16 * h)) as u16, (mh >> (16 * h)) as u16);
            let at = |start: isize| src.as_ptr().wrapping_offset(start + 16 * h as isize);
            // SAFETY: only the lanes of set bits are read, and they lie inside `src`; 16 lanes written in `dst`.
            unsafe {
                let l = _mm512_maskz_loadu_ps(ml, at(lo));
                let u = _mm512_maskz_loadu_ps(mh, at(hi));
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(u, l));
                _mm512_storeu_si512(dst.as_mut_ptr().add(16 * h).cast(), _mm512_permutexvar_epi16(order, v));
            }
        }
    }

    /// The 16-bit lane order that interleaves two 16-lane halves: lane 2i from the low half's i, 2i + 1 from the
    /// high half's.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn interleaving() -> __m512i {
        _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        )
    }

    /// Interleaved pairs (`super::interleave` in bf16) for whole groups of 16; returns how many it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16 (and so AVX512-BW).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn interleave(lo: &[f32], hi: &[f32], dst: &mut [u32]) -> usize {
        let groups = lo.len().min(hi.len()).min(dst.len()) / 16;
        let order = interleaving();
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

    /// Accumulators of one tile: MR rows of two 16-lane registers.
    pub type Acc = [[__m512; 2]; super::MR];

    /// The tile's sums over `depth` k lanes of f32.
    ///
    /// # Safety
    /// The CPU must have AVX-512; `a` holds `depth · MR` and `b` `depth · NR` lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sums_f32(depth: usize, a: *const u32, b: *const u32) -> Acc {
        let mut c = [[_mm512_setzero_ps(); 2]; super::MR];
        for d in 0..depth {
            // SAFETY: in bounds by the caller's contract; unaligned loads.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(d * super::NR).cast());
                let b1 = _mm512_loadu_ps(b.add(d * super::NR + 16).cast());
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(d * super::MR + i).cast::<f32>());
                    ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
                    ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
                }
            }
        }
        c
    }

    /// The tile's sums over `depth` k lanes of bf16 pairs.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16; `a` holds `depth · MR` and `b` `depth · NR` lanes.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn sums_bf16(depth: usize, a: *const u32, b: *const u32) -> Acc {
        let mut c = [[_mm512_setzero_ps(); 2]; super::MR];
        for d in 0..depth {
            // SAFETY: in bounds by the caller's contract; unaligned loads.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(d * super::NR).cast()));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(d * super::NR + 16).cast()));
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(d * super::MR + i) as i32));
                    ci[0] = _mm512_dpbf16_ps(ci[0], ai, b0);
                    ci[1] = _mm512_dpbf16_ps(ci[1], ai, b1);
                }
            }
        }
        c
    }

    /// Stores (or adds, when `add`) the first `rows` rows and `cols` columns of `c` at `out`, rows `stride`
    /// apart; masked loads and stores keep to the columns.
    ///
    /// # Safety
    /// The CPU must have AVX-512; the rows and columns lie inside the output.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store(c: &Acc, out: *mut f32, stride: usize, rows: usize, cols: usize, add: bool) {
        let all = (1u64 << cols) - 1;
        let masks = [all as u16, (all >> 16) as u16];
        for (i, ci) in c.iter().enumerate().take(rows) {
            // SAFETY: the row and the masked columns lie inside the output (the caller's contract).
            unsafe {
                let row = out.add(i * stride);
                for (h, (&mask, &v)) in masks.iter().zip(ci).enumerate() {
                    let at = row.add(16 * h);
                    let v = if add {
                        _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, at))
                    } else {
                        v
                    };
                    _mm512_mask_storeu_ps(at, mask, v);
                }
            }
        }
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

/// The product of one packed A panel and one packed B panel over `depth` k lanes, stored (or added) into `out`
/// at `tile`.
///
/// # Safety
/// `lanes` is [`Lanes::available`]; `a` holds `depth · MR` and `b` `depth · NR` lanes; the tile lies inside the
/// output and no other thread writes it meanwhile.
#[cfg(target_arch = "x86_64")]
unsafe fn micro_kernel(lanes: Lanes, depth: usize, a: &[u32], b: &[u32], out: Out, tile: Tile) {
    debug_assert!(a.len() >= depth * MR && b.len() >= depth * NR && tile.rows <= MR && tile.cols <= NR);
    // SAFETY: by the caller's contract.
    unsafe {
        let c = match lanes {
            Lanes::F32 => simd::sums_f32(depth, a.as_ptr(), b.as_ptr()),
            Lanes::Bf16 => simd::sums_bf16(depth, a.as_ptr(), b.as_ptr()),
        };
        let at = out.ptr.add(tile.row * out.stride + tile.col);
        simd::store(&c, at, out.stride, tile.rows, tile.cols, tile.add);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn micro_kernel(_: Lanes, _: usize, _: &[u32], _: &[u32], _: Out, _: Tile) {
    unreachable!("the packed kernels are only chosen where `Lanes::available()`")
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
    /// B's packed panel kept per thread between calls, so that it is not allocated and faulted in per product.
    static PANEL: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The im2col lines of one panel ([`pack_window_lines`]).
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A left operand packed (and in bf16 rounded) once, for products that share it: a layer's weights, used per
/// image.
pub struct Packed {
    lanes: Lanes,
    m: usize,
    k: usize,
    /// k per block: equal blocks of at most [`KC_LANES`] lanes, whole lanes so that no pair straddles two.
    kc: usize,
    /// Per block of k, the panels of [`MR`] rows.
    blocks: Vec<Vec<u32>>,
}

impl Packed {
    /// # Panics
    /// Where this CPU lacks the format ([`Lanes::available`]).
    pub fn new(a: Mat, lanes: Lanes) -> Self {
        assert!(
            lanes.available(),
            "{lanes:?} products need AVX-512 (and AVX512-BF16 for bf16)"
        );
        let ((m, k), (rs, cs), p) = (a.shape(), a.strides(), per_lane(lanes));
        let most = KC_LANES * p;
        let kc = k.div_ceil(k.div_ceil(most).max(1)).next_multiple_of(p).max(p);
        let blocks = (0..k)
            .step_by(kc)
            .map(|k0| {
                let (mut panels, k1) = (Vec::new(), (k0 + kc).min(k));
                match lanes {
                    Lanes::F32 => pack::<1>(a.data, rs, cs, 0..m, k0, k1, MR, &mut panels),
                    Lanes::Bf16 => pack::<2>(a.data, rs, cs, 0..m, k0, k1, MR, &mut panels),
                }
                panels
            })
            .collect();
        Self {
            lanes,
            m,
            k,
            kc,
            blocks,
        }
    }

    pub fn lanes(&self) -> Lanes {
        self.lanes
    }

    /// m, the rows of the operand.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]` in the packed format of `a`, `dst` row-major `dst_stride` apart; adds to
/// `dst` when `accumulate`. Splits B's panels over the threads when `parallel`.
pub fn matmul(dst: &mut [f32], dst_stride: usize, a: &Packed, b: Mat, accumulate: bool, parallel: bool) {
    let ((k, n), (rs, cs)) = (b.shape(), b.strides());
    assert_eq!(a.k, k);
    let pack_b = |cols: Range<usize>, k0, k1, out: &mut Vec<u32>| match a.lanes {
        Lanes::F32 => pack::<1>(b.data, cs, rs, cols, k0, k1, NR, out),
        Lanes::Bf16 => pack::<2>(b.data, cs, rs, cols, k0, k1, NR, out),
    };
    matmul_with(dst, dst_stride, a, n, pack_b, accumulate, parallel);
}

/// [`matmul`] with B given by its packer: `pack_b(columns, k0, k1, out)` writes the panel of those columns (at
/// most [`NR`]) over k in `k0..k1` in `a`'s format, `[k lane][NR lanes]`, zero beyond the matrix.
pub fn matmul_with(
    dst: &mut [f32],
    dst_stride: usize,
    a: &Packed,
    n: usize,
    pack_b: impl Fn(Range<usize>, usize, usize, &mut Vec<u32>) + Sync,
    accumulate: bool,
    parallel: bool,
) {
    let panel = panels(|cols, k0, k1, out| {
        pack_b(cols, k0, k1, out);
        &out[..]
    });
    matmul_panels(dst, dst_stride, a, n, panel, accumulate, parallel);
}

/// [`matmul`] of an f32 `a` with a B already packed: `b` holds its panels of [`NR`] columns one after the other,
/// each as `[k][NR]` over the whole of k (the last panel's lanes beyond `n` are never stored, whatever they hold).
pub fn matmul_prepacked(
    dst: &mut [f32],
    dst_stride: usize,
    a: &Packed,
    n: usize,
    b: &[f32],
    accumulate: bool,
    parallel: bool,
) {
    assert!(a.lanes == Lanes::F32 && b.len() >= n.div_ceil(NR) * a.k * NR);
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a u32.
    let b: &[u32] = unsafe { std::slice::from_raw_parts(b.as_ptr().cast(), b.len()) };
    let panel = panels(|cols, k0, k1, _| &b[(cols.start / NR * a.k + k0) * NR..][..(k1 - k0) * NR]);
    matmul_panels(dst, dst_stride, a, n, panel, accumulate, parallel);
}

/// Fixes a panel source's signature: `panel(columns, k0, k1, buffer)` is the B panel of those columns over k in
/// `k0..k1`, packed into `buffer` or borrowed from elsewhere.
fn panels<F>(f: F) -> F
where
    F: for<'b> Fn(Range<usize>, usize, usize, &'b mut Vec<u32>) -> &'b [u32] + Sync,
{
    f
}

/// The product over the B panels that `panel` gives (see [`panels`]).
fn matmul_panels(
    dst: &mut [f32],
    dst_stride: usize,
    a: &Packed,
    n: usize,
    panel_of: impl for<'b> Fn(Range<usize>, usize, usize, &'b mut Vec<u32>) -> &'b [u32] + Sync,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, p) = (a.m, a.k, per_lane(a.lanes));
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
    for (k0, packed_a) in (0..k).step_by(a.kc).zip(&a.blocks) {
        let k1 = (k0 + a.kc).min(k);
        let depth = (k1 - k0).div_ceil(p);
        let add = accumulate || k0 > 0;
        let panel = |j0: usize, buf: &mut Vec<u32>| {
            let cols = NR.min(n - j0);
            let packed_b = panel_of(j0..j0 + cols, k0, k1, buf);
            debug_assert_eq!(packed_b.len(), depth * NR);
            for (ip, ap) in packed_a.chunks_exact(depth * MR).enumerate() {
                let tile = Tile {
                    row: ip * MR,
                    rows: MR.min(m - ip * MR),
                    col: j0,
                    cols,
                    add,
                };
                // SAFETY: the format is available (`Packed::new` asserted it); the panels hold `depth` lanes of
                // MR and NR; the tile's rows (< m) and columns (j0..j0 + cols ≤ n) lie inside `dst` (asserted
                // above), and this thread alone writes these columns.
                unsafe { micro_kernel(a.lanes, depth, ap, packed_b, out, tile) };
            }
        };
        let starts = (0..n).step_by(NR);
        if parallel {
            starts
                .collect::<Vec<_>>()
                .into_par_iter()
                .for_each_init(Vec::new, |buf, j0| panel(j0, buf));
        } else {
            PANEL.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => starts.for_each(|j0| panel(j0, &mut buf)),
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

    /// The product in f64 of the operands as the format holds them (bf16-rounded for bf16).
    fn reference(a: &Mat, b: &Mat, lanes: Lanes) -> Vec<f64> {
        let ((m, k), (_, n)) = (a.shape(), b.shape());
        let ((ars, acs), (brs, bcs)) = (a.strides(), b.strides());
        let q = |v: f32| match lanes {
            Lanes::F32 => v as f64,
            Lanes::Bf16 => bf16::widen(bf16::round(v)) as f64,
        };
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
    fn products_equal_the_held_operands_product_for_every_layout_and_edge() {
        let mut rng = crate::rng::stream(11, 0);
        for lanes in [Lanes::F32, Lanes::Bf16] {
            if !lanes.available() {
                eprintln!("{lanes:?} skipped: this CPU lacks it");
                continue;
            }
            // Edges of every kind: m and n off the tile, odd k, k across blocks, each operand transposed.
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
                    let want = reference(&a, &b, lanes);
                    let packed = Packed::new(a, lanes);
                    for (accumulate, parallel) in [(false, false), (true, true)] {
                        let stride = n + 3;
                        let mut dst = vec![0.5f32; m * stride];
                        matmul(&mut dst, stride, &packed, b, accumulate, parallel);
                        for i in 0..m {
                            for j in 0..stride {
                                let got = dst[i * stride + j] as f64;
                                let expect = match (j >= n, accumulate) {
                                    (true, _) => 0.5,
                                    (false, true) => want[i * n + j] + 0.5,
                                    (false, false) => want[i * n + j],
                                };
                                // f32 sums of k products: a few ulps of the sum of magnitudes.
                                let scale = (k as f64).sqrt() * 4.0 + 1.0;
                                assert!(
                                    (got - expect).abs() <= 1e-5 * scale,
                                    "{lanes:?} {m}×{k}×{n} t=({ta},{tb}) acc={accumulate} [{i},{j}]: {got} vs {expect}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn windows_pack_as_the_general_packer_does() {
        // A window row r reads src[start + t] under its mask: the same panel as packing the explicit matrix.
        let src = crate::rng::normals(&mut crate::rng::stream(5, 0), 200);
        let rows = 7;
        let window = |r: usize| match r {
            0 => (-4, 0xffff_fff0u32), // starts before `src`, masked off there
            _ => (r as isize * 21, 0xffff_fff0u32.rotate_left(r as u32 * 3)),
        };
        let mut explicit = vec![0f32; rows * NR];
        for r in 0..rows {
            let (start, mask) = window(r);
            for t in 0..NR {
                if mask >> t & 1 == 1 {
                    explicit[r * NR + t] = src[(start + t as isize) as usize];
                }
            }
        }
        for lanes in [Lanes::F32, Lanes::Bf16] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            pack_windows(lanes, &src, window, 0, rows, &mut a);
            match lanes {
                Lanes::F32 => pack::<1>(&explicit, 1, NR as isize, 0..NR, 0, rows, NR, &mut b),
                Lanes::Bf16 => pack::<2>(&explicit, 1, NR as isize, 0..NR, 0, rows, NR, &mut b),
            }
            assert_eq!(a, b, "{lanes:?}");
        }
    }
}
