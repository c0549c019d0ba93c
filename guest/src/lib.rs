//! A memory-stress indexer for the metashrew ABI.
//!
//! Block payload (after the height the host prepends), every field little-endian:
//!
//! | bytes | field | default |
//! |---|---|---|
//! | 0..4 | allocation size in MB (u32) | required |
//! | 4..8 | number of allocations (u32) | required |
//! | 8 | storage: 0 = the full allocation, 1 = its length (u64) ++ SHA-256 | 0 |
//! | 9 | retention: 0 = keep every allocation until the block ends, 1 = release each once stored | 0 |
//!
//! A payload shorter than 8 bytes is an ordinary block: it is stored under `/blocks/{height}`.

use guest_abi::{self as abi, KeyPointer};
use sha2::{Digest, Sha256};

const MB: usize = 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Storage {
    FullBlob,
    Digest,
}

#[derive(Clone, Copy, PartialEq)]
enum Retention {
    Keep,
    Release,
}

struct StressPlan {
    allocation_mb: u32,
    count: u32,
    storage: Storage,
    retention: Retention,
}

impl StressPlan {
    fn parse(payload: &[u8]) -> Option<Self> {
        let u32_at = |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().unwrap());
        if payload.len() < 8 {
            return None;
        }
        Some(Self {
            allocation_mb: u32_at(0),
            count: u32_at(4),
            storage: match payload.get(8) {
                Some(1) => Storage::Digest,
                _ => Storage::FullBlob,
            },
            retention: match payload.get(9) {
                Some(1) => Retention::Release,
                _ => Retention::Keep,
            },
        })
    }
}

fn result_key(height: u32) -> KeyPointer {
    KeyPointer::keyword("/memory-stress-result/").select_str(&height.to_string())
}

#[no_mangle]
pub extern "C" fn _start() {
    // A panic aborts the block (an `unreachable` trap); say why in the host's log first.
    std::panic::set_hook(Box::new(|info| abi::log(&format!("guest panicked: {info}"))));
    let (height, payload) = abi::height_and_block();
    match StressPlan::parse(&payload) {
        None => KeyPointer::keyword("/blocks/").select_str(&height.to_string()).set(payload),
        Some(plan) => stress(height, &plan),
    }
    abi::flush();
}

/// Allocates, touches and stores `plan.count` buffers, then records SUCCESS or the first failure.
fn stress(height: u32, plan: &StressPlan) {
    KeyPointer::keyword("/memory-stress-test").set(b"started".to_vec());
    let data = KeyPointer::keyword("/memory-stress-data/").select_str(&format!("{height}/"));
    let size = plan.allocation_mb as usize * MB;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut stored: Vec<KeyPointer> = Vec::new();
    let mut failure = None;

    for i in 0..plan.count {
        let mut allocation: Vec<u8> = Vec::new();
        if allocation.try_reserve_exact(size).is_err() {
            failure = Some(format!(
                "ERROR:Failed at allocation {i} of {}: Failed to reserve {}MB",
                plan.count, plan.allocation_mb
            ));
            break;
        }
        allocation.resize(size, (i % 251) as u8);
        // Touch one byte per 4 KiB page so every page is really committed.
        for page in (0..size).step_by(4096) {
            allocation[page] = allocation[page].wrapping_add(page as u8);
        }
        let key = data.select_str(&i.to_string());
        match plan.storage {
            Storage::FullBlob => key.set(allocation),
            Storage::Digest => {
                let mut record = (size as u64).to_le_bytes().to_vec();
                record.extend_from_slice(&Sha256::digest(&allocation));
                key.set(record);
                if plan.retention == Retention::Keep {
                    held.push(allocation);
                }
            }
        }
        if plan.retention == Retention::Release {
            // A released full blob leaves guest memory by being flushed now.
            abi::flush();
        } else {
            stored.push(key);
        }
    }

    let result = result_key(height);
    let height_bytes = height.to_le_bytes().to_vec();
    match failure {
        None => {
            let total = u64::from(plan.allocation_mb) * u64::from(plan.count);
            result.set(format!("SUCCESS:{total}MB").into_bytes());
            KeyPointer::keyword("/memory-stress-success").set(height_bytes);
        }
        Some(message) => {
            // An incomplete block keeps none of the allocations it still holds.
            drop(held);
            stored.iter().for_each(KeyPointer::discard);
            abi::log(&message);
            result.set(message.into_bytes());
            KeyPointer::keyword("/memory-stress-failure").set(height_bytes);
        }
    }
}

/// `height ++ view input` from the host; the height selects whose result to read.
fn view_height() -> u32 {
    abi::height_and_block().0
}

#[no_mangle]
pub extern "C" fn get_stress_result() -> i32 {
    abi::export_bytes(&result_key(view_height()).get())
}

#[no_mangle]
pub extern "C" fn check_success() -> i32 {
    abi::export_bytes(&KeyPointer::keyword("/memory-stress-success").get())
}

#[no_mangle]
pub extern "C" fn check_failure() -> i32 {
    abi::export_bytes(&KeyPointer::keyword("/memory-stress-failure").get())
}
