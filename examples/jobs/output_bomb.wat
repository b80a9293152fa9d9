;; output_bomb: writes 64 KiB chunks to /outputs/big forever. Expected outcome: output_limit,
;; with nothing beyond the limit ever written to disk. Exit code 1 if a write fails instead.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "big")
  (func (export "_start")
    (local $fd i32)
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 3)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 1))))
    (local.set $fd (i32.load (i32.const 28)))
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 65536))
    (loop $forever
      (if (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))
        (then (call $proc_exit (i32.const 1))))
      (br $forever))))
