//! Data augmentation with a class-conditional run: labelled samples added to (or standing in for) a real
//! training set, the seed's "data augmentation" use, judged by what a classifier trained on the mix scores on
//! held-out real images.

use crate::data::Dataset;
use crate::denoise::{Cond, Guidance};
use crate::generate::{self, Request};
use crate::run::LoadedRun;
use crate::{Error, Result};

/// How much synthetic data, drawn how.
#[derive(Clone, Debug)]
pub struct Mix {
    /// Synthetic images per real one (spread evenly over the classes); 0: real only.
    pub ratio: f64,
    /// Train on the synthetic images alone (as many as `ratio` says, at least one per class).
    pub synthetic_only: bool,
    /// Classifier-free guidance of the draws (1: plain conditional).
    pub guidance: f64,
    /// Seed of the draws (image i of a class is the same for any ratio).
    pub seed: u64,
    pub batch_size: usize,
}

/// A small labelled set: the first `per_class` training images of every class, in the data's order (the
/// low-data regime where augmentation matters, e.g. 10 of each MNIST digit for 100 images).
pub fn per_class_subset(real: &Dataset, per_class: usize) -> Result<Dataset> {
    let Some(labels) = &real.labels else {
        return Err(Error::Invalid(format!(
            "{} has no labels to take a per-class subset of",
            real.name
        )));
    };
    if per_class == 0 {
        return Err(Error::Invalid(
            "a per-class subset needs at least one image per class".into(),
        ));
    }
    let mut taken = vec![0usize; real.num_classes()];
    let keep: Vec<usize> = (0..real.len())
        .filter(|&i| {
            let c = labels[i] as usize;
            taken[c] += 1;
            taken[c] <= per_class
        })
        .collect();
    if let Some(k) = taken.iter().position(|&n| n < per_class) {
        return Err(Error::Invalid(format!(
            "class '{}' of {} has {} training images, fewer than {per_class}",
            real.class_names[k], real.name, taken[k]
        )));
    }
    Ok(real.subset(&keep))
}

/// `per_class` labelled samples of every class of `run`, drawn with its default sampler.
pub fn draw_labelled(
    run: &LoadedRun,
    per_class: usize,
    guidance: f64,
    seed: u64,
    batch_size: usize,
) -> Result<Dataset> {
    let k = run
        .net
        .num_classes()
        .ok_or_else(|| Error::Invalid(format!("{} is not a class-conditional run", run.dir.display())))?;
    if guidance != 1.0 && !run.net.has_null_class() {
        return Err(Error::Invalid(
            "this model has no null class, so it draws at guidance 1 only".into(),
        ));
    }
    let classes = generate::every_class(k, per_class);
    let n = classes.len();
    let drawn = generate::draw(
        run,
        &Request {
            plan: run.default_plan()?,
            guidance: Guidance::scale(guidance),
            cond: Cond::of_classes(classes.clone()),
            n,
            seed,
            batch_size,
            init_noise: None,
            no_clip: false,
            strip: false,
            progress: false,
        },
    )?;
    let [channels, height, width] = run.config.output_shape();
    Ok(Dataset {
        name: format!("{} samples", run.dir.display()),
        channels,
        height,
        width,
        images: drawn.images,
        labels: Some(classes),
        class_names: run.config.class_names.clone(),
        captions: None,
    })
}

/// The training set of `mix`: `real`, with or replaced by samples of `run` of its image shape and classes.
pub fn training_set(real: &Dataset, run: Option<&LoadedRun>, mix: &Mix) -> Result<Dataset> {
    if !(mix.ratio.is_finite() && (0.0..=100.0).contains(&mix.ratio)) {
        return Err(Error::Invalid(format!(
            "the synthetic ratio must be between 0 and 100, got {}",
            mix.ratio
        )));
    }
    let Some(run) = run.filter(|_| mix.ratio > 0.0) else {
        if mix.synthetic_only {
            return Err(Error::Invalid(
                "synthetic-only training needs a run and a ratio above 0".into(),
            ));
        }
        return Ok(real.clone());
    };
    let shape = |d: [usize; 3]| format!("{}×{}×{}", d[0], d[1], d[2]);
    let run_shape = run.config.output_shape();
    if run_shape != [real.channels, real.height, real.width] || run.config.class_names != real.class_names {
        return Err(Error::Invalid(format!(
            "the run draws {} images of classes {:?}; the data are {} of {:?}",
            shape(run_shape),
            run.config.class_names,
            shape([real.channels, real.height, real.width]),
            real.class_names
        )));
    }
    let per_class = ((mix.ratio * real.len() as f64) / real.num_classes() as f64)
        .round()
        .max(1.0) as usize;
    let synthetic = draw_labelled(run, per_class, mix.guidance, mix.seed, mix.batch_size)?;
    if mix.synthetic_only {
        return Ok(synthetic);
    }
    real.clone().append(synthetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_only_and_bad_mixes() {
        let real = crate::data::DataSpec::Digits.load(crate::data::Split::Train).unwrap();
        let mix = Mix {
            ratio: 0.0,
            synthetic_only: false,
            guidance: 1.0,
            seed: 0,
            batch_size: 64,
        };
        assert_eq!(training_set(&real, None, &mix).unwrap().len(), real.len());
        let only = Mix {
            synthetic_only: true,
            ..mix
        };
        assert!(
            training_set(&real, None, &only)
                .unwrap_err()
                .to_string()
                .contains("needs a run")
        );
        let negative = Mix { ratio: -1.0, ..only };
        let e = training_set(&real, None, &negative).unwrap_err().to_string();
        assert!(e.contains("between 0 and 100"), "{e}");
    }

    #[test]
    fn per_class_subsets_take_the_first_images_of_every_class() {
        let real = crate::data::DataSpec::Digits.load(crate::data::Split::Train).unwrap();
        let small = per_class_subset(&real, 3).unwrap();
        let labels = small.labels.as_ref().unwrap();
        assert_eq!(small.len(), 30);
        for c in 0..10u32 {
            assert_eq!(labels.iter().filter(|&&l| l == c).count(), 3, "class {c}");
        }
        // The first images of each class, in order: the subset's first image is the data's first.
        assert_eq!(&small.images[..64], &real.images[..64]);
        assert!(
            per_class_subset(&real, 0)
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        let e = per_class_subset(&real, 100_000).unwrap_err().to_string();
        assert!(e.contains("fewer than 100000"), "{e}");
    }
}
