//! `diffuse lpips A B`: LPIPS between two images or two folders of images paired by name order.

use anyhow::bail;
use clap::Args;
use diffuse::nn::lpips::{Backbone, Lpips};
use diffuse::safetensors_io;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse lpips a.png b.png --backbone alexnet.safetensors\n  \
diffuse lpips originals/ edits/ --net vgg --backbone vgg16.safetensors --json\n\n\
The backbone is torchvision's `alexnet()` or `vgg16()` weights converted to safetensors with their own names \
(features.0.weight, …); diffuse does not ship them. The heads default to lpips_v0.1_{alex,vgg}_lin.safetensors \
in the shared folder's weights/.")]
pub struct LpipsArgs {
    /// An image, or a folder of PNG images.
    a: PathBuf,
    /// An image of the same size, or a folder with as many images.
    b: PathBuf,
    #[arg(long, default_value = "alex", value_parser = super::one_of::<Backbone>(Backbone::NAMES))]
    net: Backbone,
    /// The backbone's weights (safetensors, torchvision names).
    #[arg(long, value_name = "FILE")]
    backbone: PathBuf,
    /// The LPIPS heads (default: the shared folder's weights/lpips_v0.1_<net>_lin.safetensors).
    #[arg(long, value_name = "FILE")]
    heads: Option<PathBuf>,
    /// Print every pair's distance as JSON.
    #[arg(long)]
    json: bool,
}

fn pngs(p: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if p.is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    Ok(diffuse::imageio::png_files(p)?)
}

pub fn lpips(a: LpipsArgs) -> anyhow::Result<()> {
    let heads_path =
        (a.heads.clone()).unwrap_or_else(|| diffuse::fetch::shared_dir().join("weights").join(a.net.heads_file()));
    let (xa, xb) = (pngs(&a.a)?, pngs(&a.b)?);
    if xa.is_empty() || xa.len() != xb.len() {
        bail!(
            "{} and {} hold {} and {} PNG images; pairs need equal, non-zero counts",
            a.a.display(),
            a.b.display(),
            xa.len(),
            xb.len()
        );
    }
    let device = diffuse::device::device();
    let backbone = safetensors_io::read(&a.backbone)?;
    let heads = safetensors_io::read(&heads_path)?;
    let empty = Default::default();
    let net = Lpips::new(
        a.net,
        backbone.groups.get("").unwrap_or(&empty),
        heads.groups.get("").unwrap_or(&empty),
        &device,
    )?;
    let mut rows = Vec::new();
    for (p, q) in xa.iter().zip(&xb) {
        let (x, y) = (
            diffuse::imageio::read_png(p, Some(3))?,
            diffuse::imageio::read_png(q, Some(3))?,
        );
        if (x.height, x.width) != (y.height, y.width) {
            bail!(
                "{} is {}×{}, {} is {}×{}",
                p.display(),
                x.height,
                x.width,
                q.display(),
                y.height,
                y.width
            );
        }
        let t = |img: &diffuse::imageio::PngImage| {
            let v: Vec<f32> = img.pixels.iter().map(|&u| u as f32 / 127.5 - 1.0).collect();
            burn::prelude::Tensor::<4>::from_data(
                burn::prelude::TensorData::new(v, [1, 3, img.height, img.width]),
                &device,
            )
        };
        let (d, _) = net.distance(t(&x), t(&y));
        rows.push((p.display().to_string(), q.display().to_string(), d[0]));
    }
    let mean = rows.iter().map(|r| r.2 as f64).sum::<f64>() / rows.len() as f64;
    if a.json {
        let pairs: Vec<_> = rows
            .iter()
            .map(|(p, q, d)| serde_json::json!({"a": p, "b": q, "lpips": d}))
            .collect();
        println!("{}", serde_json::json!({"lpips": mean, "pairs": pairs}));
    } else {
        println!("LPIPS {mean} ({} pairs, {:?})", rows.len(), a.net);
    }
    Ok(())
}
