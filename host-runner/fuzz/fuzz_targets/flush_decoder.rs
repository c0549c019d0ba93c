//! Any bytes given to `__flush` (see `host_runner::fuzzing::flush_decoder`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| host_runner::fuzzing::flush_decoder(data));
