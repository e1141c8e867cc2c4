//! A mesh from a 3-D point cloud: the points' density on a grid (a Gaussian kernel), then the surface where it
//! crosses a level, extracted by surface nets (Gibson 1998, "Constrained elastic surface nets": one vertex per
//! grid cell the surface passes through, at the mean of the edge crossings, and one quad per crossed grid edge).
//! For a cloud sampled on a surface (the sphere, the torus) the result is a thin closed shell around it.

use crate::{Error, Result};
use std::collections::{HashMap, HashSet};

/// What `sample --mesh` uses unless told: a 48³ grid, kernels of width 0.16 (the shapes are about 2 wide; narrower
/// kernels leave the density of 8,192 points full of holes), and the level that all but 0.1% of the points
/// exceed. The width decides what the surface closes: 0.16 makes the torus a solid ring (its tube is 0.3 wide),
/// 0.25 fills its hole.
pub const GRID: usize = 48;
pub const BANDWIDTH: f64 = 0.16;
pub const INSIDE: f64 = 0.999;

/// A quad mesh.
#[derive(Clone, Debug, Default)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub quads: Vec<[u32; 4]>,
}

/// A scalar field on a regular grid: `values[(k·ny + j)·nx + i]` at `origin + cell·(i, j, k)`.
pub struct Field {
    pub values: Vec<f32>,
    pub dims: [usize; 3],
    pub origin: [f64; 3],
    pub cell: f64,
}

impl Field {
    fn at(&self, i: usize, j: usize, k: usize) -> f32 {
        self.values[(k * self.dims[1] + j) * self.dims[0] + i]
    }

    fn point(&self, p: [f64; 3]) -> [f32; 3] {
        [0, 1, 2].map(|a| (self.origin[a] + self.cell * p[a]) as f32)
    }
}

/// The surface where `field` crosses `level` (inside: above it). Grid borders should be outside.
pub fn surface_nets(field: &Field, level: f32) -> Mesh {
    let [nx, ny, nz] = field.dims;
    let inside = |i, j, k| field.at(i, j, k) > level;
    let corners: [[usize; 3]; 8] = [
        [0, 0, 0],
        [1, 0, 0],
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 1],
        [1, 0, 1],
        [0, 1, 1],
        [1, 1, 1],
    ];
    // The 12 edges of a cell as pairs of its corners (those differing in one coordinate).
    let edges: Vec<(usize, usize)> = (0..8)
        .flat_map(|a: usize| (a + 1..8).map(move |b| (a, b)))
        .filter(|&(a, b)| (a ^ b).count_ones() == 1)
        .collect();
    let mut mesh = Mesh::default();
    let mut vertex_of = HashMap::new();
    for k in 0..nz.saturating_sub(1) {
        for j in 0..ny.saturating_sub(1) {
            for i in 0..nx.saturating_sub(1) {
                let v: Vec<f32> = corners.iter().map(|c| field.at(i + c[0], j + c[1], k + c[2])).collect();
                let (mut sum, mut count) = ([0.0f64; 3], 0);
                for &(a, b) in &edges {
                    if (v[a] > level) != (v[b] > level) {
                        let t = ((level - v[a]) / (v[b] - v[a])) as f64;
                        for (ax, s) in sum.iter_mut().enumerate() {
                            *s += corners[a][ax] as f64 + t * (corners[b][ax] as f64 - corners[a][ax] as f64);
                        }
                        count += 1;
                    }
                }
                if count > 0 {
                    let p = [i as f64, j as f64, k as f64];
                    let at = [0, 1, 2].map(|a| p[a] + sum[a] / count as f64);
                    vertex_of.insert([i, j, k], mesh.vertices.len() as u32);
                    mesh.vertices.push(field.point(at));
                }
            }
        }
    }
    // A grid edge from (i, j, k) along axis a that the surface crosses: a quad of the four cells around it.
    for k in 1..nz.saturating_sub(1) {
        for j in 1..ny.saturating_sub(1) {
            for i in 1..nx.saturating_sub(1) {
                let here = inside(i, j, k);
                for axis in 0..3 {
                    let mut next = [i, j, k];
                    next[axis] += 1;
                    if next[axis] >= field.dims[axis] || inside(next[0], next[1], next[2]) == here {
                        continue;
                    }
                    // The other two axes, in the order that makes the quad face out of the inside.
                    let (u, w) = ((axis + 1) % 3, (axis + 2) % 3);
                    let cell = |du: usize, dw: usize| {
                        let mut c = [i, j, k];
                        c[u] -= du;
                        c[w] -= dw;
                        vertex_of[&c]
                    };
                    let quad = [cell(1, 1), cell(0, 1), cell(0, 0), cell(1, 0)];
                    mesh.quads.push(if here {
                        quad
                    } else {
                        [quad[3], quad[2], quad[1], quad[0]]
                    });
                }
            }
        }
    }
    mesh
}

/// The points' density (a sum of Gaussians of width `bandwidth`) on a `res`³ grid over their bounding box
/// widened by three widths, so that the borders are outside.
pub fn density(points: &[f32], res: usize, bandwidth: f64) -> Result<Field> {
    if !points.len().is_multiple_of(3) || points.is_empty() || !(8..=256).contains(&res) || bandwidth <= 0.0 {
        return Err(Error::Invalid(format!(
            "a mesh needs 3-D points, a grid of 8 to 256 cells a side and a positive width (got {} values, {res}, {bandwidth})",
            points.len()
        )));
    }
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for p in points.chunks(3) {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a] as f64);
            hi[a] = hi[a].max(p[a] as f64);
        }
    }
    let margin = 3.0 * bandwidth;
    let extent = (0..3).map(|a| hi[a] - lo[a]).fold(0.0, f64::max) + 2.0 * margin;
    let cell = extent / (res - 1) as f64;
    let origin = [0, 1, 2].map(|a| (lo[a] + hi[a]) / 2.0 - extent / 2.0);
    let mut values = vec![0.0f32; res * res * res];
    // Each point adds its kernel to the grid points within three widths.
    let reach = (3.0 * bandwidth / cell).ceil() as isize;
    let inv = 1.0 / (2.0 * bandwidth * bandwidth);
    for p in points.chunks(3) {
        let g = [0, 1, 2].map(|a| ((p[a] as f64 - origin[a]) / cell).round() as isize);
        for dk in -reach..=reach {
            for dj in -reach..=reach {
                for di in -reach..=reach {
                    let [i, j, k] = [g[0] + di, g[1] + dj, g[2] + dk];
                    if [i, j, k].iter().any(|&c| c < 0 || c >= res as isize) {
                        continue;
                    }
                    let q = [i, j, k].map(|c| c as f64);
                    let d2: f64 = (0..3).map(|a| (origin[a] + cell * q[a] - p[a] as f64).powi(2)).sum();
                    values[((k as usize) * res + j as usize) * res + i as usize] += (-d2 * inv).exp() as f32;
                }
            }
        }
    }
    Ok(Field {
        values,
        dims: [res; 3],
        origin,
        cell,
    })
}

/// The mesh of a cloud: its density's surface at the level exceeded at `inside` of the points (0.9: nine
/// points in ten lie within the surface).
pub fn from_points(points: &[f32], res: usize, bandwidth: f64, inside: f64) -> Result<Mesh> {
    let field = density(points, res, bandwidth)?;
    // The density at each point, read from its nearest grid point.
    let mut at: Vec<f32> = points
        .chunks(3)
        .map(|p| {
            let g = [0, 1, 2].map(|a| (((p[a] as f64 - field.origin[a]) / field.cell).round() as usize).min(res - 1));
            field.at(g[0], g[1], g[2])
        })
        .collect();
    at.sort_by(f32::total_cmp);
    let level = at[((1.0 - inside.clamp(0.0, 1.0)) * (at.len() - 1) as f64) as usize];
    Ok(surface_nets(&field, level))
}

impl Mesh {
    /// V − E + F: 2 for a closed surface like a sphere, 0 for a torus, 2 − 2g for genus g (summed over pieces).
    pub fn euler_characteristic(&self) -> i64 {
        let edges: HashSet<(u32, u32)> = self
            .quads
            .iter()
            .flat_map(|q| (0..4).map(move |e| (q[e].min(q[(e + 1) % 4]), q[e].max(q[(e + 1) % 4]))))
            .collect();
        self.vertices.len() as i64 - edges.len() as i64 + self.quads.len() as i64
    }

    /// ASCII PLY with vertices and quad faces (MeshLab, Blender and Open3D read it).
    pub fn to_ply(&self) -> String {
        let mut out = format!(
            "ply\nformat ascii 1.0\ncomment made by diffuse (surface nets)\nelement vertex {}\nproperty float x\n\
             property float y\nproperty float z\nelement face {}\nproperty list uchar int vertex_indices\nend_header\n",
            self.vertices.len(),
            self.quads.len()
        );
        for v in &self.vertices {
            out.push_str(&format!("{} {} {}\n", v[0], v[1], v[2]));
        }
        for q in &self.quads {
            out.push_str(&format!("4 {} {} {} {}\n", q[0], q[1], q[2], q[3]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, points};

    /// A field given by a function on a 40³ grid over [−1.5, 1.5]³.
    fn field(f: impl Fn(f64, f64, f64) -> f64) -> Field {
        let n = 40;
        let cell = 3.0 / (n - 1) as f64;
        let mut values = Vec::with_capacity(n * n * n);
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let c = |t: usize| -1.5 + cell * t as f64;
                    values.push(f(c(i), c(j), c(k)) as f32);
                }
            }
        }
        Field {
            values,
            dims: [n; 3],
            origin: [-1.5; 3],
            cell,
        }
    }

    /// The distance of every vertex from the origin.
    fn radii(mesh: &Mesh) -> Vec<f32> {
        mesh.vertices
            .iter()
            .map(|v| v.iter().map(|c| c * c).sum::<f32>().sqrt())
            .collect()
    }

    #[test]
    fn surface_nets_give_closed_surfaces_of_the_right_topology() {
        // A ball of radius 1: one closed surface (χ = 2), its vertices on the sphere.
        let ball = surface_nets(&field(|x, y, z| 1.0 - (x * x + y * y + z * z).sqrt()), 0.0);
        assert_eq!(ball.euler_characteristic(), 2);
        let r = radii(&ball);
        assert!(
            r.iter().all(|r| (r - 1.0).abs() < 0.05),
            "radii {:?}",
            (
                r.iter().cloned().fold(9.0, f32::min),
                r.iter().cloned().fold(0.0, f32::max)
            )
        );
        // A solid torus (radii 0.7 and 0.3): χ = 0.
        let torus = surface_nets(&field(|x, y, z| 0.3 - ((x.hypot(y) - 0.7).powi(2) + z * z).sqrt()), 0.0);
        assert_eq!(torus.euler_characteristic(), 0);
        // Two balls: two pieces, χ = 4.
        let two = surface_nets(
            &field(|x, y, z| {
                (0.5 - ((x - 0.7).powi(2) + y * y + z * z).sqrt()).max(0.5 - ((x + 0.7).powi(2) + y * y + z * z).sqrt())
            }),
            0.0,
        );
        assert_eq!(two.euler_characteristic(), 4);
    }

    #[test]
    fn sampled_clouds_mesh_to_their_topology() {
        // The torus's points at the default width: one closed surface with one hole (χ = 0) around the tube.
        let torus = points::load("torus", Split::Train).unwrap();
        let mesh = from_points(&torus.images, GRID, BANDWIDTH, INSIDE).unwrap();
        assert_eq!(mesh.euler_characteristic(), 0);
        let mut d: Vec<f64> = mesh
            .vertices
            .iter()
            .map(|v| (((v[0] as f64).hypot(v[1] as f64) - 0.7).powi(2) + (v[2] as f64).powi(2)).sqrt())
            .collect();
        d.sort_by(f64::total_cmp);
        let median = d[d.len() / 2];
        assert!((0.3..0.6).contains(&median), "{median}");
        // The sphere's points at width 0.25: a shell, an outer and an inner sphere (χ = 2 + 2), around radius 1.
        let sphere = points::load("sphere", Split::Train).unwrap();
        let mesh = from_points(&sphere.images, GRID, 0.25, 0.99).unwrap();
        assert_eq!(mesh.euler_characteristic(), 4);
        let r = radii(&mesh);
        assert!(r.iter().all(|r| (r - 1.0).abs() < 0.5));
        let ply = mesh.to_ply();
        assert!(ply.contains(&format!("element face {}\n", mesh.quads.len())));
        assert!(from_points(&sphere.images[..4], GRID, 0.25, 0.9).is_err());
    }
}
