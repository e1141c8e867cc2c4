//! Closed-form properties of schedules, spacings and steps that need no reference numbers.

use diffuse_math::step::{ddim, ddpm, unipc_corrector};
use diffuse_math::{BetaSchedule, Level, MathError, NoiseSchedule, TimestepSpacing};

#[test]
fn alphas_cumprod_is_the_running_product() {
    for kind in BetaSchedule::ALL {
        let s = NoiseSchedule::with_defaults(kind, 50).unwrap();
        let mut acc = 1.0;
        for t in 0..50 {
            acc *= 1.0 - s.betas[t];
            assert!((s.alphas_cumprod[t] - acc).abs() < 1e-15);
            assert!(s.betas[t] > 0.0 && s.betas[t] < 1.0);
        }
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]), "{kind} ᾱ decreases");
        assert!(s.log_snr(0) > s.log_snr(49));
    }
}

#[test]
fn linear_schedule_endpoints() {
    let s = NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02).unwrap();
    assert_eq!(s.betas[0], 1e-4);
    assert!((s.betas[999] - 0.02).abs() < 1e-15);
    // ᾱ_T of the DDPM paper's schedule is about 4e-5: the chain ends near pure noise.
    assert!(s.alphas_cumprod[999] < 1e-4 && s.alphas_cumprod[999] > 1e-5);
}

#[test]
fn cosine_schedule_is_capped_and_nonzero() {
    let s = NoiseSchedule::with_defaults(BetaSchedule::Cosine, 1000).unwrap();
    assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
    assert_eq!(s.betas[999], 0.999);
}

#[test]
fn spacings_for_ten_of_a_thousand() {
    let leading = TimestepSpacing::Leading.timesteps(1000, 10).unwrap();
    assert_eq!(leading, vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    let trailing = TimestepSpacing::Trailing.timesteps(1000, 10).unwrap();
    assert_eq!(trailing, vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    let lin = TimestepSpacing::Linspace.timesteps(1000, 10).unwrap();
    assert_eq!(lin, vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // Full-length grids visit every train step once.
    for sp in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        let all = sp.timesteps(1000, 1000).unwrap();
        assert_eq!(all, (0..1000).rev().collect::<Vec<i64>>(), "{sp}");
        let pairs = sp.pairs(1000, 7).unwrap();
        assert_eq!(pairs.last().unwrap().1, -1);
        assert!(pairs.windows(2).all(|w| w[0].1 == w[1].0));
    }
}

#[test]
fn bad_parameters_are_rejected() {
    assert!(matches!(
        "cosin".parse::<BetaSchedule>(),
        Err(MathError::Unknown { .. })
    ));
    assert!("middle".parse::<TimestepSpacing>().is_err());
    assert!(TimestepSpacing::Leading.timesteps(1000, 0).is_err());
    assert!(TimestepSpacing::Leading.timesteps(1000, 1001).is_err());
    assert!(NoiseSchedule::new(BetaSchedule::Linear, 1000, 0.02, 1e-4).is_err());
    assert!(NoiseSchedule::new(BetaSchedule::Linear, 1, 1e-4, 0.02).is_err());
    assert!(ddim(0.5, 0.9, 1.5).is_err());
}

#[test]
fn ddim_eta_one_is_ddpm_fixed_small() {
    let s = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
    for (t, prev) in [(999, 949), (500, 499), (10, -1)] {
        let (a, ap) = (s.alpha_bar(t), s.alpha_bar(prev));
        let d = ddim(a, ap, 1.0).unwrap();
        let p = ddpm(a, ap, false);
        assert!((d.c_x0 - p.c_x0).abs() < 1e-12 && (d.c_eps - p.c_eps).abs() < 1e-12);
        assert!((d.std - p.std).abs() < 1e-12, "t={t}");
    }
}

#[test]
fn ddpm_step_reproduces_posterior_mean() {
    // With x_t = √ᾱ x₀ + √(1−ᾱ) ε, the (x̂₀, ε̂) form must equal c₀ x₀ + c_t x_t of the posterior.
    let s = NoiseSchedule::with_defaults(BetaSchedule::Cosine, 1000).unwrap();
    for t in [1usize, 37, 500, 998] {
        let (x0, eps) = (0.3, -1.2);
        let a = s.alphas_cumprod[t];
        let xt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
        let post = s.posterior(t);
        let c = ddpm(a, s.alpha_bar(t as i64 - 1), false);
        let want = post.coef_x0 * x0 + post.coef_xt * xt;
        assert!((c.apply(x0, eps, 0.0) - want).abs() < 1e-12);
        assert!((c.std.powi(2) - post.variance_small).abs() < 1e-12);
        assert!((ddpm(a, s.alpha_bar(t as i64 - 1), true).std.powi(2) - post.variance_large).abs() < 1e-12);
    }
}

#[test]
fn ddim_deterministic_step_returns_x0_for_an_oracle() {
    // An oracle that knows x₀ (and so the true ε) is moved exactly onto the forward marginal at t_prev,
    // and the final step to ᾱ = 1 returns x₀ itself.
    let s = NoiseSchedule::with_defaults(BetaSchedule::Linear, 1000).unwrap();
    let (x0, eps) = (0.7, 0.4);
    let mut x = s.alpha_bar(999).sqrt() * x0 + (1.0 - s.alpha_bar(999)).sqrt() * eps;
    for (t, prev) in TimestepSpacing::Trailing.pairs(1000, 13).unwrap() {
        let a = s.alpha_bar(t);
        let e = (x - a.sqrt() * x0) / (1.0 - a).sqrt();
        x = ddim(a, s.alpha_bar(prev), 0.0).unwrap().apply(x0, e, 0.0);
        let ap = s.alpha_bar(prev);
        assert!((x - (ap.sqrt() * x0 + (1.0 - ap).sqrt() * eps)).abs() < 1e-12);
    }
    assert!((x - x0).abs() < 1e-12);
}

#[test]
fn timestep_of_inverts_alpha_bar() {
    let s = NoiseSchedule::with_defaults(BetaSchedule::Cosine, 1000).unwrap();
    for t in [0usize, 1, 17, 500, 998, 999] {
        assert!((s.timestep_of(s.alphas_cumprod[t]) - t as f64).abs() < 1e-9, "{t}");
    }
    let mid = (s.alphas_cumprod[10].ln() * 0.25 + s.alphas_cumprod[11].ln() * 0.75).exp();
    assert!((s.timestep_of(mid) - 10.75).abs() < 1e-9);
    assert_eq!(s.timestep_of(1.0), 0.0);
    assert_eq!(s.timestep_of(0.0), 999.0);
}

#[test]
fn dpm_solver_timesteps_never_repeat() {
    for sp in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        for k in [1usize, 10, 500, 999, 1000] {
            let ts = sp.dpm_solver_timesteps(1000, k).unwrap();
            assert!(ts.windows(2).all(|w| w[0] > w[1]), "{sp} {k}");
            assert!(ts.len() <= k && ts.len() + 2 >= k.min(ts.len() + 2), "{sp} {k}");
            assert!(*ts.last().unwrap() >= 0 && ts[0] <= 999);
        }
    }
}

#[test]
fn euler_ancestral_is_ddim_with_the_same_eta_on_any_levels() {
    use diffuse_math::step::{ddim_levels, euler_ancestral};
    let ve = |s: f64| Level { alpha: 1.0, sigma: s };
    let pairs = [
        (Level::vp(0.01), Level::vp(0.3)),
        (Level::vp(0.5), Level::vp(0.9999)),
        (ve(80.0), ve(12.0)),
        (ve(0.5), ve(0.002)),
        (Level::vp(0.2), Level::CLEAN),
    ];
    for (t, p) in pairs {
        for eta in [0.0, 0.3, 1.0] {
            let (a, b) = (euler_ancestral(t, p, eta), ddim_levels(t, p, eta).unwrap());
            for (x, y) in [(a.c_x0, b.c_x0), (a.c_eps, b.c_eps), (a.std, b.std)] {
                assert!(
                    (x - y).abs() < 1e-12 * (1.0 + y.abs()),
                    "{t:?} → {p:?}, η {eta}: {a:?} vs {b:?}"
                );
            }
        }
    }
    // η = 0 is the deterministic Euler step of the probability-flow ODE in σ̃: x̃_p = x̂₀ + σ̃_p ε̂.
    let c = euler_ancestral(ve(10.0), ve(4.0), 0.0);
    assert_eq!((c.c_x0, c.c_eps, c.std), (1.0, 4.0, 0.0));
}

/// The level at half-log-SNR λ (α² = 1/(1 + e^{−2λ})).
fn at_lambda(lambda: f64) -> Level {
    Level::vp(1.0 / (1.0 + (-2.0 * lambda).exp()))
}

#[test]
fn unipc_corrector_of_order_two_is_exact_for_quadratic_data_predictions() {
    // The data-prediction ODE solves exactly: x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^λ D(λ) dλ. UniC-2 uses
    // D at three levels (prev, s, t), so it integrates every D quadratic in λ exactly; order 1 only constants.
    // Antiderivatives of e^λ (λ − λ_s)^k, k = 0, 1, 2:
    let anti = |k: usize, l: f64, ls: f64| {
        let u = l - ls;
        l.exp() * [1.0, u - 1.0, u * u - 2.0 * u + 2.0][k]
    };
    for (lp, ls, lt) in [
        (-1.3, -1.0, -0.6),
        (-4.0, -3.2, -1.5),
        (0.9, 1.0, 1.05),
        (-1.0, -0.5, 3.0),
    ] {
        let (p, s, t) = (at_lambda(lp), at_lambda(ls), at_lambda(lt));
        let x_s = 0.37;
        for k in 0..3 {
            let d = |l: f64| (l - ls).powi(k as i32);
            let exact = t.sigma / s.sigma * x_s + t.sigma * (anti(k, lt, ls) - anti(k, ls, ls));
            let (cx, cs, cp, ct) = unipc_corrector(Some(p), s, t);
            let got = cx * x_s + cs * d(ls) + cp * d(lp) + ct * d(lt);
            assert!(
                (got - exact).abs() < 1e-12 * exact.abs().max(1.0),
                "order 2, degree {k}: {got} vs {exact}"
            );
            if k == 0 {
                let (cx, cs, cp, ct) = unipc_corrector(None, s, t);
                assert_eq!(cp, 0.0);
                let got = cx * x_s + cs + ct;
                assert!((got - exact).abs() < 1e-12, "order 1, constant: {got} vs {exact}");
            }
        }
    }
}
