//! The `diffuse` binary as a user runs it: outputs, determinism, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{diffuse, fails, ok, s, shared, tmp, train_tiny};

/// A tiny trained DDPM run shared by the tests of this file (the classic recipe, whose discrete schedule the
/// sampler and editing tests walk).
fn tiny_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = tmp("run").join("r");
        train_tiny(
            &out,
            30,
            &["--seed", "1", "--checkpoint-every", "10", "--objective", "diffusion"],
        );
        out
    })
}

#[test]
fn schedule_json_has_both_arrays() {
    let out = ok(&["schedule", "--schedule", "cosine", "--timesteps", "50", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["betas"].as_array().unwrap().len(), 50);
    assert_eq!(v["alphas_cumprod"].as_array().unwrap().len(), 50);
    let table = ok(&["schedule", "--schedule", "sigmoid", "--timesteps", "10"]);
    assert_eq!(table.lines().count(), 11);
    fails(&["schedule", "--schedule", "cosin"], "unknown schedule 'cosin'");
    fails(&["schedule", "--beta-start", "0.5", "--beta-end", "0.1"], "beta");
}

#[test]
fn training_writes_a_complete_run_and_refuses_to_overwrite_it() {
    let run = tiny_run();
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "loss.csv",
        "loss.png",
        "samples.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(run.join("loss.csv")).unwrap().lines().count(),
        31
    );
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    fails(&["train", "--out", s(run), "--steps", "5"], "already holds a run");
    assert_eq!(std::fs::read(run.join("checkpoint.safetensors")).unwrap(), before);
    fails(
        &["train", "--data", "cifar", "--out", s(&tmp("nodata"))],
        "unknown data 'cifar'",
    );
    fails(
        &["train", "--out", s(&tmp("badunet")), "--channel-mults", "1,2,2,2,2"],
        "does not divide",
    );
    fails(
        &["train", "--out", s(&tmp("badpred")), "--prediction", "noise"],
        "unknown prediction",
    );
}

#[test]
fn sampling_is_deterministic_and_per_image() {
    let run = tiny_run();
    let (a, b, c) = (tmp("sa"), tmp("sb"), tmp("sc"));
    let common = [
        "sample",
        "--run",
        s(run),
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--eta",
        "0.5",
        "--seed",
        "4",
    ];
    let said = ok(&[
        &common[..],
        &["--n", "3", "--out-dir", s(&a), "--grid", s(&a.join("grid.png"))],
    ]
    .concat());
    assert!(said.contains("images/s") && said.contains("NFE 10"), "{said}");
    ok(&[&common[..], &["--n", "3", "--out-dir", s(&b)]].concat());
    ok(&[&common[..], &["--n", "1", "--out-dir", s(&c), "--batch-size", "1"]].concat());
    for i in 0..3 {
        let f = format!("{i:05}.png");
        assert_eq!(
            std::fs::read(a.join(&f)).unwrap(),
            std::fs::read(b.join(&f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read(a.join("00000.png")).unwrap(),
        std::fs::read(c.join("00000.png")).unwrap()
    );
    let img = image::open(a.join("00000.png")).unwrap();
    assert_eq!((img.width(), img.height()), (8, 8));
    assert!(image::open(a.join("grid.png")).unwrap().width() > 8);

    // SDE and ODE samplers drive the DDPM-trained model through the VP correspondence.
    for extra in [
        &["--sampler", "pc", "--sde", "vp"][..],
        &["--sampler", "ode", "--ode-solver", "heun"],
        &["--sampler", "dpmpp-2m"],
        &["--sampler", "unipc", "--time-grid", "karras"],
        &["--sampler", "euler-maruyama", "--sde", "ve"],
    ] {
        let e = tmp("se");
        let said = ok(&[
            &[
                "sample",
                "--run",
                s(run),
                "--steps",
                "10",
                "--n",
                "2",
                "--out-dir",
                s(&e),
            ][..],
            extra,
        ]
        .concat());
        assert!(said.contains("NFE"), "{said}");
        assert!(image::open(e.join("00001.png")).is_ok());
    }

    // DDPM with a strip, too.
    let d = tmp("sd");
    ok(&[
        "sample",
        "--run",
        s(run),
        "--sampler",
        "ddpm",
        "--steps",
        "20",
        "--n",
        "2",
        "--seed",
        "1",
        "--out-dir",
        s(&d),
        "--strip",
        s(&d.join("strip.png")),
    ]);
    assert!(d.join("strip.png").is_file() && d.join("00001.png").is_file());
}

#[test]
fn given_noise_makes_ddim_eta0_deterministic() {
    let run = tiny_run();
    let dir = tmp("noise");
    let noise: Vec<f32> = (0..2 * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let mut c = diffuse::safetensors_io::Contents::default();
    let t = diffuse::safetensors_io::NamedTensor {
        id: 0,
        shape: vec![2, 1, 8, 8],
        data: noise,
    };
    c.groups.entry("".into()).or_default().insert("noise".into(), t);
    let path = dir.join("noise.safetensors");
    diffuse::safetensors_io::write(&path, &c).unwrap();
    // Different seeds, same given noise: identical images.
    for seed in ["1", "2"] {
        let out = dir.join(seed);
        ok(&[
            "sample",
            "--run",
            s(run),
            "--steps",
            "8",
            "--n",
            "2",
            "--seed",
            seed,
            "--out-dir",
            s(&out),
            "--init-noise",
            s(&path),
        ]);
    }
    assert_eq!(
        std::fs::read(dir.join("1/00001.png")).unwrap(),
        std::fs::read(dir.join("2/00001.png")).unwrap()
    );
    fails(
        &[
            "sample",
            "--run",
            s(run),
            "--n",
            "3",
            "--out-dir",
            s(&dir.join("x")),
            "--init-noise",
            s(&path),
        ],
        "noise has shape",
    );
}

#[test]
fn bad_sampling_input_gets_a_clear_error() {
    let run = tiny_run();
    let out = tmp("bad");
    let o = s(&out);
    fails(
        &["sample", "--run", s(run), "--steps", "0", "--out-dir", o],
        "steps must be between 1 and the 1000",
    );
    fails(
        &["sample", "--run", s(run), "--steps", "1001", "--out-dir", o],
        "steps must be between",
    );
    fails(
        &["sample", "--run", s(run), "--eta", "1.5", "--out-dir", o],
        "eta must be in [0, 1]",
    );
    fails(
        &[
            "sample",
            "--run",
            s(run),
            "--timestep-spacing",
            "middle",
            "--out-dir",
            o,
        ],
        "unknown timestep spacing",
    );
    fails(
        &["sample", "--run", s(&out.join("nope")), "--out-dir", o],
        "is not a run",
    );

    // A truncated checkpoint, and weights that do not fit the config.
    let broken = tmp("broken");
    for f in ["config.json", "checkpoint.safetensors"] {
        std::fs::copy(run.join(f), broken.join(f)).unwrap();
    }
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    std::fs::write(broken.join("checkpoint.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    fails(
        &["sample", "--run", s(&broken), "--out-dir", o],
        "not a valid safetensors file",
    );
    std::fs::write(broken.join("checkpoint.safetensors"), &bytes).unwrap();
    let cfg = std::fs::read_to_string(run.join("config.json")).unwrap();
    std::fs::write(
        broken.join("config.json"),
        cfg.replace("\"base_channels\": 8", "\"base_channels\": 16"),
    )
    .unwrap();
    fails(
        &["sample", "--run", s(&broken), "--out-dir", o],
        "does not fit the model",
    );
    std::fs::write(broken.join("config.json"), "{ not json").unwrap();
    fails(&["sample", "--run", s(&broken), "--out-dir", o], "config.json");
    std::fs::remove_file(broken.join("checkpoint.safetensors")).unwrap();
    std::fs::write(broken.join("config.json"), &cfg).unwrap();
    fails(&["sample", "--run", s(&broken), "--out-dir", o], "missing");
}

#[test]
fn score_models_train_from_the_cli_and_sample_with_any_sampler() {
    let out = tmp("score").join("ve");
    let cfg = train_tiny(&out, 20, &["--sde", "ve"]);
    assert_eq!(cfg["sde"], "ve");
    for sampler in ["pc", "ode", "ddim"] {
        let d = tmp(&format!("score-{sampler}"));
        let said = ok(&[
            "sample",
            "--run",
            s(&out),
            "--sampler",
            sampler,
            "--steps",
            "5",
            "--n",
            "2",
            "--out-dir",
            s(&d),
        ]);
        if sampler == "pc" {
            assert!(said.contains("ve SDE"), "the model's own SDE is the default: {said}");
        }
        assert!(d.join("00001.png").is_file());
    }
    fails(
        &["train", "--out", s(&tmp("badsde")), "--sde", "vq"],
        "unknown SDE 'vq'",
    );
}

#[test]
fn lab_reproduces_the_diffusers_ddim_fixture_and_reports_json() {
    let out = ok(&[
        "lab",
        "--target",
        "gaussian",
        "--data-mean",
        "0.1",
        "--data-std",
        "0.8",
        "--sampler",
        "ddim",
        "--steps",
        "20",
        "--timestep-spacing",
        "leading",
        "--samples",
        "4096",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in ["mean", "std", "nfe", "w1", "quantiles"] {
        assert!(v.get(key).is_some(), "{key} missing from {out}");
    }
    assert_eq!(v["nfe"], 20);
    // diffusers: DDIM-20 (leading) on N(0.1, 0.8²) with the exact denoiser has std 0.72175; the sample std
    // of 4096 draws is within a few percent of it.
    assert!((v["std"].as_f64().unwrap() - 0.72175).abs() < 0.03, "{out}");
    // The lab's mixture target, 0.3·N(−1, 0.3²) + 0.7·N(1.5, 0.3²), with these sampler flags.
    let mixture = |flags: &[&str]| {
        let mut args = vec![
            "lab",
            "--target",
            "mixture",
            "--means",
            "-1,1.5",
            "--weights",
            "0.3,0.7",
            "--data-std",
            "0.3",
            "--samples",
            "4096",
            "--json",
        ];
        args.extend_from_slice(flags);
        let out = ok(&args);
        (serde_json::from_str::<serde_json::Value>(&out).unwrap(), out)
    };
    let (v, out) = mixture(&["--sampler", "ode", "--sde", "subvp"]);
    assert!(v["w1"].as_f64().unwrap() < 0.05, "{out}");
    fails(
        &["lab", "--target", "mixture", "--means", "0,1", "--weights", "1"],
        "as many weights as means",
    );
    fails(&["lab", "--sampler", "pc", "--sde", "vx"], "unknown SDE 'vx'");
    fails(
        &["lab", "--sampler", "pc", "--timestep-spacing", "leading"],
        "needs a discrete schedule",
    );
    fails(
        &["lab", "--sampler", "ode", "--eta", "0.5"],
        "--eta does not apply to the ode sampler",
    );
    // Euler ancestral on EDM's Karras grid of the VE SDE with σ 0.002 → 80: lands on the mixture.
    let (v, out) = mixture(&[
        "--sampler",
        "euler-ancestral",
        "--sde",
        "ve:0.002,80",
        "--time-grid",
        "karras",
        "--steps",
        "100",
    ]);
    assert!(v["w1"].as_f64().unwrap() < 0.06, "{out}");
    assert_eq!(v["nfe"], 101, "100 steps and the final denoising at t_min: {out}");
    assert!(v["sampler"].as_str().unwrap().contains("karras"), "{out}");
    fails(
        &["lab", "--sweep", "ddim", "--table", "/nonexistent-folder/lab.md"],
        "the folder /nonexistent-folder does not exist",
    );
}

#[test]
fn conditional_models_draw_the_asked_class_with_guidance() {
    let out = tmp("cond").join("c");
    let cfg = train_tiny(&out, 10, &["--conditional"]);
    assert_eq!(cfg["net"]["num_classes"], 10);
    assert_eq!(cfg["train"]["label_dropout"], 0.1);
    let d = tmp("cond-all");
    let said = ok(&[
        "sample",
        "--run",
        s(&out),
        "--steps",
        "5",
        "--n",
        "2",
        "--class",
        "all",
        "--guidance",
        "3",
        "--out-dir",
        s(&d),
        "--grid",
        s(&d.join("grid.png")),
    ]);
    assert!(said.starts_with("20 images"), "{said}");
    assert!(d.join("00019.png").is_file());
    let grid = image::open(d.join("grid.png")).unwrap();
    assert!(
        grid.height() > 4 * grid.width(),
        "a row per class: {}x{}",
        grid.width(),
        grid.height()
    );
    ok(&[
        "sample",
        "--run",
        s(&out),
        "--steps",
        "5",
        "--n",
        "2",
        "--class",
        "7",
        "--guidance",
        "0",
        "--out-dir",
        s(&tmp("cond-7")),
    ]);
    let o = s(&d);
    // An output folder that holds an earlier draw is refused before any work, so draws never mix.
    fails(
        &[
            "sample",
            "--run",
            s(&out),
            "--class",
            "7",
            "--steps",
            "5",
            "--out-dir",
            o,
        ],
        "already holds files",
    );
    fails(
        &["sample", "--run", s(&out), "--class", "ten", "--out-dir", o],
        "unknown class 'ten'",
    );
    fails(
        &["sample", "--run", s(&out), "--class", "10", "--out-dir", o],
        "unknown class '10'",
    );
    fails(
        &["sample", "--run", s(&out), "--guidance", "3", "--out-dir", o],
        "--guidance needs --class",
    );
    fails(
        &[
            "sample",
            "--run",
            s(&out),
            "--class",
            "1",
            "--guidance",
            "1e9",
            "--out-dir",
            o,
        ],
        "between 0 and 100",
    );
    ok(&[
        "sample",
        "--run",
        s(&out),
        "--steps",
        "5",
        "--n",
        "2",
        "--class",
        "3",
        "--guidance",
        "5",
        "--guidance-interval",
        "0.3,5",
        "--guidance-rescale",
        "0.7",
        "--out-dir",
        s(&tmp("cond-rescale")),
    ]);
    for (flag, value, said) in [
        ("--guidance-interval", "5,0.3", "--guidance-interval \"5,0.3\""),
        ("--guidance-interval", "1", "0 <= LO < HI"),
        ("--guidance-rescale", "2", "between 0 and 1"),
    ] {
        fails(
            &["sample", "--run", s(&out), "--class", "1", "--out-dir", o, flag, value],
            said,
        );
    }
    fails(
        &["sample", "--run", s(tiny_run()), "--class", "1", "--out-dir", o],
        "need a class-conditional model",
    );
    fails(
        &[
            "train",
            "--data",
            "points:circle",
            "--conditional",
            "--out",
            s(&tmp("cpts")),
        ],
        "--conditional is for images",
    );
    // Guided edits: each held-out digit inpainted as its own class.
    let e = tmp("cond-edit");
    let inpaint = |class: &str| -> Vec<String> {
        [
            "edit",
            "inpaint",
            "--run",
            s(&out),
            "--data",
            "digits",
            "--limit",
            "3",
            "--mask",
            "left-half",
            "--steps",
            "5",
            "--class",
            class,
            "--guidance",
            "3",
            "--out-dir",
            s(&e),
        ]
        .iter()
        .map(|v| v.to_string())
        .collect()
    };
    let args = inpaint("label");
    let said = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(said.starts_with("3 images inpainted"), "{said}");
    let args = inpaint("all");
    fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "--class all is for",
    );
    // A class count that does not match the weights.
    let broken = tmp("cond-broken");
    for f in ["config.json", "checkpoint.safetensors"] {
        std::fs::copy(out.join(f), broken.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    std::fs::write(
        broken.join("config.json"),
        text.replace("\"num_classes\": 10", "\"num_classes\": 9"),
    )
    .unwrap();
    fails(&["sample", "--run", s(&broken), "--out-dir", o], "classes");
}

#[test]
fn plot_draws_csv_columns_and_names_bad_ones() {
    let dir = tmp("plot");
    std::fs::write(dir.join("c.csv"), "w,acc,div\n0,0.1,5.7\n1,0.9,4.3\n3,1.0,3.3\n").unwrap();
    let png = dir.join("p.png");
    ok(&[
        "plot",
        "--csv",
        s(&dir.join("c.csv")),
        "--x",
        "w",
        "--y",
        "acc,div",
        "--out",
        s(&png),
    ]);
    // One line per column, in the first two series colours.
    let img = image::open(&png).unwrap().to_rgb8();
    for c in &diffuse::plot::COLOURS[..2] {
        assert!(img.pixels().filter(|p| p.0 == *c).count() > 50, "a line in {c:?}");
    }
    fails(
        &[
            "plot",
            "--csv",
            s(&dir.join("c.csv")),
            "--x",
            "w",
            "--y",
            "nope",
            "--out",
            s(&png),
        ],
        "no column 'nope'",
    );
    std::fs::write(dir.join("bad.csv"), "w,acc\n0,x\n").unwrap();
    fails(
        &[
            "plot",
            "--csv",
            s(&dir.join("bad.csv")),
            "--x",
            "w",
            "--y",
            "acc",
            "--out",
            s(&png),
        ],
        "not a number",
    );
}

#[test]
fn latent_runs_train_on_a_vae_and_sample_decoded_images() {
    let vae = tmp("vae").join("v");
    let said = ok(&[
        "vae",
        "train",
        "--data",
        "digits",
        "--out",
        s(&vae),
        "--factor",
        "2",
        "--base-channels",
        "8",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--quiet",
    ]);
    assert!(said.contains("latent scale") && said.contains("PSNR"), "{said}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vae.join("vae.json")).unwrap()).unwrap();
    assert!(meta["scale"].as_f64().unwrap() > 0.0);
    assert!(vae.join("reconstructions.png").is_file());
    fails(
        &["vae", "train", "--data", "digits", "--out", s(&vae), "--steps", "1"],
        "already holds a VAE",
    );
    let said = ok(&["vae", "reconstruct", "--vae", s(&vae), "--data", "digits"]);
    assert!(said.starts_with("297 images: PSNR"), "{said}");

    // The latent run: 4×4×4 latents of 8×8 digits; the VAE is copied into the run.
    let run = tmp("latent").join("r");
    let cfg = train_tiny(&run, 10, &["--vae", s(&vae), "--conditional"]);
    assert_eq!((cfg["channels"].as_u64(), cfg["height"].as_u64()), (Some(4), Some(4)));
    assert_eq!(cfg["latent"]["image"], serde_json::json!([1, 8, 8]));
    assert!(run.join("vae/weights.safetensors").is_file());
    std::fs::remove_dir_all(&vae).unwrap();
    let d = tmp("latent-out");
    let said = ok(&[
        "sample",
        "--run",
        s(&run),
        "--steps",
        "5",
        "--n",
        "3",
        "--class",
        "4",
        "--guidance",
        "3",
        "--out-dir",
        s(&d),
        "--strip",
        s(&d.join("strip.png")),
    ]);
    assert!(said.starts_with("3 images"), "{said}");
    let img = image::open(d.join("00002.png")).unwrap();
    assert_eq!((img.width(), img.height()), (8, 8), "decoded to the image size");
    assert!(d.join("strip.png").is_file());
    // Edits work in the latent space too, and keep the known pixels exactly.
    let e = tmp("latent-edit");
    let naive = e.join("inputs");
    ok(&[
        "edit",
        "inpaint",
        "--run",
        s(&run),
        "--data",
        "digits",
        "--limit",
        "2",
        "--mask",
        "left-half",
        "--naive",
        "blur",
        "--out-dir",
        s(&naive),
    ]);
    let said = ok(&[
        "edit",
        "inpaint",
        "--run",
        s(&run),
        "--data",
        "digits",
        "--limit",
        "2",
        "--mask",
        "left-half",
        "--steps",
        "5",
        "--out-dir",
        s(&e.join("ip")),
    ]);
    assert!(said.starts_with("2 images inpainted"), "{said}");
    for class_dir in std::fs::read_dir(&naive).unwrap() {
        let class_dir = class_dir.unwrap().path();
        for f in std::fs::read_dir(&class_dir).unwrap() {
            let f = f.unwrap().path();
            let twin = e
                .join("ip")
                .join(class_dir.file_name().unwrap())
                .join(f.file_name().unwrap());
            let (a, b) = (
                image::open(&f).unwrap().to_luma8(),
                image::open(&twin).unwrap().to_luma8(),
            );
            for (k, (x, y)) in a.as_raw().iter().zip(b.as_raw()).enumerate() {
                assert!(k % 8 < 4 || x == y, "kept pixel {k} of {} changed", f.display());
            }
        }
    }
    ok(&[
        "edit",
        "sdedit",
        "--run",
        s(&run),
        "--data",
        "digits",
        "--limit",
        "2",
        "--strength",
        "0.4",
        "--steps",
        "10",
        "--out-dir",
        s(&e.join("sd")),
    ]);
    // Resume re-encodes the data with the run's own copy of the VAE.
    ok(&["train", "--out", s(&run), "--resume", "--steps", "12", "--quiet"]);
    // A VAE for other images is refused.
    fails(
        &[
            "train",
            "--data",
            "points:circle",
            "--vae",
            s(&run.join("vae")),
            "--out",
            s(&tmp("latent-bad")),
        ],
        "the VAE takes 1×8×8",
    );
    fails(
        &["train", "--vae", "/nonexistent", "--out", s(&tmp("latent-bad2"))],
        "vae.json",
    );
}

/// The pixels of a PNG as bytes, channel-major.
fn pixels(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_luma8().into_raw()
}

#[test]
fn edits_keep_known_pixels_invert_interpolate_and_reject_bad_input() {
    let run = tiny_run();
    let d = tmp("edit");
    let r = s(run);
    // Inputs: four held-out digits as files, so that names are kept.
    let inputs = d.join("in");
    let said = ok(&[
        "edit",
        "inpaint",
        "--run",
        r,
        "--data",
        "digits",
        "--limit",
        "4",
        "--mask",
        "left-half",
        "--naive",
        "mean",
        "--out-dir",
        s(&inputs),
    ]);
    assert!(said.starts_with("4 images inpainted (naive: mean fill)"), "{said}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&inputs)
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "class sub-folders of the held-out digits");
    let flat = d.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(f, flat.join(format!("digit-{i}.png"))).unwrap();
    }
    let out = d.join("inpainted");
    let said = ok(&[
        "edit",
        "inpaint",
        "--run",
        r,
        "--input",
        s(&flat),
        "--mask",
        "box:0,0,4,8",
        "--sampler",
        "ddpm",
        "--steps",
        "20",
        "--resample",
        "2",
        "--jump-length",
        "5",
        "--out-dir",
        s(&out),
        "--grid",
        s(&d.join("grid.png")),
    ]);
    assert!(said.contains("masked-region PSNR"), "{said}");
    for i in 0..4 {
        let (a, b) = (
            pixels(&flat.join(format!("digit-{i}.png"))),
            pixels(&out.join(format!("digit-{i}.png"))),
        );
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            if k % 8 >= 4 {
                assert_eq!(x, y, "kept pixel {k} of image {i} changed");
            }
        }
    }
    // SDEdit: a small strength keeps the input, full strength does not.
    let diff = |strength: &str| {
        let o = d.join(format!("sdedit-{strength}"));
        ok(&[
            "edit",
            "sdedit",
            "--run",
            r,
            "--input",
            s(&flat),
            "--strength",
            strength,
            "--steps",
            "50",
            "--out-dir",
            s(&o),
        ]);
        (0..4)
            .map(|i| {
                let (a, b) = (
                    pixels(&flat.join(format!("digit-{i}.png"))),
                    pixels(&o.join(format!("digit-{i}.png"))),
                );
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| (*x as f64 - *y as f64).abs())
                    .sum::<f64>()
                    / a.len() as f64
            })
            .sum::<f64>()
            / 4.0
    };
    let (near, far) = (diff("0.02"), diff("1"));
    assert!(
        near < 8.0 && far > 3.0 * near,
        "mean absolute change {near} at strength 0.02, {far} at 1"
    );
    // Inversion reports its reconstruction and saves noises usable by `sample --init-noise`.
    let noise = d.join("noise.safetensors");
    let said = ok(&[
        "edit",
        "invert",
        "--run",
        r,
        "--input",
        s(&flat),
        "--steps",
        "50",
        "--out-dir",
        s(&d.join("inv")),
        "--noise-out",
        s(&noise),
    ]);
    assert!(said.contains("reconstruction PSNR"), "{said}");
    ok(&[
        "sample",
        "--run",
        r,
        "--n",
        "4",
        "--steps",
        "50",
        "--init-noise",
        s(&noise),
        "--out-dir",
        s(&d.join("from-noise")),
    ]);
    assert_eq!(
        pixels(&d.join("from-noise/00002.png")),
        pixels(&d.join("inv/digit-2.png")),
        "the same DDIM path"
    );
    // Interpolation between seeds: the end frames are those seeds' DDIM samples.
    ok(&[
        "edit",
        "interpolate",
        "--run",
        r,
        "--seeds",
        "5,6",
        "--frames",
        "5",
        "--steps",
        "20",
        "--out-dir",
        s(&d.join("lerp")),
    ]);
    for (seed, frame) in [("5", "00000"), ("6", "00004")] {
        let o = d.join(format!("seed{seed}"));
        ok(&[
            "sample",
            "--run",
            r,
            "--n",
            "1",
            "--seed",
            seed,
            "--steps",
            "20",
            "--out-dir",
            s(&o),
        ]);
        assert_eq!(
            pixels(&o.join("00000.png")),
            pixels(&d.join(format!("lerp/{frame}.png")))
        );
    }
    // Outpainting to a larger canvas.
    let said = ok(&[
        "edit",
        "outpaint",
        "--run",
        r,
        "--input",
        s(&flat),
        "--pad",
        "0,0,4,0",
        "--steps",
        "10",
        "--out-dir",
        s(&d.join("outpaint")),
    ]);
    assert!(said.contains("from 8×8 to 12×8"), "{said}");
    assert_eq!(image::open(d.join("outpaint/digit-0.png")).unwrap().width(), 12);
    // Bad input.
    let o = s(&d);
    fails(
        &[
            "edit",
            "inpaint",
            "--run",
            r,
            "--input",
            s(&flat),
            "--mask",
            "box:9,9,1,1",
            "--out-dir",
            o,
        ],
        "inside the 8×8 image",
    );
    fails(
        &[
            "edit",
            "sdedit",
            "--run",
            r,
            "--input",
            s(&flat),
            "--strength",
            "0",
            "--out-dir",
            o,
        ],
        "strength must be in (0, 1]",
    );
    fails(
        &[
            "edit",
            "invert",
            "--run",
            r,
            "--input",
            s(&flat),
            "--eta",
            "1",
            "--out-dir",
            o,
        ],
        "--eta 0",
    );
    fails(
        &[
            "edit",
            "inpaint",
            "--run",
            r,
            "--input",
            s(&flat),
            "--mask",
            "left-half",
            "--sampler",
            "dpmpp-2m",
            "--resample",
            "3",
            "--out-dir",
            o,
        ],
        "resampling needs",
    );
    fails(
        &[
            "edit",
            "outpaint",
            "--run",
            r,
            "--input",
            s(&flat),
            "--pad",
            "1,0,0,0",
            "--out-dir",
            o,
        ],
        "must divide by 2",
    );
    fails(
        &[
            "edit",
            "sdedit",
            "--run",
            r,
            "--input",
            s(&tmp("edit-empty")),
            "--out-dir",
            o,
        ],
        "no PNG images",
    );
}

#[test]
fn restoration_writes_its_folders_and_scores_and_rejects_bad_tasks() {
    let run = tiny_run();
    let d = tmp("restore");
    let r = s(run);
    let base = [
        "edit", "restore", "--run", r, "--data", "digits", "--limit", "4", "--steps", "5",
    ];
    for (method, task) in [("ddrm", "sr:2"), ("pigdm", "mri:radial:4"), ("naive", "blur:1")] {
        let out = d.join(method);
        let said = ok(&[&base[..], &["--method", method, "--task", task, "--out-dir", s(&out)]].concat());
        assert!(
            said.starts_with(&format!("4 images restored ({task}")) && said.contains("σ_y = 0.05"),
            "{said}"
        );
        let count = |sub: &str| {
            walk(&out.join(sub))
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .count()
        };
        for sub in ["original", "measured", "naive", "restored"] {
            assert_eq!(count(sub), 4, "{method}: {sub}");
        }
        let scores: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
        let psnr = scores["restored"]["psnr"].as_f64().unwrap();
        assert!(psnr.is_finite() && psnr > 5.0, "{method}: PSNR {psnr}");
        if method == "naive" {
            assert_eq!(
                scores["restored"],
                serde_json::json!({"psnr": scores["naive"]["psnr"], "ssim": scores["naive"]["ssim"]})
            );
        }
    }
    // The same seed measures and restores the same images.
    let again = d.join("again");
    ok(&[&base[..], &["--task", "sr:2", "--out-dir", s(&again)]].concat());
    for f in walk(&again.join("restored")) {
        let name = f.strip_prefix(again.join("restored")).unwrap();
        assert_eq!(
            pixels(&f),
            pixels(&d.join("ddrm").join("restored").join(name)),
            "{}",
            name.display()
        );
    }
    for (extra, needle) in [
        (&["--task", "sr:3"][..], "3 divides"),
        (&["--task", "deblur"][..], "expected denoise"),
        (&["--task", "colourise"][..], "colour (3-channel)"),
        (&["--task", "sr:2", "--ddrm-eta", "2"][..], "[0, 1]"),
        (&["--task", "sr:2", "--noise=-1"][..], "noise"),
        (
            &["--task", "sr:2", "--data-std", "0.5"][..],
            "--data-std does not apply",
        ),
        (
            &["--task", "mri:radial:4", "--mask-seed", "3"][..],
            "--mask-seed does not apply",
        ),
    ] {
        let out = d.join("bad");
        fails(&[&base[..], extra, &["--out-dir", s(&out)]].concat(), needle);
    }
    fails(
        &[&base[..], &["--task", "sr:2", "--out-dir", s(&again)]].concat(),
        "already holds files",
    );
    assert!(!d.join("bad").exists(), "nothing written for bad input");
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

#[test]
fn the_cli_defaults_are_the_library_defaults() {
    let data = diffuse::data::Dataset::load("digits", diffuse::data::Split::Train).unwrap();
    // What one step of `train` with `extra` writes must be `lib` with that step.
    let check = |name: &str, extra: &[&str], mut lib: diffuse::run::RunConfig| {
        let out = tmp(name).join("r");
        let mut args = vec![
            "train",
            "--out",
            s(&out),
            "--steps",
            "1",
            "--sample-every",
            "0",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        lib.train.steps = 1;
        lib.train.sample_every = 0;
        assert_eq!(written, serde_json::to_value(&lib).unwrap(), "{name}");
    };
    check(
        "defaults",
        &[],
        diffuse::run::RunConfig::recommended(&diffuse::data::DataSpec::Digits, &data),
    );
    // `--objective diffusion` is the library's classic recipe.
    check(
        "defaults-ddpm",
        &["--objective", "diffusion"],
        diffuse::run::RunConfig::for_data(&diffuse::data::DataSpec::Digits, &data),
    );
}

#[test]
fn classifier_scores_a_set_against_a_reference() {
    let clf = tmp("clf").join("c");
    let said = ok(&[
        "classifier",
        "train",
        "--data",
        "digits",
        "--out",
        s(&clf),
        "--steps",
        "30",
    ]);
    assert!(said.contains("held-out accuracy"), "{said}");
    let json = ok(&[
        "classifier",
        "score",
        "--classifier",
        s(&clf),
        "--data",
        "digits",
        "--reference",
        "digits",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The held-out digits against themselves: on each other's manifolds, at Fréchet distance zero.
    assert!(r["fid"].as_f64().unwrap().abs() < 1e-6, "{r}");
    assert_eq!((r["precision"].as_f64(), r["recall"].as_f64()), (Some(1.0), Some(1.0)));
    let kid = r["kid"].as_array().unwrap();
    assert!(kid[0].as_f64().unwrap().is_finite() && kid[1].as_f64().unwrap() >= 0.0);
    let is = r["inception_score"].as_f64().unwrap();
    assert!((1.0..=10.0).contains(&is), "{is}");
    fails(
        &[
            "classifier",
            "score",
            "--classifier",
            s(&clf),
            "--data",
            "digits",
            "--reference",
            "mnist:/nonexistent",
        ],
        "nonexistent",
    );

    // Class folders are labelled by name: a folder of 3s alone scores as 3s, not as the first class.
    let dir = tmp("clf-folder");
    let test = diffuse::data::Dataset::load("digits", diffuse::data::Split::Test).unwrap();
    let threes: Vec<usize> = (0..test.len())
        .filter(|&i| test.labels.as_ref().unwrap()[i] == 3)
        .collect();
    std::fs::create_dir_all(dir.join("3")).unwrap();
    for &i in &threes {
        diffuse::imageio::write_png(&dir.join("3").join(format!("{i}.png")), test.image(i), 1, 8, 8).unwrap();
    }
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "classifier",
        "score",
        "--classifier",
        s(&clf),
        "--images",
        s(&dir),
        "--json",
    ]))
    .unwrap();
    let predicted_3 = r["histogram"][3].as_f64().unwrap() / threes.len() as f64;
    assert!(predicted_3 > 0.0, "{r}");
    assert_eq!(r["accuracy"].as_f64(), Some(predicted_3), "{r}");
    std::fs::rename(dir.join("3"), dir.join("three")).unwrap();
    fails(
        &["classifier", "score", "--classifier", s(&clf), "--images", s(&dir)],
        "class folder 'three' is not a class of the classifier",
    );
}

#[test]
fn compare_names_bad_rows_before_any_work() {
    fails(&["compare", "--only", "ddim,gan"], "no row 'gan'");
    fails(&["compare", "--n", "1"], "--n must be at least 2");
}

#[test]
fn a_diffusers_autoencoder_is_imported_and_bad_folders_are_named() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autoencoder_kl");
    let dir = tmp("akl");
    let out = dir.join("vae");
    let said = ok(&[
        "vae",
        "import",
        "--diffusers",
        s(&fixture),
        "--out",
        s(&out),
        "--size",
        "16,16",
    ]);
    assert!(said.contains("latents 4×8×8") && said.contains("0.18215"), "{said}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("vae.json")).unwrap()).unwrap();
    assert_eq!(meta["net"]["norm_eps"], 1e-6);
    assert_eq!(meta["net"]["downsample_pad"], "right-bottom");
    assert!(meta["imported_from"].as_str().unwrap().ends_with("autoencoder_kl"));
    fails(
        &[
            "vae",
            "import",
            "--diffusers",
            s(&fixture),
            "--out",
            s(&out),
            "--size",
            "16,16",
        ],
        "already holds a VAE",
    );
    fails(
        &[
            "vae",
            "import",
            "--diffusers",
            s(&dir),
            "--out",
            s(&dir.join("x")),
            "--size",
            "16,16",
        ],
        "config.json",
    );
    fails(
        &[
            "vae",
            "import",
            "--diffusers",
            s(&fixture),
            "--out",
            s(&dir.join("y")),
            "--size",
            "15,16",
        ],
        "does not divide",
    );
    fails(
        &["vae", "import", "--diffusers", s(&fixture), "--out", s(&dir.join("z"))],
        "--size",
    );
    // Bench: bad input is refused before anything runs.
    fails(&["bench", "--run", s(&dir)], "config.json");
    fails(&["bench", "--rounds", "0"], "--rounds");
    fails(
        &[
            "bench",
            "--reference-unet",
            "--torch",
            "python3",
            "--torch-script",
            s(&dir.join("none.py")),
        ],
        "not found",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A local HTTP server answering GET /NAME with the files of `dir` (404 otherwise); returns its base URL.
fn serve(dir: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let name = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let mut header = String::new();
            while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
                header.clear();
            }
            let mut out = stream;
            match std::fs::read(dir.join(&name)) {
                Ok(body) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = out.write_all(head.as_bytes()).and_then(|_| out.write_all(&body));
                }
                Err(_) => {
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    url
}

#[test]
fn fetch_checks_sha256_against_a_local_mirror() {
    let Some(mnist) = shared("data/mnist") else {
        return;
    };
    let dir = tmp("fetch");
    let cache = dir.join("cache");
    let good = serve(mnist.clone());
    let said = ok(&["fetch", "mnist", "--mirror", &good, "--cache", s(&cache)]);
    assert_eq!(said.matches("downloaded, checksum matches").count(), 4, "{said}");
    for f in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        assert_eq!(
            std::fs::read(cache.join("mnist").join(f)).unwrap(),
            std::fs::read(mnist.join(f)).unwrap()
        );
    }
    let again = ok(&["fetch", "mnist", "--mirror", &good, "--cache", s(&cache)]);
    assert_eq!(again.matches("already there").count(), 4, "{again}");
    // A mirror serving other data (here: the Fashion-MNIST labels under MNIST's name) is refused, and the
    // file is not written.
    let bad_dir = dir.join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::fs::copy(mnist.join(f), bad_dir.join(f)).unwrap();
    }
    let fashion = mnist.with_file_name("fashion-mnist").join("t10k-labels-idx1-ubyte.gz");
    std::fs::copy(fashion, bad_dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let fresh = dir.join("fresh");
    let bad = serve(bad_dir);
    fails(
        &["fetch", "mnist", "--mirror", &bad, "--cache", s(&fresh)],
        "does not match",
    );
    assert!(!fresh.join("mnist/t10k-labels-idx1-ubyte.gz").exists());
    fails(&["fetch", "inception", "--cache", s(&fresh)], "--mirror");
    fails(&["fetch", "imagenet", "--cache", s(&fresh)], "choose one of");
    fails(&["fetch", "inception", "--mirror", &good, "--cache", s(&fresh)], "404");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fid_compares_folders_and_statistics_and_names_missing_weights() {
    let weights = shared("weights/fid_inception_2015-12-05_features.safetensors");
    let dir = tmp("fid");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (out, seed) in [(&a, "1"), (&b, "2")] {
        let run = s(tiny_run());
        ok(&[
            "sample",
            "--run",
            run,
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "--n",
            "3",
            "--seed",
            seed,
            "--out-dir",
            s(out),
        ]);
    }
    // Without weights anywhere, the message says how to get them.
    let o = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["fid", s(&a), s(&b)])
        .env("DIFFUSE_SHARED", dir.join("none"))
        .env("DIFFUSE_CACHE", dir.join("none"))
        .env_remove("DIFFUSE_INCEPTION")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("diffuse fetch inception"),
        "{err}"
    );
    fails(&["fid", s(&a)], "--save-stats");
    fails(&["fid", s(&a), "no-such-set"], "neither a folder");
    let Some(weights) = weights else {
        return;
    };
    let w = s(&weights);
    let same: serde_json::Value =
        serde_json::from_str(&ok(&["fid", s(&a), s(&a), "--inception", w, "--json", "--quiet"])).unwrap();
    assert!(same["fid"].as_f64().unwrap().abs() < 1e-3, "{same}");
    let stats = dir.join("a.safetensors");
    let direct = ok(&[
        "fid",
        s(&a),
        s(&b),
        "--inception",
        w,
        "--save-stats",
        s(&stats),
        "--quiet",
    ]);
    let value: f64 = direct.trim().strip_prefix("FID ").unwrap().parse().unwrap();
    assert!(value > 1.0, "{direct}");
    let via_stats = ok(&["fid", s(&stats), s(&b), "--inception", w, "--quiet"]);
    let again: f64 = via_stats.trim().strip_prefix("FID ").unwrap().parse().unwrap();
    assert!((again - value).abs() < 1e-6 * value, "{again} vs {value}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lpips_rejects_unpaired_sets_and_missing_weights() {
    let dir = tmp("lpips");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (out, n) in [(&a, "2"), (&b, "1")] {
        ok(&[
            "sample",
            "--run",
            s(tiny_run()),
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--n",
            n,
            "--out-dir",
            s(out),
        ]);
    }
    let backbone = dir.join("alexnet.safetensors");
    fails(&["lpips", s(&a), s(&b), "--backbone", s(&backbone)], "pairs need equal");
    fails(
        &["lpips", s(&a), s(&a), "--backbone", s(&backbone)],
        "alexnet.safetensors",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_budgeted_run_killed_early_resumes_only_with_a_limit() {
    let out = tmp("budget-killed").join("r");
    train_tiny(&out, 2, &["--objective", "diffusion", "--sample-every", "0"]);
    // What a run killed during `--time-budget` without `--steps` leaves: the unlimited step count.
    let path = out.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["train"]["steps"] = 100_000_000.into();
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    fails(
        &["train", "--out", s(&out), "--resume", "--quiet"],
        "--time-budget SECONDS or --steps N",
    );
    ok(&["train", "--out", s(&out), "--resume", "--steps", "3", "--quiet"]);
}

#[test]
fn mixed_precision_trains_and_samples_close_to_f32() {
    let bf16 = diffuse::kernels::bf16::available();
    let (f, b) = (tmp("prec-f32").join("r"), tmp("prec-bf16").join("r"));
    train_tiny(&f, 4, &["--seed", "2"]);
    train_tiny(&b, 4, &["--seed", "2", "--precision", "bf16"]);
    // The same batches from the same initial weights: the output layer starts at zero, so the first loss is
    // exactly the same, and by the last of four steps bf16's gradients have moved it by far less than a percent,
    // and moved it at all where the CPU has them.
    let losses = |run: &Path| -> Vec<f64> {
        let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    };
    let (lf, lb) = (losses(&f), losses(&b));
    assert_eq!((lf.len(), lf[0]), (lb.len(), lb[0]), "{lf:?} against {lb:?}");
    let (last_f, last_b) = (lf[3], lb[3]);
    assert!(
        (last_f - last_b).abs() <= 0.01 * last_f,
        "last loss {last_f} (f32) against {last_b} (bf16)"
    );
    assert_eq!(
        last_f == last_b,
        !bf16,
        "bf16 must change the sums where the CPU has it, and only there"
    );
    // The same run sampled in both precisions: the same images to within a few grey levels.
    let draw = |precision: &str| {
        let out = tmp(&format!("prec-sample-{precision}"));
        let said = ok(&[
            "sample",
            "--run",
            s(&f),
            "--sampler",
            "ddim",
            "--steps",
            "10",
            "--n",
            "4",
            "--seed",
            "3",
            "--precision",
            precision,
            "--out-dir",
            s(&out),
        ]);
        assert!(said.contains("batches of 4"), "{said}");
        (0..4)
            .flat_map(|i| pixels(&out.join(format!("{i:05}.png"))))
            .collect::<Vec<u8>>()
    };
    let (pf, pb) = (draw("f32"), draw("bf16"));
    let mean_diff = pf
        .iter()
        .zip(&pb)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / pf.len() as f64;
    assert!(
        mean_diff <= 3.0,
        "bf16 samples are {mean_diff} grey levels from f32's on average"
    );
    let bad = diffuse(&[
        "sample",
        "--run",
        s(&f),
        "--precision",
        "fp8",
        "--out-dir",
        s(&tmp("prec-bad")),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("fp8") && err.contains("bf16"),
        "{err}"
    );
}

#[test]
fn a_diffusers_pipeline_is_imported_sampled_and_exported() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers_unet/exported");
    let dir = tmp("unet-import");
    let run = dir.join("run");
    let said = ok(&["import", "--diffusers", s(&fixture), "--out", s(&run)]);
    assert!(
        said.contains("177553 parameters") && said.contains("flow objective") && said.contains("10 classes"),
        "{said}"
    );
    fails(
        &["import", "--diffusers", s(&fixture), "--out", s(&run)],
        "already holds files",
    );
    // The folder came from diffuse, so it keeps its null class: guidance works.
    let out = dir.join("guided");
    let sample = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--run",
            s(&run),
            "--n",
            "3",
            "--steps",
            "4",
            "--out-dir",
            s(out),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = sample(&out, &["--class", "3", "--guidance", "2"]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    let again = dir.join("again");
    ok(&["export", "--diffusers", s(&run), "--out", s(&again)]);
    for f in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ] {
        assert!(again.join(f).exists(), "{f}");
    }
    fails(
        &["export", "--diffusers", s(&run), "--out", s(&again)],
        "already holds files",
    );
    // Without diffuse's own file it is a plain diffusers model of 11 classes, none of them null.
    let plain = dir.join("plain");
    for f in [
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ] {
        std::fs::create_dir_all(plain.join(f).parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(f), plain.join(f)).unwrap();
    }
    let run = dir.join("plain-run");
    let said = ok(&["import", "--diffusers", s(&plain), "--out", s(&run), "--size", "16x16"]);
    assert!(said.contains("1×16×16 images") && said.contains("11 classes"), "{said}");
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", "--run", s(&run), "--n", "2", "--steps", "2", "--out-dir"];
        let out = dir.join(format!("plain-{}", extra.len()));
        let out = s(&out).to_string();
        args.push(&out);
        args.extend_from_slice(extra);
        diffuse(&args)
    };
    let o = sample(&["--class", "1", "--guidance", "3"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no null class"));
    let o = sample(&[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --class"));
    assert!(sample(&["--class", "1"]).status.success());
    let o = diffuse(&[
        "import",
        "--diffusers",
        s(&plain),
        "--out",
        s(&dir.join("x")),
        "--size",
        "16",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("expected HxW"));
    fails(
        &[
            "import",
            "--diffusers",
            s(&dir.join("guided")),
            "--out",
            s(&dir.join("y")),
        ],
        "not a diffusers pipeline or UNet folder",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A conditional run's samples join (or replace) the classifier's training set; the accuracy stays on real
/// held-out images.
#[test]
fn a_classifier_trains_on_real_and_synthetic_digits() {
    let dir = tmp("augment");
    let run = dir.join("run");
    train_tiny(&run, 5, &["--conditional"]);
    let said = ok(&[
        "classifier",
        "train",
        "--data",
        "digits",
        "--steps",
        "20",
        "--out",
        s(&dir.join("a")),
        "--synthetic",
        s(&run),
        "--ratio",
        "0.02",
    ]);
    // 0.02 × 1500 real = 30 synthetic, 3 of each digit.
    assert!(
        said.contains("1500 real + 30 synthetic images") && said.contains("(297 real images)"),
        "{said}"
    );
    let said = ok(&[
        "classifier",
        "train",
        "--data",
        "digits",
        "--steps",
        "20",
        "--out",
        s(&dir.join("b")),
        "--synthetic",
        s(&run),
        "--ratio",
        "0.02",
        "--synthetic-only",
    ]);
    assert!(said.contains("trained on 30 synthetic images"), "{said}");
    fails(
        &[
            "classifier",
            "train",
            "--data",
            "digits",
            "--steps",
            "5",
            "--out",
            s(&dir.join("c")),
            "--synthetic",
            s(&dir.join("none")),
        ],
        "not a run",
    );
    let plain = dir.join("plain");
    train_tiny(&plain, 2, &[]);
    fails(
        &[
            "classifier",
            "train",
            "--data",
            "digits",
            "--steps",
            "5",
            "--out",
            s(&dir.join("d")),
            "--synthetic",
            s(&plain),
        ],
        "not a class-conditional run",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sampled point clouds are written as CSV rows and as the same PLY vertices.
#[test]
fn point_clouds_are_written_as_csv_and_ply() {
    let dir = tmp("ply");
    let run = dir.join("run");
    ok(&[
        "train",
        "--data",
        "points:sphere",
        "--steps",
        "5",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let out = dir.join("out");
    ok(&[
        "sample",
        "--run",
        s(&run),
        "--n",
        "50",
        "--steps",
        "5",
        "--out-dir",
        s(&out),
    ]);
    let csv = std::fs::read_to_string(out.join("points.csv")).unwrap();
    let ply = std::fs::read_to_string(out.join("points.ply")).unwrap();
    let (header, body) = ply.split_once("end_header\n").unwrap();
    assert!(header.contains("element vertex 50\n"), "{header}");
    let rows = |text: &str, sep: char| -> Vec<Vec<f32>> {
        text.lines()
            .map(|l| l.split(sep).map(|v| v.parse().unwrap()).collect())
            .collect()
    };
    assert_eq!(rows(body, ' '), rows(&csv, ','));
    // eval scores them against the held-out draw of the shape, beside the floor of real points.
    // A mesh of the cloud: PLY with quad faces.
    let mesh = dir.join("mesh.ply");
    let o = diffuse(&[
        "sample",
        "--run",
        s(&run),
        "--n",
        "500",
        "--steps",
        "5",
        "--out-dir",
        s(&dir.join("m")),
        "--mesh",
        s(&mesh),
    ]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Euler characteristic"));
    let ply = std::fs::read_to_string(&mesh).unwrap();
    assert!(ply.contains("element face ") && ply.contains("property list uchar int vertex_indices"));
    let said = ok(&["eval", "--run", s(&run), "--n", "50", "--steps", "5"]);
    assert!(
        said.contains("50 points with") && said.contains("Chamfer") && said.contains("as many training points"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--of-class` keeps the held-out inputs of one class; SDEdit reports how far the edits moved from them.
#[test]
fn edits_take_the_inputs_of_one_class() {
    let run = tiny_run();
    let d = tmp("of-class");
    let said = ok(&[
        "edit",
        "sdedit",
        "--run",
        s(run),
        "--data",
        "digits",
        "--of-class",
        "3",
        "--strength",
        "0.3",
        "--steps",
        "5",
        "--out-dir",
        s(&d),
    ]);
    // The 297 held-out digits hold 30 threes, written under their class's folder.
    assert!(
        said.starts_with("30 images edited") && said.contains("PSNR against the inputs"),
        "{said}"
    );
    assert_eq!(std::fs::read_dir(d.join("3")).unwrap().count(), 30);
    fails(
        &[
            "edit",
            "sdedit",
            "--run",
            s(run),
            "--data",
            "digits",
            "--of-class",
            "eleven",
            "--out-dir",
            s(&tmp("oc2")),
        ],
        "unknown class 'eleven'",
    );
    fails(
        &[
            "edit",
            "invert",
            "--run",
            s(run),
            "--data",
            "digits",
            "--limit",
            "2",
            "--to-class",
            "8",
            "--out-dir",
            s(&tmp("oc3")),
        ],
        "--to-class needs a class-conditional run",
    );
}

#[test]
fn clip_score_matches_transformers_and_names_bad_folders() {
    // The fixture of scripts/make_clip_fixture.py: a tiny random CLIP and transformers' scores with it.
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(f.join("expected.json")).unwrap()).unwrap();
    let out = ok(&[
        "clip-score",
        "--clip",
        s(&f.join("model")),
        "--images",
        s(&f.join("images")),
        "--prompt",
        "a red heart",
        "--json",
    ]);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = expected["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for entry in got["images"].as_array().unwrap() {
        let path = entry["image"].as_str().unwrap();
        let i = names.iter().position(|n| path.ends_with(n)).unwrap();
        // "a red heart" is the first text; the resized image is within 0.1 of transformers' preprocessing.
        let want = expected["scores"][i][0].as_f64().unwrap();
        let score = entry["score"].as_f64().unwrap();
        assert!((score - want).abs() < 0.1, "{path}: {score} against {want}");
    }
    fails(
        &[
            "clip-score",
            "--clip",
            s(&f),
            "--images",
            s(&f.join("images")),
            "--prompt",
            "x",
        ],
        "no config.json",
    );
    let long = "red heart ".repeat(20);
    fails(
        &[
            "clip-score",
            "--clip",
            s(&f.join("model")),
            "--images",
            s(&f.join("images")),
            "--prompt",
            &long,
        ],
        "at most 16",
    );
}
