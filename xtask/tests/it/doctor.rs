//! `cargo xtask doctor` on this machine, where every prerequisite is installed (CI installs them).

use crate::support::*;

#[test]
fn doctor_finds_every_piece_this_machine_has() {
    let output = xtask_command().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for line in ["ok       docker CLI      Docker version", "ok       docker engine   reachable, version ", "ok       memory limits   the engine supports --memory", "ok       libclang        /", "ok       wasm32 target   wasm32-unknown-unknown", "ok       disk space      "] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    assert!(stdout.contains("ok       cgroup          v1 (") || stdout.contains("ok       cgroup          v2 ("), "{stdout}");
    assert!(stdout.contains("everything `cargo xtask repro` needs is here"), "{stdout}");
}

#[test]
fn doctor_names_the_fix_for_an_unreachable_daemon() {
    let output = xtask_command()
        .arg("doctor")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("MISSING  docker engine   the daemon does not answer\n         fix: start it"), "{stdout}");
}
