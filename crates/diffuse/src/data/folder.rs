//! A folder of PNG images, or a folder of class folders of PNG images (the class is the folder name).
//! The first image fixes the size and whether the set is grey (1 channel) or colour (3).

use super::{Dataset, to_unit};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub fn load(dir: &Path) -> Result<Dataset> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
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
    let first = files
        .first()
        .ok_or_else(|| Error::Data(format!("{}: no PNG images found", dir.display())))?;
    let probe = crate::imageio::read_png(&first.0, None)?;
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
