//! Progress on stderr that tells the truth: the unit counted is named, the ETA waits for a first measured step
//! instead of opening at "0s", and work whose length is unknown (an adaptive solver, statistics) spins with a
//! message instead of a bar that stops short. Hidden when not asked for or when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::fmt::Write;

fn target(show: bool) -> ProgressDrawTarget {
    if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `total` `unit`s (steps, images), starting at `at`.
pub fn bar(total: usize, at: usize, unit: &str, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), target(show));
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  {{per_sec}}  ETA {{eta_known}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .with_key("eta_known", eta_known(at as u64)),
    );
    bar.set_position(at as u64);
    bar.reset_eta();
    bar
}

/// The ETA once a step has been timed since `from`, "…" before.
fn eta_known(from: u64) -> impl Fn(&ProgressState, &mut dyn Write) + Send + Sync + Clone + 'static {
    move |state: &ProgressState, w: &mut dyn Write| {
        if state.pos() <= from {
            let _ = w.write_str("…");
        } else {
            let _ = write!(w, "{}", indicatif::HumanDuration(state.eta()));
        }
    }
}

/// A spinner with `message`, for work whose length is not known in advance; `{pos}` counts what `inc` adds.
pub fn spinner(message: &str, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target(show));
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {pos}  {elapsed}").expect("valid template"));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
