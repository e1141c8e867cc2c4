//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed. Declared sizes are checked against the bytes
//! present before anything is allocated from them.

use super::{Dataset, Split, to_unit};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MNIST_CLASSES: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
pub const FASHION_CLASSES: &[&str] = &[
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Decompressed files larger than this are refused (MNIST's training images are 47 MB).
const MAX_BYTES: u64 = 1 << 31;

/// A parsed IDX array of u8.
#[derive(Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses IDX bytes (only the unsigned-byte type, which MNIST uses).
pub fn read_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 {
        return Err("shorter than an IDX header".into());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not supported (only unsigned bytes)",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 || rank > 4 {
        return Err(format!("IDX rank {rank} is not supported"));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err("truncated IDX header".into());
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("IDX dimensions overflow")?;
    let present = bytes.len() - header;
    if present != count {
        return Err(format!("IDX declares {count} values ({dims:?}) but holds {present}"));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Parses an IDX file's bytes, gunzipping them first when they are gzip.
pub fn decode(raw: &[u8]) -> std::result::Result<Idx, String> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return read_idx(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(MAX_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip: {e}"))?;
    read_idx(&out)
}

fn parse(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&raw).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
}

/// Loads an image file (n × h × w) and, optionally, its label file (n).
pub fn load_files(name: &str, images: &Path, labels: Option<&Path>) -> Result<Dataset> {
    let img = parse(images)?;
    if img.dims.len() != 3 {
        return Err(Error::Data(format!(
            "{}: expected n×h×w images, got dims {:?}",
            images.display(),
            img.dims
        )));
    }
    let labels = match labels {
        Some(p) => {
            let l = parse(p)?;
            if l.dims != [img.dims[0]] {
                return Err(Error::Data(format!(
                    "{}: {:?} labels for {} images",
                    p.display(),
                    l.dims,
                    img.dims[0]
                )));
            }
            Some(l.data.iter().map(|&v| v as u32).collect::<Vec<u32>>())
        }
        None => None,
    };
    let num_classes = labels
        .as_ref()
        .map_or(0, |l| l.iter().max().map_or(0, |&m| m as usize + 1));
    Ok(Dataset {
        name: name.to_string(),
        channels: 1,
        height: img.dims[1],
        width: img.dims[2],
        images: img.data.iter().map(|&v| to_unit(v as f32, 255.0)).collect(),
        labels,
        class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        captions: None,
    })
}

/// The `idx:IMAGES[,LABELS]` spec's `split`. A pair named like MNIST's (`train` or `t10k` in the file names)
/// whose counterpart files exist splits by file: train is the `train` pair, test the `t10k` pair, all both.
/// Any other file is split by [`held_out_by_hash`](super::held_out_by_hash) of each image's index.
pub fn load_split(name: &str, images: &Path, labels: Option<&Path>, split: Split) -> Result<Dataset> {
    let swap = |p: &Path| -> Option<(PathBuf, PathBuf)> {
        let file = p.file_name()?.to_str()?;
        let (train, test) = if file.contains("train") {
            (file.to_string(), file.replacen("train", "t10k", 1))
        } else if file.contains("t10k") {
            (file.replacen("t10k", "train", 1), file.to_string())
        } else {
            return None;
        };
        let (train, test) = (p.with_file_name(train), p.with_file_name(test));
        (train.is_file() && test.is_file()).then_some((train, test))
    };
    let pairs = match (swap(images), labels.map(swap)) {
        (Some(i), None) => Some((i, None)),
        (Some(i), Some(Some(l))) => Some((i, Some(l))),
        _ => None,
    };
    let Some(((train_img, test_img), label_pair)) = pairs else {
        let ds = load_files(name, images, labels)?;
        let keep: Vec<usize> = (0..ds.len())
            .filter(|i| split.keeps(super::held_out_by_hash(&i.to_string())))
            .collect();
        return Ok(if split == Split::All { ds } else { ds.subset(&keep) });
    };
    let part = |test: bool| {
        let img = if test { &test_img } else { &train_img };
        let lab = label_pair.as_ref().map(|(a, b)| if test { b } else { a });
        load_files(name, img, lab.map(|p| p.as_path()))
    };
    match split {
        Split::Train => part(false),
        Split::Test => part(true),
        Split::All => part(false)?.append(part(true)?),
    }
}

/// Loads MNIST-layout files from a folder: `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
pub fn load_mnist_dir(name: &str, dir: &Path, split: Split, classes: &[&str]) -> Result<Dataset> {
    let find = |stem: &str| -> Result<std::path::PathBuf> {
        [dir.join(format!("{stem}.gz")), dir.join(stem)]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Data(format!("{name}: {stem}[.gz] not found in {}", dir.display())))
    };
    let part = |prefix: &str| -> Result<Dataset> {
        let images = find(&format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find(&format!("{prefix}-labels-idx1-ubyte"))?;
        let mut ds = load_files(name, &images, Some(&labels))?;
        ds.class_names = classes.iter().map(|s| s.to_string()).collect();
        Ok(ds)
    };
    match split {
        Split::Train => part("train"),
        Split::Test => part("t10k"),
        Split::All => part("train")?.append(part("t10k")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn parses_a_small_file() {
        let parsed = read_idx(&idx(&[2, 1, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(parsed.dims, vec![2, 1, 3]);
        assert_eq!(parsed.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_lies_and_truncation_before_allocating() {
        assert!(
            read_idx(&idx(&[2, 1, 3], &[1, 2, 3]))
                .unwrap_err()
                .contains("declares 6")
        );
        assert!(read_idx(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[])).is_err());
        assert!(read_idx(&[0, 0, 8]).is_err());
        assert!(read_idx(&[1, 2, 8, 1, 0, 0, 0, 0]).unwrap_err().contains("magic"));
        assert!(read_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).unwrap_err().contains("type"));
        assert!(read_idx(&[0, 0, 8, 3, 0, 0]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn loads_gzipped_mnist_layout_with_labels() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("diffuse-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gz = |bytes: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gz(&idx(&[2, 2, 2], &[0, 255, 0, 255, 1, 2, 3, 4])),
        )
        .unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[2], &[7, 3])).unwrap();
        let ds = load_mnist_dir("mnist", &dir, Split::Train, MNIST_CLASSES).unwrap();
        assert_eq!((ds.len(), ds.height, ds.width), (2, 2, 2));
        assert_eq!(ds.labels, Some(vec![7, 3]));
        assert_eq!(&ds.images[..2], &[-1.0, 1.0]);
        std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[3], &[7, 3, 1])).unwrap();
        assert!(load_mnist_dir("mnist", &dir, Split::Train, MNIST_CLASSES).is_err());
        assert!(
            load_mnist_dir("mnist", &dir, Split::Test, MNIST_CLASSES)
                .unwrap_err()
                .to_string()
                .contains("t10k")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
