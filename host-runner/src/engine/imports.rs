//! The `env` imports of the metashrew ABI: the six metashrew imports plus AssemblyScript's
//! `abort`. Each validates the guest's pointers and lengths before touching memory
//! ([`guest_memory`]); a bad one returns an error, which traps the guest. Under the metashrew
//! engine `abort()` and a flush that does not decode mark the block failed and return instead,
//! as metashrew's host does.

use anyhow::Result;
use wasmtime::{bail, Caller, Extern, Linker};

use super::flush::decode_flush;
use super::guest_memory::{self, address};
use super::host_state::{fail_block, pair_charge, value_read_charge, within_budget, HostState};
use schema::EngineKind;
use state::{Found, Value};

/// The most `__get_len` keeps for the `__get` that follows, key and value together (ours finds
/// values below 256 bytes with their length; metashrew's layout decodes every value it finds).
/// Fixed and small, so the host never holds a copy the charge rule does not count.
const KEPT_BYTES_MAX: usize = 4096;

/// Defines every import in `linker`, with the host semantics of `kind`.
pub fn define_imports(linker: &mut Linker<HostState>, kind: EngineKind) -> Result<()> {
    linker.func_wrap("env", "__host_len", host_len)?;
    linker.func_wrap("env", "__load_input", load_input)?;
    linker.func_wrap("env", "__log", log)?;
    linker.func_wrap("env", "__get_len", get_len)?;
    linker.func_wrap("env", "__get", get)?;
    linker.func_wrap("env", "__flush", move |caller: Caller<'_, HostState>, ptr: i32| flush(caller, ptr, kind))?;
    linker.func_wrap("env", "abort", move |mut caller: Caller<'_, HostState>, _msg: i32, _file: i32, line: i32, column: i32| {
        fail_block(caller.data_mut(), kind, format!("the guest called abort() at line {line}, column {column}"))
    })?;
    Ok(())
}

/// `__host_len() -> i32`: the length of `height ++ input`.
fn host_len(caller: Caller<'_, HostState>) -> wasmtime::Result<i32> {
    i32::try_from(caller.data().input.len()).or_else(|_| bail!("__host_len: input over 2 GiB"))
}

/// `__load_input(ptr)`: `height ++ input` written at `ptr`.
fn load_input(mut caller: Caller<'_, HostState>, ptr: i32) -> wasmtime::Result<()> {
    let memory = guest_memory_of(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let len = host.input.len() as u64;
    guest_memory::span_mut(data, address(ptr), len, "__load_input")?.copy_from_slice(&host.input);
    Ok(())
}

/// `__log(ptr)`: the buffer at `ptr` on stderr, cut at 16 KiB.
fn log(mut caller: Caller<'_, HostState>, ptr: i32) -> wasmtime::Result<()> {
    const MAX_LOG: usize = 16 * 1024;
    let memory = guest_memory_of(&mut caller)?;
    let bytes = guest_memory::arraybuffer(memory.data(&caller), ptr, "__log")?;
    let shown = &bytes[..bytes.len().min(MAX_LOG)];
    match std::str::from_utf8(shown) {
        Ok(text) if bytes.len() <= MAX_LOG => eprintln!("[guest] {text}"),
        Ok(text) => eprintln!("[guest] {text}… ({} bytes in all)", bytes.len()),
        Err(_) => eprintln!("[guest] <{} bytes, not UTF-8>", bytes.len()),
    }
    Ok(())
}

/// `__get_len(key_ptr) -> i32`: the stored value's length (0 without one), charged before the
/// value is read. A small value is found with its length.
fn get_len(mut caller: Caller<'_, HostState>, key_ptr: i32) -> wasmtime::Result<i32> {
    let memory = guest_memory_of(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let key = guest_memory::arraybuffer(data, key_ptr, "__get_len key")?;
    let store = host.store.clone();
    let found = store.find(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?;
    let len = found.as_ref().map_or(0, Found::len);
    within_budget(host.host_budget, value_read_charge(host, len), "__get_len: reading the value")?;
    // Kept for the `__get` that follows: a small value, or none (the guest asks anyway).
    host.found = match found {
        None if key.len() <= KEPT_BYTES_MAX => Some((key.to_vec(), Vec::new())),
        Some(Found::Value(value)) if key.len() + value.len() <= KEPT_BYTES_MAX => Some((key.to_vec(), value.to_vec())),
        _ => None,
    };
    i32::try_from(len).or_else(|_| bail!("__get_len: value of {len} bytes does not fit an i32"))
}

/// `__get(key_ptr, value_ptr)`: the stored value written at `value_ptr`. The value `__get_len`
/// just found for the same key, or else one read now, charged from its length before a large
/// one is loaded; copied from RocksDB's pinned slice straight into guest memory.
fn get(mut caller: Caller<'_, HostState>, key_ptr: i32, value_ptr: i32) -> wasmtime::Result<()> {
    let memory = guest_memory_of(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let key = guest_memory::arraybuffer(data, key_ptr, "__get key")?;
    let store = host.store.clone();
    let found = match host.found.take_if(|(found_key, _)| found_key == key) {
        Some((_, kept)) => Some(Found::Value(Value::Decoded(kept))),
        None => store.find(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?,
    };
    within_budget(host.host_budget, value_read_charge(host, found.as_ref().map_or(0, Found::len)), "__get: reading the value")?;
    let value = match found {
        None => None,
        Some(Found::Value(value)) => Some(value),
        Some(Found::Large(_)) => store.value(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?,
    };
    let value: &[u8] = value.as_deref().unwrap_or_default();
    guest_memory::span_mut(data, address(value_ptr), value.len() as u64, "__get value")?.copy_from_slice(value);
    Ok(())
}

/// `__flush(ptr)`: the `KeyValueFlush` at `ptr`, decoded and charged, its pairs held for the
/// commit (which happens only if `_start` returns).
fn flush(mut caller: Caller<'_, HostState>, ptr: i32, kind: EngineKind) -> wasmtime::Result<()> {
    let memory = guest_memory_of(&mut caller)?;
    let (data, host) = memory.data_and_store_mut(&mut caller);
    let encoded = guest_memory::arraybuffer(data, ptr, "__flush")?;
    // The decoded pairs are charged at least their encoded length: refuse before copying.
    within_budget(host.host_budget, host.charged_bytes + encoded.len() as u64, "__flush: this block's flushes")?;
    let pairs = match decode_flush(encoded) {
        Ok(pairs) => pairs,
        Err(error) => return fail_block(host, kind, format!("__flush: not a KeyValueFlush protobuf: {error}")),
    };
    // The pairs are slices of one copy of the whole message, which lives as long as any of
    // them: what the message carries beside them (unknown fields, an odd trailing key) is
    // held too, so the charge is never less than the message.
    let charge = pairs.iter().map(|(k, v)| pair_charge(k.len(), v.len())).sum::<u64>().max(encoded.len() as u64);
    within_budget(host.host_budget, host.charged_bytes + charge, "__flush: this block's flushes")?;
    host.flushed_bytes += encoded.len() as u64;
    host.charged_bytes += charge;
    host.pairs.extend(pairs);
    Ok(())
}

fn guest_memory_of(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => bail!("the guest exports no `memory`"),
    }
}
