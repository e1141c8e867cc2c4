//! `diffuse fetch`: the files diffuse can use but does not ship (the FID Inception weights, MNIST,
//! Fashion-MNIST), downloaded only when the user asks, from a mirror, each checked against its SHA-256
//! before it lands in the cache. Nothing else in diffuse touches the network.
//!
//! Gzipped files are checked on their decompressed bytes, so that a mirror that recompressed them still
//! passes while one that serves other data does not.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file accepted from a mirror (the Inception weights are 87 MB).
const MAX_BYTES: u64 = 256 << 20;

/// The folder of weights and reference files beside a checkout: $DIFFUSE_SHARED, else ../shared.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("DIFFUSE_SHARED").map_or_else(|| PathBuf::from("../shared"), PathBuf::from)
}

/// The cache: $DIFFUSE_CACHE, else $XDG_CACHE_HOME/diffuse, else ~/.cache/diffuse.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DIFFUSE_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("diffuse"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/diffuse"))
}

/// Something `diffuse fetch` can get: files into one folder of the cache.
pub struct Item {
    pub name: &'static str,
    /// Folder inside the cache (the data loaders look for `mnist/` and `fashion-mnist/` there).
    pub dir: &'static str,
    /// Where to download from when no --mirror is given (None: a mirror must be named).
    pub default_mirror: Option<&'static str>,
    /// (file name, SHA-256 of its bytes, decompressed first for .gz files).
    pub files: &'static [(&'static str, &'static str)],
}

pub const ITEMS: &[Item] = &[
    Item {
        name: "inception",
        dir: "weights",
        default_mirror: None,
        files: &[(
            crate::fid::WEIGHTS_FILE,
            "e970becceb92682d7a964da5f03e0f9e88bf2b7e56002293b9777fa76948cb21",
        )],
    },
    Item {
        name: "mnist",
        dir: "mnist",
        default_mirror: Some("https://ossci-datasets.s3.amazonaws.com/mnist"),
        files: &[
            (
                "train-images-idx3-ubyte.gz",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ],
    },
    Item {
        name: "fashion-mnist",
        dir: "fashion-mnist",
        default_mirror: Some("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"),
        files: &[
            (
                "train-images-idx3-ubyte.gz",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ],
    },
];

pub fn item(name: &str) -> Result<&'static Item> {
    ITEMS.iter().find(|i| i.name == name).ok_or_else(|| {
        let names: Vec<&str> = ITEMS.iter().map(|i| i.name).collect();
        Error::Config(format!(
            "nothing called '{name}' to fetch; choose one of {}",
            names.join(", ")
        ))
    })
}

/// SHA-256 (hex) of a file's content, decompressed first when it is named .gz.
fn digest(name: &str, bytes: &[u8]) -> Result<String> {
    let mut hasher = Sha256::new();
    if name.ends_with(".gz") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(4 * MAX_BYTES)
            .read_to_end(&mut plain)
            .map_err(|e| Error::Data(format!("{name}: not a valid gzip file ({e})")))?;
        hasher.update(&plain);
    } else {
        hasher.update(bytes);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn download(url: &str) -> Result<Vec<u8>> {
    let fail = |e: String| Error::Config(format!("download of {url} failed: {e}"));
    let mut response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_BYTES)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))
}

/// What happened to one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Downloaded,
    AlreadyThere,
}

/// Gets every file of `item` from `mirror` (or its default) into `cache/<dir>/`, skipping files already
/// there with the right checksum. A file is written (atomically) only after its checksum matched.
pub fn fetch(item: &Item, mirror: Option<&str>, cache: &Path) -> Result<Vec<(PathBuf, Outcome)>> {
    let mirror = mirror.or(item.default_mirror).ok_or_else(|| {
        Error::Config(format!(
            "{} has no default mirror: give --mirror URL (a folder serving {})",
            item.name, item.files[0].0
        ))
    })?;
    let dir = cache.join(item.dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut done = Vec::new();
    for (file, sha) in item.files {
        let path = dir.join(file);
        if let Ok(bytes) = std::fs::read(&path)
            && digest(file, &bytes).is_ok_and(|d| d == *sha)
        {
            done.push((path, Outcome::AlreadyThere));
            continue;
        }
        let url = format!("{}/{file}", mirror.trim_end_matches('/'));
        let bytes = download(&url)?;
        let got = digest(file, &bytes)?;
        if got != *sha {
            return Err(Error::Data(format!(
                "{url}: SHA-256 {got} does not match the expected {sha}; nothing was written"
            )));
        }
        crate::atomic::write(&path, &bytes)?;
        done.push((path, Outcome::Downloaded));
    }
    Ok(done)
}
