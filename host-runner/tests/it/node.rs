//! `host-runner node` pulling mainnet 0..589 from the block server (the blocks crate's, as
//! `host-runner serve-blocks` runs it), with the chain guest: what it commits equals what `run`
//! commits in the same layout, its views answer as of a height while it indexes, and after a
//! kill at any point it resumes at its tip and ends with the same state.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blocks::blk::Start;
use blocks::rpc::{Auth, Client};
use blocks::stand_in::{Behaviour, StandIn};
use blocks::{HeightRange, Source};
use serde_json::json;

use crate::support::{chain_guest_wasm, runner, TestResult};

fn chain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet-0-589.blk")
}

/// The chain served on loopback, behind credentials.
fn serve_chain() -> StandIn {
    let index = Source::detect(&chain()).unwrap().index(HeightRange::default(), Start::Genesis).unwrap();
    StandIn::on_loopback(index, Behaviour { credentials: Some("rpc:secret".into()), ..Default::default() }).unwrap()
}

/// A running `host-runner node`, its JSON-RPC and what it printed.
struct Node {
    child: Child,
    rpc: Client,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(blocks: &StandIn, db: &Path, extra: &[&str]) -> Node {
        let mut child = runner()
            .arg("node")
            .args(["--daemon-rpc-url", &blocks.url, "--auth", "rpc:secret", "--port", "0"])
            .arg("--indexer")
            .arg(chain_guest_wasm())
            .arg("--db-path")
            .arg(db)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().expect("the node says where it listens").unwrap();
        let address = first.split("JSON-RPC at ").nth(1).and_then(|rest| rest.split(';').next()).unwrap_or_else(|| panic!("{first}"));
        let log = Arc::new(Mutex::new(vec![first.clone()]));
        let kept = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| kept.lock().unwrap().push(line)));
        let rpc = Client::new(address, &Auth::None, Duration::from_secs(10)).unwrap();
        Node { child, rpc, log }
    }

    fn height(&self) -> u64 {
        self.rpc.call("metashrew_height", json!([])).unwrap().as_str().unwrap().parse().unwrap()
    }

    /// Waits until the node has indexed `height`.
    fn wait_for(&self, height: u64) {
        let started = Instant::now();
        while self.height() < height {
            assert!(started.elapsed() < Duration::from_secs(120), "stuck at {}: {:?}", self.height(), self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn view(&self, name: &str, input: &[u8], height: serde_json::Value) -> String {
        self.rpc.call("metashrew_view", json!([name, hex::encode(input), height])).unwrap().as_str().unwrap().to_string()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// `host-runner run` of the chain guest over 0..=`to` in `layout`, into `db`.
fn run_layout(db: &Path, to: u32, layout: &str) {
    let output = runner().arg("run").arg("--wasm").arg(chain_guest_wasm()).arg("--blocks").arg(chain()).args(["--to", &to.to_string(), "--layout", layout]).arg("--db").arg(db).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `metashrew-diff` of two databases: its exit code and verdict.
fn diff(a: &Path, b: &Path) -> (Option<i32>, serde_json::Value) {
    let output = runner().arg("metashrew-diff").arg("--db").arg(a).arg("--db").arg(b).output().unwrap();
    (output.status.code(), serde_json::from_slice(&output.stdout).unwrap_or_default())
}

#[test]
fn the_node_indexes_to_exit_at_and_holds_what_a_run_commits_in_each_layout() -> TestResult {
    let blocks = serve_chain();
    let dir = tempfile::tempdir()?;
    for layout in ["metashrew-v10", "metashrew"] {
        let (node_db, run_db) = (dir.path().join(format!("node-{layout}")), dir.path().join(format!("run-{layout}")));
        let node = Node::start(&blocks, &node_db, &["--exit-at", "200", "--layout", layout]);
        let status = { node }.child.wait()?;
        assert!(status.success(), "{status}");
        run_layout(&run_db, 200, layout);
        let (code, comparison) = diff(&node_db, &run_db);
        assert_eq!((code, &comparison["verdict"], &comparison["tips"]), (Some(0), &json!("identical"), &json!([200, 200])), "{comparison}");
        assert_eq!(comparison["block_hashes_compared"], 201);
    }
    Ok(())
}

#[test]
fn views_answer_as_of_a_height_while_it_indexes_and_a_killed_node_resumes_to_the_same_state() -> TestResult {
    let blocks = serve_chain();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("node");
    let node = Node::start(&blocks, &db, &[]);
    node.wait_for(300);
    // Block 170's hash (internal byte order), as of heights at and after 170, none before.
    let mut h170 = hex::decode("00000000d1145790a8694403d4063f323d499e655c83426834d4ce2f8dd4a2ee")?;
    h170.reverse();
    let h170 = format!("0x{}", hex::encode(h170));
    assert_eq!(node.view("blockhash", &170u32.to_le_bytes(), json!(170)), h170);
    assert_eq!(node.view("blockhash", &170u32.to_le_bytes(), json!("latest")), h170);
    assert_eq!(node.view("blockhash", &170u32.to_le_bytes(), json!(169)), "0x");
    let error = node.rpc.call("metashrew_view", json!(["nothing", "", "latest"])).unwrap_err();
    assert!(format!("{error:#}").contains("the indexer exports no view `nothing`"), "{error:#}");
    // Killed mid-chain, then run again on the same database to the tip.
    node.kill();
    let resumed = Node::start(&blocks, &db, &["--exit-at", "589"]);
    let status = { resumed }.child.wait()?;
    assert!(status.success(), "{status}");
    let whole = dir.path().join("whole");
    run_layout(&whole, 589, "metashrew-v10");
    let (code, comparison) = diff(&db, &whole);
    assert_eq!((code, &comparison["verdict"], &comparison["tips"]), (Some(0), &json!("identical"), &json!([589, 589])), "{comparison}");
    Ok(())
}

#[test]
fn a_node_refuses_what_it_cannot_run_with_one_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let output = runner().args(["node", "--daemon-rpc-url", "http://127.0.0.1:1", "--indexer"]).arg(dir.path().join("none.wasm")).arg("--db-path").arg(dir.path().join("db")).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(2) && stderr.contains("none.wasm"), "{stderr}");
    // rockshrew-mono's flags that this node does not have are refused, not ignored.
    let output = runner().args(["node", "--daemon-rpc-url", "http://127.0.0.1:1", "--indexer", "x", "--db-path", "y", "--pipeline-size", "4"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(2) && stderr.contains("--pipeline-size"), "{stderr}");
    Ok(())
}
