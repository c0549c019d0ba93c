//! This process and its limits, read from the kernel: what memory it may use and has used (its
//! cgroup, through the `cgroup` crate; its peak RSS; RLIMIT_AS, which it can also set), and the
//! sandbox as seen from inside. Read, never assumed: `None` where unreadable.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use cgroup::Cgroup;
use schema::{MemoryReport, SwapState};

pub fn memory_report(wasm_memory_bytes: u64, runner_rss_bytes: Option<u64>) -> MemoryReport {
    let cgroup = Cgroup::of_this_process();
    MemoryReport {
        cgroup_version: cgroup.as_ref().map(|c| c.version),
        cgroup_limit_bytes: cgroup.as_ref().and_then(Cgroup::limit),
        cgroup_peak_bytes: cgroup.as_ref().and_then(Cgroup::peak),
        peak_rss_bytes: peak_rss(),
        runner_rss_bytes,
        address_space_limit_bytes: address_space_limit(),
        wasm_memory_bytes,
        swap: cgroup.as_ref().map_or(SwapState::Unknown, Cgroup::swap),
    }
}

/// What this process can see of its confinement (see `schema::SandboxReport`).
pub fn sandbox_report() -> schema::SandboxReport {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| status.lines().find_map(|line| line.strip_prefix(name)).map(str::trim).map(String::from);
    let first_id = |name: &str| field(name).and_then(|ids| ids.split_whitespace().next()?.parse().ok());
    let network_interfaces = fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_string()))
        .collect();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root_read_only = mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(4) == Some(&"/")).then(|| fields.get(5).is_some_and(|options| options.split(',').any(|o| o == "ro")))
    });
    let pids_limit = ["pids/pids.max", "pids.max"]
        .iter()
        .find_map(|file| fs::read_to_string(Path::new(cgroup::ROOT).join(file)).ok()?.trim().parse().ok());
    schema::SandboxReport {
        uid: first_id("Uid:"),
        gid: first_id("Gid:"),
        capabilities: field("CapEff:"),
        network_interfaces,
        root_read_only,
        pids_limit,
    }
}

/// The soft RLIMIT_AS from /proc/self/limits; `None` when unlimited.
pub fn address_space_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max address space"))?;
    line.trim_start_matches("Max address space").split_whitespace().next()?.parse().ok()
}

/// `VmHWM` from /proc/self/status, in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The resident set now (`/proc/self/statm`'s second field, in pages): cheap enough to read
/// after every block (the file is opened once and read again from its start).
pub fn current_rss() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    static STATM: std::sync::OnceLock<Option<fs::File>> = std::sync::OnceLock::new();
    let file = STATM.get_or_init(|| fs::File::open("/proc/self/statm").ok()).as_ref()?;
    let mut buffer = [0; 256];
    let read = file.read_at(&mut buffer, 0).ok()?;
    let statm = std::str::from_utf8(&buffer[..read]).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    let page = *PAGE.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096));
    Some(pages * page)
}

/// Limits this process's address space (RLIMIT_AS), for hosts where the container engine cannot
/// (Docker has no `--ulimit as`).
pub fn limit_address_space(bytes: u64) -> Result<()> {
    let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on our memory.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        bail!("setrlimit(RLIMIT_AS, {bytes}) failed: {}", std::io::Error::last_os_error());
    }
    share_one_malloc_arena();
    Ok(())
}

/// One malloc arena for all threads. glibc makes up to 8 per core, each keeping what its threads
/// freed, so the runner's memory would depend on the host's core count and on which thread
/// allocated: measured over 25,000 blocks of the chain guest, 72 MiB with glibc's arenas, 63 MiB
/// with one (no slower). Under RLIMIT_AS it matters more: each arena reserves 64 MiB of address
/// space, and which thread first allocated decided whether RocksDB could start its threads in a
/// tight limit (seen: a 512 MiB limit aborted the runner in some runs and not in others). Call
/// before threads start.
pub fn share_one_malloc_arena() {
    // SAFETY: mallopt only changes the allocator's tuning for arenas created from now on.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Raises the soft RLIMIT_NOFILE to the hard one (as a shell's `ulimit -n unlimited` would): the
/// table files RocksDB may keep open follow the soft limit (`state::rocks::table_files`).
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Milliseconds since `started`.
pub fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_sees_its_own_ids_and_interfaces() {
        let sandbox = sandbox_report();
        assert!(sandbox.uid.is_some() && sandbox.gid.is_some());
        assert!(sandbox.network_interfaces.contains(&"lo".to_string()), "{sandbox:?}");
        assert_eq!(sandbox.capabilities.as_ref().map(String::len), Some(16));
        assert!(sandbox.root_read_only.is_some());
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss().unwrap() > 0);
    }
}
