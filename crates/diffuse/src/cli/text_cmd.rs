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
#[command(after_help = "Example:\n  \
diffuse text eval --encoder runs/emoji-text --run runs/emoji-words --guidance 0,1,3 --classifier runs/emoji-clf \
--grid runs/out/held-out.png\n\n\
Without --run: retrieval among the split's images and captions. With --run: --per images of every caption of the \
split drawn by the run, measured against the split's captions (own-caption score, top-1/top-5 retrieval, \
diversity) and, with --classifier, by the share drawn in their emoji's category; the real images are measured the \
same way first.")]
pub struct EvalArgs {
    /// A `diffuse text train` folder (or a text run's `text/`).
    #[arg(long)]
    encoder: PathBuf,
    #[arg(long, default_value = "emoji")]
    data: String,
    /// Which part of the data.
    #[arg(long, default_value = "test", value_parser = super::one_of::<Split>(&["train", "test", "all"]))]
    split: Split,
    /// A text run (`diffuse train --text`) to draw every caption with.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Images per caption.
    #[arg(long, default_value_t = 4)]
    per: usize,
    /// At most this many of the split's captions, evenly spaced through it.
    #[arg(long)]
    limit: Option<usize>,
    /// Guidance scales to draw at (0: the empty caption only, a baseline).
    #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
    guidance: Vec<f64>,
    /// A classifier of the data's classes (`diffuse classifier train`), for the share drawn in the right class.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// A grid of the first eight captions' images at each guidance (GUIDANCE is put before the extension).
    #[arg(long)]
    grid: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the reports as JSON.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[arg(long)]
    encoder: PathBuf,
    #[command(flatten)]
    scored: super::clip_cmd::ScoredImages,
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

fn line(what: &str, r: &text::PromptReport) -> String {
    format!(
        "{what:>14}: score {:.2}, top-1 {:.1}%, top-5 {:.1}%, diversity {:.3}{}",
        r.score,
        100.0 * r.top1,
        100.0 * r.top5,
        r.diversity,
        r.class_accuracy
            .map_or(String::new(), |c| format!(", right category {:.1}%", 100.0 * c))
    )
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let enc = OwnText::load(&a.encoder)?;
    let data = Dataset::load(&a.data, a.split)?;
    let data = match a.limit {
        Some(0) => bail!("--limit must be at least 1"),
        Some(k) if k < data.len() => data.subset(&(0..k).map(|i| i * data.len() / k).collect::<Vec<_>>()),
        _ => data,
    };
    println!("{}: {}", data.name, describe(&enc.retrieval(&data)?));
    let Some(run_dir) = &a.run else { return Ok(()) };
    if a.per == 0 || a.guidance.iter().any(|g| !(0.0..=100.0).contains(g)) {
        bail!("--per must be at least 1 and --guidance between 0 and 100");
    }
    let run = diffuse::run::load(run_dir, diffuse::run::Weights::Ema, &diffuse::device::device())?;
    let caps = data.captions.clone().context("the data has no captions")?;
    let shape = [data.channels, data.height, data.width];
    if run.config.output_shape() != shape {
        bail!(
            "the run draws {:?} images, the data is {shape:?}",
            run.config.output_shape()
        );
    }
    let clf = a
        .classifier
        .as_deref()
        .map(diffuse::classifier::Classifier::load)
        .transpose()?;
    // Each image's class by the classifier.
    let predict = |images: &[f32]| -> anyhow::Result<Option<Vec<u32>>> {
        let Some(c) = &clf else { return Ok(None) };
        let set = Dataset {
            images: images.to_vec(),
            labels: None,
            captions: None,
            ..data.clone()
        };
        let (probs, _) = c.outputs(&set)?;
        let arg = |p: &Vec<f64>| {
            p.iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map_or(0, |(i, _)| i)
        };
        Ok(Some(probs.iter().map(|p| arg(p) as u32).collect()))
    };
    let labels = data.labels.clone().unwrap_or_default();
    let mut reports = Vec::new();
    let real = predict(&data.images)?;
    let r = text::measure(
        &enc,
        &caps,
        &data.images,
        shape,
        1,
        None,
        real.as_deref().map(|p| (&labels[..], p)),
    )?;
    println!("{}", line("real images", &r));
    reports.push(serde_json::json!({"what": "real", "report": r}));
    let texts: Vec<&str> = caps.iter().map(String::as_str).collect();
    let context = run.encode_prompts(&texts, "")?.repeat_each(a.per);
    for &g in &a.guidance {
        let request = diffuse::generate::Request {
            plan: run.default_plan()?,
            guidance: diffuse::denoise::Guidance::scale(g),
            cond: diffuse::denoise::Cond {
                classes: None,
                context: Some(context.clone()),
            },
            n: caps.len() * a.per,
            seed: a.seed,
            batch_size: 64,
            init_noise: None,
            no_clip: false,
            strip: false,
            progress: true,
        };
        let drawn = diffuse::generate::draw(&run, &request)?;
        let got = predict(&drawn.images)?;
        let r = text::measure(
            &enc,
            &caps,
            &drawn.images,
            shape,
            a.per,
            Some(g),
            got.as_deref().map(|p| (&labels[..], p)),
        )?;
        println!("{}", line(&format!("guidance {g}"), &r));
        reports.push(serde_json::json!({"what": "samples", "report": r}));
        if let Some(grid) = &a.grid {
            let stem = grid.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
            let path = grid.with_file_name(format!("{stem}-w{g}.png"));
            let k = 8.min(caps.len()) * a.per;
            let [c, h, w] = shape;
            diffuse::imageio::write_grid(&path, &drawn.images[..k * c * h * w], k, c, h, w, a.per)?;
            eprintln!(
                "grid: {} (rows: {})",
                path.display(),
                caps[..8.min(caps.len())].join(" | ")
            );
        }
    }
    if let Some(p) = &a.json_out {
        diffuse::atomic::write(p, serde_json::to_string_pretty(&reports)?.as_bytes())?;
    }
    Ok(())
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
        TextCommand::Eval(a) => eval(a)?,
        TextCommand::Score(a) => {
            let files = a.scored.files()?;
            let enc = OwnText::load(&a.encoder)?;
            let channels = enc.meta.config.image_channels;
            let mut pixels = Vec::new();
            let mut shape = None;
            for f in &files {
                let img = diffuse::imageio::read_png(f, Some(channels))?;
                let s = [img.channels, img.height, img.width];
                if *shape.get_or_insert(s) != s {
                    bail!("{}: images of different sizes", a.scored.images.display());
                }
                pixels.extend(img.pixels.iter().map(|&p| diffuse::data::to_unit(p as f32, 255.0)));
            }
            let images = enc.embed_images(&pixels, shape.context("an image")?);
            let t = enc.embed_texts(&[a.scored.prompt.as_str()])?.repeat_dim(0, files.len());
            let scores = diffuse::nn::clip::scores(&images, &t);
            let what = format!("text score (diffuse's own encoder {}, not CLIP)", a.encoder.display());
            a.scored.report(&what, &files, &scores)?;
        }
    }
    Ok(())
}
