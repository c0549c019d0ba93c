//! Choosing the mechanism: the first that works here, in a fixed order, or the one
//! `MEMREPRO_LOCAL_LIMIT` forces; each probed for real, never assumed.

use std::str::FromStr;

use anyhow::{anyhow, Context, Result};

use super::limit::{LocalLimit, Manager};
use super::probe::{probe_scope, try_cgroup, Credentials};

/// The variable that forces a mechanism (see [`Mechanism`]).
pub const FORCE_VARIABLE: &str = "MEMREPRO_LOCAL_LIMIT";

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
            Self::Cgroup => try_cgroup(),
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

    /// The mechanism for this machine's runs ([`Self::select`] with `MEMREPRO_LOCAL_LIMIT`), with
    /// a note on stderr when it falls back to RLIMIT_AS; an error when `MEMREPRO_LOCAL_LIMIT`
    /// names one that cannot be used here (before anything is built or run).
    pub fn probe() -> Result<Self> {
        let probe = Self::select(forced().as_deref())?;
        if probe.chosen == Self::AddressSpace && !probe.passed_over.is_empty() {
            eprintln!("note: the local backend falls back to RLIMIT_AS; passed over: {}", probe.passed_over_reasons());
        }
        Ok(probe.chosen)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use cgroup::Cgroup;
    use schema::SwapState;

    use super::*;
    use crate::backend::local::limit::{create_cgroup, unit_name, SystemdScope};
    use crate::backend::local::run::run_local;
    use crate::backend::supervise::Deadline;

    fn strings(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|s| s.to_string()).collect()
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
                run_local(Path::new("/bin/sh"), &name, Some("96m".parse().unwrap()), how, args, &Deadline { timeout: Duration::from_secs(30), stall: None }, &log).unwrap()
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

        let killed = run_local(Path::new("/bin/sleep"), &format!("{name}-k"), Some("96m".parse().unwrap()), how, strings(&["30"]), &Deadline { timeout: Duration::from_millis(500), stall: None }, &log).unwrap();
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
