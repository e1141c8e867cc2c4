use super::*;
use crate::denoise::{GaussianData, OracleX0};
use diffuse_math::BetaSchedule;

fn schedule(kind: BetaSchedule) -> NoiseSchedule {
    NoiseSchedule::with_defaults(kind, 1000).unwrap()
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec().unwrap()
}

#[test]
fn oracle_x0_is_returned_exactly_by_ddim_eta0_and_ddpm() {
    let device = crate::device::device();
    let s = schedule(BetaSchedule::Linear);
    let target: Vec<f32> = (0..2 * 16).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(target.clone(), [2, 1, 4, 4]), &device);
    let oracle = OracleX0 { x0, schedule: &s };
    for spacing in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        for (sampler, steps) in [
            (Sampler::Ddim { eta: 0.0 }, 10),
            (Sampler::Ddim { eta: 0.0 }, 1000),
            (Sampler::Ddpm { large_variance: false }, 50),
        ] {
            let plan = Plan::new(sampler, &s, steps, spacing).unwrap();
            assert_eq!(plan.nfe(), steps);
            let (x, mut streams) = start(1, 0, 2, [1, 4, 4], &device);
            let out = values(run(&oracle, &plan, x, &mut streams, &[], |_| {}).x);
            for (a, b) in out.iter().zip(&target) {
                assert!((a - b).abs() < 1e-4, "{sampler:?} {spacing}: {a} vs {b}");
            }
        }
    }
}

/// DDIM η = 0 is an affine map x_T → x₀ for Gaussian data: sampling the two inputs 0 and 1 gives its offset
/// (the sample mean) and slope (the sample std) without any sampling error.
fn affine_outcome(s: &NoiseSchedule, steps: usize, spacing: TimestepSpacing) -> (f64, f64) {
    let device = crate::device::device();
    let den = GaussianData {
        mean: 0.1,
        std: 0.8,
        schedule: s,
    };
    let plan = Plan::new(Sampler::Ddim { eta: 0.0 }, s, steps, spacing).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [2, 1, 1, 1]), &device);
    let (_, mut streams) = start(0, 0, 2, [1, 1, 1], &device);
    let out = values(run(&den, &plan, x, &mut streams, &[], |_| {}).x);
    (out[0] as f64, (out[1] - out[0]).abs() as f64)
}

#[test]
fn ddim_with_exact_gaussian_denoiser_matches_diffusers() {
    let shared = std::env::var_os("DIFFUSE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("fixtures/diffusers.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // Written past the test harness's capture so that the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: {} not found (set DIFFUSE_SHARED)",
            path.display()
        );
        return;
    };
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for case in fx["ddim_gauss"].as_array().unwrap() {
        let spacing: TimestepSpacing = case["spacing"].as_str().unwrap().parse().unwrap();
        if spacing == TimestepSpacing::Linspace {
            continue; // diffusers steps off the linspace grid there (see diffuse-math's fixture tests)
        }
        let s = schedule(case["schedule"].as_str().unwrap().parse().unwrap());
        let (mean, std) = affine_outcome(&s, case["steps"].as_u64().unwrap() as usize, spacing);
        let (em, es) = (
            case["expected_mean"].as_f64().unwrap(),
            case["expected_std"].as_f64().unwrap(),
        );
        assert!(
            (mean - em).abs() < 1e-4 && (std - es).abs() < 1e-4,
            "{case}: {mean} {std}"
        );
        checked += 1;
    }
    assert_eq!(checked, 8);
}

fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (
        mean,
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

#[test]
fn stochastic_samplers_reproduce_gaussian_data() {
    // With the exact denoiser, ancestral samplers must land on N(0.1, 0.8²); a variance used where a standard
    // deviation belongs would show up here as a wrong spread.
    let device = crate::device::device();
    let s = schedule(BetaSchedule::Linear);
    let den = GaussianData {
        mean: 0.1,
        std: 0.8,
        schedule: &s,
    };
    // Fewer steps shrink the spread a little (diffusers' deterministic DDIM-100 gives 0.783), hence the
    // looser bound there; a variance-for-std slip would miss by far more.
    for (sampler, steps, tol) in [
        (Sampler::Ddpm { large_variance: false }, 1000, 0.02),
        (Sampler::Ddpm { large_variance: false }, 100, 0.05),
        (Sampler::Ddim { eta: 1.0 }, 100, 0.05),
        (Sampler::Ddim { eta: 0.5 }, 50, 0.05),
    ] {
        let plan = Plan::new(sampler, &s, steps, TimestepSpacing::Trailing).unwrap();
        let (x, mut streams) = start(11, 0, 4, [1, 50, 100], &device);
        let (mean, std) = moments(&values(run(&den, &plan, x, &mut streams, &[], |_| {}).x));
        eprintln!("{sampler:?} {steps}: mean {mean:.4} std {std:.4}");
        assert!(
            (mean - 0.1).abs() < 0.02 && (std - 0.8).abs() < tol,
            "{sampler:?} {steps}: {mean} {std}"
        );
    }
}

#[test]
fn ddpm_large_variance_adds_more_noise_than_small() {
    let s = schedule(BetaSchedule::Linear);
    let small = Plan::new(
        Sampler::Ddpm { large_variance: false },
        &s,
        20,
        TimestepSpacing::Leading,
    )
    .unwrap();
    let large = Plan::new(Sampler::Ddpm { large_variance: true }, &s, 20, TimestepSpacing::Leading).unwrap();
    for (a, b) in small.coefs.iter().zip(&large.coefs).take(19) {
        assert!(b.std > a.std);
    }
    assert_eq!(small.coefs[19].std, 0.0);
    assert_eq!(large.coefs[19].std, 0.0);
}

#[test]
fn image_i_does_not_depend_on_batch() {
    let device = crate::device::device();
    let (all, mut s_all) = start(5, 0, 4, [1, 3, 3], &device);
    let (one, mut s_one) = start(5, 2, 1, [1, 3, 3], &device);
    assert_eq!(values(all).split_off(2 * 9)[..9], values(one)[..]);
    let next_all = rng::normals(&mut s_all[2], 4);
    assert_eq!(next_all, rng::normals(&mut s_one[0], 4));
}
