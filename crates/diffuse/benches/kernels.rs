//! Throughput of the project's CPU convolution kernel on the reference UNet's layer shapes (and the digits network's):
//! `cargo bench -p diffuse --bench kernels`. Prints the best of 3 runs per shape, forward and backward, in
//! GFLOP/s (one multiply-add counted as two operations; the backward does twice the forward's work).

use diffuse::kernels::bf16;
use diffuse::kernels::conv::{ConvShape, backward, forward};
use diffuse::kernels::matmul::Precision;
use std::time::Instant;

fn main() {
    let precisions = if bf16::available() {
        vec![Precision::F32, Precision::Bf16]
    } else {
        println!("(no AVX512-BF16 on this CPU: f32 only)");
        vec![Precision::F32]
    };
    println!("| batch | layer | size | kernel, stride | precision | forward | backward |");
    println!("|---|---|---|---|---|---|---|");
    for (batch, cin, hw, cout, k, stride) in [
        (32, 64, 32, 64, 3, 1),
        (32, 128, 32, 64, 3, 1),
        (32, 128, 16, 128, 3, 1),
        (32, 256, 16, 128, 3, 1),
        (32, 128, 8, 128, 3, 1),
        (32, 256, 8, 128, 3, 1),
        (32, 256, 8, 128, 1, 1),
        (32, 64, 32, 64, 3, 2),
        (64, 64, 32, 64, 3, 1),
        (64, 128, 8, 128, 3, 1),
        // The default digits network's layers (training batch 64): as many multiply-adds at 4×4 as at 8×8.
        (64, 32, 8, 32, 3, 1),
        (64, 64, 4, 64, 3, 1),
        (64, 64, 8, 64, 3, 1),
        (64, 32, 16, 32, 3, 1),
        (64, 32, 28, 32, 3, 1),
        (64, 64, 14, 64, 3, 1),
        (64, 64, 7, 64, 3, 1),
    ] {
        // `cargo bench -p diffuse --bench kernels -- BATCH [SIZE]` times only the layers of that batch size (and
        // image size).
        let arg = |i| std::env::args().nth(i).and_then(|a| a.parse::<usize>().ok());
        if arg(1).is_some_and(|b| b != batch) || arg(2).is_some_and(|s| s != hw) {
            continue;
        }
        let s = ConvShape {
            batch,
            cin,
            height: hw,
            width: hw,
            cout,
            kh: k,
            kw: k,
            stride,
            pad_h: k / 2,
            pad_w: k / 2,
        };
        let (oh, ow) = s.out_hw();
        let x = vec![0.5f32; batch * cin * hw * hw];
        let w = vec![0.01f32; cout * cin * k * k];
        let bias = vec![0.0f32; cout];
        let dy = vec![0.1f32; batch * cout * oh * ow];
        let flops = 2.0 * (batch * cout * cin * k * k * oh * ow) as f64;
        for &precision in &precisions {
            let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
            for _ in 0..3 {
                let t = Instant::now();
                let y = forward(&x, &w, &bias, &s, precision);
                fwd = fwd.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let (dx, ..) = backward(&x, &w, &dy, &s, true, precision);
                bwd = bwd.min(t.elapsed().as_secs_f64());
                assert!(y[0].is_finite() && dx[0].is_finite());
            }
            println!(
                "| {batch} | {cin} → {cout} | {hw}×{hw} | {k}×{k}, {stride} | {precision:?} | {:.1} ms, {:.0} GFLOP/s | {:.1} ms, {:.0} GFLOP/s |",
                fwd * 1e3,
                flops / fwd / 1e9,
                bwd * 1e3,
                2.0 * flops / bwd / 1e9
            );
        }
    }
}
