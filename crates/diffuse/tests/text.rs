//! Text-to-image as a user runs it: the project's own text encoder trained on the emoji names, a UNet trained to
//! attend to it, prompts when sampling, and clear errors where text does not apply.

mod common;
use common::{emoji, fails, ok, s, tmp, train_tiny};

fn pngs(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn a_text_model_trains_on_emoji_names_and_samples_prompts() {
    let Some(data) = emoji() else { return };
    let root = tmp("text");
    let enc = root.join("enc");
    let out = ok(&["text", "train", "--data", &data, "--out", s(&enc), "--steps", "20"]);
    assert!(out.contains("held out 190 pairs"), "{out}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(enc.join("text_encoder.json")).unwrap()).unwrap();
    // Better than chance (1 in 190) after 20 steps already, as measured on the held-out names.
    assert!(
        meta["held_out"]["image_to_text_top5"].as_f64().unwrap() > 5.0 / 190.0,
        "{meta}"
    );

    let run = root.join("run");
    let tiny = [
        "--base-channels",
        "8",
        "--batch-size",
        "8",
        "--sample-every",
        "0",
        "--quiet",
    ];
    let args = [
        &[
            "train",
            "--data",
            &data,
            "--text",
            s(&enc),
            "--out",
            s(&run),
            "--steps",
            "3",
        ][..],
        &tiny,
    ]
    .concat();
    ok(&args);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["text"]["kind"], "own");
    assert_eq!(cfg["net"]["context_dim"], 64);
    assert_eq!(cfg["train"]["label_dropout"], 0.1);
    assert!(run.join("text/weights.safetensors").exists());
    // Resuming keeps the encoder it was trained with; another cannot be swapped in.
    let weights = std::fs::read(run.join("text/weights.safetensors")).unwrap();
    fails(
        &["train", "--resume", "--out", s(&run), "--text", s(&enc), "--steps", "4"],
        "--text is for a new run",
    );
    ok(&["train", "--resume", "--out", s(&run), "--steps", "4", "--quiet"]);
    assert_eq!(std::fs::read(run.join("text/weights.safetensors")).unwrap(), weights);

    let draw = |dir: &str, extra: &[&str]| {
        let o = root.join(dir);
        let base = [
            "sample",
            "--run",
            s(&run),
            "--n",
            "2",
            "--seed",
            "1",
            "--steps",
            "4",
            "--out-dir",
            s(&o),
        ];
        ok(&[&base[..], extra].concat());
        pngs(&o)
    };
    let prompts = ["--prompt", "red heart", "--prompt", "grinning face", "--guidance", "3"];
    let a = draw("a", &prompts);
    assert_eq!(a.len(), 4);
    // The prompt reaches the network: the same seeds draw other images for the other prompt.
    assert!(a[0] != a[2] && a[1] != a[3]);
    assert_eq!(draw("b", &prompts), a, "the same command draws the same images");
    // A negative prompt is taken (what it steers is checked against diffusers in the library's tests).
    assert_eq!(
        draw("c", &[&prompts[..], &["--negative-prompt", "blue"]].concat()).len(),
        4
    );

    let score = ok(&[
        "text",
        "score",
        "--encoder",
        s(&enc),
        "--images",
        s(&root.join("a")),
        "--prompt",
        "red heart",
    ]);
    assert!(score.contains("not CLIP") && score.contains("of 4 images"), "{score}");

    let never = root.join("never");
    let (run_s, never_s) = (s(&run).to_string(), s(&never).to_string());
    let sample = |extra: &[&str]| -> Vec<String> {
        let base = ["sample", "--run", &run_s, "--n", "1", "--out-dir", &never_s];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let fails_with = |args: Vec<String>, needle: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&refs, needle);
    };
    fails_with(sample(&["--class", "1"]), "--class is for class-conditional runs");
    fails_with(sample(&["--guidance", "3"]), "--guidance needs --prompt");
    fails_with(
        sample(&["--prompt", "x", "--negative-prompt", "y"]),
        "--negative-prompt steers guidance",
    );
    let long = "red ".repeat(20);
    fails_with(sample(&["--prompt", &long]), "at most 15");
    assert!(!root.join("never").exists());
    fails(
        &["text", "train", "--data", "digits", "--out", s(&root.join("d"))],
        "has no captions",
    );
    let digits_run = root.join("digits");
    fails(
        &["train", "--data", "digits", "--text", s(&enc), "--out", s(&digits_run)],
        "needs captioned data",
    );
    train_tiny(&digits_run, 2, &[]);
    fails(
        &[
            "sample",
            "--run",
            s(&digits_run),
            "--prompt",
            "a",
            "--out-dir",
            s(&root.join("never")),
        ],
        "need a text-conditioned run",
    );
    std::fs::remove_dir_all(&root).unwrap();
}
