//! diffusers folders in and out. The networks are the project's own (`nn/`); what differs is names and
//! layouts, which each model's `source` function states once for both directions:
//!
//! - [`autoencoder_kl`]: `AutoencoderKL` folders read as the latent-diffusion VAE;
//! - [`unet`]: `UNet2DModel` configs and weights, to and from the project's UNet;
//! - [`scheduler`]: `scheduler_config.json` to and from a run's schedule, prediction and clipping;
//! - [`pipeline`]: whole `DDPMPipeline`/`DDIMPipeline` folders to and from run directories.

pub mod autoencoder_kl;
#[cfg(test)]
mod parity_tests;
pub mod pipeline;
pub mod scheduler;
#[cfg(test)]
mod sd_tests;
pub mod unet;

use crate::safetensors_io::{self, NamedTensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

/// diffusers' config defaults that more than one model's config shares (serde `default` functions).
mod default {
    pub fn three() -> usize {
        3
    }
    pub fn one() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn silu() -> String {
        "silu".into()
    }
}

/// How one of our tensors is laid out in a diffusers file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The same shape and order.
    Same,
    /// A `Linear` weight: [in, out] here (burn), [out, in] in PyTorch.
    Linear,
    /// A 1×1 convolution [out, in, 1, 1] here that is a `Linear` [out, in] there: the same values.
    Flat,
}

/// Where one of our parameters lives in a diffusers file: one tensor, or the q, k and v projections
/// stacked along the output (our attention's single 1×1 convolution).
#[derive(Debug, PartialEq)]
pub enum Source {
    One(String, Layout),
    Stacked([String; 3]),
}

impl Source {
    pub fn same(name: impl Into<String>) -> Source {
        Source::One(name.into(), Layout::Same)
    }
}

/// The name older diffusers files use for an attention projection (`query`, `key`, `value`, `proj_attn`).
fn legacy(name: &str) -> Option<String> {
    [
        (".to_q.", ".query."),
        (".to_k.", ".key."),
        (".to_v.", ".value."),
        (".to_out.0.", ".proj_attn."),
    ]
    .iter()
    .find(|(new, _)| name.contains(new))
    .map(|(new, old)| name.replace(new, old))
}

/// The PyTorch shape of one of our tensors of shape `ours` laid out as `layout` (for one of q, k, v when
/// `stacked`).
fn torch_shape(ours: &[usize], layout: Layout, stacked: bool) -> Vec<usize> {
    let mut s = ours.to_vec();
    if stacked {
        s[0] /= 3;
    }
    match layout {
        Layout::Same => s,
        Layout::Linear => s.into_iter().rev().collect(),
        Layout::Flat => {
            s.truncate(2.min(s.len()));
            s
        }
    }
}

/// [rows, cols] → [cols, rows].
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Whether a file's tensor of shape `theirs` holds what a tensor of shape `want` (PyTorch's) does: the same
/// shape, or the same up to trailing ones (a projection stored as a 1×1 convolution by older files).
fn fits(theirs: &[usize], want: &[usize]) -> bool {
    let trim = |s: &[usize]| {
        let n = s.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
        s[..n.max(1).min(s.len())].to_vec()
    };
    theirs == want || trim(theirs) == trim(want)
}

/// Renames, transposes and stacks diffusers tensors into our parameter layout, checking that every tensor of
/// the file is used and every parameter found with its shape (`ours` gives names and shapes; its values, if any,
/// are not read: [`crate::safetensors_io::shapes`] makes it without initialising the network).
pub fn import(
    ours: &BTreeMap<String, NamedTensor>,
    theirs: &BTreeMap<String, NamedTensor>,
    source: impl Fn(&str) -> Source,
    path: &Path,
) -> Result<BTreeMap<String, NamedTensor>> {
    let mut used = BTreeSet::new();
    let mut fetch = |name: &str, want: &[usize], key: &str| -> Result<&NamedTensor> {
        let found = std::iter::once(name.to_string())
            .chain(legacy(name))
            .find(|n| theirs.contains_key(n))
            .ok_or_else(|| Error::checkpoint(path, format!("has no tensor {name}")))?;
        let t = &theirs[&found];
        if !fits(&t.shape, want) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "{found} is {:?} where the config asks for {want:?} (our {key}); is config.json the one of these weights?",
                    t.shape
                ),
            ));
        }
        used.insert(found);
        Ok(t)
    };
    let mut out = BTreeMap::new();
    for (key, mine) in ours {
        let data: Vec<f32> = match source(key) {
            Source::One(name, layout) => {
                let t = fetch(&name, &torch_shape(&mine.shape, layout, false), key)?;
                match layout {
                    Layout::Linear => transpose(&t.data, mine.shape[1], mine.shape[0]),
                    Layout::Same | Layout::Flat => t.data.clone(),
                }
            }
            Source::Stacked(names) => {
                let want = torch_shape(&mine.shape, Layout::Flat, true);
                let mut all = Vec::with_capacity(mine.shape.iter().product());
                for n in &names {
                    all.extend_from_slice(&fetch(n, &want, key)?.data);
                }
                all
            }
        };
        out.insert(
            key.clone(),
            NamedTensor {
                id: 0,
                shape: mine.shape.clone(),
                data,
            },
        );
    }
    let unused: Vec<&String> = theirs.keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!(
                "{} tensors do not fit the config (first: {}); is config.json the one of these weights?",
                unused.len(),
                unused[0]
            ),
        ));
    }
    Ok(out)
}

/// Our parameters as diffusers names and PyTorch layouts: [`import`]'s inverse.
pub fn export(ours: &BTreeMap<String, NamedTensor>, source: impl Fn(&str) -> Source) -> BTreeMap<String, NamedTensor> {
    let mut out = BTreeMap::new();
    for (key, mine) in ours {
        let tensor = |shape: Vec<usize>, data: Vec<f32>| NamedTensor { id: 0, shape, data };
        match source(key) {
            Source::One(name, layout) => {
                let data = match layout {
                    Layout::Linear => transpose(&mine.data, mine.shape[0], mine.shape[1]),
                    Layout::Same | Layout::Flat => mine.data.clone(),
                };
                out.insert(name, tensor(torch_shape(&mine.shape, layout, false), data));
            }
            Source::Stacked(names) => {
                let third = mine.data.len() / 3;
                for (i, name) in names.into_iter().enumerate() {
                    let part = mine.data[i * third..(i + 1) * third].to_vec();
                    out.insert(name, tensor(torch_shape(&mine.shape, Layout::Flat, true), part));
                }
            }
        }
    }
    out
}

/// Reads a diffusers weights file (f32, f16 or bf16; held as f32), refusing before reading one whose f32
/// tensors would not fit in the memory available.
pub fn read_weights(path: &Path) -> Result<BTreeMap<String, NamedTensor>> {
    let need = f32_bytes(path)?;
    if let Some(free) = available_memory() {
        // At the peak, the file's tensors as f32, the network, a copy of its parameters and the translated
        // tensors are in memory at once; the file's bytes before that.
        let file = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        let peak = file.max(need.saturating_mul(3)).saturating_add(need);
        if peak > free {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(Error::checkpoint(
                path,
                format!(
                    "needs about {:.1} GiB to load ({:.1} GiB of f32 weights); {:.1} GiB of memory is available",
                    gib(peak),
                    gib(need),
                    gib(free)
                ),
            ));
        }
    }
    let mut contents = safetensors_io::read(path)?;
    Ok(contents.groups.remove("").unwrap_or_default())
}

/// The bytes a safetensors file's tensors take as f32, from its header alone.
fn f32_bytes(path: &Path) -> Result<u64> {
    use std::io::Read;
    let bad = |m: String| Error::checkpoint(path, m);
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("not a valid safetensors file (shorter than its header)".into()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(format!("not a valid safetensors file (a {len}-byte header)")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("not a valid safetensors file (truncated header)".into()))?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let numel = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("shape")?.as_array().cloned())
        .map(|s| {
            s.iter()
                .map(|d| d.as_u64().unwrap_or(0))
                .fold(1u64, u64::saturating_mul)
        })
        .fold(0u64, u64::saturating_add);
    Ok(numel.saturating_mul(4))
}

/// MemAvailable of /proc/meminfo, where there is one.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Writes tensors under their own names (no groups), as diffusers' safetensors files are; atomically.
pub fn write_weights(path: &Path, tensors: &BTreeMap<String, NamedTensor>) -> Result<()> {
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors_io::write_plain(path, tensors, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_go_there_and_back() {
        let t = |shape: Vec<usize>| NamedTensor {
            id: 0,
            data: (0..shape.iter().product::<usize>()).map(|i| i as f32).collect(),
            shape,
        };
        let ours = BTreeMap::from([
            ("lin.weight".to_string(), t(vec![2, 3])),
            ("qkv.weight".to_string(), t(vec![6, 2, 1, 1])),
            ("proj.weight".to_string(), t(vec![2, 2, 1, 1])),
            ("conv.weight".to_string(), t(vec![1, 2, 3, 3])),
        ]);
        let source = |k: &str| match k {
            "lin.weight" => Source::One("l.weight".into(), Layout::Linear),
            "qkv.weight" => Source::Stacked(["q.weight".into(), "k.weight".into(), "v.weight".into()]),
            "proj.weight" => Source::One("to_out.0.weight".into(), Layout::Flat),
            _ => Source::same(k),
        };
        let theirs = export(&ours, source);
        // A Linear [in 2, out 3] is PyTorch's [3, 2], transposed.
        assert_eq!(theirs["l.weight"].shape, vec![3, 2]);
        assert_eq!(theirs["l.weight"].data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(theirs["k.weight"].shape, vec![2, 2]);
        assert_eq!(theirs["k.weight"].data, vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(theirs["to_out.0.weight"].shape, vec![2, 2]);
        assert_eq!(theirs["conv.weight"].shape, vec![1, 2, 3, 3]);
        let back = import(&ours, &theirs, source, Path::new("w")).unwrap();
        assert_eq!(back, ours);
        // A tensor of the wrong shape is named with both shapes; an extra one is refused.
        let mut wrong = theirs.clone();
        wrong.get_mut("l.weight").unwrap().shape = vec![2, 3];
        let e = import(&ours, &wrong, source, Path::new("w")).unwrap_err().to_string();
        assert!(e.contains("l.weight is [2, 3] where the config asks for [3, 2]"), "{e}");
        let mut extra = theirs.clone();
        extra.insert("stray.bias".into(), t(vec![1]));
        let e = import(&ours, &extra, source, Path::new("w")).unwrap_err().to_string();
        assert!(e.contains("1 tensors do not fit the config (first: stray.bias)"), "{e}");
    }
}
