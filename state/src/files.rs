//! Writing a file whole or not at all.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    write_atomically_with(path, |file| Ok(file.write_all(text.as_bytes())?))
}

/// `write` fills a temporary file in `path`'s directory, which is synced and renamed to `path`.
/// A `path` that exists and is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written
/// in place: renaming over it would replace the device with a file.
pub fn write_atomically_with<T>(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<T>) -> Result<T> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        return write(&mut file);
    }
    let mut file = tempfile::NamedTempFile::new_in(directory_of(path))
        .with_context(|| format!("creating a temporary file in {}", directory_of(path).display()))?;
    let value = write(file.as_file_mut())?;
    file.as_file().sync_all()?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// The directory `path` is in (`.` for a bare file name): where its scratch files go, on the same
/// filesystem and not in a `/tmp` that may be memory.
pub fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_written_in_place_never_replaced() {
        write_atomically(Path::new("/dev/null"), "result").unwrap();
        let kind = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&kind), "/dev/null is still a device");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("result.json");
        write_atomically(&file, "one").unwrap();
        write_atomically(&file, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
    }
}
