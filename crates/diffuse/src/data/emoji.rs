//! The emoji sprite sheet (`emoji-noto`: `sheet-clean-32.png` and `emoji.json`): 32×32 RGBA sprites in cells
//! of 34 pixels (1-pixel border) at (sheet_x, sheet_y), composited onto a background colour; the emoji's
//! `category` is its label ("Component", five skin-tone swatches, is left out) and its lower-cased `name` its
//! caption. Every tenth emoji in the JSON's order is held out as the test split.

use super::{Dataset, Split, to_unit};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

const CELL: usize = 34;
const SIZE: usize = 32;
const SKIPPED: &str = "Component";

#[derive(Deserialize)]
struct Entry {
    name: String,
    sheet_x: usize,
    sheet_y: usize,
    category: String,
}

/// A background colour: `white`, `black`, `grey` or `RRGGBB` hex.
pub fn parse_background(spec: &str) -> Result<[u8; 3]> {
    match spec {
        "white" => Ok([255; 3]),
        "black" => Ok([0; 3]),
        "grey" | "gray" => Ok([128; 3]),
        hex if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits");
            Ok([byte(0), byte(2), byte(4)])
        }
        _ => Err(Error::Data(format!(
            "unknown emoji background '{spec}' (expected white, black, grey or RRGGBB)"
        ))),
    }
}

/// Loads the sheet in `dir` composited onto `background`.
pub fn load(dir: &Path, background: [u8; 3], split: Split) -> Result<Dataset> {
    let json_path = dir.join("emoji.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
    let entries: Vec<Entry> =
        serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", json_path.display())))?;
    let sheet_path = dir.join("sheet-clean-32.png");
    let bytes = std::fs::read(&sheet_path).map_err(|e| Error::io(&sheet_path, e))?;
    let sheet = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Image {
            path: sheet_path.clone(),
            reason: e.to_string(),
        })?
        .to_rgba8();
    let mut class_names: Vec<String> = entries
        .iter()
        .map(|e| e.category.clone())
        .filter(|c| c != SKIPPED)
        .collect();
    class_names.sort();
    class_names.dedup();
    let mut ds = Dataset {
        name: format!("emoji:{}", dir.display()),
        channels: 3,
        height: SIZE,
        width: SIZE,
        images: Vec::new(),
        labels: Some(Vec::new()),
        class_names,
        captions: Some(Vec::new()),
    };
    let kept = entries.iter().filter(|e| e.category != SKIPPED).enumerate();
    for (i, e) in kept {
        let test = i % 10 == 9;
        if (split == Split::Train && test) || (split == Split::Test && !test) {
            continue;
        }
        let (x0, y0) = (e.sheet_x * CELL + 1, e.sheet_y * CELL + 1);
        if (x0 + SIZE) as u32 > sheet.width() || (y0 + SIZE) as u32 > sheet.height() {
            return Err(Error::Data(format!(
                "{}: cell ({}, {}) lies outside the {}×{} sheet",
                json_path.display(),
                e.sheet_x,
                e.sheet_y,
                sheet.width(),
                sheet.height()
            )));
        }
        for (c, &bg) in background.iter().enumerate() {
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let p = sheet.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
                    let a = p[3] as f32 / 255.0;
                    ds.images.push(to_unit(a * p[c] as f32 + (1.0 - a) * bg as f32, 255.0));
                }
            }
        }
        let label = ds.class_names.binary_search(&e.category).expect("a kept category");
        ds.labels.as_mut().expect("labelled").push(label as u32);
        ds.captions.as_mut().expect("captioned").push(e.name.to_lowercase());
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sheet_loads_with_nine_categories_and_a_held_out_tenth() {
        let Some(dir) = crate::data::tests::shared("data/emoji-noto") else {
            return;
        };
        let train = load(&dir, [255; 3], Split::Train).unwrap();
        let test = load(&dir, [255; 3], Split::Test).unwrap();
        assert_eq!((train.channels, train.height, train.width), (3, 32, 32));
        assert_eq!(
            train.len() + test.len(),
            1906,
            "1,911 emoji less the five skin-tone swatches"
        );
        assert_eq!(test.len(), 190);
        assert_eq!(train.class_names.len(), 9);
        assert!(train.class_names.contains(&"Smileys & Emotion".to_string()));
        let labels = train.labels.as_ref().unwrap();
        assert!((0..9).all(|c| labels.contains(&c)));
        // Corners are background (transparent in the sheet): white here, the chosen colour otherwise.
        let corner = |d: &Dataset, c: usize| d.image(0)[c * 1024];
        assert_eq!(corner(&train, 0), 1.0);
        let dark = load(&dir, parse_background("102030").unwrap(), Split::Test).unwrap();
        assert_eq!(corner(&dark, 2), to_unit(48.0, 255.0));
        assert!(train.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn specs_name_the_folder_and_the_background() {
        let Some(dir) = crate::data::tests::shared("data/emoji-noto") else {
            return;
        };
        let spec = format!("emoji:{}@black", dir.display());
        let d = Dataset::load(&spec, Split::Test).unwrap();
        assert_eq!(d.image(0)[0], -1.0, "a black corner");
        // `emoji@BG` without a folder looks in $DIFFUSE_DATA; with it unset the error says so.
        if std::env::var_os("DIFFUSE_DATA").is_none() {
            let e = Dataset::load("emoji@black", Split::Test).unwrap_err().to_string();
            assert!(e.contains("emoji-noto"), "{e}");
        }
    }

    #[test]
    fn bad_backgrounds_and_missing_sheets_are_named() {
        assert_eq!(parse_background("grey").unwrap(), [128; 3]);
        assert!(
            parse_background("purple")
                .unwrap_err()
                .to_string()
                .contains("unknown emoji background")
        );
        assert!(parse_background("12345g").is_err());
        let e = load(Path::new("/nonexistent"), [0; 3], Split::All)
            .unwrap_err()
            .to_string();
        assert!(e.contains("emoji.json"), "{e}");
    }
}
