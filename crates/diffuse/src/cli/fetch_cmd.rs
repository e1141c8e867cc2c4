//! `diffuse fetch inception|mnist|fashion-mnist`: checked downloads into the cache.

use clap::Args;
use diffuse::fetch::{self, Outcome};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse fetch mnist\n  \
diffuse fetch inception --mirror https://example.org/diffuse-files\n\n\
Files land in $DIFFUSE_CACHE (else $XDG_CACHE_HOME/diffuse, else ~/.cache/diffuse): weights/ for the \
Inception, mnist/ and fashion-mnist/ for the data, where `--data mnist` and `diffuse fid` look for them. \
Each file is checked against its SHA-256 before it is written.")]
pub struct FetchArgs {
    /// What to get: inception, mnist or fashion-mnist.
    item: String,
    /// Base URL serving the files (default: the item's usual mirror; the Inception weights have none).
    #[arg(long)]
    mirror: Option<String>,
    /// Cache folder (default as above).
    #[arg(long)]
    cache: Option<PathBuf>,
}

pub fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let item = fetch::item(&a.item)?;
    let cache = a
        .cache
        .or_else(fetch::cache_dir)
        .ok_or_else(|| anyhow::anyhow!("no cache folder: give --cache DIR or set DIFFUSE_CACHE"))?;
    for (path, outcome) in fetch::fetch(item, a.mirror.as_deref(), &cache)? {
        let what = match outcome {
            Outcome::Downloaded => "downloaded, checksum matches",
            Outcome::AlreadyThere => "already there, checksum matches",
        };
        println!("{}: {what}", path.display());
    }
    Ok(())
}
