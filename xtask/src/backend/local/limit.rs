//! What enforces a local run's limit, and the command lines of a systemd scope.

use std::path::Path;

use anyhow::Result;
use cgroup::CreatedCgroup;

use crate::config::ByteSize;

/// How the local backend enforces a limit on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalLimit {
    Cgroup { version: u8 },
    Scope(SystemdScope),
    AddressSpace,
}

/// A transient systemd scope per run, with `MemoryMax=` and `MemorySwapMax=0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemdScope {
    pub manager: Manager,
    /// Whether systemd takes `OOMPolicy=` for scopes (253 and later). There it must be
    /// `continue`: the default, `stop`, would stop the scope at the run's OOM kill, and with it
    /// the watcher that records the evidence. Older systemd does not act on a scope's OOM kill.
    pub oom_policy: bool,
}

/// Whose systemd creates the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The user's own manager (`systemd-run --user`).
    User,
    /// The system manager, through `sudo -n`; the scope's process runs as `uid`:`gid`.
    SystemViaSudo { uid: u32, gid: u32 },
}

impl LocalLimit {
    pub fn describe(self) -> String {
        match self {
            Self::Cgroup { version: 1 } => "a memory cgroup (v1 memory controller) created per run".into(),
            Self::Cgroup { .. } => "a memory cgroup (v2) created per run".into(),
            Self::Scope(SystemdScope { manager: Manager::User, .. }) => {
                "a systemd user scope per run (systemd-run --user --scope, MemoryMax, MemorySwapMax=0)".into()
            }
            Self::Scope(SystemdScope { manager: Manager::SystemViaSudo { uid, .. }, .. }) => format!(
                "a systemd system scope per run, created through sudo, the runner running as uid {uid} (systemd-run --scope, MemoryMax, MemorySwapMax=0)"
            ),
            Self::AddressSpace => "RLIMIT_AS on the runner (no memory cgroup or systemd scope was usable, or MEMREPRO_LOCAL_LIMIT=address-space): limits address space, not memory".into(),
        }
    }
}

impl SystemdScope {
    /// The command that runs `program args` in a new scope `unit` holding `limit`, swap off.
    /// With `--scope`, systemd-run moves itself into the scope and then becomes the command, so
    /// nothing runs outside the limit.
    pub fn command(self, unit: &str, limit: ByteSize, program: &Path, args: &[String]) -> Vec<String> {
        let mut argv: Vec<String> = match self.manager {
            Manager::User => vec!["systemd-run".into(), "--user".into()],
            // -P keeps the caller's supplementary groups: systemd-run --uid/--gid sets only the
            // user and the primary group, and would leave the command in root's groups.
            Manager::SystemViaSudo { .. } => ["sudo", "-n", "-P", "systemd-run"].map(String::from).to_vec(),
        };
        argv.extend(["--scope", "--quiet", "--collect"].map(String::from));
        argv.push(format!("--unit={unit}"));
        if let Manager::SystemViaSudo { uid, gid } = self.manager {
            argv.extend([format!("--uid={uid}"), format!("--gid={gid}")]);
        }
        argv.extend(["-p".into(), format!("MemoryMax={}", limit.bytes()), "-p".into(), "MemorySwapMax=0".into()]);
        if self.oom_policy {
            argv.extend(["-p", "OOMPolicy=continue"].map(String::from));
        }
        argv.push("--".into());
        argv.push(program.to_string_lossy().into_owned());
        argv.extend(args.iter().cloned());
        argv
    }

    /// The command that SIGKILLs every process of `unit`, whichever process group it is in.
    pub fn kill_command(self, unit: &str) -> Vec<String> {
        let argv: &[&str] = match self.manager {
            Manager::User => &["systemctl", "--user", "kill", "--signal=SIGKILL", unit],
            Manager::SystemViaSudo { .. } => &["sudo", "-n", "systemctl", "kill", "--signal=SIGKILL", unit],
        };
        argv.iter().map(|s| s.to_string()).collect()
    }
}

/// A memory cgroup for one run under the machine's hierarchy, with `limit` and no swap.
pub(super) fn create_cgroup(name: &str, limit: ByteSize) -> Result<CreatedCgroup> {
    CreatedCgroup::create(Path::new(cgroup::ROOT), name, limit.bytes())
}

/// The scope unit for a run `name`: the characters systemd does not take in a unit name become
/// `_`.
pub(super) fn unit_name(name: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || ":_.-".contains(c) { c } else { '_' }).collect();
    format!("{name}.scope")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|s| s.to_string()).collect()
    }

    /// The systemd scopes cannot run on the machines this is developed on (no systemd): their
    /// command lines are checked here word for word, the scopes themselves where systemd runs.
    #[test]
    fn a_user_scope_runs_the_runner_under_its_limit_without_swap() {
        let scope = SystemdScope { manager: Manager::User, oom_policy: true };
        let args = strings(&["watch", "--report", "/out/watch.json", "--", "run"]);
        assert_eq!(
            scope.command("memrepro-7-0-low.scope", "512m".parse().unwrap(), Path::new("/t/host-runner"), &args),
            strings(&[
                "systemd-run", "--user", "--scope", "--quiet", "--collect", "--unit=memrepro-7-0-low.scope",
                "-p", "MemoryMax=536870912", "-p", "MemorySwapMax=0", "-p", "OOMPolicy=continue",
                "--", "/t/host-runner", "watch", "--report", "/out/watch.json", "--", "run",
            ])
        );
        assert_eq!(scope.kill_command("memrepro-7-0-low.scope"), strings(&["systemctl", "--user", "kill", "--signal=SIGKILL", "memrepro-7-0-low.scope"]));
    }

    #[test]
    fn a_system_scope_is_made_through_sudo_and_runs_the_runner_as_the_caller() {
        let scope = SystemdScope { manager: Manager::SystemViaSudo { uid: 1001, gid: 118 }, oom_policy: false };
        assert_eq!(
            scope.command("memrepro-7-1-high.scope", "4g".parse().unwrap(), Path::new("/t/host-runner"), &strings(&["state"])),
            strings(&[
                "sudo", "-n", "-P", "systemd-run", "--scope", "--quiet", "--collect", "--unit=memrepro-7-1-high.scope",
                "--uid=1001", "--gid=118", "-p", "MemoryMax=4294967296", "-p", "MemorySwapMax=0",
                "--", "/t/host-runner", "state",
            ])
        );
        assert_eq!(
            scope.kill_command("memrepro-7-1-high.scope"),
            strings(&["sudo", "-n", "systemctl", "kill", "--signal=SIGKILL", "memrepro-7-1-high.scope"])
        );
    }

    #[test]
    fn scope_units_are_named_after_the_run_in_characters_systemd_takes() {
        assert_eq!(unit_name("memrepro-4242-0-low"), "memrepro-4242-0-low.scope");
        assert_eq!(unit_name("memrepro-1-2-big one/ü"), "memrepro-1-2-big_one__.scope");
    }

}
