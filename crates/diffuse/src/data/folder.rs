//! A folder of PNG images, or a folder of class folders of PNG images (the class is the folder name).
//! The first image fixes the size and whether the set is grey (1 channel) or colour (3).
//!
//! Splits: a folder holding both `train/` and `test/` (each laid out as above) splits by them. Any other
//! folder holds out the images picked by [`held_out_by_hash`] of their path inside the folder (`a.png`,
//! `cat/a.png`), about a tenth, so adding or removing other files never moves an image between splits.

use super::{Dataset, Split, held_out_by_hash, to_unit};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let (train, test) = (dir.join("train"), dir.join("test"));
    if !(train.is_dir() && test.is_dir()) {
        return load_filtered(dir, |key| split.keeps(held_out_by_hash(key)));
    }
    // Labels index the class list, so both halves must have the same class folders whichever is loaded.
    let names = |d: &Path| -> Result<Vec<String>> {
        Ok(class_dirs(d)?
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect())
    };
    if names(&train)? != names(&test)? {
        return Err(Error::Data(format!(
            "{}: train/ and test/ hold different class folders",
            dir.display()
        )));
    }
    let part = |d: &Path| load_filtered(d, |_| true);
    match split {
        Split::Train => part(&train),
        Split::Test => part(&test),
        Split::All => {
            let mut all = part(&train)?.append(part(&test)?)?;
            all.name = dir.display().to_string();
            Ok(all)
        }
    }
}

/// The sub-folders of `dir`, sorted: its classes when it holds no PNG of its own.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    Ok(classes)
}

/// The folder's images whose key (path inside `dir`, '/'-separated) passes `keep`.
fn load_filtered(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Dataset> {
    let classes = class_dirs(dir)?;
    let mut files: Vec<(PathBuf, Option<u32>)> =
        crate::imageio::png_files(dir)?.into_iter().map(|p| (p, None)).collect();
    let labelled = files.is_empty() && !classes.is_empty();
    if labelled {
        for (c, class_dir) in classes.iter().enumerate() {
            files.extend(
                crate::imageio::png_files(class_dir)?
                    .into_iter()
                    .map(|p| (p, Some(c as u32))),
            );
        }
    }
    let key = |p: &Path| {
        let rel = p.strip_prefix(dir).unwrap_or(p);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    // The first file of the whole folder fixes size and colour, so that every split of it agrees.
    let first = files
        .first()
        .ok_or_else(|| Error::Data(format!("{}: no PNG images found", dir.display())))?;
    let probe = crate::imageio::read_png(&first.0, None)?;
    files.retain(|(p, _)| keep(&key(p)));
    if files.is_empty() {
        return Ok(Dataset {
            name: dir.display().to_string(),
            channels: 1,
            height: 1,
            width: 1,
            images: Vec::new(),
            labels: None,
            class_names: Vec::new(),
            captions: None,
        });
    }
    let mut ds = Dataset {
        name: dir.display().to_string(),
        channels: probe.channels,
        height: probe.height,
        width: probe.width,
        images: Vec::new(),
        labels: labelled.then(Vec::new),
        class_names: if labelled {
            classes
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        } else {
            Vec::new()
        },
        captions: None,
    };
    for (path, label) in &files {
        let img = crate::imageio::read_png(path, Some(probe.channels))?;
        if (img.height, img.width) != (ds.height, ds.width) {
            return Err(Error::Image {
                path: path.clone(),
                reason: format!(
                    "{}×{} differs from the first image's {}×{}",
                    img.width, img.height, ds.width, ds.height
                ),
            });
        }
        ds.images.extend(img.pixels.iter().map(|&v| to_unit(v as f32, 255.0)));
        if let (Some(l), Some(labels)) = (label, ds.labels.as_mut()) {
            labels.push(*l);
        }
    }
    Ok(ds)
}
