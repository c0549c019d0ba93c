//! `host-runner watch`: a run supervised from inside its own cgroup.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use schema::ByteSize;

#[derive(Args)]
pub struct WatchArgs {
    #[arg(long)]
    report: PathBuf,
    /// RLIMIT_AS for the watcher and the run it starts, e.g. 512m.
    #[arg(long)]
    address_space_limit: Option<ByteSize>,
    /// Afterwards print the report's directory (result, dump, …) framed on stdout, for runs
    /// whose only way out is their log (Kubernetes Jobs; `cargo xtask k8s collect`).
    #[arg(long)]
    export_to_log: bool,
    /// The arguments of the child, starting with `run`.
    #[arg(last = true, required = true)]
    run_args: Vec<String>,
}

pub fn watch(args: WatchArgs) -> Result<ExitCode> {
    crate::run::watch::watch(&args.report, args.address_space_limit.map(ByteSize::bytes), &args.run_args, args.export_to_log)
}
