//! The command line: one module per subcommand, each with its flags (clap) and one function.
//!
//! Exit codes (`schema::runner_exit`): 0 every block completed; 1 a block trapped (reported,
//! nothing of it committed); 2 the runner could not do its job (bad arguments, unreadable guest,
//! database error); 3 refused: this host cannot back the deterministic policy's budget (nothing
//! written).

mod bench;
mod engine_args;
mod metashrew;
pub mod node;
mod run;
mod serve_blocks;
mod snapshot;
mod state;
mod view;
mod watch;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "host-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index blocks: each in a fresh instance, committed in one batch only if `_start` returns.
    Run(run::RunArgs),
    /// Run `host-runner run ARGS…` as a child and write how it ended (exit, signal, OOM kills
    /// counted by this cgroup, the memory limit read back at start) to REPORT as JSON.
    Watch(watch::WatchArgs),
    /// Print the committed state: one line per key, sorted, long values as length and SHA-256.
    Dump(state::DumpArgs),
    /// A metashrew node's database (opened read-only, nothing written): the guest's state as of a
    /// height, in the dump format, key order. A damaged history is an error naming its key.
    MetashrewState(metashrew::StateArgs),
    /// Two metashrew nodes' databases: where they first differ (block hashes per height first,
    /// then every guest key's history), as JSON. Exit 0 identical, 1 different state, 3 not
    /// compared: the nodes indexed different blocks.
    MetashrewDiff(metashrew::DiffArgs),
    /// Write what a database holds (tip, state root, dump) as JSON, e.g. after a killed run.
    State(state::StateArgs),
    /// Make a copy of a node's database ready for a replay: its layout told, its state rolled
    /// back to --at (it writes: never point it at the node's own database).
    Snapshot(snapshot::SnapshotArgs),
    /// Measurements for `cargo xtask bench` (one JSON object on stdout).
    #[command(hide = true, subcommand)]
    Bench(bench::BenchCommand),
    /// Call a view function (`() -> i32`) against the committed state and print what it returns.
    View(view::ViewArgs),
    /// A metashrew-compatible indexer node (rockshrew-mono's command line): pulls blocks from
    /// Bitcoin Core's JSON-RPC, commits each in metashrew's layout, serves `metashrew_view` and
    /// `metashrew_height` over JSON-RPC.
    Node(node::NodeArgs),
    /// Serve a block source over JSON-RPC as Bitcoin Core does, for a node to index.
    ServeBlocks(serve_blocks::ServeBlocksArgs),
}

/// Runs the command line of this process; the exit code says how it went.
pub fn main() -> ExitCode {
    // Before any thread starts (see the function).
    crate::process::share_one_malloc_arena();
    crate::process::raise_open_files_limit();
    match execute(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("host-runner: error: {:#}", ::state::rocks::explain_out_of_files(error));
            ExitCode::from(schema::runner_exit::FAILED)
        }
    }
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Watch(args) => watch::watch(args),
        Command::Dump(args) => state::dump(args),
        Command::MetashrewState(args) => metashrew::state(args),
        Command::MetashrewDiff(args) => metashrew::diff(args),
        Command::Snapshot(args) => snapshot::snapshot(args),
        Command::State(args) => state::state(args),
        Command::Bench(command) => bench::bench(command),
        Command::View(args) => view::view(args),
        Command::Node(args) => node::node(args),
        Command::ServeBlocks(args) => serve_blocks::serve_blocks(args),
    }
}
