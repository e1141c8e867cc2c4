//! The compute device (burn's flex CPU backend, or the GPU of the `vulkan` feature), and seeded module
//! construction.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::{Device, Tensor};
use std::sync::Mutex;

/// The inference device.
#[cfg(not(feature = "vulkan"))]
pub fn device() -> Device {
    Device::flex()
}

/// The inference device: the GPU, unless `BURN_DEVICE` names another backend.
#[cfg(feature = "vulkan")]
pub fn device() -> Device {
    Device::default()
}

/// The training device (with the autodiff tape).
pub fn train_device() -> Device {
    train_device_with(false)
}

/// The training device; with `checkpointing`, burn recomputes memory-bound activations in the backward pass
/// instead of keeping them (about half the peak memory of the reference UNet's training step, for a few
/// percent more time: `diffuse bench --gradient-checkpointing`).
pub fn train_device_with(checkpointing: bool) -> Device {
    let d = device().autodiff();
    if checkpointing { d.gradient_checkpointing() } else { d }
}

/// burn draws initial weights lazily from one process-wide generator; this lock makes "seed, build, draw"
/// one step, so that two models built at once (parallel tests, say) still get their seed's weights.
static INIT: Mutex<()> = Mutex::new(());

/// Builds a module with weights drawn from `seed`.
pub fn init_seeded<M: Module>(seed: u64, device: &Device, build: impl FnOnce(&Device) -> M) -> M {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let _ = p.val(); // materialises the lazy initialisation
        }
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let module = build(device);
    module.visit(&mut Touch);
    module
}
