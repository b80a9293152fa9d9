;; memory_bomb: grows its memory 1 MiB at a time forever. Expected outcome: memory_limit (the
;; executor turns a growth past the job's limit into a trap). Exit code 3 if a growth fails softly.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
        (then (call $proc_exit (i32.const 3))))
      (br $more))))
