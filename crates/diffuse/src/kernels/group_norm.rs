//! GroupNorm (Wu & He 2018), optionally followed by SiLU, over contiguous NCHW `f32` slices: two parallel
//! passes forward and two backward, where burn composes about nine single-threaded passes forward and
//! fifteen backward (docs/perf-profile.md §3).
//!
//! With x̂ = (x − μ_g)·r_g, r_g = 1/√(σ²_g + ε), z = γ_c x̂ + β_c and y = z·σ(z) (or y = z):
//! ∂L/∂z = ∂L/∂y · σ(z)(1 + z(1 − σ(z))), ∂L/∂β_c = Σ ∂L/∂z, ∂L/∂γ_c = Σ ∂L/∂z·x̂, and with
//! d = γ_c ∂L/∂z, ∂L/∂x = r_g (d − mean_g(d) − x̂·mean_g(d·x̂)).

use rayon::prelude::*;

/// The shape of one GroupNorm call: `[batch, channels, spatial]` with `channels` split into `groups`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
    pub groups: usize,
}

impl GroupShape {
    fn per_group(&self) -> usize {
        self.channels / self.groups * self.spatial
    }

    fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }
}

/// Group mean and 1/√(variance + ε) from passes over the group (it is in cache by then): the mean m, then the
/// deviations d = x − m and their squares; Σd corrects both for what m lost to rounding when |mean| ≫ std.
#[inline(always)]
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    let m = (lanes_sum(x, |v| v) / n) as f32;
    let d = lanes_sum(x, |v| v - m) / n;
    let var = (lanes_sum(x, |v| (v - m) * (v - m)) / n - d * d).max(0.0);
    ((m as f64 + d) as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// Σ f(x) in f64, as [`lanes_sum2`] over one slice.
#[inline(always)]
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    lanes_sum2(x, x, |v, _| f(v))
}

/// Σ f(a, b) over two equally long slices, with eight independent f32 accumulators (so that it vectorises)
/// per 4096-element block, the blocks' totals added in f64.
#[inline(always)]
fn lanes_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut total = 0f64;
    for (ab, bb) in a.chunks(4096).zip(b.chunks(4096)) {
        let mut acc = [0f32; 8];
        for (a8, b8) in ab.chunks_exact(8).zip(bb.chunks_exact(8)) {
            for k in 0..8 {
                acc[k] += f(a8[k], b8[k]);
            }
        }
        let rem = ab.len() - ab.len() % 8;
        total += acc.iter().map(|&v| v as f64).sum::<f64>();
        total += ab[rem..]
            .iter()
            .zip(&bb[rem..])
            .map(|(&p, &q)| f(p, q) as f64)
            .sum::<f64>();
    }
    total
}

/// e^x for x in [−87, 88] without branches, so that loops over it vectorise: 2^n · p(r) with
/// x = n ln2 + r, |r| ≤ ln2/2, and p the degree-6 Taylor polynomial (relative error below 3e-7, tested).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let k = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4; // ln2 split in two for an exact n·ln2
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k + 127) << 23) as u32)
}

#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Per-group parameters shared by the forward and backward bodies.
#[derive(Clone, Copy)]
struct Group<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    spatial: usize,
    eps: f32,
    silu: bool,
}

/// One group's forward pass.
#[inline(always)]
fn forward_group(g: Group, xg: &[f32], yg: &mut [f32]) {
    let (mean, rstd) = stats(xg, g.eps);
    for (j, (yc, xc)) in yg.chunks_mut(g.spatial).zip(xg.chunks(g.spatial)).enumerate() {
        let scale = rstd * g.gamma[j];
        let shift = g.beta[j] - mean * scale;
        if g.silu {
            yc.iter_mut().zip(xc).for_each(|(o, &v)| {
                let z = v * scale + shift;
                *o = z * sigmoid(z);
            });
        } else {
            yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * scale + shift);
        }
    }
}

/// One group's backward pass: ∂L/∂x into `dxg`, the per-channel sums of ∂L/∂γ and ∂L/∂β into `dgs`, `dbs`.
#[inline(always)]
fn backward_group(g: Group, xg: &[f32], dyg: &[f32], dxg: &mut [f32], dgs: &mut [f32], dbs: &mut [f32]) {
    let (mean, rstd) = stats(xg, g.eps);
    let (mut sum_d, mut sum_dx) = (0f64, 0f64);
    // Pass 1: ∂L/∂z into dx, with the channel sums.
    for j in 0..g.gamma.len() {
        let (gj, bj) = (g.gamma[j], g.beta[j]);
        let range = j * g.spatial..(j + 1) * g.spatial;
        let (xc, dyc, dzc) = (&xg[range.clone()], &dyg[range.clone()], &mut dxg[range]);
        dzc.iter_mut().zip(xc.iter().zip(dyc)).for_each(|(o, (&v, &d))| {
            *o = if g.silu {
                let z = ((v - mean) * rstd) * gj + bj;
                let sg = sigmoid(z);
                d * sg * (1.0 + z * (1.0 - sg))
            } else {
                d
            };
        });
        let dz_sum = lanes_sum(dzc, |v| v);
        let dzx_sum = lanes_sum2(dzc, xc, |dz, v| dz * ((v - mean) * rstd));
        dbs[j] = dz_sum as f32;
        dgs[j] = dzx_sum as f32;
        sum_d += gj as f64 * dz_sum;
        sum_dx += gj as f64 * dzx_sum;
    }
    // Pass 2: ∂L/∂x in place.
    let n = xg.len() as f64;
    let (a, b) = ((sum_d / n) as f32, (sum_dx / n) as f32);
    for (j, &gj) in g.gamma.iter().enumerate() {
        let range = j * g.spatial..(j + 1) * g.spatial;
        dxg[range.clone()].iter_mut().zip(&xg[range]).for_each(|(o, &v)| {
            let xh = (v - mean) * rstd;
            *o = rstd * (gj * *o - a - xh * b);
        });
    }
}

multiversion! {
    fn forward_group_isa(g: Group, xg: &[f32], yg: &mut [f32]) { forward_group(g, xg, yg) }
}

multiversion! {
    fn backward_group_isa(g: Group, xg: &[f32], dyg: &[f32], dxg: &mut [f32], dgs: &mut [f32], dbs: &mut [f32]) {
        backward_group(g, xg, dyg, dxg, dgs, dbs)
    }
}

/// The parameters of the group `i` (counting over the batch) of shape `s`.
fn group<'a>(s: &GroupShape, i: usize, gamma: &'a [f32], beta: &'a [f32], eps: f32, silu: bool) -> Group<'a> {
    let cg = s.channels / s.groups;
    let c0 = (i % s.groups) * cg;
    Group {
        gamma: &gamma[c0..c0 + cg],
        beta: &beta[c0..c0 + cg],
        spatial: s.spatial,
        eps,
        silu,
    }
}

/// `y = GroupNorm(x)·γ + β`, then SiLU when `silu`.
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], s: GroupShape, eps: f32, silu: bool) -> Vec<f32> {
    assert_eq!(x.len(), s.len());
    assert!(gamma.len() == s.channels && beta.len() == s.channels);
    let per = s.per_group();
    let mut y = vec![0f32; x.len()];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .enumerate()
        .with_min_len(4)
        .for_each(|(i, (yg, xg))| forward_group_isa(group(&s, i, gamma, beta, eps, silu), xg, yg));
    y
}

/// Gradients `(∂L/∂x, ∂L/∂γ, ∂L/∂β)` of [`forward`], recomputing the statistics from `x`.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    s: GroupShape,
    eps: f32,
    silu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.len());
    assert_eq!(dy.len(), s.len());
    assert!(gamma.len() == s.channels && beta.len() == s.channels);
    let (per, cg) = (s.per_group(), s.channels / s.groups);
    let mut dx = vec![0f32; x.len()];
    // Per-(image, channel) partial sums of ∂L/∂γ and ∂L/∂β, added over the batch in a fixed order afterwards so
    // that results do not depend on the thread count.
    let mut dgamma_b = vec![0f32; s.batch * s.channels];
    let mut dbeta_b = vec![0f32; s.batch * s.channels];
    if dx.is_empty() {
        return (dx, vec![0.0; s.channels], vec![0.0; s.channels]);
    }
    dx.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .zip(dy.par_chunks(per))
        .zip(dgamma_b.par_chunks_mut(cg).zip(dbeta_b.par_chunks_mut(cg)))
        .enumerate()
        .with_min_len(4)
        .for_each(|(i, (((dxg, xg), dyg), (dgs, dbs)))| {
            backward_group_isa(group(&s, i, gamma, beta, eps, silu), xg, dyg, dxg, dgs, dbs)
        });
    let reduce = |per_image: Vec<f32>| -> Vec<f32> {
        let mut out = vec![0f32; s.channels];
        for row in per_image.chunks(s.channels) {
            out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
        }
        out
    };
    (dx, reduce(dgamma_b), reduce(dbeta_b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_groups_whose_mean_dwarfs_their_spread() {
        let s = GroupShape {
            batch: 2,
            channels: 4,
            spatial: 3000,
            groups: 2,
        };
        let noise = crate::rng::normals(&mut crate::rng::stream(5, 0), s.len());
        let x: Vec<f32> = noise.iter().map(|v| 1e4 + v).collect();
        let y = forward(&x, &[1.0; 4], &[0.0; 4], s, 1e-5, false);
        for (yg, ng) in y.chunks(s.per_group()).zip(noise.chunks(s.per_group())) {
            // The exact answer, from the noise alone in f64.
            let n = ng.len() as f64;
            let mean = ng.iter().map(|&v| v as f64).sum::<f64>() / n;
            let std = (ng.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            for (&o, &v) in yg.iter().zip(ng) {
                let want = (v as f64 - mean) / std;
                // x itself holds 1e4 + v in f32, so v is only known to about 1e-3.
                assert!((o as f64 - want).abs() < 5e-3, "{o} vs {want}");
            }
        }
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "{worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(sigmoid(1000.0) == 1.0 && sigmoid(-1000.0) < 1e-37);
    }
}
