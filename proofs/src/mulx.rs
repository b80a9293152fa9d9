//! Montgomery products with MULX, ADCX and ADOX (x86-64 BMI2 and ADX) for the two fields of
//! BLS12-381: six limbs for the base field (the prover's curve arithmetic) and four for the scalar
//! field (Poseidon, the prover's transforms).
//!
//! The portable products (`prover::field`, `poseidon::field`) are CIOS in 128-bit Rust arithmetic,
//! which compiles to `mul` with one carry chain through `adc`. Here `mulx` leaves the flags alone
//! and `adcx`/`adox` keep two independent carry chains (the low and the high halves of each row of
//! partial products), so a row's additions need no carry bookkeeping in registers: the base-field
//! product takes 34 ns against 54 ns on an AMD EPYC without AVX-512, where the prover spends most
//! of its time in these products (BENCHMARKS.md).
//!
//! Same algorithm, same result: CIOS with the "no-carry" bound (both moduli's top limbs are below
//! `2^63 − 1`, so after each row the running value is below `2^(64·n + 1)` and fits `n + 1` words),
//! one conditional subtraction at the end, canonical output for canonical inputs — the same limbs
//! as the portable product, which the tests compare on random and extreme inputs.
//!
//! [`available`] says, once per process, whether the processor has the instructions; every product
//! asks it (a relaxed load, well predicted) and falls back to the portable code when it does not.

use std::arch::asm;
use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether this processor runs [`mont_mul_384`] and [`mont_mul_256`] (BMI2 and ADX).
#[inline(always)]
pub(crate) fn available() -> bool {
    match STATE.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => detect(),
    }
}

/// From now on [`available`] says no, whatever the processor has
/// ([`crate::prover::limit_arithmetic`]).
pub(crate) fn disable() {
    STATE.store(NO, Ordering::Relaxed);
}

#[cold]
fn detect() -> bool {
    let yes =
        std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("adx");
    STATE.store(if yes { YES } else { NO }, Ordering::Relaxed);
    yes
}

/// A modulus with its Montgomery factor `−m⁻¹ mod 2^64` after its limbs, as the products read it.
#[repr(C)]
pub(crate) struct Modulus<const N: usize> {
    limbs: [u64; N],
    inv: u64,
}

impl<const N: usize> Modulus<N> {
    /// The modulus `limbs` (least significant first) and its factor `inv`.
    pub(crate) const fn new(limbs: [u64; N], inv: u64) -> Self {
        Modulus { limbs, inv }
    }
}

// One row of the product: `t += a · b[i]` (the word at `rdi + OFF`) into the window `t0..tn`, the
// low halves through ADCX (CF), the high halves through ADOX (OF), the last carry into `tn`.
// `rsi` holds `a`, `rdi` `b`, `r15` the high halves, `rax` the low halves.
macro_rules! row6 {
    ($off:literal, $t0:literal, $t1:literal, $t2:literal, $t3:literal, $t4:literal, $t5:literal, $t6:literal) => {
        concat!(
            "mov rdx, qword ptr [rdi + ",
            $off,
            "]\n",
            "xor eax, eax\n",
            "mulx r15, rax, qword ptr [rsi]\n",
            "adcx ",
            $t0,
            ", rax\n",
            "adox ",
            $t1,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 8]\n",
            "adcx ",
            $t1,
            ", rax\n",
            "adox ",
            $t2,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 16]\n",
            "adcx ",
            $t2,
            ", rax\n",
            "adox ",
            $t3,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 24]\n",
            "adcx ",
            $t3,
            ", rax\n",
            "adox ",
            $t4,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 32]\n",
            "adcx ",
            $t4,
            ", rax\n",
            "adox ",
            $t5,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 40]\n",
            "adcx ",
            $t5,
            ", rax\n",
            "adox ",
            $t6,
            ", r15\n",
            "adc ",
            $t6,
            ", 0\n",
        )
    };
}

// One reduction step: `m = t0 · inv`, `t += m · p` (the modulus at `rcx`), after which `t0` is
// zero: the caller renames the window (`t1..tn, t0`) instead of moving words.
macro_rules! reduce6 {
    ($t0:literal, $t1:literal, $t2:literal, $t3:literal, $t4:literal, $t5:literal, $t6:literal) => {
        concat!(
            "mov rdx, ",
            $t0,
            "\n",
            "imul rdx, qword ptr [rcx + 48]\n",
            "xor eax, eax\n",
            "mulx r15, rax, qword ptr [rcx]\n",
            "adcx ",
            $t0,
            ", rax\n",
            "adox ",
            $t1,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 8]\n",
            "adcx ",
            $t1,
            ", rax\n",
            "adox ",
            $t2,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 16]\n",
            "adcx ",
            $t2,
            ", rax\n",
            "adox ",
            $t3,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 24]\n",
            "adcx ",
            $t3,
            ", rax\n",
            "adox ",
            $t4,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 32]\n",
            "adcx ",
            $t4,
            ", rax\n",
            "adox ",
            $t5,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 40]\n",
            "adcx ",
            $t5,
            ", rax\n",
            "adox ",
            $t6,
            ", r15\n",
            "adc ",
            $t6,
            ", 0\n",
        )
    };
}

/// The Montgomery product `a b / 2^384 mod p` of canonical `a` and `b` (below `p`), canonical.
///
/// `p` must be below `2^383` with its top limb below `2^63 − 1` (the no-carry bound), as the
/// BLS12-381 base field's is.
///
/// # Safety
/// The processor must have BMI2 and ADX: [`available`] says so.
#[inline(always)]
pub(crate) unsafe fn mont_mul_384(a: &[u64; 6], b: &[u64; 6], p: &Modulus<6>) -> [u64; 6] {
    let (r0, r1, r2, r3, r4, r5): (u64, u64, u64, u64, u64, u64);
    // SAFETY: the caller guarantees BMI2 and ADX (the function's contract). The code reads six words
    // at `rsi` and `rdi` and seven at `rcx`, all within the references' arrays (`Modulus` is
    // `repr(C)`: the factor follows the limbs); it writes only the registers it declares.
    unsafe {
        asm!(
            // Row 0: `t = a · b[0]` needs no additions into `t`.
            "mov rdx, qword ptr [rdi]",
            "mulx r9, r8, qword ptr [rsi]",
            "mulx r10, rax, qword ptr [rsi + 8]",
            "add r9, rax",
            "mulx r11, rax, qword ptr [rsi + 16]",
            "adc r10, rax",
            "mulx r12, rax, qword ptr [rsi + 24]",
            "adc r11, rax",
            "mulx r13, rax, qword ptr [rsi + 32]",
            "adc r12, rax",
            "mulx r14, rax, qword ptr [rsi + 40]",
            "adc r13, rax",
            "adc r14, 0",
            reduce6!("r8", "r9", "r10", "r11", "r12", "r13", "r14"),
            row6!("8", "r9", "r10", "r11", "r12", "r13", "r14", "r8"),
            reduce6!("r9", "r10", "r11", "r12", "r13", "r14", "r8"),
            row6!("16", "r10", "r11", "r12", "r13", "r14", "r8", "r9"),
            reduce6!("r10", "r11", "r12", "r13", "r14", "r8", "r9"),
            row6!("24", "r11", "r12", "r13", "r14", "r8", "r9", "r10"),
            reduce6!("r11", "r12", "r13", "r14", "r8", "r9", "r10"),
            row6!("32", "r12", "r13", "r14", "r8", "r9", "r10", "r11"),
            reduce6!("r12", "r13", "r14", "r8", "r9", "r10", "r11"),
            row6!("40", "r13", "r14", "r8", "r9", "r10", "r11", "r12"),
            reduce6!("r13", "r14", "r8", "r9", "r10", "r11", "r12"),
            // t = (r14, r8, r9, r10, r11, r12) < 2p: subtract p unless that borrows.
            "mov rax, r14",
            "sub rax, qword ptr [rcx]",
            "mov rdx, r8",
            "sbb rdx, qword ptr [rcx + 8]",
            "mov rsi, r9",
            "sbb rsi, qword ptr [rcx + 16]",
            "mov rdi, r10",
            "sbb rdi, qword ptr [rcx + 24]",
            "mov r15, r11",
            "sbb r15, qword ptr [rcx + 32]",
            "mov r13, r12",
            "sbb r13, qword ptr [rcx + 40]",
            "cmovnc r14, rax",
            "cmovnc r8, rdx",
            "cmovnc r9, rsi",
            "cmovnc r10, rdi",
            "cmovnc r11, r15",
            "cmovnc r12, r13",
            inout("rsi") a.as_ptr() => _,
            inout("rdi") b.as_ptr() => _,
            in("rcx") std::ptr::from_ref(p),
            out("rax") _,
            out("rdx") _,
            out("r13") _,
            out("r15") _,
            out("r14") r0,
            out("r8") r1,
            out("r9") r2,
            out("r10") r3,
            out("r11") r4,
            out("r12") r5,
            options(pure, readonly, nostack),
        );
    }
    [r0, r1, r2, r3, r4, r5]
}

macro_rules! row4 {
    ($off:literal, $t0:literal, $t1:literal, $t2:literal, $t3:literal, $t4:literal) => {
        concat!(
            "mov rdx, qword ptr [rdi + ",
            $off,
            "]\n",
            "xor eax, eax\n",
            "mulx r15, rax, qword ptr [rsi]\n",
            "adcx ",
            $t0,
            ", rax\n",
            "adox ",
            $t1,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 8]\n",
            "adcx ",
            $t1,
            ", rax\n",
            "adox ",
            $t2,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 16]\n",
            "adcx ",
            $t2,
            ", rax\n",
            "adox ",
            $t3,
            ", r15\n",
            "mulx r15, rax, qword ptr [rsi + 24]\n",
            "adcx ",
            $t3,
            ", rax\n",
            "adox ",
            $t4,
            ", r15\n",
            "adc ",
            $t4,
            ", 0\n",
        )
    };
}

macro_rules! reduce4 {
    ($t0:literal, $t1:literal, $t2:literal, $t3:literal, $t4:literal) => {
        concat!(
            "mov rdx, ",
            $t0,
            "\n",
            "imul rdx, qword ptr [rcx + 32]\n",
            "xor eax, eax\n",
            "mulx r15, rax, qword ptr [rcx]\n",
            "adcx ",
            $t0,
            ", rax\n",
            "adox ",
            $t1,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 8]\n",
            "adcx ",
            $t1,
            ", rax\n",
            "adox ",
            $t2,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 16]\n",
            "adcx ",
            $t2,
            ", rax\n",
            "adox ",
            $t3,
            ", r15\n",
            "mulx r15, rax, qword ptr [rcx + 24]\n",
            "adcx ",
            $t3,
            ", rax\n",
            "adox ",
            $t4,
            ", r15\n",
            "adc ",
            $t4,
            ", 0\n",
        )
    };
}

/// The Montgomery product `a b / 2^256 mod r` of canonical `a` and `b` (below `r`), canonical.
///
/// `r` must be below `2^255` with its top limb below `2^63 − 1` (the no-carry bound), as the
/// BLS12-381 scalar field's is.
///
/// # Safety
/// The processor must have BMI2 and ADX: [`available`] says so.
#[inline(always)]
pub(crate) unsafe fn mont_mul_256(a: &[u64; 4], b: &[u64; 4], r: &Modulus<4>) -> [u64; 4] {
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: as for `mont_mul_384`, with four words at `rsi` and `rdi` and five at `rcx`.
    unsafe {
        asm!(
            "mov rdx, qword ptr [rdi]",
            "mulx r9, r8, qword ptr [rsi]",
            "mulx r10, rax, qword ptr [rsi + 8]",
            "add r9, rax",
            "mulx r11, rax, qword ptr [rsi + 16]",
            "adc r10, rax",
            "mulx r12, rax, qword ptr [rsi + 24]",
            "adc r11, rax",
            "adc r12, 0",
            reduce4!("r8", "r9", "r10", "r11", "r12"),
            row4!("8", "r9", "r10", "r11", "r12", "r8"),
            reduce4!("r9", "r10", "r11", "r12", "r8"),
            row4!("16", "r10", "r11", "r12", "r8", "r9"),
            reduce4!("r10", "r11", "r12", "r8", "r9"),
            row4!("24", "r11", "r12", "r8", "r9", "r10"),
            reduce4!("r11", "r12", "r8", "r9", "r10"),
            // t = (r12, r8, r9, r10) < 2r: subtract r unless that borrows.
            "mov rax, r12",
            "sub rax, qword ptr [rcx]",
            "mov rdx, r8",
            "sbb rdx, qword ptr [rcx + 8]",
            "mov rsi, r9",
            "sbb rsi, qword ptr [rcx + 16]",
            "mov rdi, r10",
            "sbb rdi, qword ptr [rcx + 24]",
            "cmovnc r12, rax",
            "cmovnc r8, rdx",
            "cmovnc r9, rsi",
            "cmovnc r10, rdi",
            inout("rsi") a.as_ptr() => _,
            inout("rdi") b.as_ptr() => _,
            in("rcx") std::ptr::from_ref(r),
            out("rax") _,
            out("rdx") _,
            out("r11") _,
            out("r15") _,
            out("r12") r0,
            out("r8") r1,
            out("r9") r2,
            out("r10") r3,
            options(pure, readonly, nostack),
        );
    }
    [r0, r1, r2, r3]
}

/// `acc += a · b`: the full 512-bit product of `a` and `b` added into the nine-word accumulator
/// `acc` (Poseidon's linear layers sum such products and reduce once, `poseidon::field::Wide`).
/// The caller keeps `acc` from overflowing (its sums are far below `2^576`).
///
/// # Safety
/// The processor must have BMI2 and ADX: [`available`] says so.
#[inline(always)]
pub(crate) unsafe fn wide_mac_256(acc: &mut [u64; 9], a: &[u64; 4], b: &[u64; 4]) {
    // SAFETY: the caller guarantees BMI2 and ADX. The code reads four words at `rsi` and `rdi`,
    // and reads and writes the nine words at `rcx`, all within the references' arrays; it
    // changes only the registers it declares.
    unsafe {
        asm!(
            // The product p = (r8, r9, r10, r11, r12, r13, r14, rdi), row by row.
            "mov rdx, qword ptr [rdi]",
            "mulx r9, r8, qword ptr [rsi]",
            "mulx r10, rax, qword ptr [rsi + 8]",
            "add r9, rax",
            "mulx r11, rax, qword ptr [rsi + 16]",
            "adc r10, rax",
            "mulx r12, rax, qword ptr [rsi + 24]",
            "adc r11, rax",
            "adc r12, 0",
            "xor r13d, r13d",
            row4!("8", "r9", "r10", "r11", "r12", "r13"),
            "xor r14d, r14d",
            row4!("16", "r10", "r11", "r12", "r13", "r14"),
            // The last row: `b`'s pointer becomes the top word once its word is loaded.
            "mov rdx, qword ptr [rdi + 24]",
            "xor edi, edi",
            "mulx r15, rax, qword ptr [rsi]",
            "adcx r11, rax",
            "adox r12, r15",
            "mulx r15, rax, qword ptr [rsi + 8]",
            "adcx r12, rax",
            "adox r13, r15",
            "mulx r15, rax, qword ptr [rsi + 16]",
            "adcx r13, rax",
            "adox r14, r15",
            "mulx r15, rax, qword ptr [rsi + 24]",
            "adcx r14, rax",
            "adox rdi, r15",
            "adc rdi, 0",
            // acc += p.
            "add qword ptr [rcx], r8",
            "adc qword ptr [rcx + 8], r9",
            "adc qword ptr [rcx + 16], r10",
            "adc qword ptr [rcx + 24], r11",
            "adc qword ptr [rcx + 32], r12",
            "adc qword ptr [rcx + 40], r13",
            "adc qword ptr [rcx + 48], r14",
            "adc qword ptr [rcx + 56], rdi",
            "adc qword ptr [rcx + 64], 0",
            inout("rsi") a.as_ptr() => _,
            inout("rdi") b.as_ptr() => _,
            in("rcx") acc.as_mut_ptr(),
            out("rax") _,
            out("rdx") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            options(nostack),
        );
    }
}
