//! `diffuse fetch`: the files diffuse can use but does not ship (the FID Inception weights, MNIST,
//! Fashion-MNIST), downloaded only when the user asks, from a mirror, each checked against its SHA-256
//! before it lands in the cache. Nothing else in diffuse touches the network.

use std::path::PathBuf;

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
