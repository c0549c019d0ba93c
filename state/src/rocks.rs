//! What both layouts ask of a RocksDB directory before opening it, and of the process: file
//! descriptors for its table files.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{Options, DB};

/// The column families of the RocksDB database in `dir`: metashrew keeps everything in
/// `default`, our layout has its own families.
pub fn column_families(dir: &Path) -> Result<Vec<String>> {
    anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
    DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))
}

/// Whether the database in `dir` is in one of metashrew's layouts (only `default`).
pub fn holds_a_metashrew_layout(dir: &Path) -> Result<bool> {
    Ok(column_families(dir)? == ["default"])
}

/// Table files RocksDB keeps open at most (each holds a little beside the block cache).
pub const TABLE_FILES: u64 = 256;
/// File descriptors kept for everything but table files: the standard streams, RocksDB's log,
/// WAL, manifest and the files a flush or compaction is writing, the guest, the block files,
/// a node's connections.
pub const RESERVED_FDS: u64 = 64;
/// Fewer table files than this and every read reopens files.
pub const MIN_TABLE_FILES: u64 = 16;

/// How many table files RocksDB may keep open in this process: [`TABLE_FILES`], or what its
/// RLIMIT_NOFILE leaves beside [`RESERVED_FDS`] when that is less. Too low a limit is an error
/// naming it, before anything is opened (RocksDB would fail later, mid-block, with EMFILE).
pub fn table_files() -> Result<i32> {
    let limit = open_files_limit();
    let table_files = limit.saturating_sub(RESERVED_FDS).min(TABLE_FILES);
    anyhow::ensure!(
        table_files >= MIN_TABLE_FILES,
        "this process may open {limit} files (RLIMIT_NOFILE), too few for RocksDB: it needs at least {} ({RESERVED_FDS} for its own files, logs, the blocks and connections, {MIN_TABLE_FILES} table files); raise it (`ulimit -n {}`, `docker run --ulimit nofile={}`)",
        RESERVED_FDS + MIN_TABLE_FILES,
        RESERVED_FDS + TABLE_FILES,
        RESERVED_FDS + TABLE_FILES
    );
    Ok(i32::try_from(table_files).expect("at most TABLE_FILES"))
}

/// The soft RLIMIT_NOFILE (files this process may have open at once).
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur as u64
}

/// An error caused by running out of file descriptors, explained: which limit, and how to raise it.
pub fn explain_out_of_files(error: anyhow::Error) -> anyhow::Error {
    let emfile = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.raw_os_error() == Some(libc::EMFILE)) || cause.to_string().contains("Too many open files")
    });
    match emfile {
        true => error.context(format!(
            "out of file descriptors: this process may open {} files (RLIMIT_NOFILE); raise it (`ulimit -n`, `docker run --ulimit nofile=N`)",
            open_files_limit()
        )),
        false => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_from_running_out_of_files_names_the_limit() {
        let rocks = anyhow::anyhow!("IO error: While open a file for random read: /db/000012.sst: Too many open files");
        let explained = format!("{:#}", explain_out_of_files(rocks.context("committing block 7")));
        assert!(explained.starts_with("out of file descriptors: this process may open ") && explained.contains("(RLIMIT_NOFILE)"), "{explained}");
        assert!(explained.ends_with("committing block 7: IO error: While open a file for random read: /db/000012.sst: Too many open files"), "{explained}");
        let os = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(format!("{:#}", explain_out_of_files(os)).starts_with("out of file descriptors"));
        let other = format!("{:#}", explain_out_of_files(anyhow::anyhow!("IO error: No space left on device")));
        assert_eq!(other, "IO error: No space left on device");
    }
}
