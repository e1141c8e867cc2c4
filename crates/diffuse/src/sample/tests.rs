use super::*;
use crate::denoise::{Cond, ExactDenoiser, OracleX0};
use diffuse_math::BetaSchedule;
use diffuse_math::dist::Target;
use diffuse_math::{Grid, NoiseSchedule};

fn schedule(kind: BetaSchedule) -> NoiseSchedule {
    NoiseSchedule::with_defaults(kind, 1000).unwrap()
}

fn discrete(method: Method, kind: BetaSchedule, spacing: TimestepSpacing, steps: usize) -> Plan {
    Plan::new(method, Process::Discrete(schedule(kind)), steps)
        .and_then(|p| p.with_grid(method.timestep_grid(spacing)))
        .unwrap()
}

fn values(t: Tensor<4>) -> Vec<f64> {
    to_vec(t).into_iter().map(|v| v as f64).collect()
}

fn sample(den: &dyn Denoiser, plan: &Plan, x: Tensor<4>, seed: u64) -> Sampled {
    let b = x.dims()[0];
    let mut streams: Vec<_> = (0..b).map(|i| rng::stream(seed, 1000 + i as u64)).collect();
    run(den, plan, x, &mut streams, Cond::default(), &[], &mut |_| {})
}

/// N independent 1-D draws as one [1, 1, 1, N] sample, started from the plan's prior.
fn one_d(den: &dyn Denoiser, plan: &Plan, n: usize, seed: u64) -> (Vec<f64>, usize) {
    let device = crate::device::device();
    let (x, mut streams) = start(seed, 0, 1, [1, 1, n], plan.prior_std(), &device);
    let s = run(den, plan, x, &mut streams, Cond::default(), &[], &mut |_| {});
    (values(s.x), s.nfe)
}

fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
}

fn shared_fixtures() -> Option<serde_json::Value> {
    let path = crate::data::tests::shared("fixtures/diffusers.json")?;
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

#[test]
fn oracle_x0_is_returned_exactly_by_every_discrete_sampler() {
    let device = crate::device::device();
    let target: Vec<f32> = (0..2 * 16).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(target.clone(), [2, 1, 4, 4]), &device);
    let oracle = OracleX0 { x0 };
    for spacing in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        for (method, steps) in [
            (Method::Ddim { eta: 0.0 }, 10),
            (Method::Ddim { eta: 0.0 }, 1000),
            (Method::Ddpm { large_variance: false }, 50),
            (Method::EulerAncestral { eta: 1.0 }, 30),
            (Method::DpmSolverPP2M, 7),
            (Method::DpmSolverPP2M, 1000),
            (Method::UniPc, 7),
            (Method::UniPc, 1000),
        ] {
            let plan = discrete(method, BetaSchedule::Linear, spacing, steps);
            let (x, _) = start(1, 0, 2, [1, 4, 4], 1.0, &device);
            let s = sample(&oracle, &plan, x, 0);
            // DPM-Solver drops timesteps that rounding repeats (1000 of 1000 with linspace).
            assert!(
                s.nfe <= steps && s.nfe + 2 >= steps.min(s.nfe + 2),
                "{method:?}: {} NFE",
                s.nfe
            );
            for (a, b) in values(s.x).iter().zip(&target) {
                assert!((*a as f32 - b).abs() < 1e-4, "{method:?} {spacing}: {a} vs {b}");
            }
        }
    }
}

/// Deterministic samplers are affine maps x_T → x₀ for Gaussian data: sampling the inputs 0 and 1 gives the
/// offset (the sample mean) and slope (the sample std) without sampling error.
fn affine_outcome(plan: &Plan) -> (f64, f64) {
    let device = crate::device::device();
    let den = ExactDenoiser::new(&Target::gaussian(0.1, 0.8).unwrap());
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [2, 1, 1, 1]), &device);
    let out = values(sample(&den, plan, x, 0).x);
    (out[0], (out[1] - out[0]).abs())
}

#[test]
fn ddim_and_dpm_solver_with_exact_gaussian_denoiser_match_diffusers() {
    let Some(fx) = shared_fixtures() else { return };
    let mut checked = 0;
    for (key, method) in [
        ("ddim_gauss", Method::Ddim { eta: 0.0 }),
        ("dpmpp2m_gauss", Method::DpmSolverPP2M),
    ] {
        for case in fx[key].as_array().unwrap() {
            let spacing: TimestepSpacing = case
                .get("spacing")
                .map_or("linspace", |s| s.as_str().unwrap())
                .parse()
                .unwrap();
            if key == "ddim_gauss" && spacing == TimestepSpacing::Linspace {
                continue; // diffusers' DDIM steps off the linspace grid (see diffuse-math's fixture tests)
            }
            let kind = case["schedule"].as_str().unwrap().parse().unwrap();
            let plan = discrete(method, kind, spacing, case["steps"].as_u64().unwrap() as usize);
            let (mean, std) = affine_outcome(&plan);
            let (em, es) = (
                case["expected_mean"].as_f64().unwrap(),
                case["expected_std"].as_f64().unwrap(),
            );
            // f32 tensors: 1e-3 relative, as the f64 scalar version in diffuse-math holds to.
            assert!(
                (mean - em).abs() < 1e-3 * em.abs() && (std - es).abs() < 1e-3 * es,
                "{key} {case}: {mean} {std}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

/// The plan a case of `diffusers_schedulers.json` names, and its knots: laid by the plan's own grid, checked
/// against diffusers' sigmas (σ/α, or flow time t; repeats, as Heun lists them, dropped), or for an "as-listed"
/// grid taken from those sigmas.
fn fixture_plan(case: &serde_json::Value) -> Plan {
    let p = &case["plan"];
    let method = Method::from_name(p["sampler"].as_str().unwrap()).unwrap();
    let flow = case["frame"] == "flow";
    let process = match p["process"].as_str().unwrap() {
        "flow" => Process::Flow,
        kind => Process::Discrete(schedule(kind.parse().unwrap())),
    };
    let grid = match p["grid"].as_str().unwrap() {
        "karras" => Grid::Karras {
            rho: 7.0,
            sigma_min: p["sigma_min"].as_f64(),
            sigma_max: p["sigma_max"].as_f64(),
        },
        "timesteps" => Grid::Timesteps {
            spacing: TimestepSpacing::Trailing,
            offset: 0,
        },
        "solver-timesteps" => Grid::SolverTimesteps {
            spacing: TimestepSpacing::Linspace,
        },
        "flow-t" => Grid::FlowT {
            shift: p["shift"].as_f64().unwrap(),
        },
        "as-listed" => method.default_grid(&process),
        g => panic!("unknown grid {g}"),
    };
    let mut plan = Plan::on_grid(method, process, grid, p["steps"].as_u64().unwrap() as usize).unwrap();
    let mut listed: Vec<f64> = case["sigmas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    listed.dedup();
    if p["grid"] == "as-listed" {
        plan.knots = listed
            .iter()
            .map(|&t| Knot {
                t,
                level: diffuse_math::grid::flow_level(t),
            })
            .collect();
    }
    let ours: Vec<f64> = plan
        .knots()
        .iter()
        .map(|k| if flow { k.t } else { k.level.sigma / k.level.alpha })
        .collect();
    assert_eq!(ours.len(), listed.len(), "{}: {ours:?} vs {listed:?}", case["name"]);
    for (a, b) in ours.iter().zip(&listed) {
        // diffusers computes ᾱ and σ = √((1 − ᾱ)/ᾱ) in float32: its σ_min (t = 0) is 8e-5 high, and a Karras grid
        // between the ends inherits that
        assert!((a - b).abs() <= 2e-4 * b.abs() + 1e-9, "{}: σ {a} vs {b}", case["name"]);
    }
    plan
}

#[test]
fn every_sampler_matches_its_diffusers_scheduler_on_the_exact_gaussian() {
    // Made by scripts/make_scheduler_fixtures.py (the file names the diffusers version). Deterministic samplers
    // are affine maps x_T -> x_0 = gain·x_T + offset, with x_T in the frame of diffusers' sample (VE for its
    // Euler and Heun schedulers): both match to 2e-5 relative (f32 tensors; 3e-6 at most when measured).
    // Stochastic ones: 200,000 draws, whose mean and std must lie within 5 standard errors of the exact outcome.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers_schedulers.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let den = ExactDenoiser::new(&Target::gaussian(0.1, 0.8).unwrap());
    let device = crate::device::device();
    let mut samplers = std::collections::BTreeSet::new();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let plan = fixture_plan(case);
        let f = |k: &str| case[k].as_f64().unwrap();
        let (em, es) = (f("expected_mean"), f("expected_std"));
        if case["noise_draws"] == 0 {
            let unit = if case["frame"] == "ve" {
                plan.knots()[0].level.alpha
            } else {
                1.0
            };
            let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, unit as f32], [2, 1, 1, 1]), &device);
            let s = sample(&den, &plan, x, 0);
            let out = values(s.x);
            let (offset, gain) = (out[0], out[1] - out[0]);
            assert!(
                (offset - em).abs() < 2e-5 * em.abs() && (gain - f("gain")).abs() < 2e-5 * f("gain").abs(),
                "{name}: offset {offset} gain {gain}, diffusers {em} {}",
                f("gain")
            );
            assert_eq!(s.nfe as u64, case["nfe"].as_u64().unwrap(), "{name}: NFE");
        } else {
            let n = 200_000;
            let (v, nfe) = one_d(&den, &plan, n, 5);
            let (mean, std) = moments(&v);
            let se = es / (n as f64).sqrt();
            assert!(
                (mean - em).abs() < 5.0 * se && (std - es).abs() < 5.0 * se / 2f64.sqrt(),
                "{name}: mean {mean} std {std}, diffusers {em} {es}"
            );
            assert_eq!(nfe as u64, case["nfe"].as_u64().unwrap(), "{name}: NFE");
        }
        samplers.insert(case["plan"]["sampler"].as_str().unwrap().to_string());
    }
    let want = [
        "euler",
        "heun",
        "euler-ancestral",
        "dpmpp-2m",
        "dpmpp-2m-sde",
        "unipc",
        "flow-euler",
        "flow-heun",
    ];
    assert_eq!(samplers, want.iter().map(|s| s.to_string()).collect());
}

#[test]
fn stochastic_discrete_samplers_reproduce_gaussian_data() {
    // A variance used where a standard deviation belongs would show up as a wrong spread. Fewer steps shrink
    // the spread a little (diffusers' deterministic DDIM-100 gives 0.783), hence the looser bound there.
    let den = ExactDenoiser::new(&Target::gaussian(0.1, 0.8).unwrap());
    for (method, steps, tol) in [
        (Method::Ddpm { large_variance: false }, 1000, 0.02),
        (Method::Ddpm { large_variance: false }, 100, 0.05),
        (Method::Ddim { eta: 1.0 }, 100, 0.05),
        (Method::Ddim { eta: 0.5 }, 50, 0.05),
        (Method::EulerAncestral { eta: 1.0 }, 100, 0.05),
    ] {
        let plan = discrete(method, BetaSchedule::Linear, TimestepSpacing::Trailing, steps);
        let (v, _) = one_d(&den, &plan, 20_000, 11);
        let (mean, std) = moments(&v);
        assert!(
            (mean - 0.1).abs() < 0.02 && (std - 0.8).abs() < tol,
            "{method:?} {steps}: {mean} {std}"
        );
    }
}

fn sde_methods() -> Vec<Method> {
    let sde = |predictor, corrector_steps| Method::Sde {
        predictor,
        corrector_steps,
        snr: 0.16,
    };
    vec![
        sde(Predictor::EulerMaruyama, 0),
        sde(Predictor::ReverseDiffusion, 0),
        sde(Predictor::Ancestral, 0),
        sde(Predictor::ReverseDiffusion, 1),
        Method::Ode {
            solver: OdeSolver::Euler,
        },
        Method::Ode {
            solver: OdeSolver::Heun,
        },
        Method::Ode {
            solver: OdeSolver::Rk45 { rtol: 1e-5, atol: 1e-5 },
        },
    ]
}

#[test]
fn every_sde_sampler_lands_on_both_targets() {
    let targets = [
        Target::gaussian(0.1, 0.8).unwrap(),
        Target::mixture(vec![-1.0, 1.5], vec![0.3, 0.7], 0.3).unwrap(),
    ];
    for target in &targets {
        let den = ExactDenoiser::new(target);
        for sde in [Sde::vp(), Sde::subvp(), Sde::ve()] {
            for method in sde_methods() {
                let plan = Plan::new(method, Process::Sde(sde), 1000).unwrap();
                let (v, nfe) = one_d(&den, &plan, 10_000, 5);
                let (_, std) = moments(&v);
                let w1 = target.w1(&v);
                assert!(
                    w1 < 0.04 && (std - target.std_dev()).abs() < 0.03,
                    "{} {sde} on {target:?}: w1 {w1}, std {std} (want {}), nfe {nfe}",
                    method.name(),
                    target.std_dev()
                );
            }
        }
    }
}

#[test]
fn ode_is_deterministic_and_encode_decode_round_trips() {
    let device = crate::device::device();
    let den = ExactDenoiser::new(&Target::gaussian(0.1, 0.8).unwrap());
    let sde = Sde::vp();
    let solver = OdeSolver::Rk45 { rtol: 1e-6, atol: 1e-6 };
    let plan = Plan::new(Method::Ode { solver }, Process::Sde(sde), 1).unwrap();
    let x = |seed| start(seed, 0, 2, [1, 2, 8], 1.0, &device).0;
    assert_eq!(
        values(sample(&den, &plan, x(3), 1).x),
        values(sample(&den, &plan, x(3), 2).x)
    );
    let data: Vec<f32> = (0..32).map(|i| (i as f32 / 31.0) * 3.0 - 1.4).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(data.clone(), [2, 1, 2, 8]), &device);
    let mut streams = vec![rng::stream(0, 0), rng::stream(0, 1)];
    let mut ctx = Ctx::new(&den, &mut streams);
    let z = ode::encode(&mut ctx, x0, &sde, solver, 1);
    let back = values(ode::decode(&mut ctx, z, &sde, solver, 1));
    for (a, b) in back.iter().zip(&data) {
        assert!((a - *b as f64).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn rk45_spends_more_evaluations_for_tighter_tolerances() {
    let den = ExactDenoiser::new(&Target::mixture(vec![-1.0, 1.5], vec![0.3, 0.7], 0.3).unwrap());
    let nfe = |tol: f64| {
        let plan = Plan::new(
            Method::Ode {
                solver: OdeSolver::Rk45 { rtol: tol, atol: tol },
            },
            Process::Sde(Sde::vp()),
            1,
        );
        one_d(&den, &plan.unwrap(), 1000, 2).1
    };
    let (loose, mid, tight) = (nfe(1e-2), nfe(1e-4), nfe(1e-6));
    assert!(loose < mid && mid < tight, "{loose} {mid} {tight}");
}

#[test]
fn ode_likelihood_of_the_exact_gaussian_equals_the_closed_form() {
    let device = crate::device::device();
    let (m, s) = (0.1, 0.8);
    let den = ExactDenoiser::new(&Target::gaussian(m, s).unwrap());
    for sde in [Sde::vp(), Sde::ve()] {
        let data: Vec<f32> = (0..24).map(|i| i as f32 / 8.0 - 1.5).collect();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [2, 1, 3, 4]), &device);
        let probe: Vec<f32> = (0..24).map(|i| if (i * 7) % 3 == 0 { 1.0 } else { -1.0 }).collect();
        let v = Tensor::<4>::from_data(TensorData::new(probe, [2, 1, 3, 4]), &device);
        let mut streams = vec![rng::stream(0, 0), rng::stream(0, 1)];
        let mut ctx = Ctx::new(&den, &mut streams);
        let solver = OdeSolver::Rk45 { rtol: 1e-6, atol: 1e-6 };
        let got = ode::log_likelihood(&mut ctx, x, v, &sde, solver, 1);
        // p_{t_min} = N(α m, α² s² + σ²) per value.
        let l = sde.marginal(sde.t_min());
        let var = l.alpha * l.alpha * s * s + l.sigma * l.sigma;
        for (i, g) in got.iter().enumerate() {
            let want: f64 = data[i * 12..(i + 1) * 12]
                .iter()
                .map(|&x| {
                    -0.5 * (2.0 * std::f64::consts::PI * var).ln() - (x as f64 - l.alpha * m).powi(2) / (2.0 * var)
                })
                .sum();
            assert!((g - want).abs() < 2e-3 * want.abs().max(1.0), "{sde}: {g} vs {want}");
        }
    }
}

#[test]
fn discrete_and_sde_plans_are_checked() {
    let s = Process::Discrete(schedule(BetaSchedule::Linear));
    let euler = Method::Ode {
        solver: OdeSolver::Euler,
    };
    let e = Plan::new(euler, s.clone(), 10).unwrap_err().to_string();
    assert!(e.contains("needs an SDE"), "{e}");
    assert!(Plan::new(Method::Ddim { eta: 1.5 }, s.clone(), 10).is_err());
    assert!(Plan::new(Method::EulerAncestral { eta: -0.1 }, s.clone(), 10).is_err());
    assert!(Plan::new(Method::Ddim { eta: 0.0 }, s.clone(), 0).is_err());
    assert!(Plan::new(Method::Ddim { eta: 0.0 }, s.clone(), 1001).is_err());
    let pc = Method::Sde {
        predictor: Predictor::ReverseDiffusion,
        corrector_steps: 1,
        snr: -1.0,
    };
    assert!(Plan::new(pc, Process::Sde(Sde::ve()), 10).is_err());
    // A sampler that cannot walk a grid is refused when the plan is built, naming both.
    let rk45 = Method::Ode {
        solver: OdeSolver::Rk45 { rtol: 1e-3, atol: 1e-3 },
    };
    let e = Plan::new(rk45, Process::Sde(Sde::vp()), 10)
        .unwrap()
        .with_grid(Grid::KARRAS)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rk45") && e.contains("karras"), "{e}");
    let e = Plan::new(Method::Ddim { eta: 0.0 }, Process::Sde(Sde::vp()), 10)
        .unwrap()
        .with_grid(Grid::Timesteps {
            spacing: TimestepSpacing::Leading,
            offset: 0,
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ddim") && e.contains("timesteps") && e.contains("vp SDE"),
        "{e}"
    );
}

/// The samplers that need only levels, with the settings the lab sweeps.
fn level_methods() -> Vec<Method> {
    vec![
        Method::Ddpm { large_variance: false },
        Method::Ddim { eta: 0.0 },
        Method::EulerAncestral { eta: 1.0 },
        Method::DpmSolverPP2M,
        Method::DpmSolverPP2MSde,
        Method::UniPc,
        Method::from_name("euler").unwrap(),
        Method::from_name("heun").unwrap(),
    ]
}

#[test]
fn every_level_sampler_lands_on_the_target_on_every_grid() {
    // The same exact denoiser for every sampler, on discrete schedules and SDEs (EDM's VE range too), over
    // timestep, uniform-t, Karras and log-SNR grids.
    let target = Target::mixture(vec![-1.0, 1.5], vec![0.3, 0.7], 0.3).unwrap();
    let den = ExactDenoiser::new(&target);
    let edm = Sde::Ve {
        sigma_min: 0.002,
        sigma_max: 80.0,
    };
    let log_snr = Grid::LogSnr {
        sigma_min: None,
        sigma_max: None,
    };
    let cases = [
        (Process::Discrete(schedule(BetaSchedule::Linear)), Grid::KARRAS),
        (Process::Discrete(schedule(BetaSchedule::Cosine)), log_snr),
        (Process::Sde(Sde::vp()), Grid::UniformT),
        (Process::Sde(edm), Grid::KARRAS),
        (Process::Sde(Sde::subvp()), log_snr),
    ];
    for (process, grid) in cases {
        for method in level_methods() {
            let plan = Plan::new(method, process.clone(), 200)
                .unwrap()
                .with_grid(grid)
                .unwrap();
            let (v, nfe) = one_d(&den, &plan, 10_000, 3);
            let w1 = target.w1(&v);
            assert!(
                w1 < 0.05,
                "{} on {grid} ({}): w1 {w1}, nfe {nfe}",
                method.name(),
                process.name()
            );
        }
    }
    // Heun on the Karras grid of EDM's VE SDE: the deterministic sampler EDM builds on.
    let heun = Method::Ode {
        solver: OdeSolver::Heun,
    };
    let plan = Plan::new(heun, Process::Sde(edm), 60)
        .unwrap()
        .with_grid(Grid::KARRAS)
        .unwrap();
    let (v, nfe) = one_d(&den, &plan, 10_000, 3);
    assert!(
        target.w1(&v) < 0.05 && nfe == 2 * 60 + 1,
        "heun: w1 {}, nfe {nfe}",
        target.w1(&v)
    );
}

#[test]
fn ddpm_large_variance_adds_more_noise_than_small() {
    use diffuse_math::step::ddpm;
    let s = schedule(BetaSchedule::Linear);
    let pairs = TimestepSpacing::Leading.pairs(1000, 20).unwrap();
    for &(t, p) in &pairs[..19] {
        assert!(ddpm(s.alpha_bar(t), s.alpha_bar(p), true).std > ddpm(s.alpha_bar(t), s.alpha_bar(p), false).std);
    }
    let (t, p) = pairs[19];
    assert_eq!(ddpm(s.alpha_bar(t), s.alpha_bar(p), true).std, 0.0);
}

#[test]
fn image_i_does_not_depend_on_batch() {
    let device = crate::device::device();
    let (all, mut s_all) = start(5, 0, 4, [1, 3, 3], 1.0, &device);
    let (one, mut s_one) = start(5, 2, 1, [1, 3, 3], 1.0, &device);
    assert_eq!(values(all).split_off(2 * 9)[..9], values(one)[..]);
    assert_eq!(rng::normals(&mut s_all[2], 4), rng::normals(&mut s_one[0], 4));
}

#[test]
fn a_plan_round_trips_through_its_json_spec() {
    let s = schedule(BetaSchedule::Linear);
    let edm: Sde = "ve:0.002,80".parse().unwrap();
    let plans = [
        discrete(
            Method::Ddim { eta: 0.3 },
            BetaSchedule::Linear,
            TimestepSpacing::Leading,
            20,
        ),
        discrete(
            Method::DpmSolverPP2M,
            BetaSchedule::Linear,
            TimestepSpacing::Linspace,
            15,
        ),
        Plan::new(Method::EulerAncestral { eta: 1.0 }, Process::Sde(edm), 30)
            .and_then(|p| p.with_grid(Grid::KARRAS))
            .unwrap(),
        Plan::new(Method::from_name("pc").unwrap(), Process::Sde(Sde::vp()), 50)
            .and_then(|p| p.with_strength(0.4))
            .unwrap(),
        Plan::new(Method::from_name("ode").unwrap(), Process::Sde(Sde::subvp()), 1).unwrap(),
        Plan::new(churned(40.0), Process::Sde(edm), 18).unwrap(),
        Plan::new(Method::from_name("flow-heun").unwrap(), Process::Flow, 12)
            .and_then(|p| p.with_grid(Grid::FlowT { shift: 3.0 }))
            .unwrap(),
    ];
    for plan in plans {
        let json = serde_json::to_string(&plan.spec()).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan.spec(), "{json}");
        assert_eq!(back.plan(&s).unwrap().knots(), plan.knots(), "{json}");
    }
    let json = serde_json::to_string(
        &discrete(
            Method::Ddim { eta: 0.0 },
            BetaSchedule::Linear,
            TimestepSpacing::Trailing,
            50,
        )
        .spec(),
    )
    .unwrap();
    assert_eq!(
        json,
        r#"{"sampler":"ddim","eta":0.0,"grid":{"kind":"timesteps","spacing":"trailing"},"steps":50,"process":"schedule","strength":1.0}"#
    );
    // A spec that cannot run is refused when rebuilt, as any plan is.
    let bad = json.replace(r#""eta":0.0"#, r#""eta":2.0"#);
    assert!(serde_json::from_str::<Spec>(&bad).unwrap().plan(&s).is_err());
}

/// EDM's Heun with churn S_churn (its other settings as in EDM's ImageNet table: S_noise 1.003, everywhere).
fn churned(s_churn: f64) -> Method {
    Method::Heun {
        frame: Frame::Ve,
        churn: Churn {
            s_churn,
            s_noise: 1.003,
            ..Churn::NONE
        },
    }
}

#[test]
fn euler_in_either_frame_is_ddim() {
    // y = a(τ)x₀ + b(τ)ε with a, b linear in τ: an Euler step lands where DDIM (η = 0) puts x.
    let target = Target::mixture(vec![-1.0, 1.5], vec![0.3, 0.7], 0.3).unwrap();
    let den = ExactDenoiser::new(&target);
    let edm: Sde = "ve:0.002,80".parse().unwrap();
    for (name, process, grid) in [
        ("euler", Process::Discrete(schedule(BetaSchedule::Linear)), Grid::KARRAS),
        ("euler", Process::Sde(edm), Grid::KARRAS),
        ("flow-euler", Process::Flow, Grid::FlowT { shift: 3.0 }),
    ] {
        let plan = |m| Plan::on_grid(m, process.clone(), grid, 12).unwrap();
        let (euler, n1) = one_d(&den, &plan(Method::from_name(name).unwrap()), 500, 4);
        let (ddim, n2) = one_d(&den, &plan(Method::Ddim { eta: 0.0 }), 500, 4);
        assert_eq!(n1, n2);
        let worst = euler.iter().zip(&ddim).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name} on {}: {worst}", process.name());
    }
}

#[test]
fn flow_path_and_churn_samplers_land_on_the_target() {
    let target = Target::mixture(vec![-1.0, 1.5], vec![0.3, 0.7], 0.3).unwrap();
    let den = ExactDenoiser::new(&target);
    // From pure noise (α = 0) on the flow path: its own samplers, DDIM and DDPM.
    for (name, shift, nfe) in [
        ("flow-heun", 1.0, 2 * 49 + 1),
        ("flow-heun", 3.0, 2 * 49 + 1),
        ("flow-euler", 1.0, 50),
        ("ddim", 1.0, 50),
        ("ddpm", 1.0, 50),
    ] {
        let plan = Plan::new(Method::from_name(name).unwrap(), Process::Flow, 50)
            .and_then(|p| p.with_grid(Grid::FlowT { shift }))
            .unwrap();
        let (v, n) = one_d(&den, &plan, 10_000, 3);
        let w1 = target.w1(&v);
        assert!(w1 < 0.05 && n == nfe, "{name}, shift {shift}: w1 {w1}, nfe {n}");
    }
    // EDM's stochastic Heun on its VE range: the churn's noise is fresh, so the samples differ from the
    // deterministic sampler's, and still land on the target.
    let edm = Process::Sde("ve:0.002,80".parse().unwrap());
    let (churn, _) = one_d(&den, &Plan::new(churned(40.0), edm.clone(), 40).unwrap(), 10_000, 3);
    let (plain, _) = one_d(&den, &Plan::new(churned(0.0), edm, 40).unwrap(), 10_000, 3);
    assert!(target.w1(&churn) < 0.05, "w1 {}", target.w1(&churn));
    assert!(churn.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 0.01));
}

#[test]
fn samplers_that_cannot_start_at_pure_noise_are_refused_there() {
    for name in ["heun", "euler", "dpmpp-2m", "unipc", "euler-ancestral"] {
        let e = Plan::new(Method::from_name(name).unwrap(), Process::Flow, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pure noise"), "{name}: {e}");
    }
    // With a finite top they walk the flow path too.
    let top = Grid::Karras {
        rho: 7.0,
        sigma_min: None,
        sigma_max: Some(80.0),
    };
    assert!(Plan::on_grid(Method::from_name("heun").unwrap(), Process::Flow, top, 10).is_ok());
    let flow_churn = Method::Heun {
        frame: Frame::Flow,
        churn: Churn {
            s_churn: 1.0,
            ..Churn::NONE
        },
    };
    let e = Plan::new(flow_churn, Process::Flow, 10).unwrap_err().to_string();
    assert!(e.contains("churn"), "{e}");
}

#[test]
fn a_thinned_grid_walks_its_teachers_knots_and_a_part_way_start_keeps_whole_steps() {
    let s = schedule(BetaSchedule::Linear);
    let fine = Plan::new(Method::Ddim { eta: 0.0 }, Process::Discrete(s.clone()), 64).unwrap();
    let thin = Plan::new(Method::Ddim { eta: 0.0 }, Process::Discrete(s), 4)
        .and_then(|p| p.with_grid(fine.grid()))
        .and_then(|p| p.with_thinning(16))
        .unwrap();
    let want: Vec<Knot> = [0, 16, 32, 48, 64].iter().map(|&i| fine.knots()[i]).collect();
    assert_eq!(thin.knots(), want.as_slice());
    // SDEdit on the student: ⌈s·4⌉ of its own steps, never fewer than one.
    for (strength, steps) in [(0.3, 2), (0.1, 1), (1.0, 4)] {
        let p = thin.clone().with_strength(strength).unwrap();
        assert_eq!(p.knots(), &want[4 - steps..], "strength {strength}");
    }
    // Shifted flow time starts exactly at pure noise, whatever the shift.
    for shift in [0.1, 0.2, 0.3, 3.0] {
        let p = Plan::new(Method::from_name("flow-euler").unwrap(), Process::Flow, 8)
            .and_then(|p| p.with_grid(Grid::FlowT { shift }))
            .unwrap();
        assert_eq!(p.knots()[0].level.alpha, 0.0, "shift {shift}");
    }
}

#[test]
fn the_fastest_batch_is_a_doubling_of_eight_within_n_and_256() {
    let device = crate::device::device();
    let den = ExactDenoiser::new(&Target::gaussian(0.1, 0.8).unwrap());
    for n in [1, 3, 8, 20, 100, 1000] {
        let b = fastest_batch(&den, n, [1, 1, 1], &Cond::default(), &device);
        // The candidates: 8, 16, … up to min(n, 256), the last one cut to that limit.
        let largest = n.min(256);
        let doubling = b >= 8 && b.is_power_of_two();
        assert!(b <= largest && (doubling || b == largest), "n = {n}: batch {b}");
    }
}
