//! The compute device: burn's flex CPU backend (the only one compiled in for now).

use burn::prelude::Device;

/// The inference device.
pub fn device() -> Device {
    Device::flex()
}

/// The training device (with the autodiff tape).
pub fn train_device() -> Device {
    device().autodiff()
}
