//! `cargo xtask …`: the project's automation. Parse the flags, open the workspace (its root is
//! the current directory from then on), run the command, exit with its code (`exit.rs`); an
//! error is one line on stderr and exit 2.
//!
//! The modules in layers, lowest first; a module imports only from layers below its own, and
//! `cargo xtask tidy` checks it (`commands/tidy/layers.rs`):
//!
//! 0. `interrupt`: Ctrl-C and SIGTERM, noted and honoured where the xtask waits;
//! 1. `exit`, `units`, `config`, `run_dir`, `progress`, `artifacts`, `plot`: values, files,
//!    output and cargo builds, knowing nothing of runs;
//! 2. `input`, `snapshot`: the guest and its blocks, the database a run starts from;
//! 3. `backend/`: where the runner runs (Docker, a local limit) and how a run ended;
//! 4. `judge/`: outcomes, comparisons, the verdict and the report;
//! 5. `harness`, `flags`, `workspace`: a profile run end to end, the command line, the workspace;
//! 6. `commands/`: one module per command.

mod artifacts;
mod backend;
mod commands;
mod config;
mod exit;
mod flags;
mod harness;
mod input;
mod interrupt;
mod judge;
mod lab;
mod plot;
mod progress;
mod run_dir;
mod snapshot;
mod units;
mod workspace;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use commands::{bench, bisect, blocks_generate, compare, diff, doctor, k8s, matrix, repro, rpc_stand_in, sweep, test_suite, tidy};
use exit::Exit;
use flags::{Command, Flags};
use workspace::Workspace;

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Err(error) = interrupt::install() {
        eprintln!("error: installing the Ctrl-C handler: {error}");
        return Exit::HarnessError.into();
    }
    let exit = Workspace::open(flags.backend, flags.image_build).and_then(|ws| run(&ws, flags.command));
    // An interruption wins over whatever the command made of it: no verdict, exit 130.
    if let Some(interrupted) = interrupt::received() {
        eprintln!("{interrupted}: stopped; what this run started is removed");
        return ExitCode::from(interrupt::EXIT_CODE);
    }
    match exit {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            Exit::HarnessError.into()
        }
    }
}

fn run(ws: &Workspace, command: Command) -> Result<Exit> {
    match command {
        Command::Repro(flags) => repro::run(ws, flags),
        Command::Matrix(flags) => matrix::run(ws, flags),
        Command::Sweep(flags) => sweep::run(ws, flags),
        Command::Bisect(flags) => bisect::run(ws, flags),
        Command::RpcStandIn(flags) => rpc_stand_in::run(flags),
        Command::Blocks(flags::BlocksCommand::Generate(flags)) => blocks_generate::run(flags),
        Command::Compare(flags) => compare::run(ws, flags),
        Command::K8s(flags) => k8s::run(ws, flags),
        Command::Diff(flags) => diff::run(ws, flags),
        Command::Bench(flags) => bench::run(ws, flags),
        Command::Doctor => Ok(doctor::run(ws)),
        Command::Test(flags) => test_suite::run(ws, flags),
        Command::Tidy => tidy::run(ws),
    }
}
