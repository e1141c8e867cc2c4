use super::*;
use crate::kernels::conv::{self, tests::direct};

fn dot<const N: usize>(a: [f32; N], b: [f32; N]) -> f64 {
    a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// F(m, 3) in one dimension: m outputs of the correlation of a inputs with a 3-tap kernel from a products;
/// and the adjoints: ⟨G g, u⟩ = ⟨g, Gᵀ u⟩ and ⟨Aᵀ m, e⟩ = ⟨m, A e⟩.
fn check_1d<const M: usize, const A: usize, W: Variant<M, A>>(tolerance: f64) {
    let mut rng = crate::rng::stream(5, M as u64);
    for _ in 0..20 {
        let v = crate::rng::normals(&mut rng, 2 * A + M + 3);
        let d: [f32; A] = build(|i| v[i]);
        let g: [f32; 3] = build(|i| v[A + i]);
        let (u, w): ([f32; A], [f32; A]) = (one_d(&W::MATS.g, false, g), one_d(&W::MATS.bt, false, d));
        let y: [f32; M] = one_d(&W::MATS.at, false, build::<f32, A>(|i| u[i] * w[i]));
        for (o, &y) in y.iter().enumerate() {
            let want: f64 = (0..3).map(|k| g[k] as f64 * d[o + k] as f64).sum();
            assert!(
                (y as f64 - want).abs() < tolerance,
                "F({M}, 3) output {o}: {y} vs {want}"
            );
        }
        let m: [f32; A] = build(|i| v[A + 3 + i]);
        let e: [f32; M] = build(|i| v[2 * A + 3 + i]);
        let (gg, gtm): ([f32; A], [f32; 3]) = (one_d(&W::MATS.g, false, g), one_d(&W::MATS.g, true, m));
        assert!((dot(gg, m) - dot(g, gtm)).abs() < tolerance);
        let (am, ae): ([f32; M], [f32; A]) = (one_d(&W::MATS.at, false, m), one_d(&W::MATS.at, true, e));
        assert!((dot(am, e) - dot(m, ae)).abs() < tolerance);
    }
}

#[test]
fn one_dimensional_transforms_compute_f_m_3_and_their_adjoints() {
    check_1d::<2, 4, F2>(1e-5);
    check_1d::<4, 6, F4>(1e-4);
}

/// The largest error against the f64 reference, over the largest reference magnitude.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
        / scale
}

fn shape(batch: usize, cin: usize, (h, w): (usize, usize), cout: usize) -> ConvShape {
    ConvShape {
        batch,
        cin,
        height: h,
        width: w,
        cout,
        kh: 3,
        kw: 3,
        stride: 1,
        pad_h: 1,
        pad_w: 1,
    }
}

/// Odd and even sizes, images smaller than a tile, groups cut mid-batch (640 entries in tests), images
/// crossing the product's panels of 32 tiles, a full register of tile columns and a tail, and a batch across
/// the partial sums.
const SHAPES: [(usize, usize, (usize, usize), usize); 13] = [
    (3, 16, (7, 8), 17),
    (2, 24, (8, 8), 16),
    (17, 16, (3, 5), 16),
    (9, 16, (5, 5), 16),
    (5, 16, (9, 9), 16),
    (2, 16, (1, 1), 16),
    (3, 16, (1, 2), 20),
    (1, 33, (11, 6), 18),
    (2, 16, (5, 70), 16),
    (1, 16, (32, 32), 16),
    (0, 16, (4, 4), 16),
    (2, 16, (6, 11), 16), // a width of 4k + 3
    (20, 16, (9, 9), 16), // several groups summed inside each partial sum
];

/// Forward, input and weight gradients through [`conv::forward`] and [`conv::backward`], which choose
/// Winograd's algorithm for these shapes in f32 (F(2×2) below 32 wide, F(4×4) from there), against direct
/// f64 sums.
#[test]
fn convolutions_match_direct_summation() {
    let mut rng = crate::rng::stream(11, 0);
    for (batch, cin, hw, cout) in [
        (3, 16, (15, 14), 17),
        (5, 16, (14, 14), 16),
        (2, 24, (16, 16), 16),
        (1, 16, (33, 32), 18),
        (2, 16, (14, 70), 16),
    ] {
        if !Lanes::F32.available() {
            return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
        }
        let s = shape(batch, cin, hw, cout);
        assert!(applies(&s, Precision::F32), "{s:?}");
        let x = crate::rng::normals(&mut rng, batch * cin * hw.0 * hw.1);
        let w = crate::rng::normals(&mut rng, cout * cin * 9);
        let b = crate::rng::normals(&mut rng, cout);
        let dy = crate::rng::normals(&mut rng, batch * cout * hw.0 * hw.1);
        let [y, dx, dw, db] = direct(&x, &w, &b, &dy, &s);
        let (gx, gw, gb) = conv::backward(&x, &w, &dy, &s, true, Precision::F32);
        for (name, got, want) in [
            ("y", conv::forward(&x, &w, &b, &s, Precision::F32), y),
            ("dx", gx, dx),
            ("dw", gw, dw),
            ("db", gb, db),
        ] {
            // The largest error over the largest output: f32 roundings of sums whose terms the transforms
            // scale by up to 8 and 1/24.
            let e = relative_error(&got, &want);
            assert!(e <= 2e-5, "{name} of {s:?}: relative error {e:e}");
        }
    }
}

/// Each algorithm on every shape, whichever [`forward`] would choose: F(2×2, 3×3), whose transforms only add,
/// subtract and halve, ten times tighter than F(4×4, 3×3).
fn check_algorithm<const M: usize, const A: usize, W: Variant<M, A>>(bound: f64) {
    let mut rng = crate::rng::stream(13, M as u64);
    for (batch, cin, hw, cout) in SHAPES {
        let s = shape(batch, cin, hw, cout);
        let x = crate::rng::normals(&mut rng, batch * cin * hw.0 * hw.1);
        let w = crate::rng::normals(&mut rng, cout * cin * 9);
        let b = crate::rng::normals(&mut rng, cout);
        let dy = crate::rng::normals(&mut rng, batch * cout * hw.0 * hw.1);
        let [y, _, dw, _] = direct(&x, &w, &b, &dy, &s);
        for (name, got, want) in [
            ("y", forward_with::<M, A, W>(&x, &w, Some(&b), &s), y),
            ("dw", weight_gradient_with::<M, A, W>(&x, &dy, &s), dw),
        ] {
            let e = relative_error(&got, &want);
            assert!(e <= bound, "F({M}×{M}, 3×3) {name} of {s:?}: relative error {e:e}");
        }
    }
}

#[test]
fn both_algorithms_match_direct_summation() {
    if !Lanes::F32.available() {
        return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
    }
    check_algorithm::<2, 4, F2>(2e-6);
    check_algorithm::<4, 6, F4>(2e-5);
}

#[test]
fn small_thin_strided_unpadded_and_bf16_layers_keep_the_direct_path() {
    if !Lanes::F32.available() {
        return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
    }
    assert!(applies(&shape(2, 16, (14, 16), 16), Precision::F32));
    assert!(!applies(&shape(2, 16, (14, 16), 16), Precision::Bf16));
    assert!(!applies(&shape(2, 16, (8, 8), 16), Precision::F32));
    assert!(!applies(&shape(2, 3, (16, 16), 64), Precision::F32));
    assert!(!applies(&shape(2, 64, (16, 16), 3), Precision::F32));
    let strided = ConvShape {
        stride: 2,
        ..shape(2, 16, (16, 16), 16)
    };
    assert!(!applies(&strided, Precision::F32));
    let unpadded = ConvShape {
        pad_h: 0,
        pad_w: 0,
        ..shape(2, 16, (16, 16), 16)
    };
    assert!(!applies(&unpadded, Precision::F32));
    assert!(!applies(&shape(1, 512, (128, 128), 512), Precision::F32));
}

/// Groups in parallel (one thread: every group count reaches it) and the work inside a group in parallel (eight
/// threads, six groups) give the same bits, in both algorithms, forward and backward.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    if !Lanes::F32.available() {
        return eprintln!("skipped: no AVX-512 on this CPU, so no Winograd convolutions either");
    }
    let mut rng = crate::rng::stream(17, 0);
    for hw in [(16, 16), (32, 32)] {
        let s = shape(6, 16, hw, 16);
        assert!(applies(&s, Precision::F32));
        let x = crate::rng::normals(&mut rng, 6 * 16 * hw.0 * hw.1);
        let w = crate::rng::normals(&mut rng, 16 * 16 * 9);
        let dy = crate::rng::normals(&mut rng, 6 * 16 * hw.0 * hw.1);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                (
                    forward(&x, &w, None, &s),
                    conv::backward(&x, &w, &dy, &s, true, Precision::F32),
                )
            })
        };
        let (y1, g1) = run(1);
        let (y8, g8) = run(8);
        assert!(y1 == y8 && g1 == g8, "{s:?}");
    }
}
