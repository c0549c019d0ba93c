//! Trying a mechanism for real: a memory cgroup of our own, or a systemd scope whose limits a
//! small command must see from inside, as the caller.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::limit::{create_cgroup, unit_name, LocalLimit, Manager, SystemdScope};
use crate::config::ByteSize;

/// How long a probe may take: systemd answers in milliseconds, a hung bus must not hang us.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The limit a probe asks for.
pub(super) const PROBE_LIMIT: ByteSize = ByteSize::from_bytes(64 << 20);
/// The first systemd that takes `OOMPolicy=` for scopes.
const SCOPE_OOM_POLICY_SINCE: u32 = 253;

/// A memory cgroup of our own, created with a limit and removed again.
pub(super) fn try_cgroup() -> Result<LocalLimit> {
    let created = create_cgroup(&probe_name(), PROBE_LIMIT)?;
    Ok(LocalLimit::Cgroup { version: created.cgroup.version })
}

/// A name no other probe of this process uses (tests probe in parallel).
fn probe_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("memrepro-probe-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Run inside a probe's scope: the scope's cgroup directory, who runs there, and the limits it
/// holds, read back from the kernel (cgroup v2; `absent` where swap is not accounted).
const SCOPE_PROBE: &str = r#"while IFS=: read -r n controllers path; do
  if [ "$n" = 0 ]; then break; fi
done < /proc/self/cgroup
if [ "$n" != 0 ]; then echo "no cgroup v2 membership in /proc/self/cgroup" >&2; exit 1; fi
dir="/sys/fs/cgroup$path"
echo "$dir"
id -u
id -G
cat "$dir/memory.max" || exit 1
cat "$dir/memory.swap.max" 2>/dev/null || echo absent"#;

/// Tries a scope of `manager` for real: a small command in a scope with a limit, which must find
/// itself in that scope, as the caller, under that limit with swap off.
pub(super) fn probe_scope(manager: Manager) -> Result<LocalLimit> {
    let version_text = output_within(&["systemd-run".into(), "--version".into()], PROBE_TIMEOUT)?;
    let version = systemd_version(&version_text)?;
    let scope = SystemdScope { manager, oom_policy: version >= SCOPE_OOM_POLICY_SINCE };
    let unit = unit_name(&probe_name());
    let argv = scope.command(&unit, PROBE_LIMIT, Path::new("sh"), &["-c".into(), SCOPE_PROBE.into()]);
    let seen = output_within(&argv, PROBE_TIMEOUT)?;
    check_scope_probe(&seen, &unit, PROBE_LIMIT, &Credentials::of_this_process()?)?;
    Ok(LocalLimit::Scope(scope))
}

/// The version in `systemd-run --version`'s first line (`systemd 255 (255.4-1ubuntu8)`).
fn systemd_version(text: &str) -> Result<u32> {
    let first = text.lines().next().unwrap_or("");
    first
        .strip_prefix("systemd ")
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("`systemd-run --version` printed no version: `{first}`"))
}

/// Checks what [`SCOPE_PROBE`] printed in scope `unit`, asked for `limit`, started by `caller`.
fn check_scope_probe(seen: &str, unit: &str, limit: ByteSize, caller: &Credentials) -> Result<()> {
    let lines: Vec<&str> = seen.lines().map(str::trim).collect();
    let [dir, uid, groups, memory_max, swap_max] = lines[..] else {
        bail!("the probe in the scope printed `{}`, not its cgroup, ids and limits", lines.join(" | "));
    };
    if !dir.ends_with(&format!("/{unit}")) {
        bail!("the probe ran in {dir}, not in the scope {unit}");
    }
    if uid.parse() != Ok(caller.uid) {
        bail!("the scope ran the probe as uid {uid}, not as the caller (uid {})", caller.uid);
    }
    let groups: BTreeSet<u32> = groups.split_whitespace().filter_map(|g| g.parse().ok()).collect();
    if groups != caller.all_groups() {
        bail!("the scope ran the probe in groups {groups:?}, not in the caller's {:?}", caller.all_groups());
    }
    if memory_max.parse() != Ok(limit.bytes()) {
        bail!("MemoryMax={} did not reach the scope's cgroup: {dir}/memory.max is `{memory_max}`", limit.bytes());
    }
    if !matches!(swap_max, "0" | "absent") {
        bail!("MemorySwapMax=0 did not reach the scope's cgroup: {dir}/memory.swap.max is `{swap_max}`");
    }
    Ok(())
}

/// The ids a process runs with, from `/proc/self/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Credentials {
    pub(super) uid: u32,
    pub(super) gid: u32,
    supplementary: BTreeSet<u32>,
}

impl Credentials {
    pub(super) fn of_this_process() -> Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        Self::parse(&status).context("/proc/self/status has no Uid, Gid or Groups line")
    }

    /// The real ids of a `/proc/<pid>/status` text.
    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| status.lines().find_map(|line| line.strip_prefix(name));
        let first = |name: &str| field(name)?.split_whitespace().next()?.parse().ok();
        let supplementary = field("Groups:")?.split_whitespace().filter_map(|g| g.parse().ok()).collect();
        Some(Self { uid: first("Uid:")?, gid: first("Gid:")?, supplementary })
    }

    /// The primary group and the supplementary ones, as `id -G` lists them.
    fn all_groups(&self) -> BTreeSet<u32> {
        let mut groups = self.supplementary.clone();
        groups.insert(self.gid);
        groups
    }
}

/// Runs `argv` to its end within `timeout`: its stdout, or why it failed, on one line.
fn output_within(argv: &[String], timeout: Duration) -> Result<String> {
    let shown = shown(argv);
    let mut child = match Command::new(&argv[0])
        .args(&argv[1..])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!("`{}` is not installed", argv[0]),
        Err(error) => return Err(error).with_context(|| format!("starting `{shown}`")),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for `{shown}`"))? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).stderr(Stdio::null()).status();
            bail!("`{shown}` did not finish within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().expect("piped").read_to_string(&mut stdout)?;
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    if !status.success() {
        let said: Vec<&str> = stderr.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        bail!("`{shown}` failed ({status}): {}", if said.is_empty() { "it said nothing".into() } else { said.join("; ") });
    }
    Ok(stdout)
}

/// A command line for a message: up to the program after `--` (a probe's script is left out).
fn shown(argv: &[String]) -> String {
    match argv.iter().position(|arg| arg == "--") {
        Some(end) if end + 2 < argv.len() => format!("{} …", argv[..end + 2].join(" ")),
        _ => argv.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use cgroup::Cgroup;
    use schema::SwapState;

    #[test]
    fn oom_policy_is_set_where_systemd_takes_it_for_scopes() {
        assert_eq!(systemd_version("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT\n").unwrap(), 252);
        assert_eq!(systemd_version("systemd 255 (255.4-1ubuntu8.11)\n").unwrap(), 255);
        assert_eq!(format!("{:#}", systemd_version("").unwrap_err()), "`systemd-run --version` printed no version: ``");
    }

    #[test]
    fn a_scope_probe_must_see_its_scope_the_caller_and_both_limits() {
        let caller = Credentials { uid: 1001, gid: 118, supplementary: [4, 118, 999].into() };
        let unit = "memrepro-probe-9-0.scope";
        let dir = "/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service/app.slice/memrepro-probe-9-0.scope";
        let check = |dir: &str, uid: &str, groups: &str, max: &str, swap: &str| {
            check_scope_probe(&format!("{dir}\n{uid}\n{groups}\n{max}\n{swap}\n"), unit, PROBE_LIMIT, &caller).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(check(dir, "1001", "118 4 999", "67108864", "0"), Ok(()));
        assert_eq!(check(dir, "1001", "118 4 999", "67108864", "absent"), Ok(()), "no swap accounting: the run's read-back decides");
        assert_eq!(check("/sys/fs/cgroup/system.slice/x.scope", "1001", "118 4 999", "67108864", "0"), Err(format!("the probe ran in /sys/fs/cgroup/system.slice/x.scope, not in the scope {unit}")));
        assert_eq!(check(dir, "0", "118 4 999", "67108864", "0"), Err("the scope ran the probe as uid 0, not as the caller (uid 1001)".into()));
        assert_eq!(check(dir, "1001", "118 0", "67108864", "0"), Err("the scope ran the probe in groups {0, 118}, not in the caller's {4, 118, 999}".into()));
        assert_eq!(check(dir, "1001", "118 4 999", "max", "0"), Err(format!("MemoryMax=67108864 did not reach the scope's cgroup: {dir}/memory.max is `max`")));
        assert_eq!(check(dir, "1001", "118 4 999", "67108864", "max"), Err(format!("MemorySwapMax=0 did not reach the scope's cgroup: {dir}/memory.swap.max is `max`")));
        assert_eq!(
            check_scope_probe("cat: x: No such file\n", unit, PROBE_LIMIT, &caller).map_err(|e| e.to_string()),
            Err("the probe in the scope printed `cat: x: No such file`, not its cgroup, ids and limits".into())
        );
    }

    #[test]
    fn the_callers_ids_come_from_proc_status() {
        let status = "Name:\tcat\nUid:\t1001\t1001\t1001\t1001\nGid:\t118\t118\t118\t118\nGroups:\t4 118 999 \n";
        assert_eq!(Credentials::parse(status), Some(Credentials { uid: 1001, gid: 118, supplementary: [4, 118, 999].into() }));
        assert_eq!(Credentials::parse("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n").unwrap().all_groups(), BTreeSet::from([0]));
        assert!(Credentials::of_this_process().is_ok());
    }

    /// Inside a scope the runner's watcher reads its own cgroup, as systemd lays it out: the
    /// scope's v2 directory, and its memory.max, memory.swap.max, memory.peak and memory.events.
    #[test]
    fn the_runner_finds_a_systemd_scope_as_its_cgroup_and_reads_its_evidence_there() {
        for scope in [
            "user.slice/user-1001.slice/user@1001.service/app.slice/memrepro-7-0-low.scope",
            "system.slice/memrepro-7-0-low.scope",
        ] {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join(scope);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, content) in [
                ("memory.max", "536870912\n"),
                ("memory.swap.max", "0\n"),
                ("memory.peak", "536870912\n"),
                ("memory.events", "low 0\nhigh 0\nmax 212\noom 1\noom_kill 1\noom_group_kill 0\n"),
            ] {
                std::fs::write(dir.join(file), content).unwrap();
            }
            // The root of a v2 hierarchy has no memory.max: nothing to fall back to by mistake.
            std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
            let cgroup = Cgroup::find(root.path(), &format!("0::/{scope}\n")).unwrap();
            assert_eq!((cgroup.version, &cgroup.dir), (2, &dir));
            assert_eq!((cgroup.limit(), cgroup.peak()), (Some(512 << 20), Some(512 << 20)));
            assert_eq!(cgroup.swap(), SwapState::Off { because: "memory.swap.max = 0".into() });
            assert_eq!(cgroup.events(), schema::CgroupEvents { limit_hits: Some(212), ooms: Some(1), oom_kills: Some(1) });
        }
    }
}
