//! A studio request as the command line that does the same: each kind of job is a subcommand, and the page's
//! settings are that subcommand's flags. Only the flags listed here pass, each value checked by its [`Rule`]
//! before clap sees it: no value names a file (the server sets every path, under its output folder), and each
//! number that sizes the work is capped. Their product is not; the studio's per-job time limit bounds that.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a job does, and the subcommand that does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sample,
    Inpaint,
    Outpaint,
    Sdedit,
    Invert,
    Interpolate,
    Restore,
    Lab,
}

/// What a flag's value may be. No rule lets a value name a file: words have no path characters, a data set is
/// named without a folder, and a mask is a shape, never a PNG (an uploaded mask is the server's to name).
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Present (`true`) or not.
    Switch,
    /// A number in [min, max]: the caps on what sizes the work (images, steps, samples) and on tolerances that
    /// would never finish.
    Number(f64, f64),
    /// A word: a name the library knows (checked by [`known_name`] where it can be), a class, a list of names.
    Word,
    /// At most this many comma-separated numbers, each within ±max.
    List(usize, f64),
    /// A data set's name: letters, digits and `-` only.
    DataSet,
    /// A named mask shape (`box:x,y,w,h`, `left-half`, `center:r`).
    Mask,
    /// Free text within every value's limits (a prompt).
    Text,
}

/// A flag a request may set, and what its value may be.
struct Flag(&'static str, Rule);

const SEED_MAX: f64 = u32::MAX as f64;

/// Flags of every sampler (`SamplerArgs`).
const SAMPLER: &[Flag] = &[
    Flag("sampler", Rule::Word),
    Flag("steps", Rule::Number(1.0, 1000.0)),
    Flag("time-grid", Rule::Word),
    Flag("shift", Rule::Number(0.01, 100.0)),
    Flag("s-churn", Rule::Number(0.0, 1000.0)),
    Flag("s-noise", Rule::Number(0.0, 10.0)),
    Flag("timestep-spacing", Rule::Word),
    Flag("rho", Rule::Number(0.1, 100.0)),
    Flag("sigma-min", Rule::Number(1e-6, 1e4)),
    Flag("sigma-max", Rule::Number(1e-6, 1e4)),
    Flag("sde", Rule::Word),
    Flag("eta", Rule::Number(0.0, 10.0)),
    Flag("variance", Rule::Word),
    Flag("predictor", Rule::Word),
    Flag("corrector-steps", Rule::Number(0.0, 10.0)),
    Flag("snr", Rule::Number(0.0, 10.0)),
    Flag("ode-solver", Rule::Word),
    // RK45 with a tolerance near zero shrinks its step to nothing and never ends.
    Flag("rtol", Rule::Number(1e-6, 1.0)),
    Flag("atol", Rule::Number(1e-6, 1.0)),
    Flag("seed", Rule::Number(0.0, SEED_MAX)),
];

/// Flags of drawing from a run (`DrawArgs` less the run and the sampler).
const DRAW: &[Flag] = &[
    Flag("class", Rule::Word),
    Flag("prompt", Rule::Text),
    Flag("negative-prompt", Rule::Text),
    Flag("guidance", Rule::Number(0.0, 100.0)),
    Flag("guidance-interval", Rule::List(2, 1e4)),
    Flag("guidance-rescale", Rule::Number(0.0, 1.0)),
    Flag("batch-size", Rule::Number(1.0, 256.0)),
    Flag("weights", Rule::Word),
    Flag("precision", Rule::Word),
];

/// Picking held-out inputs instead of uploading one (`Inputs` less --input); `--limit` is required with
/// `--data` here (see [`flags`]).
const INPUTS: &[Flag] = &[
    Flag("data", Rule::DataSet),
    Flag("of-class", Rule::Word),
    Flag("limit", Rule::Number(1.0, 64.0)),
];

const REPAINT: &[Flag] = &[
    Flag("resample", Rule::Number(1.0, 10.0)),
    Flag("jump-length", Rule::Number(1.0, 100.0)),
];

impl Kind {
    /// The subcommand's words after `diffuse`.
    pub fn subcommand(self) -> &'static [&'static str] {
        match self {
            Kind::Sample => &["sample"],
            Kind::Inpaint => &["edit", "inpaint"],
            Kind::Outpaint => &["edit", "outpaint"],
            Kind::Sdedit => &["edit", "sdedit"],
            Kind::Invert => &["edit", "invert"],
            Kind::Interpolate => &["edit", "interpolate"],
            Kind::Restore => &["edit", "restore"],
            Kind::Lab => &["lab"],
        }
    }

    /// Whether the job draws from a run (every kind but the lab, whose denoiser is exact).
    pub fn needs_run(self) -> bool {
        self != Kind::Lab
    }

    /// Whether the job edits input images (an upload, or --data's held-out ones).
    pub fn takes_inputs(self) -> bool {
        matches!(
            self,
            Kind::Inpaint | Kind::Outpaint | Kind::Sdedit | Kind::Invert | Kind::Restore
        )
    }

    fn flags(self) -> Vec<&'static [Flag]> {
        use Rule::*;
        match self {
            Kind::Sample => vec![SAMPLER, DRAW, &[Flag("n", Number(1.0, 256.0)), Flag("no-clip", Switch)]],
            Kind::Inpaint => vec![
                SAMPLER,
                DRAW,
                INPUTS,
                REPAINT,
                &[Flag("mask", Mask), Flag("naive", Word)],
            ],
            Kind::Outpaint => vec![SAMPLER, DRAW, INPUTS, REPAINT, &[Flag("pad", List(4, 64.0))]],
            Kind::Sdedit => vec![SAMPLER, DRAW, INPUTS, &[Flag("strength", Number(0.0, 1.0))]],
            Kind::Invert => vec![SAMPLER, DRAW, INPUTS, &[Flag("to-class", Word)]],
            Kind::Restore => vec![
                SAMPLER,
                DRAW,
                INPUTS,
                &[
                    Flag("task", Word),
                    Flag("noise", Number(0.0, 2.0)),
                    Flag("method", Word),
                    Flag("ddrm-eta", Number(0.0, 1.0)),
                    Flag("ddrm-eta-b", Number(0.0, 1.0)),
                    Flag("data-std", Number(1e-3, 100.0)),
                    Flag("mask-seed", Number(0.0, SEED_MAX)),
                ],
            ],
            Kind::Interpolate => vec![
                SAMPLER,
                DRAW,
                &[Flag("seeds", List(2, SEED_MAX)), Flag("frames", Number(2.0, 32.0))],
            ],
            Kind::Lab => vec![
                SAMPLER,
                &[
                    Flag("target", Word),
                    Flag("data-mean", Number(-100.0, 100.0)),
                    Flag("data-std", Number(1e-3, 100.0)),
                    Flag("components", Number(1.0, 64.0)),
                    Flag("means", List(16, 100.0)),
                    Flag("weights", List(16, 1e3)),
                    Flag("samples", Number(2.0, 262_144.0)),
                    Flag("sweep", Word),
                    Flag("sweep-steps", List(10, 1000.0)),
                    Flag("schedule", Word),
                    Flag("timesteps", Number(1.0, 10_000.0)),
                    Flag("beta-start", Number(0.0, 1.0)),
                    Flag("beta-end", Number(0.0, 1.0)),
                    Flag("zero-terminal-snr", Switch),
                ],
            ],
        }
    }
}

/// Longest text value; class names, sampler names and lists fit.
const MAX_TEXT: usize = 80;

/// The flags of `settings` (a JSON object of flag name to value) as `--name=value` words, sorted by name: a
/// number or a string is a value, `true` a bare flag, `false` and null leave it out. The `=` form keeps
/// negative numbers values.
pub fn flags(kind: Kind, settings: &Value) -> Result<Vec<String>, String> {
    let Some(map) = settings.as_object() else {
        return Err("settings must be a JSON object of flag names and values".into());
    };
    let allowed = kind.flags();
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Some(&Flag(_, rule)) = allowed.iter().flat_map(|g| g.iter()).find(|f| f.0 == name) else {
            return Err(format!("'{name}' is not a setting of {kind:?} jobs"));
        };
        match value {
            Value::Null | Value::Bool(false) => {}
            Value::Bool(true) if matches!(rule, Rule::Switch) => out.push(format!("--{name}")),
            Value::Number(_) | Value::String(_) => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                check(name, rule, &text)?;
                out.push(format!("--{name}={text}"));
            }
            _ => return Err(format!("{name}: not a value this setting takes")),
        }
    }
    if map.get("data").is_some_and(|v| !v.is_null()) && map.get("limit").is_none_or(Value::is_null) {
        return Err("held-out inputs (data) need a limit of at most 64".into());
    }
    Ok(out)
}

/// Checks one value against its flag's rule.
fn check(name: &str, rule: Rule, text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT || !text.chars().all(safe_char) {
        return Err(format!(
            "{name}: values are at most {MAX_TEXT} letters, digits, spaces and , . : _ + -"
        ));
    }
    let number = |t: &str, lo: f64, hi: f64| -> Result<(), String> {
        match t.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(()),
            _ => Err(format!("{name}: '{t}' is not a number from {lo} to {hi}")),
        }
    };
    match rule {
        Rule::Switch => Err(format!("{name}: takes true or false")),
        Rule::Number(lo, hi) => number(text, lo, hi),
        Rule::List(len, max) => {
            let parts: Vec<&str> = text.split(',').collect();
            if parts.len() > len {
                return Err(format!("{name}: at most {len} numbers"));
            }
            parts.iter().try_for_each(|p| number(p, -max, max))
        }
        Rule::DataSet if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => Ok(()),
        Rule::DataSet => Err(format!("{name}: a data set's name (digits, mnist, …), not a path")),
        Rule::Mask if !text.contains('.') => Ok(()),
        Rule::Mask => Err(format!(
            "{name}: a named mask (box:x,y,w,h, left-half, center:r); draw or upload a PNG"
        )),
        Rule::Word => known_name(name, text),
        Rule::Text => Ok(()),
    }
}

/// Names the library knows, checked here so that a misspelt one is refused with the request rather than
/// failing the job afterwards (clap takes these flags as plain strings).
fn known_name(flag: &str, value: &str) -> Result<(), String> {
    use diffuse_math::{Grid, Sde, TimestepSpacing};
    let listed = |names: &str| {
        names
            .split(", ")
            .any(|n| n == value)
            .then_some(())
            .ok_or_else(|| format!("{flag}: unknown '{value}' (expected one of: {names})"))
    };
    match flag {
        "sampler" => diffuse::sample::Method::from_name(value)
            .map(drop)
            .map_err(|e| format!("{flag}: {e}")),
        "time-grid" => listed(Grid::NAMES),
        "timestep-spacing" => value
            .parse::<TimestepSpacing>()
            .map(drop)
            .map_err(|e| format!("{flag}: {e}")),
        "sde" => value.parse::<Sde>().map(drop).map_err(|e| format!("{flag}: {e}")),
        "task" => diffuse::restore::Task::parse(value)
            .map(drop)
            .map_err(|e| format!("{flag}: {e}")),
        "method" => value
            .parse::<diffuse::restore::Solver>()
            .map(drop)
            .map_err(|e| format!("{flag}: {e}")),
        _ => Ok(()),
    }
}

/// No path separators, quotes or shell characters: a value can name nothing on disk.
fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ,.:_+-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_become_flags() {
        let f = flags(
            Kind::Sample,
            &json!({"sampler": "ddim", "steps": 20, "eta": 0.5, "no-clip": true, "class": null, "seed": 7}),
        )
        .unwrap();
        assert_eq!(
            f,
            ["--eta=0.5", "--no-clip", "--sampler=ddim", "--seed=7", "--steps=20"]
        );
        let lab = flags(Kind::Lab, &json!({"data-mean": -1.5, "means": "-1,1.5"})).unwrap();
        assert_eq!(lab, ["--data-mean=-1.5", "--means=-1,1.5"]);
    }

    #[test]
    fn paths_unknown_flags_and_huge_numbers_are_refused() {
        let bad = [
            json!({"out-dir": "x"}),
            json!({"grid": "a.png"}),
            json!({"run": "runs/digits"}),
            json!({"mask": "../../etc/passwd"}),
            json!({"data": "mnist:/etc"}),
            json!({"data": "mnist:..", "limit": 4}),
            json!({"data": "mnist"}),
            json!({"mask": "x.png"}),
            json!({"pad": "99999999"}),
            json!({"pad": "1,2,3,4,5"}),
            json!({"rtol": 0}),
            json!({"no-clip": "yes"}),
            json!({"n": true}),
            json!({"n": 1e9}),
            json!({"n": "100000"}),
            json!({"steps": 1001}),
            json!({"sampler": ["ddim"]}),
            json!({"sampler": {"a": 1}}),
            json!({"sampler": "a\"; rm -rf /"}),
            json!({"sampler": "x".repeat(200)}),
            json!({"sampler": "warp-drive"}),
            json!({"time-grid": "spiral"}),
            json!({"sde": "vp:1,2,3,4"}),
            json!({"strength": 0.5}),
            json!([1, 2]),
            json!("sample"),
        ];
        for b in bad {
            for kind in [Kind::Sample, Kind::Inpaint, Kind::Outpaint] {
                assert!(flags(kind, &b).is_err(), "{b} passed for {kind:?}");
            }
        }
        assert!(flags(Kind::Lab, &json!({"sweep-steps": "10,100000"})).is_err());
        assert!(flags(Kind::Inpaint, &json!({"data": "mnist", "limit": 8})).is_ok());
        assert!(flags(Kind::Outpaint, &json!({"pad": "1,2,3,4"})).is_ok());
        assert!(flags(Kind::Sdedit, &json!({"strength": 0.5})).is_ok());
        assert!(flags(Kind::Inpaint, &json!({"mask": "box:1,1,4,4"})).is_ok());
    }
}
