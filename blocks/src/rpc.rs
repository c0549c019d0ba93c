//! Blocks from a Bitcoin Core node over JSON-RPC: `getblockchaininfo` first (is the range there,
//! is the node still syncing), then `getblockhash H` and `getblock HASH 0` per height. Transient
//! failures (connection refused, HTTP 503 "work queue depth exceeded", RPC -28 "warming up") are
//! retried with backoff; anything else is one clear error naming what is wrong.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use crate::bitcoin::{decode_block, display, parse_hash};
use crate::block::{Block, HeightRange};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a node that is starting, busy or not listening yet is waited for.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(120);
/// A 4 MB block is 8 MB of hex.
const MAX_RESPONSE: u64 = 32 << 20;

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// Bitcoin Core's `.cookie` file (`__cookie__:PASSWORD`), read when the client is made.
    Cookie(PathBuf),
    UserPassword(String, String),
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
    patience: Duration,
}

/// An error the node answered with (JSON-RPC `error`).
#[derive(Debug)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RPC error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

/// RPC_IN_WARMUP: the node is starting (loading the block index).
const RPC_IN_WARMUP: i64 = -28;
/// RPC_INVALID_PARAMETER: e.g. "Block height out of range".
const RPC_INVALID_PARAMETER: i64 = -8;

enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

// No proxy: the node is usually on loopback, and the credentials must not leave the host.
fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).timeout_global(Some(timeout)).build();
    ureq::Agent::new_with_config(config)
}

impl Client {
    pub fn new(url: &str, auth: &Auth, patience: Duration) -> Result<Self> {
        let credentials = match auth {
            Auth::None => None,
            Auth::UserPassword(user, password) => Some(format!("{user}:{password}")),
            Auth::Cookie(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the RPC cookie file {} (it exists only while the node runs)", path.display()))?
                    .trim()
                    .to_string(),
            ),
        };
        Ok(Self {
            agent: agent(Duration::from_secs(60)),
            url: url.to_string(),
            authorization: credentials.map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c))),
            patience,
        })
    }

    /// The same client, giving up on a call after `timeout` (60 s by default).
    pub fn answering_within(self, timeout: Duration) -> Self {
        Self { agent: agent(timeout), ..self }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One call, retried with backoff while the failure is transient, for up to the client's
    /// patience.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let started = std::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.call_once(method, &params) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) if started.elapsed() + backoff > self.patience => {
                    let waited = started.elapsed().as_secs_f64();
                    return Err(error.context(format!("Bitcoin Core at {} did not answer `{method}` ({attempts} attempts in {waited:.1} s)", self.url)));
                }
                Err(Failure::Retry(_)) => {}
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn call_once(&self, method: &str, params: &Value) -> Result<Value, Failure> {
        let body = json!({ "jsonrpc": "1.0", "id": "memrepro", "method": method, "params": params }).to_string();
        let mut request = self.agent.post(&self.url).content_type("application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = match request.send(body.as_bytes()) {
            Ok(response) => response,
            // Not listening yet, or the connection dropped: a node that is starting.
            Err(error @ (ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) | ureq::Error::HostNotFound)) => {
                return Err(Failure::Retry(anyhow::anyhow!("unreachable: {error}")))
            }
            Err(error) => return Err(Failure::Fatal(anyhow::anyhow!("asking Bitcoin Core at {}: {error}", self.url))),
        };
        let status = response.status().as_u16();
        if status == 401 {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "Bitcoin Core at {} refused the credentials (HTTP 401): check --rpc-cookie or --rpc-user/--rpc-password",
                self.url
            )));
        }
        if status == 403 {
            return Err(Failure::Fatal(anyhow::anyhow!("Bitcoin Core at {} refused this client (HTTP 403): see its -rpcallowip", self.url)));
        }
        if status == 503 {
            return Err(Failure::Retry(anyhow::anyhow!("HTTP 503 (the node's work queue is full)")));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| Failure::Retry(anyhow::anyhow!("reading the answer: {e}")))?;
        let reply: Value = serde_json::from_str(&text).map_err(|_| {
            Failure::Fatal(anyhow::anyhow!("{} answered `{method}` with HTTP {status} and no JSON-RPC reply: is it a Bitcoin Core RPC port?", self.url))
        })?;
        match &reply["error"] {
            Value::Null => Ok(reply["result"].clone()),
            error => {
                let error = RpcError { code: error["code"].as_i64().unwrap_or(0), message: error["message"].as_str().unwrap_or("").to_string() };
                if error.code == RPC_IN_WARMUP {
                    Err(Failure::Retry(anyhow::Error::new(error).context("the node is warming up")))
                } else {
                    Err(Failure::Fatal(anyhow::Error::new(error).context(format!("`{method}`"))))
                }
            }
        }
    }
}

/// The blocks of `range` (both ends required: a node's whole chain is never a sensible default).
pub fn read(client: &Client, range: HeightRange) -> Result<Vec<Block>> {
    fetch(client, range)?.collect()
}

/// The blocks of `range`, each fetched when the iterator reaches it, checked against the hash
/// the node gave for its height and linked to the block before.
pub fn fetch(client: &Client, range: HeightRange) -> Result<impl Iterator<Item = Result<Block>> + '_> {
    let (Some(from), Some(to)) = (range.from, range.to) else {
        bail!("--rpc needs --from and --to: which heights to fetch");
    };
    let info = client.call("getblockchaininfo", json!([]))?;
    let tip = info["blocks"].as_u64().context("getblockchaininfo has no `blocks`")?;
    if u64::from(to) > tip {
        let headers = info["headers"].as_u64().unwrap_or(tip);
        if info["initialblockdownload"].as_bool() == Some(true) || headers > tip {
            bail!("the node is still syncing: it has blocks up to height {tip} (headers to {headers}); --to {to} is beyond them");
        }
        bail!("height {to} is missing: the node's chain ({}) ends at height {tip}", info["chain"].as_str().unwrap_or("?"));
    }
    let mut previous = None;
    Ok((from..=to).map(move |height| {
        let block = fetch_one(client, height)?;
        let header = decode_block(&block.payload).expect("checked by fetch_one");
        if previous.is_some_and(|prev| header.prev != prev) {
            bail!("block {height} does not follow block {}: the node's chain changed while it was read (a reorg?)", height - 1);
        }
        previous = Some(header.hash);
        Ok(block)
    }))
}

/// The node's block at `height`, checked against the hash it gives for that height.
fn fetch_one(client: &Client, height: u32) -> Result<Block> {
    let hash = match client.call("getblockhash", json!([height])) {
        Err(e) if e.downcast_ref::<RpcError>().is_some_and(|r| r.code == RPC_INVALID_PARAMETER) => {
            bail!("height {height} is missing on the node: {e:#}")
        }
        other => other?,
    };
    let hash = parse_hash(hash.as_str().context("getblockhash did not return a string")?)?;
    let hex_block = client.call("getblock", json!([display(&hash), 0])).with_context(|| format!("block {height}"))?;
    let payload = hex::decode(hex_block.as_str().context("getblock … 0 did not return a string")?).context("getblock … 0 is not hex")?;
    let header = decode_block(&payload).with_context(|| format!("block {height} from the node"))?;
    if header.hash != hash {
        bail!("the node's block at height {height} hashes to {}, not {} as getblockhash said", display(&header.hash), display(&hash));
    }
    Ok(Block { height, payload })
}
