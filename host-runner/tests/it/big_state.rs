//! States too big to hold: the dump streamed to a file, the incremental state root, and the
//! measurements `cargo xtask bench` takes through `host-runner bench`.

use sha2::{Digest, Sha256};

use crate::support::*;

fn bench(args: &[&str]) -> serde_json::Value {
    let output = runner().arg("bench").args(args).output().unwrap();
    assert!(output.status.success(), "bench {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn run_and_state_stream_the_dump_to_a_file_that_matches_the_inline_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let payload = hex_of(&stress_payload(1, 3, &[1]));
    let run = |name: &str, dump: Option<&str>| {
        let mut command = runner();
        command.arg("run").arg("--wasm").arg(guest_wasm()).arg("--db").arg(dir.path().join(name));
        command.args(["--height", "4", "--payload", &payload]).arg("--out").arg(dir.path().join(format!("{name}.json")));
        if let Some(dump) = dump {
            command.arg("--dump").arg(dir.path().join(dump));
        }
        assert!(command.status().unwrap().success());
        schema::RunResult::from_json(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap()).unwrap()
    };
    let inline = run("inline", None);
    let streamed = run("streamed", Some("dump.txt"));
    let text = std::fs::read_to_string(dir.path().join("dump.txt"))?;
    assert_eq!(text, inline.dump.join("\n") + "\n");
    assert!(streamed.dump.is_empty());
    let file = streamed.dump_file.as_ref().expect("dump_file");
    assert_eq!((file.lines, file.sha256.as_str()), (inline.dump.len() as u64, hex::encode(Sha256::digest(&text)).as_str()));
    assert_eq!(streamed.state_root, inline.state_root);

    let status = runner().arg("state").arg("--db").arg(dir.path().join("streamed")).arg("--out").arg(dir.path().join("state.json"))
        .arg("--dump").arg(dir.path().join("state-dump.txt")).status()?;
    assert!(status.success());
    let state: schema::StoredState = serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json"))?)?;
    assert_eq!((state.tip, state.stress_result.as_deref()), (Some(4), Some("SUCCESS:3MB")));
    assert_eq!(state.state_root, inline.state_root);
    assert_eq!(std::fs::read_to_string(dir.path().join("state-dump.txt"))?, text);
    Ok(())
}

#[test]
fn the_counter_guest_counts_every_block_and_both_instance_strategies_run_it() {
    let figures = bench(&["blocks", "--count", "300"]);
    assert_eq!(figures["blocks"], 300);
    for strategy in ["on_demand", "pooling"] {
        assert!(figures["instantiate_and_run_us"][strategy].as_f64().unwrap() > 0.0, "{figures}");
    }
    assert!(figures["mean_ms"]["commit"].as_f64().unwrap() > 0.0);
}

#[test]
fn stores_made_for_the_dump_benchmark_differ_in_exactly_the_changed_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let make = |name: &str, changed: &str| bench(&["make-store", "--db", dir.path().join(name).to_str().unwrap(), "--keys", "250000", "--changed", changed]);
    let (a, b) = (make("a", "0"), make("b", "10"));
    assert_ne!(a["state_root"], b["state_root"]);
    let (dump_a, dump_b) = (dump(&dir.path().join("a")).stdout, dump(&dir.path().join("b")).stdout);
    let (a_lines, b_lines) = (String::from_utf8(dump_a)?, String::from_utf8(dump_b)?);
    assert_eq!((a_lines.lines().count(), b_lines.lines().count()), (250_000, 250_000));
    let differing = a_lines.lines().zip(b_lines.lines()).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 10);
    // Read back by a fresh process, the store's root is the one its last block returned.
    let state = dir.path().join("state.json");
    assert!(runner().arg("state").arg("--db").arg(dir.path().join("b")).arg("--out").arg(&state).arg("--dump").arg(dir.path().join("b.txt")).status()?.success());
    assert_eq!(read_json_value(&state)["state_root"], b["state_root"]);
    Ok(())
}

#[test]
fn the_runner_overhead_is_measured_against_a_bare_start_of_the_same_guest() {
    let payload = hex_of(&stress_payload(2, 2, &[1]));
    let figures = bench(&["overhead", "--wasm", guest_wasm().to_str().unwrap(), "--payload", &payload, "--runs", "2"]);
    assert_eq!(figures["stored"], "SUCCESS:4MB");
    assert_eq!((figures["runner_secs"].as_array().unwrap().len(), figures["bare_secs"].as_array().unwrap().len()), (2, 2));
}

fn read_json_value(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
