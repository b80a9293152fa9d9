;; probe: records what a job can observe of its machine, in /outputs/probe.bin:
;;   the wall clock (u64 ns) ‖ the monotonic clock (u64 ns) ‖ 32 random bytes ‖
;;   the filestat of /inputs/data (64 bytes) ‖ poll_oneoff's errno and event count for a one-hour
;;   sleep (2 × i32) ‖ the bytes of a 4 KiB fd_readdir of /inputs (u32 length, then them).
;; Two runs of the same job must write the same bytes on any machine. Exit code 5: output failed.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; 16 iovec | 24 nwritten | 28 fd | 32 nevents | 64 subscription (48) | 128 event (32)
  ;; 1000 strings | 4096 record: 0 wall, 8 mono, 16 random, 48 filestat, 112 poll, 120 readdir
  (data (i32.const 1000) "data")
  (data (i32.const 1008) "probe.bin")
  (func (export "_start")
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 4096)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 4104)))
    (drop (call $random_get (i32.const 4112) (i32.const 32)))
    (drop (call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 1000) (i32.const 4)
      (i32.const 4144)))
    ;; one relative clock subscription: userdata 7, monotonic, one hour
    (i64.store (i32.const 64) (i64.const 7))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 3600000000000))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (i32.store (i32.const 4208)
      (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 32)))
    (i32.store (i32.const 4212) (i32.load (i32.const 32)))
    (drop (call $fd_readdir (i32.const 3) (i32.const 4220) (i32.const 4096) (i64.const 0)
      (i32.const 4216)))
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 1008) (i32.const 9)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 5))))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (i32.add (i32.const 124) (i32.load (i32.const 4216))))
    (if (call $fd_write (i32.load (i32.const 28)) (i32.const 16) (i32.const 1) (i32.const 24))
      (then (call $proc_exit (i32.const 5))))))
