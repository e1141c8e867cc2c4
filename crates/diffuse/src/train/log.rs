//! The loss log (`loss.csv`), its curve (`loss.png`) and the progress bar.

use crate::plot::{Axes, Series, line_plot, smooth};
use crate::{Error, Result};
use std::path::Path;

pub const LOSS_FILE: &str = "loss.csv";

#[derive(Clone, Debug, PartialEq)]
pub struct LossRow {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

pub fn write(dir: &Path, rows: &[LossRow], total_steps: usize) -> Result<()> {
    let mut csv = String::from("step,loss,lr,grad_norm\n");
    for r in rows {
        csv.push_str(&format!("{},{},{},{}\n", r.step, r.loss, r.lr, r.grad_norm));
    }
    crate::atomic::write(&dir.join(LOSS_FILE), csv.as_bytes())?;
    let raw: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    let window = (total_steps / 100).clamp(1, 200);
    let smoothed = smooth(&raw, window);
    let name = if window > 1 {
        format!("loss, mean of {window} steps")
    } else {
        "loss".to_string()
    };
    let series = [Series::new(&name, &smoothed)];
    let axes = Axes {
        x: "step",
        y: "training loss (log scale)",
        log_x: false,
        log_y: true,
    };
    crate::imageio::write_rgb(&dir.join("loss.png"), line_plot(&series, &axes))
}

pub fn read(dir: &Path) -> Result<Vec<LossRow>> {
    let path = dir.join(LOSS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            match (f.first().and_then(|v| v.parse().ok()), num(1), num(2), num(3)) {
                (Some(step), Some(loss), Some(lr), Some(grad_norm)) => Ok(LossRow {
                    step,
                    loss,
                    lr,
                    grad_norm,
                }),
                _ => Err(Error::Data(format!("{}: bad line '{line}'", path.display()))),
            }
        })
        .collect()
}

pub fn recent_mean(rows: &[LossRow], n: usize) -> f64 {
    let tail = &rows[rows.len().saturating_sub(n)..];
    tail.iter().map(|r| r.loss).sum::<f64>() / tail.len().max(1) as f64
}
