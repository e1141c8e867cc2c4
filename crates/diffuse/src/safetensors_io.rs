//! Module parameters to and from safetensors files, by dotted path (`down.0.blocks.1.conv1.weight`).
//! Files are read whole and validated by the safetensors parser (header bounds, offsets, sizes) before
//! any tensor is built; every missing, extra or misshapen tensor is an error that names it.

use crate::{Error, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One parameter's values, with its id (the optimizer's state is keyed by it).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub id: u64,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct Collect {
    path: Vec<String>,
    out: BTreeMap<String, NamedTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let shape = t.dims().to_vec();
        let data = t.into_data().convert::<f32>().try_into_vec().expect("f32 parameter");
        self.out.insert(
            self.path.join("."),
            NamedTensor {
                id: p.id.val(),
                shape,
                data,
            },
        );
    }
}

/// Every float parameter of `module`, by path.
pub fn collect<M: Module>(module: &M) -> BTreeMap<String, NamedTensor> {
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// The parameters' paths, ids and shapes, with no values: a freshly built network stays uninitialised (its
/// random values are never made), which is all an import needs to rename weights into it.
pub fn shapes<M: Module>(module: &M) -> BTreeMap<String, NamedTensor> {
    struct Shapes(Vec<String>, BTreeMap<String, NamedTensor>);
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let shape = p.lazy_shape().to_vec();
            let t = NamedTensor {
                id: p.id.val(),
                shape,
                data: Vec::new(),
            };
            self.1.insert(self.0.join("."), t);
        }
    }
    let mut s = Shapes(Vec::new(), BTreeMap::new());
    module.visit(&mut s);
    s.1
}

struct Load<'a> {
    path: Vec<String>,
    src: &'a BTreeMap<String, NamedTensor>,
    used: usize,
    problems: Vec<String>,
    keep_ids: bool,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        let Some(t) = self.src.get(&key) else {
            self.problems.push(format!("missing tensor '{key}'"));
            return p;
        };
        self.used += 1;
        let want = p.lazy_shape().to_vec();
        if t.shape != want {
            self.problems
                .push(format!("'{key}' has shape {:?}, the model expects {want:?}", t.shape));
            return p;
        }
        let device = p.lazy_device();
        let value = Tensor::<D>::from_data(TensorData::new(t.data.clone(), t.shape.clone()), &device);
        let id = if self.keep_ids { p.id } else { ParamId::from(t.id) };
        p.transform_for_load(value, id)
    }
}

/// Replaces every parameter of `module` with the tensor of the same path. With `restore_ids`, the saved
/// parameter ids are restored too (needed to resume the optimizer). `origin` names the file in errors.
pub fn load<M: Module>(module: M, src: &BTreeMap<String, NamedTensor>, restore_ids: bool, origin: &Path) -> Result<M> {
    // Weights that are NaN or infinite would only show up later as black images or a NaN loss.
    if let Some((name, t)) = src.iter().find(|(_, t)| t.data.iter().any(|v| !v.is_finite())) {
        let bad = t.data.iter().filter(|v| !v.is_finite()).count();
        return Err(Error::checkpoint(
            origin,
            format!("weight '{name}' holds {bad} NaN or infinite values"),
        ));
    }
    let mut l = Load {
        path: Vec::new(),
        src,
        used: 0,
        problems: Vec::new(),
        keep_ids: !restore_ids,
    };
    let module = module.map(&mut l);
    if l.used != src.len() {
        let expected: std::collections::HashSet<String> = collect_paths(&module);
        let extra: Vec<&String> = src.keys().filter(|k| !expected.contains(*k)).take(3).collect();
        l.problems.push(format!(
            "{} tensors the model does not have, e.g. {extra:?}",
            src.len() - l.used
        ));
    }
    if !l.problems.is_empty() {
        let n = l.problems.len();
        let head = l.problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
        return Err(Error::checkpoint(
            origin,
            format!("does not fit the model in config.json ({n} problems: {head})"),
        ));
    }
    Ok(module)
}

fn collect_paths<M: Module>(module: &M) -> std::collections::HashSet<String> {
    struct Paths(Vec<String>, std::collections::HashSet<String>);
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.1.insert(self.0.join("."));
        }
    }
    let mut p = Paths(Vec::new(), Default::default());
    module.visit(&mut p);
    p.1
}

/// The contents of a safetensors file: f32 tensors (grouped by the prefix before the first '/'),
/// u8 blobs, and the string metadata.
#[derive(Debug, Default)]
pub struct Contents {
    pub groups: BTreeMap<String, BTreeMap<String, NamedTensor>>,
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub metadata: HashMap<String, String>,
}

/// The bytes of one tensor to write: name, shape, dtype, little-endian data.
type Raw = (String, Vec<usize>, Dtype, Vec<u8>);

fn f32_raw(name: String, t: &NamedTensor) -> Raw {
    (
        name,
        t.shape.clone(),
        Dtype::F32,
        t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// Serialises `tensors` with `metadata` to `path`, atomically.
fn write_raw(path: &Path, tensors: &[Raw], metadata: HashMap<String, String>) -> Result<()> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, shape, dtype, raw)| Ok((k.clone(), TensorView::new(*dtype, shape.clone(), raw)?)))
        .collect::<std::result::Result<_, safetensors::SafeTensorError>>()
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    crate::atomic::write(path, &out)
}

/// Writes groups of tensors as `group/path`, blobs as u8 tensors, and metadata; atomically.
pub fn write(path: &Path, contents: &Contents) -> Result<()> {
    let mut tensors: Vec<Raw> = Vec::new();
    let mut ids = BTreeMap::new();
    for (group, named) in &contents.groups {
        for (name, t) in named {
            let key = format!("{group}/{name}");
            ids.insert(key.clone(), t.id);
            tensors.push(f32_raw(key, t));
        }
    }
    for (name, blob) in &contents.blobs {
        tensors.push((name.clone(), vec![blob.len()], Dtype::U8, blob.clone()));
    }
    let mut metadata = contents.metadata.clone();
    metadata.insert(
        "diffuse.param_ids".into(),
        serde_json::to_string(&ids).expect("ids serialise"),
    );
    write_raw(path, &tensors, metadata)
}

/// Writes f32 tensors under their own names (no groups, no parameter ids), as other tools' files are; atomically.
pub fn write_plain(
    path: &Path,
    tensors: &BTreeMap<String, NamedTensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let raw: Vec<Raw> = tensors.iter().map(|(k, t)| f32_raw(k.clone(), t)).collect();
    write_raw(path, &raw, metadata)
}

/// Reads a file written by [`write`] (or any safetensors file of f32, f16 or bf16 tensors, held as f32: names
/// without '/' land in the group "").
pub fn read(path: &Path) -> Result<Contents> {
    parse(&std::fs::read(path).map_err(|e| Error::io(path, e))?, path)
}

/// [`read`] of bytes already in memory; `path` only names them in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Contents> {
    let bad = |r: String| Error::checkpoint(path, r);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let ids: BTreeMap<String, u64> = match metadata.get("diffuse.param_ids") {
        Some(s) => serde_json::from_str(s).map_err(|e| bad(format!("bad parameter ids ({e})")))?,
        None => BTreeMap::new(),
    };
    let mut c = Contents {
        metadata,
        ..Default::default()
    };
    for (name, view) in st.tensors() {
        let bytes = view.data();
        // Half-precision tensors (diffusers' fp16 and bf16 files) are held as f32.
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::U8 => {
                c.blobs.insert(name, bytes.to_vec());
                continue;
            }
            // Older transformers files keep each embedding's position indices (0, 1, 2, …) as an integer
            // buffer; they are no weights, and the positions are known anyway.
            Dtype::I64 | Dtype::I32 if name.ends_with("position_ids") => continue,
            other => {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {other:?}; only f32, f16 and bf16 are supported"
                )));
            }
        };
        let (group, key) = name.split_once('/').unwrap_or(("", &name));
        let id = ids.get(&name).copied().unwrap_or(0);
        c.groups.entry(group.to_string()).or_default().insert(
            key.to_string(),
            NamedTensor {
                id,
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::UNetConfig;

    fn tiny() -> UNetConfig {
        UNetConfig {
            base_channels: 8,
            heads: 2,
            ..UNetConfig::for_image(1, 8, 8)
        }
    }

    #[test]
    fn round_trip_is_bit_exact_and_restores_ids() {
        let device = crate::device::device();
        let net = tiny().init(&device).unwrap();
        let params = collect(&net);
        assert!(
            params.contains_key("down.0.blocks.0.conv1.weight"),
            "{:?}",
            params.keys().take(5).collect::<Vec<_>>()
        );
        let wrapped = crate::nn::NetConfig::Unet(tiny()).init(&device).unwrap();
        assert!(
            collect(&wrapped).contains_key("UNet.conv_in.weight"),
            "the enum variant prefixes paths"
        );
        let dir = std::env::temp_dir().join(format!("diffuse-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let mut contents = Contents::default();
        contents.groups.insert("model".into(), params.clone());
        contents.blobs.insert("blob".into(), vec![1, 2, 3]);
        contents.metadata.insert("step".into(), "7".into());
        write(&path, &contents).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.groups["model"], params);
        assert_eq!(back.blobs["blob"], vec![1, 2, 3]);
        assert_eq!(back.metadata["step"], "7");
        let fresh = tiny().init(&device).unwrap();
        assert_ne!(collect(&fresh), params);
        let loaded = load(fresh, &back.groups["model"], true, &path).unwrap();
        assert_eq!(collect(&loaded), params);

        // Truncation and a different architecture are clear errors.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
        assert!(
            read(&dir.join("cut.safetensors"))
                .unwrap_err()
                .to_string()
                .contains("not a valid safetensors")
        );
        let other = UNetConfig {
            base_channels: 16,
            ..tiny()
        }
        .init(&device)
        .unwrap();
        let e = load(other, &back.groups["model"], true, &path).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        // Non-finite weights are named.
        let mut poisoned = back.groups["model"].clone();
        poisoned.get_mut("down.0.blocks.0.conv1.weight").unwrap().data[3] = f32::NAN;
        let e = load(tiny().init(&device).unwrap(), &poisoned, true, &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'down.0.blocks.0.conv1.weight' holds 1 NaN or infinite"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
