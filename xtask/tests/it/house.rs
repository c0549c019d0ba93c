//! The repository's shape: `cargo xtask tidy` passes on it (no circle between a crate's source
//! files, no import from a lower layer to a higher one, no function over 60 lines).

use crate::support::*;

#[test]
fn the_repository_passes_tidy() {
    let output = xtask_command().arg("tidy").output().expect("running xtask");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    for crate_folder in ["blocks", "host-runner", "schema", "xtask"] {
        assert!(printed.lines().any(|line| line.starts_with(crate_folder) && line.contains(" 0 circles  0 upward imports  0 functions over 60 lines")), "{printed}");
    }
}
