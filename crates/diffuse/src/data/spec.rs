//! The `--data` spec as a type: parsed once, stored in a run's config as the same string users type (so every
//! config written before reads unchanged), and made absolute when a run is created so that it resumes and
//! evaluates from any working directory.

use super::{Dataset, Split, default_dir, emoji, folder, idx, points};
use crate::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSpec {
    /// The embedded 8×8 digits.
    Digits,
    /// MNIST or Fashion-MNIST in a folder of IDX files (None: $DIFFUSE_DATA or the fetch cache).
    Mnist { fashion: bool, dir: Option<PathBuf> },
    /// An IDX image file and, optionally, its labels.
    Idx { images: PathBuf, labels: Option<PathBuf> },
    /// A folder of PNGs or of class folders of PNGs.
    Folder(PathBuf),
    /// Emoji sprites on a background (white unless given).
    Emoji {
        dir: Option<PathBuf>,
        background: Option<String>,
    },
    /// A point cloud by name.
    Points(String),
}

const EXPECTED: &str = "digits, mnist[:DIR], fashion-mnist[:DIR], idx:IMAGES[,LABELS], folder:DIR, a folder, \
                        emoji[:DIR][@BG], or points:circle|sphere|torus|letter";

impl FromStr for DataSpec {
    type Err = Error;
    fn from_str(spec: &str) -> Result<DataSpec> {
        // `emoji@BG` carries its background without a folder: its argument is "@BG".
        let (kind, arg) = match spec.strip_prefix("emoji") {
            Some(rest) if rest.starts_with('@') => ("emoji", rest),
            _ => spec.split_once(':').unwrap_or((spec, "")),
        };
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Ok(match kind {
            "digits" if arg.is_empty() => DataSpec::Digits,
            "mnist" | "fashion-mnist" => DataSpec::Mnist {
                fashion: kind == "fashion-mnist",
                dir: path(arg),
            },
            "idx" if !arg.is_empty() => {
                let (images, labels) = arg.split_once(',').unwrap_or((arg, ""));
                DataSpec::Idx {
                    images: images.into(),
                    labels: path(labels),
                }
            }
            "folder" if !arg.is_empty() => DataSpec::Folder(arg.into()),
            "emoji" => {
                let (dir, bg) = match arg.rsplit_once('@') {
                    Some((d, bg)) => (d, Some(bg.to_string())),
                    None => (arg, None),
                };
                DataSpec::Emoji {
                    dir: path(dir),
                    background: bg,
                }
            }
            "points" if !arg.is_empty() => DataSpec::Points(arg.into()),
            // A bare folder: stored configs name it even where it no longer exists.
            _ if Path::new(spec).is_dir() || spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') => {
                DataSpec::Folder(spec.into())
            }
            _ => return Err(Error::Data(format!("unknown data '{spec}' (expected {EXPECTED})"))),
        })
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Digits => f.write_str("digits"),
            DataSpec::Mnist { fashion, dir } => {
                f.write_str(if *fashion { "fashion-mnist" } else { "mnist" })?;
                match dir {
                    Some(d) => write!(f, ":{}", d.display()),
                    None => Ok(()),
                }
            }
            DataSpec::Idx { images, labels } => {
                write!(f, "idx:{}", images.display())?;
                match labels {
                    Some(l) => write!(f, ",{}", l.display()),
                    None => Ok(()),
                }
            }
            DataSpec::Folder(dir) => write!(f, "folder:{}", dir.display()),
            DataSpec::Emoji { dir, background } => {
                f.write_str("emoji")?;
                if let Some(d) = dir {
                    write!(f, ":{}", d.display())?;
                }
                match background {
                    Some(bg) => write!(f, "@{bg}"),
                    None => Ok(()),
                }
            }
            DataSpec::Points(shape) => write!(f, "points:{shape}"),
        }
    }
}

impl DataSpec {
    /// The same spec with every path made absolute against the current directory.
    pub fn absolute(&self) -> Result<DataSpec> {
        let abs = |p: &PathBuf| std::path::absolute(p).map_err(|e| Error::io(p, e));
        let opt = |p: &Option<PathBuf>| p.as_ref().map(abs).transpose();
        Ok(match self {
            DataSpec::Digits | DataSpec::Points(_) => self.clone(),
            DataSpec::Mnist { fashion, dir } => DataSpec::Mnist {
                fashion: *fashion,
                dir: opt(dir)?,
            },
            DataSpec::Idx { images, labels } => DataSpec::Idx {
                images: abs(images)?,
                labels: opt(labels)?,
            },
            DataSpec::Folder(dir) => DataSpec::Folder(abs(dir)?),
            DataSpec::Emoji { dir, background } => DataSpec::Emoji {
                dir: opt(dir)?,
                background: background.clone(),
            },
        })
    }

    /// Loads the `split` of the data.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        let spec = self.to_string();
        let ds = match self {
            DataSpec::Digits => super::digits::load(split)?,
            DataSpec::Mnist { fashion, dir } => {
                let kind = if *fashion { "fashion-mnist" } else { "mnist" };
                let dir = match dir {
                    Some(d) => d.clone(),
                    None => default_dir(kind)?,
                };
                let names = if *fashion {
                    idx::FASHION_CLASSES
                } else {
                    idx::MNIST_CLASSES
                };
                idx::load_mnist_dir(kind, &dir, split, names)?
            }
            DataSpec::Idx { images, labels } => idx::load_split(&spec, images, labels.as_deref(), split)?,
            DataSpec::Folder(dir) => folder::load(dir, split)?,
            DataSpec::Emoji { dir, background } => {
                let dir = match dir {
                    Some(d) => d.clone(),
                    None => default_dir("emoji-noto")?,
                };
                emoji::load(
                    &dir,
                    emoji::parse_background(background.as_deref().unwrap_or("white"))?,
                    split,
                )?
            }
            DataSpec::Points(shape) => points::load(shape, split)?,
        };
        if ds.is_empty() {
            return Err(Error::Data(match split {
                Split::All => format!("'{spec}' holds no images"),
                _ => format!("'{spec}' holds no images in its {} split", split.name()),
            }));
        }
        Ok(ds)
    }
}

impl serde::Serialize for DataSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A stored spec that names no known kind is a bare folder (as configs written before kept `--data FOLDER`),
/// whether or not it exists here: a run whose data moved still samples, and loading names the folder.
impl<'de> serde::Deserialize<'de> for DataSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or(DataSpec::Folder(s.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_their_strings() {
        for s in [
            "digits",
            "mnist",
            "fashion-mnist:/d/f",
            "idx:/a/train-images,/a/train-labels",
            "idx:rel/x.idx",
            "folder:/p/q",
            "emoji",
            "emoji@black",
            "emoji:/e",
            "emoji:/e@102030",
            "points:torus",
        ] {
            assert_eq!(s.parse::<DataSpec>().unwrap().to_string(), s);
        }
        // A bare folder path (as older configs may hold) reads as a folder.
        assert_eq!(
            "/gone/folder".parse::<DataSpec>().unwrap(),
            DataSpec::Folder("/gone/folder".into())
        );
        for bad in ["cifar", "digits:x", "idx:", "points:"] {
            assert!(
                bad.parse::<DataSpec>()
                    .unwrap_err()
                    .to_string()
                    .contains("unknown data"),
                "{bad}"
            );
        }
        // In a stored config, a bare folder name reads as that folder even where it does not exist.
        let stored: DataSpec = serde_json::from_str(r#""sprites""#).unwrap();
        assert_eq!(stored, DataSpec::Folder("sprites".into()));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let abs = "folder:some/where".parse::<DataSpec>().unwrap().absolute().unwrap();
        let want = std::env::current_dir().unwrap().join("some/where");
        assert_eq!(abs, DataSpec::Folder(want));
        let idx = "idx:a.idx,b.idx".parse::<DataSpec>().unwrap().absolute().unwrap();
        assert!(matches!(idx, DataSpec::Idx { images, labels: Some(l) } if images.is_absolute() && l.is_absolute()));
        assert_eq!(
            "emoji@grey"
                .parse::<DataSpec>()
                .unwrap()
                .absolute()
                .unwrap()
                .to_string(),
            "emoji@grey"
        );
    }
}
