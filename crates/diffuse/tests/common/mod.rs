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

/// Trains a tiny UNet (8 base channels, batch 8) on the digits into `out`; returns its config.json.
pub fn train_tiny(out: &Path, steps: usize, extra: &[&str]) -> serde_json::Value {
    let steps = steps.to_string();
    let base = [
        "train",
        "--data",
        "digits",
        "--out",
        s(out),
        "--steps",
        &steps,
        "--batch-size",
        "8",
    ];
    ok(&[&base[..], &["--base-channels", "8", "--heads", "2", "--quiet"], extra].concat());
    serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
}

/// The emoji sprites of the shared folder (../shared beside the checkout, or $DIFFUSE_SHARED), or None after
/// saying that the test skips.
pub fn emoji() -> Option<String> {
    let dir = std::env::var_os("DIFFUSE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("data/emoji-noto");
    if dir.exists() {
        return Some(format!("emoji:{}", dir.display()));
    }
    eprintln!(
        "SKIP: {} not found (set DIFFUSE_SHARED to the shared folder)",
        dir.display()
    );
    None
}
