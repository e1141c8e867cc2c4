//! `diffuse fid A [B]`: FID between two image sets (folders of PNGs, data sets, or saved statistics) in the
//! reference Inception's features.

use anyhow::bail;
use clap::Args;
use diffuse::data::{Dataset, Split};
use diffuse::fid::{self, Extractor, Image};
use diffuse_math::metrics::Moments;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
#[command(
    after_help = "Each set is a folder of PNG images, a statistics file saved with --save-stats \
(.safetensors), or a data set (`digits`, `mnist:DIR`, …; its held-out split).\n\n\
Examples:\n  \
diffuse fid samples/ digits\n  \
diffuse fid mnist:../shared/data/mnist --save-stats mnist-test.safetensors\n  \
diffuse fid samples/ mnist-test.safetensors --json\n\n\
Images are resized to 299×299 with TF's legacy bilinear rule, as the reference does, unless they are \
already that size."
)]
pub struct FidArgs {
    /// The first set.
    a: String,
    /// The second set; without it, only --save-stats of A.
    b: Option<String>,
    /// The Inception weights (default: $DIFFUSE_INCEPTION, the fetch cache, or the shared folder).
    #[arg(long, value_name = "PATH")]
    inception: Option<PathBuf>,
    /// Save the statistics (mean, covariance) of A here.
    #[arg(long, value_name = "FILE")]
    save_stats: Option<PathBuf>,
    /// Images per network call.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Print `{"fid": value}`.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A set's images, or its saved statistics.
enum Set {
    Images(Vec<Image>),
    Stats(Moments),
}

fn open(spec: &str) -> anyhow::Result<Set> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(Set::Images(fid::folder_images(path)?));
    }
    if path.is_file() {
        return Ok(Set::Stats(fid::load_stats(path)?));
    }
    match Dataset::load(spec, Split::Test) {
        Ok(data) => Ok(Set::Images(fid::dataset_images(&data))),
        Err(e) => bail!("'{spec}' is neither a folder, a statistics file nor a data set ({e})"),
    }
}

pub fn fid(a: FidArgs) -> anyhow::Result<()> {
    if a.b.is_none() && a.save_stats.is_none() {
        bail!("give a second set B, or --save-stats FILE to save A's statistics");
    }
    let sets = [Some(&a.a), a.b.as_ref()];
    let opened: Vec<Set> = sets.iter().flatten().map(|s| open(s)).collect::<anyhow::Result<_>>()?;
    let mut extractor: Option<Extractor> = None;
    let mut moments = Vec::new();
    for (set, name) in opened.into_iter().zip(sets.into_iter().flatten()) {
        let m = match set {
            Set::Stats(m) => m,
            Set::Images(images) => {
                if extractor.is_none() {
                    let mut e = Extractor::load(&fid::locate_weights(a.inception.as_deref())?)?;
                    e.batch_size = a.batch_size.max(1);
                    extractor = Some(e);
                }
                let started = Instant::now();
                let features = extractor.as_ref().expect("loaded").features(&images, !a.quiet);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "{name}: {} images, Inception features in {secs:.1} s ({:.1} images/s)",
                    images.len(),
                    images.len() as f64 / secs
                );
                let spin = diffuse::progress::spinner(&format!("{name}: mean and covariance"), !a.quiet);
                let m = fid::moments(&features, name)?;
                spin.finish_and_clear();
                m
            }
        };
        moments.push(m);
    }
    if let Some(path) = &a.save_stats {
        fid::save_stats(path, &moments[0])?;
        eprintln!("statistics of {} written to {}", a.a, path.display());
    }
    if let [x, y] = moments.as_slice() {
        let spin = diffuse::progress::spinner("Fréchet distance (matrix square root)", !a.quiet);
        let value = fid::fid(x, y)?;
        spin.finish_and_clear();
        if a.json {
            println!("{}", serde_json::json!({ "fid": value }));
        } else {
            println!("FID {value}");
        }
    }
    Ok(())
}
