//! Following the chain: each next block pulled from Bitcoin Core's JSON-RPC, run and committed
//! in one batch, as rockshrew-mono does. A block that traps is retried every 5 s for ever, as
//! metashrew's node does: the node stays at that height, and says so.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use blocks::bitcoin::{decode_block, display, parse_hash};
use blocks::rpc::{Auth, Client, DEFAULT_PATIENCE};
use blocks::Block;
use schema::BlockOutcome;
use serde_json::json;
use state::Database;

use super::conduct::Conduct;
use super::config::NodeConfig;
use crate::engine::Guest;

/// How long a block that failed waits before it is run again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often a node at the chain's tip asks for a new block.
const POLL: Duration = Duration::from_secs(1);
/// Progress lines at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Indexes from the database's tip (or `--start-block`) until `--exit-at` is committed.
pub fn follow(config: &NodeConfig, guest: &Guest, db: &Database, conduct: &dyn Conduct) -> Result<()> {
    let client = client(config)?;
    let mut next = conduct.resume_at(db.tip()?, config.start_block);
    let mut said = Instant::now();
    // The chain's height as last asked: asked again only once the node has caught up with it.
    let mut count: Option<u64> = None;
    loop {
        if config.exit_at.is_some_and(|exit_at| next > exit_at) {
            eprintln!("host-runner node: height {} indexed: --exit-at reached", next - 1);
            return Ok(());
        }
        let asked_now = count.is_none_or(|count| u64::from(next) > count);
        if asked_now {
            let asked = client.call("getblockcount", json!([]))?.as_u64().context("getblockcount did not answer a number")?;
            count = Some(asked);
            if u64::from(next) > asked {
                std::thread::sleep(POLL);
                continue;
            }
        }
        let block = match fetch(&client, next) {
            Ok(block) => block,
            // The chain may have grown shorter since its height was asked: ask again first.
            Err(_) if !asked_now => {
                count = None;
                continue;
            }
            Err(error) => return Err(error),
        };
        index(guest, db, conduct, &block)?;
        if said.elapsed() >= PROGRESS_EVERY {
            eprintln!("host-runner node: indexed height {next}");
            said = Instant::now();
        }
        next += 1;
    }
}

fn client(config: &NodeConfig) -> Result<Client> {
    let auth = match config.auth.as_deref().map(|auth| auth.split_once(':')) {
        None => Auth::None,
        Some(Some((user, password))) => Auth::UserPassword(user.into(), password.into()),
        Some(None) => anyhow::bail!("--auth is USER:PASSWORD"),
    };
    Client::new(&config.daemon_rpc_url, &auth, DEFAULT_PATIENCE)
}

/// Block `height` from the node, checked against the hash it gave for that height.
fn fetch(client: &Client, height: u32) -> Result<Block> {
    let hash = client.call("getblockhash", json!([height]))?;
    let hash = parse_hash(hash.as_str().context("getblockhash did not answer a string")?)?;
    let hex_block = client.call("getblock", json!([display(&hash), 0])).with_context(|| format!("block {height}"))?;
    let payload = hex::decode(hex_block.as_str().context("getblock … 0 did not answer a string")?).context("getblock … 0 is not hex")?;
    let header = decode_block(&payload).with_context(|| format!("block {height} from {}", client.url()))?;
    anyhow::ensure!(header.hash == hash, "block {height} hashes to {}, not {} as getblockhash said", display(&header.hash), display(&hash));
    Ok(Block { height, payload })
}

/// Runs and commits `block`, retrying it until it is done.
fn index(guest: &Guest, db: &Database, conduct: &dyn Conduct, block: &Block) -> Result<()> {
    loop {
        let execution = guest.run_block(db, block.height, &block.payload);
        let report = conduct.commit(db, block, execution)?;
        match report.outcome {
            BlockOutcome::Completed | BlockOutcome::Aborted { .. } => return Ok(()),
            BlockOutcome::Trapped { message } | BlockOutcome::TimedOut { message } | BlockOutcome::HostLimit { message } => {
                eprintln!("host-runner node: block {} failed: {message}; run again in {} s", block.height, RETRY_AFTER.as_secs());
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}
