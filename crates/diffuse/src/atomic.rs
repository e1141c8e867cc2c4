//! Atomic file writes (temporary file in the same folder, fsync, rename; a reader or a resumed run sees the
//! old file or the new one, never half of one), and the JSON reading of the metadata files written so.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Reads a JSON file (a run's, classifier's or VAE's metadata), naming the file in errors.
/// Refuses an output folder that already holds files (or is a file), before any work: outputs of two commands
/// mixed in one folder cannot be told apart afterwards, and nothing there is overwritten.
pub fn require_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Config(format!("{} exists and is not a folder", dir.display())));
    }
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(Error::Config(format!(
            "{} already holds files; give a new or empty folder (nothing was written)",
            dir.display()
        )));
    }
    Ok(())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// The temporary name [`write`] uses for `name` in process `pid`.
fn temporary(name: &str, pid: u32) -> String {
    format!(".{name}.tmp{pid}")
}

/// Removes the temporary files an interrupted [`write`] left in `dir` (a killed run's half-written
/// checkpoint); for a folder no other process is writing to, such as a run being resumed.
pub fn remove_leftovers(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, pid)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp")) else {
            continue;
        };
        let ours = pid.parse::<u32>().is_ok_and(|pid| temporary(stem, pid) == name);
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(temporary(&name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every file system lets a folder be opened, so best effort.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("diffuse-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        super::write(&p, b"first version").unwrap();
        super::write(&p, b"2nd").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"2nd");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(super::write(&dir.join("missing/b.txt"), b"x").is_err());
        // What a killed writer leaves is removed; other dot files are not.
        for name in [".a.txt.tmp4242", ".a.txt.tmpx", ".keep"] {
            std::fs::write(dir.join(name), b"half").unwrap();
        }
        assert_eq!(super::remove_leftovers(&dir).unwrap(), 1);
        assert!(dir.join(".a.txt.tmpx").exists() && dir.join(".keep").exists());
        std::fs::remove_file(dir.join(".a.txt.tmpx")).unwrap();
        std::fs::remove_file(dir.join(".keep")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
