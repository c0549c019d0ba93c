//! The node lab (`cargo xtask repro --node IMAGE`): a user's metashrew-compatible node — or ours,
//! `host-runner node` — run once per profile on a fresh database, pulling real blocks over
//! JSON-RPC from our block server ([`block_server`]) on an internal Docker network
//! ([`containers`]), or as a local process ([`local_node`], `--node ./binary`) from a server in
//! this process; watched from outside until it has indexed the tip ([`drive`], through
//! [`process`]), loaded with view calls ([`views`]) and crashed where the profile says; then each
//! database is read with our metashrew reader and compared with the quiet run's ([`judge`],
//! [`report`]).

pub mod block_server;
pub mod containers;
pub mod drive;
pub mod judge;
pub mod local_node;
pub mod node;
pub mod process;
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
use crate::backend::local::LocalLimit;
use crate::backend::image::{runner_image, ImageBuild};
use crate::config::node::{NodeLab, NodeProfile};
use crate::flags::InputFlags;
use crate::input::{Guest, GuestChoice};
use crate::progress::{phase, quiet_phase};
use crate::run_dir::new_run_dir;
use block_server::BlockServer;
use blocks::stand_in::{Behaviour, StandIn};
use containers::{unique_name, Container, Network};
use drive::Drive;
use local_node::LocalNode;
use node::{container_args, in_container, Places, Program};
use process::NodeProcess;
use node::NodeUnderTest;
use profile_run::{database, ProfileRun};
use report::LabReport;

pub struct LabArgs {
    /// `--node`: an image on this machine, `host-runner`, or a path to a binary.
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
    /// Until a local block server takes it.
    index: Option<blocks::BlockIndex>,
}

impl Chain {
    fn check(source: &blocks::BlockArgs) -> Result<Self> {
        let found = source.source()?.context("the node lab needs Bitcoin blocks to serve: --blocks PATH (block files, HEIGHT.bin files or HEIGHT HEX text), or --rpc URL --from H --to H")?;
        let index = found.index(source.range()?, source.start()?)?;
        index.check()?;
        let description = format!("{}: heights {}..={}", found.describe(), index.first(), index.tip());
        Ok(Self { first: index.first(), tip: index.tip(), description, index: Some(index) })
    }

    fn heights(&self) -> [u32; 2] {
        [self.first, self.tip]
    }
}

/// Where the node and its block server run.
enum Site {
    /// An internal network, the block server in a container on it (declared first: dropped,
    /// so removed, before the network, which Docker removes only once nothing is on it).
    Docker { _server: BlockServer, network: Network, user: String },
    /// Local processes: the block server in this process, on loopback.
    Local { server: StandIn, limit: LocalLimit },
}

/// Every profile run, judged; the report published in a new run directory.
pub fn run_lab(sh: &Shell, root: &Path, args: LabArgs) -> Result<LabReport> {
    // Everything that can be wrong with the input, before anything is built or started.
    let node = NodeUnderTest::named(&args.node, &args.lab)?;
    let local = matches!(node.program, Program::Binary(_));
    match local {
        true => args.lab.profiles.iter().try_for_each(local_node::check_local)?,
        false => check_engine(sh)?,
    }
    let mut chain = Chain::check(&args.input.source)?;
    let guest = match (&args.input.wasm, args.input.guest) {
        (Some(path), _) => Guest::File(path.clone()),
        (None, choice) => Guest::Ours(choice.unwrap_or(GuestChoice::Chain)),
    };
    let total = 4 + args.lab.profiles.len();
    let wasm = phase(1, total, "guest", || guest.build(sh))?;
    let (node, runner, image) = phase(2, total, "runner (metashrew reader, block server, host-runner node)", || build(sh, root, node, args.image_build))?;
    let run_dir = new_run_dir(args.out_dir.clone())?;
    let input = run_dir.join("input");
    make_writable_for_container(&input)?;
    std::fs::copy(&wasm, input.join("indexer.wasm")).context("copying the indexer")?;
    let site = phase(3, total, &format!("block server: {}", chain.description), || Site::start(sh, &mut chain, image.as_deref(), &args))?;
    let lab = Lab { node: &node, site: &site, input: &input, run_dir: &run_dir, chain: &chain, args: &args };
    let mut runs = Vec::new();
    for (i, profile) in args.lab.profiles.iter().enumerate() {
        let what = format!("node profile `{}`: {}", profile.name, profile.describe());
        let run = quiet_phase(4 + i, total, &what, || lab.run_profile(profile))?;
        eprintln!("    {}", run.summary(chain.tip));
        runs.push(run);
    }
    drop(site);
    let wasm_sha256 = hex::encode(Sha256::digest(std::fs::read(&wasm)?));
    let judged = |label| LabReport::judge(&runner, &run_dir, runs, &node, &chain.description, chain.tip, label, wasm_sha256);
    phase(total, total, "compare", || judged(args.lab.label.as_deref()))
}

/// The runner binary (it reads the databases), and the runner image's tag when Docker runs the
/// lab (the block server, and `host-runner node`).
fn build(sh: &Shell, root: &Path, node: NodeUnderTest, image_build: ImageBuild) -> Result<(NodeUnderTest, PathBuf, Option<String>)> {
    let runner = build_runner(sh, &host_triple(sh)?)?;
    if matches!(node.program, Program::Binary(_)) {
        return Ok((node, runner, None));
    }
    let image = runner_image(sh, root, image_build)?;
    Ok((node.with_runner_image(&image.tag), runner, Some(image.tag)))
}

impl Site {
    /// The block server: in a container of the runner `image` on a new internal network, or
    /// (no image: the node is a local process) in this process on loopback.
    fn start(sh: &Shell, chain: &mut Chain, image: Option<&str>, args: &LabArgs) -> Result<Self> {
        let auth = args.lab.auth.as_deref();
        let Some(image) = image else {
            let behaviour = Behaviour { credentials: auth.map(String::from), ..Default::default() };
            let server = StandIn::on_loopback(chain.index.take().context("the blocks' index")?, behaviour)?;
            return Ok(Self::Local { server, limit: LocalLimit::probe()? });
        };
        let user = container_user(sh);
        let network = Network::create()?;
        let server = BlockServer::start(&network, image, &user, &args.input.source, auth, chain.tip)?;
        Ok(Self::Docker { _server: server, network, user })
    }
}

/// What every profile's run shares.
struct Lab<'a> {
    node: &'a NodeUnderTest,
    site: &'a Site,
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
        let (process, port) = self.start_node(profile, &dir)?;
        let address = Arc::new(RwLock::new(String::new()));
        let load = profile.views.as_ref().map(|load| views::Load::start(load, address.clone(), port, self.chain.heights()));
        let drive = Drive {
            node: process.as_ref(),
            port,
            tip: self.chain.tip,
            stall: Duration::from_secs(self.args.lab.stall_secs),
            timeout: self.args.timeout,
            crash: profile.crash.as_ref(),
            address,
        };
        let driven = drive.run();
        let answers = load.map(views::Load::finish).unwrap_or_default();
        process.save_log(&dir.join("node.log"))?;
        let log_tail = process.tail(10);
        drop(process);
        let driven = driven?;
        report::write_answers(&dir.join("views.jsonl"), &answers)?;
        Ok(ProfileRun { profile: profile.clone(), driven, answers, log_tail, dir })
    }

    /// The node started for `profile` where the site runs it; the port its JSON-RPC listens on.
    fn start_node(&self, profile: &NodeProfile, dir: &Path) -> Result<(Box<dyn NodeProcess>, u16)> {
        let [first, tip] = self.chain.heights();
        let name = unique_name(&profile.name);
        match (self.site, &self.node.program) {
            (Site::Docker { network, user, .. }, Program::Ours(image) | Program::Image(image)) => {
                let command_line = self.node.command_line(&in_container(BlockServer::url()), first, tip);
                let options = container_args(image, profile, user, self.input, &dir.join("data"), command_line);
                Ok((Box::new(Container::run(name, network, &options)?), node::PORT))
            }
            (Site::Local { server, limit }, Program::Binary(path)) => {
                let port = free_port()?;
                let places = Places { rpc: server.url.clone(), wasm: text(&self.input.join("indexer.wasm")), db: text(&database(dir)), port };
                let command_line = self.node.command_line(&places, first, tip);
                Ok((Box::new(LocalNode::run(name, path, command_line, profile, *limit, dir.join("node.log"))?), port))
            }
            _ => unreachable!("a binary runs locally, an image in Docker"),
        }
    }
}

/// A port on loopback nothing listens on now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?.local_addr()?.port())
}

fn text(path: &Path) -> String {
    path.display().to_string()
}
