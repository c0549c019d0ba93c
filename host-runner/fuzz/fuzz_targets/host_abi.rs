//! Random guest memory and random import calls through the real host functions (see
//! `host_runner::fuzzing::host_abi`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    host_runner::fuzzing::host_abi(data);
});
