//! Networks: the UNet noise predictor and the small evaluation classifier.

pub mod classifier_net;
pub mod unet;

pub use unet::{UNet, UNetConfig};

/// The largest group count ≤ `max` that divides `channels` (GroupNorm needs an exact split).
pub fn groups_for(channels: usize, max: usize) -> usize {
    (1..=max.min(channels))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}
