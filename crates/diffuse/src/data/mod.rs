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
mod spec;

use crate::{Error, Result};
use std::path::PathBuf;

pub use idx::{Idx, read_idx};
pub use spec::DataSpec;

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
    /// A caption per image, where the data has them (emoji: their names), for text-conditioned runs.
    pub captions: Option<Vec<String>>,
}

/// Which part of a data set to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    All,
}

crate::names::named!(Split, "split", { Train => "train", Test => "test", All => "all" });

impl Split {
    /// Whether an item whose place is the held-out part (`held_out`) belongs to this split.
    pub fn keeps(self, held_out: bool) -> bool {
        match self {
            Split::All => true,
            Split::Train => !held_out,
            Split::Test => held_out,
        }
    }
}

/// The fixed split rule for data that bring none of their own (a flat PNG folder, a lone IDX file): an item is
/// held out when the 64-bit FNV-1a hash of its key (a file's path inside the folder, an image's index) is 0
/// modulo 10, so about a tenth, the same on every machine and independent of the other items.
pub fn held_out_by_hash(key: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(10)
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

    /// The train part followed by the test part of one data set: both must have the same image shape and both
    /// labels or neither; the longer class list (IDX files name classes up to their largest label) is kept.
    pub fn append(mut self, other: Dataset) -> Result<Dataset> {
        let shape = |d: &Dataset| (d.channels, d.height, d.width, d.labels.is_some());
        if shape(&self) != shape(&other) {
            return Err(Error::Data(format!(
                "{}: its train and test parts differ in image size, colour or labelling",
                self.name
            )));
        }
        self.images.extend(other.images);
        if let (Some(a), Some(b)) = (self.labels.as_mut(), other.labels) {
            a.extend(b);
        }
        self.captions = match (self.captions, other.captions) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        if other.class_names.len() > self.class_names.len() {
            self.class_names = other.class_names;
        }
        Ok(self)
    }

    /// Keeps the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            images: self.gather(indices),
            labels: self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect()),
            captions: self
                .captions
                .as_ref()
                .map(|c| indices.iter().map(|&i| c[i].clone()).collect()),
            ..self.clone()
        }
    }

    /// Loads a data set from its `--data` spec.
    pub fn load(spec: &str, split: Split) -> Result<Dataset> {
        spec.parse::<DataSpec>()?.load(split)
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
    use std::path::Path;

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

    /// Train and test are disjoint, both non-empty, and together make `all`.
    fn assert_split(spec: &str) {
        assert_disjoint(spec, true)
    }

    /// Train and test are disjoint and both non-empty; with `partition`, together they make `all`.
    fn assert_disjoint(spec: &str, partition: bool) {
        let [train, test, all] = [Split::Train, Split::Test, Split::All].map(|s| Dataset::load(spec, s).unwrap());
        let key = |d: &Dataset, i: usize| d.image(i).iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let train_set: std::collections::HashSet<Vec<u32>> = (0..train.len()).map(|i| key(&train, i)).collect();
        assert!(!train.is_empty() && !test.is_empty(), "{spec}: an empty split");
        if partition {
            assert_eq!(train.len() + test.len(), all.len(), "{spec}: train + test != all");
        }
        // Real data sets can hold a few identical images; the made-up ones below are all distinct.
        let shared_images = (0..test.len()).filter(|&i| train_set.contains(&key(&test, i))).count();
        assert!(
            shared_images * 100 <= test.len(),
            "{spec}: {shared_images} test images are training images"
        );
    }

    /// `n` distinct 4×4 grey images, image i with its index in the first pixels.
    fn distinct(n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let mut img = vec![-1.0f32; 16];
                img[0] = to_unit((i % 256) as f32, 255.0);
                img[1] = to_unit((i / 256) as f32, 255.0);
                img
            })
            .collect()
    }

    fn idx_bytes(images: &[Vec<f32>]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, 3];
        for d in [images.len() as u32, 4, 4] {
            b.extend(d.to_be_bytes());
        }
        b.extend(images.iter().flatten().map(|&v| to_u8(v)));
        b
    }

    #[test]
    fn every_data_kind_keeps_its_test_images_out_of_training() {
        assert_split("digits");
        // Point clouds are drawn: their test split is a second, independent draw (and all is the first).
        assert_disjoint("points:circle", false);
        let root = std::env::temp_dir().join(format!("diffuse-splits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |dir: &Path, imgs: &[Vec<f32>]| {
            std::fs::create_dir_all(dir).unwrap();
            for (i, img) in imgs.iter().enumerate() {
                crate::imageio::write_png(&dir.join(format!("{i:03}.png")), img, 1, 4, 4).unwrap();
            }
        };
        let imgs = distinct(90);
        // A flat folder and a folder of class folders: split by the hash of each file's path.
        write(&root.join("flat"), &imgs[..40]);
        write(&root.join("classes/a"), &imgs[..30]);
        write(&root.join("classes/b"), &imgs[30..60]);
        // A folder with train/ and test/: split by them.
        write(&root.join("tt/train/a"), &imgs[..20]);
        write(&root.join("tt/test/a"), &imgs[20..25]);
        for dir in ["flat", "classes", "tt"] {
            assert_split(&format!("folder:{}", root.join(dir).display()));
        }
        let tt = Dataset::load(&format!("folder:{}", root.join("tt").display()), Split::Test).unwrap();
        assert_eq!(tt.images, imgs[20..25].concat());
        // A lone IDX file (by the hash of the index) and an MNIST-named pair (by file).
        std::fs::write(root.join("lone.idx"), idx_bytes(&imgs[..60])).unwrap();
        assert_split(&format!("idx:{}", root.join("lone.idx").display()));
        std::fs::write(root.join("train-images.idx"), idx_bytes(&imgs[..50])).unwrap();
        std::fs::write(root.join("t10k-images.idx"), idx_bytes(&imgs[50..])).unwrap();
        for file in ["train-images.idx", "t10k-images.idx"] {
            let spec = format!("idx:{}", root.join(file).display());
            assert_split(&spec);
            assert_eq!(Dataset::load(&spec, Split::Test).unwrap().images, imgs[50..].concat());
        }
        std::fs::remove_dir_all(&root).unwrap();
        // The shared data sets, when present.
        for (spec, sub) in [("mnist", "data/mnist"), ("emoji", "data/emoji-noto")] {
            if let Some(dir) = shared(sub) {
                assert_split(&format!("{spec}:{}", dir.display()));
            }
        }
    }

    #[test]
    fn a_folder_too_small_to_hold_any_out_says_so() {
        let dir = std::env::temp_dir().join(format!("diffuse-tiny-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // One image whose key is not held out: the test split is empty, and named.
        let name = (0..)
            .map(|i| format!("{i}.png"))
            .find(|k| !held_out_by_hash(k))
            .unwrap();
        crate::imageio::write_png(&dir.join(&name), &distinct(1)[0], 1, 4, 4).unwrap();
        let spec = format!("folder:{}", dir.display());
        let e = Dataset::load(&spec, Split::Test).unwrap_err().to_string();
        assert!(e.contains("no images in its test split"), "{e}");
        assert_eq!(Dataset::load(&spec, Split::Train).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hash_rule_holds_out_about_a_tenth() {
        let held = (0..10_000).filter(|i| held_out_by_hash(&format!("{i:05}.png"))).count();
        assert!((800..1200).contains(&held), "{held}");
    }

    #[test]
    fn unknown_data_is_rejected() {
        let e = Dataset::load("cifar", Split::All).unwrap_err().to_string();
        assert!(e.contains("unknown data 'cifar'"), "{e}");
        assert!(Dataset::load("folder:/nonexistent/dir", Split::All).is_err());
    }
}
