//! Interrupted runs, full and read-only disks, and hostile files, through the binary as a user meets them.
//! Each test prints what it tried (`cargo test --release --test robustness -- --nocapture`); the README's
//! robustness table quotes those counts.

use diffuse::safetensors_io;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_diffuse");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse-robust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

/// A clean failure: exit 1 and a one-line `error:` message, never a panic or a signal.
fn assert_clean_failure(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1: {err}");
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{what}: {err}");
    err
}

/// Success, or a clean failure: what a corrupted file that may still parse must give.
fn assert_no_crash(o: &Output, what: &str) -> bool {
    if o.status.success() {
        return true;
    }
    assert_clean_failure(o, what);
    false
}

/// The tests' tiny UNet on the digits, checkpointed every 2 steps.
fn train_args(out: &Path, steps: usize) -> Vec<String> {
    let mut v = common::tiny_args(out, steps);
    v.extend(["--checkpoint-every", "2", "--sample-every", "0", "--seed", "5"].map(String::from));
    v
}

/// Trains the tiny run of [`train_args`] into `out`, which must succeed.
fn train_ok(out: &Path, steps: usize) {
    let o = Command::new(BIN).args(train_args(out, steps)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The command that continues whatever a killed run left: a resume once its config is written.
fn continue_args(out: &Path, steps: usize) -> Vec<String> {
    if out.join("config.json").exists() {
        vec![
            "train".into(),
            "--out".into(),
            s(out).into(),
            "--resume".into(),
            "--steps".into(),
            steps.to_string(),
            "--quiet".into(),
        ]
    } else {
        let _ = std::fs::remove_dir_all(out);
        train_args(out, steps)
    }
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_at_random_moments_then_resume_repeats_the_uninterrupted_run() {
    const STEPS: usize = 40;
    let root = tmp("kill");
    let (whole, killed) = (root.join("whole"), root.join("killed"));
    train_ok(&whole, STEPS);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (mut kills, mut mid_write, mut attempts) = (0, 0, 0);
    loop {
        attempts += 1;
        assert!(attempts < 200, "the run never finished");
        // A killed writer's temporary file stays until the next start removes it; only new ones count.
        let stale = temporaries(&killed);
        let mut child = Command::new(BIN)
            .args(continue_args(&killed, STEPS))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Half of the kills wait for a checkpoint being written (its temporary file) and strike then; the
        // others strike after a random delay, at start-up, in a step, or while logging.
        let aim_mid_write = kills < 30 && rng.random_bool(0.5);
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(0..1500));
        let struck = loop {
            if child.try_wait().unwrap().is_some() {
                break None;
            }
            let writing = temporaries(&killed).iter().any(|t| !stale.contains(t));
            if (aim_mid_write && writing) || (!aim_mid_write && Instant::now() >= deadline) {
                child.kill().unwrap(); // SIGKILL
                break Some(writing);
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let status = child.wait().unwrap();
        match struck {
            Some(writing) if !status.success() => {
                kills += 1;
                mid_write += writing as usize;
            }
            _ => {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                assert!(status.success(), "an unkilled run failed: {err}");
                if kills >= 12 && mid_write >= 3 {
                    break;
                }
                // Finished before being struck: start over from scratch to gather more kill points.
                std::fs::remove_dir_all(&killed).unwrap();
            }
        }
    }
    eprintln!("SIGKILL: {kills} kills, {mid_write} during a checkpoint write, over {attempts} starts");

    assert_eq!(
        std::fs::read_to_string(killed.join("loss.csv")).unwrap(),
        std::fs::read_to_string(whole.join("loss.csv")).unwrap(),
        "the killed and resumed run logged other losses"
    );
    // Weights bit for bit (parameter ids are drawn per process, so they are left out).
    let weights = |dir: &Path| {
        let c = safetensors_io::read(&dir.join("checkpoint.safetensors")).unwrap();
        let values = |g: &std::collections::BTreeMap<String, safetensors_io::NamedTensor>| {
            g.iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        t.shape.clone(),
                        t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        (values(&c.groups["model"]), values(&c.groups["ema"]))
    };
    assert!(weights(&whole) == weights(&killed), "the weights differ");
    assert_eq!(temporaries(&killed), Vec::<String>::new());
    // The optimizer state is keyed by those ids: both runs extended by four steps must log the same losses.
    for dir in [&whole, &killed] {
        let o = Command::new(BIN)
            .args([
                "train",
                "--out",
                s(dir),
                "--resume",
                "--steps",
                &(STEPS + 4).to_string(),
                "--quiet",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        std::fs::read_to_string(killed.join("loss.csv")).unwrap(),
        std::fs::read_to_string(whole.join("loss.csv")).unwrap(),
        "the optimizer states differ"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `script` as root of a new user and mount namespace (so it may mount a tmpfs without privileges);
/// None where the system does not allow that.
fn in_namespace(script: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new("unshare").args(["-rm", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: `unshare -rm` is not available here, so no tmpfs can be mounted");
        return None;
    }
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh"])
        .args(args)
        .output()
        .unwrap();
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn a_full_disk_or_read_only_folder_is_a_clear_error_and_keeps_the_last_checkpoint() {
    let root = tmp("disk");
    let run_dir = root.join("run");
    train_ok(&run_dir, 4);
    let ckpt = file_size(&run_dir.join("checkpoint.safetensors"));
    let total: u64 = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len().div_ceil(4096) * 4096)
        .sum();

    // A disk that holds the run and half a checkpoint more: resuming fails at its next checkpoint. Then a
    // disk filled to the last byte: sampling fails at its first image.
    let mnt = root.join("full");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = r#"
        mount -t tmpfs -o size="$4" tmpfs "$1" || exit 99
        cp "$2"/* "$1"/
        "$3" train --out "$1" --resume --steps 8 --quiet
        echo "exit=$?"
        cmp -s "$1/checkpoint.safetensors" "$2/checkpoint.safetensors" && echo "checkpoint unchanged"
        ls -a "$1"
        dd if=/dev/zero of="$1/filler" bs=4096 2>/dev/null
        "$3" sample --run "$1" --n 4 --steps 5 --out-dir "$1/more"
        echo "sample-exit=$?"
        ls -a "$1/more" 2>/dev/null
    "#;
    let size = (total + ckpt / 2).to_string();
    let Some(said) = in_namespace(script, &[s(&mnt), s(&run_dir), BIN, &size]) else {
        return;
    };
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("exit=1") && said.contains("No space left on device"),
        "{said}"
    );
    assert!(
        said.contains("checkpoint.safetensors"),
        "the error names the file: {said}"
    );
    assert!(said.contains("checkpoint unchanged"), "{said}");
    assert!(said.contains("sample-exit=1"), "{said}");
    assert!(!said.contains(".tmp"), "a temporary file was left: {said}");

    // A read-only run folder: resuming and sampling into it fail before anything is written.
    let script = r#"
        mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99
        "$2" train --out "$1" --resume --steps 8 --quiet
        echo "exit=$?"
        "$2" sample --run "$1" --n 2 --steps 5 --out-dir "$1/samples-ro"
        echo "sample-exit=$?"
    "#;
    let said = in_namespace(script, &[s(&run_dir), BIN]).unwrap();
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("exit=1") && said.contains("Read-only file system"),
        "{said}"
    );
    assert!(said.contains("sample-exit=1"), "{said}");
    eprintln!("disk: full tmpfs of {size} bytes and a read-only bind mount: clear errors, checkpoint kept");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A PNG of `w`×`h` grey pixels whose header then claims `cw`×`ch`: a decompression bomb's declaration.
fn lying_png(w: u32, h: u32, cw: u32, ch: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([200]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    let mut bytes = bytes.into_inner();
    // IHDR is the first chunk: 8-byte signature, length, "IHDR", width, height, ..., CRC over type and data.
    bytes[16..20].copy_from_slice(&cw.to_be_bytes());
    bytes[20..24].copy_from_slice(&ch.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

#[test]
fn hostile_files_get_clear_errors_and_never_a_crash() {
    let root = tmp("hostile");
    let good = root.join("run");
    train_ok(&good, 4);
    let bad = root.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let out = root.join("out");
    let sample = || {
        run(&[
            "sample",
            "--run",
            s(&bad),
            "--n",
            "1",
            "--steps",
            "2",
            "--out-dir",
            s(&out),
        ])
    };
    let config = std::fs::read_to_string(good.join("config.json")).unwrap();
    let ckpt = std::fs::read(good.join("checkpoint.safetensors")).unwrap();
    let restore = || {
        std::fs::write(bad.join("config.json"), &config).unwrap();
        std::fs::write(bad.join("checkpoint.safetensors"), &ckpt).unwrap();
    };
    let mut tried = std::collections::BTreeMap::<&str, usize>::new();

    // Truncated checkpoints: inside the length prefix, the header, and the data.
    let header = 8 + u64::from_le_bytes(ckpt[..8].try_into().unwrap()) as usize;
    let mut cuts = vec![0, 3, 8, header / 2, header - 1, header, header + 1, ckpt.len() - 1];
    cuts.extend((1..12).map(|i| header + (ckpt.len() - header) * i / 12));
    restore();
    for &cut in &cuts {
        std::fs::write(bad.join("checkpoint.safetensors"), &ckpt[..cut]).unwrap();
        assert_clean_failure(&sample(), &format!("checkpoint cut at {cut} of {}", ckpt.len()));
        *tried.entry("truncated checkpoints").or_default() += 1;
    }
    // Random byte changes: anywhere in the header, and in the tensors (possibly NaN weights).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..40 {
        let mut bytes = ckpt.clone();
        let at = if i % 2 == 0 {
            rng.random_range(0..header)
        } else {
            rng.random_range(header..bytes.len())
        };
        bytes[at] = rng.random();
        std::fs::write(bad.join("checkpoint.safetensors"), &bytes).unwrap();
        match assert_no_crash(&sample(), &format!("byte {at} changed")) {
            true => accepted += 1,
            false => refused += 1,
        }
        *tried.entry("checkpoints with a changed byte").or_default() += 1;
    }
    eprintln!("changed bytes: {refused} refused, {accepted} sampled (a changed weight is still a weight)");
    restore();

    // Configs that are malformed, out of range, or declare a network far larger than the weights.
    let edits: &[(&str, &str)] = &[
        ("\"base_channels\": 8", "\"base_channels\": 0"),
        ("\"base_channels\": 8", "\"base_channels\": -8"),
        ("\"base_channels\": 8", "\"base_channels\": 8.5"),
        ("\"base_channels\": 8", "\"base_channels\": 18446744073709551615"),
        ("\"base_channels\": 8", "\"base_channels\": 99999999999999999999999"),
        ("\"base_channels\": 8", "\"base_channels\": 1000000"),
        ("\"base_channels\": 8", "\"base_channels\": 8192"),
        ("\"heads\": 2", "\"heads\": 0"),
        ("\"heads\": 2", "\"heads\": 3"),
        ("\"timesteps\": 1000", "\"timesteps\": 1"),
        ("\"timesteps\": 1000", "\"timesteps\": 4000000000"),
        ("\"beta_start\": 0.0001", "\"beta_start\": -1.0"),
        ("\"kind\": \"linear\"", "\"kind\": \"wobbly\""),
        ("\"kind\": \"unet\"", "\"kind\": \"transformer\""),
        ("\"prediction\": \"eps\"", "\"prediction\": \"noise\""),
        ("\"height\": 8", "\"height\": 17"),
        ("\"height\": 8", "\"height\": 4294967296"),
        ("\"format\": ", "\"format\": 1000, \"old_format\": "),
        ("{", "["),
        ("}", ""),
    ];
    for (from, to) in edits {
        assert!(config.contains(from), "{from} not in {config}");
        std::fs::write(bad.join("config.json"), config.replacen(from, to, 1)).unwrap();
        let started = Instant::now();
        let err = assert_clean_failure(&sample(), &format!("config with {to}"));
        // A declared network of gigabytes is refused from the weights' shapes, before it is built.
        assert!(started.elapsed() < Duration::from_secs(20), "{to}: {err}");
        *tried.entry("malformed or hostile configs").or_default() += 1;
    }
    restore();

    // Data: PNG folders with a truncated image or a decompression bomb, IDX files that lie about their size.
    let never = root.join("never");
    let train_on = |spec: &str, what: &str| {
        assert_clean_failure(
            &run(&["train", "--data", spec, "--out", s(&never), "--steps", "1"]),
            what,
        )
    };
    let png = lying_png(16, 16, 16, 16);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.png", png[..png.len() / 2].to_vec(), ""),
        ("bomb.png", lying_png(16, 16, 60_000, 60_000), "more than its"),
        ("empty.png", vec![], ""),
        ("text.png", b"not a png".to_vec(), ""),
    ];
    for (name, bytes, needle) in cases {
        let dir = root.join(format!("folder-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.png"), &png).unwrap();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let err = train_on(&format!("folder:{}", s(&dir)), name);
        assert!(err.contains(name) && err.contains(needle), "{err}");
        *tried.entry("bad PNG inputs").or_default() += 1;
    }
    let idx = |dims: &[u32], data: &[u8]| -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
        v.extend(data);
        v
    };
    for (bytes, needle) in [
        (idx(&[4_000_000_000, 60_000, 60_000], &[1, 2, 3]), "holds 3"),
        (idx(&[2, 2, 2], &[0; 7]), "holds 7"),
        (idx(&[0xffff_ffff, 0xffff_ffff, 0xffff_ffff], &[]), "overflow"),
        (vec![0x1f, 0x8b, 8, 0, 0, 0], "gzip"),
        (vec![0, 0, 0x0d, 3], "not supported"),
    ] {
        let file = root.join("images.idx");
        std::fs::write(&file, &bytes).unwrap();
        let err = train_on(&format!("idx:{}", s(&file)), needle);
        assert!(err.contains(needle), "{err}");
        *tried.entry("bad IDX inputs").or_default() += 1;
    }

    // Statistics files: truncated, NaN, and not statistics at all.
    let stats = root.join("stats.safetensors");
    for (bytes, needle) in [
        (ckpt[..100].to_vec(), "not a statistics file"),
        (ckpt.clone(), "has no array 'mu'"),
        (b"PK\x03\x04 truncated zip".to_vec(), "not a zip archive"),
    ] {
        std::fs::write(&stats, bytes).unwrap();
        let err = assert_clean_failure(&run(&["fid", s(&stats), s(&stats)]), needle);
        assert!(err.contains(needle), "{err}");
        *tried.entry("bad statistics files").or_default() += 1;
    }

    // Edit masks whose numbers overflow or fall outside the image.
    for mask in [
        "box:18446744073709551615,0,2,2",
        "box:0,0,18446744073709551615,18446744073709551615",
        "center:9223372036854775808",
        "box:-1,0,2,2",
        "box:1,2,3",
        "ellipse:3",
    ] {
        let o = run(&[
            "edit",
            "inpaint",
            "--run",
            s(&good),
            "--data",
            "digits",
            "--limit",
            "1",
            "--mask",
            mask,
            "--steps",
            "2",
            "--out-dir",
            s(&out),
        ]);
        let err = assert_clean_failure(&o, mask);
        assert!(err.contains("mask"), "{err}");
        *tried.entry("bad edit masks").or_default() += 1;
    }
    for (what, n) in &tried {
        eprintln!("{what}: {n}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}
