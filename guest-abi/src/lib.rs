//! The guest side of the metashrew host ABI: the six `env` imports, the ArrayBuffer
//! buffer layout, the block input, a cached key-value store and the `KeyValueFlush` encoder.
//!
//! A buffer handed to the host is `len: u32 LE ++ bytes`; the pointer passed points at the
//! bytes, so the host finds the length at `ptr - 4`.
//!
//! Shared by every guest of the workspace (the stress guest and the chain guest).

#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;

#[link(wasm_import_module = "env")]
extern "C" {
    fn __host_len() -> i32;
    fn __load_input(ptr: i32);
    fn __log(ptr: i32);
    fn __get_len(key_ptr: i32) -> i32;
    fn __get(key_ptr: i32, value_ptr: i32);
    fn __flush(ptr: i32);
}

/// `bytes` in ArrayBuffer layout: a u32 LE length followed by the bytes.
pub fn arraybuffer(bytes: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(4 + bytes.len());
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(bytes);
    buffer
}

/// The pointer the host expects for a buffer made by [`arraybuffer`]: its first data byte.
fn data_ptr(buffer: &[u8]) -> i32 {
    (buffer.as_ptr() as usize + 4) as i32
}

/// Leaks `bytes` in ArrayBuffer layout and returns its data pointer: what a view returns.
pub fn export_bytes(bytes: &[u8]) -> i32 {
    let buffer = arraybuffer(bytes).leak();
    data_ptr(buffer)
}

/// The block input: `height: u32 LE ++ block bytes`, as written by the host.
pub fn input() -> Vec<u8> {
    let len = unsafe { __host_len() } as u32 as usize;
    let mut buffer = arraybuffer(&alloc::vec![0u8; len]);
    unsafe { __load_input(data_ptr(&buffer)) };
    buffer.drain(..4);
    buffer
}

/// The input split into height and block bytes; a short input reads as height 0.
pub fn height_and_block() -> (u32, Vec<u8>) {
    let mut data = input();
    if data.len() < 4 {
        return (0, Vec::new());
    }
    let block = data.split_off(4);
    (u32::from_le_bytes([data[0], data[1], data[2], data[3]]), block)
}

pub fn log(message: &str) {
    let buffer = arraybuffer(message.as_bytes());
    unsafe { __log(data_ptr(&buffer)) };
}

struct Store {
    /// Values read from the host during this block.
    read: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Values written during this block and not yet flushed.
    pending: BTreeMap<Vec<u8>, Vec<u8>>,
}

// wasm32-unknown-unknown is single-threaded; the host builds a fresh instance per block.
struct StoreCell(RefCell<Store>);
unsafe impl Sync for StoreCell {}

static STORE: StoreCell = StoreCell(RefCell::new(Store { read: BTreeMap::new(), pending: BTreeMap::new() }));

/// The value under `key`: this block's own write if any, else the committed state (empty when missing).
pub fn get(key: &[u8]) -> Vec<u8> {
    let mut store = STORE.0.borrow_mut();
    if let Some(value) = store.pending.get(key).or_else(|| store.read.get(key)) {
        return value.clone();
    }
    let key_buffer = arraybuffer(key);
    let len = unsafe { __get_len(data_ptr(&key_buffer)) } as u32 as usize;
    let mut value_buffer = arraybuffer(&alloc::vec![0u8; len]);
    unsafe { __get(data_ptr(&key_buffer), data_ptr(&value_buffer)) };
    value_buffer.drain(..4);
    store.read.insert(key.to_vec(), value_buffer.clone());
    value_buffer
}

pub fn set(key: Vec<u8>, value: Vec<u8>) {
    STORE.0.borrow_mut().pending.insert(key, value);
}

/// Forgets a write of this block that has not been flushed yet.
pub fn discard(key: &[u8]) {
    STORE.0.borrow_mut().pending.remove(key);
}

/// Sends every pending write to the host as one `KeyValueFlush` and forgets them.
pub fn flush() {
    let pending = core::mem::take(&mut STORE.0.borrow_mut().pending);
    // Sized exactly up front and encoded in place after the 4-byte length slot: the message is
    // never reallocated or copied (a doubling buffer would need up to twice the memory).
    let len: usize = pending.iter().map(|(key, value)| field_len(key) + field_len(value)).sum();
    let mut buffer = Vec::with_capacity(4 + len);
    buffer.extend_from_slice(&(len as u32).to_le_bytes());
    for (key, value) in pending {
        encode_bytes_field(&mut buffer, &key);
        encode_bytes_field(&mut buffer, &value);
        // `value` is dropped here, as soon as it is encoded.
    }
    unsafe { __flush(data_ptr(&buffer)) };
}

fn field_len(bytes: &[u8]) -> usize {
    let varint_len = (usize::BITS - (bytes.len() | 1).leading_zeros()).div_ceil(7) as usize;
    1 + varint_len + bytes.len()
}

/// Protobuf field 1, wire type 2 (length-delimited): `KeyValueFlush.list`.
fn encode_bytes_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(0x0a);
    let mut len = bytes.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// A key built from a keyword and selected parts, like metashrew's `IndexPointer`:
/// `KeyPointer::keyword("/blocks/").select_str("7")` names `/blocks/7`.
#[derive(Clone)]
pub struct KeyPointer(Vec<u8>);

impl KeyPointer {
    pub fn keyword(keyword: &str) -> Self {
        Self(keyword.as_bytes().to_vec())
    }
    pub fn select(&self, part: &[u8]) -> Self {
        let mut key = self.0.clone();
        key.extend_from_slice(part);
        Self(key)
    }
    pub fn select_str(&self, part: &str) -> Self {
        self.select(part.as_bytes())
    }
    pub fn get(&self) -> Vec<u8> {
        get(&self.0)
    }
    pub fn set(&self, value: Vec<u8>) {
        set(self.0.clone(), value)
    }
    pub fn discard(&self) {
        discard(&self.0)
    }
}
