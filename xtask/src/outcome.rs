//! What happened to one profile's run, decided from the container's own evidence: the runner's
//! result JSON, the watcher's report from inside the cgroup, and Docker's record of the container.

use serde::Serialize;

use schema::{RunOutcome, RunResult, WatchReport};

use crate::config::MemoryLimit;
use crate::docker::ContainerExit;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every block completed and was committed.
    Completed,
    /// A block trapped; it committed nothing, earlier blocks stand.
    Trapped { height: u32, message: String },
    /// A block ran past the runner's time limit and was interrupted (nothing of it committed).
    TimedOut { height: u32, message: String },
    /// The kernel's OOM killer ended the run mid-block.
    OomKilled { evidence: String },
    /// The runner refused to start: the host cannot back the deterministic budget. Nothing ran,
    /// nothing was committed — by design, not a divergence.
    Refused { reason: String },
    /// Something else ended the run: a signal, a crash, the timeout.
    Killed { reason: String },
    /// The harness could not produce a trustworthy run (limit not enforced, runner error, …).
    HarnessError { reason: String },
}

impl Outcome {
    /// The word in the table.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Trapped { .. } => "trapped",
            Self::TimedOut { .. } => "timed-out",
            Self::OomKilled { .. } => "oom-killed",
            Self::Refused { .. } => "refused",
            Self::Killed { .. } => "killed",
            Self::HarnessError { .. } => "harness-error",
        }
    }
}

/// What enforced the run's memory limit, so what the watcher must have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// A memory cgroup (Docker, or the local backend's own).
    Cgroup,
    /// RLIMIT_AS (the local backend without a writable cgroup).
    AddressSpace,
}

/// Everything one profile's run left behind.
pub struct Evidence<'a> {
    pub limit: MemoryLimit,
    pub enforced_by: Enforcement,
    pub container: &'a ContainerExit,
    pub watch: Option<&'a WatchReport>,
    pub result: Option<&'a RunResult>,
    /// The last lines the container printed (for error messages).
    pub log_tail: &'a str,
}

const SIGKILL: i32 = 9;
/// host-runner's exit code for a preflight refusal.
const REFUSED: i32 = 3;

pub fn classify(evidence: &Evidence) -> Outcome {
    let container = evidence.container;
    if container.timed_out {
        return Outcome::Killed { reason: format!("timed out after {:.0} s and was killed", container.wall.as_secs_f64()) };
    }
    let Some(watch) = evidence.watch else {
        // The watcher itself did not finish: only Docker's word is left.
        return if container.oom_killed || container.exit_code == 137 {
            Outcome::OomKilled {
                evidence: format!(
                    "container exit {} with State.OOMKilled={} (the watcher was killed too, so the cgroup's count could not be read)",
                    container.exit_code, container.oom_killed
                ),
            }
        } else {
            Outcome::HarnessError {
                reason: format!("the container exited {} without a report: {}", container.exit_code, evidence.log_tail),
            }
        };
    };
    if let Some(problem) = limit_problem(evidence.limit, evidence.enforced_by, watch) {
        return Outcome::HarnessError { reason: problem };
    }
    match (watch.signal, watch.oom_kills) {
        (Some(SIGKILL), Some(kills)) if kills > 0 => {
            return Outcome::OomKilled { evidence: format!("SIGKILL with oom_kill +{kills} in the run's memory cgroup") }
        }
        (Some(SIGKILL), None) if container.oom_killed => {
            return Outcome::OomKilled { evidence: "SIGKILL and Docker State.OOMKilled=true (this kernel does not count oom_kill)".into() }
        }
        (Some(signal), _) => return Outcome::Killed { reason: format!("the runner died of signal {signal}") },
        (None, _) => {}
    }
    match (watch.exit_code, evidence.result) {
        (Some(REFUSED), None) => Outcome::Refused { reason: evidence.log_tail.trim_start_matches("host-runner: ").to_string() },
        (Some(0 | 1), Some(result)) => match &result.outcome {
            RunOutcome::Completed => Outcome::Completed,
            RunOutcome::Trapped { height, message } => Outcome::Trapped { height: *height, message: message.clone() },
            RunOutcome::TimedOut { height, message } => Outcome::TimedOut { height: *height, message: message.clone() },
        },
        (code, _) => Outcome::HarnessError {
            reason: format!("host-runner exited {code:?} without a result: {}", evidence.log_tail),
        },
    }
}

/// `None` when the run saw the limit it was given; else why the run cannot be trusted.
pub fn limit_problem(limit: MemoryLimit, enforced_by: Enforcement, watch: &WatchReport) -> Option<String> {
    let asked = limit.bytes();
    if enforced_by == Enforcement::AddressSpace {
        return match watch.memory_at_start.address_space_limit_bytes {
            Some(seen) if seen == asked => None,
            seen => Some(format!("the runner was given RLIMIT_AS={limit} but saw {seen:?}")),
        };
    }
    match watch.memory_at_start.cgroup_limit_bytes {
        // The kernel rounds limits down to whole pages.
        Some(seen) if seen == asked || seen == asked & !4095 => None,
        Some(seen) => Some(format!("the container was asked for {limit} but its cgroup enforces {seen} bytes")),
        None => Some(format!(
            "MEMORY LIMIT NOT ENFORCED: the container was asked for {limit} but its cgroup shows no limit; this engine discards memory limits, so no verdict is possible"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::MemoryReport;
    use std::time::Duration;

    fn container(exit_code: i64, oom_killed: bool) -> ContainerExit {
        ContainerExit { exit_code, oom_killed, timed_out: false, wall: Duration::from_secs(3) }
    }

    fn watch(limit: Option<u64>, exit_code: Option<i32>, signal: Option<i32>, oom_kills: Option<u64>) -> WatchReport {
        WatchReport {
            schema_version: schema::SCHEMA_VERSION,
            memory_at_start: MemoryReport {
                cgroup_version: Some(1),
                cgroup_limit_bytes: limit,
                cgroup_peak_bytes: None,
                peak_rss_bytes: None,
                address_space_limit_bytes: None,
                wasm_memory_bytes: 0,
            },
            exit_code,
            signal,
            oom_kills,
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

    fn classify_with(container: &ContainerExit, watch: Option<&WatchReport>) -> Outcome {
        classify(&Evidence { limit: "512m".parse().unwrap(), enforced_by: Enforcement::Cgroup, container, watch, result: None, log_tail: "tail" })
    }

    const LIMIT: u64 = 512 << 20;

    #[test]
    fn a_sigkill_counted_by_the_cgroup_is_an_oom_kill() {
        let outcome = classify_with(&container(137, false), Some(&watch(Some(LIMIT), None, Some(9), Some(1))));
        assert_eq!(outcome.label(), "oom-killed");
    }

    #[test]
    fn a_sigkill_the_cgroup_did_not_count_is_not_called_an_oom_kill() {
        let outcome = classify_with(&container(137, false), Some(&watch(Some(LIMIT), None, Some(9), Some(0))));
        assert_eq!(outcome, Outcome::Killed { reason: "the runner died of signal 9".into() });
    }

    #[test]
    fn a_missing_limit_is_a_loud_harness_error_even_when_the_run_completed() {
        let outcome = classify_with(&container(0, false), Some(&watch(None, Some(0), None, Some(0))));
        let Outcome::HarnessError { reason } = outcome else { panic!("{outcome:?}") };
        assert!(reason.starts_with("MEMORY LIMIT NOT ENFORCED"), "{reason}");
        let wrong = classify_with(&container(0, false), Some(&watch(Some(LIMIT * 2), Some(0), None, Some(0))));
        assert_eq!(wrong.label(), "harness-error");
    }

    #[test]
    fn without_a_watch_report_only_docker_evidence_of_oom_counts() {
        assert_eq!(classify_with(&container(137, true), None).label(), "oom-killed");
        assert_eq!(classify_with(&container(2, false), None).label(), "harness-error");
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
    fn a_timeout_is_reported_as_killed() {
        let mut exit = container(137, false);
        exit.timed_out = true;
        assert!(matches!(classify_with(&exit, None), Outcome::Killed { reason } if reason.contains("timed out")));
    }

    #[test]
    fn exit_3_without_a_result_is_a_refusal() {
        let outcome = classify_with(&container(3, false), Some(&watch(Some(LIMIT), Some(3), None, Some(0))));
        assert_eq!(outcome, Outcome::Refused { reason: "tail".into() });
    }

    #[test]
    fn a_runner_error_without_result_is_a_harness_error() {
        let outcome = classify_with(&container(2, false), Some(&watch(Some(LIMIT), Some(2), None, Some(0))));
        assert_eq!(outcome.label(), "harness-error");
    }
}
