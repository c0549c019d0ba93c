//! The memory-stress guest through the real runner.

use crate::support::*;

const GIB: u64 = 1 << 30;

#[test]
fn default_stress_payload_50x20_stores_success_1000mb() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run = run_block(guest_wasm(), &dir.path().join("db"), 1, &stress_payload(50, 20, &[]));
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr());
    assert!(run.stdout().contains("RESULT: WASM completed successfully, stored: SUCCESS:1000MB"), "{}", run.stdout());
    let result = run.result();
    assert_eq!(result.stress_result.as_deref(), Some("SUCCESS:1000MB"));
    // 1000 MB kept plus one exactly-sized flush message holding all of it: about twice the data.
    let memory = result.memory.wasm_memory_bytes;
    assert!((2_000_000_000..2 * GIB + (64 << 20)).contains(&memory), "{memory}");
    let data_lines: Vec<_> = result.dump.iter().filter(|l| l.starts_with("\"/memory-stress-data/1/")).collect();
    assert_eq!(data_lines.len(), 20);
    assert!(data_lines.iter().all(|l| l.contains("= len=52428800 sha256=")), "{data_lines:?}");
    assert!(result.dump.contains(&r#""/memory-stress-success" = "\x01\x00\x00\x00""#.to_string()));
    assert_eq!(result.blocks[0].flushed_pairs, 23, "test marker, 20 allocations, result, success marker");
    Ok(())
}

#[test]
fn an_allocation_that_cannot_fit_wasm32_stores_the_error_and_no_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run = run_block(guest_wasm(), &dir.path().join("db"), 3, &stress_payload(1000, 5, &[]));
    assert_eq!(run.code(), Some(0), "the guest handles the failure itself: {}", run.stderr());
    let result = run.result();
    assert_eq!(
        result.stress_result.as_deref(),
        Some("ERROR:Failed at allocation 4 of 5: Failed to reserve 1000MB")
    );
    assert_eq!(
        result.dump,
        [
            r#""/memory-stress-failure" = "\x03\x00\x00\x00""#,
            r#""/memory-stress-result/3" = "ERROR:Failed at allocation 4 of 5: Failed to reserve 1000MB""#,
            r#""/memory-stress-test" = "started""#,
        ]
    );
    Ok(())
}

#[test]
fn digest_storage_keeps_the_state_small_and_views_return_what_was_stored() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let run = run_block(guest_wasm(), &db, 7, &stress_payload(10, 3, &[1, 1]));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let result = run.result();
    assert_eq!(result.stress_result.as_deref(), Some("SUCCESS:30MB"));
    // Length (u64 LE) ++ SHA-256 = 40 bytes, shown in full; released allocations keep memory low.
    let record = result.dump.iter().find(|l| l.starts_with("\"/memory-stress-data/7/2\"")).unwrap();
    assert!(record.starts_with(r#""/memory-stress-data/7/2" = "\x00\x00\xa0\x00\x00\x00\x00\x00"#), "{record}");
    assert!(result.memory.wasm_memory_bytes < 64 << 20, "{}", result.memory.wasm_memory_bytes);

    assert_eq!(view(guest_wasm(), &db, "get_stress_result"), "SUCCESS:30MB");
    assert_eq!(view(guest_wasm(), &db, "check_success"), "0x07000000");
    assert_eq!(view(guest_wasm(), &db, "check_failure"), "");
    Ok(())
}

#[test]
fn a_short_payload_is_stored_under_its_height_and_an_empty_one_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    assert_eq!(run_block(guest_wasm(), &db, 5, b"abc").code(), Some(0));
    let run = run_block(guest_wasm(), &db, 6, b"");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().dump, [r#""/blocks/5" = "abc""#, r#""/blocks/6" = """#]);
    assert!(run.stdout().contains("stored: (no stress result)"), "{}", run.stdout());
    Ok(())
}

#[test]
fn the_dump_is_byte_stable_across_two_runs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let blocks = dir.path().join("blocks.txt");
    std::fs::write(&blocks, format!("1 {}\n2 {}\n3 ff00\n", hex_of(&stress_payload(2, 3, &[])), hex_of(&stress_payload(1, 2, &[1]))))?;
    let mut dumps = Vec::new();
    let mut roots = Vec::new();
    for name in ["a", "b"] {
        let db = dir.path().join(name);
        let out = dir.path().join(format!("{name}.json"));
        let status = runner().arg("run").arg("--wasm").arg(guest_wasm()).arg("--db").arg(&db)
            .arg("--blocks").arg(&blocks).arg("--out").arg(&out).status()?;
        assert!(status.success());
        let result = schema::RunResult::from_json(&std::fs::read_to_string(&out)?)?;
        assert_eq!(result.blocks.len(), 3);
        roots.push(result.blocks.iter().map(|b| b.state_root.clone()).collect::<Vec<_>>());
        let output = dump(&db);
        assert!(output.status.success());
        assert_eq!(String::from_utf8(output.stdout.clone())?, result.dump.join("\n") + "\n");
        dumps.push(output.stdout);
    }
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(roots[0], roots[1]);
    // Every block changed the state, so every root differs from the one before.
    assert!(roots[0].windows(2).all(|w| w[0] != w[1]), "{roots:?}");
    Ok(())
}
