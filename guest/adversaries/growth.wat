;; Many small memory growths: one page at a time, each page touched, until memory.grow says
;; no; then store the page count reached under "pages" (u32 LE). No payload.
(module
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  ;; The flush: length 10 at 16, then 0a 05 "pages" 0a 04 and the count at 29.
  (data (i32.const 16) "\0d\00\00\00\0a\05pages\0a\04")
  (func (export "_start")
    (local $page i32)
    (loop $grow
      (local.set $page (memory.grow (i32.const 1)))
      (if (i32.ne (local.get $page) (i32.const -1))
        (then
          (i32.store8 (i32.shl (local.get $page) (i32.const 16)) (i32.const 1))
          (br $grow))))
    (i32.store (i32.const 29) (memory.size))
    (call $flush (i32.const 20))))
