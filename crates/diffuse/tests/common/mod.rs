//! Helpers shared by the tests that run the `diffuse` binary.
#![allow(dead_code)] // each test file uses its own share of them

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("binary runs")
}

pub fn ok(args: &[&str]) -> String {
    let o = diffuse(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail cleanly: exit 1, a one-line `error:` message containing `needle`, no panic.
pub fn fails(args: &[&str], needle: &str) {
    let o = diffuse(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?} should fail: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The arguments of a tiny UNet's training on the digits (8 base channels, 2 heads, batch 8) into `out`.
pub fn tiny_args(out: &Path, steps: usize) -> Vec<String> {
    let steps = steps.to_string();
    let words = [
        "train",
        "--data",
        "digits",
        "--out",
        s(out),
        "--steps",
        &steps,
        "--batch-size",
        "8",
        "--base-channels",
        "8",
        "--heads",
        "2",
        "--quiet",
    ];
    words.iter().map(|w| w.to_string()).collect()
}

/// Trains the tiny UNet of [`tiny_args`] into `out`; returns its config.json.
pub fn train_tiny(out: &Path, steps: usize, extra: &[&str]) -> serde_json::Value {
    let args = tiny_args(out, steps);
    let words: Vec<&str> = args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
    ok(&words);
    serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
}

/// A path inside the shared folder (../shared beside the checkout, or $DIFFUSE_SHARED), or None after saying
/// that the test skips.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let path = std::env::var_os("DIFFUSE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join(sub);
    if path.exists() {
        return Some(path);
    }
    eprintln!(
        "SKIP: {} not found (set DIFFUSE_SHARED to the shared folder)",
        path.display()
    );
    None
}

/// The emoji sprites of the shared folder as a `--data` spec, or None after saying that the test skips.
pub fn emoji() -> Option<String> {
    shared("data/emoji-noto").map(|dir| format!("emoji:{}", dir.display()))
}
