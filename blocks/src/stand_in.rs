//! A JSON-RPC server that answers like Bitcoin Core from a [`BlockIndex`], reading each block when
//! it is asked for: what an indexer node under test pulls its blocks from, and what the RPC block
//! source is tested against. It is not Bitcoin Core (none can run on the machines this project is
//! tested on): it serves `getblockcount`, `getblockhash`, `getbestblockhash`, `getblock` (verbosity
//! 0 and 1), `getblockheader`, `getblockchaininfo` and `getnetworkinfo`, with Basic
//! authentication, and can show the failures a real node shows (not answering yet, warming up, a
//! full work queue, still syncing). Its tip is the index's last height.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine;
use serde_json::{json, Value};

use crate::bitcoin::{display, parse_hash, summarize, BlockHash};
use crate::index::BlockIndex;

#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// `user:password` a request must present, if any.
    pub credentials: Option<String>,
    /// Answer this many requests with HTTP 503 first.
    pub busy_first: usize,
    /// Answer this many requests with RPC error -28 (warming up) first.
    pub warming_up_first: usize,
    /// Claim to be in initial block download with headers this far ahead.
    pub syncing_headers_ahead: Option<u32>,
}

pub struct StandIn {
    pub url: String,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<AtomicUsize>,
}

impl StandIn {
    /// Serves `index` at `listen` (port 0: any free port).
    pub fn start(index: BlockIndex, behaviour: Behaviour, listen: SocketAddr) -> anyhow::Result<Self> {
        let server = Arc::new(tiny_http::Server::http(listen).map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?);
        let url = format!("http://{}", server.server_addr().to_ip().expect("an IP listener"));
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, requests) = (server.clone(), requests.clone());
            std::thread::spawn(move || serve(&server, &index, &behaviour, &requests))
        };
        Ok(Self { url, server, thread: Some(thread), requests })
    }

    /// Serves `index` on 127.0.0.1, on any free port.
    pub fn on_loopback(index: BlockIndex, behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::start(index, behaviour, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, index: &BlockIndex, behaviour: &Behaviour, requests: &AtomicUsize) {
    while let Ok(mut request) = server.recv() {
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let authorized = behaviour.credentials.as_ref().is_none_or(|credentials| {
            let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
            request.headers().iter().any(|h| h.field.equiv("Authorization") && h.value.as_str() == expected)
        });
        let (status, reply) = if !authorized {
            (401, String::new())
        } else if n < behaviour.busy_first {
            (503, "Work queue depth exceeded".into())
        } else if n < behaviour.busy_first + behaviour.warming_up_first {
            reply(500, Value::Null, json!({ "code": -28, "message": "Loading block index…" }))
        } else {
            answer(index, behaviour, &body)
        };
        let _ = request.respond(tiny_http::Response::from_string(reply).with_status_code(status));
    }
}

fn reply(status: u16, result: Value, error: Value) -> (u16, String) {
    (status, json!({ "result": result, "error": error, "id": "memrepro" }).to_string())
}

fn rpc_error(code: i64, message: &str) -> (u16, String) {
    reply(if code == -32601 { 404 } else { 500 }, Value::Null, json!({ "code": code, "message": message }))
}

/// A result, or the RPC error Bitcoin Core gives for it.
type Answer = Result<Value, (i64, String)>;

fn answer(index: &BlockIndex, behaviour: &Behaviour, body: &str) -> (u16, String) {
    let Ok(call) = serde_json::from_str::<Value>(body) else {
        return rpc_error(-32700, "Parse error");
    };
    let params = &call["params"];
    let tip = index.tip();
    let result = match call["method"].as_str().unwrap_or("") {
        "getblockcount" => Ok(json!(tip)),
        "getbestblockhash" => Ok(json!(display(&index.hash(tip).expect("the tip is indexed")))),
        "getblockhash" => block_hash(index, &params[0]),
        "getblock" => block(index, &params[0], params[1].as_u64().unwrap_or(1)),
        "getblockheader" => block(index, &params[0], 1).map(|mut header| {
            header.as_object_mut().map(|fields| fields.retain(|name, _| !["tx", "size"].contains(&name.as_str())));
            header
        }),
        "getblockchaininfo" => Ok(chain_info(index, behaviour)),
        "getnetworkinfo" => Ok(json!({
            "version": 0, "subversion": concat!("/memrepro-blocks:", env!("CARGO_PKG_VERSION"), "/"),
            "protocolversion": 70016, "connections": 0, "networkactive": true, "warnings": "",
        })),
        other => Err((-32601, format!("Method not found: {other}"))),
    };
    match result {
        Ok(result) => reply(200, result, Value::Null),
        Err((code, message)) => rpc_error(code, &message),
    }
}

fn chain_info(index: &BlockIndex, behaviour: &Behaviour) -> Value {
    let tip = index.tip();
    json!({
        "chain": "main", "blocks": tip, "headers": tip + behaviour.syncing_headers_ahead.unwrap_or(0),
        "bestblockhash": display(&index.hash(tip).expect("the tip is indexed")),
        "initialblockdownload": behaviour.syncing_headers_ahead.is_some(),
        "verificationprogress": 1.0, "pruned": false,
    })
}

fn block_hash(index: &BlockIndex, height: &Value) -> Answer {
    let hash = height.as_u64().and_then(|h| u32::try_from(h).ok()).and_then(|h| index.hash(h));
    hash.map(|hash| json!(display(&hash))).ok_or((-8, "Block height out of range".into()))
}

/// `getblock HASH VERBOSITY`: the block's hex (0), or what Bitcoin Core says of it (1) that its
/// bytes and place tell (no `chainwork`, `mediantime`, `strippedsize` or `weight`).
fn block(index: &BlockIndex, hash: &Value, verbosity: u64) -> Answer {
    let hash: BlockHash = hash.as_str().and_then(|h| parse_hash(h).ok()).ok_or((-8, "blockhash must be of length 64 (not a hash)".to_string()))?;
    let height = index.height_of(&hash).ok_or((-5, "Block not found".to_string()))?;
    let block = index.read(height).map_err(|e| (-1, format!("{e:#}")))?;
    match verbosity {
        0 => Ok(json!(hex::encode(&block.payload))),
        1 => {
            let summary = summarize(&block.payload).map_err(|e| (-1, format!("{e:#}")))?;
            let mut described = json!({
                "hash": display(&hash), "confirmations": index.tip() - height + 1, "size": block.payload.len(),
                "height": height, "version": summary.version, "versionHex": format!("{:08x}", summary.version),
                "merkleroot": display(&summary.merkle_root), "tx": summary.txids.iter().map(display).collect::<Vec<_>>(),
                "time": summary.time, "nonce": summary.nonce, "bits": format!("{:08x}", summary.bits),
                "difficulty": summary.difficulty(), "nTx": summary.txids.len(),
                "previousblockhash": (summary.prev != [0; 32]).then(|| display(&summary.prev)),
                "nextblockhash": index.hash(height + 1).map(|next| display(&next)),
            });
            // Bitcoin Core leaves out what a block has not (genesis's parent, the tip's child).
            described.as_object_mut().expect("an object").retain(|_, value| !value.is_null());
            Ok(described)
        }
        other => Err((-8, format!("the stand-in serves verbosity 0 and 1, not {other}"))),
    }
}
