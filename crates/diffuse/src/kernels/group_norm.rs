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

/// Group statistics in f64 (exact enough for any group size), from a two-pass mean and variance.
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = lanes_sum(x, |v| v) / n;
    let m = mean as f32;
    let var = lanes_sum(x, |v| (v - m) * (v - m)) / n;
    (m, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// Σ f(x) with eight independent f32 accumulators (vectorised), each chunk's total added in f64.
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(4096) {
        let mut acc = [0f32; 8];
        let mut it = block.chunks_exact(8);
        for c in &mut it {
            for i in 0..8 {
                acc[i] += f(c[i]);
            }
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>();
        total += it.remainder().iter().map(|&v| f(v) as f64).sum::<f64>();
    }
    total
}

/// e^x for x in [−87, 88] without branches, so that loops over it vectorise: 2^n · p(r) with
/// x = n ln2 + r, |r| ≤ ln2/2, and p the degree-6 Taylor polynomial (relative error below 2e-7).
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

/// `y = GroupNorm(x)·γ + β`, then SiLU when `silu`.
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], s: GroupShape, eps: f32, silu: bool) -> Vec<f32> {
    assert_eq!(x.len(), s.len());
    let (per, cg) = (s.per_group(), s.channels / s.groups);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .enumerate()
        .with_min_len(4)
        .for_each(|(i, (yg, xg))| {
            let (mean, rstd) = stats(xg, eps);
            let c0 = (i % s.groups) * cg;
            for (j, (yc, xc)) in yg.chunks_mut(s.spatial).zip(xg.chunks(s.spatial)).enumerate() {
                let scale = rstd * gamma[c0 + j];
                let shift = beta[c0 + j] - mean * scale;
                if silu {
                    yc.iter_mut().zip(xc).for_each(|(o, &v)| {
                        let z = v * scale + shift;
                        *o = z * sigmoid(z);
                    });
                } else {
                    yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * scale + shift);
                }
            }
        });
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
    let (per, cg) = (s.per_group(), s.channels / s.groups);
    let mut dx = vec![0f32; x.len()];
    // Per-(image, channel) partial sums of ∂L/∂γ and ∂L/∂β, added over the batch in a fixed order afterwards so
    // that results do not depend on the thread count.
    let mut dgamma_b = vec![0f32; s.batch * s.channels];
    let mut dbeta_b = vec![0f32; s.batch * s.channels];
    dx.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .zip(dy.par_chunks(per))
        .zip(dgamma_b.par_chunks_mut(cg).zip(dbeta_b.par_chunks_mut(cg)))
        .enumerate()
        .with_min_len(4)
        .for_each(|(i, (((dxg, xg), dyg), (dgs, dbs)))| {
            let (mean, rstd) = stats(xg, eps);
            let c0 = (i % s.groups) * cg;
            let (mut sum_d, mut sum_dx) = (0f64, 0f64);
            // Pass 1: ∂L/∂z into dx, with the channel sums.
            for j in 0..cg {
                let (g, b) = (gamma[c0 + j], beta[c0 + j]);
                let range = j * s.spatial..(j + 1) * s.spatial;
                let (xc, dyc, dzc) = (&xg[range.clone()], &dyg[range.clone()], &mut dxg[range]);
                dzc.iter_mut().zip(xc.iter().zip(dyc)).for_each(|(o, (&v, &d))| {
                    *o = if silu {
                        let z = ((v - mean) * rstd) * g + b;
                        let sg = sigmoid(z);
                        d * sg * (1.0 + z * (1.0 - sg))
                    } else {
                        d
                    };
                });
                let dz_sum = lanes_sum(dzc, |v| v);
                let mut acc = [0f32; 8];
                let mut tail = 0f64;
                let mut pairs = dzc.chunks_exact(8).zip(xc.chunks_exact(8));
                for (dz8, x8) in &mut pairs {
                    for k in 0..8 {
                        acc[k] += dz8[k] * ((x8[k] - mean) * rstd);
                    }
                }
                let rem = dzc.len() - dzc.len() % 8;
                for (dz, v) in dzc[rem..].iter().zip(&xc[rem..]) {
                    tail += (dz * ((v - mean) * rstd)) as f64;
                }
                let dzx_sum = acc.iter().map(|&a| a as f64).sum::<f64>() + tail;
                dbs[j] = dz_sum as f32;
                dgs[j] = dzx_sum as f32;
                sum_d += g as f64 * dz_sum;
                sum_dx += g as f64 * dzx_sum;
            }
            // Pass 2: ∂L/∂x in place.
            let n = per as f64;
            let (a, b) = ((sum_d / n) as f32, (sum_dx / n) as f32);
            for j in 0..cg {
                let g = gamma[c0 + j];
                let range = j * s.spatial..(j + 1) * s.spatial;
                dxg[range.clone()].iter_mut().zip(&xg[range]).for_each(|(o, &v)| {
                    let xh = (v - mean) * rstd;
                    *o = rstd * (g * *o - a - xh * b);
                });
            }
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
