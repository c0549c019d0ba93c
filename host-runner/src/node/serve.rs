//! The node's JSON-RPC, as rockshrew-mono answers it: `metashrew_height` (the last height
//! committed, as a string) and `metashrew_view [NAME, INPUT_HEX, HEIGHT]` (the view's buffer as
//! `0x…` hex; HEIGHT a number or `"latest"`), each view in a fresh instance against the state as
//! of its height, several at once while the node indexes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use blocks::text::parse_hex;
use serde_json::{json, Value};
use state::Database;

use super::conduct::{Conduct, ViewCall};
use crate::engine::Guest;
use crate::run::result::trap_message;

/// Threads answering requests: views run concurrently up to this many.
const WORKERS: usize = 4;

/// Serves the node's JSON-RPC at `listen` on worker threads; returns the address it listens at.
pub fn start(listen: SocketAddr, guest: Arc<Guest>, db: Database, conduct: Arc<dyn Conduct>) -> Result<SocketAddr> {
    let server = Arc::new(tiny_http::Server::http(listen).map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?);
    let address = server.server_addr().to_ip().context("an IP listener")?;
    for _ in 0..WORKERS {
        let (server, guest, db, conduct) = (server.clone(), guest.clone(), db.clone(), conduct.clone());
        std::thread::spawn(move || {
            while let Ok(mut request) = server.recv() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let reply = answer(&guest, &db, conduct.as_ref(), &body).to_string();
                let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
                let _ = request.respond(tiny_http::Response::from_string(reply).with_header(header));
            }
        });
    }
    Ok(address)
}

fn answer(guest: &Guest, db: &Database, conduct: &dyn Conduct, body: &str) -> Value {
    let Ok(call) = serde_json::from_str::<Value>(body) else {
        return json!({ "jsonrpc": "2.0", "error": { "code": -32700, "message": "Parse error" }, "id": null });
    };
    let result = match call["method"].as_str().unwrap_or("") {
        "metashrew_height" => db.tip().map(|tip| json!(tip.unwrap_or(0).to_string())),
        "metashrew_view" => view(guest, db, conduct, &call["params"]).map(Value::String),
        other => Err(anyhow::anyhow!("Method not found: {other}")),
    };
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": call["id"] }),
        Err(error) => json!({ "jsonrpc": "2.0", "error": { "code": -32000, "message": format!("{error:#}") }, "id": call["id"] }),
    }
}

/// `metashrew_view [NAME, INPUT_HEX, HEIGHT]`: the view's buffer as `0x…` hex.
fn view(guest: &Guest, db: &Database, conduct: &dyn Conduct, params: &Value) -> Result<String> {
    let name = params[0].as_str().context("metashrew_view: the view's name first")?;
    let input = parse_hex(params[1].as_str().unwrap_or("")).context("metashrew_view: the input")?;
    let height = match &params[2] {
        Value::Number(height) => u32::try_from(height.as_u64().context("a height")?).context("a u32 height")?,
        Value::String(text) if text.as_str() != "latest" => text.parse().context("metashrew_view: a height or \"latest\"")?,
        _ => db.tip()?.unwrap_or(0),
    };
    anyhow::ensure!(guest.has_export(name), "the indexer exports no view `{name}`");
    let execution = guest.run_view(db, height, &input, name);
    let bytes = execution.result.map_err(|e| anyhow::anyhow!(trap_message(&e))).with_context(|| format!("view `{name}` trapped"))?;
    conduct.after_view(db, &ViewCall { name, input: &input, height }, &bytes)?;
    Ok(format!("0x{}", hex::encode(bytes)))
}
