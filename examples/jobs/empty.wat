;; empty: does nothing and exits 0 (the executor's overhead in benchmarks).
(module
  (memory (export "memory") 1)
  (func (export "_start")))
