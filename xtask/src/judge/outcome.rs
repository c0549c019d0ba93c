//! What happened to one profile's run, decided from the run's own evidence: the runner's result
//! JSON, the watcher's report from inside the run's cgroup (its limit, swap and event counters),
//! and how the process or container ended. An exit code alone decides nothing.

use serde::{Deserialize, Serialize};

use schema::{EngineKind, RunOutcome, RunResult, SwapState, WatchReport};

use crate::backend::supervise::{Enforcement, RunExit};
use crate::config::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every block completed and was committed.
    Completed,
    /// A block trapped; it committed nothing, earlier blocks stand. Decided by the guest, the
    /// blocks and the configuration: the same on every host.
    Trapped { height: u32, message: String },
    /// A block ran past the runner's wall-clock limit and was interrupted (nothing of it
    /// committed). Depends on the host's speed.
    TimedOut { height: u32, message: String },
    /// The host could not instantiate the guest for the block at `height` (address space:
    /// RLIMIT_AS, or the kernel's overcommit): a limit of the host, not the guest's outcome.
    HostLimit { height: u32, message: String },
    /// The run's cgroup reached its limit and its OOM killer killed the run, as the cgroup's own
    /// counters show.
    OomKilled { evidence: String },
    /// The runner refused to start: the host cannot back the deterministic budget. Nothing ran,
    /// nothing was committed: safe, the node would not start.
    Refused { reason: String },
    /// The run committed no block for the configured time (`stall_secs`) and the harness
    /// killed it; `height` is the block it was at (the one after the last it committed), when
    /// what it left could be read.
    Stalled { height: Option<u32>, after_secs: u64 },
    /// Something else ended the run (a signal from outside, a host-wide OOM, the harness's
    /// timeout): what was seen, and what was missing to say more.
    Killed { reason: String },
    /// The harness could not produce a trustworthy run (limit not enforced, swap on, runner error).
    HarnessError { reason: String },
}

/// What an outcome can prove about determinism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Decided by the guest, the blocks and the configuration: completed, or trapped.
    Deterministic,
    /// Decided by the host: killed, OOM-killed, timed out by the wall clock.
    HostEvent,
    /// Refused by the deterministic preflight: never ran, never compared.
    Refused,
    /// The run cannot be trusted.
    HarnessError,
}

impl Outcome {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Completed | Self::Trapped { .. } => Kind::Deterministic,
            Self::TimedOut { .. } | Self::HostLimit { .. } | Self::OomKilled { .. } | Self::Stalled { .. } | Self::Killed { .. } => Kind::HostEvent,
            Self::Refused { .. } => Kind::Refused,
            Self::HarnessError { .. } => Kind::HarnessError,
        }
    }

    /// Whether two runs ended the same deterministic way: both completed, or both trapped at the
    /// same height with the same message. Host events never end "the same way".
    pub fn same_ending(&self, other: &Self) -> bool {
        self.kind() == Kind::Deterministic && self == other
    }
}

/// An outcome in words: every table, summary, plot and verdict takes them from here (and from
/// `ProfileReport`'s, which add what the run stored).
impl Outcome {
    /// The word in the table: `oom-killed`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Trapped { .. } => "trapped",
            Self::TimedOut { .. } => "timed-out",
            Self::HostLimit { .. } => "host-limit",
            Self::OomKilled { .. } => "oom-killed",
            Self::Refused { .. } => "refused",
            Self::Stalled { .. } => "stalled",
            Self::Killed { .. } => "killed",
            Self::HarnessError { .. } => "harness-error",
        }
    }

    /// The outcome in a phrase, for the verdict: `trapped at height 2: …`, `oom-killed`.
    pub fn describe(&self) -> String {
        match self {
            Self::Trapped { height, message } => format!("trapped at height {height}: {message}"),
            Self::TimedOut { height, .. } => format!("timed out at height {height}"),
            Self::HostLimit { height, .. } => format!("host limit at height {height}"),
            Self::Stalled { height: Some(height), .. } => format!("stalled at height {height}"),
            Self::Stalled { height: None, .. } => "stalled before its first block".into(),
            other => other.label().to_string(),
        }
    }

    /// Why a run under `engine` ended as it did, in full (the detail line under the table).
    pub fn reason(&self, engine: EngineKind) -> String {
        match self {
            Self::Completed => self.describe(),
            Self::Trapped { height, .. } => match engine.after_trap(*height) {
                Some(node) => format!("{}; {node}", self.describe()),
                None => self.describe(),
            },
            Self::TimedOut { height, message } => format!("timed out at height {height} (the runner's wall clock: depends on the host): {message}"),
            Self::HostLimit { height, message } => format!("host limit at height {height} (a limit of this host, not the guest's outcome: never compared): {message}"),
            Self::OomKilled { evidence } => evidence.clone(),
            Self::Refused { reason } => format!("{reason} (safe: this node would not start)"),
            Self::Stalled { after_secs, .. } => format!(
                "{}: no block committed for {after_secs} s (stall_secs), so the harness killed it (a host event, never compared)",
                self.describe()
            ),
            Self::Killed { reason } | Self::HarnessError { reason } => reason.clone(),
        }
    }

    /// The outcome in a few words, for a cell of the matrix: `trapped: <message, cut>`.
    pub fn brief(&self) -> String {
        match self {
            Self::Trapped { message, .. } => format!("trapped: {}", shorten(message)),
            Self::Killed { reason } => format!("killed: {}", shorten(reason)),
            other => other.label().to_string(),
        }
    }
}

/// At most 64 characters, without `|` (it would end a Markdown cell).
fn shorten(text: &str) -> String {
    let text = text.replace('|', "/");
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Everything one profile's run left behind.
pub struct Evidence<'a> {
    pub limit: ByteSize,
    pub enforced_by: Enforcement,
    pub exit: &'a RunExit,
    pub watch: Option<&'a WatchReport>,
    pub result: Option<&'a RunResult>,
    /// The last lines the run printed (for error messages).
    pub log_tail: &'a str,
}

const SIGKILL: i32 = 9;
/// host-runner's exit codes, as the watcher reports them.
const COMPLETED: i32 = schema::runner_exit::COMPLETED as i32;
const BLOCK_FAILED: i32 = schema::runner_exit::BLOCK_FAILED as i32;
const REFUSED: i32 = schema::runner_exit::REFUSED as i32;

pub fn classify(evidence: &Evidence) -> Outcome {
    if let Some(stall) = evidence.exit.harness_stall {
        // The height is what the run committed, read back afterwards.
        return Outcome::Stalled { height: None, after_secs: stall.as_secs() };
    }
    if let Some(timeout) = evidence.exit.harness_timeout {
        return Outcome::Killed { reason: format!("harness timeout after {} s: the harness killed the run", timeout.as_secs()) };
    }
    let Some(watch) = evidence.watch else { return without_watch_report(evidence) };
    if let Some(problem) = limit_problem(evidence.limit, evidence.enforced_by, watch) {
        return Outcome::HarnessError { reason: problem };
    }
    if let Some(signal) = watch.signal {
        return killed_by(signal, watch, evidence.exit);
    }
    match (watch.exit_code, evidence.result) {
        (Some(REFUSED), None) => Outcome::Refused { reason: evidence.log_tail.trim_start_matches("host-runner: ").to_string() },
        (Some(COMPLETED | BLOCK_FAILED), Some(result)) => match &result.outcome {
            RunOutcome::Completed => Outcome::Completed,
            RunOutcome::Trapped { height, message, .. } => Outcome::Trapped { height: *height, message: message.clone() },
            RunOutcome::TimedOut { height, message } => Outcome::TimedOut { height: *height, message: message.clone() },
            RunOutcome::HostLimit { height, message } => Outcome::HostLimit { height: *height, message: message.clone() },
        },
        (code, _) => Outcome::HarnessError {
            reason: format!("host-runner exited {code:?} without a result: {}", evidence.log_tail),
        },
    }
}

/// The watcher wrote nothing: it was killed too (a kill from outside reaches every process of
/// a container), or never ran. Only the exit is left, and it cannot tell why.
fn without_watch_report(evidence: &Evidence) -> Outcome {
    let exit = evidence.exit;
    let docker = exit.docker_oom_killed.map_or(String::new(), |flag| format!(", Docker State.OOMKilled={flag}"));
    match exit.exit_code {
        code @ 129..=192 => Outcome::Killed {
            reason: format!(
                "signal {} (exit {code}{docker}) and no watcher report: the run's cgroup counters were never read, so the cause is unknown",
                code - 128
            ),
        },
        code => Outcome::HarnessError { reason: format!("the run exited {code} without a watcher report: {}", evidence.log_tail) },
    }
}

/// How far below its limit a cgroup's peak may stay and still count as having reached it: the
/// kernel charges in batches (64 pages) and huge pages (2 MiB), so a failed charge can leave the
/// watermark just short of the limit.
const PEAK_AT_LIMIT_SLACK: u64 = 2 << 20;

/// The run died of `signal`: an OOM kill only when its own cgroup shows both reaching its limit
/// (a limit-hit counter moved, or its peak reached the limit) and an OOM kill.
fn killed_by(signal: i32, watch: &WatchReport, exit: &RunExit) -> Outcome {
    if signal != SIGKILL {
        return Outcome::Killed { reason: format!("the runner died of signal {signal}") };
    }
    let docker = exit.docker_oom_killed.map_or(String::new(), |flag| format!("; Docker State.OOMKilled={flag}"));
    let Some(events) = watch.cgroup_events else {
        return Outcome::Killed { reason: format!("SIGKILL, and the run had no memory cgroup to ask why{docker}: cause unknown") };
    };
    let version = watch.memory_at_start.cgroup_version.unwrap_or(0);
    let counted = |name: &str, value: Option<u64>| value.map(|n| format!("{name} +{n}"));
    let limit_hits_name = if version == 2 { "max" } else { "failcnt" };
    let seen: Vec<String> = [counted(limit_hits_name, events.limit_hits), counted("oom", events.ooms), counted("oom_kill", events.oom_kills)]
        .into_iter()
        .flatten()
        .collect();
    let (limit, peak) = (watch.memory_at_start.cgroup_limit_bytes, watch.cgroup_peak_bytes);
    let peak_at_limit = matches!((limit, peak), (Some(limit), Some(peak)) if peak + PEAK_AT_LIMIT_SLACK >= limit);
    let peak_seen = match (limit, peak) {
        (Some(limit), Some(_)) if peak_at_limit => format!(", and its peak reached its {} MiB limit", limit >> 20),
        (Some(limit), Some(peak)) => format!(", and its peak stayed at {} MiB of its {} MiB limit", peak >> 20, limit >> 20),
        _ => ", and its peak is unknown".into(),
    };
    let seen = format!("the run's memory cgroup (v{version}) counted {}{peak_seen}", seen.join(", "));
    let limit_reached = events.limit_hits.unwrap_or(0) + events.ooms.unwrap_or(0) > 0 || peak_at_limit;
    match events.oom_kills {
        Some(kills) if kills > 0 && limit_reached => Outcome::OomKilled { evidence: format!("SIGKILL; {seen}{docker}") },
        Some(kills) if kills > 0 => Outcome::Killed {
            reason: format!("SIGKILL by an OOM kill, but {seen}: it never reached its own limit, so this was memory pressure outside the profile (a host-wide OOM){docker}"),
        },
        Some(_) => Outcome::Killed { reason: format!("SIGKILL, but {seen}: no OOM kill, so it was killed from outside; cause unknown{docker}") },
        None => Outcome::Killed { reason: format!("SIGKILL, but this kernel counts no OOM kills ({seen}): cause unknown{docker}") },
    }
}

/// `None` when the run saw the limit it was given, with no swap beside it; else why the run
/// cannot be trusted.
pub fn limit_problem(limit: ByteSize, enforced_by: Enforcement, watch: &WatchReport) -> Option<String> {
    let asked = limit.bytes();
    let seen = &watch.memory_at_start;
    if enforced_by == Enforcement::AddressSpace {
        // RLIMIT_AS bounds address space, which swap does not change.
        return match seen.address_space_limit_bytes {
            Some(seen) if seen == asked => None,
            seen => Some(format!("the runner was given RLIMIT_AS={limit} but saw {seen:?}")),
        };
    }
    match seen.cgroup_limit_bytes {
        // The kernel rounds limits down to whole pages.
        Some(seen) if seen == asked || seen == asked & !4095 => {}
        Some(seen) => return Some(format!("the run was asked for {limit} but its cgroup enforces {seen} bytes")),
        None => {
            return Some(format!(
                "MEMORY LIMIT NOT ENFORCED: the run was asked for {limit} but its cgroup shows no limit; this engine discards memory limits, so no verdict is possible"
            ))
        }
    }
    match &seen.swap {
        SwapState::Off { .. } => None,
        SwapState::Allowed { bytes, because } => Some(format!(
            "SWAP NOT OFF: the run's cgroup may swap {} ({because}), so a run over its {limit} limit can swap instead of being killed and no verdict is possible. Fix: turn on swap accounting (cgroup v1: boot with `swapaccount=1`) so the limit covers swap, or turn swap off (`sudo swapoff -a`)",
            bytes.map_or("without limit".into(), |b| format!("{} MiB", b >> 20))
        )),
        SwapState::Unknown => Some(format!(
            "SWAP UNKNOWN: whether the run's cgroup can swap could not be read, so a {limit} limit cannot be trusted to kill instead of swapping"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{CgroupEvents, MemoryReport};
    use std::time::Duration;

    fn exit(exit_code: i64, docker_oom_killed: bool) -> RunExit {
        RunExit { exit_code, docker_oom_killed: Some(docker_oom_killed), harness_timeout: None, harness_stall: None, wall: Duration::from_secs(3) }
    }

    fn events(limit_hits: u64, oom_kills: u64) -> Option<CgroupEvents> {
        Some(CgroupEvents { limit_hits: Some(limit_hits), ooms: None, oom_kills: Some(oom_kills) })
    }

    fn watch(limit: Option<u64>, exit_code: Option<i32>, signal: Option<i32>, cgroup_events: Option<CgroupEvents>) -> WatchReport {
        WatchReport {
            schema_version: schema::SCHEMA_VERSION,
            memory_at_start: MemoryReport {
                cgroup_version: Some(1),
                cgroup_limit_bytes: limit,
                cgroup_peak_bytes: None,
                peak_rss_bytes: None,
                runner_rss_bytes: None,
                address_space_limit_bytes: None,
                wasm_memory_bytes: 0,
                swap: SwapState::Off { because: "memory.memsw.limit_in_bytes = memory.limit_in_bytes".into() },
            },
            exit_code,
            signal,
            cgroup_events,
            cgroup_peak_bytes: None,
            wall_ms: 1.0,
            sandbox: schema::SandboxReport {
                uid: Some(65534),
                gid: Some(65534),
                capabilities: Some("0000000000000000".into()),
                network_interfaces: vec!["lo".into()],
                root_read_only: Some(true),
                pids_limit: Some(64),
            },
        }
    }

    fn classify_with(exit: &RunExit, watch: Option<&WatchReport>) -> Outcome {
        classify(&Evidence { limit: "512m".parse().unwrap(), enforced_by: Enforcement::Cgroup, exit, watch, result: None, log_tail: "tail" })
    }

    const LIMIT: u64 = 512 << 20;

    #[test]
    fn a_sigkill_after_the_cgroup_hit_its_limit_and_killed_is_an_oom_kill() {
        let outcome = classify_with(&exit(137, true), Some(&watch(Some(LIMIT), None, Some(9), events(12, 1))));
        assert_eq!(outcome, Outcome::OomKilled { evidence: "SIGKILL; the run's memory cgroup (v1) counted failcnt +12, oom_kill +1, and its peak is unknown; Docker State.OOMKilled=true".into() });
        let mut v2 = watch(Some(LIMIT), None, Some(9), Some(CgroupEvents { limit_hits: Some(0), ooms: Some(1), oom_kills: Some(1) }));
        v2.memory_at_start.cgroup_version = Some(2);
        assert_eq!(classify_with(&exit(137, false), Some(&v2)).label(), "oom-killed");
    }

    /// v1 with swap limited: no failure counter moves (kernel 6.18), the peak shows the limit.
    #[test]
    fn a_peak_at_the_limit_is_evidence_the_limit_was_reached() {
        let mut at_limit = watch(Some(LIMIT), None, Some(9), events(0, 1));
        at_limit.cgroup_peak_bytes = Some(LIMIT);
        assert_eq!(
            classify_with(&exit(137, true), Some(&at_limit)),
            Outcome::OomKilled { evidence: "SIGKILL; the run's memory cgroup (v1) counted failcnt +0, oom_kill +1, and its peak reached its 512 MiB limit; Docker State.OOMKilled=true".into() }
        );
    }

    #[test]
    fn an_oom_kill_below_the_limit_is_host_pressure_not_the_profile() {
        let mut below = watch(Some(LIMIT), None, Some(9), events(0, 1));
        below.cgroup_peak_bytes = Some(300 << 20);
        let outcome = classify_with(&exit(137, true), Some(&below));
        let Outcome::Killed { reason } = outcome else { panic!("{outcome:?}") };
        assert!(reason.contains("never reached its own limit") && reason.contains("failcnt +0, oom_kill +1, and its peak stayed at 300 MiB of its 512 MiB limit"), "{reason}");
    }

    #[test]
    fn a_sigkill_the_cgroup_did_not_count_is_killed_from_outside() {
        let outcome = classify_with(&exit(137, false), Some(&watch(Some(LIMIT), None, Some(9), events(3, 0))));
        let Outcome::Killed { reason } = outcome else { panic!("{outcome:?}") };
        assert!(reason.contains("no OOM kill, so it was killed from outside; cause unknown"), "{reason}");
        let uncounted = classify_with(&exit(137, true), Some(&watch(Some(LIMIT), None, Some(9), Some(CgroupEvents::default()))));
        assert!(matches!(&uncounted, Outcome::Killed { reason } if reason.contains("counts no OOM kills")), "{uncounted:?}");
    }

    #[test]
    fn without_a_watcher_report_exit_137_and_docker_s_flag_decide_nothing() {
        for docker_flag in [true, false] {
            let outcome = classify_with(&exit(137, docker_flag), None);
            let Outcome::Killed { reason } = outcome else { panic!("{outcome:?}") };
            assert!(reason.contains(&format!("exit 137, Docker State.OOMKilled={docker_flag}")) && reason.ends_with("cause is unknown"), "{reason}");
        }
        assert_eq!(classify_with(&exit(2, false), None).label(), "harness-error");
    }

    #[test]
    fn a_missing_limit_is_a_loud_harness_error_even_when_the_run_completed() {
        let outcome = classify_with(&exit(0, false), Some(&watch(None, Some(0), None, events(0, 0))));
        let Outcome::HarnessError { reason } = outcome else { panic!("{outcome:?}") };
        assert!(reason.starts_with("MEMORY LIMIT NOT ENFORCED"), "{reason}");
        let wrong = classify_with(&exit(0, false), Some(&watch(Some(LIMIT * 2), Some(0), None, events(0, 0))));
        assert_eq!(wrong.label(), "harness-error");
    }

    #[test]
    fn a_cgroup_that_can_swap_is_a_harness_error_naming_the_fix() {
        let mut swapping = watch(Some(LIMIT), Some(0), None, events(0, 0));
        swapping.memory_at_start.swap = SwapState::Allowed { bytes: None, because: "no memory.memsw.limit_in_bytes".into() };
        let outcome = classify_with(&exit(0, false), Some(&swapping));
        let Outcome::HarnessError { reason } = outcome else { panic!("{outcome:?}") };
        assert!(reason.starts_with("SWAP NOT OFF: the run's cgroup may swap without limit") && reason.contains("swapaccount=1"), "{reason}");
        swapping.memory_at_start.swap = SwapState::Unknown;
        assert!(matches!(classify_with(&exit(0, false), Some(&swapping)), Outcome::HarnessError { reason } if reason.starts_with("SWAP UNKNOWN")));
    }

    #[test]
    fn under_rlimit_as_the_address_space_limit_is_what_must_be_seen() {
        let mut seen = watch(None, Some(0), None, None);
        seen.memory_at_start.address_space_limit_bytes = Some(LIMIT);
        assert_eq!(limit_problem("512m".parse().unwrap(), Enforcement::AddressSpace, &seen), None);
        seen.memory_at_start.address_space_limit_bytes = None;
        assert!(limit_problem("512m".parse().unwrap(), Enforcement::AddressSpace, &seen).is_some());
    }

    #[test]
    fn the_harness_timeout_is_killed_with_its_length() {
        let mut timed_out = exit(137, false);
        timed_out.harness_timeout = Some(Duration::from_secs(600));
        assert_eq!(classify_with(&timed_out, None), Outcome::Killed { reason: "harness timeout after 600 s: the harness killed the run".into() });
    }

    #[test]
    fn exit_3_without_a_result_is_a_refusal() {
        let outcome = classify_with(&exit(3, false), Some(&watch(Some(LIMIT), Some(3), None, events(0, 0))));
        assert_eq!(outcome, Outcome::Refused { reason: "tail".into() });
    }

    #[test]
    fn a_runner_error_without_result_is_a_harness_error() {
        let outcome = classify_with(&exit(2, false), Some(&watch(Some(LIMIT), Some(2), None, events(0, 0))));
        assert_eq!(outcome.label(), "harness-error");
    }

    #[test]
    fn only_deterministic_endings_can_be_the_same() {
        let trap = |height, message: &str| Outcome::Trapped { height, message: message.into() };
        assert!(Outcome::Completed.same_ending(&Outcome::Completed));
        assert!(trap(2, "unreachable").same_ending(&trap(2, "unreachable")));
        assert!(!trap(2, "unreachable").same_ending(&trap(3, "unreachable")));
        assert!(!trap(2, "unreachable").same_ending(&trap(2, "abort")));
        let killed = Outcome::OomKilled { evidence: "e".into() };
        assert!(!killed.same_ending(&killed.clone()));
    }
}
