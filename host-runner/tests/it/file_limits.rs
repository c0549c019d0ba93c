//! The runner under a low RLIMIT_NOFILE (what `docker run --ulimit nofile=` or a shell's
//! `ulimit -n` sets): it raises its soft limit to the hard one, sizes RocksDB's open table files
//! to what the limit leaves, and refuses a limit too low for any with an error naming it, before
//! anything is written: never a failure mid-block, never a retry.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// `command` with RLIMIT_NOFILE set to `soft`/`hard` in the child.
fn with_open_files(mut command: Command, soft: u64, hard: u64) -> Command {
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: soft, rlim_max: hard }) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    command
}

/// One stress block (10 x 1 MB) into `db` under the file limit `soft`/`hard`.
fn run_under(soft: u64, hard: u64, db: &std::path::Path) -> Run {
    let out = db.with_extension("json");
    let mut command = runner();
    command.args(["run", "--height", "1", "--payload", &hex_of(&stress_payload(1, 10, &[0]))]).arg("--wasm").arg(guest_wasm());
    command.arg("--db").arg(db).arg("--out").arg(&out);
    let output = with_open_files(command, soft, hard).output().unwrap();
    let result = std::fs::read_to_string(&out).ok().map(|t| schema::RunResult::from_json(&t).unwrap());
    Run { output, result }
}

#[test]
fn a_file_limit_too_low_for_rocksdb_is_refused_naming_it_before_anything_is_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let started = Instant::now();
    let run = run_under(40, 40, &db);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let expected = "this process may open 40 files (RLIMIT_NOFILE), too few for RocksDB: it needs at least 80 (64 for its own files, logs, the blocks and connections, 16 table files); raise it (`ulimit -n 320`, `docker run --ulimit nofile=320`)";
    assert!(run.stderr().contains(expected), "{}", run.stderr());
    assert!(started.elapsed() < Duration::from_secs(30), "refused at once, not retried: {:?}", started.elapsed());
    assert!(!db.join("CURRENT").exists(), "nothing written");
    Ok(())
}

#[test]
fn a_low_soft_limit_is_raised_and_a_low_hard_one_leaves_fewer_table_files_but_the_same_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    let unlimited = run_under(4096, 4096, &dir.path().join("unlimited"));
    assert_eq!(unlimited.code(), Some(0), "{}", unlimited.stderr());
    // A soft limit below the minimum is raised to the hard limit, as `ulimit -n` could.
    let raised = run_under(40, 4096, &dir.path().join("raised"));
    assert_eq!(raised.code(), Some(0), "{}", raised.stderr());
    // 96 files leave 32 table files: fewer kept open, the same state.
    let tight = run_under(96, 96, &dir.path().join("tight"));
    assert_eq!(tight.code(), Some(0), "{}", tight.stderr());
    for run in [&raised, &tight] {
        assert_eq!(run.result().state_root, unlimited.result().state_root);
        assert_eq!(run.result().dump, unlimited.result().dump);
    }
    Ok(())
}
