//! Stable Diffusion 1.x folders against diffusers and transformers (`tests/fixtures/sd`, made by
//! `scripts/make_sd_fixture.py`: a tiny random StableDiffusionPipeline with every weight perturbed, laid out as
//! SD 1.5's folder, and what the pipeline computes with it).

use super::pipeline::{self, ImportOptions};
use super::unet::UNet2DModelConfig;
use crate::denoise::{Cond, Guidance};
use crate::generate::{self, Request};
use crate::nn::NetConfig;
use crate::nn::clip::ClipText;
use crate::run::{self, Weights};
use crate::sample::{self, Spec};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd")
}

fn pipe() -> PathBuf {
    fixture().join("pipe")
}

/// The expected tensors by name (token ids and timesteps are int64 there), as f32 with their shapes.
fn expected() -> BTreeMap<String, (Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(fixture().join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                Dtype::I64 => v
                    .data()
                    .chunks(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!("{name}: {other:?}"),
            };
            (name, (data, v.shape().to_vec()))
        })
        .collect()
}

fn prompts() -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn tensor<const D: usize>((data, shape): &(Vec<f32>, Vec<usize>), device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data.clone(), shape.clone()), device)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-sd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Token ids of transformers' CLIPTokenizer (from vocab.json and merges.txt: no tokenizer.json in SD's folder)
/// and CLIPTextModel's last hidden states, for the empty prompt, words and merges, and case, spacing and
/// punctuation.
#[test]
fn tokenizer_and_text_encoder_match_transformers() {
    let e = expected();
    let device = crate::device::device();
    let text = ClipText::load(&pipe().join("text_encoder"), &pipe().join("tokenizer"), &device).unwrap();
    assert!(!pipe().join("tokenizer/tokenizer.json").exists());
    let prompts = prompts();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (hidden, ids) = text.hidden(&refs).unwrap();
    let per = 77 * text.width();
    let hidden = sample::to_vec(hidden.unsqueeze::<4>());
    for (k, p) in prompts.iter().enumerate() {
        let want: Vec<u32> = e[&format!("ids_{k}")].0.iter().map(|&x| x as u32).collect();
        assert_eq!(ids[k], want, "{p:?}");
        let d = max_diff(&hidden[k * per..(k + 1) * per], &e[&format!("hidden_{k}")].0);
        assert!(d < 1e-4, "{p:?}: hidden states differ by {d}");
    }
    // Merges apply (fewer tokens than characters) and case and spacing do not matter.
    assert_eq!(ids[1].iter().take_while(|&&i| i != ids[0][1]).count(), 3);
    let again = text.tokenize(&["BLUE cat ,red !"]).unwrap();
    assert_eq!(again[0], ids[3]);
    let long = "red heart ".repeat(40);
    let err = text.tokenize(&[&long]).unwrap_err().to_string();
    assert!(err.contains("at most 77"), "{err}");
}

/// The UNet2DConditionModel read as the project's UNet with a context: its output on two latents at two
/// timesteps, each attending to its own prompt's encoding.
#[test]
fn unet_matches_unet_2d_condition_model() {
    let e = expected();
    let device = crate::device::device();
    let (imported, net) = pipeline::read(&pipe(), &ImportOptions::default(), &device).unwrap();
    let NetConfig::Unet(u) = &imported.config.net else {
        panic!("a UNet")
    };
    assert_eq!((u.context_dim, u.heads, u.head_dim), (Some(24), 2, None));
    assert_eq!(imported.params, 201_924, "diffusers' count");
    assert!(net.takes_context());
    let out = net.forward_with(
        tensor(&e["latents"], &device),
        tensor(&e["timesteps"], &device),
        None,
        Some(tensor(&e["context"], &device)),
    );
    let d = max_diff(&sample::to_vec(out), &e["unet_out"].0);
    assert!(d < 1e-4, "UNet outputs differ by {d}");
}

/// A whole guided DDIM trajectory (10 steps, leading + 1, guidance 4, from the same starting latents) through
/// the imported run, against StableDiffusionPipeline with DDIMScheduler (set_alpha_to_one, as diffuse's DDIM):
/// the final latents, with the empty and with a negative prompt, and the decoded image.
#[test]
fn a_guided_ddim_trajectory_matches_the_pipeline() {
    let e = expected();
    let device = crate::device::device();
    let dir = temp("ddim");
    pipeline::import(&pipe(), &dir, &ImportOptions::default(), &device).unwrap();
    let run = run::load(&dir, Weights::Raw, &device).unwrap();
    assert_eq!(run.config.output_shape(), [3, 16, 16]);
    let plan = Spec {
        steps: 10,
        ..run.config.default_sampler().unwrap()
    }
    .plan(&run.schedule)
    .unwrap();
    let den = run.denoiser(Guidance::scale(4.0));
    let init = &e["init_latents"].0;
    let latents = |negative: &str| {
        let cond = Cond {
            classes: None,
            context: Some(run.encode_prompts(&["red heart"], negative).unwrap()),
        };
        let drawn = sample::draw(
            &den,
            &plan,
            0,
            1,
            [4, 8, 8],
            1,
            Some(init),
            &cond,
            &[],
            &device,
            &mut |_| {},
        );
        drawn.images
    };
    let scale = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let mut finals = Vec::new();
    for (negative, want) in [("", "ddim_latents"), ("blue cat", "ddim_neg_latents")] {
        let got = latents(negative);
        let d = max_diff(&got, &e[want].0);
        assert!(
            d < 1e-4 * scale(&e[want].0),
            "{want}: differ by {d} (largest {})",
            scale(&e[want].0)
        );
        finals.push(got);
    }
    // The negative prompt steers: the two trajectories end apart.
    assert!(
        max_diff(&finals[0], &finals[1]) > 0.1,
        "{}",
        max_diff(&finals[0], &finals[1])
    );
    // The same through the library's workflow, decoded by the imported VAE.
    let drawn = generate::draw(
        &run,
        &Request {
            plan,
            guidance: Guidance::scale(4.0),
            cond: Cond {
                classes: None,
                context: Some(run.encode_prompts(&["red heart"], "").unwrap()),
            },
            n: 1,
            seed: 0,
            batch_size: 1,
            init_noise: Some(init.clone()),
            no_clip: false,
            strip: false,
            progress: false,
        },
    )
    .unwrap();
    // The pipeline's image is height × width × RGB in [0, 1].
    let (image, shape) = &e["ddim_image"];
    let (h, w) = (shape[1], shape[2]);
    let want: Vec<f32> = (0..3 * h * w)
        .map(|i| {
            let (c, p) = (i / (h * w), i % (h * w));
            image[p * 3 + c] * 2.0 - 1.0
        })
        .collect();
    let d = max_diff(&drawn.images, &want);
    assert!(d < 1e-4, "decoded images differ by {d}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Copies the fixture's pipeline folder into `dir`.
fn copy_pipe(dir: &Path) {
    for entry in walk(&pipe()) {
        let to = dir.join(entry.strip_prefix(pipe()).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

/// Folders that cannot be used are refused by what is wrong, before anything is written.
#[test]
fn broken_sd_folders_are_refused_by_name() {
    let device = crate::device::device();
    let src = temp("broken");
    let out = temp("broken-out");
    let import = || {
        pipeline::import(&src, &out, &ImportOptions::default(), &device)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let edit_json = |file: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let p = src.join(file);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    type Break<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "needs tokenizer/",
            Box::new(|| std::fs::remove_dir_all(src.join("tokenizer")).unwrap()),
        ),
        (
            "no tokenizer.json (nor vocab.json and merges.txt)",
            Box::new(|| std::fs::remove_file(src.join("tokenizer/merges.txt")).unwrap()),
        ),
        (
            "is not a merge of two tokens",
            Box::new(|| std::fs::write(src.join("tokenizer/merges.txt"), "#version: 0.2\nr e d\n").unwrap()),
        ),
        (
            "no <|startoftext|> token",
            Box::new(|| std::fs::write(src.join("tokenizer/vocab.json"), r#"{"<|endoftext|>": 0}"#).unwrap()),
        ),
        (
            "down block type SimpleCrossAttnDownBlock2D is not supported",
            Box::new(|| {
                edit_json("unet/config.json", &|v| {
                    v["down_block_types"][0] = "SimpleCrossAttnDownBlock2D".into()
                })
            }),
        ),
        (
            "use_linear_projection true is not supported",
            Box::new(|| edit_json("unet/config.json", &|v| v["use_linear_projection"] = true.into())),
        ),
        (
            "attention_head_dim [2, 4] is not one positive value",
            Box::new(|| {
                edit_json("unet/config.json", &|v| {
                    v["attention_head_dim"] = serde_json::json!([2, 4])
                })
            }),
        ),
        (
            "the text encoder's width is 24, the UNet's cross_attention_dim Some(32)",
            Box::new(|| {
                edit_json("unet/config.json", &|v| v["cross_attention_dim"] = 32.into());
            }),
        ),
        (
            "no model.safetensors",
            Box::new(|| std::fs::remove_file(src.join("text_encoder/model.safetensors")).unwrap()),
        ),
        ("the size must divide by 2", Box::new(|| {})),
    ];
    for (want, break_it) in cases {
        let _ = std::fs::remove_dir_all(&src);
        copy_pipe(&src);
        break_it();
        let err = if want.contains("divide") {
            let opts = ImportOptions {
                size: Some((15, 16)),
                ..ImportOptions::default()
            };
            pipeline::import(&src, &out, &opts, &device).err().unwrap().to_string()
        } else {
            import()
        };
        assert!(err.contains(want), "want {want:?}, got {err:?}");
        assert!(!out.exists(), "{want}: the run folder was written");
    }
    std::fs::remove_dir_all(&src).unwrap();
}

/// Stable Diffusion 1.5's own configs (its unet/ and vae/ config.json keys, diffusers' defaults for the rest)
/// make networks of the parameter counts diffusers reports for them.
#[test]
fn the_sd15_configs_have_diffusers_parameter_counts() {
    let json = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
        "sample_size": 64, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D"]}"#;
    let dir = temp("sd15-config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), json).unwrap();
    let cfg = UNet2DModelConfig::read(&dir.join("config.json")).unwrap();
    let net = cfg.unet_config(64, 64).unwrap();
    assert_eq!(
        (net.context_dim, net.heads, net.channel_mults.clone()),
        (Some(768), 8, vec![1, 2, 4, 4])
    );
    let device = crate::device::device();
    let unet = crate::nn::NetConfig::Unet(net).init(&device).unwrap();
    assert_eq!(unet.num_params(), 859_520_964);
    // Its VAE (vae/config.json of SD 1.5): 83,653,863 parameters in diffusers.
    let vae = r#"{"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
        "sample_size": 512, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
        "UpDecoderBlock2D"]}"#;
    std::fs::write(dir.join("config.json"), vae).unwrap();
    let akl = super::autoencoder_kl::AutoencoderKlConfig::read(&dir).unwrap();
    assert_eq!(akl.factor(), 8);
    let vae = akl.vae_config(512, 512).unwrap().init(&device).unwrap();
    assert_eq!(vae.num_params(), 83_653_863);
    std::fs::remove_dir_all(&dir).unwrap();
}
