//! Memory cgroups, read from the kernel and never assumed: the one place in the workspace that
//! knows cgroup v1 from v2. The runner reads its own cgroup (limit, peak, event counters, swap);
//! the xtask's local backend creates one per run ([`CreatedCgroup`]).
//!
//! | what | v2 | v1 |
//! |---|---|---|
//! | limit | `memory.max` | `memory.limit_in_bytes` |
//! | usage / peak | `memory.current` / `memory.peak` | `memory.usage_in_bytes` / `memory.max_usage_in_bytes` |
//! | limit hits | `memory.events` `max` | `memory.failcnt` + `memory.memsw.failcnt` (\*) |
//! | OOM killer invoked | `memory.events` `oom` | (no counter) |
//! | OOM kills | `memory.events` `oom_kill` | `memory.oom_control` `oom_kill` |
//! | swap | `memory.swap.max` | `memory.memsw.limit_in_bytes` − `memory.limit_in_bytes` |
//!
//! (\*) With swap limited to the memory limit, a v1 charge fails on the memory+swap counter
//! first, so `memory.failcnt` does not move, and kernel 6.18 (seen here) does not count
//! `memory.memsw.failcnt` either: an OOM kill at the limit left both at 0. What does show it is
//! the peak: `memory.max_usage_in_bytes` equal to the limit.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use schema::{CgroupEvents, SwapState};

pub const ROOT: &str = "/sys/fs/cgroup";
/// cgroup v1 reports "no limit" as a page-rounded i64::MAX.
const V1_UNLIMITED_ABOVE: u64 = 1 << 62;

/// The memory cgroup directory a process is accounted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// 1 or 2.
    pub version: u8,
    pub dir: PathBuf,
}

impl Cgroup {
    pub fn of_this_process() -> Option<Self> {
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::find(Path::new(ROOT), &membership)
    }

    /// The memory cgroup of process `pid` (a container's, say) as seen from outside it: its own
    /// directory only, never the hierarchy's root in its place (the fallback [`Cgroup::find`]
    /// makes for a process inside a container), so a process that is gone, or whose cgroup went
    /// with it, has none.
    pub fn of_process(pid: u32) -> Option<Self> {
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::find_own(Path::new(ROOT), &membership)
    }

    /// [`Cgroup::find`] without the fallback to the mount root.
    fn find_own(root: &Path, membership: &str) -> Option<Self> {
        let found = Self::find(root, membership)?;
        (found.dir != root && found.dir != root.join("memory")).then_some(found)
    }

    /// Resolves `/proc/self/cgroup` lines against the hierarchy mounted at `root`. Inside a
    /// container the listed path may be the host's while the container sees its own cgroup at
    /// the mount root, so the mount root is the fallback.
    pub fn find(root: &Path, membership: &str) -> Option<Self> {
        for line in membership.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let path = path.trim_start_matches('/');
            let (version, mount, probe) = if controllers.is_empty() {
                (2, root.to_path_buf(), "memory.max")
            } else if controllers.split(',').any(|c| c == "memory") {
                (1, root.join("memory"), "memory.limit_in_bytes")
            } else {
                continue;
            };
            for dir in [mount.join(path), mount.clone()] {
                if dir.join(probe).exists() {
                    return Some(Self { version, dir });
                }
            }
        }
        None
    }

    /// The memory limit; `None` when unlimited or unreadable.
    pub fn limit(&self) -> Option<u64> {
        match self.version {
            2 => self.number("memory.max"),
            _ => self.number("memory.limit_in_bytes").filter(|&l| l < V1_UNLIMITED_ABOVE),
        }
    }

    pub fn usage(&self) -> Option<u64> {
        self.number(if self.version == 2 { "memory.current" } else { "memory.usage_in_bytes" })
    }

    pub fn peak(&self) -> Option<u64> {
        self.number(if self.version == 2 { "memory.peak" } else { "memory.max_usage_in_bytes" })
    }

    /// The kernel's event counters as they stand now (see [`CgroupEvents::since`]).
    pub fn events(&self) -> CgroupEvents {
        let counter = |file: &str, name: &str| -> Option<u64> {
            let text = fs::read_to_string(self.dir.join(file)).ok()?;
            text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        };
        match self.version {
            2 => CgroupEvents {
                limit_hits: counter("memory.events", "max"),
                ooms: counter("memory.events", "oom"),
                oom_kills: counter("memory.events", "oom_kill"),
            },
            _ => CgroupEvents {
                limit_hits: self.number("memory.failcnt").map(|n| n + self.number("memory.memsw.failcnt").unwrap_or(0)),
                ooms: None,
                oom_kills: counter("memory.oom_control", "oom_kill"),
            },
        }
    }

    /// Whether this cgroup can swap. Without a swap limit file (no swap accounting) that depends
    /// on the host: with no swap device there is nothing to swap to.
    pub fn swap(&self) -> SwapState {
        self.swap_given(host_swap_total())
    }

    fn swap_given(&self, host_swap: Option<u64>) -> SwapState {
        // A cgroup allowed to swap on a host with no swap has nothing to swap to.
        match self.cgroup_swap(host_swap) {
            SwapState::Allowed { because, .. } if host_swap == Some(0) => {
                SwapState::Off { because: format!("{because}, but the host has no swap (SwapTotal 0)") }
            }
            state => state,
        }
    }

    /// What the cgroup's own swap limit says (the host's swap only where it has none).
    fn cgroup_swap(&self, host_swap: Option<u64>) -> SwapState {
        let limit_file = if self.version == 2 { "memory.swap.max" } else { "memory.memsw.limit_in_bytes" };
        let Ok(text) = fs::read_to_string(self.dir.join(limit_file)) else {
            return match host_swap {
                Some(0) => SwapState::Off { because: format!("no {limit_file} (swap not accounted), and the host has no swap (SwapTotal 0)") },
                Some(total) => SwapState::Allowed {
                    bytes: None,
                    because: format!("no {limit_file}: swap is not accounted, and the host has {} MiB of swap", total >> 20),
                },
                None => SwapState::Unknown,
            };
        };
        let text = text.trim();
        match (self.version, text.parse::<u64>().ok()) {
            (2, Some(0)) => SwapState::Off { because: "memory.swap.max = 0".into() },
            (2, Some(bytes)) => SwapState::Allowed { bytes: Some(bytes), because: format!("memory.swap.max = {bytes}") },
            (2, None) if text == "max" => SwapState::Allowed { bytes: None, because: "memory.swap.max = max".into() },
            (1, Some(memsw)) => match self.limit() {
                Some(limit) if memsw == limit => SwapState::Off { because: "memory.memsw.limit_in_bytes = memory.limit_in_bytes".into() },
                _ if memsw >= V1_UNLIMITED_ABOVE => {
                    SwapState::Allowed { bytes: None, because: "memory.memsw.limit_in_bytes is unlimited".into() }
                }
                Some(limit) => SwapState::Allowed {
                    bytes: Some(memsw.saturating_sub(limit)),
                    because: format!("memory.memsw.limit_in_bytes = {memsw}, memory.limit_in_bytes = {limit}"),
                },
                None => SwapState::Allowed { bytes: None, because: "no memory limit".into() },
            },
            _ => SwapState::Unknown,
        }
    }

    /// A cgroup file holding one number; "max" (v2's unlimited) reads as `None`.
    fn number(&self, file: &str) -> Option<u64> {
        fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }
}

/// The cgroup version whose memory controller is mounted at `root`.
pub fn mounted_version(root: &Path) -> Option<u8> {
    if root.join("cgroup.controllers").exists() {
        Some(2)
    } else if root.join("memory").is_dir() {
        Some(1)
    } else {
        None
    }
}

/// Where new memory cgroups go on this machine: the version and the directory to create them
/// in. v2 needs the memory controller enabled for the root's children (tried here).
pub fn hierarchy(root: &Path) -> Result<(u8, PathBuf)> {
    match mounted_version(root) {
        Some(2) => {
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
            Ok((2, root.to_path_buf()))
        }
        Some(_) => Ok((1, root.join("memory"))),
        None => bail!("no memory cgroup controller is mounted under {}", root.display()),
    }
}

/// A memory cgroup this process created with a limit and no swap; removed when dropped.
pub struct CreatedCgroup {
    pub cgroup: Cgroup,
}

impl CreatedCgroup {
    /// Creates `name` under the hierarchy at `root` with `limit` bytes and swap off. Where the
    /// swap limit file exists, failing to write it is an error; where it does not (swap not
    /// accounted), the run's own read-back ([`Cgroup::swap`]) decides whether it can be trusted.
    pub fn create(root: &Path, name: &str, limit: u64) -> Result<Self> {
        let (version, parent) = hierarchy(root)?;
        let dir = parent.join(name);
        fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        let created = Self { cgroup: Cgroup { version, dir } };
        let bytes = limit.to_string();
        let (limit_file, swap_file, swap_value) = match version {
            2 => ("memory.max", "memory.swap.max", "0"),
            _ => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", bytes.as_str()),
        };
        let dir = &created.cgroup.dir;
        fs::write(dir.join(limit_file), &bytes).with_context(|| format!("writing {limit_file} of {}", dir.display()))?;
        if dir.join(swap_file).exists() {
            fs::write(dir.join(swap_file), swap_value)
                .with_context(|| format!("turning swap off: writing {swap_value} to {swap_file} of {}", dir.display()))?;
        }
        Ok(created)
    }

    /// The file a process writes its pid to in order to join.
    pub fn procs_file(&self) -> PathBuf {
        self.cgroup.dir.join("cgroup.procs")
    }
}

impl Drop for CreatedCgroup {
    fn drop(&mut self) {
        // The last process may take a moment to leave after it exited.
        for _ in 0..50 {
            if fs::remove_dir(&self.cgroup.dir).is_ok() || !self.cgroup.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove cgroup {}", self.cgroup.dir.display());
    }
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    meminfo_bytes("MemAvailable:")
}

/// `SwapTotal` from /proc/meminfo, in bytes: the host's swap (containers see the host's).
pub fn host_swap_total() -> Option<u64> {
    meminfo_bytes("SwapTotal:")
}

fn meminfo_bytes(field: &str) -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        root
    }

    #[test]
    fn reads_a_v2_limit_and_treats_max_as_unlimited() {
        let root = fake_root(&[("a/memory.max", "536870912\n"), ("b/memory.max", "max\n")]);
        let limited = Cgroup::find(root.path(), "0::/a\n").unwrap();
        assert_eq!((limited.version, limited.limit()), (2, Some(536870912)));
        assert_eq!(Cgroup::find(root.path(), "0::/b\n").unwrap().limit(), None);
    }

    #[test]
    fn reads_a_v1_limit_falling_back_to_the_mount_root_inside_a_container() {
        let root = fake_root(&[
            ("memory/memory.limit_in_bytes", "4294967296\n"),
            ("memory/memory.max_usage_in_bytes", "1234\n"),
        ]);
        let cgroup = Cgroup::find(root.path(), "5:cpu:/x\n4:memory:/docker/abc\n").unwrap();
        assert_eq!((cgroup.version, cgroup.limit(), cgroup.peak()), (1, Some(4294967296), Some(1234)));
    }

    #[test]
    fn a_process_seen_from_outside_has_its_own_cgroup_or_none_never_the_root() {
        let root = fake_root(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert!(Cgroup::find(root.path(), "4:memory:/docker/abc\n").is_some(), "inside a container: the mount root");
        assert_eq!(Cgroup::find_own(root.path(), "4:memory:/docker/abc\n"), None, "from outside: gone, not the host's");
        let root = fake_root(&[("memory/memory.limit_in_bytes", "1\n"), ("memory/docker/abc/memory.limit_in_bytes", "536870912\n")]);
        assert_eq!(Cgroup::find_own(root.path(), "4:memory:/docker/abc\n").unwrap().limit(), Some(536870912));
        assert_eq!(Cgroup::of_process(u32::MAX), None);
    }

    #[test]
    fn v1_unlimited_reads_as_none() {
        let root = fake_root(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(Cgroup::find(root.path(), "4:memory:/\n").unwrap().limit(), None);
    }

    #[test]
    fn reads_limit_hits_ooms_and_oom_kills_in_v1_and_v2() {
        let root = fake_root(&[
            ("memory/memory.limit_in_bytes", "1\n"),
            ("memory/memory.failcnt", "17\n"),
            ("memory/memory.memsw.failcnt", "4\n"),
            ("memory/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
        ]);
        let v1 = Cgroup::find(root.path(), "4:memory:/\n").unwrap().events();
        assert_eq!(v1, CgroupEvents { limit_hits: Some(21), ooms: None, oom_kills: Some(2) });
        let v2 = Cgroup::find(root.path(), "0::/\n").unwrap().events();
        assert_eq!(v2, CgroupEvents { limit_hits: Some(3), ooms: Some(1), oom_kills: Some(1) });
    }

    fn swap(files: &[(&str, &str)], membership: &str, host_swap: Option<u64>) -> SwapState {
        let root = fake_root(files);
        Cgroup::find(root.path(), membership).unwrap().swap_given(host_swap)
    }

    #[test]
    fn swap_is_off_only_when_the_kernel_says_so() {
        let v2 = |swap_max: &str| swap(&[("memory.max", "100\n"), ("memory.swap.max", swap_max)], "0::/\n", Some(1 << 30));
        assert!(matches!(v2("0\n"), SwapState::Off { .. }));
        assert_eq!(v2("max\n"), SwapState::Allowed { bytes: None, because: "memory.swap.max = max".into() });
        assert!(matches!(v2("4096\n"), SwapState::Allowed { bytes: Some(4096), .. }));

        let v1 = |memsw: &str| swap(&[("memory/memory.limit_in_bytes", "1000\n"), ("memory/memory.memsw.limit_in_bytes", memsw)], "4:memory:/\n", Some(1 << 30));
        assert!(matches!(v1("1000\n"), SwapState::Off { .. }));
        assert!(matches!(v1("3000\n"), SwapState::Allowed { bytes: Some(2000), .. }));
        assert!(matches!(v1("9223372036854771712\n"), SwapState::Allowed { bytes: None, .. }));
    }

    #[test]
    fn without_swap_accounting_the_hosts_swap_decides() {
        let files = [("memory/memory.limit_in_bytes", "1000\n")];
        assert!(matches!(swap(&files, "4:memory:/\n", Some(0)), SwapState::Off { because } if because.contains("SwapTotal 0")));
        // A cgroup allowed to swap, on a host without swap: nothing to swap to.
        let unlimited = [("memory.max", "100\n"), ("memory.swap.max", "max\n")];
        assert!(matches!(swap(&unlimited, "0::/\n", Some(0)), SwapState::Off { .. }));
        assert!(matches!(swap(&files, "4:memory:/\n", Some(2 << 30)), SwapState::Allowed { bytes: None, because } if because.contains("2048 MiB of swap")));
        assert_eq!(swap(&files, "4:memory:/\n", None), SwapState::Unknown);
    }

    #[test]
    fn this_machine_reports_its_available_memory_and_swap() {
        assert!(mem_available().unwrap() > 0);
        assert!(host_swap_total().is_some());
    }
}
