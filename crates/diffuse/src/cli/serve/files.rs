//! What the studio may show: the run directories and compare folders under the runs folder, and files under
//! it or the output folder, reached by relative paths that cannot leave them.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// How deep below the runs folder runs are looked for (runs/examples/ddpm/run is three down).
const DEPTH: usize = 3;

/// Folders under `root` (not `skip`, not hidden), to [`DEPTH`], with their names relative to `root`.
fn folders(root: &Path, skip: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf(), 0)];
    while let Some((name, dir, depth)) = stack.pop() {
        if depth > 0 {
            out.push((name.clone(), dir.clone()));
        }
        if depth == DEPTH || dir == skip {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let file_name = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            // Symbolic links are not followed: they could lead out of the runs folder.
            if file_name.starts_with('.') || p == skip || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let rel = if name.is_empty() {
                file_name
            } else {
                format!("{name}/{file_name}")
            };
            stack.push((rel, p, depth + 1));
        }
    }
    out.sort();
    out
}

/// Runs (folders with config.json and a checkpoint) and compare folders (with compare.json), as the page lists
/// them: each run's config and the pictures it has.
pub fn catalogue(root: &Path, skip: &Path) -> Value {
    let mut runs = Vec::new();
    let mut compares = Vec::new();
    for (name, dir) in folders(root, skip) {
        let has = |f: &str| dir.join(f).is_file();
        let url = |f: &str| has(f).then(|| format!("/files/runs/{name}/{f}"));
        if has("config.json") && has("checkpoint.safetensors") {
            let config = std::fs::read(dir.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            if let Some(config) = config {
                runs.push(json!({
                    "name": name,
                    "config": config,
                    "loss": url("loss.png"),
                    "samples": url("samples.png"),
                }));
            }
        } else if has("compare.json") {
            compares.push(json!({
                "name": name,
                "table": url("compare.md"),
                "plot": url("compare.png"),
            }));
        }
    }
    json!({ "runs": runs, "compares": compares })
}

/// The run named `name` in the catalogue: its folder and config. Only listed runs are found, so a name is never
/// a path.
pub fn find_run(root: &Path, skip: &Path, name: &str) -> Option<(PathBuf, Value)> {
    let (_, dir) = folders(root, skip).into_iter().find(|(n, _)| n == name)?;
    if !dir.join("checkpoint.safetensors").is_file() {
        return None;
    }
    let config = serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    Some((dir, config))
}

/// The file `rel` (slash-separated) under `root`, and its content type, when it is a served kind of file that
/// stays under `root` once links are resolved. No empty, `.`, `..` or hidden parts.
pub fn resolve(root: &Path, rel: &str) -> Option<(PathBuf, &'static str)> {
    if rel.len() > 1024 {
        return None;
    }
    let mut p = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part.starts_with('.') || part.contains(['\\', '\0', ':']) {
            return None;
        }
        p.push(part);
    }
    let kind = match p.extension()?.to_str()? {
        "png" => "image/png",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "md" | "txt" => "text/plain; charset=utf-8",
        "ply" => "text/plain; charset=utf-8",
        _ => return None,
    };
    let real = p.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some((real, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let base = std::env::temp_dir().join(format!("diffuse-serve-files-{}", std::process::id()));
        let root = base.join("runs");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/x.png"), b"png").unwrap();
        std::fs::write(root.join("a/secret.key"), b"k").unwrap();
        std::fs::write(base.join("outside.png"), b"o").unwrap();
        let root = root.canonicalize().unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(base.join("outside.png"), root.join("a/link.png")).unwrap();
        assert!(resolve(&root, "a/x.png").is_some());
        for bad in [
            "../outside.png",
            "a/../../outside.png",
            "a/./x.png",
            "/etc/passwd",
            "a//x.png",
            "a/secret.key",
            "a/link.png",
            "a\\..\\x.png",
            ".hidden.png",
            "",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad} was served");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
