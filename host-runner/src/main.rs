//! host-runner: runs a metashrew-ABI WASM indexer over blocks with wasmtime, commits each block
//! atomically to RocksDB and reports what happened as JSON (see the `schema` crate).
//!
//! Exit codes: 0 every block completed; 1 a block trapped (reported, nothing of it committed);
//! 2 the runner could not do its job (bad arguments, unreadable guest, database error);
//! 3 refused: this host cannot back the deterministic policy's budget (nothing written).


use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use host_runner::blocks::{parse_hex, read_blocks_file, Block, BlockArgs};
use host_runner::runner::{self, run, summary_line, write_atomically, RunRequest};
use host_runner::state_store::StateStore;
use host_runner::store::{Database, Layout};
use host_runner::{dump, host, policy, watch};
use schema::{ByteSize, EngineKind, Policy};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Memrepro,
    Metashrew,
}

#[derive(Subcommand)]
enum Command {
    /// Index blocks: each in a fresh instance, committed in one batch only if `_start` returns.
    Run {
        /// The guest: a .wasm (or .wat) module speaking the metashrew ABI.
        #[arg(long)]
        wasm: PathBuf,
        /// RocksDB directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Height of the single block to run.
        #[arg(long, conflicts_with_all = ["block_source", "from", "to", "start_hash"], required_unless_present = "block_source")]
        height: Option<u32>,
        /// That block's bytes as hex, without the height (the host prepends it). May be empty.
        #[arg(long, requires = "height", default_value = "")]
        payload: String,
        #[command(flatten)]
        source: BlockArgs,
        /// Where to write the result JSON (atomically).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stream the storage dump to this file instead of into the result JSON (big states).
        #[arg(long)]
        dump: Option<PathBuf>,
        /// What the host does when the guest grows its memory.
        #[arg(long, value_enum, default_value = "unbounded")]
        policy: Policy,
        /// The wasmtime configuration and host semantics: ours (memrepro), or metashrew's own
        /// (`Config::default()`; `abort` does not trap; unbounded policy only).
        #[arg(long, value_enum, default_value = "memrepro")]
        engine: EngineKind,
        /// The deterministic policy's fixed budget, e.g. 192MiB.
        #[arg(long)]
        memory_budget: Option<ByteSize>,
        /// The deterministic policy's fuel per block (about one unit per wasm instruction);
        /// running out traps the block the same way on every host.
        #[arg(long)]
        fuel: Option<u64>,
        /// Limit the runner's own address space (RLIMIT_AS), e.g. 3g.
        #[arg(long)]
        address_space_limit: Option<ByteSize>,
        /// Reserve no address space ahead for linear memory (growth moves it and may fail).
        #[arg(long)]
        small_memories: bool,
        /// Wall-clock limit of one block, in seconds; past it the block traps (nothing committed).
        #[arg(long, default_value_t = 300.0)]
        block_time_limit: f64,
        /// Replace wasmtime's native stack limit, in bytes (to check that the deterministic
        /// policy's trap depth does not depend on it).
        #[arg(long, hide = true)]
        native_stack: Option<usize>,
        /// The database layout: this runner's (the pairs and a real state root) or metashrew's
        /// (append-only histories, `smt:root`, tip and block hash keys), to compare a run with a
        /// production node's database.
        #[arg(long, value_enum, default_value = "memrepro")]
        layout: LayoutArg,
        /// Under `--layout metashrew`: write every key under `LABEL://`, as a node run with
        /// `--label LABEL` does.
        #[arg(long)]
        label: Option<String>,
    },
    /// Run `host-runner run ARGS…` as a child and write how it ended (exit, signal, OOM kills
    /// counted by this cgroup, the memory limit read back at start) to REPORT as JSON.
    Watch {
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
    },
    /// Print the committed state: one line per key, sorted, long values as length and SHA-256.
    Dump {
        #[arg(long)]
        db: PathBuf,
    },
    /// A metashrew node's database (opened read-only, nothing written): the guest's state as of a
    /// height, in the dump format, key order. A damaged history is an error naming its key.
    MetashrewState {
        /// The node's RocksDB directory.
        #[arg(long)]
        db: PathBuf,
        /// The state as of this height (default: the database's tip height).
        #[arg(long)]
        height: Option<u32>,
        /// The node ran with `--label LABEL`: its keys are under `LABEL://`.
        #[arg(long)]
        label: Option<String>,
        /// Open as a RocksDB secondary instance, for a database a running node is writing; this
        /// directory holds the instance's own files.
        #[arg(long)]
        secondary: Option<PathBuf>,
        /// Where the dump goes (written atomically).
        #[arg(long)]
        dump: PathBuf,
    },
    /// Two metashrew nodes' databases: where they first differ (block hashes per height first,
    /// then every guest key's history), as JSON. Exit 0 identical, 1 different state, 3 not
    /// compared: the nodes indexed different blocks.
    MetashrewDiff {
        /// Node A's and node B's RocksDB directories.
        #[arg(long = "db", required = true, num_args = 1, value_name = "DIR")]
        dbs: Vec<PathBuf>,
        /// Both nodes ran with `--label LABEL`.
        #[arg(long)]
        label: Option<String>,
    },
    /// Write what a database holds (tip, state root, dump) as JSON, e.g. after a killed run.
    State {
        /// A database of either layout (told by its column families).
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Stream the storage dump to this file instead of into the JSON.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// A metashrew-layout database's label.
        #[arg(long)]
        label: Option<String>,
    },
    /// Measurements for `cargo xtask bench` (one JSON object on stdout).
    #[command(hide = true, subcommand)]
    Bench(BenchCommand),
    /// Call a view function (`() -> i32`) against the committed state and print what it returns.
    View {
        #[arg(long)]
        wasm: PathBuf,
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        name: String,
        /// The view's input as hex (the host prepends the height).
        #[arg(long, default_value = "")]
        input: String,
        /// The height given to the view; defaults to the last committed height.
        #[arg(long)]
        height: Option<u32>,
        /// A metashrew-layout database's label.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The runner against a bare wasmtime `_start` of the same guest and block.
    Overhead {
        #[arg(long)]
        wasm: PathBuf,
        /// One block at height 1 with this payload (hex)...
        #[arg(long, default_value = "")]
        payload: String,
        /// ...or these blocks (any block source).
        #[arg(long, conflicts_with = "payload")]
        blocks: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Per-block cost over many small blocks.
    Blocks {
        #[arg(long, default_value_t = 10_000)]
        count: u32,
    },
    /// Each block's flushed pairs committed (`commit_block`) against one plain RocksDB batch of
    /// the same pairs, per block, RUNS times.
    Commit {
        /// The guest; without it an indexer-shaped one (`bench::PAIRS_GUEST`).
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The blocks timed, as `run --blocks` reads them.
        #[arg(long)]
        blocks: PathBuf,
        /// Blocks run and committed first, untimed (the state the timed blocks go into).
        #[arg(long)]
        after: Option<PathBuf>,
        /// Synthetic keys committed first, untimed.
        #[arg(long, default_value_t = 0)]
        into_state: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// A new store of KEYS keys, CHANGED of them with other values.
    MakeStore {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        keys: u64,
        #[arg(long, default_value_t = 0)]
        changed: u64,
        /// The store's layout (`metashrew`: a node's database, for `metashrew-diff`).
        #[arg(long, value_enum, default_value = "memrepro")]
        layout: LayoutArg,
    },
}

fn main() -> ExitCode {
    // Before any thread starts (an inherited RLIMIT_AS; see the function).
    policy::share_malloc_arenas_under_an_address_space_limit();
    match execute(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("host-runner: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            wasm,
            db,
            height,
            payload,
            source,
            out,
            dump,
            policy,
            engine,
            memory_budget,
            fuel,
            address_space_limit,
            small_memories,
            block_time_limit,
            native_stack,
            layout: db_layout,
            label,
        } => {
            let time_limit = std::time::Duration::try_from_secs_f64(block_time_limit)
                .ok()
                .filter(|limit| !limit.is_zero())
                .context("--block-time-limit must be a positive number of seconds")?;
            let policy = policy::MemoryPolicy::new(policy, memory_budget.map(ByteSize::bytes), fuel)?;
            let layout = policy::MemoryLayout::for_policy(policy, small_memories);
            // Before any block is read (`run` checks again, for callers of the library).
            host::check_engine_settings(engine, policy, layout, native_stack)?;
            let blocks = match height {
                Some(height) => vec![Block { height, payload: parse_hex(&payload).context("--payload")? }],
                None => source.read()?.context("no blocks: give --height, --blocks or --rpc")?.1,
            };
            let address_space_limit = address_space_limit.map(ByteSize::bytes);
            let db_layout = match db_layout {
                LayoutArg::Memrepro => {
                    anyhow::ensure!(label.is_none(), "--label is for --layout metashrew");
                    Layout::Memrepro
                }
                LayoutArg::Metashrew => Layout::Metashrew { label },
            };
            let request = RunRequest { wasm, db, blocks, engine, policy, layout, address_space_limit, time_limit, dump_file: dump, native_stack, db_layout };
            let result = match run(&request) {
                Err(error) if error.is::<policy::Refusal>() => {
                    eprintln!("host-runner: {error}");
                    return Ok(ExitCode::from(3));
                }
                other => other?,
            };
            if let Some(out) = out {
                write_atomically(&out, &result.to_json())?;
            }
            println!("{}", summary_line(&result));
            println!("STATE ROOT: {}", result.state_root);
            Ok(match result.outcome {
                schema::RunOutcome::Completed => ExitCode::SUCCESS,
                schema::RunOutcome::Trapped { .. } | schema::RunOutcome::TimedOut { .. } => ExitCode::from(1),
            })
        }
        Command::Watch { report, address_space_limit, export_to_log, run_args } => {
            watch::watch(&report, address_space_limit.map(ByteSize::bytes), &run_args, export_to_log)
        }
        Command::MetashrewState { db, height, label, secondary, dump } => {
            let node = host_runner::metashrew_db::MetashrewDb::open(&db, label.as_deref(), secondary.as_deref())?;
            let tip = node.tip_height()?;
            let height = height.or(tip).context("the database has no /__INTERNAL/tip-height: give --height")?;
            // Beside the dump, not in a /tmp that may be memory.
            let beside = dump.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let scratch = tempfile::tempdir_in(beside).context("a scratch directory beside the dump")?;
            let written = runner::write_atomically_with(&dump, |file| node.write_state(height, scratch.path(), file))?;
            let tip = tip.map_or("none".into(), |t| t.to_string());
            println!("{} keys as of height {height} (tip {tip}) written to {} (sha256 {})", written.lines, dump.display(), written.sha256);
            Ok(ExitCode::SUCCESS)
        }
        Command::MetashrewDiff { dbs, label } => {
            let [a, b] = <[PathBuf; 2]>::try_from(dbs).map_err(|dbs| anyhow::anyhow!("--db twice: node A and node B (got {})", dbs.len()))?;
            let open = |db: &PathBuf| host_runner::metashrew_db::MetashrewDb::open(db, label.as_deref(), None);
            let comparison = host_runner::metashrew_db::compare(&open(&a)?, &open(&b)?)?;
            println!("{}", serde_json::to_string_pretty(&comparison)?);
            Ok(ExitCode::from(match comparison.verdict {
                "identical" => 0,
                "different_blocks" => 3,
                _ => 1,
            }))
        }
        Command::Dump { db } => {
            let store = StateStore::open_read_only(&db)?;
            dump::write_dump(&store, std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::State { db, out, dump: dump_path, label } => {
            let state = Database::open_read_only(&db, label)?.stored_state(dump_path.as_deref())?;
            write_atomically(&out, &serde_json::to_string_pretty(&state)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(bench) => {
            let figures = match bench {
                BenchCommand::Overhead { wasm, payload, blocks, runs } => {
                    let blocks = match blocks {
                        Some(path) => read_blocks_file(&path)?,
                        None => vec![Block { height: 1, payload: parse_hex(&payload)? }],
                    };
                    host_runner::bench::overhead(&wasm, &blocks, runs)?
                }
                BenchCommand::Blocks { count } => host_runner::bench::blocks(count)?,
                BenchCommand::Commit { wasm, blocks, after, into_state, runs } => host_runner::bench::commit(&host_runner::bench::CommitBench {
                    wasm,
                    blocks: read_blocks_file(&blocks)?,
                    after: after.as_deref().map(read_blocks_file).transpose()?.unwrap_or_default(),
                    state_keys: into_state,
                    runs,
                })?,
                BenchCommand::MakeStore { db, keys, changed, layout } => {
                    let layout = match layout {
                        LayoutArg::Memrepro => Layout::Memrepro,
                        LayoutArg::Metashrew => Layout::Metashrew { label: None },
                    };
                    host_runner::bench::make_store(&db, keys, changed, &layout)?
                }
            };
            println!("{figures}");
            Ok(ExitCode::SUCCESS)
        }
        Command::View { wasm, db, name, input, height, label } => {
            let store = Database::open_read_only(&db, label)?;
            let policy = policy::MemoryPolicy::Unbounded;
            let time_limit = std::time::Duration::from_secs(60);
            let kind = EngineKind::Memrepro;
            let guest = host::Guest::load(&host::engine(kind, policy, policy::MemoryLayout::Reserved, None)?, kind, policy, time_limit, &wasm)?;
            anyhow::ensure!(guest.has_export(&name), "{} exports no view `{name}`", wasm.display());
            let height = height.or(store.tip()?).unwrap_or(0);
            let execution = guest.run_view(&store, height, &parse_hex(&input).context("--input")?, &name);
            let bytes = execution.result.map_err(|e| anyhow::anyhow!(runner::trap_message(&e)))
                .with_context(|| format!("view `{name}` trapped"))?;
            match std::str::from_utf8(&bytes) {
                Ok(text) if !text.chars().any(char::is_control) => println!("{text}"),
                _ => println!("0x{}", hex::encode(&bytes)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
