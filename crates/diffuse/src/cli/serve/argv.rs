//! A studio request as the command line that does the same: each kind of job is a subcommand, and the page's
//! settings are that subcommand's flags. Only the flags listed here pass, each value checked before clap sees
//! it: none names a path (the server sets every path, under its output folder), and numbers that size the work
//! are capped, so that a request cannot write elsewhere or ask for hours of work.

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
    Interpolate,
    Lab,
}

/// A flag a request may set, and the largest value it may take (numbers only).
struct Flag(&'static str, Option<f64>);

/// Flags of every sampler (`SamplerArgs`).
const SAMPLER: &[Flag] = &[
    Flag("sampler", None),
    Flag("steps", Some(1000.0)),
    Flag("time-grid", None),
    Flag("shift", Some(100.0)),
    Flag("s-churn", Some(1000.0)),
    Flag("s-noise", Some(10.0)),
    Flag("timestep-spacing", None),
    Flag("rho", Some(100.0)),
    Flag("sigma-min", Some(1e4)),
    Flag("sigma-max", Some(1e4)),
    Flag("sde", None),
    Flag("eta", Some(10.0)),
    Flag("variance", None),
    Flag("predictor", None),
    Flag("corrector-steps", Some(10.0)),
    Flag("snr", Some(10.0)),
    Flag("ode-solver", None),
    Flag("rtol", Some(1.0)),
    Flag("atol", Some(1.0)),
    Flag("seed", Some(u32::MAX as f64)),
];

/// Flags of drawing from a run (`DrawArgs` less the run and the sampler).
const DRAW: &[Flag] = &[
    Flag("class", None),
    Flag("guidance", Some(100.0)),
    Flag("guidance-interval", None),
    Flag("guidance-rescale", Some(1.0)),
    Flag("batch-size", Some(256.0)),
    Flag("weights", None),
    Flag("precision", None),
];

/// Picking held-out inputs instead of uploading one (`Inputs` less --input).
const INPUTS: &[Flag] = &[Flag("data", None), Flag("of-class", None), Flag("limit", Some(64.0))];

const REPAINT: &[Flag] = &[Flag("resample", Some(10.0)), Flag("jump-length", Some(100.0))];

impl Kind {
    /// The subcommand's words after `diffuse`.
    pub fn subcommand(self) -> &'static [&'static str] {
        match self {
            Kind::Sample => &["sample"],
            Kind::Inpaint => &["edit", "inpaint"],
            Kind::Outpaint => &["edit", "outpaint"],
            Kind::Sdedit => &["edit", "sdedit"],
            Kind::Interpolate => &["edit", "interpolate"],
            Kind::Lab => &["lab"],
        }
    }

    /// Whether the job draws from a run (every kind but the lab, whose denoiser is exact).
    pub fn needs_run(self) -> bool {
        self != Kind::Lab
    }

    /// Whether the job edits input images (an upload, or --data's held-out ones).
    pub fn takes_inputs(self) -> bool {
        matches!(self, Kind::Inpaint | Kind::Outpaint | Kind::Sdedit)
    }

    fn flags(self) -> Vec<&'static [Flag]> {
        match self {
            Kind::Sample => vec![SAMPLER, DRAW, &[Flag("n", Some(256.0)), Flag("no-clip", None)]],
            Kind::Inpaint => vec![
                SAMPLER,
                DRAW,
                INPUTS,
                REPAINT,
                &[Flag("mask", None), Flag("naive", None)],
            ],
            Kind::Outpaint => vec![SAMPLER, DRAW, INPUTS, REPAINT, &[Flag("pad", None)]],
            Kind::Sdedit => vec![SAMPLER, DRAW, INPUTS, &[Flag("strength", Some(1.0))]],
            Kind::Interpolate => vec![SAMPLER, DRAW, &[Flag("seeds", None), Flag("frames", Some(32.0))]],
            Kind::Lab => vec![
                SAMPLER,
                &[
                    Flag("target", None),
                    Flag("data-mean", Some(100.0)),
                    Flag("data-std", Some(100.0)),
                    Flag("components", Some(64.0)),
                    Flag("means", None),
                    Flag("weights", None),
                    Flag("samples", Some(262_144.0)),
                    Flag("sweep", None),
                    Flag("sweep-steps", None),
                    Flag("schedule", None),
                    Flag("timesteps", Some(10_000.0)),
                    Flag("beta-start", Some(1.0)),
                    Flag("beta-end", Some(1.0)),
                    Flag("zero-terminal-snr", None),
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
        let Some(Flag(_, max)) = allowed.iter().flat_map(|g| g.iter()).find(|f| f.0 == name) else {
            return Err(format!("'{name}' is not a setting of {kind:?} jobs"));
        };
        let text = match (value, max) {
            (Value::Null | Value::Bool(false), _) => continue,
            (Value::Bool(true), _) => {
                out.push(format!("--{name}"));
                continue;
            }
            (Value::Number(n), Some(max)) => {
                let x = n
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{name}: not a number"))?;
                if x.abs() > *max {
                    return Err(format!("{name}: {x} is beyond what the studio allows (±{max})"));
                }
                n.to_string()
            }
            (Value::String(s), _) => {
                if s.len() > MAX_TEXT || !s.chars().all(safe_char) {
                    return Err(format!(
                        "{name}: values are at most {MAX_TEXT} letters, digits, spaces and , . : _ + -"
                    ));
                }
                // A string where a capped number goes is checked as that number too.
                if let (Some(max), Ok(x)) = (max, s.trim().parse::<f64>())
                    && !(x.is_finite() && x.abs() <= *max)
                {
                    return Err(format!("{name}: {s} is beyond what the studio allows (±{max})"));
                }
                known_name(name, s)?;
                s.clone()
            }
            _ => return Err(format!("{name}: expected a number, a string or true")),
        };
        out.push(format!("--{name}={text}"));
    }
    Ok(out)
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
            assert!(flags(Kind::Sample, &b).is_err(), "{b} passed");
        }
        assert!(flags(Kind::Sdedit, &json!({"strength": 0.5})).is_ok());
        assert!(flags(Kind::Inpaint, &json!({"mask": "box:1,1,4,4"})).is_ok());
    }
}
