;; One value near the budget, and many reads of it.
;; Payload: BYTES (u32 LE), READS (u32 LE). READS = 0: store BYTES bytes of 0xab under "big".
;; READS > 0: read "big" back READS times (__get_len + __get into one buffer), store nothing.
(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (memory (export "memory") 1)
  ;; The key "big" as an ArrayBuffer: its length at 2044, its bytes at 2048.
  (data (i32.const 2044) "\03\00\00\00big")
  (func (export "_start")
    (local $n i32) (local $reads i32) (local $p i32) (local $len i32)
    (call $load_input (i32.const 1024))
    (local.set $n (i32.load (i32.const 1028)))
    (local.set $reads (i32.load (i32.const 1032)))
    (if (i32.eqz (local.get $reads))
      (then
        (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 2))))
        ;; At 65540: 0a 03 "big" 0a varint(n) and the value; the flush's length at 65536.
        (i32.store8 (i32.const 65540) (i32.const 0x0a))
        (i32.store8 (i32.const 65541) (i32.const 3))
        (i32.store8 (i32.const 65542) (i32.const 0x62))
        (i32.store8 (i32.const 65543) (i32.const 0x69))
        (i32.store8 (i32.const 65544) (i32.const 0x67))
        (i32.store8 (i32.const 65545) (i32.const 0x0a))
        (local.set $p (call $varint (i32.const 65546) (local.get $n)))
        (memory.fill (local.get $p) (i32.const 0xab) (local.get $n))
        (i32.store (i32.const 65536) (i32.sub (i32.add (local.get $p) (local.get $n)) (i32.const 65540)))
        (call $flush (i32.const 65540)))
      (else
        (local.set $len (call $get_len (i32.const 2048)))
        (drop (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16)) (i32.const 2))))
        (loop $read
          (drop (call $get_len (i32.const 2048)))
          (call $get (i32.const 2048) (i32.const 65540))
          (local.set $reads (i32.sub (local.get $reads) (i32.const 1)))
          (br_if $read (local.get $reads))))))
  ;; Writes `v` as a protobuf varint at `at`; returns the address after it.
  (func $varint (param $at i32) (param $v i32) (result i32)
    (loop $more
      (if (i32.ge_u (local.get $v) (i32.const 0x80))
        (then
          (i32.store8 (local.get $at) (i32.or (i32.and (local.get $v) (i32.const 0x7f)) (i32.const 0x80)))
          (local.set $v (i32.shr_u (local.get $v) (i32.const 7)))
          (local.set $at (i32.add (local.get $at) (i32.const 1)))
          (br $more))))
    (i32.store8 (local.get $at) (local.get $v))
    (i32.add (local.get $at) (i32.const 1))))
