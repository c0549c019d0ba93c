//! Run directories: a new one for each command run, and the JSON files runs leave in them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `target/repro/<UTC timestamp>/`, unique even for two runs started in the same second (by
/// this process or another: the directory is created, never found free and then made).
pub fn new_run_dir(base: PathBuf) -> Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    for attempt in 0.. {
        let dir = if attempt == 0 { base.join(&stamp) } else { base.join(format!("{stamp}-{attempt}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!()
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside it, renamed): a file
/// `--resume` reads back is never found half written after a full disk or a kill.
pub fn write_atomically(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes.as_ref()).and_then(|()| file.as_file().sync_all()).with_context(|| format!("writing {}", path.display()))?;
    // Readable by a container's user, as a file written in place would be (a temporary file is 0600).
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The file at `path` parsed by `parse`; `None` when there is no such file.
pub fn read_json<T, E: std::error::Error + Send + Sync + 'static>(path: &Path, parse: impl Fn(&str) -> Result<T, E>) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).with_context(|| format!("{} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
