//! Every parser of bytes a stranger could hand us, as one function per fuzz target (`fuzz/`, run by
//! scripts/fuzz.sh). The regression test (tests/fuzz_regressions.rs) replays each kept input through the
//! same function. Each returns normally whether the input is accepted or refused; a panic, an abort or an
//! allocation beyond the fuzzer's cap is a finding.

use std::path::Path;

/// Checkpoints, VAE and classifier weights, FID statistics: safetensors.
pub fn safetensors(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    let _ = crate::safetensors_io::parse(data, path);
    let _ = crate::fid::parse_stats(data, path);
}

/// A checkpoint's optimizer state (burn's burnpack format) checked against its weights, as
/// `train --resume` reads it; the input is a whole checkpoint file.
pub fn optimizer(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    if let Ok(c) = crate::safetensors_io::parse(data, path) {
        let _ = crate::train::checkpoint_optimizer(&c, 0.0, path);
    }
}

/// NumPy archives of FID statistics, and the arrays inside them.
pub fn npz(data: &[u8]) {
    let _ = crate::npz::parse(data);
    let _ = crate::npz::parse_npy(data);
    let _ = crate::fid::parse_stats(data, Path::new("fuzz.npz"));
}

/// MNIST-style IDX files, raw or gzip-compressed.
pub fn idx(data: &[u8]) {
    if let Ok(idx) = crate::data::idx::decode(data) {
        assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
    }
}

/// PNG input: data folders, edit inputs and masks, FID and LPIPS folders.
pub fn png(data: &[u8]) {
    for channels in [None, Some(1), Some(3)] {
        if let Ok(img) = crate::imageio::decode_png(data, channels) {
            assert_eq!(img.pixels.len(), img.channels * img.height * img.width);
        }
    }
}

/// The JSON of a run, a VAE or a classifier folder, checked as loading checks it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = serde_json::from_str::<crate::run::RunConfig>(text)
        && cfg.validate().is_ok()
    {
        let _ = cfg.conditioning();
    }
    if let Ok(meta) = serde_json::from_str::<crate::vae::VaeMeta>(text) {
        let _ = meta.validate();
    }
    if let Ok(meta) = serde_json::from_str::<crate::classifier::ClassifierMeta>(text) {
        let _ = meta.validate();
    }
}

/// Command-line text our own parsers read: edit masks (first two bytes: the image size) and backgrounds.
pub fn spec(data: &[u8]) {
    let [h, w, rest @ ..] = data else { return };
    let Ok(spec) = std::str::from_utf8(rest) else { return };
    if !spec.to_ascii_lowercase().ends_with(".png") {
        let (h, w) = (1 + *h as usize % 64, 1 + *w as usize % 64);
        if let Ok(mask) = crate::edit::Mask::parse(spec, h, w) {
            assert_eq!(mask.regen.len(), h * w);
            assert!(mask.regen.contains(&1.0));
        }
    }
    let _ = crate::data::emoji::parse_background(spec);
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, for the regression test.
pub const TARGETS: &[(&str, Target)] = &[
    ("safetensors", safetensors),
    ("optimizer", optimizer),
    ("npz", npz),
    ("idx", idx),
    ("png", png),
    ("config", config),
    ("spec", spec),
];
