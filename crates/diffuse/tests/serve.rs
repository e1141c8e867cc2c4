//! `diffuse serve` as a browser and an attacker reach it: its jobs make what the command line makes, bit for bit;
//! previews stream; a drawn mask keeps its pixels; cancelling stops a job; hostile requests get JSON 4xx errors
//! and write nothing; and a bounded load on loopback is served without errors.

mod common;

use common::{ok, s, tmp, train_tiny};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A studio over `runs`, on a free port; killed when dropped.
struct Studio {
    child: Child,
    addr: String,
}

impl Studio {
    fn start(runs: &Path, extra: &[&str]) -> Studio {
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(["serve", "--runs", s(runs), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the studio starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // Jobs print what their commands print; the pipe is drained so that the studio never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("diffuse studio: http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("the first line names the address: {line:?}"))
            .to_string();
        Studio { child, addr }
    }

    /// One raw HTTP/1.1 request (the test controls every byte of it); the status and the body. With
    /// `hang_up`, the client closes its side after sending (a request cut short).
    fn raw_with(&self, request: &str, hang_up: bool) -> (u16, String) {
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        if hang_up {
            tcp.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        (status, body)
    }

    fn raw(&self, request: &str) -> (u16, String) {
        self.raw_with(request, false)
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.raw(&format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        ))
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.request(method, path, &body.to_string());
        let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        (status, v)
    }

    fn submit(&self, job: &Value) -> u64 {
        let (status, v) = self.json("POST", "/api/jobs", job);
        assert_eq!(status, 202, "{job}: {v}");
        v["id"].as_u64().unwrap()
    }

    /// Polls job `id` until it has finished; its last state.
    fn wait(&self, id: u64) -> Value {
        poll(
            Duration::from_secs(300),
            Duration::from_millis(50),
            &format!("job {id}"),
            || {
                let (status, v) = self.json("GET", &format!("/api/jobs/{id}"), &Value::Null);
                assert_eq!(status, 200, "{v}");
                ["done", "failed", "cancelled"]
                    .contains(&v["state"].as_str().unwrap())
                    .then_some(v)
            },
        )
    }

    /// An open event stream of job `id`.
    fn events(&self, id: u64) -> TcpStream {
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        write!(tcp, "GET /api/jobs/{id}/events HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        tcp
    }

    fn file(&self, path: &str) -> Vec<u8> {
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).unwrap();
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{path}: {}",
            String::from_utf8_lossy(&out[..at])
        );
        out[at..].to_vec()
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `f` every `every` until it gives a value, for at most `limit`.
fn poll<T>(limit: Duration, every: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// A runs folder with one tiny trained run, `tiny`.
fn runs_folder(name: &str) -> PathBuf {
    let runs = tmp(name).join("runs");
    train_tiny(&runs.join("tiny"), 20, &["--seed", "1", "--objective", "diffusion"]);
    runs
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[test]
fn studio_jobs_are_the_command_lines_bit_for_bit() {
    let runs = runs_folder("studio");
    let studio = Studio::start(&runs, &[]);
    let (status, cat) = studio.json("GET", "/api/runs", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(cat["runs"][0]["name"], "tiny");
    assert_eq!(cat["runs"][0]["config"]["height"], 8);
    let page = studio.request("GET", "/", "");
    assert!(page.1.contains("diffuse studio") && page.1.contains("/app.js"));

    // A sample job, followed by its event stream: previews arrive, then the files.
    let id = studio.submit(&json!({"kind": "sample", "run": "tiny",
        "settings": {"sampler": "ddim", "steps": 12, "n": 6, "seed": 3, "batch-size": 4}}));
    let events = studio.events(id);
    let mut previews = 0;
    let mut last = Value::Null;
    for line in BufReader::new(events).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            last = serde_json::from_str(data).unwrap();
            previews += last["preview"]
                .as_str()
                .is_some_and(|p| p.starts_with("data:image/png;base64,")) as usize;
            if last["state"] == "done" || last["state"] == "failed" {
                break;
            }
        }
    }
    assert_eq!(last["state"], "done", "{last}");
    assert!(previews >= 1, "no preview streamed");
    assert_eq!(last["steps"], 12);
    let files: Vec<&str> = last["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.contains(&format!("job-{id:06}/settings.json").as_str()),
        "{files:?}"
    );
    assert_eq!(files.iter().filter(|f| f.contains("/images/")).count(), 6, "{files:?}");

    // The settings' command, run by the command line into another folder, draws the same bytes.
    let job = runs.join("serve").join(format!("job-{id:06}"));
    let settings: Value = serde_json::from_slice(&std::fs::read(job.join("settings.json")).unwrap()).unwrap();
    let again = tmp("studio-cli");
    let words: Vec<String> = settings["command"].as_array().unwrap()[1..]
        .iter()
        .map(|w| w.as_str().unwrap().replace(s(&job), s(&again)))
        .collect();
    ok(&words.iter().map(String::as_str).collect::<Vec<_>>());
    for i in 0..6 {
        let name = format!("{i:05}.png");
        let served = studio.file(&format!("/files/jobs/job-{id:06}/images/{name}"));
        assert_eq!(
            served,
            std::fs::read(again.join("images").join(&name)).unwrap(),
            "{name}"
        );
    }

    // Inpainting an upload under a drawn mask keeps the unmasked pixels.
    let input = std::fs::read(job.join("images/00000.png")).unwrap();
    let mask_png = {
        let img = image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x >= 4 { 255 } else { 0 }]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let id = studio.submit(
        &json!({"kind": "inpaint", "run": "tiny", "image": b64(&input), "mask": b64(&mask_png),
        "settings": {"sampler": "ddim", "steps": 10, "seed": 1}}),
    );
    let done = studio.wait(id);
    assert_eq!(done["state"], "done", "{done}");
    let out = image::load_from_memory(&studio.file(&format!("/files/jobs/job-{id:06}/images/input.png")))
        .unwrap()
        .to_luma8();
    let orig = image::load_from_memory(&input).unwrap().to_luma8();
    for (x, y, p) in orig.enumerate_pixels() {
        if x < 4 {
            assert_eq!(out.get_pixel(x, y), p, "kept pixel ({x}, {y}) changed");
        }
    }

    // Interpolating between two uploaded images (inverted with DDIM): the frames and their grid.
    let second = std::fs::read(job.join("images/00001.png")).unwrap();
    let id = studio.submit(
        &json!({"kind": "interpolate", "run": "tiny", "images": [b64(&input), b64(&second)],
        "settings": {"sampler": "ddim", "steps": 10, "frames": 4}}),
    );
    let done = studio.wait(id);
    assert_eq!(done["state"], "done", "{done}");
    let frames = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.as_str().unwrap().contains("/images/"));
    assert_eq!(frames.count(), 4, "{done}");

    // Inverting an upload, and restoring it from a 2× smaller measurement.
    for (kind, extra, want) in [
        ("invert", json!({}), "images/input.png"),
        ("restore", json!({"task": "sr:2", "noise": 0.05}), "images/scores.json"),
    ] {
        let mut settings = json!({"sampler": "ddim", "steps": 5});
        settings
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let id = studio.submit(&json!({"kind": kind, "run": "tiny", "image": b64(&input), "settings": settings}));
        let done = studio.wait(id);
        assert_eq!(done["state"], "done", "{done}");
        let want = format!("job-{id:06}/{want}");
        assert!(
            done["files"].as_array().unwrap().iter().any(|f| f == &json!(want)),
            "{kind}: {done}"
        );
    }

    // The lab needs no run; a sweep writes its table and plot.
    let id = studio.submit(
        &json!({"kind": "lab", "settings": {"target": "gaussian", "samples": 2048,
        "sweep": "ddim", "sweep-steps": "5,10"}}),
    );
    let done = studio.wait(id);
    assert_eq!(done["state"], "done", "{done}");
    assert!(
        String::from_utf8(studio.file(&format!("/files/jobs/job-{id:06}/lab.md")))
            .unwrap()
            .contains("ddim")
    );

    // Queued behind a long job, then both cancelled: neither writes its images.
    let long = json!({"kind": "sample", "run": "tiny", "settings": {"sampler": "ddpm", "steps": 1000, "n": 256}});
    let first = studio.submit(&long);
    while studio.json("GET", &format!("/api/jobs/{first}"), &Value::Null).1["state"] == "queued" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = studio.submit(&long);
    let (_, queued) = studio.json("GET", &format!("/api/jobs/{second}"), &Value::Null);
    assert_eq!(
        (queued["state"].as_str(), queued["position"].as_u64()),
        (Some("queued"), Some(1)),
        "{queued}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for id in [second, first] {
        let (status, _) = studio.json("DELETE", &format!("/api/jobs/{id}"), &Value::Null);
        assert_eq!(status, 202);
    }
    for id in [first, second] {
        let v = studio.wait(id);
        assert_eq!(v["state"], "cancelled", "{v}");
        assert!(
            !runs.join(format!("serve/job-{id:06}/images")).exists(),
            "a cancelled job wrote images"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancelling took {:?}",
        started.elapsed()
    );

    // A page that closes its event stream (and does not come back) cancels its job after a grace period.
    let id = studio.submit(&long);
    let mut events = studio.events(id);
    let mut first = [0u8; 64];
    events.read_exact(&mut first).unwrap();
    drop(events);
    let v = studio.wait(id);
    assert_eq!(v["state"], "cancelled", "{v}");
    assert!(
        v["seconds"].as_f64().unwrap() >= 4.0,
        "cancelled before the grace period: {v}"
    );
}

/// A Stable Diffusion import (the tiny fixture pipeline) samples a prompt and a negative prompt, as its command
/// line does; a prompt with characters outside the limits is refused with the request.
#[test]
fn a_text_run_samples_a_prompt_as_its_command_line_does() {
    let runs = tmp("studio-text").join("runs");
    let pipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd/pipe");
    ok(&["import", "--diffusers", s(&pipe), "--out", s(&runs.join("sd"))]);
    let studio = Studio::start(&runs, &[]);
    let settings = json!({"prompt": "red heart", "negative-prompt": "blue cat", "guidance": 4, "steps": 5, "n": 2});
    let id = studio.submit(&json!({"kind": "sample", "run": "sd", "settings": settings}));
    let done = studio.wait(id);
    assert_eq!(done["state"], "done", "{done}");
    let job = runs.join("serve").join(format!("job-{id:06}"));
    let recorded: Value = serde_json::from_slice(&std::fs::read(job.join("settings.json")).unwrap()).unwrap();
    let again = tmp("studio-text-cli");
    let words: Vec<String> = recorded["command"].as_array().unwrap()[1..]
        .iter()
        .map(|w| w.as_str().unwrap().replace(s(&job), s(&again)))
        .collect();
    assert!(words.contains(&"--prompt=red heart".to_string()), "{words:?}");
    ok(&words.iter().map(String::as_str).collect::<Vec<_>>());
    for name in ["00000.png", "00001.png"] {
        let served = studio.file(&format!("/files/jobs/job-{id:06}/images/{name}"));
        assert_eq!(
            served,
            std::fs::read(again.join("images").join(name)).unwrap(),
            "{name}"
        );
    }
    let bad = json!({"kind": "sample", "run": "sd", "settings": {"prompt": "a \"quoted\" heart"}});
    let (status, body) = studio.json("POST", "/api/jobs", &bad);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("prompt"), "{body}");
}

#[test]
fn hostile_requests_get_json_errors_and_write_nothing() {
    let base = tmp("hostile");
    let runs = base.join("runs");
    train_tiny(&runs.join("tiny"), 5, &["--seed", "2", "--objective", "diffusion"]);
    std::fs::write(base.join("secret.png"), b"not for the web").unwrap();
    let studio = Studio::start(&runs, &["--max-body-kib", "64", "--job-seconds", "2"]);
    let before: Vec<_> = snapshot(&base);

    let bad_jobs: Vec<String> = [
        json!({"kind": "sample"}),
        json!({"kind": "sample", "run": "nope"}),
        json!({"kind": "sample", "run": "../runs/tiny"}),
        json!({"kind": "sample", "run": "tiny", "settings": {"out-dir": "/tmp/x"}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"grid": "x.png"}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"n": 1e300}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"n": -5}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"n": "many"}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"steps": [1]}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"sampler": "warp-drive"}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"sampler": "../../etc"}}),
        json!({"kind": "sample", "run": "tiny", "settings": {"eta": "0;rm"}}),
        json!({"kind": "sample", "run": "tiny", "settings": "--out-dir=/"}),
        json!({"kind": "sample", "run": "tiny", "extra": 1}),
        json!({"kind": "lab", "run": "tiny"}),
        json!({"kind": "train", "run": "tiny"}),
        json!({"kind": "inpaint", "run": "tiny", "image": "data:image/png;base64,!!!"}),
        json!({"kind": "inpaint", "run": "tiny", "image": b64(b"\x89PNG\r\n\x1a\nnot really")}),
        json!({"kind": "inpaint", "run": "tiny", "mask": "aGVsbG8="}),
        json!({"kind": "sdedit", "run": "tiny", "mask": b64(b"x")}),
        json!({"kind": "sample", "run": "tiny", "image": b64(b"x")}),
        json!({"kind": "interpolate", "run": "tiny", "images": ["a"]}),
        json!({"kind": "lab", "settings": {"samples": 1e9}}),
        json!({"kind": "lab", "settings": {"target": "nonsense"}}),
        json!(null),
        json!([]),
        json!(42),
    ]
    .iter()
    .map(Value::to_string)
    .chain(["{", "", "{\"kind\": ", "\u{0}", "{\"kind\": \"sample\", \"run\": 5}"].map(String::from))
    .collect();
    let paths = [
        "/files/runs/../secret.png",
        "/files/runs/%2e%2e/secret.png",
        "/files/runs/tiny/../../secret.png",
        "/files/runs/tiny/%2e%2e/%2e%2e/secret.png",
        "/files/runs//etc/passwd",
        "/files/jobs/../../secret.png",
        "/files/runs/tiny/checkpoint.safetensors",
        "/files/other/x.png",
        "/files/runs/tiny/.hidden.png",
        "/api/jobs/-1",
        "/api/jobs/99999999999999999999999",
        "/api/jobs/abc/events",
        "/nowhere",
        "/api/runs/../../etc/passwd",
    ];
    let mut answered = 0;
    for round in 0..8 {
        for body in &bad_jobs {
            let (status, text) = studio.request("POST", "/api/jobs", body);
            assert!((400..500).contains(&status), "{body}: {status} {text}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{body}: not JSON: {text}"));
            assert!(v["error"].is_string(), "{body}: {v}");
            answered += 1;
        }
        for path in paths {
            let (status, text) = studio.request(if round % 2 == 0 { "GET" } else { "DELETE" }, path, "");
            assert!((400..500).contains(&status), "{path}: {status} {text}");
            assert!(!text.contains("not for the web"), "{path} leaked the secret");
            answered += 1;
        }
    }
    // Too big a body, a wrong method, a broken request line, a lying length.
    let huge = format!(
        "{{\"kind\": \"inpaint\", \"run\": \"tiny\", \"image\": \"{}\"}}",
        "A".repeat(100_000)
    );
    let (status, text) = studio.request("POST", "/api/jobs", &huge);
    assert_eq!(status, 413);
    assert!(text.contains("\"error\""), "{text}");
    assert_eq!(studio.request("PUT", "/api/runs", "").0, 405);
    assert_eq!(studio.request("GET", "/files/runs/tiny/%FF.png", "").0, 400);
    // Another site: a rebinding name as the Host, a foreign Origin, a form post that needs no CORS preflight.
    let job = json!({"kind": "sample", "run": "tiny", "settings": {"n": 1, "steps": 2}}).to_string();
    let foreign = [
        format!(
            "POST /api/jobs HTTP/1.1\r\nHost: evil.example:80\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{job}",
            job.len()
        ),
        "GET /api/runs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "POST /api/jobs HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{job}",
            studio.addr,
            job.len()
        ),
        format!(
            "POST /api/jobs HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{job}",
            studio.addr,
            job.len()
        ),
    ];
    for (request, want) in foreign.iter().zip([403, 403, 403, 415]) {
        let (status, text) = studio.raw(request);
        assert_eq!(status, want, "{request}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let (status, _) = studio.raw("NONSENSE\r\n\r\n");
    assert!(status == 0 || (400..500).contains(&status), "{status}");
    let (status, _) = studio.raw_with(
        &format!(
            "POST /api/jobs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n{{}}",
            studio.addr
        ),
        true,
    );
    assert!(status == 0 || (400..500).contains(&status), "{status}");
    assert!(answered > 300);

    // Still answering, and nothing was written: not outside the output folder, not inside it.
    let (status, cat) = studio.json("GET", "/api/runs", &Value::Null);
    assert_eq!((status, cat["runs"][0]["name"].as_str()), (200, Some("tiny")));
    let after: Vec<_> = snapshot(&base);
    assert_eq!(
        before.iter().map(|f| &f.0).collect::<Vec<_>>(),
        after.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(before == after, "a file changed");

    // A job that asks for too much in all (each setting within its cap) stops at the time limit.
    let id = studio
        .submit(&json!({"kind": "sample", "run": "tiny", "settings": {"sampler": "ddpm", "steps": 1000, "n": 256}}));
    let v = studio.wait(id);
    assert_eq!(v["state"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit of 2 s"), "{v}");
}

/// `SERVE_LOAD_CLIENTS` clients (default 16) for `SERVE_LOAD_SECONDS` (default 5) each submit a small sample
/// job and wait for it, again and again; every job must finish, and the studio's memory must stay bounded.
#[test]
fn bounded_load_on_loopback_is_served_without_errors() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (clients, seconds) = (env("SERVE_LOAD_CLIENTS", 16), env("SERVE_LOAD_SECONDS", 5));
    let runs = runs_folder("load");
    let studio = std::sync::Arc::new(Studio::start(&runs, &[]));
    // One job first, so that the model is loaded and buffers grown before the memory baseline.
    let id = studio.submit(&json!({"kind": "sample", "run": "tiny", "settings": {"steps": 2, "n": 1}}));
    assert_eq!(studio.wait(id)["state"], "done");
    let rss_before = studio.rss_kib();
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let studio = studio.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let job = json!({"kind": "sample", "run": "tiny",
                        "settings": {"sampler": "ddim", "steps": 2, "n": 1, "seed": c}});
                    let v = studio.wait(studio.submit(&job));
                    assert_eq!(v["state"], "done", "{v}");
                    latencies.push(started.elapsed().as_secs_f64());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let rss_after = studio.rss_kib();
    eprintln!(
        "load: {clients} clients, {seconds} s: {} jobs, {:.1} jobs/s, latency p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, \
         max {:.3} s; studio RSS {rss_before:?} → {rss_after:?} KiB",
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        q(0.5),
        q(0.95),
        q(0.99),
        q(1.0)
    );
    assert!(latencies.len() >= clients as usize);
    // Measured: about 105 MB after 30 s of 50 clients, 109 MB after 90 s (the registry of the last 256 jobs).
    if let Some(b) = rss_after {
        assert!(b < 200 * 1024, "the studio grew to {b} KiB (from {rss_before:?})");
    }
}

/// A WebDriver session of headless Chromium (chromedriver), spoken to in plain JSON over HTTP.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    /// None (with a message) where chromedriver and Chromium are not installed.
    fn start() -> Option<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let Ok(driver) = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            eprintln!("skipped: chromedriver is not installed (Debian: apt install chromium chromium-driver)");
            return None;
        };
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1300"]}}}});
        let started = Instant::now();
        let created = loop {
            match browser.call("POST", "/session", &caps) {
                Ok(v) => break v,
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    eprintln!("skipped: no Chromium session ({e})");
                    return None;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        browser.session = created["value"]["sessionId"].as_str()?.to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => agent.get(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            _ => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status >= 400 {
            return Err(format!("{method} {path}: {status} {v}"));
        }
        Ok(v)
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, &body).unwrap_or_else(|e| panic!("{e}"))["value"].clone()
    }

    /// Runs `script` in the page (its `arguments` are `args`); what it returns.
    fn js(&self, script: &str, args: Value) -> Value {
        self.session("POST", "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Waits until `script` returns something truthy; that value.
    fn until(&self, script: &str, what: &str) -> Value {
        poll(Duration::from_secs(120), Duration::from_millis(100), what, || {
            let v = self.js(script, json!([]));
            (!(v.is_null() || v == json!(false) || v == json!(""))).then_some(v)
        })
    }

    /// Waits for the job shown in the page's `panel` to end, asserts that it is done, waits for its first
    /// picture; the command line the panel shows, as words after `diffuse`.
    fn job_done(&self, panel: &str) -> Vec<String> {
        let status = self.until(
            &format!(
                "const s = document.querySelector('[data-job={panel}] .status')?.textContent || '';
                 return /done|failed|refused/.test(s) && s"
            ),
            &format!("the {panel} job"),
        );
        assert!(status.as_str().unwrap().contains("done"), "{status}");
        self.until(
            &format!("return document.querySelector('[data-job={panel}] img.result')?.complete"),
            &format!("the {panel} job's picture"),
        );
        let command = self.js(
            &format!("return document.querySelector('[data-job={panel}] .command').textContent"),
            json!([]),
        );
        command.as_str().unwrap().split(' ').skip(1).map(String::from).collect()
    }

    fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("DIFFUSE_SCREENSHOTS") else {
            return;
        };
        use base64::Engine;
        let png = self.session("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(Path::new(&dir).join(name), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), &Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page in a real browser: a sample drawn through the form equals the command line's, and a mask painted
/// with the mouse is sent and keeps its pixels. `DIFFUSE_SCREENSHOTS=DIR` saves a screenshot of each screen;
/// `DIFFUSE_STUDIO_RUN=RUN` uses a copy of that run instead of a tiny one (the README's screenshots).
#[test]
fn a_browser_samples_and_inpaints_a_painted_mask() {
    let Some(browser) = Browser::start() else { return };
    let runs = match std::env::var("DIFFUSE_STUDIO_RUN") {
        Ok(run) => {
            let runs = tmp("browser").join("runs");
            let copy = runs.join(Path::new(&run).file_name().unwrap());
            std::fs::create_dir_all(&copy).unwrap();
            for f in ["config.json", "checkpoint.safetensors", "loss.png", "samples.png"] {
                std::fs::copy(Path::new(&run).join(f), copy.join(f)).unwrap();
            }
            runs
        }
        Err(_) => runs_folder("browser"),
    };
    let studio = Studio::start(&runs, &[]);
    browser.session("POST", "/url", json!({"url": format!("http://{}/", studio.addr)}));
    browser.until(
        "return document.querySelector('#runs li')?.textContent",
        "the runs list",
    );
    browser.until(
        "return document.querySelector('#run-samples').complete",
        "the run's pictures",
    );
    browser.screenshot("studio-run.png");

    // Sample: the form's settings, submitted as a user would.
    browser.js(
        "document.querySelector('[data-tab=sample]').click();
         const f = document.querySelector('#sample-form');
         f.steps.value = 10; f.n.value = 9; f.seed.value = 4; f['batch-size'].value = 9;
         f.querySelector('button[type=submit]').click();",
        json!([]),
    );
    let words = browser.job_done("sample");
    browser.screenshot("studio-sample.png");
    let job_dir = words
        .iter()
        .find_map(|w| w.strip_prefix("--out-dir="))
        .unwrap()
        .trim_end_matches("/images");
    let again = tmp("browser-cli");
    let replaced: Vec<String> = words.iter().map(|w| w.replace(job_dir, s(&again))).collect();
    ok(&replaced.iter().map(String::as_str).collect::<Vec<_>>());
    for i in 0..9 {
        let name = format!("{i:05}.png");
        let job = job_dir.rsplit('/').next().unwrap();
        assert_eq!(
            studio.file(&format!("/files/jobs/{job}/images/{name}")),
            std::fs::read(again.join("images").join(&name)).unwrap()
        );
    }

    // Edit: upload an image (through the file input), paint the right half of the mask with the mouse, inpaint.
    let input = again.join("images/00000.png");
    browser.js("document.querySelector('[data-tab=edit]').click()", json!([]));
    let upload = browser.session(
        "POST",
        "/element",
        json!({"using": "css selector", "value": "#edit-form [name=upload]"}),
    );
    let upload_id = upload
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    browser.session(
        "POST",
        &format!("/element/{upload_id}/value"),
        json!({"text": s(&input)}),
    );
    browser.js(
        "const f = document.querySelector('#edit-form');
         f.brush.value = Math.max(2, Math.round(document.querySelector('#paint').width / 8));
         f.querySelector('.sampler [name=steps]').value = 10;",
        json!([]),
    );
    // Strokes down the right half of the canvas, in viewport pixels.
    let rect = browser.js(
        "const r = document.querySelector('#paint').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]",
        json!([]),
    );
    let r: Vec<f64> = rect.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let at = |fx: f64, fy: f64| {
        json!({"type": "pointerMove", "origin": "viewport", "duration": 50,
        "x": (r[0] + fx * r[2]) as i64, "y": (r[1] + fy * r[3]) as i64})
    };
    let mut actions = vec![at(0.8, 0.02), json!({"type": "pointerDown", "button": 0})];
    for (fx, fy) in [(0.8, 0.98), (0.6, 0.98), (0.6, 0.02), (0.95, 0.02), (0.95, 0.98)] {
        actions.push(at(fx, fy));
    }
    actions.push(json!({"type": "pointerUp", "button": 0}));
    browser.session(
        "POST",
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]}),
    );
    browser.screenshot("studio-mask.png");
    browser.js(
        "document.querySelector('#edit-form button[type=submit]').click()",
        json!([]),
    );
    let words = browser.job_done("edit");
    browser.screenshot("studio-inpaint.png");
    let job = words.iter().find_map(|w| w.strip_prefix("--out-dir=")).unwrap();
    let job = Path::new(job.trim_end_matches("/images"));
    let mask = image::open(job.join("mask.png")).unwrap().to_luma8();
    let painted = mask.pixels().filter(|p| p.0[0] >= 128).count() as f64 / mask.len() as f64;
    assert!((0.2..=0.6).contains(&painted), "{painted} of the pixels painted");
    let sent = image::open(job.join("input.png")).unwrap().to_luma8();
    let result = image::open(job.join("images/input.png")).unwrap().to_luma8();
    for ((m, a), b) in mask.pixels().zip(sent.pixels()).zip(result.pixels()) {
        if m.0[0] < 128 {
            assert_eq!(a, b, "a kept pixel changed");
        }
    }

    // The lab, and its sweep's plot.
    browser.js(
        "document.querySelector('[data-tab=lab]').click();
         const f = document.querySelector('#lab-form'); f.samples.value = 4096; f['sweep-steps'].value = '5,10,20';
         f.querySelector('button[type=submit]').click();",
        json!([]),
    );
    browser.job_done("lab");
    browser.until(
        "return document.querySelector('[data-job=lab] pre.table')",
        "the lab table",
    );
    browser.screenshot("studio-lab.png");
}
