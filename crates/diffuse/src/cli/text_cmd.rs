//! `diffuse text`: the project's own text encoder (a small image–text dual encoder trained contrastively on
//! captioned data), its retrieval accuracy, and its text–image score.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use diffuse::data::{Dataset, Split};
use diffuse::text::{self, OwnText, Retrieval};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TextCommand {
    /// Train a text encoder on captioned data (emoji: their names) and measure its retrieval.
    Train(TrainArgs),
    /// Retrieval accuracy of a text encoder on a data set's captioned images.
    Eval(EvalArgs),
    /// The project's own text–image score: 100 · max(cos, 0) in a text encoder's space (not CLIP's).
    Score(ScoreArgs),
}

#[derive(Args)]
#[command(after_help = "Example:\n  \
diffuse text train --data emoji --out runs/emoji-text\n  \
diffuse train --data emoji --text runs/emoji-text --out runs/emoji-words --time-budget 1800\n  \
diffuse sample --run runs/emoji-words --prompt \"red heart\" --guidance 3 --n 8 --out-dir runs/out/hearts")]
pub struct TrainArgs {
    /// Captioned data (emoji).
    #[arg(long, default_value = "emoji")]
    data: String,
    /// The folder to write (new or empty).
    #[arg(long)]
    out: PathBuf,
    /// Batches of 128 pairs.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A `diffuse text train` folder (or a text run's `text/`).
    #[arg(long)]
    encoder: PathBuf,
    #[arg(long, default_value = "emoji")]
    data: String,
    /// Which part of the data.
    #[arg(long, default_value = "test", value_parser = super::one_of::<Split>(&["train", "test", "all"]))]
    split: Split,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[arg(long)]
    encoder: PathBuf,
    /// A PNG, or a folder of PNGs.
    #[arg(long)]
    images: PathBuf,
    /// The text every image is scored against.
    #[arg(long)]
    prompt: String,
    /// Print every image's score as JSON.
    #[arg(long)]
    json: bool,
}

fn describe(r: &Retrieval) -> String {
    format!(
        "{} pairs: image→text top-1 {:.1}%, top-5 {:.1}%; text→image top-1 {:.1}%, top-5 {:.1}%",
        r.pairs,
        100.0 * r.image_to_text_top1,
        100.0 * r.image_to_text_top5,
        100.0 * r.text_to_image_top1,
        100.0 * r.text_to_image_top5
    )
}

pub fn text(c: TextCommand) -> anyhow::Result<()> {
    match c {
        TextCommand::Train(a) => {
            let train = Dataset::load(&a.data, Split::Train)?;
            let test = Dataset::load(&a.data, Split::Test)?;
            let meta = text::train(&train, &test, &a.out, a.steps, a.seed)?;
            println!(
                "text encoder of {} words in {} ({} steps, {:.0} s)\ntrain {}\nheld out {}",
                meta.config.vocab.words.len(),
                a.out.display(),
                meta.steps,
                meta.seconds,
                describe(&meta.train),
                describe(&meta.held_out)
            );
        }
        TextCommand::Eval(a) => {
            let enc = OwnText::load(&a.encoder)?;
            let data = Dataset::load(&a.data, a.split)?;
            println!("{}: {}", data.name, describe(&enc.retrieval(&data)?));
        }
        TextCommand::Score(a) => {
            let files = if a.images.is_file() {
                vec![a.images.clone()]
            } else {
                diffuse::imageio::png_files(&a.images)?
            };
            if files.is_empty() {
                bail!("{}: no PNG images", a.images.display());
            }
            let enc = OwnText::load(&a.encoder)?;
            let channels = enc.meta.config.image_channels;
            let mut pixels = Vec::new();
            let mut shape = None;
            for f in &files {
                let img = diffuse::imageio::read_png(f, Some(channels))?;
                let s = [img.channels, img.height, img.width];
                if *shape.get_or_insert(s) != s {
                    bail!("{}: images of different sizes", a.images.display());
                }
                pixels.extend(img.pixels.iter().map(|&p| diffuse::data::to_unit(p as f32, 255.0)));
            }
            let images = enc.embed_images(&pixels, shape.context("an image")?);
            let t = enc.embed_texts(&[a.prompt.as_str()])?.repeat_dim(0, files.len());
            let scores = OwnText::scores(&images, &t);
            let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64;
            if a.json {
                let per: Vec<_> = files
                    .iter()
                    .zip(&scores)
                    .map(|(f, s)| serde_json::json!({"image": f.display().to_string(), "score": s}))
                    .collect();
                let v = serde_json::json!({"prompt": a.prompt, "mean": mean, "images": per});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "text score (diffuse's own encoder {}, not CLIP) of {} images against {:?}: mean {mean:.2}",
                    a.encoder.display(),
                    scores.len(),
                    a.prompt
                );
            }
        }
    }
    Ok(())
}
