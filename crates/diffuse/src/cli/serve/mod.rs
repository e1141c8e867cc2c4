//! `diffuse serve`: a local web studio over the runs in a folder. Every job it runs is a `diffuse` command
//! line (see [`argv`]), run in this process in its own folder under the output folder, so the page shows what
//! the command line makes, bit for bit, and each result carries the command that reproduces it.
//!
//! Routes: `/` (the page, embedded), `/api/runs`, `POST /api/jobs`, `/api/jobs/{id}` (state),
//! `/api/jobs/{id}/events` (server-sent events), `DELETE /api/jobs/{id}`, `/files/runs/…` and `/files/jobs/…`.

mod argv;
mod files;
mod jobs;

use anyhow::{Context, bail};
use argv::Kind;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use jobs::{Jobs, PreviewShape};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
#[command(after_help = "Examples:\n  diffuse serve --runs runs --port 8080\n  \
diffuse serve --runs runs --port 0   (any free port; the address is printed)")]
pub struct ServeArgs {
    /// Folder of run directories (found up to three levels down) and compare folders.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Where jobs write, a folder per job (default: serve/ in --runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on. The default answers this machine only; any other lets whoever reaches it run
    /// jobs and read the runs, and is warned about.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Jobs run at once (each already uses every core); the others wait in a queue.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Jobs that may wait; more are refused (503) until the queue shortens.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Largest request body (uploaded PNGs as base64 included), in KiB.
    #[arg(long, default_value_t = 2048)]
    max_body_kib: usize,
    /// A job still sampling after this many seconds is stopped (the caps on each setting do not bound their
    /// product).
    #[arg(long, default_value_t = 900)]
    job_seconds: u64,
}

/// Largest uploaded image side, in pixels; the runs' images are far smaller.
const MAX_UPLOAD_SIDE: usize = 1024;

struct App {
    runs: PathBuf,
    jobs: Arc<Jobs>,
    max_body: usize,
    /// The Host values requests must carry when listening on loopback (None: any, when exposed on purpose).
    hosts: Option<Vec<String>>,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let runs = a
        .runs
        .canonicalize()
        .with_context(|| format!("--runs {}", a.runs.display()))?;
    let out = a.out.clone().unwrap_or_else(|| runs.join("serve"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    if a.jobs == 0 || a.queue == 0 || a.max_body_kib == 0 || a.job_seconds == 0 {
        bail!("--jobs, --queue, --max-body-kib and --job-seconds must be at least 1");
    }
    if !a.host.is_loopback() {
        eprintln!(
            "warning: listening on {}: anyone who can reach this address can run jobs and read the runs in {}",
            a.host,
            runs.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(a.host, a.port))
            .await
            .with_context(|| format!("listening on {}:{}", a.host, a.port))?;
        let bound = listener.local_addr()?;
        // On loopback, only requests addressed to it are answered: a page elsewhere that rebinds its own name
        // to 127.0.0.1 sends its own name as the Host.
        let hosts = a.host.is_loopback().then(|| {
            let p = bound.port();
            vec![format!("127.0.0.1:{p}"), format!("localhost:{p}"), format!("[::1]:{p}")]
        });
        let app = Arc::new(App {
            runs,
            jobs: Arc::new(Jobs::new(out, a.jobs, a.queue, Duration::from_secs(a.job_seconds))),
            max_body: a.max_body_kib * 1024,
            hosts,
        });
        // The address first, on its own line: scripts and tests read it (port 0 picks one).
        println!("diffuse studio: http://{bound}/");
        std::io::Write::flush(&mut std::io::stdout())?;
        // From here on, what jobs print goes to stderr: a reader of stdout that stops once it has the address
        // must not end the studio through a closed pipe.
        #[cfg(unix)]
        // SAFETY: duplicating the process's own stderr descriptor onto stdout; both stay open.
        unsafe {
            libc::dup2(2, 1);
        }
        eprintln!(
            "runs from {}, jobs written to {}; Ctrl-C stops",
            app.runs.display(),
            app.jobs.out.display()
        );
        axum::serve(listener, router(app)).await?;
        Ok(())
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("page/index.html")) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", include_str!("page/app.js")) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css", include_str!("page/style.css")) }),
        )
        .route("/api/runs", get(list_runs))
        .route("/api/jobs", axum::routing::post(create_job))
        .route("/api/jobs/{id}", get(job_state).delete(cancel_job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/files/{*path}", get(file))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "that method is not served here")
        })
        .layer(middleware::from_fn_with_state(app.clone(), same_origin))
        .with_state(app)
}

/// Answers only requests addressed to the studio, from its own page or from no page at all (scripts): a
/// request with a foreign Host or Origin is refused, and jobs are posted as JSON, which a foreign page cannot
/// send without asking first (CORS), and the studio never says yes.
async fn same_origin(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |h: &HeaderMap, name| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let host = text(headers, header::HOST);
    if let Some(allowed) = &app.hosts
        && !host.as_ref().is_some_and(|h| allowed.contains(h))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "this studio answers requests to its own address only",
        )
        .into_response();
    }
    if let Some(origin) = text(headers, header::ORIGIN)
        && Some(origin.as_str()) != host.map(|h| format!("http://{h}")).as_deref()
    {
        return ApiError::new(StatusCode::FORBIDDEN, "requests from other sites are refused").into_response();
    }
    let json = text(headers, header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json"));
    if request.method() == Method::POST && !json {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "jobs are posted as application/json",
        )
        .into_response();
    }
    next.run(request).await
}

/// A path of a URL, or a 400 with a JSON error (a part that is not UTF-8, say).
fn url_path(p: Result<UrlPath<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|UrlPath(s)| s).map_err(|e| ApiError::bad(e.body_text()))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// A 4xx or 5xx with `{"error": …}`.
struct ApiError(StatusCode, String);

impl ApiError {
    fn new(code: StatusCode, why: impl Into<String>) -> ApiError {
        ApiError(code, why.into())
    }

    fn bad(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, why)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

async fn list_runs(State(app): State<Arc<App>>) -> Response {
    let skip = app.jobs.out.clone();
    let root = app.runs.clone();
    match tokio::task::spawn_blocking(move || files::catalogue(&root, &skip)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(_) => internal(),
    }
}

/// A 500 that tells the client nothing of the server's insides.
fn internal() -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the studio failed at this; its log says more",
    )
    .into_response()
}

async fn file(State(app): State<Arc<App>>, path: Result<UrlPath<String>, PathRejection>) -> Response {
    let path = match url_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let found = match path.split_once('/') {
        Some(("runs", rel)) => files::resolve(&app.runs, rel),
        Some(("jobs", rel)) => files::resolve(&app.jobs.out, rel),
        _ => None,
    };
    let Some((p, kind)) = found else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response();
    };
    match tokio::fs::read(&p).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// A job as the page asks for it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    kind: Kind,
    /// The run's name, as /api/runs lists it.
    run: Option<String>,
    /// Flag name → value (see [`argv::flags`]).
    #[serde(default)]
    settings: Value,
    /// An input image (edits), a PNG as a data URL or base64.
    image: Option<String>,
    /// A mask drawn on the page (inpainting): white regenerates.
    mask: Option<String>,
    /// Two images to interpolate between.
    images: Option<Vec<String>>,
}

async fn create_job(State(app): State<Arc<App>>, body: Body) -> Response {
    let Ok(body) = axum::body::to_bytes(body, app.max_body).await else {
        let why = format!("the request is over the studio's {} KiB", app.max_body / 1024);
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
    };
    match tokio::task::spawn_blocking(move || prepare(&app, &body)).await {
        Ok(Ok(snapshot)) => (StatusCode::ACCEPTED, axum::Json(snapshot)).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => internal(),
    }
}

/// Checks a job request, writes its inputs and settings into a fresh job folder, and queues it. Nothing is
/// written before the command line has parsed.
fn prepare(app: &App, body: &[u8]) -> Result<jobs::Snapshot, ApiError> {
    let req: JobRequest = serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad request: {e}")))?;
    let kind = req.kind;
    let settings = argv::flags(kind, &req.settings).map_err(ApiError::bad)?;
    if (req.image.is_some() && !kind.takes_inputs()) || (req.images.is_some() && kind != Kind::Interpolate) {
        return Err(ApiError::bad(format!("{kind:?} jobs take no uploaded images")));
    }
    if req.mask.is_some() && kind != Kind::Inpaint {
        return Err(ApiError::bad("only inpainting takes a mask"));
    }
    let mut words: Vec<String> = kind.subcommand().iter().map(|s| s.to_string()).collect();
    let mut shape = PreviewShape(None);
    match (&req.run, kind.needs_run()) {
        (Some(name), true) => {
            let (dir, config) = files::find_run(&app.runs, &app.jobs.out, name)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no run named '{name}'")))?;
            let dim = |k: &str| config[k].as_u64().map(|v| v as usize);
            if let (Some(c), Some(h), Some(w)) = (dim("channels"), dim("height"), dim("width")) {
                shape = PreviewShape(Some([c, h, w]));
            }
            words.push(format!("--run={}", dir.display()));
        }
        (None, true) => return Err(ApiError::bad(format!("{kind:?} jobs need a run"))),
        (Some(_), false) => return Err(ApiError::bad(format!("{kind:?} jobs take no run"))),
        (None, false) => {}
    }
    let (id, dir) = app
        .jobs
        .reserve()
        .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why))?;
    let at = |name: &str| dir.join(name).display().to_string();
    // Uploads, decoded and checked before anything is written.
    let mut uploads: Vec<(String, Vec<u8>)> = Vec::new();
    let mut upload = |name: &str, data: &str| -> Result<String, ApiError> {
        uploads.push((name.to_string(), decode_image(data).map_err(ApiError::bad)?));
        Ok(at(name))
    };
    // Images, a file each, and a grid of them.
    let images_out = [
        format!("--out-dir={}", at("images")),
        format!("--grid={}", at("grid.png")),
    ];
    match kind {
        Kind::Sample => words.extend(images_out),
        Kind::Inpaint | Kind::Outpaint | Kind::Sdedit | Kind::Invert | Kind::Restore => {
            words.extend(images_out);
            if let Some(img) = &req.image {
                words.push(format!("--input={}", upload("input.png", img)?));
            }
            if let Some(mask) = &req.mask {
                words.push(format!("--mask={}", upload("mask.png", mask)?));
            }
        }
        Kind::Interpolate => {
            words.extend(images_out);
            if let Some(pair) = &req.images {
                let [a, b] = pair.as_slice() else {
                    return Err(ApiError::bad("interpolation takes two images"));
                };
                let (a, b) = (upload("a.png", a)?, upload("b.png", b)?);
                words.extend(["--images".to_string(), a, b]);
            }
        }
        Kind::Lab => {
            // Outputs by what the flags ask: a sweep's table and plot, or one run's numbers (and a 2-D
            // target's scatter).
            let given = |prefix: &str| settings.iter().any(|w| w.starts_with(prefix));
            if given("--sweep=") {
                words.extend([format!("--table={}", at("lab.md")), format!("--plot={}", at("lab.png"))]);
            } else {
                words.push(format!("--json-out={}", at("lab.json")));
                if given("--target=ring") || given("--target=grid") {
                    words.push(format!("--scatter={}", at("scatter.png")));
                }
            }
        }
    }
    words.extend(settings);
    let argv = std::iter::once("diffuse".to_string()).chain(words.iter().cloned());
    if let Err(e) = <super::Cli as clap::Parser>::try_parse_from(argv) {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("the settings do not parse")
            .trim_start_matches("error: ");
        return Err(ApiError::bad(first.to_string()));
    }
    let write = || -> std::io::Result<()> {
        // Not create_dir_all: a folder another studio took in the meantime is an error, not shared.
        std::fs::create_dir(&dir)?;
        for (name, bytes) in &uploads {
            std::fs::write(dir.join(name), bytes)?;
        }
        let settings = json!({
            "kind": kind,
            "run": req.run,
            "settings": req.settings,
            "command": std::iter::once("diffuse").chain(words.iter().map(String::as_str)).collect::<Vec<_>>(),
            "cwd": std::env::current_dir()?,
        });
        std::fs::write(dir.join("settings.json"), serde_json::to_vec_pretty(&settings)?)
    };
    write().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("writing the job: {e}")))?;
    Ok(app.jobs.submit(id, dir, words, shape).snapshot())
}

/// A PNG from a data URL (or bare base64), checked to decode to at most [`MAX_UPLOAD_SIDE`] pixels a side.
fn decode_image(data: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = data.strip_prefix("data:image/png;base64,").unwrap_or(data);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("an image is not base64: {e}"))?;
    let not_png = |e: String| format!("an image is not a PNG: {e}");
    // The size it declares first, so that a small file claiming a huge image is never decoded.
    let (w, h) = diffuse::imageio::png_size(&bytes).map_err(not_png)?;
    if w.max(h) > MAX_UPLOAD_SIDE {
        return Err(format!(
            "an image is {w}×{h}; the studio takes at most {MAX_UPLOAD_SIDE} pixels a side"
        ));
    }
    diffuse::imageio::decode_png(&bytes, None).map_err(not_png)?;
    Ok(bytes)
}

fn job_of(app: &App, id: Result<UrlPath<String>, PathRejection>) -> Result<Arc<jobs::Job>, ApiError> {
    let id = url_path(id)?;
    id.parse::<u64>()
        .ok()
        .and_then(|id| app.jobs.get(id))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job '{id}'")))
}

async fn job_state(State(app): State<Arc<App>>, id: Result<UrlPath<String>, PathRejection>) -> Response {
    match job_of(&app, id) {
        Ok(job) => axum::Json(job.snapshot()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cancel_job(State(app): State<Arc<App>>, id: Result<UrlPath<String>, PathRejection>) -> Response {
    match job_of(&app, id) {
        Ok(job) => {
            app.jobs.cancel(&job);
            (StatusCode::ACCEPTED, axum::Json(job.snapshot())).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Cancels an unfinished job when its last event stream goes away (the page was closed), after a grace period
/// in which a reconnecting page (EventSource does that by itself) or another watcher keeps it.
struct CancelOnDrop(Arc<Jobs>, Arc<jobs::Job>);

/// How long a job with no watcher runs on.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.1.snapshot().state.finished() {
            return;
        }
        let (jobs, job) = (self.0.clone(), self.1.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep(ORPHAN_GRACE).await;
            if job.watchers() == 0 && !job.snapshot().state.finished() {
                jobs.cancel(&job);
            }
        });
    }
}

async fn job_events(State(app): State<Arc<App>>, id: Result<UrlPath<String>, PathRejection>) -> Response {
    let job = match job_of(&app, id) {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    let rx = job.subscribe();
    let start = (rx, true, false, CancelOnDrop(app.jobs.clone(), job));
    let stream = futures_util::stream::unfold(start, |(mut rx, first, ended, guard)| async move {
        if ended || (!first && rx.changed().await.is_err()) {
            return None;
        }
        let snap = rx.borrow_and_update().clone();
        let ended = snap.state.finished();
        let event = Event::default().event("update").json_data(&snap).unwrap_or_default();
        Some((Ok::<_, std::convert::Infallible>(event), (rx, false, ended, guard)))
    });
    // Frequent keep-alives find a closed page soon, so its job stops.
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(2)))
        .into_response()
}
