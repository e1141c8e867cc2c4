//! How close a generated point cloud is to held-out points of the same shape: Chamfer distance, coverage and
//! fidelity at a radius, for the torus the spread of distances from its core circle (which says whether the
//! hole was learned), and for the letter A the share of points on its crossbar.

use crate::{Error, Result};
use serde::Serialize;

/// Within this distance a point counts as matched (5% of the shapes' extent of about 2).
pub const MATCH_RADIUS: f64 = 0.05;
/// The torus of `points:torus`: core circle radius (in the xy-plane) and tube radius.
pub const TORUS: (f64, f64) = (0.7, 0.3);
/// The crossbar of `points:letter`'s A: from (−0.3, 0) to (0.3, 0).
pub const CROSSBAR: [(f64, f64); 2] = [(-0.3, 0.0), (0.3, 0.0)];

/// Which shape-specific measure to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Torus,
    Letter,
    Other,
}

impl Shape {
    pub fn of(name: &str) -> Shape {
        match name {
            "torus" => Shape::Torus,
            "letter" => Shape::Letter,
            _ => Shape::Other,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated: usize,
    pub reference: usize,
    /// Mean distance from each generated point to its nearest reference point, plus the same the other way.
    pub chamfer: f64,
    /// Share of reference points with a generated point within [`MATCH_RADIUS`] (nothing of the shape missed).
    pub coverage: f64,
    /// Share of generated points with a reference point within [`MATCH_RADIUS`] (nothing off the shape).
    pub fidelity: f64,
    /// Torus only: the 10%, 50% and 90% quantiles of the distance to the core circle, and those of the
    /// reference points (uniform on the surface: all at the tube radius).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tube_quantiles: Option<[f64; 3]>,
    /// Letter only: the share of generated points within [`MATCH_RADIUS`] of the crossbar, and of the reference
    /// points (about 13% of the strokes' length, plus where the legs cross it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crossbar_share: Option<[f64; 2]>,
}

/// Distances from each point of `a` to its nearest point of `b` (`dims` coordinates each).
fn nearest(a: &[f32], b: &[f32], dims: usize) -> Vec<f64> {
    a.chunks(dims)
        .map(|p| {
            b.chunks(dims)
                .map(|q| p.iter().zip(q).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect()
}

/// The q-quantile of `v` (sorted in place), by linear interpolation.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let x = q * (v.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
}

/// Distance of a 3-D point from the torus's core circle.
fn from_core(p: &[f32]) -> f64 {
    let (x, y, z) = (p[0] as f64, p[1] as f64, p[2] as f64);
    ((x.hypot(y) - TORUS.0).powi(2) + z * z).sqrt()
}

/// Distance of a 2-D point from the letter's crossbar.
fn from_bar(p: &[f32]) -> f64 {
    let [(x0, y0), (x1, y1)] = CROSSBAR;
    let (x, y) = (p[0] as f64, p[1] as f64);
    let t = (((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0).powi(2) + (y1 - y0).powi(2))).clamp(0.0, 1.0);
    (x - (x0 + t * (x1 - x0))).hypot(y - (y0 + t * (y1 - y0)))
}

/// Compares `generated` with `reference` points, adding `shape`'s own measure.
pub fn compare(generated: &[f32], reference: &[f32], dims: usize, shape: Shape) -> Result<Report> {
    if dims == 0 || generated.is_empty() || reference.is_empty() || !generated.len().is_multiple_of(dims) {
        return Err(Error::Invalid("point clouds need points of the same dimension".into()));
    }
    let torus = shape == Shape::Torus;
    if (torus && dims != 3) || (shape == Shape::Letter && dims != 2) {
        return Err(Error::Invalid("the torus is 3-D and the letter 2-D".into()));
    }
    let to_ref = nearest(generated, reference, dims);
    let to_gen = nearest(reference, generated, dims);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let share = |v: &[f64]| v.iter().filter(|d| **d <= MATCH_RADIUS).count() as f64 / v.len() as f64;
    let tube_quantiles = torus.then(|| {
        let mut d: Vec<f64> = generated.chunks(3).map(from_core).collect();
        [0.1, 0.5, 0.9].map(|q| quantile(&mut d, q))
    });
    Ok(Report {
        generated: generated.len() / dims,
        reference: reference.len() / dims,
        chamfer: mean(&to_ref) + mean(&to_gen),
        coverage: share(&to_gen),
        fidelity: share(&to_ref),
        tube_quantiles,
        crossbar_share: (shape == Shape::Letter).then(|| {
            let on =
                |v: &[f32]| v.chunks(2).filter(|p| from_bar(p) <= MATCH_RADIUS).count() as f64 / (v.len() / 2) as f64;
            [on(generated), on(reference)]
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, points};

    #[test]
    fn a_cloud_against_itself_and_a_torus_without_its_hole() {
        let torus = points::load("torus", Split::Train).unwrap();
        let held = points::load("torus", Split::Test).unwrap();
        let a = &torus.images[..3 * 2000];
        let same = compare(a, a, 3, Shape::Torus).unwrap();
        assert_eq!((same.chamfer, same.coverage, same.fidelity), (0.0, 1.0, 1.0));
        // Points of the real torus are all at the tube radius from the core circle.
        let q = same.tube_quantiles.unwrap();
        assert!(q.iter().all(|d| (d - TORUS.1).abs() < 1e-6), "{q:?}");
        // Two independent draws of the shape: small distance, nearly full coverage.
        let other = compare(a, &held.images[..3 * 2000], 3, Shape::Torus).unwrap();
        assert!(
            other.chamfer < 0.1 && other.coverage > 0.8 && other.fidelity > 0.8,
            "{other:?}"
        );
        // A filled torus (points anywhere in the tube) keeps the core dense: its quantiles fall below 0.3.
        let filled: Vec<f32> = a
            .chunks(3)
            .enumerate()
            .flat_map(|(i, p)| {
                let s = ((i % 10) as f32 + 0.5) / 10.0; // 0.05 … 0.95 of the way out from the core
                let (r, c) = ((p[0] as f64).hypot(p[1] as f64), TORUS.0);
                let (x, y) = (p[0] as f64 / r, p[1] as f64 / r);
                let out = r - c;
                let (rr, z) = (c + s as f64 * out, s as f64 * p[2] as f64);
                [(x * rr) as f32, (y * rr) as f32, z as f32]
            })
            .collect();
        let f = compare(&filled, &held.images, 3, Shape::Torus).unwrap();
        assert!(f.tube_quantiles.unwrap()[1] < 0.2 && f.fidelity < 0.5, "{f:?}");
        assert!(compare(a, a, 2, Shape::Torus).is_err());
        // The letter's crossbar: its share of the real points, and none in a cloud of the legs alone.
        let letter = points::load("letter", Split::Train).unwrap();
        let r = compare(&letter.images, &letter.images, 2, Shape::Letter).unwrap();
        let [_, real] = r.crossbar_share.unwrap();
        assert!((0.12..0.2).contains(&real), "{real}");
        let legs: Vec<f32> = letter
            .images
            .chunks(2)
            .filter(|p| from_bar(p) > 0.1)
            .flatten()
            .copied()
            .collect();
        let no_bar = compare(&legs, &letter.images, 2, Shape::Letter).unwrap();
        assert_eq!(no_bar.crossbar_share.unwrap()[0], 0.0);
    }
}
