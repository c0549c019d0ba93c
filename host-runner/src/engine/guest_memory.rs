//! Bounds-checked access to the guest's linear memory. Every pointer and length the guest hands
//! the host goes through here; a bad one becomes an error that traps the guest.
//!
//! Pointers are unsigned 32-bit: a guest using more than 2 GiB passes pointers whose i32 value is
//! negative, and they are valid.

use wasmtime::{bail, Result};

/// The guest's i32 reinterpreted as the u32 address it is.
pub fn address(ptr: i32) -> u64 {
    u64::from(ptr as u32)
}

/// The buffer at `ptr` in ArrayBuffer layout: its length is the u32 LE at `ptr - 4`.
pub fn arraybuffer<'m>(memory: &'m [u8], ptr: i32, what: &str) -> Result<&'m [u8]> {
    let start = address(ptr);
    if start < 4 {
        bail!("{what}: pointer {start:#x} leaves no room for its 4-byte length prefix");
    }
    let prefix = span(memory, start - 4, 4, what)?;
    let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes"));
    span(memory, start, u64::from(len), what)
}

/// `len` bytes at `start`, or an error naming the overrun.
pub fn span<'m>(memory: &'m [u8], start: u64, len: u64, what: &str) -> Result<&'m [u8]> {
    let (start, end) = checked_range(memory.len(), start, len, what)?;
    Ok(&memory[start..end])
}

/// Where `len` bytes may be written at `start`.
pub fn span_mut<'m>(memory: &'m mut [u8], start: u64, len: u64, what: &str) -> Result<&'m mut [u8]> {
    let (start, end) = checked_range(memory.len(), start, len, what)?;
    Ok(&mut memory[start..end])
}

fn checked_range(memory_len: usize, start: u64, len: u64, what: &str) -> Result<(usize, usize)> {
    let end = start.checked_add(len);
    match end {
        Some(end) if end <= memory_len as u64 => Ok((start as usize, end as usize)),
        _ => bail!(
            "{what}: {len} bytes at {start:#x} run past the end of guest memory ({memory_len} bytes)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_with_buffer_at(ptr: usize, len_prefix: u32, size: usize) -> Vec<u8> {
        let mut memory = vec![0u8; size];
        memory[ptr - 4..ptr].copy_from_slice(&len_prefix.to_le_bytes());
        memory
    }

    #[test]
    fn reads_a_buffer_that_ends_exactly_at_the_end_of_memory() {
        let memory = memory_with_buffer_at(60, 4, 64);
        assert_eq!(arraybuffer(&memory, 60, "t").unwrap().len(), 4);
    }

    #[test]
    fn rejects_a_length_one_past_the_end() {
        let memory = memory_with_buffer_at(60, 5, 64);
        let err = arraybuffer(&memory, 60, "__log").unwrap_err().to_string();
        assert!(err.contains("__log: 5 bytes at 0x3c run past the end"), "{err}");
    }

    #[test]
    fn rejects_pointers_below_four_and_near_u32_max() {
        let memory = vec![0u8; 64];
        for ptr in [0, 1, 3] {
            assert!(arraybuffer(&memory, ptr, "t").unwrap_err().to_string().contains("no room"));
        }
        assert!(arraybuffer(&memory, -1, "t").is_err());
        assert!(arraybuffer(&memory, i32::MAX, "t").is_err());
    }

    #[test]
    fn lengths_near_u32_max_do_not_overflow() {
        let memory = memory_with_buffer_at(8, u32::MAX, 64);
        assert!(arraybuffer(&memory, 8, "t").is_err());
        assert!(span(&memory, u64::from(u32::MAX), u64::from(u32::MAX), "t").is_err());
    }

    #[test]
    fn negative_i32_pointers_are_addresses_above_2_gib() {
        assert_eq!(address(-2), 0xffff_fffe);
        assert_eq!(address(i32::MIN), 0x8000_0000);
    }
}
