//! Watching samplers from outside the call chain: a thread's observer sees every finished step of every walk
//! that thread runs (x̂₀, or x_t where a sampler has none), whatever command started it, and may stop the walk.
//! This is how `diffuse serve` streams previews of commands it runs unchanged, so that a result in the browser
//! is the command line's, bit for bit.

use burn::prelude::Tensor;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

/// One finished step of a walk.
pub struct Step<'a> {
    /// The step's index on the plan's grid.
    pub index: usize,
    /// Steps on that grid.
    pub total: usize,
    /// Network evaluations of this walk so far.
    pub nfe: usize,
    /// x̂₀ (x_t for the ODE and Langevin samplers) of the batch being drawn.
    pub shown: &'a Tensor<4>,
}

/// What the observer wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The walk was stopped by its observer.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

type Observer = Box<dyn FnMut(Step<'_>) -> Flow>;

thread_local! {
    static OBSERVER: RefCell<Option<Observer>> = const { RefCell::new(None) };
}

/// Runs `f` with `observer` watching this thread's walks. `Err(Stopped)` when the observer stopped one: the
/// walk unwinds from the step it was on (samplers are plain loops, and unwinding is the one exit that needs
/// no stopping point in each of them). Other panics go on unwinding.
pub fn watching<R>(observer: impl FnMut(Step<'_>) -> Flow + 'static, f: impl FnOnce() -> R) -> Result<R, Stopped> {
    silence_stops();
    let previous = OBSERVER.with(|o| o.borrow_mut().replace(Box::new(observer)));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    OBSERVER.with(|o| *o.borrow_mut() = previous);
    match out {
        Ok(r) => Ok(r),
        Err(payload) if payload.is::<Stopped>() => Err(Stopped),
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Tells this thread's observer, if any, that a step finished; unwinds when it says stop.
pub(crate) fn notify(index: usize, total: usize, nfe: usize, shown: &Tensor<4>) {
    let flow = OBSERVER.with(|o| {
        o.borrow_mut().as_mut().map_or(Flow::Continue, |f| {
            f(Step {
                index,
                total,
                nfe,
                shown,
            })
        })
    });
    if flow == Flow::Stop {
        panic::panic_any(Stopped);
    }
}

/// A stop is not a crash: the panic hook says nothing for it.
fn silence_stops() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Stopped>() {
                default(info)
            }
        }));
    });
}
