//! Seeded randomness. Every image has its own stream, derived from (seed, index), so that image i is the
//! same whether 1 or 64 images are drawn, and training step k draws the same batch after a resume.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// SplitMix64 finaliser: spreads (seed, index) pairs into unrelated stream seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for stream `index` of `seed`.
pub fn stream(seed: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(seed) ^ index))
}

/// `n` standard normal values from `rng`.
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// One standard normal block of `per_item` values from each stream, concatenated in stream order.
pub fn normals_per_stream(streams: &mut [ChaCha8Rng], per_item: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(streams.len() * per_item);
    for s in streams {
        out.extend(normals(s, per_item));
    }
    out
}

/// Value `i` of SplitMix64 stream `seed`: the generator with which the parity fixtures
/// (`scripts/make_*_fixture.py`) describe inputs that the tests regenerate instead of storing.
#[cfg(test)]
pub(crate) fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_is_the_published_generator() {
        assert_eq!(splitmix64(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(1, 0), 0x910a_2dec_8902_5cc1);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = normals(&mut stream(7, 0), 16);
        assert_eq!(a, normals(&mut stream(7, 0), 16));
        assert_ne!(a, normals(&mut stream(7, 1), 16));
        assert_ne!(a, normals(&mut stream(8, 0), 16));
    }

    #[test]
    fn normals_have_unit_moments() {
        let v = normals(&mut stream(1, 2), 200_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "{mean} {var}");
    }
}
