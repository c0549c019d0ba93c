//! One profile's node, watched from outside until it is done: its height asked over its JSON-RPC
//! (`metashrew_height`), crashes injected when due and the node started again on its database,
//! stopped when it stalls or runs out of time, its memory cgroup read while it runs.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::node::{height, rpc};
use super::process::NodeProcess;
use crate::config::node::CrashPlan;

const POLL: Duration = Duration::from_millis(100);
/// How long a node stopped with SIGTERM at the tip may take to exit before SIGKILL.
const STOP_GRACE_SECS: u32 = 10;

/// How the node's run ended, seen from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum NodeEnd {
    /// It ended by itself with `code`, or the lab stopped it with SIGTERM once its height was the tip.
    Finished { code: i64, stopped_at_tip: bool, docker_oom_killed: bool },
    /// Its height did not move for `secs`: stopped with SIGKILL.
    Stalled { height: Option<u32>, secs: u64 },
    /// Still indexing when the run's time ran out: stopped with SIGKILL.
    TimedOut { height: Option<u32>, secs: u64 },
}

/// Something the lab did to the node, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    pub at_secs: f64,
    /// The node's height then, as it last answered.
    pub height: Option<u32>,
    pub what: String,
}

/// The node's memory cgroup, read from the host while it ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEvidence {
    pub cgroup_limit_bytes: Option<u64>,
    pub cgroup_peak_bytes: Option<u64>,
}

pub struct Driven {
    pub end: NodeEnd,
    pub last_height: Option<u32>,
    pub injected: Vec<Injection>,
    pub memory: MemoryEvidence,
    pub wall: Duration,
}

pub struct Drive<'a> {
    pub node: &'a dyn NodeProcess,
    /// Where its JSON-RPC listens.
    pub port: u16,
    pub tip: u32,
    pub stall: Duration,
    pub timeout: Duration,
    pub crash: Option<&'a CrashPlan>,
    /// The node's address, kept current for the view load (it changes at each restart).
    pub address: Arc<RwLock<String>>,
}

impl Drive<'_> {
    /// Watches the node until it finishes, reaches the tip, stalls or times out.
    pub fn run(&self) -> Result<Driven> {
        let started = Instant::now();
        let mut watch = Watch { started, since_start: started, progress_at: started, height: None, injected: Vec::new(), memory: MemoryEvidence::default() };
        let mut crashes = CrashSchedule::new(self.crash, self.tip);
        self.refresh_address();
        let end = loop {
            std::thread::sleep(POLL);
            if let Err(interrupted) = crate::interrupt::check() {
                self.node.kill()?;
                return Err(interrupted.into());
            }
            let state = self.node.state()?;
            if !state.running {
                break NodeEnd::Finished { code: state.exit_code, stopped_at_tip: false, docker_oom_killed: state.oom_killed };
            }
            watch.memory.read(self.node.memory_cgroup(state.pid));
            watch.observe(self.height());
            if watch.height.is_some_and(|h| h >= self.tip) {
                break self.stop_at_tip()?;
            }
            if let Some(what) = crashes.due(watch.height, watch.since_start.elapsed()) {
                self.crash_and_restart(&mut watch, what)?;
            } else if watch.progress_at.elapsed() > self.stall {
                self.node.kill()?;
                break NodeEnd::Stalled { height: watch.height, secs: self.stall.as_secs() };
            } else if started.elapsed() > self.timeout {
                self.node.kill()?;
                break NodeEnd::TimedOut { height: watch.height, secs: self.timeout.as_secs() };
            }
        };
        Ok(Driven { end, last_height: watch.height, injected: watch.injected, memory: watch.memory, wall: started.elapsed() })
    }

    /// The node's height as its JSON-RPC says, `None` while it does not answer.
    fn height(&self) -> Option<u32> {
        height(&rpc(&self.address.read().ok()?, self.port, Duration::from_secs(2))?)
    }

    /// A container that already exited has no address: its height is then not asked.
    fn refresh_address(&self) {
        if let Ok(address) = self.node.address() {
            *self.address.write().expect("not poisoned") = address;
        }
    }

    /// SIGTERM; a node at its tip has nothing left to do.
    fn stop_at_tip(&self) -> Result<NodeEnd> {
        self.node.stop(STOP_GRACE_SECS)?;
        let state = self.node.state()?;
        Ok(NodeEnd::Finished { code: state.exit_code, stopped_at_tip: true, docker_oom_killed: state.oom_killed })
    }

    /// SIGKILL, then the node started again on the same database.
    fn crash_and_restart(&self, watch: &mut Watch, what: String) -> Result<()> {
        self.node.kill().with_context(|| format!("injecting {what}"))?;
        watch.injected.push(Injection { at_secs: watch.started.elapsed().as_secs_f64(), height: watch.height, what });
        let started = Instant::now();
        while self.node.state()?.running {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the node did not die within 30 s of SIGKILL");
            std::thread::sleep(POLL);
        }
        self.node.start().context("starting the node again after a crash")?;
        self.refresh_address();
        watch.since_start = Instant::now();
        watch.progress_at = Instant::now();
        Ok(())
    }
}

struct Watch {
    started: Instant,
    since_start: Instant,
    progress_at: Instant,
    height: Option<u32>,
    injected: Vec<Injection>,
    memory: MemoryEvidence,
}

impl Watch {
    /// A new height is progress; so is the first answer.
    fn observe(&mut self, height: Option<u32>) {
        if let Some(height) = height.filter(|&h| self.height.is_none_or(|old| h > old)) {
            self.height = Some(height);
            self.progress_at = Instant::now();
        }
    }
}

impl MemoryEvidence {
    /// The node's memory cgroup, while it runs.
    fn read(&mut self, cgroup: Option<cgroup::Cgroup>) {
        let Some(cgroup) = cgroup else { return };
        self.cgroup_limit_bytes = cgroup.limit().or(self.cgroup_limit_bytes);
        self.cgroup_peak_bytes = cgroup.peak().max(self.cgroup_peak_bytes);
    }
}

/// When to SIGKILL the node: once it has indexed each chosen height, and at seeded random
/// moments (0.05 to 0.5 s after each start) while it is below the tip.
struct CrashSchedule {
    heights: Vec<u32>,
    random_left: u32,
    rng: fastrand::Rng,
    next_random: Duration,
}

impl CrashSchedule {
    fn new(plan: Option<&CrashPlan>, tip: u32) -> Self {
        let plan = plan.cloned().unwrap_or(CrashPlan { at_heights: Vec::new(), random: 0, seed: 0 });
        let mut heights: Vec<u32> = plan.at_heights.into_iter().filter(|&h| h < tip).collect();
        heights.sort_unstable_by(|a, b| b.cmp(a));
        let mut rng = fastrand::Rng::with_seed(plan.seed);
        let next_random = random_delay(&mut rng);
        Self { heights, random_left: plan.random, rng, next_random }
    }

    fn due(&mut self, height: Option<u32>, since_start: Duration) -> Option<String> {
        if let (Some(&next), Some(height)) = (self.heights.last(), height) {
            if height >= next {
                self.heights.pop();
                return Some(format!("SIGKILL at height {height} (planned after {next})"));
            }
        }
        if self.random_left > 0 && since_start >= self.next_random {
            self.random_left -= 1;
            let after = self.next_random;
            self.next_random = random_delay(&mut self.rng);
            return Some(format!("SIGKILL {:.2} s after the node started (seeded)", after.as_secs_f64()));
        }
        None
    }
}

fn random_delay(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(rng.u64(50..=500))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_come_at_the_planned_heights_then_at_seeded_moments() {
        let plan = CrashPlan { at_heights: vec![300, 100, 700], random: 2, seed: 7 };
        let mut schedule = CrashSchedule::new(Some(&plan), 589);
        assert_eq!(schedule.due(Some(99), Duration::ZERO), None);
        assert_eq!(schedule.due(Some(120), Duration::ZERO).as_deref(), Some("SIGKILL at height 120 (planned after 100)"));
        assert_eq!(schedule.due(Some(120), Duration::ZERO), None);
        assert!(schedule.due(Some(300), Duration::ZERO).unwrap().contains("planned after 300"));
        // 700 is past the tip: never due. Two random moments, the same for the same seed.
        let first = schedule.due(Some(400), Duration::from_secs(4)).unwrap();
        let second = schedule.due(Some(400), Duration::from_secs(4)).unwrap();
        assert_eq!(schedule.due(Some(400), Duration::from_secs(4)), None);
        let mut again = CrashSchedule::new(Some(&plan), 589);
        again.heights.clear();
        assert_eq!([again.due(None, Duration::from_secs(4)).unwrap(), again.due(None, Duration::from_secs(4)).unwrap()], [first, second]);
    }
}
