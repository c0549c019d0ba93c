//! The blocks, served to the node as Bitcoin Core serves them: `host-runner serve-blocks` in a
//! container of the runner image on the lab's internal network, reachable there as `bitcoind`.
//! It reads each block when asked (an index of offsets), and its tip is the run's last height.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use blocks::rpc::{Auth, Client};
use blocks::BlockArgs;
use serde_json::json;

use super::containers::{unique_name, Container, Network};

/// The block server's name on the lab's network, and its port.
pub const HOST: &str = "bitcoind";
pub const PORT: u16 = 8332;
/// How long the server may take to check its blocks and answer.
const READY_WITHIN: Duration = Duration::from_secs(300);

pub struct BlockServer {
    pub container: Container,
}

impl BlockServer {
    /// The URL the node is given.
    pub fn url() -> String {
        format!("http://{HOST}:{PORT}")
    }

    /// Starts the server on `network` over the block files `source` names, and waits until it
    /// answers with the expected tip.
    pub fn start(network: &Network, image: &str, user: &str, source: &BlockArgs, auth: Option<&str>, tip: u32) -> Result<Self> {
        let Some(path) = &source.blocks else {
            bail!("the node lab serves blocks from files or directories (--blocks PATH); an RPC source (--rpc) cannot be reached from the lab's internal network");
        };
        let path = path.canonicalize().with_context(|| format!("--blocks {}", path.display()))?;
        let (parent, name) = (path.parent().unwrap_or(Path::new("/")), path.file_name().context("--blocks names no file")?);
        let mut args = vec![
            format!("--network-alias={HOST}"),
            "--read-only".into(),
            "--cap-drop=ALL".into(),
            "--security-opt=no-new-privileges".into(),
            format!("--user={user}"),
            format!("--mount=type=bind,source={},target=/blocks,readonly", parent.display()),
            image.into(),
            "serve-blocks".into(),
            "--blocks".into(),
            format!("/blocks/{}", name.to_string_lossy()),
            "--listen".into(),
            format!("0.0.0.0:{PORT}"),
        ];
        for (flag, value) in [("--from", source.from.map(|h| h.to_string())), ("--to", source.to.map(|h| h.to_string())), ("--start-hash", source.start_hash.clone())] {
            args.extend(value.map(|value| [flag.to_string(), value]).into_iter().flatten());
        }
        if let Some(auth) = auth {
            args.extend(["--credentials".into(), auth.into()]);
        }
        let server = Self { container: Container::run(unique_name("blocks"), network, &args)? };
        server.wait_until_ready(auth, tip)?;
        Ok(server)
    }

    fn wait_until_ready(&self, auth: Option<&str>, tip: u32) -> Result<()> {
        let auth = match auth.and_then(|a| a.split_once(':')) {
            Some((user, password)) => Auth::UserPassword(user.into(), password.into()),
            None => Auth::None,
        };
        let started = Instant::now();
        loop {
            ensure!(self.container.state()?.running, "the block server stopped: {}", self.last_words());
            let client = Client::new(&format!("http://{}:{PORT}", self.container.address()?), &auth, Duration::ZERO)?.answering_within(Duration::from_secs(5));
            if let Ok(count) = client.call("getblockcount", json!([])) {
                ensure!(count == json!(tip), "the block server's tip is {count}, not {tip}");
                return Ok(());
            }
            ensure!(started.elapsed() < READY_WITHIN, "the block server did not answer within {} s: {}", READY_WITHIN.as_secs(), self.last_words());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn last_words(&self) -> String {
        self.container.tail(5).join(" | ")
    }
}
