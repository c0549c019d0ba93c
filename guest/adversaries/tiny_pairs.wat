;; Many tiny pairs in one block: FLUSHES flushes of PAIRS pairs each, every key distinct in the
;; whole chain ("k" ++ height ++ flush ++ pair, each u32 LE: 13 bytes), every value "v".
;; Payload: PAIRS (u32 LE), FLUSHES (u32 LE).
(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $pairs i32) (local $flushes i32) (local $f i32) (local $i i32) (local $p i32) (local $len i32)
    (call $load_input (i32.const 1024))
    (local.set $pairs (i32.load (i32.const 1028)))
    (local.set $flushes (i32.load (i32.const 1032)))
    ;; The flush at 65540 (its length at 65536): 18 bytes a pair, 0a 0d "k" h h h h f f f f i i i i
    ;; 0a 01 "v".
    (local.set $len (i32.mul (local.get $pairs) (i32.const 18)))
    (drop (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16)) (i32.const 2))))
    (i32.store (i32.const 65536) (local.get $len))
    (loop $each_flush
      (local.set $i (i32.const 0))
      (local.set $p (i32.const 65540))
      (loop $each_pair
        (i32.store8 (local.get $p) (i32.const 0x0a))
        (i32.store8 offset=1 (local.get $p) (i32.const 13))
        (i32.store8 offset=2 (local.get $p) (i32.const 0x6b))
        (i32.store offset=3 (local.get $p) (i32.load (i32.const 1024)))
        (i32.store offset=7 (local.get $p) (local.get $f))
        (i32.store offset=11 (local.get $p) (local.get $i))
        (i32.store8 offset=15 (local.get $p) (i32.const 0x0a))
        (i32.store8 offset=16 (local.get $p) (i32.const 1))
        (i32.store8 offset=17 (local.get $p) (i32.const 0x76))
        (local.set $p (i32.add (local.get $p) (i32.const 18)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $each_pair (i32.lt_u (local.get $i) (local.get $pairs))))
      (call $flush (i32.const 65540))
      (local.set $f (i32.add (local.get $f) (i32.const 1)))
      (br_if $each_flush (i32.lt_u (local.get $f) (local.get $flushes))))))
