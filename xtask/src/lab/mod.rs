//! The node lab (`cargo xtask repro --node IMAGE`): a user's metashrew-compatible node — or ours,
//! `host-runner node` — run once per profile on a fresh database, pulling real blocks over
//! JSON-RPC from our block server ([`block_server`]) on an internal Docker network
//! ([`containers`]), watched from outside until it has indexed the tip ([`drive`]), loaded with
//! view calls ([`views`]) and crashed where the profile says; then each database is read with our
//! metashrew reader and compared with the quiet run's ([`judge`], [`report`]).

pub mod block_server;
pub mod containers;
pub mod drive;
pub mod judge;
pub mod node;
pub mod profile_run;
pub mod report;
pub mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::artifacts::{build_runner, host_triple};
use crate::backend::docker::{check_engine, container_user, make_writable_for_container};
use crate::backend::image::{runner_image, ImageBuild};
use crate::config::node::{NodeLab, NodeProfile};
use crate::flags::InputFlags;
use crate::input::{Guest, GuestChoice};
use crate::progress::{phase, quiet_phase};
use crate::run_dir::new_run_dir;
use block_server::BlockServer;
use containers::{unique_name, Container, Network};
use drive::Drive;
use node::NodeUnderTest;
use profile_run::ProfileRun;
use report::LabReport;

pub struct LabArgs {
    /// `--node`: an image on this machine, or `host-runner`.
    pub node: String,
    pub lab: NodeLab,
    pub input: InputFlags,
    pub timeout: Duration,
    pub image_build: ImageBuild,
    pub out_dir: PathBuf,
}

/// The blocks of a lab run, indexed and read once to check them before anything starts.
struct Chain {
    first: u32,
    tip: u32,
    description: String,
}

impl Chain {
    fn check(source: &blocks::BlockArgs) -> Result<Self> {
        let found = source.source()?.context("the node lab needs Bitcoin blocks to serve: --blocks PATH (block files, HEIGHT.bin files or HEIGHT HEX text)")?;
        let index = found.index(source.range()?, source.start()?)?;
        index.check()?;
        let description = format!("{}: heights {}..={}", found.describe(), index.first(), index.tip());
        Ok(Self { first: index.first(), tip: index.tip(), description })
    }
}

/// Every profile run, judged; the report published in a new run directory.
pub fn run_lab(sh: &Shell, root: &Path, args: LabArgs) -> Result<LabReport> {
    // Everything that can be wrong with the input, before anything is built or started.
    check_engine(sh)?;
    let node = NodeUnderTest::named(&args.node, &args.lab)?;
    let chain = Chain::check(&args.input.source)?;
    let guest = match (&args.input.wasm, args.input.guest) {
        (Some(path), _) => Guest::File(path.clone()),
        (None, choice) => Guest::Ours(choice.unwrap_or(GuestChoice::Chain)),
    };
    let total = 4 + args.lab.profiles.len();
    let wasm = phase(1, total, "guest", || guest.build(sh))?;
    let image = phase(2, total, "runner image (block server and host-runner node)", || runner_image(sh, root, args.image_build))?;
    let runner = build_runner(sh, &host_triple(sh)?)?;
    let node = node.with_runner_image(&image.tag);

    let run_dir = new_run_dir(args.out_dir.clone())?;
    let input = run_dir.join("input");
    make_writable_for_container(&input)?;
    std::fs::copy(&wasm, input.join("indexer.wasm")).context("copying the indexer")?;
    let user = container_user(sh);
    let network = Network::create()?;
    let server = phase(3, total, &format!("block server: {}", chain.description), || {
        BlockServer::start(&network, &image.tag, &user, &args.input.source, args.lab.auth.as_deref(), chain.tip)
    })?;
    let lab = Lab { node: &node, network: &network, user: &user, input: &input, run_dir: &run_dir, chain: &chain, args: &args };
    let mut runs = Vec::new();
    for (i, profile) in args.lab.profiles.iter().enumerate() {
        let what = format!("node profile `{}`: {}", profile.name, profile.describe());
        let run = quiet_phase(4 + i, total, &what, || lab.run_profile(profile))?;
        eprintln!("    {}", run.summary(chain.tip));
        runs.push(run);
    }
    drop(server);
    let wasm_sha256 = hex::encode(Sha256::digest(std::fs::read(&wasm)?));
    phase(total, total, "compare", || LabReport::judge(&runner, &run_dir, runs, &node, &chain.description, chain.tip, args.lab.label.as_deref(), wasm_sha256))
}

/// What every profile's run shares.
struct Lab<'a> {
    node: &'a NodeUnderTest,
    network: &'a Network,
    user: &'a str,
    input: &'a Path,
    run_dir: &'a Path,
    chain: &'a Chain,
    args: &'a LabArgs,
}

impl Lab<'_> {
    /// The node on a fresh database under the profile's limits, its view load while it runs.
    fn run_profile(&self, profile: &NodeProfile) -> Result<ProfileRun> {
        let dir = self.run_dir.join(&profile.name);
        make_writable_for_container(&dir.join("data"))?;
        let command_line = self.node.command_line(&BlockServer::url(), self.chain.first, self.chain.tip);
        let options = self.node.container_args(profile, self.user, self.input, &dir.join("data"), command_line);
        let container = Container::run(unique_name(&profile.name), self.network, &options)?;
        let address = Arc::new(RwLock::new(String::new()));
        let load = profile.views.as_ref().map(|load| views::Load::start(load, address.clone(), [self.chain.first, self.chain.tip]));
        let drive = Drive {
            container: &container,
            tip: self.chain.tip,
            stall: Duration::from_secs(self.args.lab.stall_secs),
            timeout: self.args.timeout,
            crash: profile.crash.as_ref(),
            address,
        };
        let driven = drive.run();
        let answers = load.map(views::Load::finish).unwrap_or_default();
        container.save_log(&dir.join("node.log"))?;
        let log_tail = container.tail(10);
        let driven = driven?;
        report::write_answers(&dir.join("views.jsonl"), &answers)?;
        Ok(ProfileRun { profile: profile.clone(), driven, answers, log_tail, dir })
    }
}
