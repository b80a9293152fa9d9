;; missing_import: imports a function no executor provides. Expected outcome: missing_import.
(module
  (import "env" "launch" (func $launch (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $launch (i32.const 1)))))
