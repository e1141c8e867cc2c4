//! k-space sampling masks for MRI-style reconstruction, in the DFT's index order (DC at 0, negative
//! frequencies at the end), always symmetric under k → −k so that the samples of a real image's transform
//! are real information (the Hartley samples on the same mask).
//!
//! - `random`: Cartesian undersampling, whole columns (phase-encoding lines), a fully sampled centre of
//!   0.32/A of the columns (fastMRI's 8 % at 4×, 4 % at 8×; Zbontar et al. 2018) and the rest drawn at random;
//! - `radial`: spokes through the centre at equal angles, as many as reach the acceleration.

use crate::{Error, Result};
use nalgebra::DMatrix;
use rand::seq::SliceRandom;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Random,
    Radial,
}

crate::names::named!(Pattern, "k-space pattern", { Random => "random", Radial => "radial" });

/// The orthonormal DFT's real or imaginary matrix: f(2πkm/n)/√n, f = cos or sin.
pub fn dft(n: usize, f: fn(f64) -> f64) -> DMatrix<f64> {
    DMatrix::from_fn(n, n, |k, m| {
        f(std::f64::consts::TAU * ((k * m) % n) as f64 / n as f64) / (n as f64).sqrt()
    })
}

/// The signed frequency of DFT index i of n.
fn freq(i: usize, n: usize) -> i64 {
    if i <= n / 2 { i as i64 } else { i as i64 - n as i64 }
}

/// An h × w mask (1 sampled) of `pattern` keeping about 1/`accel` of k-space; random columns from `seed`.
pub fn mask(pattern: Pattern, h: usize, w: usize, accel: f64, seed: u64) -> Result<Vec<f64>> {
    let mut m = vec![0.0; h * w];
    match pattern {
        Pattern::Random => {
            let target = ((w as f64 / accel).round() as usize).clamp(1, w);
            // The centre: the nearest odd number of columns to 0.32/A of them, DC in the middle.
            let half_centre = ((0.32 / accel) * w as f64).round() as usize / 2;
            let mut cols: Vec<usize> = (0..w)
                .filter(|&i| freq(i, w).unsigned_abs() as usize <= half_centre)
                .collect();
            let mut rest: Vec<usize> = (1..=w / 2).filter(|&f| f > half_centre).collect();
            rest.shuffle(&mut crate::rng::stream(seed ^ MASK_STREAM, 0));
            // Nyquist (its own negative, one column) last, to even out an odd count after the pairs.
            rest.sort_by_key(|&f| (w - f) % w == f);
            // A frequency comes with its negative (but Nyquist's is itself): taken where it brings the count
            // closer to the target.
            for f in rest {
                let pair = if (w - f) % w != f { 2 } else { 1 };
                if (cols.len() + pair).abs_diff(target) < cols.len().abs_diff(target) {
                    cols.push(f);
                    if pair == 2 {
                        cols.push(w - f);
                    }
                }
            }
            for r in 0..h {
                for &c in &cols {
                    m[r * w + c] = 1.0;
                }
            }
        }
        Pattern::Radial => {
            // Polar coordinates of every frequency; a point is on a spoke when its distance r·sin δ to the
            // nearest of the s lines through the centre (δ its angle to it) is under half a sample.
            let polar: Vec<(f64, f64)> = (0..h * w)
                .map(|i| {
                    let (fy, fx) = (freq(i / w, h) as f64, freq(i % w, w) as f64);
                    (fy.hypot(fx), fy.atan2(fx))
                })
                .collect();
            let spokes = |s: usize| -> Vec<f64> {
                let gap = std::f64::consts::PI / s as f64;
                let mut m: Vec<f64> = polar
                    .iter()
                    .map(|&(r, phi)| {
                        let d = phi.rem_euclid(gap);
                        (r * d.min(gap - d).sin() < 0.5) as u8 as f64
                    })
                    .collect();
                symmetric(&mut m, h, w);
                m
            };
            let want = (h * w) as f64 / accel;
            let s = (1..=4 * h.max(w))
                .find(|&s| spokes(s).iter().sum::<f64>() >= want)
                .unwrap_or(4 * h.max(w));
            m = spokes(s);
        }
    }
    symmetric(&mut m, h, w);
    if m.iter().sum::<f64>() == 0.0 {
        return Err(Error::Invalid("the k-space mask samples nothing".into()));
    }
    Ok(m)
}

/// Samples −k wherever k is sampled.
fn symmetric(m: &mut [f64], h: usize, w: usize) {
    for i in 0..h * w {
        let j = ((h - i / w) % h) * w + (w - i % w) % w;
        if m[i] > 0.0 || m[j] > 0.0 {
            m[i] = 1.0;
            m[j] = 1.0;
        }
    }
}

const MASK_STREAM: u64 = 0x6d61_736b_0000_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_reach_their_acceleration_keep_the_centre_and_are_symmetric() {
        for (pattern, accel, seed) in [
            (Pattern::Random, 4.0, 0),
            (Pattern::Random, 8.0, 0),
            (Pattern::Random, 8.0, 1),
            (Pattern::Random, 8.0, 2),
            (Pattern::Random, 4.0, 3),
            (Pattern::Radial, 4.0, 0),
            (Pattern::Radial, 8.0, 0),
        ] {
            let (h, w) = (28, 28);
            let m = mask(pattern, h, w, accel, seed).unwrap();
            let got = (h * w) as f64 / m.iter().sum::<f64>();
            assert!(
                (got / accel - 1.0).abs() < 0.15,
                "{pattern}: acceleration {got} for {accel}"
            );
            assert_eq!(m[0], 1.0, "{pattern}: DC sampled");
            if (pattern, accel) == (Pattern::Random, 4.0) {
                // 0.32/4 of 28 columns is 2.24: the centre is the three columns −1, 0, 1, in every row.
                assert!(
                    (0..h).all(|r| m[r * w + 1] == 1.0 && m[r * w + w - 1] == 1.0),
                    "centre kept"
                );
            }
            for i in 0..h * w {
                let j = ((h - i / w) % h) * w + (w - i % w) % w;
                assert_eq!(m[i], m[j], "{pattern}: symmetric at {i}");
            }
        }
        assert_eq!(
            mask(Pattern::Random, 8, 8, 2.0, 1).unwrap(),
            mask(Pattern::Random, 8, 8, 2.0, 1).unwrap()
        );
        assert_ne!(
            mask(Pattern::Random, 32, 32, 4.0, 1).unwrap(),
            mask(Pattern::Random, 32, 32, 4.0, 2).unwrap()
        );
    }

    #[test]
    fn the_dft_matrices_make_an_orthogonal_hartley_transform() {
        let n = 6;
        let (c, s) = (dft(n, f64::cos), dft(n, f64::sin));
        let cas = &c + &s;
        let id = &cas * &cas;
        assert!(
            (id - DMatrix::<f64>::identity(n, n)).abs().max() < 1e-12,
            "cas is its own inverse"
        );
    }
}
