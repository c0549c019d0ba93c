//! Run directories: a new one for each command run, and the JSON files runs leave in them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `target/repro/<UTC timestamp>/`, unique even for two runs in the same second.
pub fn new_run_dir(base: PathBuf) -> Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "");
    for attempt in 0.. {
        let dir = if attempt == 0 { base.join(&stamp) } else { base.join(format!("{stamp}-{attempt}")) };
        if !dir.exists() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(dir);
        }
    }
    unreachable!()
}

/// The file at `path` parsed by `parse`; `None` when there is no such file.
pub fn read_json<T, E: std::error::Error + Send + Sync + 'static>(path: &Path, parse: impl Fn(&str) -> Result<T, E>) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).with_context(|| format!("{} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
