//! The denoiser interface every sampler talks to: x at a noise level (x = α·x₀ + σ·ε) in, (x̂₀, ε̂) out.
//! Discrete samplers ask at their schedule's levels, SDE samplers at their SDE's; a model trained on a
//! discrete schedule answers any level through the variance-preserving correspondence.

use crate::nn::Net;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use diffuse_math::dist::Target;
use diffuse_math::{Level, NoiseSchedule, Precond, Sde};
use rand::Rng;

/// A denoiser's estimate of the clean image and of the noise in x.
pub struct Denoised {
    pub x0: Tensor<4>,
    pub eps: Tensor<4>,
}

impl Denoised {
    /// x̂₀ clamped to [−r, r], and ε̂ recomputed from it for x at `level` (diffusers' `use_clipped_model_output`),
    /// so that every sampler sees one consistent pair. Keeping the raw ε̂ beside a clipped x̂₀ breaks guided
    /// sampling: 76% of DDIM-50 digits were the asked class at w = 3, 100% with the consistent pair.
    pub fn clipped(self, x: Tensor<4>, level: Level, r: f64) -> Denoised {
        let x0 = self.x0.clamp(-r, r);
        let eps = (x - x0.clone().mul_scalar(level.alpha)).mul_scalar(1.0 / level.sigma);
        Denoised { x0, eps }
    }
}

/// What a batch is conditioned on: one class per item, for class-conditional models; one context sequence
/// per item (a text's encoding), for text-conditioned ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cond {
    pub classes: Option<Vec<u32>>,
    pub context: Option<Context>,
}

/// Context sequences of `len` vectors of `dim` values: one per item, and the null one that classifier-free
/// guidance steers away from (the empty prompt's encoding, or a negative prompt's).
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    pub len: usize,
    pub dim: usize,
    /// items × len × dim.
    pub items: Vec<f32>,
    /// len × dim.
    pub null: Vec<f32>,
}

impl Context {
    fn per_item(&self) -> usize {
        self.len * self.dim
    }

    /// Each item `n` times in a row (the same prompt for `n` images).
    pub fn repeat_each(self, n: usize) -> Context {
        let per = self.per_item();
        let items = self.items.chunks(per.max(1)).flat_map(|c| c.repeat(n)).collect();
        Context { items, ..self }
    }

    /// The items' sequences as a tensor [b, len, dim] (the null one b times, when `null`).
    fn tensor(&self, null: bool, b: usize, device: &Device) -> Tensor<3> {
        let data = if null { self.null.repeat(b) } else { self.items.clone() };
        Tensor::from_data(TensorData::new(data, [b, self.len, self.dim]), device)
    }
}

impl Cond {
    /// One class per item.
    pub fn of_classes(classes: Vec<u32>) -> Cond {
        Cond {
            classes: Some(classes),
            context: None,
        }
    }

    /// How many items it conditions, where it says (None: any number, unconditioned).
    pub fn items(&self) -> Option<usize> {
        let classes = self.classes.as_ref().map(Vec::len);
        classes.or_else(|| self.context.as_ref().map(|c| c.items.len() / c.per_item().max(1)))
    }

    /// The items `range` of this conditioning (one batch of a larger draw).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Cond {
        Cond {
            classes: self.classes.as_ref().map(|c| c[range.clone()].to_vec()),
            context: self.context.as_ref().map(|c| Context {
                items: c.items[range.start * c.per_item()..range.end * c.per_item()].to_vec(),
                ..c.clone()
            }),
        }
    }
}

pub trait Denoiser {
    /// Denoises a batch that is entirely at noise level `level`, conditioned on `cond` where the model can be.
    fn denoise(&self, x: Tensor<4>, level: Level, cond: &Cond) -> Denoised;
}

/// How a network is told the noise level, and which levels it is trained on:
/// - `Discrete`: the train timestep of a discrete schedule (DDPM), drawn uniformly;
/// - `Continuous`: 999·t of a continuous SDE (score models, score_sde's DDPM++ convention), t uniform;
/// - `Edm`: EDM's c_noise = ¼·ln σ (σ = σ/α of the level) times 1000, so that the sinusoidal embedding built
///   for timesteps 0–999 resolves it; ln σ ~ N(p_mean, p_std²) in training (Karras et al. 2022, Table 1);
/// - `Flow`: 1000·t of the flow path (t = σ/(α + σ)), t uniform or logit-normal in training (Esser et al.
///   2024, §3.1).
///
/// What the network sees and predicts at a level is its [`Precond`]'s; any sampler's level can be put to any
/// model through the level of the same SNR.
#[derive(Clone, Debug)]
pub enum LevelInput {
    Discrete(NoiseSchedule),
    Continuous(Sde),
    Edm { p_mean: f64, p_std: f64 },
    Flow(FlowTimes),
}

/// How flow-matching training draws t ∈ (0, 1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FlowTimes {
    Uniform,
    /// t = sigmoid(m + s·z), z ~ N(0, 1) (SD3's default: m = 0, s = 1).
    LogitNormal {
        mean: f64,
        std: f64,
    },
}

/// Smallest training time of continuous models (score_sde trains on t ∈ [1e-5, 1]).
pub const TRAIN_T_MIN: f64 = 1e-5;

impl LevelInput {
    /// The network's time input for `level`.
    pub fn time_input(&self, level: Level) -> f64 {
        match self {
            LevelInput::Discrete(s) => s.timestep_of(level.alpha_bar()),
            LevelInput::Continuous(sde) => 999.0 * sde.time_of(level),
            LevelInput::Edm { .. } => 250.0 * (level.sigma / level.alpha).ln(),
            LevelInput::Flow(_) => 1000.0 * level.sigma / (level.alpha + level.sigma),
        }
    }

    /// A training noise level drawn from `r`, with its time input. Discrete and continuous models draw one
    /// uniform number, as they always have, so that their runs repeat.
    pub fn training_level(&self, r: &mut impl Rng) -> (Level, f64) {
        let normal = |r: &mut dyn rand::RngCore| {
            // Box–Muller on two uniforms in (0, 1].
            let (u, v) = (1.0 - r.random::<f64>(), r.random::<f64>());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        match self {
            LevelInput::Discrete(s) => {
                let u = r.random::<f64>();
                let t = ((u * s.len() as f64) as usize).min(s.len() - 1);
                (Level::vp(s.alphas_cumprod[t]), t as f64)
            }
            LevelInput::Continuous(sde) => {
                let t = TRAIN_T_MIN + r.random::<f64>() * (1.0 - TRAIN_T_MIN);
                (Level::vp(sde.marginal(t).alpha_bar()), 999.0 * t)
            }
            LevelInput::Edm { p_mean, p_std } => {
                let level = Level {
                    alpha: 1.0,
                    sigma: (p_mean + p_std * normal(r)).exp(),
                };
                (level, self.time_input(level))
            }
            LevelInput::Flow(times) => {
                let t = match *times {
                    FlowTimes::Uniform => r.random::<f64>(),
                    FlowTimes::LogitNormal { mean, std } => 1.0 / (1.0 + (-(mean + std * normal(r))).exp()),
                };
                // Kept off the ends, where x is all data (nothing to learn) or all noise.
                let level = diffuse_math::grid::flow_level(t.clamp(1e-5, 1.0 - 1e-5));
                (level, self.time_input(level))
            }
        }
    }
}

/// Classifier-free guidance (Ho & Salimans 2022): out = out_u + w·(out_c − out_u).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guidance {
    /// w: 1 is plain conditional, 0 unconditional.
    pub scale: f64,
    /// Guide only while the noise level σ/α lies in [lo, hi]; elsewhere the plain conditional output is used
    /// (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"). σ/α is the VE-equivalent level,
    /// the same for every SDE and schedule.
    pub interval: Option<(f64, f64)>,
    /// φ ∈ [0, 1]: the guided output rescaled per image to the conditional output's standard deviation,
    /// blended as φ·rescaled + (1 − φ)·guided (Lin et al. 2024, §3.4), against over-exposure at large w.
    pub rescale: f64,
}

impl Guidance {
    /// Guidance with scale w and no interval or rescaling.
    pub fn scale(w: f64) -> Guidance {
        Guidance {
            scale: w,
            interval: None,
            rescale: 0.0,
        }
    }

    /// The scale in effect at `level`.
    fn scale_at(&self, level: Level) -> f64 {
        match self.interval {
            Some((lo, hi)) if !(lo..=hi).contains(&(level.sigma / level.alpha)) => 1.0,
            _ => self.scale,
        }
    }
}

impl Default for Guidance {
    fn default() -> Guidance {
        Guidance::scale(1.0)
    }
}

/// A trained network as a denoiser at any level: the network sees x as its [`Precond`] says and is asked at the
/// level's time input; its output converts to (x̂₀, ε̂) by the same preconditioning. `clip` clamps x̂₀ to a range, the data's [−1, 1]
/// for pixel runs (diffusers' `clip_sample`), and recomputes ε̂ to match. Class- and text-conditioned models are
/// guided by `guidance`, the conditional inputs and their nulls (the null class, the null context) in one
/// batched call. Outputs combine linearly, so
/// plain guidance is the same rule on ε̂ for every parameterisation; rescaling (a per-image std ratio) acts on
/// the network's output, as diffusers' `guidance_rescale` does, and so depends on what it predicts.
pub struct NetDenoiser<'a> {
    pub net: &'a Net,
    pub cond: &'a LevelInput,
    pub precond: Precond,
    /// x̂₀ clamped to [−r, r] (and ε̂ recomputed to match), if set.
    pub clip: Option<f64>,
    pub guidance: Guidance,
}

impl NetDenoiser<'_> {
    fn output(&self, x: Tensor<4>, t: Tensor<1>, level: Level, cond: &Cond) -> Tensor<4> {
        let device = x.device();
        let b = x.dims()[0];
        let labels = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [b]), &device);
        let classes = cond.classes.as_ref().zip(self.net.num_classes());
        let context = self.net.takes_context().then(|| {
            cond.context
                .as_ref()
                .expect("a text-conditioned network is sampled with a context (callers check)")
        });
        if classes.is_none() && context.is_none() {
            return self.net.forward(x, t, None);
        }
        // The conditional inputs (null = false) or their nulls: the null class, the null context. Each side is
        // built only when the guidance scale asks for it.
        let side = |null: bool| {
            let class = classes.map(|(c, k)| {
                labels(if null {
                    vec![k as i64; b]
                } else {
                    c.iter().map(|&c| c as i64).collect()
                })
            });
            (class, context.map(|c| c.tensor(null, b, &device)))
        };
        let w = self.guidance.scale_at(level);
        assert!(
            w == 1.0 || classes.is_none() || self.net.has_null_class(),
            "guidance other than 1 needs the null class (callers check)"
        );
        if w == 1.0 || w == 0.0 {
            let (class, ctx) = side(w == 0.0);
            return self.net.forward_with(x, t, class, ctx);
        }
        // Both sides in one batched call: the conditional inputs first, their nulls after.
        let ((cls, ctx), (null_cls, null_ctx)) = (side(false), side(true));
        let out = self.net.forward_with(
            Tensor::cat(vec![x.clone(), x], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            cls.zip(null_cls).map(|(c, u)| Tensor::cat(vec![c, u], 0)),
            ctx.zip(null_ctx).map(|(c, u)| Tensor::cat(vec![c, u], 0)),
        );
        let mut halves = out.chunk(2, 0).into_iter();
        let (c, u) = (halves.next().expect("two halves"), halves.next().expect("two halves"));
        let guided = u.clone() + (c.clone() - u).mul_scalar(w);
        let phi = self.guidance.rescale;
        if phi == 0.0 {
            return guided;
        }
        let std = |t: &Tensor<4>| t.clone().reshape([b as i32, -1]).var(1).sqrt().reshape([b, 1, 1, 1]);
        let ratio = std(&c) / std(&guided).clamp_min(1e-12);
        guided.clone() * (ratio.mul_scalar(phi).add_scalar(1.0 - phi))
    }
}

impl Denoiser for NetDenoiser<'_> {
    fn denoise(&self, x: Tensor<4>, level: Level, cond: &Cond) -> Denoised {
        let b = x.dims()[0];
        let c = self.precond.coefs(level);
        // Variance-preserving levels give the network x itself (bit for bit, as before preconditioning).
        let input = if (c.input - 1.0).abs() > 1e-12 {
            x.clone().mul_scalar(c.input)
        } else {
            x.clone()
        };
        let t = Tensor::<1>::full([b], self.cond.time_input(level) as f32, &x.device());
        let out = self.output(input, t, level, cond);
        let affine =
            |a: diffuse_math::prediction::Affine| x.clone().mul_scalar(a.x_coef) + out.clone().mul_scalar(a.out_coef);
        let d = Denoised {
            x0: affine(c.x0),
            eps: affine(c.eps),
        };
        match self.clip {
            Some(r) => d.clipped(x, level, r),
            None => d,
        }
    }
}

/// The exact denoiser of a data set that is one known image per batch item: returns that x₀ and the ε that
/// explains x. Used to test samplers against a known answer.
pub struct OracleX0 {
    pub x0: Tensor<4>,
}

impl Denoiser for OracleX0 {
    fn denoise(&self, x: Tensor<4>, level: Level, _cond: &Cond) -> Denoised {
        let eps = (x - self.x0.clone().mul_scalar(level.alpha)).mul_scalar(1.0 / level.sigma);
        Denoised {
            x0: self.x0.clone(),
            eps,
        }
    }
}

/// The exact denoiser for data drawn from an isotropic mixture Σ w_k N(μ_k, s² I) of points in d dimensions,
/// the channel dimension of x (d = 1 with values along the other dimensions: independent 1-D draws):
/// E[x₀ | x] = Σ r_k (μ_k + α s²/v (x − α μ_k)), v = α² s² + σ², responsibilities r_k ∝ w_k N(x; α μ_k, v I).
/// A single component is the Gaussian case.
pub struct ExactDenoiser {
    pub means: Vec<Vec<f64>>,
    pub weights: Vec<f64>,
    pub std: f64,
}

impl ExactDenoiser {
    /// The denoiser of a 1-D target.
    pub fn new(target: &Target) -> ExactDenoiser {
        ExactDenoiser {
            means: target.means.iter().map(|&m| vec![m]).collect(),
            weights: target.weights.clone(),
            std: target.std,
        }
    }
}

impl Denoiser for ExactDenoiser {
    fn denoise(&self, x: Tensor<4>, level: Level, _cond: &Cond) -> Denoised {
        let (a, s) = (level.alpha, level.sigma);
        let [b, d, h, w] = x.dims();
        let v = a * a * self.std * self.std + s * s;
        let shrink = a * self.std * self.std / v;
        let mu = |m: &[f64]| {
            assert_eq!(m.len(), d, "mixture means have {} coordinates, the data {d}", m.len());
            Tensor::<4>::from_data(
                TensorData::new(m.iter().map(|&v| v as f32).collect::<Vec<_>>(), [1, d, 1, 1]),
                &x.device(),
            )
        };
        // Per component: x̂₀ = μ + shrink·(x − αμ) and ε̂ = (σ/v)(x − αμ). ε̂ is formed directly, not as
        // (x − αx̂₀)/σ, which in f32 cancels to rounding noise when σ is tiny (sub-VP near t = 0).
        let diffs: Vec<Tensor<4>> = self.means.iter().map(|m| x.clone() - mu(m).mul_scalar(a)).collect();
        let x0_of = |k: usize| x.clone().mul_scalar(shrink) + mu(&self.means[k]).mul_scalar(1.0 - shrink * a);
        let eps_of = |k: usize| diffs[k].clone().mul_scalar(s / v);
        if self.means.len() == 1 {
            return Denoised {
                x0: x0_of(0),
                eps: eps_of(0),
            };
        }
        let logits: Vec<Tensor<4>> = diffs
            .iter()
            .zip(&self.weights)
            .map(|(diff, &wk)| {
                diff.clone()
                    .square()
                    .sum_dim(1)
                    .mul_scalar(-0.5 / v)
                    .add_scalar(wk.ln())
            })
            .collect();
        let r = softmax(Tensor::stack::<5>(logits, 0), 0); // [K, b, 1, h, w]
        let mix = |f: &dyn Fn(usize) -> Tensor<4>| {
            let comps = Tensor::stack::<5>((0..self.means.len()).map(f).collect(), 0);
            (r.clone() * comps).sum_dim(0).reshape([b, d, h, w])
        };
        Denoised {
            x0: mix(&x0_of),
            eps: mix(&eps_of),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn conditioning_maps_levels_to_time_inputs() {
        let s = NoiseSchedule::with_defaults(diffuse_math::BetaSchedule::Linear, 1000).unwrap();
        let d = LevelInput::Discrete(s.clone());
        assert!((d.time_input(Level::vp(s.alphas_cumprod[321])) - 321.0).abs() < 1e-6);
        let mut r = crate::rng::stream(0, 0);
        let (level, t) = d.training_level(&mut r);
        assert_eq!(level, Level::vp(s.alphas_cumprod[t as usize]));
        let edm = LevelInput::Edm {
            p_mean: -1.2,
            p_std: 1.2,
        };
        let flow = LevelInput::Flow(FlowTimes::LogitNormal { mean: 0.0, std: 1.0 });
        for c in [
            LevelInput::Continuous(Sde::vp()),
            LevelInput::Continuous(Sde::subvp()),
            LevelInput::Continuous(Sde::ve()),
            edm.clone(),
            flow.clone(),
        ] {
            for _ in 0..20 {
                let (level, input) = c.training_level(&mut r);
                // The same level asked back gives the same input, whatever its scaling.
                let k = 2.5;
                let scaled = Level {
                    alpha: level.alpha * k,
                    sigma: level.sigma * k,
                };
                assert!(
                    (c.time_input(scaled) - input).abs() < 1e-6 * (1.0 + input.abs()),
                    "{c:?}"
                );
            }
        }
        for sde in [Sde::vp(), Sde::subvp(), Sde::ve()] {
            let c = LevelInput::Continuous(sde);
            assert!((c.time_input(sde.marginal(0.4)) - 999.0 * 0.4).abs() < 1e-6, "{sde}");
        }
        // EDM's ln σ and flow's logit t have the asked mean and spread.
        let mut moments = |c: &LevelInput, f: &dyn Fn(Level) -> f64| {
            let v: Vec<f64> = (0..20_000).map(|_| f(c.training_level(&mut r).0)).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (
                m,
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt(),
            )
        };
        let (m, sd) = moments(&edm, &|l| (l.sigma / l.alpha).ln());
        assert!((m + 1.2).abs() < 0.03 && (sd - 1.2).abs() < 0.03, "{m} {sd}");
        let (m, sd) = moments(&flow, &|l| (l.sigma / l.alpha).ln());
        assert!(m.abs() < 0.03 && (sd - 1.0).abs() < 0.03, "{m} {sd}");
    }

    #[test]
    fn exact_denoiser_matches_the_scalar_posterior_mean() {
        let device = crate::device::device();
        let target = Target::mixture(vec![-1.0, 0.5, 2.0], vec![0.2, 0.5, 0.3], 0.3).unwrap();
        let xs = [-2.0f32, -0.3, 0.0, 0.7, 1.9, 3.5];
        let x = Tensor::<4>::from_data(TensorData::new(xs.to_vec(), [1, 1, 1, 6]), &device);
        let level = Level { alpha: 0.8, sigma: 0.6 };
        let den = ExactDenoiser::new(&target);
        let got: Vec<f32> = den
            .denoise(x, level, &Cond::default())
            .x0
            .into_data()
            .try_into_vec()
            .unwrap();
        for (g, &xv) in got.iter().zip(&xs) {
            let want = target.posterior_mean(xv as f64, 0.8, 0.6);
            assert!((*g as f64 - want).abs() < 1e-5, "{xv}: {g} vs {want}");
        }
    }

    /// A small UNet with every weight perturbed (its zero-initialised output layers too, so that conditioning
    /// shows), asked for ε̂ at train step 500 of the linear schedule on a fixed batch of two.
    struct Guided {
        net: crate::nn::Net,
        schedule: NoiseSchedule,
        x: Tensor<4>,
    }

    impl Guided {
        fn base() -> crate::nn::UNetConfig {
            crate::nn::UNetConfig {
                base_channels: 8,
                heads: 2,
                ..crate::nn::UNetConfig::for_image(1, 8, 8)
            }
        }

        fn new(cfg: crate::nn::UNetConfig) -> Guided {
            let device = crate::device::device();
            let net = crate::device::init_seeded(0, &device, |d| crate::nn::NetConfig::Unet(cfg).init(d).unwrap());
            let normals = crate::rng::normals(&mut crate::rng::stream(0, 0), 128);
            Guided {
                net: net.map(&mut Perturb),
                schedule: NoiseSchedule::with_defaults(diffuse_math::BetaSchedule::Linear, 1000).unwrap(),
                x: Tensor::from_data(TensorData::new(normals, [2, 1, 8, 8]), &device),
            }
        }

        fn level(&self) -> Level {
            Level::vp(self.schedule.alphas_cumprod[500])
        }

        fn eps(&self, guidance: Guidance, cond: &Cond) -> Vec<f32> {
            let input = LevelInput::Discrete(self.schedule.clone());
            let den = NetDenoiser {
                net: &self.net,
                cond: &input,
                precond: Precond::Vp(diffuse_math::Prediction::Eps),
                clip: None,
                guidance,
            };
            den.denoise(self.x.clone(), self.level(), cond)
                .eps
                .into_data()
                .try_into_vec()
                .unwrap()
        }
    }

    #[test]
    fn text_guidance_steers_from_the_null_context_in_one_batched_call() {
        let h = Guided::new(crate::nn::UNetConfig {
            context_dim: Some(6),
            ..Guided::base()
        });
        assert!(h.net.takes_context());
        let normals = |stream, n| crate::rng::normals(&mut crate::rng::stream(1, stream), n);
        // Two items' texts of 3 vectors each, and two null sequences (an empty prompt, a negative one).
        let text = |null: Vec<f32>| Cond {
            classes: None,
            context: Some(Context {
                len: 3,
                dim: 6,
                items: normals(1, 36),
                null,
            }),
        };
        let (empty, negative) = (text(normals(2, 18)), text(normals(3, 18)));
        let eps = |w: f64, cond: &Cond| h.eps(Guidance::scale(w), cond);
        let (cond1, uncond) = (eps(1.0, &empty), eps(0.0, &empty));
        assert!(
            cond1.iter().zip(&uncond).any(|(a, b)| (a - b).abs() > 1e-4),
            "the text must matter"
        );
        // w = 0 is the null context for every item.
        let null_only = Cond {
            classes: None,
            context: empty.context.clone().map(|c| Context {
                items: c.null.repeat(2),
                ..c
            }),
        };
        assert_eq!(eps(1.0, &null_only), uncond);
        for ((g, u), c) in eps(3.0, &empty).iter().zip(&uncond).zip(&cond1) {
            let want = u + 3.0 * (c - u);
            assert!(
                (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                "batched {g} vs separate {want}"
            );
        }
        // A negative prompt replaces the null: guided outputs move, the plain conditional one does not.
        assert_eq!(eps(1.0, &negative), cond1);
        assert_ne!(eps(3.0, &negative), eps(3.0, &empty));
        // Slicing a draw's conditioning keeps each item's own sequence.
        let second = empty.slice(1..2);
        assert_eq!(second.context.as_ref().unwrap().items, normals(1, 36)[18..].to_vec());
    }

    #[test]
    fn guidance_is_one_batched_call_with_the_identities_of_w0_and_w1() {
        let h = Guided::new(crate::nn::UNetConfig {
            num_classes: Some(3),
            ..Guided::base()
        });
        let level = h.level();
        let eps = |w: f64, cond: &Cond| h.eps(Guidance::scale(w), cond);
        let labelled = Cond::of_classes(vec![0, 2]);
        let (uncond, cond1) = (eps(1.0, &Cond::default()), eps(1.0, &labelled));
        assert!(
            uncond.iter().zip(&cond1).any(|(a, b)| (a - b).abs() > 1e-4),
            "the class must matter"
        );
        assert_eq!(eps(0.0, &labelled), uncond, "w = 0 is the unconditional model");
        let guided = eps(3.0, &labelled);
        for ((g, u), c) in guided.iter().zip(&uncond).zip(&cond1) {
            let want = u + 3.0 * (c - u);
            assert!(
                (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                "batched {g} vs separate {want}"
            );
        }
        // An interval that excludes this level (σ/α ≈ 1.0 here) leaves the plain conditional output.
        let with = |g: Guidance| h.eps(g, &labelled);
        let ratio = level.sigma / level.alpha;
        let interval = |lo, hi| Guidance {
            interval: Some((lo, hi)),
            ..Guidance::scale(3.0)
        };
        assert_eq!(with(interval(ratio * 1.1, ratio * 10.0)), cond1);
        assert_eq!(with(interval(ratio * 0.9, ratio * 1.1)), guided);
        // Full rescaling gives each image the conditional output's standard deviation, the direction of
        // the guided one; half of it lies halfway.
        let std = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|a| (a - m).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
        };
        let rescaled = |phi| {
            with(Guidance {
                rescale: phi,
                ..Guidance::scale(3.0)
            })
        };
        let (full, half) = (rescaled(1.0), rescaled(0.5));
        for i in 0..2 {
            let r = i * 64..(i + 1) * 64;
            let (f, g, c) = (&full[r.clone()], &guided[r.clone()], &cond1[r.clone()]);
            assert!((std(f) - std(c)).abs() < 1e-4 * std(c), "{} vs {}", std(f), std(c));
            assert!((std(g) - std(c)).abs() > 0.05 * std(c), "rescaling has work to do here");
            let k = std(c) / std(g);
            for ((h, f), g) in half[r].iter().zip(f).zip(g) {
                assert!((f - g * k).abs() < 1e-4 && (h - (f + g) / 2.0).abs() < 1e-4);
            }
        }
    }

    /// Adds small deterministic values to every parameter.
    struct Perturb;
    impl burn::module::ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, p: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
            p.map(|t| {
                let n = t.shape().num_elements();
                let noise: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
                    .collect();
                let shape = t.shape();
                let dev = t.device();
                t + Tensor::<1>::from_floats(noise.as_slice(), &dev).reshape(shape)
            })
        }
    }

    #[test]
    fn point_mixture_denoiser_weighs_components_by_distance_in_all_coordinates() {
        // Two 2-D components that share their x-coordinate: only y can tell them apart.
        let device = crate::device::device();
        let den = ExactDenoiser {
            means: vec![vec![0.0, -1.0], vec![0.0, 1.0]],
            weights: vec![0.5, 0.5],
            std: 0.1,
        };
        let x = Tensor::<4>::from_data(TensorData::new(vec![0.3f32, 0.9], [1, 2, 1, 1]), &device);
        let x0: Vec<f32> = den
            .denoise(x, Level { alpha: 1.0, sigma: 0.1 }, &Cond::default())
            .x0
            .into_data()
            .try_into_vec()
            .unwrap();
        // Nearly all weight on the upper component: x̂₀ ≈ μ + ½(x − μ) (shrink = 0.01/0.02).
        assert!((x0[0] - 0.15).abs() < 1e-3 && (x0[1] - 0.95).abs() < 1e-3, "{x0:?}");
    }
}
