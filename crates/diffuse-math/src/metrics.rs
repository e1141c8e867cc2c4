//! Sample-quality statistics over feature vectors, in f64: the Fréchet distance between the Gaussians
//! fitted to two feature sets (FID when the features are Inception's pool3, Heusel et al. 2017) and the
//! Inception-style score exp E[KL(p(y|x) ‖ p(y))] of a classifier's probabilities (Salimans et al. 2016),
//! KID, improved precision and recall; PSNR and SSIM for reconstructions.

use faer::{Mat, Side};
use nalgebra::{DMatrix, DVector};

/// The mean and covariance (unbiased, n − 1) of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub mean: DVector<f64>,
    pub cov: DMatrix<f64>,
}

impl Moments {
    /// Moments of `rows`, each a feature vector of the same length; needs at least two rows.
    pub fn of(rows: &[Vec<f64>]) -> Option<Moments> {
        let n = rows.len();
        let d = rows.first()?.len();
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let mean = DVector::from_fn(d, |j, _| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64);
        let centred = Mat::from_fn(n, d, |i, j| rows[i][j] - mean[j]);
        let cov = centred.transpose() * &centred;
        let cov = DMatrix::from_fn(d, d, |i, j| cov[(i, j)] / (n - 1) as f64);
        Some(Moments { n, mean, cov })
    }
}

/// d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½. The symmetric form has the same trace as
/// (Σ₁Σ₂)^½ and is PSD, so a symmetric eigensolver gives it without the complex parts that the general
/// square root of Σ₁Σ₂ picks up from rounding.
pub fn frechet_distance(a: &Moments, b: &Moments) -> f64 {
    assert_eq!(a.mean.len(), b.mean.len(), "feature dimensions differ");
    let cross = trace_sqrt_product(&to_faer(&a.cov), &to_faer(&b.cov));
    let d = (&a.mean - &b.mean).norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
    d.max(0.0)
}

/// tr (Σ₁^½ Σ₂ Σ₁^½)^½ with one full eigendecomposition. With Σ₁ = U S Uᵀ and W = U S^½,
/// Σ₁^½ Σ₂ Σ₁^½ = U (Wᵀ Σ₂ W) Uᵀ, so its eigenvalues are those of the symmetric Wᵀ Σ₂ W, and the trace of the
/// root needs only them. Eigenvalues that rounding made slightly negative count as zero. faer's blocked,
/// threaded solver does the 2048² decompositions of FID in about a second where nalgebra's took ~20 s.
fn trace_sqrt_product(s1: &Mat<f64>, s2: &Mat<f64>) -> f64 {
    let n = s1.nrows();
    let eig = s1
        .self_adjoint_eigen(Side::Lower)
        .expect("the symmetric eigensolver converges on a finite covariance");
    let (u, s) = (eig.U(), eig.S().column_vector());
    let w = Mat::from_fn(n, n, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let inner = w.transpose() * s2 * &w;
    let inner = Mat::from_fn(n, n, |i, j| 0.5 * (inner[(i, j)] + inner[(j, i)]));
    inner
        .self_adjoint_eigenvalues(Side::Lower)
        .expect("the symmetric eigensolver converges on a finite matrix")
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum()
}

fn to_faer(m: &DMatrix<f64>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)])
}

/// exp of the mean KL divergence between each row of class probabilities and their average: 1 when every
/// image gets the same distribution, k when each is confidently one of k equally frequent classes.
pub fn inception_score(probs: &[Vec<f64>]) -> f64 {
    let Some(k) = probs.first().map(Vec::len) else {
        return f64::NAN;
    };
    let n = probs.len() as f64;
    let marginal: Vec<f64> = (0..k).map(|j| probs.iter().map(|p| p[j]).sum::<f64>() / n).collect();
    let kl = |p: &[f64]| -> f64 {
        p.iter()
            .zip(&marginal)
            .filter(|(pj, _)| **pj > 0.0)
            .map(|(pj, mj)| pj * (pj / mj).ln())
            .sum()
    };
    (probs.iter().map(|p| kl(p)).sum::<f64>() / n).exp()
}

/// Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² between two feature sets under the
/// polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over `subsets` random pairs of subsets of `size` rows
/// (the whole smaller set when it has fewer). Returns (mean, standard deviation over subsets). Subsets come from
/// a SplitMix64 stream of `seed`, so the value is reproducible.
pub fn kid(a: &[Vec<f64>], b: &[Vec<f64>], subsets: usize, size: usize, seed: u64) -> (f64, f64) {
    let m = size.min(a.len()).min(b.len());
    assert!(m >= 2 && subsets >= 1, "KID needs two rows per set and one subset");
    let d = a[0].len() as f64;
    let k = |x: &[f64], y: &[f64]| (x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / d + 1.0).powi(3);
    let mut state = seed;
    let mut pick = |n: usize| -> Vec<usize> {
        // A partial Fisher–Yates shuffle with SplitMix64 draws.
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..m {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let j = i + (z % (n - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(m);
        idx
    };
    let values: Vec<f64> = (0..subsets)
        .map(|_| {
            let (x, y) = (pick(a.len()), pick(b.len()));
            let within = |s: &[usize], rows: &[Vec<f64>]| {
                let mut t = 0.0;
                for (i, &p) in s.iter().enumerate() {
                    for &q in &s[i + 1..] {
                        t += 2.0 * k(&rows[p], &rows[q]);
                    }
                }
                t / (m * (m - 1)) as f64
            };
            let cross: f64 = x
                .iter()
                .flat_map(|&p| y.iter().map(move |&q| (p, q)))
                .map(|(p, q)| k(&a[p], &b[q]))
                .sum();
            within(&x, a) + within(&y, b) - 2.0 * cross / (m * m) as f64
        })
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, std)
}

/// Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls: precision is the
/// share of `fake` rows inside some `real` row's ball (radius: distance to its k-th nearest real neighbour),
/// recall the share of `real` rows inside some fake row's ball. Returns (precision, recall).
pub fn precision_recall(real: &[Vec<f64>], fake: &[Vec<f64>], k: usize) -> (f64, f64) {
    let dist = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| (p - q).powi(2)).sum::<f64>().sqrt();
    let radii = |set: &[Vec<f64>]| -> Vec<f64> {
        set.iter()
            .map(|x| {
                let mut d: Vec<f64> = set.iter().map(|y| dist(x, y)).collect();
                d.sort_by(f64::total_cmp);
                d[k.min(d.len() - 1)] // d[0] is the point itself
            })
            .collect()
    };
    let covered = |manifold: &[Vec<f64>], r: &[f64], probes: &[Vec<f64>]| {
        probes
            .iter()
            .filter(|p| manifold.iter().zip(r).any(|(m, &rad)| dist(p, m) <= rad))
            .count() as f64
            / probes.len().max(1) as f64
    };
    (covered(real, &radii(real), fake), covered(fake, &radii(fake), real))
}

/// Peak signal-to-noise ratio in dB of a mean squared error, for pixels in [0, 1].
pub fn psnr(mse: f64) -> f64 {
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// Structural similarity (Wang et al. 2004) of two single-channel images in [0, 1] (h × w, row-major):
/// Gaussian window of σ 1.5 and size 11 (smaller images: their smaller side), positions where the window fits,
/// C₁ = 0.01², C₂ = 0.03².
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    assert!(a.len() == h * w && b.len() == h * w, "images must be h × w");
    let k = 11.min(h).min(w);
    let g: Vec<f64> = (0..k)
        .map(|i| (-((i as f64 - (k - 1) as f64 / 2.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let total: f64 = g.iter().sum::<f64>().powi(2);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut sum = 0.0;
    let positions = (h - k + 1) * (w - k + 1);
    for y in 0..=h - k {
        for x in 0..=w - k {
            let (mut ma, mut mb, mut aa, mut bb, mut ab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..k {
                for dx in 0..k {
                    let wt = g[dy] * g[dx] / total;
                    let (p, q) = (a[(y + dy) * w + x + dx], b[(y + dy) * w + x + dx]);
                    ma += wt * p;
                    mb += wt * q;
                    aa += wt * p * p;
                    bb += wt * q * q;
                    ab += wt * p * q;
                }
            }
            let (va, vb, cov) = (aa - ma * ma, bb - mb * mb, ab - ma * mb);
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        }
    }
    sum / positions as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows of `d` pseudo-normal values (sum of uniforms), shifted by `shift`.
    fn cloud(n: usize, d: usize, shift: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut s = seed;
        let mut u = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| (0..12).map(|_| u()).sum::<f64>() - 6.0 + shift)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn kid_is_unbiased_for_equal_distributions_and_grows_with_a_shift() {
        let (a, b) = (cloud(400, 8, 0.0, 1), cloud(400, 8, 0.0, 2));
        let (same, spread) = kid(&a, &b, 50, 100, 0);
        // Unbiased: centred on zero (a biased estimator would sit above it by about tr/m).
        assert!(same.abs() < 3.0 * spread / 50f64.sqrt() + 1e-3, "KID {same} ± {spread}");
        let (shifted, _) = kid(&a, &cloud(400, 8, 0.5, 3), 50, 100, 0);
        assert!(shifted > 20.0 * same.abs().max(1e-3), "shifted KID {shifted} vs {same}");
        assert_eq!(kid(&a, &b, 5, 50, 7), kid(&a, &b, 5, 50, 7), "reproducible");
    }

    #[test]
    fn precision_and_recall_see_fidelity_and_coverage_apart() {
        let real = cloud(200, 4, 0.0, 4);
        let (p, r) = precision_recall(&real, &cloud(200, 4, 0.0, 5), 3);
        assert!(p > 0.85 && r > 0.85, "same distribution: {p}, {r}");
        let (p, r) = precision_recall(&real, &cloud(200, 4, 20.0, 6), 3);
        assert_eq!((p, r), (0.0, 0.0), "far away");
        // Collapse onto a few real points: every sample is realistic, little of the data is covered.
        let collapsed: Vec<Vec<f64>> = (0..200).map(|i| real[i % 5].clone()).collect();
        let (p, r) = precision_recall(&real, &collapsed, 3);
        assert!(p == 1.0 && r < 0.3, "mode collapse: {p}, {r}");
    }

    #[test]
    fn ssim_and_psnr_closed_forms() {
        let img: Vec<f64> = (0..32 * 32).map(|i| ((i * 37 % 101) as f64) / 100.0).collect();
        assert!((ssim(&img, &img, 32, 32) - 1.0).abs() < 1e-12);
        // Two constant images: only the luminance term is left, (2ab + C₁)/(a² + b² + C₁).
        let (a, b) = (vec![0.2; 64], vec![0.7; 64]);
        let c1 = 1e-4;
        let want = (2.0 * 0.2 * 0.7 + c1) / (0.04 + 0.49 + c1);
        assert!((ssim(&a, &b, 8, 8) - want).abs() < 1e-12);
        // A negated pattern around 0.5 has the same means and variances, and correlation −1.
        let neg: Vec<f64> = img.iter().map(|v| 1.0 - v).collect();
        assert!(ssim(&img, &neg, 32, 32) < -0.5);
        assert!((psnr(0.01) - 20.0).abs() < 1e-12);
    }

    fn moments(mean: &[f64], cov: &[f64]) -> Moments {
        let d = mean.len();
        Moments {
            n: 0,
            mean: DVector::from_column_slice(mean),
            cov: DMatrix::from_row_slice(d, d, cov),
        }
    }

    #[test]
    fn trace_of_the_root_of_the_product_has_its_closed_forms() {
        let m = |d: usize, v: &[f64]| to_faer(&DMatrix::from_row_slice(d, d, v));
        // Commuting diagonals: tr (S₁S₂)^½ = Σ √(s₁s₂).
        let t = trace_sqrt_product(&m(2, &[4.0, 0.0, 0.0, 9.0]), &m(2, &[1.0, 0.0, 0.0, 4.0]));
        assert!((t - (2.0 + 6.0)).abs() < 1e-12, "{t}");
        // Σ₂ = Σ₁⁻¹: the product is I, its root's trace is the dimension.
        let t = trace_sqrt_product(
            &m(2, &[2.0, 1.0, 1.0, 2.0]),
            &m(2, &[2.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0, 2.0 / 3.0]),
        );
        assert!((t - 2.0).abs() < 1e-12, "{t}");
        // Rank one (fewer items than dimensions): Σ₁ = vvᵀ gives tr (Σ₁Σ₂)^½ = √(vᵀΣ₂v), finite. The null
        // space's eigenvalues are zero only to rounding (~1e-16), and their roots (~1e-8) add up, as in any
        // square-root-based FID.
        let v = [1.0, 2.0, 2.0];
        let s1 = m(3, &[1.0, 2.0, 2.0, 2.0, 4.0, 4.0, 2.0, 4.0, 4.0]);
        let s2v = [3.0, 1.0, 0.0, 1.0, 2.0, 0.5, 0.0, 0.5, 1.0];
        let quad: f64 = (0..3)
            .map(|i| (0..3).map(|j| v[i] * s2v[i * 3 + j] * v[j]).sum::<f64>())
            .sum();
        let t = trace_sqrt_product(&s1, &m(3, &s2v));
        assert!((t - quad.sqrt()).abs() < 1e-7, "{t} vs {}", quad.sqrt());
    }

    #[test]
    fn frechet_distance_has_its_closed_forms() {
        // One dimension: (μ₁ − μ₂)² + (s₁ − s₂)².
        let d = frechet_distance(&moments(&[1.0], &[4.0]), &moments(&[-2.0], &[0.25]));
        assert!((d - (9.0 + 1.5f64.powi(2))).abs() < 1e-12, "{d}");
        // Non-commuting 2×2 covariances: tr √M = √(tr M + 2 √det M) for 2×2 PSD M, and
        // tr (Σ₁^½Σ₂Σ₁^½)^½ = tr (Σ₁Σ₂)^½ with det(Σ₁Σ₂) = det Σ₁ det Σ₂.
        let (s1, s2) = ([2.0, 0.5, 0.5, 1.0], [1.0, -0.3, -0.3, 3.0]);
        let (a, b) = (moments(&[0.0, 1.0], &s1), moments(&[1.0, 1.0], &s2));
        let tr_prod = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
        let det = (s1[0] * s1[3] - s1[1] * s1[2]) * (s2[0] * s2[3] - s2[1] * s2[2]);
        let want = 1.0 + 3.0 + 4.0 - 2.0 * (tr_prod + 2.0 * det.sqrt()).sqrt();
        assert!((frechet_distance(&a, &b) - want).abs() < 1e-12);
        assert!((frechet_distance(&b, &a) - want).abs() < 1e-12, "symmetric");
        assert!(frechet_distance(&a, &a) < 1e-12);
    }

    #[test]
    fn moments_are_the_unbiased_estimates_and_a_set_is_at_distance_zero_from_itself() {
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![(i as f64 * 0.37).sin(), (i as f64 * 0.11).cos() * 2.0, (i % 7) as f64])
            .collect();
        let m = Moments::of(&rows).unwrap();
        let mean0 = rows.iter().map(|r| r[0]).sum::<f64>() / 50.0;
        let var0 = rows.iter().map(|r| (r[0] - mean0).powi(2)).sum::<f64>() / 49.0;
        assert!((m.mean[0] - mean0).abs() < 1e-12 && (m.cov[(0, 0)] - var0).abs() < 1e-12);
        assert!(frechet_distance(&m, &m) < 1e-9);
        assert!(Moments::of(&rows[..1]).is_none() && Moments::of(&[vec![1.0], vec![1.0, 2.0]]).is_none());
    }

    #[test]
    fn inception_score_bounds() {
        let one_hot = |k: usize| (0..4).map(|j| (j == k) as u8 as f64).collect::<Vec<_>>();
        let confident: Vec<_> = (0..40).map(|i| one_hot(i % 4)).collect();
        assert!((inception_score(&confident) - 4.0).abs() < 1e-12);
        let collapsed: Vec<_> = (0..40).map(|_| one_hot(2)).collect();
        assert!((inception_score(&collapsed) - 1.0).abs() < 1e-12);
        let unsure: Vec<_> = (0..40).map(|_| vec![0.25; 4]).collect();
        assert!((inception_score(&unsure) - 1.0).abs() < 1e-12);
    }
}
