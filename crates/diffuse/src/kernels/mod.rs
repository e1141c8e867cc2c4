//! The project's own CPU kernels for the two operations that dominate a UNet step on burn's flex backend
//! (docs/perf-profile.md): GroupNorm fused with SiLU, and convolution with a well-shaped weight gradient.
//!
//! They are a burn backend extension ([`Kernels`]) implemented for `Flex` and, with hand-written backward
//! passes, for `Autodiff<Flex>`. The convolutions' matrix products are the project's own packed GEMM on AVX-512
//! CPUs ([`packed`]), in f32 or bf16 mixed precision ([`matmul::with_precision`]). [`group_norm`] and [`conv2d`] take burn's own `GroupNorm` and `Conv2d`
//! modules (the same parameters, so checkpoints do not change) and fall back to burn's composition on every
//! other device (the GPU), dtype or layer configuration.

/// Defines `fn $name(args)` that runs `$body` compiled for AVX-512 or AVX2 when the CPU has them (picked at run
/// time; the build targets baseline x86-64), else for the baseline.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($a: $t),*) {
            #[inline(always)]
            fn body($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                unsafe fn v4($($a: $t),*) { body($($a),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($a: $t),*) { body($($a),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `v4` is compiled for.
                    return unsafe { v4($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `v3`.
                    return unsafe { v3($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

pub mod bf16;
pub mod conv;
pub mod group_norm;
pub mod matmul;
pub mod packed;
pub mod winograd;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::silu;
use burn::tensor::ops::ConvOptions;
use conv::ConvShape;
use group_norm::GroupShape;
use matmul::Precision;

#[backend_extension(Flex, Autodiff)]
pub trait Kernels: Backend {
    /// GroupNorm over `[b, c, h, w]` with per-channel `gamma` and `beta`, then SiLU when `silu`.
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// Convolution of `[b, cin, h, w]` with `[cout, cin, kh, kw]` and a bias, the same stride on both axes, each
    /// axis padded evenly; its products (and its backward pass's) with bf16 operands when `bf16`.
    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad_h: usize,
        pad_w: usize,
        bf16: bool,
    ) -> FloatTensor<Self>;
}

/// `GroupNorm` then SiLU (when `silu`), fused on the CPU.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>, silu_after: bool) -> Tensor<4> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return unfused_group_norm(norm, x, silu_after);
    };
    let (gamma, beta) = (gamma.val(), beta.val());
    if !on_cpu(&x) || [gamma.dtype(), beta.dtype()] != [DType::F32; 2] {
        return unfused_group_norm(norm, x, silu_after);
    }
    let out = <Dispatch as Kernels>::group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        norm.num_groups,
        norm.epsilon as f32,
        silu_after,
    );
    Tensor::from_dispatch(out)
}

fn unfused_group_norm(norm: &GroupNorm, x: Tensor<4>, silu_after: bool) -> Tensor<4> {
    let y = norm.forward(x);
    if silu_after { silu(y) } else { y }
}

/// `conv.forward(x)`, through [`conv2d_with`].
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([(0, 0); 2]),
        PaddingConfig2d::Explicit(t, l, b, r) => Some([(t, b), (l, r)]),
        _ => None,
    };
    match (padding, &conv.bias) {
        (Some(padding), Some(bias)) => {
            let options = ConvOptions {
                stride: conv.stride,
                padding,
                dilation: conv.dilation,
                groups: conv.groups,
            };
            conv2d_with(x, conv.weight.val(), bias.val(), options)
        }
        _ => conv.forward(x),
    }
}

/// burn's functional `conv2d` with a bias, on the project's kernels on the CPU when the strides are equal, each
/// axis is padded evenly, and there is one group and no dilation; in this thread's [`matmul::precision`].
pub fn conv2d_with(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, options: ConvOptions<2>) -> Tensor<4> {
    let [sh, sw] = options.stride;
    let [(pt, pb), (pl, pr)] = options.padding;
    let plain = sh == sw && pt == pb && pl == pr && options.dilation == [1, 1] && options.groups == 1;
    if !plain || !on_cpu(&x) || [weight.dtype(), bias.dtype()] != [DType::F32; 2] {
        return burn::tensor::module::conv2d(x, weight, Some(bias), options);
    }
    let out = <Dispatch as Kernels>::conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        sh,
        pt,
        pl,
        matmul::precision() == Precision::Bf16,
    );
    Tensor::from_dispatch(out)
}

/// Whether the project's kernels serve this input: burn's CPU backend (with or without autodiff), `f32`.
fn on_cpu(x: &Tensor<4>) -> bool {
    x.dtype() == DType::F32 && x.device().inner() == Device::flex()
}

/// The `f32` contents of a flex tensor (copied only when it is not contiguous) and its shape.
fn contents(t: FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let dims = t.layout().shape().to_vec();
    (t, dims)
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn tensor(data: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, dims))
}

fn group_shape(dims: &[usize], groups: usize) -> GroupShape {
    let [batch, channels, h, w] = dims.try_into().expect("a 4-D tensor");
    assert!(
        groups > 0 && channels.is_multiple_of(groups),
        "{channels} channels in {groups} groups"
    );
    GroupShape {
        batch,
        channels,
        spatial: h * w,
        groups,
    }
}

fn conv_shape(x: &[usize], w: &[usize], stride: usize, (pad_h, pad_w): (usize, usize)) -> ConvShape {
    let [batch, cin, height, width] = x.try_into().expect("a 4-D input");
    let [cout, wcin, kh, kw] = w.try_into().expect("a 4-D weight");
    assert_eq!(cin, wcin, "input channels vs weight");
    assert!(
        stride > 0 && height + 2 * pad_h >= kh && width + 2 * pad_w >= kw,
        "kernel larger than the input"
    );
    ConvShape {
        batch,
        cin,
        height,
        width,
        cout,
        kh,
        kw,
        stride,
        pad_h,
        pad_w,
    }
}

impl Kernels for Flex {
    fn group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> FlexTensor {
        let (x, dims) = contents(x);
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        let s = group_shape(&dims, groups);
        tensor(
            group_norm::forward(slice(&x), slice(&gamma), slice(&beta), s, eps, silu),
            dims,
        )
    }

    fn conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        pad_h: usize,
        pad_w: usize,
        bf16: bool,
    ) -> FlexTensor {
        let ((x, xd), (w, wd)) = (contents(x), contents(weight));
        let bias = bias.to_contiguous();
        let s = conv_shape(&xd, &wd, stride, (pad_h, pad_w));
        let (oh, ow) = s.out_hw();
        let y = conv::forward(slice(&x), slice(&w), slice(&bias), &s, precision_of(bf16));
        tensor(y, vec![s.batch, s.cout, oh, ow])
    }
}

fn precision_of(bf16: bool) -> Precision {
    if bf16 { Precision::Bf16 } else { Precision::F32 }
}

/// Hands each input that takes part in the graph its gradient.
fn register<const N: usize>(grads: &mut Gradients, inputs: [Option<NodeId>; N], values: [FlexTensor; N]) {
    for (id, value) in inputs.into_iter().zip(values) {
        if let Some(id) = id {
            grads.register::<Flex>(id, value);
        }
    }
}

/// What a GroupNorm call needs besides its input, kept by its backward node and its recomputation.
#[derive(Clone, Debug)]
struct GroupNormArgs {
    gamma: FlexTensor,
    beta: FlexTensor,
    groups: usize,
    eps: f32,
    silu: bool,
}

impl GroupNormArgs {
    fn apply(&self, x: FlexTensor) -> FlexTensor {
        Flex::group_norm(
            x,
            self.gamma.clone(),
            self.beta.clone(),
            self.groups,
            self.eps,
            self.silu,
        )
    }
}

/// The backward node of [`Kernels::group_norm`]: recomputes the statistics from the saved input.
#[derive(Debug)]
struct GroupNormBackward;

impl Backward<Flex, 3> for GroupNormBackward {
    type State = (NodeId, GroupNormArgs);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let (x_id, a) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, dims) = contents(checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let (dy, _) = contents(dy);
        let (gamma, beta) = (a.gamma.to_contiguous(), a.beta.to_contiguous());
        let s = group_shape(&dims, a.groups);
        let (dx, dgamma, dbeta) =
            group_norm::backward(slice(&x), slice(&gamma), slice(&beta), slice(&dy), s, a.eps, a.silu);
        let c = vec![s.channels];
        let grads_of = [tensor(dx, dims), tensor(dgamma, c.clone()), tensor(dbeta, c)];
        register(
            grads,
            [node_x, node_gamma, node_beta].map(|n| n.map(|n| n.id)),
            grads_of,
        );
    }
}

/// Recomputes [`Kernels::group_norm`]'s output during the backward pass (gradient checkpointing).
#[derive(Debug)]
struct RetroGroupNorm(NodeId, GroupNormArgs);

impl RetroForward for RetroGroupNorm {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x = states.get_state::<FlexTensor>(&self.0);
        states.save(out_node, self.1.apply(x))
    }
}

/// The backward node of [`Kernels::conv2d`].
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = (NodeId, FlexTensor, usize, (usize, usize), bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let (x_id, weight, stride, pad, bf16) = ops.state;
        let (dy, _) = contents(grads.consume::<Flex>(&ops.node));
        let (x, xd) = contents(checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let (w, wd) = contents(weight);
        let s = conv_shape(&xd, &wd, stride, pad);
        let (dx, dw, db) = conv::backward(
            slice(&x),
            slice(&w),
            slice(&dy),
            &s,
            node_x.is_some(),
            precision_of(bf16),
        );
        let grads_of = [tensor(dx, xd), tensor(dw, wd), tensor(db, vec![s.cout])];
        register(grads, [node_x, node_w, node_b].map(|n| n.map(|n| n.id)), grads_of);
    }
}

impl<C: CheckpointStrategy> Kernels for Autodiff<Flex, C> {
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> FloatTensor<Self> {
        let args = GroupNormArgs {
            gamma: gamma.primitive().clone(),
            beta: beta.primitive().clone(),
            groups,
            eps,
            silu,
        };
        let y = args.apply(x.primitive().clone());
        // Memory-bound: under gradient checkpointing its output (the next convolution's input, the largest tensor
        // kept for the backward pass) is recomputed from `x` instead of kept.
        match GroupNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .memory_bound()
            .retro_forward(RetroGroupNorm(x.id(), args.clone()))
            .parents([&x, &gamma, &beta])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                prep.finish((x_id, args), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad_h: usize,
        pad_w: usize,
        bf16: bool,
    ) -> FloatTensor<Self> {
        let w = weight.primitive().clone();
        let y = Flex::conv2d(
            x.primitive().clone(),
            w.clone(),
            bias.primitive().clone(),
            stride,
            pad_h,
            pad_w,
            bf16,
        );
        match ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                prep.finish((x_id, w, stride, (pad_h, pad_w), bf16), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;
    use burn::nn::conv::Conv2dConfig;

    fn input(seed: u64, dims: [usize; 4], device: &Device) -> Tensor<4> {
        let n = dims.iter().product();
        let v = crate::rng::normals(&mut crate::rng::stream(seed, 0), n);
        // An offset and a spread per position, so that the statistics are not those of a unit normal.
        let v: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, x)| 3.0 + x * (1.0 + (i % 7) as f32))
            .collect();
        let x = Tensor::from_data(TensorData::new(v, dims), device);
        if device.is_autodiff() { x.require_grad() } else { x }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    fn assert_close(a: Vec<f32>, b: Vec<f32>, tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= tol * scale, "{what}[{i}]: {p} vs {q} (scale {scale})");
        }
    }

    /// Output and every gradient of `fast` and `reference` on the same input and module, with a loss that
    /// weights each output differently.
    fn same_outputs_and_gradients<M: Module>(
        module: &M,
        x: Tensor<4>,
        fast: impl Fn(&M, Tensor<4>) -> Tensor<4>,
        reference: impl Fn(&M, Tensor<4>) -> Tensor<4>,
        what: &str,
    ) {
        same_within(module, x, fast, reference, [1e-5, 1e-4], what);
    }

    /// [`same_outputs_and_gradients`] with tolerances (relative to each tensor's largest value) for the output
    /// and for the gradients; returns whether anything differed at all.
    fn same_within<M: Module>(
        module: &M,
        x: Tensor<4>,
        fast: impl Fn(&M, Tensor<4>) -> Tensor<4>,
        reference: impl Fn(&M, Tensor<4>) -> Tensor<4>,
        [out_tol, grad_tol]: [f32; 2],
        what: &str,
    ) -> bool {
        let run = |f: &dyn Fn(&M, Tensor<4>) -> Tensor<4>| {
            let x = x.clone();
            let y = f(module, x.clone());
            let w = Tensor::<4>::from_data(
                TensorData::new(
                    crate::rng::normals(&mut crate::rng::stream(9, 0), y.shape().num_elements()),
                    y.dims(),
                ),
                &y.device(),
            );
            // The square needs `y` again in the backward pass: with gradient checkpointing, the GroupNorm's output
            // is recomputed for it.
            let grads = (y.clone() * w + y.clone().square()).sum().backward();
            let mut params = Vec::new();
            struct Collect<'a>(&'a burn::tensor::Gradients, &'a mut Vec<Vec<f32>>);
            impl burn::module::ModuleVisitor for Collect<'_> {
                fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                    self.1.push(values(p.grad(self.0).expect("a gradient per parameter")));
                }
            }
            module.visit(&mut Collect(&grads, &mut params));
            (values(y), values(x.grad(&grads).unwrap()), params)
        };
        let (a, b) = (run(&fast), run(&reference));
        let differs = a != b;
        assert_close(a.0, b.0, out_tol, &format!("{what}: output"));
        assert_close(a.1, b.1, grad_tol, &format!("{what}: input gradient"));
        for (i, (p, q)) in a.2.into_iter().zip(b.2).enumerate() {
            assert_close(p, q, grad_tol, &format!("{what}: parameter {i} gradient"));
        }
        differs
    }

    #[test]
    fn group_norm_matches_burn_with_its_gradients() {
        for device in [crate::device::train_device(), crate::device::train_device_with(true)] {
            for (dims, groups, silu_after) in [
                ([3, 8, 5, 6], 4, true),
                ([2, 6, 4, 4], 3, false),
                ([1, 4, 1, 1], 2, true),
            ] {
                let mut norm = GroupNormConfig::new(groups, dims[1]).init(&device);
                // Non-trivial affine parameters.
                let c = dims[1];
                let g: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.3).collect();
                let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.2 - 0.4).collect();
                norm.gamma = Some(burn::module::Param::from_tensor(Tensor::from_floats(
                    g.as_slice(),
                    &device,
                )));
                norm.beta = Some(burn::module::Param::from_tensor(Tensor::from_floats(
                    b.as_slice(),
                    &device,
                )));
                same_outputs_and_gradients(
                    &norm,
                    input(1, dims, &device),
                    |n, x| group_norm(n, x, silu_after),
                    |n, x| unfused_group_norm(n, x, silu_after),
                    &format!("{dims:?} in {groups} groups, silu {silu_after}"),
                );
            }
        }
    }

    #[test]
    fn bf16_convolutions_match_f32_within_bf16_rounding_forward_and_backward() {
        if !bf16::available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let device = crate::device::train_device();
        for (cin, cout, k, stride, hw) in [(16, 24, 3, 1, 8), (16, 8, 3, 2, 8), (32, 16, 1, 1, 6)] {
            let conv = crate::device::init_seeded(5, &device, |d| {
                Conv2dConfig::new([cin, cout], [k, k])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                    .init(d)
            });
            // Operands carry 8 significant bits (relative rounding ≤ 2⁻⁹), sums are f32: outputs and gradients
            // stay within about 1% of their largest value, and they do differ from f32 (the bf16 path ran,
            // backward included, though `backward()` is called outside the scope).
            let differs = same_within(
                &conv,
                input(3, [4, cin, hw, hw], &device),
                |c, x| matmul::with_precision(Precision::Bf16, || conv2d(c, x)),
                conv2d,
                [1e-2, 1e-2],
                &format!("bf16 {cin}→{cout} {k}×{k} stride {stride}"),
            );
            assert!(differs, "bf16 gave f32's exact values: the bf16 path did not run");
        }
    }

    #[test]
    fn conv_matches_burn_with_its_gradients() {
        let device = crate::device::train_device();
        for (cin, cout, [kh, kw], stride, [ph, pw], hw) in [
            (3, 5, [3, 3], 1, [1, 1], 6),
            (4, 4, [3, 3], 2, [1, 1], 8),
            (6, 3, [1, 1], 1, [0, 0], 5),
            (2, 3, [3, 3], 1, [0, 0], 5),
            (3, 4, [1, 5], 1, [0, 2], 6),
        ] {
            let conv = crate::device::init_seeded(4, &device, |d| {
                Conv2dConfig::new([cin, cout], [kh, kw])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                    .init(d)
            });
            same_outputs_and_gradients(
                &conv,
                input(2, [3, cin, hw, hw], &device),
                conv2d,
                |c, x| c.forward(x),
                &format!("{cin}→{cout} {kh}×{kw} stride {stride} pad {ph}, {pw}"),
            );
        }
    }

    #[test]
    fn inference_tensors_take_the_same_kernels() {
        let device = crate::device::device();
        let conv = crate::device::init_seeded(4, &device, |d| {
            Conv2dConfig::new([3, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(d)
        });
        let norm = GroupNormConfig::new(2, 4).init(&device);
        let x = input(3, [2, 3, 5, 5], &device);
        let fast = group_norm(&norm, conv2d(&conv, x.clone()), true);
        let reference = silu(norm.forward(conv.forward(x)));
        assert_close(values(fast), values(reference), 1e-5, "conv → GroupNorm → SiLU");
    }
}
