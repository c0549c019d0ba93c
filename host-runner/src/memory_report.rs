//! What memory this process may use and has used, read from the kernel: the cgroup's limit and
//! peak (v2 or v1), and our own peak RSS. Read, never assumed: `None` where unreadable.

use std::fs;
use std::path::{Path, PathBuf};

use schema::MemoryReport;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// cgroup v1 reports "no limit" as a page-rounded i64::MAX.
const V1_UNLIMITED_ABOVE: u64 = 1 << 62;

pub fn memory_report(wasm_memory_bytes: u64) -> MemoryReport {
    let cgroup = Cgroup::of_this_process();
    MemoryReport {
        cgroup_version: cgroup.as_ref().map(|c| c.version),
        cgroup_limit_bytes: cgroup.as_ref().and_then(Cgroup::limit),
        cgroup_peak_bytes: cgroup.as_ref().and_then(Cgroup::peak),
        peak_rss_bytes: peak_rss(),
        address_space_limit_bytes: address_space_limit(),
        wasm_memory_bytes,
    }
}

/// The memory cgroup directory this process is accounted in.
pub struct Cgroup {
    pub version: u8,
    pub dir: PathBuf,
}

impl Cgroup {
    pub fn of_this_process() -> Option<Self> {
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::find(Path::new(CGROUP_ROOT), &membership)
    }

    /// Resolves `/proc/self/cgroup` lines against the mounted hierarchy. Inside a container the
    /// listed path may be the host's while the container sees its own cgroup at the mount root,
    /// so the mount root is the fallback.
    fn find(root: &Path, membership: &str) -> Option<Self> {
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

    pub fn limit(&self) -> Option<u64> {
        match self.version {
            2 => read_number(&self.dir.join("memory.max")),
            _ => read_number(&self.dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED_ABOVE),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            2 => "memory.events",
            _ => "memory.oom_control",
        };
        let text = fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
    }

    /// Current usage (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    pub fn usage(&self) -> Option<u64> {
        match self.version {
            2 => read_number(&self.dir.join("memory.current")),
            _ => read_number(&self.dir.join("memory.usage_in_bytes")),
        }
    }

    pub fn peak(&self) -> Option<u64> {
        match self.version {
            2 => read_number(&self.dir.join("memory.peak")),
            _ => read_number(&self.dir.join("memory.max_usage_in_bytes")),
        }
    }
}

/// A cgroup file holding one number; "max" (v2's unlimited) reads as `None`.
fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
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
        .find_map(|file| read_number(&Path::new(CGROUP_ROOT).join(file)));
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

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// `VmHWM` from /proc/self/status, in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
    fn counts_oom_kills_in_v1_and_v2() {
        let root = fake_root(&[
            ("memory/memory.limit_in_bytes", "1\n"),
            ("memory/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
        ]);
        assert_eq!(Cgroup::find(root.path(), "4:memory:/\n").unwrap().oom_kills(), Some(2));
        assert_eq!(Cgroup::find(root.path(), "0::/\n").unwrap().oom_kills(), Some(1));
    }

    #[test]
    fn v1_unlimited_reads_as_none() {
        let root = fake_root(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(Cgroup::find(root.path(), "4:memory:/\n").unwrap().limit(), None);
    }

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
