//! diffusers' UNet2DModel and pipelines against the same networks here (`tests/fixtures/diffusers_unet`, made by
//! `scripts/make_diffusers_unet_fixture.py`; its docstring states the weight formula both sides compute).

use super::pipeline::{self, ImportOptions};
use super::unet::{self, UNet2DModelConfig};
use crate::denoise::{Cond, Guidance, LevelInput, NetDenoiser};
use crate::nn::{Net, NetConfig, UNet, UNetConfig};
use crate::run::{self, RunConfig, ScheduleConfig, Weights};
use crate::safetensors_io::{self, Contents, NamedTensor};
use crate::sample::{Method, Plan};
use burn::module::Module;
use burn::prelude::*;
use diffuse_math::{BetaSchedule, Grid, Precond, Prediction, Process, TimestepSpacing};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers_unet")
}

fn tensors() -> BTreeMap<String, NamedTensor> {
    safetensors_io::read(&fixture().join("parity.safetensors"))
        .unwrap()
        .groups
        .remove("")
        .unwrap()
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("cases.json")).unwrap()).unwrap()
}

/// The fixture's value formula for a diffusers tensor (see the script's docstring).
fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let phase = (hash % 10007) as f64 / 1000.0;
    let n: usize = shape.iter().product();
    let fan_in: usize = shape[1..].iter().product();
    let base = if name.ends_with("weight") { 1.0 } else { 0.0 };
    (0..n)
        .map(|i| {
            let s = (0.7 * i as f64 + phase).sin();
            (if shape.len() >= 2 {
                s / (fan_in as f64).sqrt()
            } else {
                base + 0.1 * s
            }) as f32
        })
        .collect()
}

/// `cfg`'s network with the fixture's weights, set through diffusers' names (import's own path).
fn with_formula(cfg: &UNetConfig) -> UNet {
    let device = crate::device::device();
    let net = cfg.init(&device).unwrap();
    let ours = safetensors_io::collect(&net);
    let theirs: BTreeMap<String, NamedTensor> = super::export(&ours, unet::source)
        .into_iter()
        .map(|(name, t)| {
            let data = formula(&name, &t.shape);
            (name, NamedTensor { data, ..t })
        })
        .collect();
    let src = super::import(&ours, &theirs, unet::source, Path::new("formula")).unwrap();
    safetensors_io::load(net, &src, false, Path::new("formula")).unwrap()
}

fn tensor4(t: &NamedTensor) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        &crate::device::device(),
    )
}

fn vector(t: &NamedTensor) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), [t.data.len()]),
        &crate::device::device(),
    )
}

fn labels(t: &NamedTensor) -> Tensor<1, Int> {
    let v: Vec<i64> = t.data.iter().map(|&c| c as i64).collect();
    Tensor::from_data(TensorData::new(v, [t.data.len()]), &crate::device::device())
}

/// max |a − b| / max |b|.
fn relative(a: Tensor<4>, b: &NamedTensor) -> f32 {
    assert_eq!(a.dims().to_vec(), b.shape);
    let a = crate::sample::to_vec(a);
    let diff = a.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    diff / b.data.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

/// The DDPM CIFAR-10 and 256×256 networks and a config with every option: diffusers' outputs to 1e-4, and the
/// full-size networks build with the parameter counts diffusers reports.
#[test]
fn unet_outputs_match_diffusers() {
    let want = tensors();
    for case in cases()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config: UNet2DModelConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let size = case["size"].as_u64().unwrap() as usize;
        let net = with_formula(&config.unet_config(size, size).unwrap());
        let params = case["params"].as_u64().unwrap() as usize;
        assert_eq!(net.num_params(), params, "{name}");
        let (full, _) = config.sample_size().unwrap().unwrap();
        let device = crate::device::device();
        let full_size = config.unet_config(full, full).unwrap().init(&device).unwrap();
        assert_eq!(full_size.num_params(), params, "{name} at {full}×{full}");
        let classes = want.get(&format!("{name}.labels")).map(labels);
        let out = net.forward(
            tensor4(&want[&format!("{name}.x")]),
            vector(&want[&format!("{name}.t")]),
            classes,
        );
        let err = relative(out, &want[&format!("{name}.out")]);
        assert!(err < 1e-4, "{name}: relative difference {err}");
    }
}

/// diffusers' DDIMPipeline (10 steps, η 0, also with steps_offset 1) and DDPMPipeline (10 steps, its draws
/// replayed) on a small network with the DDPM CIFAR-10 scheduler: the same samples from the same noise.
#[test]
fn ddim_and_ddpm_trajectories_match_diffusers_pipelines() {
    let want = tensors();
    let info = &cases()["trajectories"];
    let config: UNet2DModelConfig = serde_json::from_value(info["config"].clone()).unwrap();
    let net = Net::UNet(with_formula(&config.unet_config(8, 8).unwrap()));
    let schedule = ScheduleConfig::new(BetaSchedule::Linear, 1000, Some((1e-4, 0.02)))
        .build()
        .unwrap();
    let input = LevelInput::Discrete(schedule.clone());
    let den = NetDenoiser {
        net: &net,
        cond: &input,
        precond: Precond::Vp(Prediction::Eps),
        clip: Some(1.0),
        guidance: Guidance::default(),
    };
    let leading = Grid::Timesteps {
        spacing: TimestepSpacing::Leading,
        offset: 0,
    };
    let process = || Process::Discrete(schedule.clone());
    let ddim = Plan::on_grid(Method::Ddim { eta: 0.0 }, process(), leading, 10).unwrap();
    let visited: Vec<f64> = ddim.knots().iter().map(|k| k.t).take(10).collect();
    let theirs: Vec<f64> = info["ddim_timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(visited, theirs);
    let x_t = tensor4(&want["ddim.x_t"]);
    let s = crate::sample::run_replaying(&den, &ddim, x_t.clone(), Vec::new(), Cond::default());
    let err = relative(s.x, &want["ddim.out"]);
    assert!(err < 1e-4, "DDIM: relative difference {err}");

    // steps_offset 1: every timestep one later.
    let shifted = Grid::Timesteps {
        spacing: TimestepSpacing::Leading,
        offset: 1,
    };
    let plan = Plan::on_grid(Method::Ddim { eta: 0.0 }, process(), shifted, 10).unwrap();
    assert_eq!(plan.knots()[0].t, 901.0);
    let s = crate::sample::run_replaying(&den, &plan, x_t.clone(), Vec::new(), Cond::default());
    let image = s.x.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0);
    let err = relative(image, &want["ddim_offset.image"]);
    assert!(err < 1e-4, "DDIM with steps_offset 1: relative difference {err}");

    let ddpm = Plan::on_grid(Method::Ddpm { large_variance: false }, process(), leading, 10).unwrap();
    let draws = &want["ddpm.draws"];
    let per = draws.data.len() / draws.shape[0];
    let replay = (0..draws.shape[0])
        .map(|k| {
            let t = NamedTensor {
                id: 0,
                shape: draws.shape[1..].to_vec(),
                data: draws.data[k * per..(k + 1) * per].to_vec(),
            };
            tensor4(&t)
        })
        .collect();
    let s = crate::sample::run_replaying(&den, &ddpm, x_t, replay, Cond::default());
    let image = s.x.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0);
    let err = relative(image, &want["ddpm.image"]);
    assert!(err < 1e-4, "DDPM: relative difference {err}");
}

/// A folder `diffuse export` wrote: diffusers' UNet2DModel gives the same outputs (null class included), import
/// restores the run's classes, and exporting the imported run writes the same files byte for byte.
#[test]
fn exported_folder_matches_diffusers_and_exports_again_unchanged() {
    let want = tensors();
    let device = crate::device::device();
    let folder = fixture().join("exported");
    let (imported, net) = pipeline::read(&folder, &ImportOptions::default(), &device).unwrap();
    let cfg = &imported.config;
    assert_eq!(cfg.class_names.len(), 10);
    assert!(net.has_null_class() && matches!(cfg.objective, crate::objective::Objective::Flow { .. }));
    let out = net.forward(
        tensor4(&want["exported.x"]),
        vector(&want["exported.t"]),
        Some(labels(&want["exported.labels"])),
    );
    let err = relative(out, &want["exported.out"]);
    assert!(err < 1e-4, "exported: relative difference {err}");

    let dir = std::env::temp_dir().join(format!("diffuse-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pipeline::import(&folder, &dir.join("run"), &ImportOptions::default(), &device).unwrap();
    pipeline::export(&dir.join("run"), &dir.join("again"), Weights::Ema, &device).unwrap();
    for file in [
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "model_index.json",
    ] {
        let a = std::fs::read(folder.join(file)).unwrap();
        let b = std::fs::read(dir.join("again").join(file)).unwrap();
        assert!(a == b, "{file} differs after import and export");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a run of `cfg` with its network's current (random) weights.
fn write_run(cfg: &RunConfig, dir: &Path) -> Net {
    let net = cfg.net.init(&crate::device::device()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    cfg.write(dir).unwrap();
    let mut contents = Contents::default();
    contents.groups.insert("model".into(), safetensors_io::collect(&net));
    contents.groups.insert("ema".into(), safetensors_io::collect(&net));
    contents.metadata.insert("step".into(), "0".into());
    safetensors_io::write(&dir.join(run::CHECKPOINT_FILE), &contents).unwrap();
    net
}

/// A conditional discrete-diffusion run with every UNet option exports and imports back to bit-identical outputs
/// and the same process; runs diffusers cannot express are refused by name.
#[test]
fn export_then_import_is_bit_identical() {
    let spec = crate::data::DataSpec::Digits;
    let data = spec.load(crate::data::Split::Train).unwrap();
    let mut cfg = RunConfig::for_data(&spec, &data).conditional(0.1);
    cfg.prediction = Prediction::V;
    cfg.schedule = ScheduleConfig::new(BetaSchedule::Cosine, 1000, None);
    cfg.clip_sample = Some(2.0);
    if let NetConfig::Unet(u) = &mut cfg.net {
        *u = UNetConfig {
            base_channels: 16,
            heads: 2,
            scale_shift: true,
            flip_sin_to_cos: true,
            freq_shift: 1.0,
            norm_eps: 1e-6,
            downsample_pad: crate::nn::DownsamplePad::RightBottom,
            ..u.clone()
        };
    }
    let dir = std::env::temp_dir().join(format!("diffuse-roundtrip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = write_run(&cfg, &dir.join("run"));
    let device = crate::device::device();
    pipeline::export(&dir.join("run"), &dir.join("folder"), Weights::Ema, &device).unwrap();
    let back = pipeline::import(
        &dir.join("folder"),
        &dir.join("back"),
        &ImportOptions::default(),
        &device,
    )
    .unwrap();
    let loaded = run::load(&dir.join("back"), Weights::Ema, &device).unwrap();
    let c = &back.config;
    assert_eq!(
        (c.prediction, &c.schedule, c.clip_range()),
        (cfg.prediction, &cfg.schedule, Some(2.0))
    );
    // The same network, its heads named by size (diffusers' way) instead of by count.
    assert_eq!(loaded.net.num_params(), net.num_params());
    assert_eq!(c.class_names, cfg.class_names);
    let x = Tensor::<4>::random([3, 1, 8, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1>::from_floats([3.0, 400.0, 999.0], &device);
    let classes = || Some(Tensor::<1, Int>::from_ints([0, 7, 10], &device));
    let a = crate::sample::to_vec(net.forward(x.clone(), t.clone(), classes()));
    let b = crate::sample::to_vec(loaded.net.forward(x, t, classes()));
    assert_eq!(a, b);
    // Nothing is written over an existing folder; EDM runs are refused by name.
    let e = pipeline::export(&dir.join("run"), &dir.join("folder"), Weights::Ema, &device).unwrap_err();
    assert!(e.to_string().contains("already holds files"), "{e}");
    let mut edm = cfg
        .clone()
        .with_objective(crate::objective::Objective::from_name("edm").unwrap());
    edm.prediction = Prediction::Eps;
    write_run(&edm, &dir.join("edm"));
    let e = pipeline::export(&dir.join("edm"), &dir.join("edm-out"), Weights::Ema, &device).unwrap_err();
    assert!(e.to_string().contains("edm runs have no diffusers scheduler"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad folders: each a one-line error naming the file and the key or tensor.
#[test]
fn bad_folders_are_refused_by_name() {
    let device = crate::device::device();
    let dir = std::env::temp_dir().join(format!("diffuse-badimport-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let copy = |name: &str| {
        let to = dir.join(name);
        for sub in ["unet", "scheduler"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
        }
        for f in [
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json",
        ] {
            std::fs::copy(fixture().join("exported").join(f), to.join(f)).unwrap();
        }
        to
    };
    let err = |folder: &Path| {
        pipeline::read(folder, &ImportOptions::default(), &device)
            .unwrap_err()
            .to_string()
    };
    let edit = |path: PathBuf, from: &str, to: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    let missing = copy("missing");
    std::fs::remove_file(missing.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    assert!(err(&missing).contains("has no diffusion_pytorch_model.safetensors"));
    let block = copy("block");
    edit(
        block.join("unet/config.json"),
        "\"AttnDownBlock2D\"",
        "\"CrossAttnDownBlock2D\"",
    );
    let e = err(&block);
    assert!(
        e.contains("unet/config.json") && e.contains("down block type CrossAttnDownBlock2D"),
        "{e}"
    );
    let shape = copy("shape");
    edit(
        shape.join("unet/config.json"),
        "\"layers_per_block\": 1",
        "\"layers_per_block\": 2",
    );
    let e = err(&shape);
    assert!(
        e.contains("diffusion_pytorch_model.safetensors") && e.contains("has no tensor down_blocks.0.resnets.1"),
        "{e}"
    );
    let channels = copy("channels");
    edit(
        channels.join("unet/config.json"),
        "\"block_out_channels\": [\n    16,\n    32\n  ]",
        "\"block_out_channels\": [\n    16,\n    48\n  ]",
    );
    let e = err(&channels);
    assert!(e.contains("where the config asks for"), "{e}");
    let cut = copy("cut");
    let weights = cut.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert!(err(&cut).contains("not a valid safetensors file"));
    let sched = copy("sched");
    edit(
        sched.join("scheduler/scheduler_config.json"),
        "FlowMatchEulerDiscreteScheduler",
        "LMSDiscreteScheduler",
    );
    let e = err(&sched);
    assert!(
        e.contains("scheduler_config.json") && e.contains("LMSDiscreteScheduler is not supported"),
        "{e}"
    );
    assert!(err(&dir.join("nothing")).contains("not a diffusers pipeline or UNet folder"));
    // Latent pipelines: their UNet makes latents, not images.
    let ldm = copy("ldm");
    std::fs::write(ldm.join("model_index.json"), r#"{"_class_name": "LDMPipeline"}"#).unwrap();
    let e = err(&ldm);
    assert!(
        e.contains("model_index.json") && e.contains("LDMPipeline is not supported"),
        "{e}"
    );
    std::fs::remove_file(ldm.join("model_index.json")).unwrap();
    std::fs::create_dir_all(ldm.join("vqvae")).unwrap();
    assert!(err(&ldm).contains("has vqvae/"));
    // A header that claims more than memory holds is refused before anything is allocated for it.
    let huge = copy("huge");
    let header = br#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(huge.join("unet/diffusion_pytorch_model.safetensors"), bytes).unwrap();
    let e = err(&huge);
    assert!(
        e.contains("needs about") && e.contains("GiB of memory is available"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// fp16 and bf16 weights (diffusers' half-precision variants) load, held as f32: the outputs move by about the
/// half formats' rounding and no more.
#[test]
fn half_precision_weights_load() {
    use safetensors::tensor::{Dtype, TensorView};
    let device = crate::device::device();
    let folder = fixture().join("exported");
    let x = Tensor::<4>::random([2, 1, 8, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1>::from_floats([20.0, 700.0], &device);
    let out =
        |net: &Net| crate::sample::to_vec(net.forward(x.clone(), t.clone(), Some(Tensor::from_ints([3, 10], &device))));
    let full = out(&pipeline::read(&folder, &ImportOptions::default(), &device).unwrap().1);
    let scale = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let theirs = super::read_weights(&folder.join("unet").join(super::WEIGHTS)).unwrap();
    for (dtype, tolerance) in [(Dtype::F16, 5e-3), (Dtype::BF16, 5e-2)] {
        let dir = std::env::temp_dir().join(format!("diffuse-half-{dtype:?}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("unet")).unwrap();
        std::fs::copy(folder.join("unet/config.json"), dir.join("unet/config.json")).unwrap();
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = theirs
            .iter()
            .map(|(k, v)| {
                let bytes = v
                    .data
                    .iter()
                    .flat_map(|&f| match dtype {
                        Dtype::F16 => half::f16::from_f32(f).to_le_bytes(),
                        _ => half::bf16::from_f32(f).to_le_bytes(),
                    })
                    .collect();
                (k.clone(), v.shape.clone(), bytes)
            })
            .collect();
        let views: Vec<(String, TensorView)> = raw
            .iter()
            .map(|(k, s, b)| (k.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        let path = dir.join("unet").join("diffusion_pytorch_model.fp16.safetensors");
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let half = out(&pipeline::read(&dir, &ImportOptions::default(), &device).unwrap().1);
        let diff = full
            .iter()
            .zip(&half)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
            / scale;
        assert!(diff > 0.0 && diff < tolerance, "{dtype:?}: relative difference {diff}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
