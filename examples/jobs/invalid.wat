;; invalid: well-formed text, but not a valid module (_start leaves an i64 on the stack where its
;; type says nothing). Expected outcome: invalid_module.
(module
  (func (export "_start")
    (i64.const 1)))
