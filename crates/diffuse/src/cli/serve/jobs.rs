//! The studio's jobs: each is a `diffuse` command line run in this process, in its own folder, one at a time
//! per slot, the rest queued. A job's state is one [`Snapshot`] that watchers follow; its sampler's steps
//! stream in as previews through the thread's sampling observer, which also stops a cancelled job.

use diffuse::sample::watch::{self, Flow};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch as channel};

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// Everything a watcher is told about a job.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub id: u64,
    pub state: State,
    /// Place in the queue (1: next), while queued.
    pub position: Option<usize>,
    /// The step just finished, of `steps`, in walk `walk` (a batch, or an edit's pass).
    pub step: Option<usize>,
    pub steps: Option<usize>,
    pub walk: usize,
    /// Network evaluations of the current walk so far.
    pub nfe: usize,
    /// x̂₀ of the current batch at the last step, as a PNG data URL.
    pub preview: Option<String>,
    pub seconds: f64,
    /// The job's files, relative to the studio's output folder, once done.
    pub files: Vec<String>,
    pub error: Option<String>,
    /// The command line that did the job: `diffuse` and these words reproduce it.
    pub command: Vec<String>,
}

/// How previews of a walk are drawn: the image shape of the run, so that latents and 1-D lab samples are not
/// mistaken for pictures.
#[derive(Clone, Copy, Debug)]
pub struct PreviewShape(pub Option<[usize; 3]>);

pub struct Job {
    pub id: u64,
    pub dir: PathBuf,
    pub command: Vec<String>,
    cancel: AtomicBool,
    tx: channel::Sender<Snapshot>,
}

impl Job {
    pub fn subscribe(&self) -> channel::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// Event streams following the job now.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    /// Asks the job to stop: a queued job never starts, a running one stops at its next sampler step.
    fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.tx.send_if_modified(|s| {
            if s.state == State::Queued {
                s.state = State::Cancelled;
                s.position = None;
                true
            } else {
                false
            }
        });
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        self.tx.send_modify(f);
    }
}

/// Jobs kept for their watchers after they finish.
const KEPT: usize = 256;

pub struct Jobs {
    registry: Mutex<Registry>,
    slots: Arc<Semaphore>,
    queue_cap: usize,
    /// A job still sampling after this long is stopped.
    time_limit: Duration,
    pub out: PathBuf,
}

#[derive(Default)]
struct Registry {
    next: u64,
    jobs: BTreeMap<u64, Arc<Job>>,
    waiting: VecDeque<u64>,
}

impl Jobs {
    pub fn new(out: PathBuf, slots: usize, queue_cap: usize, time_limit: Duration) -> Jobs {
        Jobs {
            registry: Mutex::new(Registry::default()),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            queue_cap,
            time_limit,
            out,
        }
    }

    /// Cancels `job`; a queued one leaves the queue at once, so that the jobs behind it move up.
    pub fn cancel(&self, job: &Job) {
        job.cancel();
        self.lock().waiting.retain(|&w| w != job.id);
        self.tell_positions();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.lock().jobs.get(&id).cloned()
    }

    /// A fresh job folder under the output folder, named by the job's number (numbers already on disk, from
    /// an earlier studio, are skipped). Err when the queue is full.
    pub fn reserve(&self) -> Result<(u64, PathBuf), String> {
        let mut r = self.lock();
        if r.waiting.len() >= self.queue_cap {
            return Err(format!(
                "the queue is full ({} jobs waiting); try again later",
                r.waiting.len()
            ));
        }
        loop {
            r.next += 1;
            let dir = self.out.join(format!("job-{:06}", r.next));
            if !dir.exists() {
                return Ok((r.next, dir));
            }
        }
    }

    /// Queues `args` (the words after `diffuse`) as job `id`; `prepare` has already written its inputs.
    pub fn submit(self: &Arc<Self>, id: u64, dir: PathBuf, args: Vec<String>, shape: PreviewShape) -> Arc<Job> {
        let (tx, _) = channel::channel(Snapshot {
            id,
            state: State::Queued,
            position: None,
            step: None,
            steps: None,
            walk: 0,
            nfe: 0,
            preview: None,
            seconds: 0.0,
            files: Vec::new(),
            error: None,
            command: args.clone(),
        });
        let job = Arc::new(Job {
            id,
            dir,
            command: args,
            cancel: AtomicBool::new(false),
            tx,
        });
        {
            let mut r = self.lock();
            r.jobs.insert(id, job.clone());
            r.waiting.push_back(id);
            while r.jobs.len() > KEPT {
                let oldest = *r.jobs.keys().next().expect("not empty");
                if !r.jobs[&oldest].snapshot().state.finished() {
                    break;
                }
                r.jobs.remove(&oldest);
            }
        }
        self.tell_positions();
        let jobs = self.clone();
        let job2 = job.clone();
        tokio::spawn(async move {
            let permit = jobs
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            jobs.lock().waiting.retain(|&w| w != job2.id);
            jobs.tell_positions();
            if job2.cancelled() {
                job2.update(|s| (s.state, s.position) = (State::Cancelled, None));
                return;
            }
            let j = job2.clone();
            let (out, limit) = (jobs.out.clone(), jobs.time_limit);
            let started = Instant::now();
            let done = tokio::task::spawn_blocking(move || run(&j, &out, shape, limit)).await;
            if done.is_err() {
                job2.update(|s| {
                    (s.state, s.seconds) = (State::Failed, started.elapsed().as_secs_f64());
                    s.error = Some("the job crashed; the studio's log says more".into());
                });
            }
            drop(permit);
        });
        job
    }

    fn tell_positions(&self) {
        let r = self.lock();
        for (i, id) in r.waiting.iter().enumerate() {
            if let Some(job) = r.jobs.get(id) {
                job.tx.send_if_modified(|s| {
                    let changed = s.state == State::Queued && s.position != Some(i + 1);
                    if changed {
                        s.position = Some(i + 1);
                    }
                    changed
                });
            }
        }
    }
}

/// Least time between two previews: encoding one costs a few milliseconds, and a watcher needs no more.
const PREVIEW_EVERY: Duration = Duration::from_millis(150);

/// Runs the job's command on this thread, watching its sampler; stops it when cancelled or past `limit`.
fn run(job: &Arc<Job>, out: &std::path::Path, shape: PreviewShape, limit: Duration) {
    let started = Instant::now();
    // Queued to running in one step, so that a cancel that came first is not undone.
    let mut cancelled_first = false;
    job.tx.send_if_modified(|s| {
        cancelled_first = job.cancelled();
        (s.state, s.position) = (
            if cancelled_first {
                State::Cancelled
            } else {
                State::Running
            },
            None,
        );
        true
    });
    if cancelled_first {
        return;
    }
    let watched = job.clone();
    let timed_out = Arc::new(AtomicBool::new(false));
    let timed_out_seen = timed_out.clone();
    let mut last_preview: Option<Instant> = None;
    let mut first = true;
    let observer = move |step: watch::Step<'_>| {
        if started.elapsed() > limit {
            timed_out_seen.store(true, Ordering::SeqCst);
            return Flow::Stop;
        }
        if watched.cancelled() {
            return Flow::Stop;
        }
        // A walk (a batch, an edit's pass) starts at its grid's first step; RePaint's jumps back do not.
        let new_walk = first || step.index == 0;
        first = false;
        let last = step.index + 1 == step.total;
        let preview = if last || last_preview.is_none_or(|t| t.elapsed() >= PREVIEW_EVERY) {
            last_preview = Some(Instant::now());
            preview(step.shown, shape)
        } else {
            None
        };
        watched.update(|s| {
            s.walk += new_walk as usize;
            (s.step, s.steps, s.nfe) = (Some(step.index + 1), Some(step.total), step.nfe);
            s.seconds = started.elapsed().as_secs_f64();
            if preview.is_some() {
                s.preview = preview;
            }
        });
        Flow::Continue
    };
    let words = std::iter::once("diffuse".to_string()).chain(job.command.iter().cloned());
    let result = watch::watching(observer, || {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(words)?;
        crate::cli::run(cli)
    });
    let files = list_files(&job.dir, out);
    job.update(|s| {
        s.seconds = started.elapsed().as_secs_f64();
        s.files = files;
        match result {
            Ok(Ok(())) => s.state = State::Done,
            Ok(Err(e)) => {
                s.state = State::Failed;
                s.error = Some(format!("{e:#}"));
            }
            Err(watch::Stopped) if timed_out.load(Ordering::SeqCst) => {
                s.state = State::Failed;
                s.error = Some(format!("stopped at the studio's limit of {} s a job", limit.as_secs()));
            }
            Err(watch::Stopped) => s.state = State::Cancelled,
        }
    });
}

/// Up to 16 images of the walk's current x̂₀ as one PNG data URL, when they are pictures with the run's
/// channels (an outpainting canvas is larger than the run's images; a latent or a lab sample is no picture).
fn preview(shown: &burn::prelude::Tensor<4>, shape: PreviewShape) -> Option<String> {
    use base64::Engine;
    let [n, c, h, w] = shown.dims();
    if shape.0.is_none_or(|[rc, ..]| rc != c) || !matches!(c, 1 | 3) || h.max(w) > 1024 {
        return None;
    }
    let k = n.min(16);
    let x = diffuse::sample::to_vec(shown.clone().narrow(0, 0, k));
    let grid = diffuse::imageio::grid(&x, k, c, h, w, (k as f64).sqrt().ceil() as usize);
    let png = diffuse::imageio::png_bytes(grid);
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// The files under a job's folder, relative to the output folder, sorted.
fn list_files(dir: &std::path::Path, out: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(out) {
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}
