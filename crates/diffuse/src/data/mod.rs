//! Data sets as pixel arrays in [-1, 1], NCHW, with optional labels.
//!
//! `--data` takes: `digits` (embedded, the default), `mnist[:DIR]`, `fashion-mnist[:DIR]`,
//! `idx:IMAGES[,LABELS]`, `folder:DIR` / a folder path (PNGs; sub-folders become labels), `emoji[:DIR][@BG]`
//! (32×32 colour sprites on background BG, categories as labels), or `points:circle|sphere|torus|letter`
//! (point clouds as 1×1 images with a channel per coordinate).

mod digits;
pub mod emoji;
mod folder;
pub mod idx;
pub mod points;

use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub use idx::{Idx, read_idx};

/// An image data set held in memory.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// n × c × h × w values in [-1, 1].
    pub images: Vec<f32>,
    pub labels: Option<Vec<u32>>,
    pub class_names: Vec<String>,
}

/// Which part of a data set to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    All,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.len() / self.image_size()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Values per image (c·h·w).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_size();
        &self.images[i * n..(i + 1) * n]
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The images at `indices`, concatenated.
    pub fn gather(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.image_size());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
        out
    }

    /// Keeps the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            images: self.gather(indices),
            labels: self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect()),
            ..self.clone()
        }
    }

    /// Loads a data set from its `--data` spec.
    pub fn load(spec: &str, split: Split) -> Result<Dataset> {
        // `emoji@BG` carries its background without a folder: its argument is "@BG".
        let (kind, arg) = match spec.strip_prefix("emoji") {
            Some(rest) if rest.starts_with('@') => ("emoji", rest),
            _ => spec.split_once(':').unwrap_or((spec, "")),
        };
        let ds = match kind {
            "digits" if arg.is_empty() => digits::load(split)?,
            "mnist" | "fashion-mnist" => {
                let dir = if arg.is_empty() {
                    default_dir(kind)?
                } else {
                    PathBuf::from(arg)
                };
                let names = if kind == "mnist" {
                    idx::MNIST_CLASSES
                } else {
                    idx::FASHION_CLASSES
                };
                idx::load_mnist_dir(kind, &dir, split, names)?
            }
            "idx" => {
                let (images, labels) = arg.split_once(',').unwrap_or((arg, ""));
                let labels = (!labels.is_empty()).then(|| Path::new(labels));
                idx::load_files(spec, Path::new(images), labels)?
            }
            "folder" => folder::load(Path::new(arg))?,
            "emoji" => {
                let (dir, bg) = arg.rsplit_once('@').unwrap_or((arg, "white"));
                let dir = if dir.is_empty() {
                    default_dir("emoji-noto")?
                } else {
                    PathBuf::from(dir)
                };
                emoji::load(&dir, emoji::parse_background(bg)?, split)?
            }
            "points" => points::load(arg, split)?,
            _ if Path::new(spec).is_dir() => folder::load(Path::new(spec))?,
            _ => {
                return Err(Error::Data(format!(
                    "unknown data '{spec}' (expected digits, mnist[:DIR], fashion-mnist[:DIR], idx:IMAGES[,LABELS], folder:DIR, a folder, emoji[:DIR][@BG], or points:circle|sphere|torus|letter)"
                )));
            }
        };
        if ds.is_empty() {
            return Err(Error::Data(format!("'{spec}' holds no images")));
        }
        Ok(ds)
    }
}

/// Where `mnist`, `fashion-mnist` and `emoji` (`emoji-noto`) are looked for without a DIR: `$DIFFUSE_DATA/<name>`,
/// else the cache of `diffuse fetch`.
fn default_dir(name: &str) -> Result<PathBuf> {
    if let Some(root) = std::env::var_os("DIFFUSE_DATA") {
        return Ok(PathBuf::from(root).join(name));
    }
    match crate::fetch::cache_dir().map(|c| c.join(name)) {
        Some(dir) if dir.is_dir() => Ok(dir),
        _ => Err(Error::Data(format!(
            "{name}: give its folder as --data {name}:DIR (the four IDX files, gz or raw), set DIFFUSE_DATA to a \
             folder holding {name}/, or download it with `diffuse fetch {name}`"
        ))),
    }
}

/// u8 pixel (0..=max) to [-1, 1].
pub fn to_unit(v: f32, max: f32) -> f32 {
    v / max * 2.0 - 1.0
}

/// [-1, 1] back to a u8 pixel, clamped.
pub fn to_u8(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A path inside the shared folder (../shared beside the checkout, or $DIFFUSE_SHARED), or None after
    /// saying that the test skips.
    pub(crate) fn shared(sub: &str) -> Option<PathBuf> {
        let path = std::env::var_os("DIFFUSE_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
            .join(sub);
        if path.exists() {
            return Some(path);
        }
        // Written past the test harness's capture so that the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: {} not found (set DIFFUSE_SHARED to the shared folder)",
            path.display()
        );
        None
    }

    #[test]
    fn pixel_scaling_round_trips() {
        for p in 0..=255u8 {
            assert_eq!(to_u8(to_unit(p as f32, 255.0)), p);
        }
        assert_eq!(to_unit(0.0, 16.0), -1.0);
        assert_eq!(to_unit(16.0, 16.0), 1.0);
        assert_eq!(to_u8(7.0), 255);
    }

    #[test]
    fn embedded_digits_load_with_labels() {
        let all = Dataset::load("digits", Split::All).unwrap();
        assert_eq!((all.len(), all.channels, all.height, all.width), (1797, 1, 8, 8));
        let labels = all.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1797);
        for c in 0..10 {
            assert!(labels.iter().filter(|&&l| l == c).count() > 170);
        }
        assert!(all.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        let (train, test) = (
            Dataset::load("digits", Split::Train).unwrap(),
            Dataset::load("digits", Split::Test).unwrap(),
        );
        assert_eq!(train.len() + test.len(), 1797);
        assert_eq!(train.image(0), all.image(0));
    }

    #[test]
    fn unknown_data_is_rejected() {
        let e = Dataset::load("cifar", Split::All).unwrap_err().to_string();
        assert!(e.contains("unknown data 'cifar'"), "{e}");
        assert!(Dataset::load("folder:/nonexistent/dir", Split::All).is_err());
    }
}
