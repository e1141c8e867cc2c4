//! The 1,797 8×8 handwritten digits (UCI Optical Recognition of Handwritten Digits, test set, as shipped by
//! scikit-learn; CC BY 4.0, E. Alpaydin and C. Kaynak), embedded in the binary. Values 0..16, label last.

use super::{Dataset, Split, to_unit};
use crate::{Error, Result};
use std::io::Read;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../assets/digits.csv.gz");

/// The first 1,500 digits train; the last 297 are held out for evaluation.
pub const TRAIN_COUNT: usize = 1500;

pub fn load(split: Split) -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("embedded digits: {e}")))?;
    let mut images = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (row, line) in text.lines().enumerate() {
        let values: Vec<u32> = line
            .split(',')
            .map(|v| v.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Data(format!("embedded digits row {row}: {e}")))?;
        if values.len() != 65 {
            return Err(Error::Data(format!(
                "embedded digits row {row}: {} values",
                values.len()
            )));
        }
        images.extend(values[..64].iter().map(|&v| to_unit(v as f32, 16.0)));
        labels.push(values[64]);
    }
    let ds = Dataset {
        name: "digits".into(),
        channels: 1,
        height: 8,
        width: 8,
        images,
        labels: Some(labels),
        class_names: (0..10).map(|d| d.to_string()).collect(),
        captions: None,
    };
    let n = ds.len();
    let indices: Vec<usize> = match split {
        Split::All => return Ok(ds),
        Split::Train => (0..TRAIN_COUNT.min(n)).collect(),
        Split::Test => (TRAIN_COUNT.min(n)..n).collect(),
    };
    Ok(ds.subset(&indices))
}
