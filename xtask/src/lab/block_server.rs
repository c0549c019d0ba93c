//! The blocks, served to the node as Bitcoin Core serves them: `host-runner serve-blocks` in a
//! container of the runner image on the lab's internal network, reachable there as `bitcoind`.
//! It reads each block when asked (an index of offsets), and its tip is the run's last height.
//! Over an RPC source it is also on Docker's default bridge, to reach that node; the node under
//! test still reaches only the lab's network.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
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

    /// Starts the server on `network` over the source `source` names (block files, or another
    /// node's JSON-RPC), and waits until it answers with the expected tip.
    pub fn start(network: &Network, image: &str, user: &str, source: &BlockArgs, auth: Option<&str>, tip: u32) -> Result<Self> {
        let mut args = vec!["--read-only".into(), "--cap-drop=ALL".into(), "--security-opt=no-new-privileges".into(), format!("--user={user}"), format!("--network-alias={HOST}")];
        let (options, source_args, outside) = source_args(source)?;
        args.extend(options);
        args.extend([image.to_string(), "serve-blocks".into()]);
        args.extend(source_args);
        args.extend(["--listen".into(), format!("0.0.0.0:{PORT}")]);
        for (flag, value) in [("--from", source.from.map(|h| h.to_string())), ("--to", source.to.map(|h| h.to_string())), ("--start-hash", source.start_hash.clone()), ("--tip-hash", source.tip_hash.clone())] {
            args.extend(value.map(|value| [flag.to_string(), value]).into_iter().flatten());
        }
        if let Some(auth) = auth {
            args.extend(["--credentials".into(), auth.into()]);
        }
        let container = Container::run_also_on(unique_name("blocks"), network, outside.then_some("bridge"), &args)?;
        let server = Self { container };
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

/// The server's `docker run` options and source flags, and whether it must reach outside the lab (an RPC
/// source): block files are mounted read-only (their directory, so `xor.dat` comes along); an
/// RPC source's password goes by the `RPC_PASSWORD` environment variable, its cookie file mounted.
fn source_args(source: &BlockArgs) -> Result<(Vec<String>, Vec<String>, bool)> {
    if let Some(url) = &source.rpc {
        let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
        ensure!(
            !matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]"),
            "--rpc {url}: the block server runs in a container, which cannot reach this machine's loopback; give an address containers reach (e.g. Docker's bridge gateway, usually 172.17.0.1, with the node's rpcbind and rpcallowip set for it)"
        );
        let mut options = Vec::new();
        let mut args = vec!["--rpc".to_string(), url.clone()];
        if let Some(cookie) = &source.rpc_cookie {
            let cookie = cookie.canonicalize().with_context(|| format!("--rpc-cookie {}", cookie.display()))?;
            options.push(format!("--mount=type=bind,source={},target=/rpc/cookie,readonly", cookie.display()));
            args.extend(["--rpc-cookie".into(), "/rpc/cookie".into()]);
        }
        if let Some(user) = &source.rpc_user {
            let password = source.rpc_password.clone().or_else(|| std::env::var("RPC_PASSWORD").ok()).unwrap_or_default();
            options.push(format!("--env=RPC_PASSWORD={password}"));
            args.extend(["--rpc-user".into(), user.clone()]);
        }
        if let Some(wait) = source.rpc_wait {
            args.extend(["--rpc-wait".into(), wait.to_string()]);
        }
        return Ok((options, args, true));
    }
    let path = source.blocks.as_ref().context("no blocks: --blocks PATH or --rpc URL")?;
    let path = path.canonicalize().with_context(|| format!("--blocks {}", path.display()))?;
    let (parent, name) = (path.parent().unwrap_or(Path::new("/")), path.file_name().context("--blocks names no file")?);
    let mount = format!("--mount=type=bind,source={},target=/blocks,readonly", parent.display());
    Ok((vec![mount], vec!["--blocks".into(), format!("/blocks/{}", name.to_string_lossy())], false))
}
