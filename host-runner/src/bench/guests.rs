//! The WAT guests the benchmarks run when none is given.

/// A small indexer: counts blocks in `/count` (read back with `__get`) and stores each block's
/// payload under `/b/{height}`, so the state grows by one key per block.
pub const COUNTER_GUEST: &str = r#"(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  ;; The key "/count" (ArrayBuffer layout: length at 12).
  (data (i32.const 12) "\06\00\00\00/count")
  ;; KeyValueFlush at 2048: "/count", count, "/b/" ++ height, payload.
  (data (i32.const 2048) "\0a\06/count\0a\04")
  (data (i32.const 2062) "\0a\07/b/")
  (func (export "_start")
    (local $len i32)
    (local.set $len (call $host_len))
    (call $load_input (i32.const 1028))
    (if (i32.eq (call $get_len (i32.const 16)) (i32.const 4))
      (then (call $get (i32.const 16) (i32.const 64))))
    (i32.store (i32.const 2058) (i32.add (i32.load (i32.const 64)) (i32.const 1)))
    (i32.store (i32.const 2067) (i32.load (i32.const 1028)))
    (i32.store8 (i32.const 2071) (i32.const 0x0a))
    (i32.store8 (i32.const 2072) (i32.sub (local.get $len) (i32.const 4)))
    (memory.copy (i32.const 2073) (i32.const 1032) (i32.sub (local.get $len) (i32.const 4)))
    (i32.store (i32.const 2044) (i32.add (i32.const 21) (local.get $len)))
    (call $flush (i32.const 2048))))"#;


/// An indexer-shaped guest for `bench commit` when no guest is given: one flush per block of a
/// pair per 40 bytes of the block, key `/p/` ++ 33 to 67 of those bytes (36 to 70 bytes in all),
/// value 8 to 120 bytes of the block further on (a 1.2 MB block gives about 31,000 pairs).
pub const PAIRS_GUEST: &str = r#"(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $len i32) (local $at i32) (local $end i32) (local $buf i32) (local $out i32) (local $key i32) (local $value i32)
    (local.set $len (call $host_len))
    ;; The input at 64 KiB, the flush after it (at most 194 bytes per 40 bytes of input).
    (local.set $buf (i32.and (i32.add (i32.add (i32.const 65536) (local.get $len)) (i32.const 15)) (i32.const -16)))
    (drop (memory.grow (i32.sub
      (i32.shr_u (i32.add (i32.add (local.get $buf) (i32.mul (local.get $len) (i32.const 5))) (i32.const 131072)) (i32.const 16))
      (memory.size))))
    (call $load_input (i32.const 65536))
    (local.set $at (i32.const 65540))
    (local.set $end (i32.sub (i32.add (i32.const 65536) (local.get $len)) (i32.const 200)))
    (local.set $out (i32.add (local.get $buf) (i32.const 4)))
    (block $done (loop $next
      (br_if $done (i32.gt_s (local.get $at) (local.get $end)))
      (local.set $key (i32.add (i32.const 33) (i32.rem_u (i32.load8_u (local.get $at)) (i32.const 35))))
      (local.set $value (i32.add (i32.const 8) (i32.rem_u (i32.load8_u offset=1 (local.get $at)) (i32.const 113))))
      (i32.store8 (local.get $out) (i32.const 0x0a))
      (i32.store8 offset=1 (local.get $out) (i32.add (local.get $key) (i32.const 3)))
      (i32.store8 offset=2 (local.get $out) (i32.const 0x2f))
      (i32.store8 offset=3 (local.get $out) (i32.const 0x70))
      (i32.store8 offset=4 (local.get $out) (i32.const 0x2f))
      (memory.copy (i32.add (local.get $out) (i32.const 5)) (local.get $at) (local.get $key))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $key) (i32.const 5))))
      (i32.store8 (local.get $out) (i32.const 0x0a))
      (i32.store8 offset=1 (local.get $out) (local.get $value))
      (memory.copy (i32.add (local.get $out) (i32.const 2)) (i32.add (local.get $at) (i32.const 70)) (local.get $value))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $value) (i32.const 2))))
      (local.set $at (i32.add (local.get $at) (i32.const 40)))
      (br $next)))
    (i32.store (local.get $buf) (i32.sub (local.get $out) (i32.add (local.get $buf) (i32.const 4))))
    (call $flush (i32.add (local.get $buf) (i32.const 4)))))"#;
