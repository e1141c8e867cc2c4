//! Point clouds as data sets: each point is a 1×1 "image" with one channel per coordinate, so that the
//! samplers, the training loop and the run format carry over unchanged. The shapes are generated from a
//! fixed seed: the same points on every machine.

use super::{Dataset, Split};
use crate::{Error, Result, rng};
use rand::Rng;
use std::f64::consts::PI;

pub const SHAPES: &str = "circle, sphere, torus, letter";
const COUNT: usize = 8192;

/// The points of `shape`, coordinates roughly in [−1, 1]. The test split is a second, independent draw.
pub fn load(shape: &str, split: Split) -> Result<Dataset> {
    let stream = match split {
        Split::Train | Split::All => 0,
        Split::Test => 1,
    };
    let mut r = rng::stream(0x9017_5e75, stream);
    let mut u = || r.random::<f64>();
    let (dim, points): (usize, Vec<Vec<f64>>) = match shape {
        "circle" => (
            2,
            (0..COUNT)
                .map(|_| {
                    let a = 2.0 * PI * u();
                    vec![a.cos(), a.sin()]
                })
                .collect(),
        ),
        "sphere" => (
            3,
            (0..COUNT)
                .map(|_| {
                    // Uniform on the sphere: z uniform in [−1, 1], longitude uniform.
                    let (z, a) = (2.0 * u() - 1.0, 2.0 * PI * u());
                    let rho = (1.0 - z * z).sqrt();
                    vec![rho * a.cos(), rho * a.sin(), z]
                })
                .collect(),
        ),
        "torus" => (
            3,
            (0..COUNT)
                .map(|_| {
                    let (a, b) = (2.0 * PI * u(), 2.0 * PI * u());
                    let (big, small) = (0.7, 0.3);
                    vec![
                        (big + small * b.cos()) * a.cos(),
                        (big + small * b.cos()) * a.sin(),
                        small * b.sin(),
                    ]
                })
                .collect(),
        ),
        "letter" => {
            // The letter A: two legs and a bar, points uniform along the strokes (by length).
            let strokes: [((f64, f64), (f64, f64)); 3] = [
                ((-0.6, -1.0), (0.0, 1.0)),
                ((0.0, 1.0), (0.6, -1.0)),
                ((-0.3, 0.0), (0.3, 0.0)),
            ];
            let lens: Vec<f64> = strokes
                .iter()
                .map(|((x0, y0), (x1, y1))| (x1 - x0).hypot(y1 - y0))
                .collect();
            let total: f64 = lens.iter().sum();
            (
                2,
                (0..COUNT)
                    .map(|_| {
                        let mut pick = u() * total;
                        let k = lens
                            .iter()
                            .position(|l| {
                                pick -= l;
                                pick < 0.0
                            })
                            .unwrap_or(2);
                        let ((x0, y0), (x1, y1)) = strokes[k];
                        let f = u();
                        vec![x0 + f * (x1 - x0), y0 + f * (y1 - y0)]
                    })
                    .collect(),
            )
        }
        _ => {
            return Err(Error::Data(format!(
                "unknown point shape '{shape}' (expected one of: {SHAPES})"
            )));
        }
    };
    Ok(Dataset {
        name: format!("points:{shape}"),
        channels: dim,
        height: 1,
        width: 1,
        images: points.iter().flatten().map(|&v| v as f32).collect(),
        labels: None,
        class_names: Vec::new(),
        captions: None,
    })
}

/// A point cloud (`dims` coordinates per point, 2 or 3) as an ASCII PLY file of vertices, which MeshLab, Blender
/// and Open3D read; 2-D clouds lie in the plane z = 0.
pub fn to_ply(values: &[f32], dims: usize) -> Result<String> {
    if !(2..=3).contains(&dims) || !values.len().is_multiple_of(dims) {
        return Err(Error::Invalid(format!(
            "a PLY cloud needs 2 or 3 coordinates per point, got {dims} for {} values",
            values.len()
        )));
    }
    let n = values.len() / dims;
    let mut out = format!(
        "ply\nformat ascii 1.0\ncomment made by diffuse\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    );
    for p in values.chunks(dims) {
        let z = if dims == 3 { p[2] } else { 0.0 };
        out.push_str(&format!("{} {} {}\n", p[0], p[1], z));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ply_files_hold_every_point() {
        let ply = to_ply(&[0.5, -1.0, 2.0, 0.25, 0.0, -0.5], 3).unwrap();
        let (header, body) = ply.split_once("end_header\n").unwrap();
        assert!(header.starts_with("ply\nformat ascii 1.0\n") && header.contains("element vertex 2\n"));
        let rows: Vec<Vec<f32>> = body
            .lines()
            .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows, vec![vec![0.5, -1.0, 2.0], vec![0.25, 0.0, -0.5]]);
        // 2-D clouds lie in z = 0; other shapes are refused.
        assert!(to_ply(&[1.0, 2.0], 2).unwrap().ends_with("1 2 0\n"));
        assert!(to_ply(&[1.0, 2.0, 3.0, 4.0], 4).is_err());
        assert!(to_ply(&[1.0, 2.0, 3.0], 2).is_err());
    }

    #[test]
    fn shapes_have_their_geometry() {
        let radius = |p: &[f32]| p.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt();
        let circle = load("circle", Split::Train).unwrap();
        assert_eq!((circle.len(), circle.channels, circle.height), (COUNT, 2, 1));
        assert!((0..circle.len()).all(|i| (radius(circle.image(i)) - 1.0).abs() < 1e-5));
        let sphere = load("sphere", Split::Test).unwrap();
        assert!((0..sphere.len()).all(|i| (radius(sphere.image(i)) - 1.0).abs() < 1e-5));
        let torus = load("torus", Split::Train).unwrap();
        for i in 0..100 {
            let p = torus.image(i);
            let ring = ((p[0] * p[0] + p[1] * p[1]) as f64).sqrt() - 0.7;
            assert!((ring.hypot(p[2] as f64) - 0.3).abs() < 1e-5);
        }
        assert_ne!(
            load("letter", Split::Train).unwrap().images,
            load("letter", Split::Test).unwrap().images
        );
        assert!(load("cube", Split::Train).is_err());
    }
}
