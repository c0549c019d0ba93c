//! Any bytes given to `__flush`: decoded or refused, never a panic, and every decoded pair is
//! made of bytes of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = host_runner::host::decode_flush(data) {
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= data.len(), "decoded more bytes than were given");
    }
});
