//! `diffuse clip-score`: how well images match a prompt, 100 · max(cos, 0) in a user-provided CLIP's embedding
//! space (Hessel et al. 2021).

use anyhow::{Context, bail};
use clap::Args;
use diffuse::nn::clip::Clip;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
diffuse clip-score --clip models/clip-vit-base-patch32 --images runs/out/hearts --prompt \"a red heart\"\n  \
diffuse clip-score --clip models/clip-vit-base-patch32 --images a.png --prompt \"a smiling face\" --json\n\n\
--clip is a transformers CLIPModel folder (config.json, model.safetensors, tokenizer.json, \
preprocessor_config.json), such as openai/clip-vit-base-patch32 saved with save_pretrained; diffuse does not \
ship or download one. Images are resized and cropped as the folder's preprocessor_config.json says.")]
pub struct ClipScoreArgs {
    /// The CLIP model folder.
    #[arg(long)]
    clip: PathBuf,
    #[command(flatten)]
    scored: ScoredImages,
}

/// The images a score command reads and the text it scores them against (`clip-score`, `text score`).
#[derive(Args)]
pub struct ScoredImages {
    /// A PNG, or a folder of PNGs.
    #[arg(long)]
    pub images: PathBuf,
    /// The text every image is scored against.
    #[arg(long)]
    pub prompt: String,
    /// Print every image's score as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ScoredImages {
    /// The PNG, or the folder's PNGs in name order.
    pub fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let files = if self.images.is_file() {
            vec![self.images.clone()]
        } else {
            diffuse::imageio::png_files(&self.images)?
        };
        if files.is_empty() {
            bail!("{}: no PNG images", self.images.display());
        }
        Ok(files)
    }

    /// Prints every image's score as JSON, or their mean, smallest and largest in a line that names `what`.
    pub fn report(&self, what: &str, files: &[PathBuf], scores: &[f32]) -> anyhow::Result<()> {
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len().max(1) as f64;
        if self.json {
            let per: Vec<_> = files
                .iter()
                .zip(scores)
                .map(|(f, s)| json!({"image": f.display().to_string(), "score": s}))
                .collect();
            let v = json!({"prompt": self.prompt, "mean": mean, "images": per});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            let (lo, hi) = scores
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &s| (l.min(s), h.max(s)));
            println!(
                "{what} of {} images against {:?}: mean {mean:.2} (min {lo:.2}, max {hi:.2})",
                scores.len(),
                self.prompt
            );
        }
        Ok(())
    }
}

/// Images per forward pass.
const BATCH: usize = 32;

pub fn clip_score(a: ClipScoreArgs) -> anyhow::Result<()> {
    let files = a.scored.files()?;
    let device = diffuse::device::device();
    let clip = Clip::load(&a.clip, &device)?;
    let text = clip.embed_texts(&[a.scored.prompt.as_str()])?;
    let mut scores = Vec::with_capacity(files.len());
    for chunk in files.chunks(BATCH) {
        let mut pixels = Vec::new();
        for f in chunk {
            let img = image::open(f).with_context(|| format!("reading {}", f.display()))?;
            pixels.extend(clip.pixels(&img.to_rgb8()));
        }
        let images = clip.embed_pixels(&pixels, chunk.len());
        scores.extend(diffuse::nn::clip::scores(
            &images,
            &text.clone().repeat_dim(0, chunk.len()),
        ));
    }
    a.scored.report("CLIP score", &files, &scores)
}
