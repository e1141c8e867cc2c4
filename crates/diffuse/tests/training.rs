//! Training end to end on tiny models: overfitting, exact resume, determinism, non-finite loss.

use diffuse::data::{DataSpec, Dataset, Split};
use diffuse::denoise::{Cond, NetDenoiser};
use diffuse::nn::{NetConfig, UNetConfig};
use diffuse::objective::Objective;
use diffuse::run::{self, FORMAT, RunConfig, ScheduleConfig, TrainConfig, Weights};
use diffuse::sample::{self, Method, Plan, Process};
use diffuse::train::{self, Options};
use diffuse_math::BetaSchedule;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffuse-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny_config(steps: usize, prediction: &str) -> RunConfig {
    RunConfig {
        format: FORMAT,
        data: DataSpec::Digits,
        channels: 1,
        height: 8,
        width: 8,
        class_names: vec![],
        prediction: prediction.parse().unwrap(),
        schedule: ScheduleConfig::new(BetaSchedule::Linear, 1000, None),
        sde: None,
        net: NetConfig::Unet(UNetConfig {
            base_channels: 16,
            heads: 2,
            ..UNetConfig::for_image(1, 8, 8)
        }),
        train: TrainConfig {
            steps,
            batch_size: 16,
            lr: 2e-3,
            warmup_steps: 10,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ema_decay: 0.9,
            seed: 3,
            checkpoint_every: 10,
            sample_every: 0,
            label_dropout: 0.0,
            min_snr_gamma: None,
        },
        objective: Objective::Diffusion,
        sampler: None,
        latent: None,
        clip_sample: None,
        text: None,
    }
}

/// `n` deterministic DDIM samples (trailing spacing) of the raw weights of the run in `out`.
fn ddim_samples(out: &std::path::Path, steps: usize, n: usize, seed: u64, clip: bool) -> Vec<f32> {
    ddim_samples_of(out, steps, n, seed, clip, &Cond::default())
}

/// The same, conditioned on `cond`.
fn ddim_samples_of(out: &std::path::Path, steps: usize, n: usize, seed: u64, clip: bool, cond: &Cond) -> Vec<f32> {
    let device = diffuse::device::device();
    let r = run::load(out, Weights::Raw, &device).unwrap();
    let den = NetDenoiser {
        net: &r.net,
        cond: &r.cond,
        precond: r.config.objective.precond(r.config.prediction),
        clip: clip.then_some(1.0),
        guidance: Default::default(),
    };
    let process = Process::Discrete(r.schedule.clone());
    let plan = Plan::new(Method::Ddim { eta: 0.0 }, process, steps).unwrap();
    let shape = [r.config.channels, r.config.height, r.config.width];
    sample::draw(&den, &plan, seed, n, shape, n, None, cond, &[], &device, &mut |_| {}).images
}

/// `n` unconditional images of seed `seed` from a loaded run with its own denoiser, by `plan`, in one batch.
fn draw(r: &run::LoadedRun, plan: &Plan, seed: u64, n: usize) -> Vec<f32> {
    let device = diffuse::device::device();
    let shape = [r.config.channels, r.config.height, r.config.width];
    let den = r.denoiser(Default::default());
    sample::draw(
        &den,
        plan,
        seed,
        n,
        shape,
        n,
        None,
        &Cond::default(),
        &[],
        &device,
        &mut |_| {},
    )
    .images
}

fn quiet() -> Options {
    Options::default()
}

#[test]
fn tiny_unet_overfits_one_digit_and_samples_it() {
    let mut cfg = tiny_config(400, "eps");
    cfg.train.checkpoint_every = 0;
    let out = tmp("overfit");
    overfits_one_digit(&cfg, &out, &|| ddim_samples(&out, 25, 4, 9, true));
}

/// EDM, flow matching and v-prediction on a zero-terminal-SNR schedule, through the same loop, run format and
/// denoiser, each sampled by its run's default sampler (Heun on EDM's Karras grid; Heun in flow time; DDIM from
/// pure noise).
#[test]
fn edm_flow_and_zero_terminal_snr_overfit_one_digit_and_their_default_samplers_draw_it() {
    for (name, sampler) in [("edm", "heun"), ("flow", "flow-heun"), ("ztsnr", "ddim")] {
        let mut cfg = match name {
            "ztsnr" => {
                let mut c = tiny_config(400, "v");
                c.schedule.zero_terminal_snr = true;
                c
            }
            _ => tiny_config(400, "eps").with_objective(Objective::from_name(name).unwrap()),
        };
        cfg.train.checkpoint_every = 0;
        let out = tmp(&format!("overfit-{name}"));
        let samples = || {
            let device = diffuse::device::device();
            let r = run::load(&out, Weights::Raw, &device).unwrap();
            let plan = r.default_plan().unwrap();
            assert!(plan.describe().starts_with(sampler), "{}", plan.describe());
            draw(&r, &plan, 9, 4)
        };
        overfits_one_digit(&cfg, &out, &samples);
    }
}

/// Trains `cfg` on the first training digit alone: the loss falls, and every sample `draw` makes is that digit.
fn overfits_one_digit(cfg: &RunConfig, out: &std::path::Path, draw: &dyn Fn() -> Vec<f32>) {
    let data = Dataset::load("digits", Split::Train).unwrap().subset(&[0]);
    let s = train::train(cfg, &data, out, &quiet()).unwrap();
    let rows = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let losses: Vec<f64> = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let early = losses[..20].iter().sum::<f64>() / 20.0;
    assert!(s.final_loss < early * 0.25, "loss {early} -> {}", s.final_loss);

    // With a single training image, every sample must come out as that image: close to it, and nearer to it
    // than to any other training digit.
    let images = draw();
    let all = Dataset::load("digits", Split::Train).unwrap();
    for img in images.chunks(64) {
        let to_target = mse(img, data.image(0));
        // Nearest neighbour among the 1,500 training digits: the one it was trained on (which is all.image(0)).
        let nearest = (0..all.len()).min_by(|&a, &b| mse(img, all.image(a)).total_cmp(&mse(img, all.image(b))));
        assert!(
            to_target < 0.06 && nearest == Some(0),
            "{:?}: sample is not the training image: mse {to_target}, nearest digit {nearest:?}",
            cfg.objective
        );
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn min_snr_weighting_at_a_huge_gamma_is_the_plain_loss_and_at_five_is_not() {
    let data = Dataset::load("digits", Split::Train).unwrap();
    let losses = |gamma: Option<f64>| {
        let mut cfg = tiny_config(3, "eps");
        cfg.train.min_snr_gamma = gamma;
        let out = tmp(&format!("min-snr-{gamma:?}"));
        train::train(&cfg, &data, &out, &quiet()).unwrap();
        let rows = std::fs::read_to_string(out.join("loss.csv")).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        rows
    };
    // For ε-prediction the weight is min(SNR, γ)/SNR: exactly 1 at every level when γ is above every SNR.
    assert_eq!(losses(None), losses(Some(1e12)));
    assert_ne!(losses(None), losses(Some(5.0)));
}

#[test]
fn a_time_budget_ends_the_run_early_as_a_finished_run() {
    let data = Dataset::load("digits", Split::Train).unwrap();
    let out = tmp("budget");
    let cfg = tiny_config(1_000_000, "eps");
    let s = train::train(
        &cfg,
        &data,
        &out,
        &Options {
            time_budget: Some(1.0),
            ..quiet()
        },
    )
    .unwrap();
    assert!(s.out_of_time && s.steps > 0 && s.steps < 1_000_000, "{s:?}");
    // The run reads as finished at the steps it made, with its checkpoint and samples.
    let r = run::load(&out, Weights::Ema, &diffuse::device::device()).unwrap();
    assert_eq!((r.step, r.config.train.steps), (s.steps, s.steps));
    assert!(out.join("samples.png").exists());
    // Resumed with more time, it goes on from there.
    let more = RunConfig {
        train: TrainConfig {
            steps: 1_000_000,
            ..r.config.train.clone()
        },
        ..r.config.clone()
    };
    let s2 = train::train(
        &more,
        &data,
        &out,
        &Options {
            resume: true,
            time_budget: Some(0.5),
            ..quiet()
        },
    )
    .unwrap();
    assert!(s2.resumed_from == Some(s.steps) && s2.steps > s.steps, "{s2:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Mean squared difference of two images.
fn mse(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32
}

#[test]
fn conditional_tiny_unet_overfits_one_digit_per_class_and_draws_each_on_request() {
    let all = Dataset::load("digits", Split::Train).unwrap();
    let labels = all.labels.clone().unwrap();
    // The first training digit of classes 0, 1 and 2.
    let picks: Vec<usize> = (0..3u32)
        .map(|c| labels.iter().position(|&l| l == c).unwrap())
        .collect();
    let data = all.subset(&picks);
    let out = tmp("overfit-cond");
    let mut cfg = tiny_config(800, "eps");
    cfg.class_names = all.class_names.clone();
    if let NetConfig::Unet(u) = &mut cfg.net {
        u.num_classes = Some(all.class_names.len());
    }
    cfg.train.checkpoint_every = 0;
    train::train(&cfg, &data, &out, &quiet()).unwrap();
    // Asked for class c, every sample is the one digit of class c: nearer to it than to the other two.
    for (c, &pick) in picks.iter().enumerate() {
        let cond = Cond::of_classes(vec![c as u32; 4]);
        let images = ddim_samples_of(&out, 25, 4, 5, true, &cond);
        for img in images.chunks(64) {
            let d: Vec<f32> = picks.iter().map(|&p| mse(img, all.image(p))).collect();
            let nearest = (0..3).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
            assert!(
                nearest == c && d[c] < 0.1,
                "class {c} (digit #{pick}) drew a sample at distances {d:?}"
            );
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn resumed_run_repeats_the_uninterrupted_one() {
    let data = Dataset::load("digits", Split::Train).unwrap();
    let cfg = tiny_config(20, "v");
    let whole = tmp("whole");
    train::train(&cfg, &data, &whole, &quiet()).unwrap();
    let parts = tmp("parts");
    train::train(
        &cfg,
        &data,
        &parts,
        &Options {
            stop_after: Some(10),
            ..quiet()
        },
    )
    .unwrap();
    // A run killed after step 13 has its last checkpoint at step 10; it resumes from there.
    train::train(
        &cfg,
        &data,
        &parts,
        &Options {
            resume: true,
            ..quiet()
        },
    )
    .unwrap();
    let read = |d: &PathBuf, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(
        String::from_utf8(read(&parts, "loss.csv")).unwrap(),
        String::from_utf8(read(&whole, "loss.csv")).unwrap()
    );
    // Gradient checkpointing recomputes activations; it changes memory, not the losses.
    let recomputed = tmp("recomputed");
    let opts = Options {
        gradient_checkpointing: true,
        ..quiet()
    };
    train::train(&cfg, &data, &recomputed, &opts).unwrap();
    assert_eq!(read(&recomputed, "loss.csv"), read(&whole, "loss.csv"));
    // Weights and EMA weights bit for bit (parameter ids are random per process, so they are not compared).
    let weights = |d: &PathBuf| {
        let c = diffuse::safetensors_io::read(&d.join("checkpoint.safetensors")).unwrap();
        c.groups
            .into_iter()
            .map(|(g, ts)| (g, ts.into_iter().map(|(k, t)| (k, t.shape, t.data)).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    assert!(
        weights(&parts) == weights(&whole),
        "resumed weights differ from the uninterrupted run's"
    );
    std::fs::remove_dir_all(&whole).unwrap();
    std::fs::remove_dir_all(&parts).unwrap();
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let data = Dataset::load("digits", Split::Train).unwrap();
    let mut cfg = tiny_config(5, "eps");
    let out = tmp("nan");
    train::train(&cfg, &data, &out, &quiet()).unwrap();
    let good = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    // Continue on data that has gone bad: step 6 is the first to see it.
    let mut poisoned = data.clone();
    poisoned.images.iter_mut().step_by(7).for_each(|v| *v = f32::NAN);
    cfg.train.steps = 10;
    let e = train::train(
        &cfg,
        &poisoned,
        &out,
        &Options {
            resume: true,
            ..quiet()
        },
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("non-finite loss (NaN) at step 6"), "{msg}");
    assert_eq!(std::fs::read(out.join("checkpoint.safetensors")).unwrap(), good);
    assert_eq!(
        run::load(&out, Weights::Raw, &diffuse::device::device()).unwrap().step,
        5
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn mlp_learns_points_on_a_circle() {
    let data = Dataset::load("points:circle", Split::Train).unwrap();
    let mut cfg = tiny_config(2000, "eps");
    cfg.data = DataSpec::Points("circle".into());
    (cfg.channels, cfg.height, cfg.width) = (2, 1, 1);
    cfg.net = NetConfig::Mlp(diffuse::nn::MlpConfig {
        hidden: 128,
        layers: 3,
        ..diffuse::nn::MlpConfig::for_points(2)
    });
    cfg.train.batch_size = 128;
    cfg.train.lr = 1e-3;
    cfg.train.checkpoint_every = 0;
    let out = tmp("circle");
    train::train(&cfg, &data, &out, &quiet()).unwrap();
    let pts = ddim_samples(&out, 30, 512, 1, false);
    let mut radii: Vec<f32> = pts.chunks(2).map(|p| p[0].hypot(p[1])).collect();
    radii.sort_by(f32::total_cmp);
    // Noise starts as N(0, I) in 2-D, whose median radius is 1.18 and 10% quantile 0.46: the model must pull
    // the points onto the unit circle.
    let (q10, q50, q90) = (radii[51], radii[256], radii[461]);
    assert!(
        (q50 - 1.0).abs() < 0.1 && q10 > 0.75 && q90 < 1.25,
        "radius quantiles {q10} {q50} {q90}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_distilled_student_in_two_steps_lands_nearer_its_teachers_eight_than_the_teacher_in_two() {
    let data = Dataset::load("digits", Split::Train).unwrap();
    let teacher = tmp("distill-teacher");
    let mut cfg = tiny_config(200, "v");
    cfg.train.checkpoint_every = 0;
    train::train(&cfg, &data, &teacher, &quiet()).unwrap();
    let student = tmp("distill-student");
    let s = diffuse::distill::distill(
        &teacher,
        &data,
        &student,
        &diffuse::distill::Settings {
            from_steps: 8,
            to_steps: 2,
            steps_per_round: 150,
            batch_size: 32,
            lr: 1e-4,
            seed: 0,
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(s.rounds.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 2]);
    // The same starting noise through the teacher's 8 and 2 DDIM steps, and the student's 2 (its default).
    let device = diffuse::device::device();
    let samples = |dir: &std::path::Path, steps: Option<usize>| {
        let r = run::load(dir, Weights::Ema, &device).unwrap();
        let plan = match steps {
            Some(k) => {
                let spec = diffuse::sample::Spec {
                    steps: k,
                    thin: 8 / k,
                    ..r.config.default_sampler().unwrap()
                };
                spec.plan(&r.schedule).unwrap()
            }
            None => r.default_plan().unwrap(),
        };
        draw(&r, &plan, 4, 32)
    };
    let (t8, t2, s2) = (
        samples(&teacher, Some(8)),
        samples(&teacher, Some(2)),
        samples(&student, None),
    );
    let (student_gap, teacher_gap) = (mse(&s2, &t8), mse(&t2, &t8));
    assert!(
        student_gap < 0.7 * teacher_gap,
        "student {student_gap} vs teacher's own two steps {teacher_gap}"
    );
    std::fs::remove_dir_all(&teacher).unwrap();
    std::fs::remove_dir_all(&student).unwrap();
}
