//! A stand-in for Bitcoin Core's JSON-RPC, serving blocks read by this crate: the methods a
//! block source calls (`getblockchaininfo`, `getblockhash`, `getblock HASH 0`), Basic
//! authentication, and the failures a real node shows (not answering yet, warming up, a full
//! work queue, still syncing). It is not Bitcoin Core: no Bitcoin Core can run on the machines
//! this project is tested on, so the RPC source is tested against this.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine;
use serde_json::{json, Value};

use crate::bitcoin::{decode_block, display, parse_hash};
use crate::block::Block;

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
    /// Serves `blocks` (consecutive heights) on 127.0.0.1 at `port` (0: any free port).
    pub fn start(blocks: Vec<Block>, behaviour: Behaviour, port: u16) -> anyhow::Result<Self> {
        let chain = Chain::new(blocks)?;
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| anyhow::anyhow!("{e}"))?);
        let url = format!("http://{}", server.server_addr().to_ip().expect("an IP listener"));
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, requests) = (server.clone(), requests.clone());
            std::thread::spawn(move || serve(&server, &chain, &behaviour, &requests))
        };
        Ok(Self { url, server, thread: Some(thread), requests })
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

struct Chain {
    first_height: u32,
    hashes: Vec<String>,
    blocks: Vec<Block>,
}

impl Chain {
    fn new(blocks: Vec<Block>) -> anyhow::Result<Self> {
        anyhow::ensure!(!blocks.is_empty(), "the stand-in needs blocks to serve");
        let first_height = blocks[0].height;
        for (i, block) in blocks.iter().enumerate() {
            anyhow::ensure!(block.height == first_height + i as u32, "the stand-in serves consecutive heights");
        }
        let hashes = blocks.iter().map(|b| Ok(display(&decode_block(&b.payload)?.hash))).collect::<anyhow::Result<_>>()?;
        Ok(Self { first_height, hashes, blocks })
    }

    fn tip(&self) -> u32 {
        self.first_height + self.blocks.len() as u32 - 1
    }

    fn at(&self, height: u64) -> Option<usize> {
        height.checked_sub(u64::from(self.first_height)).map(|i| i as usize).filter(|i| *i < self.blocks.len())
    }
}

fn serve(server: &tiny_http::Server, chain: &Chain, behaviour: &Behaviour, requests: &AtomicUsize) {
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
            answer(chain, behaviour, &body)
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

fn answer(chain: &Chain, behaviour: &Behaviour, body: &str) -> (u16, String) {
    let Ok(call) = serde_json::from_str::<Value>(body) else {
        return rpc_error(-32700, "Parse error");
    };
    let params = &call["params"];
    match call["method"].as_str().unwrap_or("") {
        "getblockchaininfo" => {
            let tip = chain.tip();
            let headers = tip + behaviour.syncing_headers_ahead.unwrap_or(0);
            let info = json!({
                "chain": "main", "blocks": tip, "headers": headers,
                "bestblockhash": chain.hashes.last(),
                "initialblockdownload": behaviour.syncing_headers_ahead.is_some(),
            });
            reply(200, info, Value::Null)
        }
        "getblockhash" => match params[0].as_u64().and_then(|h| chain.at(h)) {
            Some(i) => reply(200, json!(chain.hashes[i]), Value::Null),
            None => rpc_error(-8, "Block height out of range"),
        },
        "getblock" => {
            let found = params[0].as_str().and_then(|h| parse_hash(h).ok()).and_then(|hash| chain.hashes.iter().position(|h| *h == display(&hash)));
            match (found, params[1].as_u64()) {
                (Some(i), Some(0)) => reply(200, json!(hex::encode(&chain.blocks[i].payload)), Value::Null),
                (Some(_), _) => rpc_error(-8, "the stand-in serves verbosity 0 only"),
                (None, _) => rpc_error(-5, "Block not found"),
            }
        }
        other => rpc_error(-32601, &format!("Method not found: {other}")),
    }
}
