//! Class-conditional diffusion with classifier-free guidance (Ho & Salimans 2022) on the digits: the class
//! label is embedded and added to the time embedding; during training it is replaced by a null class with
//! probability 0.1, so one network learns both ε̂(x, t, class) and ε̂(x, t). Sampling then uses
//! ε̂ = ε̂_u + w (ε̂_c − ε̂_u): w = 0 ignores the class, w = 1 is plain conditional, larger w follows it harder.
//!
//!     cargo run --release --example conditional_diffusion        (about 3 minutes on 2 cores)
//!
//! Writes runs/examples/conditional/: classes-w3.png (a row per digit) and a guidance sweep table.

mod common;

use common::*;
use diffuse::data::{Dataset, Split};
use diffuse::denoise::Cond;
use diffuse::run::RunConfig;
use diffuse::sample::{Method, Plan, Process};

fn main() -> Result<()> {
    let dir = out_dir("conditional")?;
    let data = Dataset::load("digits", Split::Train)?;
    let cfg = RunConfig::for_data(&diffuse::data::DataSpec::Digits, &data).conditional(0.1);
    let run = train_or_reuse(&dir.join("run"), &cfg, &data)?;
    let process = Process::Discrete(run.schedule.clone());
    let plan = Plan::new(Method::Ddim { eta: 0.0 }, process, 50)?;

    // A row per class at w = 3.
    let per = 8;
    let classes: Vec<u32> = (0..10).flat_map(|c| std::iter::repeat_n(c, per)).collect();
    let cond = Cond::of_classes(classes.clone());
    println!("a row per class, guidance 3:");
    let images = draw(&run, &plan, classes.len(), 1, &cond, 3.0)?;
    grid(&dir.join("classes-w3.png"), &run, &images, classes.len(), per)?;

    // The guidance sweep: is each sample the asked class, and how varied are they?
    let classifier = digits_classifier()?;
    let per = 20;
    let classes: Vec<u32> = (0..10).flat_map(|c| std::iter::repeat_n(c, per)).collect();
    let cond = Cond::of_classes(classes.clone());
    let mut table = String::from("| w | asked class | Inception-style score |\n|---|---|---|\n");
    for w in [0.0, 1.0, 3.0, 7.5] {
        println!("guidance {w}:");
        let images = draw(&run, &plan, classes.len(), 2, &cond, w)?;
        let r = classifier.score(&as_digits(images, Some(classes.clone())), 0.9, None)?;
        let acc = r.accuracy.expect("labelled") * 100.0;
        println!(
            "  {acc:.1}% are the asked class, Inception-style score {:.2}",
            r.inception_score
        );
        table.push_str(&format!("| {w} | {acc:.1}% | {:.2} |\n", r.inception_score));
    }
    std::fs::write(dir.join("guidance.md"), &table)?;
    print!("{table}");
    Ok(())
}
