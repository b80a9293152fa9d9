;; wc: counts the lines, words and bytes of one input file, like `wc`.
;;
;; Usage: args [<path below /inputs>] (default "data"). Writes "<lines> <words> <bytes>\n" to
;; /outputs/counts.txt. A word is a maximal run of bytes other than space and \t \n \v \f \r.
;; Preopens: fd 3 is /inputs, fd 4 is /outputs (the executor's fixed order).
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
  ;; buffer (4 KiB) | 6000 names | 8192 output text | 65536 read buffer (64 KiB)
  (data (i32.const 6000) "data")
  (data (i32.const 6016) "counts.txt")

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Writes the decimal digits of $v at $p; returns the address after them.
  (func $fmt (param $v i64) (param $p i32) (result i32)
    (local $digits i32) (local $i i32)
    ;; digits into 7000.. in reverse
    (loop $more
      (i32.store8 (i32.add (i32.const 7000) (local.get $digits))
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $more (i64.ne (local.get $v) (i64.const 0))))
    (local.set $i (local.get $digits))
    (block $done
      (loop $copy
        (br_if $done (i32.eqz (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (i32.store8 (local.get $p) (i32.load8_u (i32.add (i32.const 7000) (local.get $i))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $copy)))
    (local.get $p))

  ;; Writes all of [$ptr, $ptr+$len) to $fd; 0 or an errno.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (local $err i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 16) (local.get $ptr))
        (i32.store (i32.const 20) (local.get $len))
        (local.set $err (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
        (if (local.get $err) (then (return (local.get $err))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 24))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 24))))
        (br $more)))
    (i32.const 0))

  (func (export "_start")
    (local $path i32) (local $path_len i32) (local $fd i32) (local $n i32) (local $i i32)
    (local $b i32) (local $in_word i32) (local $lines i64) (local $words i64) (local $bytes i64)
    (local $p i32)
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
    ;; open the input read-only (rights: fd_read)
    (if (call $path_open (i32.const 3) (i32.const 1) (local.get $path) (local.get $path_len)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 3))))
    (local.set $fd (i32.load (i32.const 28)))
    (block $eof
      (loop $chunk
        (i32.store (i32.const 16) (i32.const 65536))
        (i32.store (i32.const 20) (i32.const 65536))
        (if (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))
          (then (call $proc_exit (i32.const 4))))
        (local.set $n (i32.load (i32.const 24)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $bytes (i64.add (local.get $bytes) (i64.extend_i32_u (local.get $n))))
        (local.set $i (i32.const 0))
        (block $chunk_done
          (loop $byte
            (br_if $chunk_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $b (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
            (if (i32.eq (local.get $b) (i32.const 10))
              (then (local.set $lines (i64.add (local.get $lines) (i64.const 1)))))
            (if (i32.or (i32.eq (local.get $b) (i32.const 32))
                        (i32.le_u (i32.sub (local.get $b) (i32.const 9)) (i32.const 4)))
              (then (local.set $in_word (i32.const 0)))
              (else
                (if (i32.eqz (local.get $in_word))
                  (then
                    (local.set $words (i64.add (local.get $words) (i64.const 1)))
                    (local.set $in_word (i32.const 1))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $byte)))
        (br $chunk)))
    ;; "<lines> <words> <bytes>\n"
    (local.set $p (call $fmt (local.get $lines) (i32.const 8192)))
    (i32.store8 (local.get $p) (i32.const 32))
    (local.set $p (call $fmt (local.get $words) (i32.add (local.get $p) (i32.const 1))))
    (i32.store8 (local.get $p) (i32.const 32))
    (local.set $p (call $fmt (local.get $bytes) (i32.add (local.get $p) (i32.const 1))))
    (i32.store8 (local.get $p) (i32.const 10))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    ;; /outputs/counts.txt: create, truncate (oflags 9), rights fd_write
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 6016) (i32.const 10)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $proc_exit (i32.const 5))))
    (if (call $write_all (i32.load (i32.const 28)) (i32.const 8192)
          (i32.sub (local.get $p) (i32.const 8192)))
      (then (call $proc_exit (i32.const 5))))))
