//! The posterior samplers against closed forms: with pixels independently N(μ, s²) the prior is isotropic in
//! every orthonormal basis, so in the degradation's spectral basis each coefficient has prior N(μ̄_i, s²) and
//! measurement ỹ_i = s_i x̄_i + σ_y n_i, and its posterior is Gaussian with precision 1/s² + s_i²/σ_y².

use super::*;
use crate::denoise::ExactDenoiser;
use crate::sample::{Method as Sampler, Plan, Process};
use burn::prelude::*;
use diffuse_math::dist::Target;
use diffuse_math::{BetaSchedule, Level, NoiseSchedule};

const MU: f64 = 0.3;
const S: f64 = 0.5;
const SHAPE: [usize; 3] = [1, 8, 8];

fn prior() -> ExactDenoiser {
    ExactDenoiser::new(&Target::gaussian(MU, S).unwrap())
}

fn device() -> Device {
    crate::device::device()
}

/// `n` images drawn from the prior, stream `seed`.
fn draws(n: usize, seed: u64) -> Vec<f32> {
    crate::rng::normals(&mut crate::rng::stream(seed, 0), n * 64)
        .into_iter()
        .map(|z| (MU + S * z as f64) as f32)
        .collect()
}

fn tensor(v: &[f32]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len() / 64, 1, 8, 8]), &device())
}

fn f64s(t: Tensor<4>) -> Vec<f64> {
    sample::to_vec(t).into_iter().map(|v| v as f64).collect()
}

/// Posterior mean and variance of each spectral coefficient given Uᵀy (one image), and x_t at `level` too when
/// given (its coefficients).
fn posterior(op: &Degradation, uty: &[f64], xt: Option<(&[f64], Level)>) -> (Vec<f64>, Vec<f64>) {
    let mu = op.vt(&[MU; 64]);
    (0..64)
        .map(|j| {
            let s = op.singular()[j];
            let (mut p, mut m) = (1.0 / (S * S), mu[j] / (S * S));
            if s > 0.0 {
                p += s * s / op.noise.powi(2);
                m += s * uty[j] / op.noise.powi(2);
            }
            if let Some((x, l)) = xt {
                p += (l.alpha / l.sigma).powi(2);
                m += l.alpha * x[j] / l.sigma.powi(2);
            }
            (m / p, 1.0 / p)
        })
        .unzip()
}

fn pigdm<'a>(den: &'a ExactDenoiser, op: &'a Degradation, uty: Vec<f64>) -> pigdm::Pigdm<'a> {
    pigdm::Pigdm {
        inner: den,
        op,
        uty,
        data_std: S,
        clip: None,
    }
}

#[test]
fn pigdm_is_the_exact_posterior_denoiser_of_a_gaussian_prior() {
    // With p(x₀ | x_t) Gaussian, ΠGDM's likelihood is exact, and so is its posterior x̂₀: E[x₀ | x_t, y].
    let den = prior();
    for (task, noise) in [("sr:2", 0.1), ("blur:1", 0.1), ("mri:random:4", 0.05), ("denoise", 0.2)] {
        let op = Degradation::new(Task::parse(task).unwrap(), SHAPE, noise, 0).unwrap();
        let x = draws(3, 1);
        let y = op.measure(&x, 3, 2);
        let uty = op.ut(&y);
        let level = Level::vp(0.4);
        let z = draws(3, 3);
        let xt: Vec<f32> = x
            .iter()
            .zip(&z)
            .map(|(a, b)| (level.alpha * *a as f64 + level.sigma * (*b as f64 - MU) / S) as f32)
            .collect();
        let got = op.vt(&f64s(
            pigdm(&den, &op, uty.clone())
                .denoise(tensor(&xt), level, &Cond::default())
                .x0,
        ));
        let xt_bar = op.vt(&xt.iter().map(|&v| v as f64).collect::<Vec<_>>());
        for i in 0..3 {
            let r = i * 64..(i + 1) * 64;
            let (want, _) = posterior(&op, &uty[r.clone()], Some((&xt_bar[r.clone()], level)));
            let worst = got[r].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 2e-4, "{task}: E[x₀ | x_t, y] off by {worst}");
        }
    }
}

/// Mean and variance of the z-scores (x̄ − m)/√v of `samples` (rows of coefficients), pooled over the
/// coefficients where `pick` holds.
fn z_moments(op: &Degradation, samples: &[f64], m: &[f64], v: &[f64], pick: impl Fn(f64) -> bool) -> (f64, f64) {
    let z: Vec<f64> = samples
        .chunks(64)
        .flat_map(|row| {
            (0..64)
                .filter(|&j| pick(op.singular()[j]))
                .map(move |j| (row[j] - m[j]) / v[j].sqrt())
        })
        .collect();
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    (mean, z.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / z.len() as f64)
}

fn discrete(method: Sampler, steps: usize) -> Plan {
    let schedule = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
    Plan::new(method, Process::Discrete(schedule), steps).unwrap()
}

#[test]
fn pigdm_under_ddpm_draws_the_gaussian_posterior() {
    // One measurement, 128 posterior draws: every coefficient's z-score is N(0, 1), measured or not. The
    // posteriors' standard deviations (0.18 and 0.14 on measured coefficients) stay above the last levels of
    // DDPM's grid; a much sharper one would need a finer end of the grid than the linear schedule's.
    let den = prior();
    let plan = discrete(Sampler::Ddpm { large_variance: false }, 1000);
    let b = 128;
    for (task, noise) in [("sr:2", 0.1), ("mri:radial:4", 0.15)] {
        let op = Degradation::new(Task::parse(task).unwrap(), SHAPE, noise, 0).unwrap();
        let uty = op.ut(&op.measure(&draws(1, 7), 1, 8));
        let (m, v) = posterior(&op, &uty, None);
        let p = pigdm(&den, &op, uty.repeat(b));
        let (x, mut streams) = sample::start(9, 0, b, SHAPE, plan.prior_std(), &device());
        let out = sample::run(&p, &plan, x, &mut streams, Cond::default(), &[], &mut |_| {}).x;
        let bar = op.vt(&f64s(out));
        for (what, pick) in [("measured", true), ("unmeasured", false)] {
            let (mean, var) = z_moments(&op, &bar, &m, &v, |s| (s > 0.0) == pick);
            assert!(
                mean.abs() < 0.08 && (var - 1.0).abs() < 0.12,
                "{task}, {what}: z-scores have mean {mean}, variance {var}"
            );
        }
    }
}

#[test]
fn ddrm_is_exact_for_noiseless_measurements() {
    // σ_y = 0: measured coefficients are ȳ whatever η. With η = 0 the others follow the prior (DDIM on the
    // null space), on a discrete schedule and the flow path. η > 0 injects η σ' of fresh noise at every step
    // whatever its size, a variational choice that the paper tunes for 20 steps: at 100 steps with its 0.85
    // the unmeasured coefficients come out with too little spread.
    let den = prior();
    let b = 128;
    for process in [
        Process::Discrete(NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap()),
        Process::Flow,
    ] {
        let plan = Plan::new(Sampler::Ddim { eta: 0.0 }, process.clone(), 100).unwrap();
        for task in ["sr:2", "mri:radial:4"] {
            let op = Degradation::new(Task::parse(task).unwrap(), SHAPE, 0.0, 0).unwrap();
            let uty = op.ut(&op.measure(&draws(1, 4), 1, 5));
            for eta in [0.0, 0.85] {
                let (z, mut streams) = sample::start(6, 0, b, SHAPE, 1.0, &device());
                let mut ctx = Ctx::new(&den, &mut streams);
                let p = Ddrm { eta, eta_b: 1.0 };
                let out = ddrm::run(&mut ctx, &op, &uty.repeat(b), plan.knots(), p, z);
                assert_eq!(ctx.nfe, plan.knots().len() - 1, "one call per step");
                let bar = op.vt(&f64s(out));
                let (s, uty) = (op.singular(), &uty);
                let worst = bar
                    .chunks(64)
                    .flat_map(|row| {
                        (0..64)
                            .filter(|&j| s[j] > 0.0)
                            .map(move |j| (row[j] - uty[j] / s[j]).abs())
                    })
                    .fold(0.0, f64::max);
                let at = format!("{task} on {}, η = {eta}", process.name());
                assert!(worst < 1e-4, "{at}: measured coefficients off ȳ by {worst}");
                let mu = op.vt(&[MU; 64]);
                let (mean, var) = z_moments(&op, &bar, &mu, &[S * S; 64], |s| s == 0.0);
                let spread_ok = if eta == 0.0 {
                    (var - 1.0).abs() < 0.12
                } else {
                    var > 0.5 && var < 0.85
                };
                assert!(
                    mean.abs() < 0.08 && spread_ok,
                    "{at}: unmeasured z-scores have mean {mean}, variance {var}"
                );
            }
        }
    }
}

#[test]
fn the_vector_jacobian_product_through_a_network_matches_finite_differences() {
    use crate::nn::{NetConfig, UNetConfig};
    let dev = device();
    let net = NetConfig::Unet(UNetConfig {
        base_channels: 8,
        channel_mults: vec![1, 2],
        attention_resolutions: vec![4],
        heads: 2,
        ..UNetConfig::for_image(1, 8, 8)
    })
    .init(&dev)
    .unwrap();
    let schedule = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
    let cond = crate::denoise::LevelInput::Discrete(schedule);
    let den = NetDenoiser {
        net: &net,
        cond: &cond,
        precond: crate::objective::Objective::default().precond(diffuse_math::Prediction::Eps),
        clip: None,
        guidance: Default::default(),
    };
    let level = Level::vp(0.5);
    let x = draws(2, 20);
    let w = tensor(&draws(2, 21));
    let u = draws(2, 22);
    let (_, g) = pigdm::vjp(&den, tensor(&x), level, &Cond::default(), |_| w.clone());
    let along: f64 = f64s(g).iter().zip(&u).map(|(a, b)| a * *b as f64).sum();
    let loss = |sign: f32| -> f64 {
        let xs: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a + sign * 1e-2 * b).collect();
        let x0 = den.denoise(tensor(&xs), level, &Cond::default()).x0;
        f64s(x0 * w.clone()).iter().sum()
    };
    let fd = (loss(1.0) - loss(-1.0)) / 2e-2;
    assert!(
        (along - fd).abs() < 2e-2 * fd.abs().max(1.0),
        "⟨g, u⟩ = {along}, finite difference {fd}"
    );
}
