//! `repro --from-db PATH`: a node's database as the state every profile starts from. The source
//! is checked before anything is built (a RocksDB directory, readable, not held open by a
//! running node) and never written: each copy is what a RocksDB checkpoint is, its table files
//! (never changed once written) hard-linked where the filesystem allows, every other file
//! copied, and what the copy cost is said.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::units::mib;

/// A database to start from, checked.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub source: PathBuf,
    /// The height whose state to start from (default: its tip).
    pub at: Option<u32>,
    /// A metashrew-layout database's label.
    pub label: Option<String>,
}

impl Snapshot {
    /// `path`, checked: a RocksDB directory whose every file can be read, that no process holds
    /// open (a running node's WAL may be mid-write: stop the node or copy its database first).
    pub fn check(path: &Path, at: Option<u32>, label: Option<String>) -> Result<Self> {
        ensure!(path.join("CURRENT").is_file(), "--from-db {}: not a RocksDB database (no CURRENT file)", path.display());
        for entry in std::fs::read_dir(path).with_context(|| format!("--from-db {}: cannot read the directory", path.display()))? {
            let file = entry?.path();
            if file.is_file() {
                std::fs::File::open(&file).with_context(|| format!("--from-db {}: cannot read {}", path.display(), file.display()))?;
            }
        }
        if let Some(holder) = lock_holder(&path.join("LOCK"))? {
            bail!("--from-db {}: the database is open in process {holder} (its LOCK is held): stop the node, or copy its database and give the copy", path.display());
        }
        Ok(Self { source: std::path::absolute(path)?, at, label })
    }
}

/// The process holding a POSIX lock on `lock` (as RocksDB locks its LOCK file), from
/// /proc/locks; `None` when none does.
fn lock_holder(lock: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(lock) else { return Ok(None) };
    let (major, minor) = (libc_major(meta.dev()), libc_minor(meta.dev()));
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    Ok(locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == wanted)?;
        (fields.get(1) == Some(&"POSIX")).then(|| fields.get(at - 1).unwrap_or(&"?").to_string())
    }))
}

/// Linux's `major()` and `minor()` of a device number.
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff)
}

/// What a copy cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyCost {
    pub linked: u64,
    pub linked_bytes: u64,
    pub copied: u64,
    pub copied_bytes: u64,
}

impl std::fmt::Display for CopyCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} table files hard-linked ({}), {} files copied ({})", self.linked, mib(self.linked_bytes), self.copied, mib(self.copied_bytes))
    }
}

/// Copies the database in `from` to `to` (made): table files hard-linked when on the same
/// filesystem and readable by anyone (a link shares the source's permissions, which are never
/// changed), every other file copied and made readable and writable for the run.
pub fn link_copy(from: &Path, to: &Path) -> Result<CopyCost> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o777))?;
    let mut cost = CopyCost::default();
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let inner = link_copy(&source, &target)?;
            cost = CopyCost { linked: cost.linked + inner.linked, linked_bytes: cost.linked_bytes + inner.linked_bytes, copied: cost.copied + inner.copied, copied_bytes: cost.copied_bytes + inner.copied_bytes };
            continue;
        }
        let table = source.extension().is_some_and(|e| e == "sst") && meta.permissions().mode() & 0o004 != 0;
        if table && std::fs::hard_link(&source, &target).is_ok() {
            cost.linked += 1;
            cost.linked_bytes += meta.len();
            continue;
        }
        std::fs::copy(&source, &target).with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666))?;
        cost.copied += 1;
        cost.copied_bytes += meta.len();
    }
    Ok(cost)
}
