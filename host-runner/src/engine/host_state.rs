//! What the imports see and hold while one block or view runs, and the charge rule: what the
//! host holds for the guest, counted from the guest's data alone, so the deterministic policy's
//! budget runs out at the same byte on every host.

use bytes::Bytes;
use state::Database;
use wasmtime::bail;

use super::policy::{MemoryLimiter, MemoryPolicy};
use schema::EngineKind;

/// What the imports see while one block or view runs.
pub struct HostState {
    /// `height (u32 LE) ++ input`, as `__load_input` writes it.
    pub(super) input: Vec<u8>,
    pub(super) height: u32,
    /// A block's `_start` (it sees the state before it), not a view.
    pub(super) block: bool,
    pub(super) store: Database,
    /// The small value `__get_len` last found, and its key: the `__get` that follows takes it
    /// instead of reading it again (reads see the committed state, which a call never changes).
    pub(super) found: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) limiter: MemoryLimiter,
    /// Under the deterministic policy, the most the host may hold for the guest by the charge
    /// rule ([`pair_charge`]).
    pub(super) host_budget: Option<u64>,
    /// Flushed pairs, committed by the caller only if `_start` returns.
    pub pairs: Vec<(Bytes, Bytes)>,
    pub flushed_bytes: u64,
    /// What this block's flushed pairs are charged ([`pair_charge`]), under every policy.
    pub charged_bytes: u64,
    /// Metashrew engine: why the guest marked the block failed without trapping (the first
    /// `abort()`, or a flush that did not decode). The block is then done with nothing written.
    pub failed: Option<String>,
}

impl HostState {
    /// The state of one call: `height ++ input` for `__load_input`, the committed `store` for
    /// `__get` (as a block at `height` sees it, or a view), and the policy's limiter.
    pub fn new(height: u32, input: &[u8], store: Database, block: bool, policy: MemoryPolicy) -> Self {
        let mut full_input = Vec::with_capacity(4 + input.len());
        full_input.extend_from_slice(&height.to_le_bytes());
        full_input.extend_from_slice(input);
        Self {
            input: full_input,
            height,
            block,
            store,
            found: None,
            limiter: MemoryLimiter::new(policy),
            host_budget: policy.budget(),
            pairs: Vec::new(),
            flushed_bytes: 0,
            charged_bytes: 0,
            failed: None,
        }
    }
}

/// What the host is charged for one flushed pair beside its key and value: its entry in the
/// host's list of pairs (64 bytes, twice while the list grows), the commit's sort buffer (32) and
/// leaf (32), and the batch's bookkeeping for its entries (about 30). Fixed, so the charge depends
/// on the guest and the blocks alone, never on the host or the state: a commit holds nothing that
/// grows with the state.
/// `cargo xtask bench` checks the bound with adversarial guests.
pub const PAIR_OVERHEAD: u64 = 256;

/// The charge of one flushed pair: its key twice (the key itself, and its record in `records` if
/// the value is large), its value, plus [`PAIR_OVERHEAD`]. While the guest runs, the host holds
/// one copy of them; the commit, which runs after the guest's memory is freed, holds at most two
/// (the batch, then RocksDB's memtable copy), within twice the charge.
pub fn pair_charge(key: usize, value: usize) -> u64 {
    (2 * key + value) as u64 + PAIR_OVERHEAD
}

/// Under a deterministic budget, the host holds no more than the budget for the guest (by the
/// charge rule); going over traps the same way on every host.
pub(super) fn within_budget(budget: Option<u64>, bytes: u64, what: &str) -> wasmtime::Result<()> {
    match budget {
        Some(budget) if bytes > budget => bail!("{what} would hold {bytes} bytes on the host, over the {budget} byte memory budget"),
        _ => Ok(()),
    }
}

/// A value read back for the guest is held twice for a moment (RocksDB's read of it, then the
/// pinned copy handed over: measured, a 180 MiB value read back peaked 2 × its size above the
/// guest's memory), on top of what the block's flushes are charged. Its length comes from the
/// store (`Database::find`), so the charge is checked before anything is read.
pub(super) fn value_read_charge(host: &HostState, len: u64) -> u64 {
    host.charged_bytes + 2 * len
}

/// The guest failed the block: ours traps with `why`; metashrew's notes the failure (the first
/// one) and lets the guest go on, and the block ends done with nothing written.
pub(super) fn fail_block(host: &mut HostState, kind: EngineKind, why: String) -> wasmtime::Result<()> {
    match kind {
        EngineKind::Memrepro => bail!("{why}"),
        EngineKind::Metashrew => {
            host.failed.get_or_insert(why);
            Ok(())
        }
    }
}
