;; A guest that runs long: counts down from ITERATIONS (u64 LE payload; 0 = for ever), then
;; stores "done".
(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\08\00\00\00\0a\04done\0a\00")
  (func (export "_start")
    (local $left i64)
    (call $load_input (i32.const 1024))
    (local.set $left (i64.load (i32.const 1028)))
    (loop $spin
      (local.set $left (i64.sub (local.get $left) (i64.const 1)))
      (br_if $spin (i64.ne (local.get $left) (i64.const 0))))
    (call $flush (i32.const 20))))
