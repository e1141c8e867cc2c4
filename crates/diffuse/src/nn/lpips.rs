//! LPIPS (Zhang et al. 2018, version 0.1): a backbone's ReLU activations at five depths, each unit-normalised
//! over channels, squared differences weighted per channel by the learned linear heads, averaged over space
//! and summed over depths. The backbone (torchvision's AlexNet or VGG16 `features`) comes from a file the user
//! provides; the heads are the published `lpips_v0.1_{alex,vgg}_lin` weights.

use crate::safetensors_io::NamedTensor;
use crate::{Error, Result};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backbone {
    Alex,
    Vgg,
}
crate::names::named!(Backbone, "LPIPS network", { Alex => "alex", Vgg => "vgg" });

/// One step of a backbone: a convolution (index in `features`, stride, padding) followed by ReLU, a max pool
/// (kernel, stride), or a tap whose activation LPIPS compares.
#[derive(Clone, Copy)]
enum Op {
    Conv(usize, usize, usize),
    Pool(usize, usize),
    Tap,
}

use Op::{Conv, Pool, Tap};

/// torchvision's `alexnet().features` up to relu5, and `vgg16().features` up to relu5_3.
const ALEX: &[Op] = &[
    Conv(0, 4, 2),
    Tap,
    Pool(3, 2),
    Conv(3, 1, 2),
    Tap,
    Pool(3, 2),
    Conv(6, 1, 1),
    Tap,
    Conv(8, 1, 1),
    Tap,
    Conv(10, 1, 1),
    Tap,
];
const VGG: &[Op] = &[
    Conv(0, 1, 1),
    Conv(2, 1, 1),
    Tap,
    Pool(2, 2),
    Conv(5, 1, 1),
    Conv(7, 1, 1),
    Tap,
    Pool(2, 2),
    Conv(10, 1, 1),
    Conv(12, 1, 1),
    Conv(14, 1, 1),
    Tap,
    Pool(2, 2),
    Conv(17, 1, 1),
    Conv(19, 1, 1),
    Conv(21, 1, 1),
    Tap,
    Pool(2, 2),
    Conv(24, 1, 1),
    Conv(26, 1, 1),
    Conv(28, 1, 1),
    Tap,
];

/// The input normalisation of LPIPS's scaling layer: (x − shift) / scale per RGB channel.
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];

impl Backbone {
    fn ops(self) -> &'static [Op] {
        match self {
            Backbone::Alex => ALEX,
            Backbone::Vgg => VGG,
        }
    }

    /// The `features` indices of its convolutions, in order.
    pub fn conv_indices(self) -> Vec<usize> {
        self.ops()
            .iter()
            .filter_map(|op| match op {
                Conv(i, ..) => Some(*i),
                _ => None,
            })
            .collect()
    }

    /// The name of its published heads file.
    pub fn heads_file(self) -> &'static str {
        match self {
            Backbone::Alex => "lpips_v0.1_alex_lin.safetensors",
            Backbone::Vgg => "lpips_v0.1_vgg_lin.safetensors",
        }
    }
}

pub struct Lpips {
    backbone: Backbone,
    convs: BTreeMap<usize, (Tensor<4>, Tensor<1>)>,
    heads: Vec<Tensor<4>>,
    device: Device,
}

fn tensor<const D: usize>(t: &NamedTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

impl Lpips {
    /// From torchvision-named backbone tensors (`features.{i}.weight|bias`; others are ignored) and the heads
    /// (`lin{k}.model.1.weight`, [1, C, 1, 1]).
    pub fn new(
        backbone: Backbone,
        features: &BTreeMap<String, NamedTensor>,
        heads: &BTreeMap<String, NamedTensor>,
        device: &Device,
    ) -> Result<Lpips> {
        let get = |map: &BTreeMap<String, NamedTensor>, what: &str, key: String| -> Result<NamedTensor> {
            map.get(&key)
                .cloned()
                .ok_or_else(|| Error::Config(format!("the LPIPS {what} file has no tensor {key}")))
        };
        let mut convs = BTreeMap::new();
        for i in backbone.conv_indices() {
            let w = get(features, "backbone", format!("features.{i}.weight"))?;
            let b = get(features, "backbone", format!("features.{i}.bias"))?;
            if w.shape.len() != 4 || b.shape != [w.shape[0]] {
                return Err(Error::Config(format!(
                    "backbone features.{i}: weight {:?} and bias {:?} are not a convolution",
                    w.shape, b.shape
                )));
            }
            convs.insert(i, (tensor(&w, device), tensor(&b, device)));
        }
        let mut lpips = Lpips {
            backbone,
            convs,
            heads: Vec::new(),
            device: device.clone(),
        };
        // Each head weighs the channels of one tap: check the count against the backbone before any image.
        let widths = lpips.tap_channels();
        for (k, c) in widths.into_iter().enumerate() {
            let h = get(heads, "heads", format!("lin{k}.model.1.weight"))?;
            if h.shape != [1, c, 1, 1] {
                return Err(Error::Config(format!(
                    "head lin{k} is {:?}, the backbone's tap has {c} channels: heads and backbone do not match",
                    h.shape
                )));
            }
            lpips.heads.push(tensor(&h, device));
        }
        Ok(lpips)
    }

    fn tap_channels(&self) -> Vec<usize> {
        let mut last = 3;
        let mut out = Vec::new();
        for op in self.backbone.ops() {
            match op {
                Conv(i, ..) => last = self.convs[i].0.dims()[0],
                Tap => out.push(last),
                Pool(..) => {}
            }
        }
        out
    }

    /// The tapped activations of images [n, 3, h, w] in [−1, 1].
    fn taps(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let shift = Tensor::<1>::from_floats(SHIFT, &self.device).reshape([1, 3, 1, 1]);
        let scale = Tensor::<1>::from_floats(SCALE, &self.device).reshape([1, 3, 1, 1]);
        let mut h = (x - shift) / scale;
        let mut out = Vec::new();
        for op in self.backbone.ops() {
            match *op {
                Conv(i, stride, pad) => {
                    let (w, b) = &self.convs[&i];
                    let opts = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
                    h = relu(crate::kernels::conv2d_with(h, w.clone(), b.clone(), opts));
                }
                Pool(k, s) => h = max_pool2d(h, MaxPoolOptions::new([k, k]).with_stride([s, s])),
                Tap => out.push(h.clone()),
            }
        }
        out
    }

    /// Distances [n] between image pairs (each [n, 3, h, w] in [−1, 1]), and each depth's term [n][5].
    pub fn distance(&self, x0: Tensor<4>, x1: Tensor<4>) -> (Vec<f32>, Vec<Vec<f32>>) {
        let [n, ..] = x0.dims();
        // Unit length over channels, with LPIPS's ε outside the root.
        let unit = |f: Tensor<4>| f.clone() / (f.square().sum_dim(1).sqrt().add_scalar(1e-10));
        let mut per = vec![Vec::new(); n];
        for ((a, b), head) in self.taps(x0).into_iter().zip(self.taps(x1)).zip(&self.heads) {
            let d = (unit(a) - unit(b)).square();
            let term = conv2d(d, head.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
                .mean_dim(3)
                .mean_dim(2)
                .reshape([n]);
            let values: Vec<f32> = term.into_data().convert::<f32>().try_into_vec().expect("f32 values");
            for (row, v) in per.iter_mut().zip(values) {
                row.push(v);
            }
        }
        (per.iter().map(|r| r.iter().sum()).collect(), per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seed: u64, i: u64) -> f64 {
        2.0 * ((crate::rng::splitmix64(seed, i) >> 11) as f64 * 2f64.powi(-53)) - 1.0
    }

    /// The fixture's random backbone (scripts/make_lpips_fixture.py): He-uniform weights and small biases
    /// from SplitMix64, one stream per tensor in torchvision order.
    fn random_backbone(net: Backbone) -> BTreeMap<String, NamedTensor> {
        let shapes: &[[usize; 4]] = match net {
            Backbone::Alex => &[
                [64, 3, 11, 11],
                [192, 64, 5, 5],
                [384, 192, 3, 3],
                [256, 384, 3, 3],
                [256, 256, 3, 3],
            ],
            Backbone::Vgg => &[
                [64, 3, 3, 3],
                [64, 64, 3, 3],
                [128, 64, 3, 3],
                [128, 128, 3, 3],
                [256, 128, 3, 3],
                [256, 256, 3, 3],
                [256, 256, 3, 3],
                [512, 256, 3, 3],
                [512, 512, 3, 3],
                [512, 512, 3, 3],
                [512, 512, 3, 3],
                [512, 512, 3, 3],
                [512, 512, 3, 3],
            ],
        };
        let mut out = BTreeMap::new();
        for (k, (i, shape)) in net.conv_indices().into_iter().zip(shapes).enumerate() {
            let fan_in = shape[1] * shape[2] * shape[3];
            let scale = (6.0 / fan_in as f64).sqrt();
            let w = (0..shape.iter().product::<usize>() as u64)
                .map(|j| (scale * r(2 * k as u64, j)) as f32)
                .collect();
            let b = (0..shape[0] as u64)
                .map(|j| (0.01 * r(2 * k as u64 + 1, j)) as f32)
                .collect();
            out.insert(
                format!("features.{i}.weight"),
                NamedTensor {
                    id: 0,
                    shape: shape.to_vec(),
                    data: w,
                },
            );
            out.insert(
                format!("features.{i}.bias"),
                NamedTensor {
                    id: 0,
                    shape: vec![shape[0]],
                    data: b,
                },
            );
        }
        out
    }

    #[test]
    fn distances_match_the_lpips_package_on_a_random_backbone() {
        let Some(weights) = crate::data::tests::shared("weights") else {
            return;
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lpips.safetensors");
        let fixture = crate::safetensors_io::read(&path).unwrap();
        let want = &fixture.groups[""];
        let device = crate::device::device();
        for net in [Backbone::Alex, Backbone::Vgg] {
            let name = if net == Backbone::Alex { "alex" } else { "vgg" };
            let backbone = random_backbone(net);
            let head = &backbone["features.0.weight"].data[..8];
            assert_eq!(
                head,
                want[&format!("probe.{name}.features.0.weight.head")].data.as_slice()
            );
            let heads = crate::safetensors_io::read(&weights.join(net.heads_file())).unwrap();
            let lpips = Lpips::new(net, &backbone, &heads.groups[""], &device).unwrap();
            let mut pair = 0u64;
            for (case, h, w, ts) in [
                ("b64", 64, 64, vec![1.0, 0.5, 0.1]),
                ("s32", 32, 32, vec![1.0]),
                ("r40x56", 40, 56, vec![0.5]),
            ] {
                let (mut x0, mut x1) = (Vec::new(), Vec::new());
                for t in &ts {
                    for i in 0..(3 * h * w) as u64 {
                        let (a, b) = (r(1000 + 2 * pair, i), r(1001 + 2 * pair, i));
                        x0.push(a as f32);
                        x1.push(((1.0 - t) * a + t * b) as f32);
                    }
                    pair += 1;
                }
                let n = ts.len();
                let img = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [n, 3, h, w]), &device);
                let (dist, per) = lpips.distance(img(x0), img(x1));
                let want_dist = &want[&format!("{name}.{case}.dist")].data;
                let want_per = &want[&format!("{name}.{case}.per_layer")].data;
                for (got, want) in dist.iter().zip(want_dist) {
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs() + 1e-8,
                        "{name} {case}: {got} vs {want}"
                    );
                }
                for (got, want) in per.iter().flatten().zip(want_per) {
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs() + 1e-7,
                        "{name} {case} layer: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn mismatched_heads_are_refused() {
        let device = crate::device::device();
        let backbone = random_backbone(Backbone::Alex);
        let heads: BTreeMap<String, NamedTensor> = (0..5)
            .map(|k| {
                (
                    format!("lin{k}.model.1.weight"),
                    NamedTensor {
                        id: 0,
                        shape: vec![1, 7, 1, 1],
                        data: vec![0.0; 7],
                    },
                )
            })
            .collect();
        let e = Lpips::new(Backbone::Alex, &backbone, &heads, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("do not match"), "{e}");
        let e = Lpips::new(Backbone::Vgg, &backbone, &heads, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("features.2.weight"), "{e}");
    }
}
