//! The node lab, end to end on Docker: `cargo xtask repro --node IMAGE` over mainnet 0..589 from
//! a block file, with the chain guest. `host-runner node` is identical under every configured
//! profile (memory, one core, nofile, pids, views, crashes); each faulty node (one wrong choice
//! each, `host-runner/tests/nodes/faulty_node.rs`, built by `cargo xtask test` as FAULTY_NODE)
//! is caught by the profile that exists for it; bad input is refused before anything runs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use crate::support::*;

fn chain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet-0-589.blk")
}

/// `cargo xtask repro --node NODE --blocks <mainnet 0..589> ARGS…`, its report.
fn lab(node: &str, args: &[&str], out: &Path) -> (Output, Option<Value>) {
    let mut command = xtask_command();
    command.args(["repro", "--node", node, "--blocks"]).arg(chain()).args(args).arg("--out-dir").arg(out);
    let output = run_leaving_nothing(&mut command);
    let report = std::fs::read_dir(out).ok().and_then(|mut runs| runs.next()).map(|run| run.unwrap().path().join("report.json"));
    (output, report.filter(|r| r.exists()).map(|r| read_json(&r)))
}

/// Runs `command` (a `cargo xtask`), then checks it left no container or network of its own.
fn run_leaving_nothing(command: &mut std::process::Command) -> Output {
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("running xtask");
    let prefix = format!("name=memrepro-{}-", child.id());
    let output = child.wait_with_output().unwrap();
    for kind in [&["ps", "-a"][..], &["network", "ls"][..]] {
        let left = std::process::Command::new("docker").args(kind).args(["-q", "--filter", &prefix]).output().unwrap();
        assert!(left.stdout.is_empty(), "`docker {}` lists what the run left: {}", kind.join(" "), String::from_utf8_lossy(&left.stdout));
    }
    output
}

/// A scratch image whose entry point is the faulty node with `--fault FAULT`.
fn faulty_image(fault: &str) -> String {
    static BINARY_HASH: OnceLock<String> = OnceLock::new();
    let binary = PathBuf::from(std::env::var("FAULTY_NODE").expect("FAULTY_NODE: run the tests with `cargo xtask test`"));
    let hash = BINARY_HASH.get_or_init(|| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&binary).unwrap()))[..12].to_string()
    });
    let tag = format!("memrepro-faulty-node:{fault}-{hash}");
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, context.path().join("faulty-node")).unwrap();
    let dockerfile = format!("FROM scratch\nCOPY faulty-node /faulty-node\nENTRYPOINT [\"/faulty-node\", \"--fault\", \"{fault}\"]\n");
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let built = std::process::Command::new("docker").args(["build", "--quiet", "-t", &tag]).arg(context.path()).env("DOCKER_BUILDKIT", "0").output().unwrap();
    assert!(built.status.success(), "{}", describe(&built));
    tag
}

fn profile<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["profiles"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no profile {name}: {report}"))
}

#[test]
fn host_runner_node_is_identical_under_every_configured_profile() {
    let out = tempfile::tempdir().unwrap();
    let (output, report) = lab("host-runner", &[], out.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report.unwrap();
    assert_eq!(report["verdict"], "identical", "{report}");
    assert!(stdout.contains("VERDICT: identical — quiet, 512m, one-core, nofile-128, pids-64, views, views-one-core, crash indexed to height 589"), "{stdout}");
    for name in ["512m", "one-core", "nofile-128", "pids-64", "views", "views-one-core", "crash"] {
        let run = profile(&report, name);
        assert_eq!(run["db_tip"], 589, "{name}: {run}");
        assert_eq!(run["comparison"]["verdict"], "identical", "{name}: {run}");
    }
    // The limits were real: read back from the node's own cgroup.
    assert_eq!(profile(&report, "512m")["memory"]["cgroup_limit_bytes"], 512 << 20);
    let views = profile(&report, "views");
    assert!(views["views_answered"].as_u64().unwrap() > 0, "{views}");
    // Both view runs ask the same seeded questions: answers to the same question were compared.
    assert!(report["view_answers_compared"].as_u64().unwrap() > 0, "{report}");
    let crash = profile(&report, "crash");
    let injected = crash["injected"].as_array().unwrap();
    assert!(injected.iter().any(|i| i["what"].as_str().unwrap().starts_with("SIGKILL at height ")), "{crash}");
    assert!(stdout.contains("crash: SIGKILL at height "), "{stdout}");
}

/// Each faulty node, run under the quiet profile and the one that must catch it.
fn caught(fault: &str, profile_name: &str, extra: &[&str]) -> (Value, String) {
    let out = tempfile::tempdir().unwrap();
    let image = faulty_image(fault);
    let mut args = vec!["--profile", "quiet", "--profile", profile_name];
    args.extend_from_slice(extra);
    let (output, report) = lab(&image, &args, out.path());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{fault}: {}", describe(&output));
    let report = report.unwrap();
    assert_eq!(report["verdict"], "different", "{fault}: {report}");
    (report, stdout)
}

#[test]
fn a_cache_sized_from_visible_memory_is_caught_by_the_memory_profile() {
    let (report, stdout) = caught("cache-from-memory", "512m", &[]);
    let comparison = &profile(&report, "512m")["comparison"];
    assert_eq!(comparison["verdict"], "different_state", "{report}");
    // Under 512m the cache holds 8 entries: block 170, the first with a spend, writes more.
    assert_eq!(comparison["height"], 170, "{report}");
    assert!(stdout.contains("VERDICT: DIFFERENT — `512m` (memory 512m) differs from `quiet` first at height 170, first key \"/spent/"), "{stdout}");
}

#[test]
fn view_writes_leaking_into_the_state_are_caught_by_the_views_profile() {
    let (report, stdout) = caught("view-writes", "views", &[]);
    let comparison = &profile(&report, "views")["comparison"];
    assert_eq!(comparison["verdict"], "different_state", "{report}");
    assert!(comparison["keys"][0]["key"].as_str().unwrap().starts_with("\"/view/"), "{report}");
    assert!(stdout.contains("first diverging key \"/view/"), "{stdout}");
}

#[test]
fn a_block_in_two_batches_is_caught_by_the_crash_profile() {
    let (report, _) = caught("two-batches", "crash", &[]);
    let crash = profile(&report, "crash");
    assert_eq!(crash["comparison"]["verdict"], "different_state", "{report}");
    // The kills came while the node ran; the block a kill cut between its batches is half
    // written (the node already said it was at that height: the tip goes with the first batch),
    // so keys the quiet run wrote there are missing.
    let killed_at: Vec<u64> = crash["injected"].as_array().unwrap().iter().filter_map(|i| i["height"].as_u64()).collect();
    let height = crash["comparison"]["height"].as_u64().unwrap();
    assert!(killed_at.iter().any(|&k| height >= k), "{report}");
    let keys = crash["comparison"]["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["histories"][1].as_array().unwrap().iter().all(|e| e[0].as_u64() != Some(height))), "{report}");
}

#[test]
fn a_commit_retrying_for_ever_without_files_is_caught_stalled_by_the_nofile_profile() {
    let (report, stdout) = caught("emfile-retry", "nofile-128", &["--stall-secs", "5"]);
    let stalled = profile(&report, "nofile-128");
    assert_eq!(stalled["end"]["end"], "stalled", "{report}");
    let height = stalled["end"]["height"].as_u64().unwrap();
    assert!(height < 589, "{report}");
    assert!(stdout.contains(&format!("`nofile-128` (nofile 128) stalled at height {height} (no progress for 5 s), while `quiet` indexed to height 589")), "{stdout}");
}

#[test]
fn a_result_depending_on_the_number_of_cores_is_caught_by_the_one_core_profile() {
    let (report, stdout) = caught("cores", "one-core", &[]);
    let comparison = &profile(&report, "one-core")["comparison"];
    assert_eq!(comparison["verdict"], "different_state", "{report}");
    // The quiet run, with every core, ran a block against the state before the previous one.
    let height = comparison["height"].as_u64().unwrap();
    assert!(stdout.contains(&format!("one-core: first diverging height {height}")), "{stdout}");
    assert!(!comparison["keys"].as_array().unwrap().is_empty(), "{report}");
}

#[test]
fn bad_nodes_and_templates_are_refused_before_anything_runs_and_early_exits_are_reported() {
    let out = tempfile::tempdir().unwrap();
    let (missing, _) = lab("memrepro-no-such-node:1", &[], out.path());
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("node image `memrepro-no-such-node:1` is not on this machine"), "{}", describe(&missing));

    let (template, _) = lab("host-runner", &["--node-args=--indexer {wasm} --network {network}"], out.path());
    assert_eq!(template.status.code(), Some(2), "{}", describe(&template));
    assert!(String::from_utf8_lossy(&template.stderr).contains("names {network}: the placeholders are {rpc} {wasm} {db} {tip} {port}"), "{}", describe(&template));
    assert!(std::fs::read_dir(out.path()).map_or(true, |mut d| d.next().is_none()), "nothing written before the checks");

    // A node that exits at once (an argument it does not know) is reported with its code and last words.
    let (early, report) = lab("host-runner", &["--profile", "quiet", "--profile", "512m", "--node-args=--daemon-rpc-url {rpc} --indexer {wasm} --db-path {db} --port {port} --frobnicate"], out.path());
    assert_eq!(early.status.code(), Some(3), "{}", describe(&early));
    let report = report.unwrap();
    assert_eq!(report["verdict"], "not_compared");
    let stdout = String::from_utf8_lossy(&early.stdout);
    assert!(stdout.contains("the quiet run `quiet` exited with code 2 before indexing any block"), "{stdout}");
    assert!(stdout.contains("unexpected argument '--frobnicate'"), "{stdout}");
}

/// Docker's default bridge gateway: this machine as containers on that bridge see it.
fn bridge_gateway() -> String {
    let inet = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().expect("running ip");
    let text = String::from_utf8_lossy(&inet.stdout);
    let address = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or_else(|| panic!("no docker0 address: {text}"));
    address.split('/').next().unwrap().to_string()
}

#[test]
fn blocks_from_another_node_s_rpc_are_served_to_the_node_and_loopback_is_refused() {
    use blocks::stand_in::{Behaviour, StandIn};
    let index = blocks::Source::detect(&chain()).unwrap().index(blocks::HeightRange { from: None, to: Some(200) }, blocks::blk::Start::Genesis).unwrap();
    let behaviour = Behaviour { credentials: Some("rpc:secret".into()), ..Default::default() };
    let node = StandIn::start(index, behaviour, "0.0.0.0:0".parse().unwrap()).unwrap();
    let port = node.url.rsplit(':').next().unwrap().to_string();
    let run = |host: &str, out: &Path| {
        let url = format!("http://{host}:{port}");
        let args = ["repro", "--node", "host-runner", "--rpc", &url, "--rpc-user", "rpc", "--rpc-password", "secret", "--from", "0", "--to", "200", "--profile", "quiet", "--profile", "512m"];
        run_leaving_nothing(xtask_command().args(args).arg("--out-dir").arg(out))
    };
    let out = tempfile::tempdir().unwrap();
    let output = run(&bridge_gateway(), out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_json(&run_dir(out.path()).join("report.json"));
    assert_eq!(report["verdict"], "identical", "{report}");
    assert_eq!(profile(&report, "512m")["db_tip"], 200, "{report}");

    let refused = run("127.0.0.1", tempfile::tempdir().unwrap().path());
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot reach this machine's loopback"), "{}", describe(&refused));
}

/// `--node-args` for the faulty node binary with `--fault FAULT` (`none`: `host-runner node`).
fn faulty_args(fault: &str) -> String {
    format!("--node-args=--fault {fault} --daemon-rpc-url {{rpc}} --indexer {{wasm}} --db-path {{db}} --exit-at {{tip}} --port {{port}}")
}

#[test]
fn a_node_binary_runs_as_a_local_process_under_cpu_file_and_crash_profiles() {
    let binary = std::env::var("FAULTY_NODE").expect("FAULTY_NODE: run the tests with `cargo xtask test`");
    let out = tempfile::tempdir().unwrap();
    let honest = faulty_args("none");
    let profiles = ["--profile", "quiet", "--profile", "one-core", "--profile", "nofile-128", "--profile", "crash"];
    let (output, report) = lab(&binary, &[&[honest.as_str()][..], &profiles].concat(), out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report.unwrap();
    assert!(report["node"].as_str().unwrap().ends_with("(a local process)"), "{report}");
    assert_eq!(report["verdict"], "identical", "{report}");
    assert!(!profile(&report, "crash")["injected"].as_array().unwrap().is_empty(), "{report}");

    let out = tempfile::tempdir().unwrap();
    let leaking = faulty_args("emfile-retry");
    let (output, report) = lab(&binary, &[leaking.as_str(), "--profile", "quiet", "--profile", "nofile-128", "--stall-secs", "5"], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(profile(&report.unwrap(), "nofile-128")["end"]["end"], "stalled");

    // What only Docker can limit is refused before anything runs.
    let (refused, _) = lab(&binary, &[honest.as_str(), "--profile", "pids-64"], tempfile::tempdir().unwrap().path());
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("node profile `pids-64`: pids needs Docker"), "{}", describe(&refused));
}
