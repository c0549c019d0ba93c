//! The local backend, for machines without a Docker engine: host-runner runs as a child process
//! under a real memory limit, enforced by the first of these mechanisms that works here. Each is
//! probed for real, never assumed; `MEMREPRO_LOCAL_LIMIT` names one to force it.
//!
//! 1. `cgroup`: a memory cgroup this tool creates and removes (v1 memory controller or v2). Needs
//!    write access to the cgroup tree, i.e. root.
//! 2. `systemd-user`: a transient scope of the user's own systemd manager (`systemd-run --user
//!    --scope`), the standard rootless way on cgroup v2. Needs a user manager (a login session or
//!    lingering) with the memory controller delegated to it.
//! 3. `systemd-sudo`: a transient scope of the system manager, created through passwordless sudo
//!    and running the runner as the caller (`sudo -n -P systemd-run --scope --uid --gid`). For
//!    machines with sudo but no user manager, such as a GitHub Actions job.
//! 4. `address-space`: RLIMIT_AS on the runner itself.
//!
//! How that differs from a container: no network, filesystem or user isolation; with a cgroup of
//! either kind the memory accounting is the same as Docker's; RLIMIT_AS limits address space, not
//! memory, so wasmtime's 4 GiB reservations fail at instantiation long before memory runs out.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cgroup::CreatedCgroup;

use crate::config::ByteSize;
use crate::supervise::{exit_code, wait_or_kill, RunExit};

/// The variable that forces a mechanism (see [`Mechanism`]).
pub const FORCE_VARIABLE: &str = "MEMREPRO_LOCAL_LIMIT";
/// How long a probe may take: systemd answers in milliseconds, a hung bus must not hang us.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The limit a probe asks for.
const PROBE_LIMIT: ByteSize = ByteSize::from_bytes(64 << 20);
/// The first systemd that takes `OOMPolicy=` for scopes.
const SCOPE_OOM_POLICY_SINCE: u32 = 253;

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

/// The mechanisms, in the order the probe tries them; `MEMREPRO_LOCAL_LIMIT` takes their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Cgroup,
    SystemdUser,
    SystemdSudo,
    AddressSpace,
}

impl Mechanism {
    pub const ALL: [Self; 4] = [Self::Cgroup, Self::SystemdUser, Self::SystemdSudo, Self::AddressSpace];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cgroup => "cgroup",
            Self::SystemdUser => "systemd-user",
            Self::SystemdSudo => "systemd-sudo",
            Self::AddressSpace => "address-space",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Cgroup => "a memory cgroup of our own",
            Self::SystemdUser => "a systemd user scope",
            Self::SystemdSudo => "a systemd system scope through sudo",
            Self::AddressSpace => "RLIMIT_AS",
        }
    }

    /// This mechanism on this machine, tried for real; why not, when it does not work here.
    fn try_here(self) -> Result<LocalLimit> {
        match self {
            Self::Cgroup => {
                let created = create_cgroup(&probe_name(), PROBE_LIMIT)?;
                Ok(LocalLimit::Cgroup { version: created.cgroup.version })
            }
            Self::SystemdUser => probe_scope(Manager::User),
            Self::SystemdSudo => {
                let caller = Credentials::of_this_process()?;
                probe_scope(Manager::SystemViaSudo { uid: caller.uid, gid: caller.gid })
            }
            Self::AddressSpace => Ok(LocalLimit::AddressSpace),
        }
    }
}

impl FromStr for Mechanism {
    type Err = anyhow::Error;
    fn from_str(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
            anyhow!("`{name}` is no mechanism (one of {})", names.join(", "))
        })
    }
}

/// What a probe found: the mechanism chosen, and why each one before it was passed over.
#[derive(Debug)]
pub struct Probe {
    pub chosen: LocalLimit,
    pub passed_over: Vec<(Mechanism, String)>,
}

impl Probe {
    /// One line: what was chosen, then what was passed over and why.
    pub fn summary(&self) -> String {
        let mut line = self.chosen.describe();
        if !self.passed_over.is_empty() {
            line.push_str("; passed over: ");
            line.push_str(&self.passed_over_reasons());
        }
        line
    }

    fn passed_over_reasons(&self) -> String {
        let reasons: Vec<_> = self.passed_over.iter().map(|(m, why)| format!("{} ({why})", m.what())).collect();
        reasons.join("; ")
    }
}

/// `MEMREPRO_LOCAL_LIMIT`, when set.
pub fn forced() -> Option<String> {
    std::env::var(FORCE_VARIABLE).ok().filter(|value| !value.is_empty())
}

impl LocalLimit {
    /// The mechanism `forced` names, or else the first one that works here. A forced mechanism
    /// that does not work here is an error saying why, on one line.
    pub fn select(forced: Option<&str>) -> Result<Probe> {
        if let Some(name) = forced {
            let mechanism: Mechanism = name.parse().with_context(|| format!("{FORCE_VARIABLE}={name}"))?;
            let chosen = mechanism
                .try_here()
                .with_context(|| format!("{FORCE_VARIABLE}={name}: {} cannot be used here", mechanism.what()))?;
            return Ok(Probe { chosen, passed_over: Vec::new() });
        }
        let mut passed_over = Vec::new();
        for mechanism in Mechanism::ALL {
            match mechanism.try_here() {
                Ok(chosen) => return Ok(Probe { chosen, passed_over }),
                Err(error) => passed_over.push((mechanism, format!("{error:#}"))),
            }
        }
        unreachable!("RLIMIT_AS is always available")
    }

    /// What the local backend uses here ([`Self::select`] with `MEMREPRO_LOCAL_LIMIT`), with a
    /// note on stderr when it falls back to RLIMIT_AS.
    /// The mechanism for this machine's runs; an error when `MEMREPRO_LOCAL_LIMIT` names one
    /// that cannot be used here (before anything is built or run).
    pub fn probe() -> Result<Self> {
        let probe = Self::select(forced().as_deref())?;
        if probe.chosen == Self::AddressSpace && !probe.passed_over.is_empty() {
            eprintln!("note: the local backend falls back to RLIMIT_AS; passed over: {}", probe.passed_over_reasons());
        }
        Ok(probe.chosen)
    }

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
fn create_cgroup(name: &str, limit: ByteSize) -> Result<CreatedCgroup> {
    CreatedCgroup::create(Path::new(cgroup::ROOT), name, limit.bytes())
}

/// A name no other probe of this process uses (tests probe in parallel).
fn probe_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("memrepro-probe-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The scope unit for a run `name`: the characters systemd does not take in a unit name become
/// `_`.
fn unit_name(name: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || ":_.-".contains(c) { c } else { '_' }).collect();
    format!("{name}.scope")
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
fn probe_scope(manager: Manager) -> Result<LocalLimit> {
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
struct Credentials {
    uid: u32,
    gid: u32,
    supplementary: BTreeSet<u32>,
}

impl Credentials {
    fn of_this_process() -> Result<Self> {
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

/// Runs `runner args` to its end (or kills it at the timeout) under `memory`, enforced by `how`.
/// `args` starts with the runner's subcommand; for RLIMIT_AS the limit goes to `watch`.
pub fn run_local(
    runner: &Path,
    name: &str,
    memory: Option<ByteSize>,
    how: LocalLimit,
    mut args: Vec<String>,
    timeout: Duration,
    log: &Path,
) -> Result<RunExit> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cgroup = None;
    let mut scope = None;
    let mut command = match (memory, how) {
        (Some(limit), LocalLimit::Cgroup { .. }) => {
            let created = create_cgroup(name, limit)?;
            // The shell moves itself into the cgroup, then becomes the runner: nothing runs
            // outside the limit, not even briefly.
            let mut command = Command::new("sh");
            command.arg("-c").arg("echo $$ > \"$MEMREPRO_CGROUP_PROCS\" && exec \"$@\"").arg("sh").arg(runner);
            command.env("MEMREPRO_CGROUP_PROCS", created.procs_file());
            cgroup = Some(created);
            command.args(&args);
            command
        }
        (Some(limit), LocalLimit::Scope(systemd)) => {
            let unit = unit_name(name);
            let argv = systemd.command(&unit, limit, runner, &args);
            scope = Some(systemd.kill_command(&unit));
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
        (Some(limit), LocalLimit::AddressSpace) => {
            if args.first().map(String::as_str) == Some("watch") {
                args.splice(1..1, ["--address-space-limit".to_string(), limit.bytes().to_string()]);
            }
            let mut command = Command::new(runner);
            command.args(&args);
            command
        }
        (None, _) => {
            let mut command = Command::new(runner);
            command.args(&args);
            command
        }
    };
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let group = format!("-{}", child.id());
    let (status, harness_timeout, wall) = wait_or_kill(&mut child, timeout, || {
        // A scope's processes first: through sudo they are not all in our process group.
        if let Some(kill) = &scope {
            let _ = Command::new(&kill[0]).args(&kill[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        // The whole process group: the watcher and the run it started.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    })?;
    drop(cgroup);
    Ok(RunExit { exit_code: exit_code(status), docker_oom_killed: None, harness_timeout, wall })
}

#[cfg(test)]
mod tests {
    use super::*;

    use cgroup::Cgroup;
    use schema::SwapState;

    #[test]
    fn an_address_space_limit_goes_to_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // `echo` stands in for the runner: it prints the arguments it was given.
        let args = ["watch", "--report", "r.json", "--", "run"].map(String::from).to_vec();
        let exit = run_local(Path::new("/bin/echo"), "t", Some("512m".parse().unwrap()), LocalLimit::AddressSpace, args, Duration::from_secs(5), &log).unwrap();
        assert_eq!(exit.exit_code, 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "watch --address-space-limit 536870912 --report r.json -- run\n");
    }

    #[test]
    fn a_run_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let exit = run_local(Path::new("/bin/sleep"), "t", None, LocalLimit::AddressSpace, vec!["30".into()], Duration::from_millis(200), &dir.path().join("log")).unwrap();
        assert!(exit.harness_timeout == Some(Duration::from_millis(200)) && exit.exit_code == 128 + 9, "{exit:?}");
        assert!(exit.wall < Duration::from_secs(5));
    }

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

    fn systemd_is_running() -> bool {
        // What sd_booted(3) checks.
        Path::new("/run/systemd/system").is_dir()
    }

    /// Whether a plain scope starts here, asked without this module's probe.
    fn a_plain_scope_starts(manager: Manager) -> bool {
        let prefix: &[&str] = match manager {
            Manager::User => &["systemd-run", "--user"],
            Manager::SystemViaSudo { .. } => &["sudo", "-n", "systemd-run"],
        };
        Command::new(prefix[0])
            .args(&prefix[1..])
            .args(["--scope", "--quiet", "--collect", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// A real run in `scope`: from outside, while it runs, the cgroup crate (the watcher's reader)
    /// finds the scope the run is in and reads its limit, swap, peak and events there; a run past
    /// its timeout is killed, scope and all.
    fn a_run_in_the_scope_sees_its_limits(scope: SystemdScope) {
        let how = LocalLimit::Scope(scope);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let name = format!("memrepro-unit-{}", std::process::id());
        let runner = {
            let log = log.clone();
            let name = name.clone();
            std::thread::spawn(move || {
                let args = strings(&["-c", "cat /proc/self/cgroup; sleep 3"]);
                run_local(Path::new("/bin/sh"), &name, Some("96m".parse().unwrap()), how, args, Duration::from_secs(30), &log).unwrap()
            })
        };
        let started = Instant::now();
        let membership = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|line| line.starts_with("0::")) || started.elapsed() > Duration::from_secs(10) {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let cgroup = Cgroup::find(Path::new(cgroup::ROOT), &membership).unwrap_or_else(|| panic!("no memory cgroup in {membership}"));
        assert!(cgroup.dir.ends_with(unit_name(&name)), "{cgroup:?}");
        assert_eq!((cgroup.version, cgroup.limit()), (2, Some(96 << 20)));
        assert!(matches!(cgroup.swap(), SwapState::Off { .. }), "{:?}", cgroup.swap());
        assert!(cgroup.peak().is_some(), "memory.peak: {cgroup:?}");
        let events = cgroup.events();
        assert!(events.limit_hits.is_some() && events.ooms.is_some() && events.oom_kills.is_some(), "{events:?}");
        assert_eq!(runner.join().unwrap().exit_code, 0);

        let killed = run_local(Path::new("/bin/sleep"), &format!("{name}-k"), Some("96m".parse().unwrap()), how, strings(&["30"]), Duration::from_millis(500), &log).unwrap();
        assert!(killed.harness_timeout.is_some() && killed.exit_code == 128 + 9 && killed.wall < Duration::from_secs(10), "{killed:?}");
    }

    /// Which mechanism is in use depends on who runs the tests where: root (or anyone with a
    /// writable cgroup tree) gets a cgroup of its own; a user with systemd, a scope (GitHub's
    /// `runner` user: through sudo); anyone else (`.ci/run`'s unprivileged pass on this
    /// systemd-less machine) RLIMIT_AS, with the reasons for the others. Each is asserted for
    /// what it does.
    #[test]
    fn the_probe_takes_the_first_mechanism_that_works_here_and_says_why_not_the_others() {
        let probe = LocalLimit::select(None).unwrap();
        let passed_over: Vec<Mechanism> = probe.passed_over.iter().map(|(m, _)| *m).collect();
        let summary = probe.summary();
        match create_cgroup(&format!("memrepro-unit-{}", std::process::id()), "96m".parse().unwrap()) {
            Ok(created) => {
                let dir = created.cgroup.dir.clone();
                assert_eq!(created.cgroup.limit(), Some(96 << 20));
                assert!(matches!(created.cgroup.swap(), SwapState::Off { .. }), "{:?}", created.cgroup.swap());
                assert!(matches!(probe.chosen, LocalLimit::Cgroup { .. }) && passed_over.is_empty(), "{summary}");
                drop(created);
                assert!(!dir.exists());
            }
            Err(error) => {
                let error = format!("{error:#}");
                assert!(error.contains("Permission denied") || error.contains("Read-only file system"), "an unexpected failure: {error}");
                let (first, why) = &probe.passed_over[0];
                assert!(*first == Mechanism::Cgroup && (why.contains("Permission denied") || why.contains("Read-only file system")), "{summary}");
                match probe.chosen {
                    LocalLimit::Scope(scope) => {
                        let expected = match scope.manager {
                            Manager::User => vec![Mechanism::Cgroup],
                            Manager::SystemViaSudo { .. } => vec![Mechanism::Cgroup, Mechanism::SystemdUser],
                        };
                        assert_eq!(passed_over, expected, "{summary}");
                        a_run_in_the_scope_sees_its_limits(scope);
                    }
                    LocalLimit::AddressSpace => {
                        assert_eq!(passed_over, [Mechanism::Cgroup, Mechanism::SystemdUser, Mechanism::SystemdSudo], "{summary}");
                        assert!(!a_plain_scope_starts(Manager::User), "a user scope starts here, yet the probe passed it over: {summary}");
                        assert!(!a_plain_scope_starts(Manager::SystemViaSudo { uid: 0, gid: 0 }), "a system scope starts through sudo here, yet the probe passed it over: {summary}");
                        assert!(summary.starts_with("RLIMIT_AS on the runner"), "{summary}");
                        for (_, why) in &probe.passed_over[1..] {
                            assert!(why.contains("systemd-run") || why.contains("`sudo` is not installed"), "{why}");
                        }
                    }
                    other => panic!("{other:?}: {summary}"),
                }
            }
        }
    }

    /// Each systemd scope forced: where a plain scope starts, the probe takes it and a run in it
    /// sees its limits from inside; elsewhere it fails with one line saying why (here: this
    /// machine does not run systemd).
    #[test]
    fn each_systemd_scope_is_used_where_one_starts_and_otherwise_says_why() {
        let caller = Credentials::of_this_process().unwrap();
        for (mechanism, manager) in [
            (Mechanism::SystemdUser, Manager::User),
            (Mechanism::SystemdSudo, Manager::SystemViaSudo { uid: caller.uid, gid: caller.gid }),
        ] {
            let starts = a_plain_scope_starts(manager);
            match LocalLimit::select(Some(mechanism.name())) {
                Ok(Probe { chosen: LocalLimit::Scope(scope), .. }) => {
                    assert!(starts && scope.manager == manager, "{scope:?}");
                    a_run_in_the_scope_sees_its_limits(scope);
                }
                Ok(other) => panic!("{} gave {other:?}", mechanism.name()),
                Err(error) => {
                    let error = format!("{error:#}");
                    assert!(!starts, "a plain scope starts here, yet {} was refused: {error}", mechanism.name());
                    assert!(!error.contains('\n'), "{error}");
                    let prefix = format!("MEMREPRO_LOCAL_LIMIT={}: {} cannot be used here: ", mechanism.name(), mechanism.what());
                    assert!(error.starts_with(&prefix), "{error}");
                    if !systemd_is_running() {
                        let reason = &error[prefix.len()..];
                        assert!(
                            reason == "`systemd-run` is not installed"
                                || reason == "`sudo` is not installed"
                                || reason.contains("System has not been booted with systemd")
                                || reason.contains("Failed to connect to"),
                            "{error}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn forcing_the_user_scope_where_there_is_none_fails_with_one_line_saying_why() {
        match LocalLimit::select(Some("systemd-user")) {
            Ok(probe) => assert!(systemd_is_running() && matches!(probe.chosen, LocalLimit::Scope(SystemdScope { manager: Manager::User, .. })), "{probe:?}"),
            Err(error) => {
                let error = format!("{error:#}");
                let start = "MEMREPRO_LOCAL_LIMIT=systemd-user: a systemd user scope cannot be used here: ";
                assert!(error.starts_with(start) && !error.contains('\n'), "{error}");
                // Without systemd (here): not installed, or installed with no manager to ask.
                let reason = &error[start.len()..];
                assert!(
                    systemd_is_running()
                        || reason == "`systemd-run` is not installed"
                        || (reason.starts_with("`systemd-run --user --scope --quiet --collect --unit=memrepro-probe-")
                            && reason.contains(" -p MemoryMax=67108864 -p MemorySwapMax=0 -- sh …` failed (exit status: 1): ")
                            && reason.contains("Failed to connect to")),
                    "{error}"
                );
            }
        }
        let error = format!("{:#}", LocalLimit::select(Some("systemd")).unwrap_err());
        assert_eq!(error, "MEMREPRO_LOCAL_LIMIT=systemd: `systemd` is no mechanism (one of cgroup, systemd-user, systemd-sudo, address-space)");
        assert_eq!(LocalLimit::select(Some("address-space")).unwrap().chosen, LocalLimit::AddressSpace);
    }
}
