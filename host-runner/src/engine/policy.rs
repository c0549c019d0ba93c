//! Memory policies: what the host does when the guest asks for more linear memory.
//!
//! - `unbounded`: wasmtime's defaults, as metashrew runs today. Growth only reserves address
//!   space, so it never fails; under a tight cgroup the process is OOM-killed instead.
//! - `headroom`: what a runtime does to avoid OOM kills: refuse `memory.grow` when the cgroup has
//!   less free memory than the growth asks. Runs complete, but where growth fails depends on the
//!   host: the committed state differs between hosts.
//! - `deterministic`: a fixed budget enforced identically everywhere, host-side buffers bounded by
//!   the same budget, and a preflight that refuses to start on a host that cannot back it.

use std::fmt;

use anyhow::{bail, Result};
use wasmtime::ResourceLimiter;

use cgroup::{mem_available, Cgroup};
use schema::{Policy, RUNNER_OVERHEAD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryPolicy {
    Unbounded,
    Headroom,
    /// A fixed memory budget (bytes) and a fixed fuel budget per block or view call (wasm
    /// instructions, roughly): both run out at the same point on every host.
    Deterministic { budget: u64, fuel: u64 },
}

impl MemoryPolicy {
    pub fn name(self) -> &'static str {
        self.policy().name()
    }

    pub fn policy(self) -> Policy {
        match self {
            Self::Unbounded => Policy::Unbounded,
            Self::Headroom => Policy::Headroom,
            Self::Deterministic { .. } => Policy::Deterministic,
        }
    }

    pub fn fuel(self) -> Option<u64> {
        match self {
            Self::Deterministic { fuel, .. } => Some(fuel),
            _ => None,
        }
    }

    pub fn budget(self) -> Option<u64> {
        match self {
            Self::Deterministic { budget, .. } => Some(budget),
            _ => None,
        }
    }

    /// Memory the host must be able to back under this policy, for a guest whose compiled code
    /// takes `code_bytes`: while a block runs, its linear memory and what the host holds for it
    /// (by the charge rule, `host_state::pair_charge`) are each bounded by the budget; the commit runs
    /// after the guest's memory is freed and holds at most twice the block's charge. Plus the
    /// runner itself and the compiled guest.
    pub fn required_bytes(self, code_bytes: u64) -> Option<u64> {
        self.budget().map(|budget| 2 * budget + RUNNER_OVERHEAD + code_bytes)
    }
}

impl MemoryPolicy {
    /// The fuel of one block when `--fuel` is not given (about one unit per wasm instruction):
    /// about 7 s of a tight loop here, far below the wall-clock limit's 300 s, so fuel (the same
    /// everywhere) decides first on any host not many times slower.
    pub const DEFAULT_FUEL: u64 = 100_000_000_000;

    /// The policy, from the command line's policy, budget and fuel.
    pub fn new(name: Policy, budget: Option<u64>, fuel: Option<u64>) -> Result<Self> {
        if fuel.is_some() && name != Policy::Deterministic {
            bail!("--fuel only applies to --policy deterministic");
        }
        Ok(match (name, budget) {
            (Policy::Unbounded, None) => Self::Unbounded,
            (Policy::Headroom, None) => Self::Headroom,
            (Policy::Deterministic, Some(budget)) if budget >= 64 << 10 => {
                let fuel = fuel.unwrap_or(Self::DEFAULT_FUEL);
                anyhow::ensure!(fuel > 0, "--fuel must be positive");
                Self::Deterministic { budget, fuel }
            }
            (Policy::Deterministic, Some(_)) => bail!("--memory-budget must be at least one wasm page (64KiB)"),
            (Policy::Deterministic, None) => bail!("the deterministic policy needs --memory-budget (e.g. 192MiB)"),
            (_, Some(_)) => bail!("--memory-budget only applies to --policy deterministic"),
        })
    }
}

/// The runner refused to start: this host cannot back the deterministic budget.
#[derive(Debug)]
pub struct Refusal {
    pub needed: u64,
    pub available: u64,
    pub source: &'static str,
    pub budget: u64,
    pub code_bytes: u64,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64);
        write!(
            f,
            "refused: the deterministic policy needs {} (2 x the {} budget + {} runner overhead + {:.1} MiB of compiled guest) but this host can back {} ({})",
            mib(self.needed),
            mib(self.budget),
            mib(RUNNER_OVERHEAD),
            self.code_bytes as f64 / (1u64 << 20) as f64,
            mib(self.available),
            self.source
        )
    }
}

impl std::error::Error for Refusal {}

/// Refuses, before anything is written, to run a budget this host cannot back with a guest of
/// `code_bytes` of compiled code. Reads the cgroup's limit, else the machine's available memory.
pub fn preflight(policy: MemoryPolicy, code_bytes: u64) -> Result<(), Refusal> {
    let (Some(needed), Some(budget)) = (policy.required_bytes(code_bytes), policy.budget()) else { return Ok(()) };
    let (available, source) = match Cgroup::of_this_process().and_then(|c| c.limit()) {
        Some(limit) => (limit, "the cgroup memory limit"),
        None => (mem_available().unwrap_or(0), "MemAvailable, no cgroup limit"),
    };
    if needed > available {
        return Err(Refusal { needed, available, source, budget, code_bytes });
    }
    Ok(())
}

/// How the guest's linear memory is laid out in the process's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearMemory {
    /// wasmtime's default: a 4 GiB reservation plus a guard region per memory.
    Reserved,
    /// Exactly the deterministic budget reserved up front; growth never moves.
    Budget(u64),
    /// Nothing reserved beyond the current size; growth moves the memory (new mapping + copy),
    /// so an address-space limit makes `memory.grow` return -1 instead of failing instantiation.
    Small,
}

impl LinearMemory {
    pub fn for_policy(policy: MemoryPolicy, small: bool) -> Self {
        match (small, policy.budget()) {
            (true, _) => Self::Small,
            (false, Some(budget)) => Self::Budget(budget),
            (false, None) => Self::Reserved,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Reserved => "reserved-4gib",
            Self::Budget(_) => "budget",
            Self::Small => "small-movable",
        }
    }
}

/// The wasmtime limiter behind each policy. It also counts refusals for the report.
pub struct MemoryLimiter {
    policy: MemoryPolicy,
    cgroup: Option<Cgroup>,
    pub refused_growths: u64,
}

impl MemoryLimiter {
    pub fn new(policy: MemoryPolicy) -> Self {
        let cgroup = match policy {
            MemoryPolicy::Headroom => Cgroup::of_this_process(),
            _ => None,
        };
        Self { policy, cgroup, refused_growths: 0 }
    }

    /// Whether growing linear memory from `current` to `desired` bytes is allowed.
    pub fn allows(&self, current: usize, desired: usize) -> bool {
        let growth = desired.saturating_sub(current) as u64;
        match self.policy {
            MemoryPolicy::Unbounded => true,
            MemoryPolicy::Deterministic { budget, .. } => desired as u64 <= budget,
            MemoryPolicy::Headroom => match self.free_memory() {
                Some(free) => growth <= free,
                None => true,
            },
        }
    }

    /// Free memory right now: cgroup limit minus usage, else the machine's available memory.
    fn free_memory(&self) -> Option<u64> {
        let cgroup = self.cgroup.as_ref();
        match (cgroup.and_then(Cgroup::limit), cgroup.and_then(Cgroup::usage)) {
            (Some(limit), Some(usage)) => Some(limit.saturating_sub(usage)),
            _ => mem_available(),
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.allows(current, desired);
        if !allowed {
            self.refused_growths += 1;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_deterministic_budget_allows_exactly_up_to_the_budget() {
        let limiter = MemoryLimiter::new(MemoryPolicy::Deterministic { budget: 192 << 20, fuel: 1 });
        assert!(limiter.allows(0, 192 * MIB));
        assert!(!limiter.allows(0, 192 * MIB + 65536));
        assert!(!limiter.allows(190 * MIB, 250 * MIB));
    }

    /// The stress guest's arithmetic: 1.06 MiB of initial memory, then 50 MB allocations of
    /// 50 MiB + one 64 KiB page each. Under a 192 MiB budget the 4th (index 3) is the first refused.
    #[test]
    fn the_failing_allocation_is_the_same_on_every_host() {
        let limiter = MemoryLimiter::new(MemoryPolicy::Deterministic { budget: 192 << 20, fuel: 1 });
        let mut size = 17 * 65536;
        let mut granted = 0;
        while limiter.allows(size, size + 50 * MIB + 65536) {
            size += 50 * MIB + 65536;
            granted += 1;
        }
        assert_eq!(granted, 3);
    }

    #[test]
    fn unbounded_never_refuses() {
        assert!(MemoryLimiter::new(MemoryPolicy::Unbounded).allows(0, 4 << 30));
    }

    #[test]
    fn policies_and_budgets_must_match() {
        assert_eq!(MemoryPolicy::new(Policy::Unbounded, None, None).unwrap(), MemoryPolicy::Unbounded);
        assert!(MemoryPolicy::new(Policy::Deterministic, None, None).unwrap_err().to_string().contains("needs --memory-budget"));
        assert!(MemoryPolicy::new(Policy::Headroom, Some(1 << 20), None).is_err());
        assert!(MemoryPolicy::new(Policy::Unbounded, None, Some(5)).unwrap_err().to_string().contains("--fuel only applies"));
        assert_eq!(
            MemoryPolicy::new(Policy::Deterministic, Some(1 << 20), None).unwrap(),
            MemoryPolicy::Deterministic { budget: 1 << 20, fuel: MemoryPolicy::DEFAULT_FUEL }
        );
        assert_eq!(MemoryPolicy::Deterministic { budget: 100 << 20, fuel: 1 }.required_bytes(5), Some((200 << 20) + RUNNER_OVERHEAD + 5));
    }

    #[test]
    fn preflight_refuses_a_budget_larger_than_this_machine() {
        let refusal = preflight(MemoryPolicy::Deterministic { budget: 1 << 50, fuel: 1 }, 1 << 20).unwrap_err();
        assert_eq!(refusal.needed, (2 << 50) + RUNNER_OVERHEAD + (1 << 20));
        assert!(refusal.to_string().contains("runner overhead + 1.0 MiB of compiled guest) but this host can back"), "{refusal}");
        assert!(preflight(MemoryPolicy::Deterministic { budget: 1 << 20, fuel: 1 }, 1 << 20).is_ok());
    }
}
