//! Coefficients of one reverse step from level (α_t, σ_t) to (α_p, σ_p), written as
//! x_prev = c_x0 · x̂₀ + c_eps · ε̂ + std · z,  z ~ N(0, I),
//! so that the tensor code applies the same three numbers for DDPM, DDIM and the ancestral SDE predictor,
//! and the maths is testable here. For the discrete VP schedules, α = √ᾱ and σ = √(1 − ᾱ).

use crate::MathError;
use crate::level::Level;

/// One reverse step's coefficients on (x̂₀, ε̂, noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    pub c_x0: f64,
    pub c_eps: f64,
    pub std: f64,
}

impl StepCoefs {
    /// Applies the step to scalars; the tensor samplers do the same per element.
    pub fn apply(&self, x0: f64, eps: f64, z: f64) -> f64 {
        self.c_x0 * x0 + self.c_eps * eps + self.std * z
    }
}

/// The variance of the true posterior q(x_p | x_t, x₀): σ_p² v / σ_t² (DDPM's β̃ for VP levels).
pub fn posterior_variance(t: Level, p: Level) -> f64 {
    let (_, v) = t.transition_from(p);
    p.sigma * p.sigma * v / (t.sigma * t.sigma)
}

/// DDIM (Song et al. 2021, eq. 12) on levels: x_p = α_p x̂₀ + √(σ_p² − s²) ε̂ + s z with
/// s = η·√(posterior variance); for VP levels s = η √((1−ᾱ_p)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_p).
pub fn ddim_levels(t: Level, p: Level, eta: f64) -> Result<StepCoefs, MathError> {
    if !(0.0..=1.0).contains(&eta) {
        return Err(MathError::Invalid(format!("eta must be in [0, 1], got {eta}")));
    }
    let std = eta * posterior_variance(t, p).sqrt();
    Ok(StepCoefs {
        c_x0: p.alpha,
        c_eps: (p.sigma * p.sigma - std * std).max(0.0).sqrt(),
        std,
    })
}

/// Ancestral step: the mean of q(x_p | x_t, x₀) with x₀ = x̂₀ (Ho et al. eq. 6–7 for VP; score_sde's ancestral
/// predictor for VE), mean = (v α_p / σ_t²) x̂₀ + (a σ_p² / σ_t²) x_t, rewritten on (x̂₀, ε̂) through
/// x_t = α_t x̂₀ + σ_t ε̂. Variance: the posterior's ("small") or the transition's v ("large", DDPM's β_t).
/// Steps into σ_p = 0 add no noise.
pub fn ancestral(t: Level, p: Level, large_variance: bool) -> StepCoefs {
    let (a, v) = t.transition_from(p);
    let s2 = t.sigma * t.sigma;
    let (coef_x0, coef_xt) = (v * p.alpha / s2, a * p.sigma * p.sigma / s2);
    let variance = if p.sigma <= 0.0 {
        0.0
    } else if large_variance {
        v
    } else {
        posterior_variance(t, p)
    };
    StepCoefs {
        c_x0: coef_x0 + coef_xt * t.alpha,
        c_eps: coef_xt * t.sigma,
        std: variance.sqrt(),
    }
}

/// Euler ancestral (k-diffusion's `sample_euler_ancestral` with `get_ancestral_step`), written in VE
/// coordinates x̃ = x/α, σ̃ = σ/α: σ_up = min(σ̃_p, η·√(σ̃_p²(σ̃_t² − σ̃_p²)/σ̃_t²)), σ_down = √(σ̃_p² − σ_up²); the
/// Euler step x̃ + (σ_down − σ̃_t)·(x̃ − x̂₀)/σ̃_t = x̂₀ + σ_down·ε̂, then σ_up·z; scaled back to level p by α_p.
/// (Its σ_up² is α_p⁻² times DDIM's posterior variance, so it is DDIM(η) in another form; a test checks it.)
pub fn euler_ancestral(t: Level, p: Level, eta: f64) -> StepCoefs {
    let (st, sp) = (t.sigma / t.alpha, p.sigma / p.alpha);
    let up = (eta * (sp * sp * (st * st - sp * sp) / (st * st)).max(0.0).sqrt()).min(sp);
    let down = (sp * sp - up * up).max(0.0).sqrt();
    StepCoefs {
        c_x0: p.alpha,
        c_eps: p.alpha * down,
        std: p.alpha * up,
    }
}

/// DDIM between two train-step noise levels ᾱ_t → ᾱ_prev.
pub fn ddim(alpha_bar: f64, alpha_bar_prev: f64, eta: f64) -> Result<StepCoefs, MathError> {
    ddim_levels(Level::vp(alpha_bar), Level::vp(alpha_bar_prev), eta)
}

/// DDPM ancestral step between any pair of visited train steps (β = 1 − ᾱ_t/ᾱ_prev for skipped steps).
pub fn ddpm(alpha_bar: f64, alpha_bar_prev: f64, large_variance: bool) -> StepCoefs {
    ancestral(Level::vp(alpha_bar), Level::vp(alpha_bar_prev), large_variance)
}

/// The SDE variant of DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", §4.2; diffusers'
/// `sde-dpmsolver++`, midpoint): x_t = (σ_t/σ_s) e^{−h} x_s + α_t (1 − e^{−2h}) (D₀ + (1/(2r))(D₀ − D₁))
/// + σ_t √(1 − e^{−2h}) z. Returns (on x_s, on D₀, on D₁, noise std); into σ_t = 0 the update is x_t = D₀.
pub fn dpm_solver_pp_sde(s: Level, t: Level, h_prev: Option<f64>) -> (f64, f64, f64, f64) {
    if t.sigma <= 0.0 {
        return (0.0, t.alpha, 0.0, 0.0);
    }
    let h = t.lambda() - s.lambda();
    let phi = t.alpha * (1.0 - (-2.0 * h).exp());
    let std = t.sigma * (1.0 - (-2.0 * h).exp()).max(0.0).sqrt();
    let cx = t.sigma / s.sigma * (-h).exp();
    match h_prev {
        None => (cx, phi, 0.0, std),
        Some(hp) => {
            let d1 = 0.5 / (hp / h);
            (cx, phi * (1.0 + d1), -phi * d1, std)
        }
    }
}

/// DPM-Solver++ (Lu et al. 2022) data-prediction updates from level s to level t, h = λ_t − λ_s:
/// first order x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D₀ (this is DDIM), and the 2M multistep correction
/// D = D₀ + (1/(2r)) (D₀ − D₁) with r = h_prev/h ("midpoint" form, diffusers' default). Returns the
/// coefficients (on x_s, on D₀, on D₁). Into σ_t = 0 the update is x_t = D₀.
pub fn dpm_solver_pp(s: Level, t: Level, h_prev: Option<f64>) -> (f64, f64, f64) {
    if t.sigma <= 0.0 {
        return (0.0, t.alpha, 0.0);
    }
    let h = t.lambda() - s.lambda();
    let phi = -t.alpha * ((-h).exp() - 1.0); // α_t (1 − e^{−h})
    match h_prev {
        None => (t.sigma / s.sigma, phi, 0.0),
        Some(hp) => {
            let r = hp / h;
            let d1 = 0.5 / r;
            (t.sigma / s.sigma, phi * (1.0 + d1), -phi * d1)
        }
    }
}

/// UniC, the corrector of UniPC (Zhao et al. 2023, "UniPC", §3.1, data prediction, B(h) = e^{−h} − 1 in the
/// update below: diffusers' "bh2"), of order 1 (`prev` None) or 2. After a step from level s to level t, it
/// revises x_t with the x̂₀ the network gave at x_t, D_t, without a further call:
/// x_t ← (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D_s − α_t B(h) (ρ₁ (D_prev − D_s)/r + ρ_t (D_t − D_s)),
/// h = λ_t − λ_s, r = (λ_prev − λ_s)/h. Order 1 takes ρ_t = ½; order 2 solves [1 1; r 1]·(ρ₁, ρ_t) =
/// (b₁, b₂), with b_k = k!·φ_k(−h)/B(h) from the φ recursion φ₁ = (e^{−h} − 1)/(−h) − 1,
/// φ₂ = φ₁/(−h) − ½. Returns the coefficients (on x_s, on D_s, on D_prev, on D_t). The predictor UniP-2 with
/// this B(h) and ρ = ½ is DPM-Solver++(2M)'s step.
pub fn unipc_corrector(prev: Option<Level>, s: Level, t: Level) -> (f64, f64, f64, f64) {
    let h = t.lambda() - s.lambda();
    let hh = -h;
    let e = hh.exp_m1(); // e^{−h} − 1, also B(h)
    let (rho_prev, rho_t, r) = match prev {
        None => (0.0, 0.5, 1.0),
        Some(p) => {
            let r = (p.lambda() - s.lambda()) / h;
            let phi1 = e / hh - 1.0;
            let phi2 = phi1 / hh - 0.5;
            let (b1, b2) = (phi1 / e, 2.0 * phi2 / e);
            let rho_prev = (b1 - b2) / (1.0 - r);
            (rho_prev, b1 - rho_prev, r)
        }
    };
    let on_prev = -t.alpha * e * rho_prev / r;
    let on_t = -t.alpha * e * rho_t;
    let on_s = -t.alpha * e - on_prev - on_t;
    (t.sigma / s.sigma, on_s, on_prev, on_t)
}
