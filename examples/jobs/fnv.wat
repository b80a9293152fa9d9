;; fnv: the 64-bit FNV-1a hash of one input file.
;;
;; Usage: args [<path below /inputs>] (default "data"). Writes the hash as 16 lower-case hex
;; digits and "\n" to /outputs/fnv1a64.txt. Preopens: fd 3 /inputs, fd 4 /outputs.
;; Exit codes: 0 done, 2 bad arguments, 3 input not opened, 4 read failed, 5 output failed.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 4)
  ;; 0 argc | 4 argv buffer size | 16 iovec | 24 nread/nwritten | 28 fd | 256 argv[] | 1280 argv
  ;; buffer | 6000 names | 6100 hex digits | 8192 output text | 65536 read buffer (64 KiB)
  (data (i32.const 6000) "data")
  (data (i32.const 6016) "fnv1a64.txt")
  (data (i32.const 6100) "0123456789abcdef")

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "_start")
    (local $path i32) (local $path_len i32) (local $fd i32) (local $n i32) (local $i i32)
    (local $h i64) (local $shift i64)
    (if (call $args_sizes_get (i32.const 0) (i32.const 4)) (then (call $proc_exit (i32.const 2))))
    (if (i32.or (i32.gt_u (i32.load (i32.const 0)) (i32.const 256))
                (i32.gt_u (i32.load (i32.const 4)) (i32.const 4096)))
      (then (call $proc_exit (i32.const 2))))
    (if (call $args_get (i32.const 256) (i32.const 1280)) (then (call $proc_exit (i32.const 2))))
    (local.set $path (i32.const 6000))
    (local.set $path_len (i32.const 4))
    (if (i32.ge_u (i32.load (i32.const 0)) (i32.const 2))
      (then
        (local.set $path (i32.load (i32.const 260)))
        (local.set $path_len (call $strlen (local.get $path)))))
    (if (call $path_open (i32.const 3) (i32.const 1) (local.get $path) (local.get $path_len)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 3))))
    (local.set $fd (i32.load (i32.const 28)))
    (local.set $h (i64.const 0xcbf29ce484222325))
    (block $eof
      (loop $chunk
        (i32.store (i32.const 16) (i32.const 65536))
        (i32.store (i32.const 20) (i32.const 65536))
        (if (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))
          (then (call $proc_exit (i32.const 4))))
        (local.set $n (i32.load (i32.const 24)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $i (i32.const 0))
        (block $chunk_done
          (loop $byte
            (br_if $chunk_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $h (i64.mul
              (i64.xor (local.get $h)
                (i64.load8_u (i32.add (i32.const 65536) (local.get $i))))
              (i64.const 0x100000001b3)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $byte)))
        (br $chunk)))
    ;; 16 hex digits, most significant first, then "\n"
    (local.set $i (i32.const 0))
    (local.set $shift (i64.const 60))
    (loop $digit
      (i32.store8 (i32.add (i32.const 8192) (local.get $i))
        (i32.load8_u (i32.add (i32.const 6100)
          (i32.wrap_i64 (i64.and (i64.shr_u (local.get $h) (local.get $shift)) (i64.const 15))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $shift (i64.sub (local.get $shift) (i64.const 4)))
      (br_if $digit (i32.lt_u (local.get $i) (i32.const 16))))
    (i32.store8 (i32.const 8208) (i32.const 10))
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 6016) (i32.const 11)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 5))))
    ;; 17 bytes: one write (the executor writes up to 1 MiB a call)
    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (i32.const 17))
    (if (call $fd_write (i32.load (i32.const 28)) (i32.const 16) (i32.const 1) (i32.const 24))
      (then (call $proc_exit (i32.const 5))))
    (if (i32.ne (i32.load (i32.const 24)) (i32.const 17)) (then (call $proc_exit (i32.const 5))))))
