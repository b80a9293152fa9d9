//! Unit tests of the executor: the helper module's layout, host-side limits and the WASI surface.

use super::*;

#[test]
fn the_helper_memory_holds_its_layout() {
    // The helper's memory is 18 pages (HELPER_WAT): scratch, two paths and one write chunk fit.
    assert!(HELPER_WAT.contains("(memory (export \"memory\") 18 18)"));
    assert!(H_PATH1 as usize + PATH_MAX <= H_PATH2 as usize);
    assert!(H_PATH2 as usize + PATH_MAX <= H_DATA as usize);
    assert!(H_DATA as usize + MAX_WRITE_CHUNK <= 18 * 65536);
    assert!((H_IOV as usize) + 8 <= H_PATH1 as usize);
}

#[test]
fn output_accounting_counts_current_sizes() {
    let limits = JobLimits {
        output_bytes: 100,
        ..JobLimits::default()
    };
    let mut a = OutputAccount::new(&limits);
    assert!(a.allows(1, 100));
    a.record(1, 60);
    assert!(a.allows(1, 100), "a file may grow to the limit by itself");
    assert!(!a.allows(2, 41));
    a.record(2, 40);
    assert_eq!(a.total, 100);
    a.record(1, 10);
    assert_eq!(a.total, 50);
    a.forget(1);
    assert_eq!(a.total, 40);
    assert!(a.allows(3, 60));
    assert!(!a.allows(3, 61));
}

#[test]
fn seeds_differ_by_context_and_job() {
    let a = JobId([1; 32]);
    let b = JobId([2; 32]);
    assert_ne!(derive_seed("x", a), derive_seed("x", b));
    assert_ne!(derive_seed("x", a), derive_seed("y", a));
    assert_eq!(derive_seed("x", a), derive_seed("x", a));
}
