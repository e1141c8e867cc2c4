//! bfloat16: the rounding of f32 operands, and whether this CPU multiplies bf16 pairs (AVX512-BF16's
//! `vdpbf16ps`, used by the packed products of [`super::packed`]).

use std::sync::OnceLock;

/// Whether this CPU runs the bf16 kernels (AVX512-BF16 with AVX512-F and -BW, checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // AVX512-BW too: the packing interleaves pairs with `vpermw`.
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `x` rounded to the nearest bf16, ties to even; NaN stays a (quiet) NaN.
pub fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan_and_infinities() {
        assert_eq!(round(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(round(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(round(f32::INFINITY), 0x7f80);
        assert_eq!(round(-f32::INFINITY), 0xff80);
        assert!(widen(round(f32::NAN)).is_nan());
        assert!(widen(round(f32::from_bits(0x7fff_ffff))).is_nan());
        for x in [0.1f32, -3.7, 1e-30, 6.5e4] {
            assert!((widen(round(x)) - x).abs() <= x.abs() / 256.0, "{x}");
        }
    }
}
