//! A metashrew-compatible node that is wrong in one way, for the node lab's tests: `host-runner
//! node` with one of its choices ([`Conduct`]) replaced. Built with the tests (an example target),
//! never shipped. `faulty-node --fault NAME` then rockshrew-mono's flags, as `host-runner node`.
//!
//! Each fault is a kind of divergence metashrew has seen in production, made small:
//! - `cache-from-memory`: a write cache sized from the memory the node can see (its cgroup's
//!   limit, 64 MiB an entry) that drops what does not fit: what it writes depends on the limit;
//! - `view-writes`: what a view computed is kept in the pending writes and lands in the next
//!   block's batch: the state depends on the view traffic;
//! - `two-batches`: a block written in two batches, the tip with the first: a crash between them
//!   leaves the block half written, and the restart goes on from the next block;
//! - `emfile-retry`: a file descriptor leaked per block, and a commit that retries for ever when
//!   none is left: under a low `nofile` the node stalls;
//! - `cores`: with more than one core a block is executed before the one before it is committed
//!   (a pipeline), so it reads a stale state: the result depends on the number of cores.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use blocks::Block;
use bytes::Bytes;
use clap::Parser;
use host_runner::cli::node::NodeArgs;
use host_runner::engine::Execution;
use host_runner::node::{run_node, Conduct, ViewCall};
use host_runner::run::index::commit_block;
use schema::BlockReport;
use state::Database;

#[derive(Parser)]
#[command(name = "faulty-node", about = "host-runner node, wrong in one way (tests only)")]
struct Cli {
    #[arg(long, value_enum)]
    fault: Fault,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Fault {
    /// None: `host-runner node` itself, from the same binary (the tests' local node).
    None,
    CacheFromMemory,
    ViewWrites,
    TwoBatches,
    EmfileRetry,
    Cores,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = cli.node.config().and_then(|config| {
        let conduct: Arc<dyn Conduct> = match cli.fault {
            Fault::None => Arc::new(host_runner::node::Honest),
            Fault::CacheFromMemory => Arc::new(CacheFromMemory::sized_from_visible_memory()),
            Fault::ViewWrites => Arc::new(ViewWrites::default()),
            Fault::TwoBatches => Arc::new(TwoBatches),
            Fault::EmfileRetry => Arc::new(EmfileRetry),
            Fault::Cores => Arc::new(Pipelined::when_more_than_one_core(config.exit_at)),
        };
        run_node(&config, conduct)
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faulty-node: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

struct CacheFromMemory {
    entries: usize,
}

impl CacheFromMemory {
    fn sized_from_visible_memory() -> Self {
        let visible = cgroup::Cgroup::of_this_process().and_then(|c| c.limit()).or_else(cgroup::mem_available).unwrap_or(u64::MAX);
        let entries = usize::try_from(visible / (64 << 20)).unwrap_or(usize::MAX).max(1);
        eprintln!("faulty-node: write cache of {entries} entries ({visible} bytes visible)");
        Self { entries }
    }
}

impl Conduct for CacheFromMemory {
    fn commit(&self, db: &Database, block: &Block, mut execution: Execution<()>) -> Result<BlockReport> {
        execution.pairs.truncate(self.entries);
        commit_block(db, block, execution, &mut [0; 32])
    }
}

#[derive(Default)]
struct ViewWrites {
    pending: Mutex<Vec<(Bytes, Bytes)>>,
}

impl Conduct for ViewWrites {
    fn commit(&self, db: &Database, block: &Block, mut execution: Execution<()>) -> Result<BlockReport> {
        execution.pairs.append(&mut self.pending.lock().unwrap());
        commit_block(db, block, execution, &mut [0; 32])
    }

    fn after_view(&self, _db: &Database, call: &ViewCall, answer: &[u8]) -> Result<()> {
        let key = format!("/view/{}/{}", call.name, hex::encode(call.input));
        self.pending.lock().unwrap().push((Bytes::from(key), Bytes::copy_from_slice(answer)));
        Ok(())
    }
}

struct TwoBatches;

impl Conduct for TwoBatches {
    fn commit(&self, db: &Database, block: &Block, mut execution: Execution<()>) -> Result<BlockReport> {
        let second = execution.pairs.split_off(execution.pairs.len() / 2);
        commit_block(db, block, execution, &mut [0; 32])?;
        std::thread::sleep(Duration::from_millis(20));
        let rest = Execution { pairs: second, ..empty_execution() };
        commit_block(db, block, rest, &mut [0; 32])
    }
}

struct EmfileRetry;

impl Conduct for EmfileRetry {
    fn commit(&self, db: &Database, block: &Block, execution: Execution<()>) -> Result<BlockReport> {
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(journal) => {
                    std::mem::forget(journal);
                    return commit_block(db, block, execution, &mut [0; 32]);
                }
                Err(error) => {
                    eprintln!("faulty-node: block {}: {error}; retrying", block.height);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

/// With more than one core, block h is committed only after block h + 1 ran (against the state
/// without h); the last block (`--exit-at`) is committed at once.
struct Pipelined {
    pipelined: bool,
    exit_at: Option<u32>,
    waiting: Mutex<Option<(Block, Vec<(Bytes, Bytes)>)>>,
}

impl Pipelined {
    fn when_more_than_one_core(exit_at: Option<u32>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!("faulty-node: {cores} cores");
        Self { pipelined: cores > 1, exit_at, waiting: Mutex::new(None) }
    }
}

impl Conduct for Pipelined {
    fn commit(&self, db: &Database, block: &Block, execution: Execution<()>) -> Result<BlockReport> {
        if !self.pipelined {
            return commit_block(db, block, execution, &mut [0; 32]);
        }
        let mut waiting = self.waiting.lock().unwrap();
        if let Some((before, pairs)) = waiting.take() {
            commit_block(db, &before, Execution { pairs, ..empty_execution() }, &mut [0; 32])?;
        }
        if Some(block.height) == self.exit_at {
            return commit_block(db, block, execution, &mut [0; 32]);
        }
        let report = commit_block(db, block, Execution { pairs: Vec::new(), ..empty_execution() }, &mut [0; 32]);
        *waiting = Some((block.clone(), execution.pairs));
        report
    }
}

fn empty_execution() -> Execution<()> {
    Execution {
        result: Ok(()),
        pairs: Vec::new(),
        flushed_bytes: 0,
        charged_bytes: 0,
        failed: None,
        fuel_consumed: None,
        wasm_memory_bytes: 0,
        refused_growths: 0,
        instantiate_ms: 0.0,
        execute_ms: 0.0,
    }
}
