/* Poseidon over the BLS12-381 scalar field (SPEC's tree and column hash): width t = arity + 1,
 * cell 0 the domain tag, cells 1.. the inputs, x^5 S-box, full rounds split around the partial
 * rounds (the S-box on cell 0 only); the digest is cell 1.
 *
 * This is the sparse form the CPU's fast path computes (constant compression and one sparse
 * matrix per partial round; see lode_proofs::poseidon::SparseForm), one work item per hash. The field is four 64-bit limbs in
 * Montgomery form (R = 2^256); constants arrive from the host in that form, inputs and outputs
 * as canonical little-endian 32-bit words (lode's node bytes). */

#define LODE_P0 0xffffffff00000001UL
#define LODE_P1 0x53bda402fffe5bfeUL
#define LODE_P2 0x3339d80809a1d805UL
#define LODE_P3 0x73eda753299d7d48UL
/* -p^-1 mod 2^64 */
#define LODE_INV 0xfffffffeffffffffUL
#define LODE_MAX_WIDTH 17

/* a + b * c + *carry, the high word into *carry (no overflow: the sum is below 2^128). */
DEVICE u64 lode_mac(u64 a, u64 b, u64 c, u64 *carry)
{
    u64 lo = b * c;
    u64 hi = LODE_MULHI(b, c);
    lo += a;
    hi += (lo < a) ? 1UL : 0UL;
    lo += *carry;
    hi += (lo < *carry) ? 1UL : 0UL;
    *carry = hi;
    return lo;
}

DEVICE u64 lode_p(int j)
{
    return j == 0 ? LODE_P0 : j == 1 ? LODE_P1 : j == 2 ? LODE_P2 : LODE_P3;
}

/* r = r - p when r >= p. */
DEVICE void lode_fr_reduce(u64 *r)
{
    u64 d[4];
    u64 borrow = 0;
    int j;
    for (j = 0; j < 4; j++) {
        u64 p = lode_p(j);
        u64 x = r[j] - p;
        u64 b1 = (r[j] < p) ? 1UL : 0UL;
        u64 y = x - borrow;
        u64 b2 = (x < borrow) ? 1UL : 0UL;
        d[j] = y;
        borrow = b1 | b2;
    }
    if (borrow == 0) {
        for (j = 0; j < 4; j++) {
            r[j] = d[j];
        }
    }
}

/* r = a + b mod p (a, b < p < 2^255: no carry out of the top limb). */
DEVICE void lode_fr_add(u64 *r, const u64 *a, const u64 *b)
{
    u64 c = 0;
    int j;
    for (j = 0; j < 4; j++) {
        u64 s = a[j] + c;
        u64 c1 = (s < c) ? 1UL : 0UL;
        u64 s2 = s + b[j];
        c = c1 + ((s2 < s) ? 1UL : 0UL);
        r[j] = s2;
    }
    lode_fr_reduce(r);
}

/* r = a * b / 2^256 mod p (Montgomery multiplication, CIOS). r may alias a or b. */
DEVICE void lode_fr_mul(u64 *r, const u64 *a, const u64 *b)
{
    u64 t[6];
    int i;
    int j;
    for (i = 0; i < 6; i++) {
        t[i] = 0;
    }
    for (i = 0; i < 4; i++) {
        u64 c = 0;
        u64 m;
        u64 s;
        for (j = 0; j < 4; j++) {
            t[j] = lode_mac(t[j], a[j], b[i], &c);
        }
        s = t[4] + c;
        t[5] = (s < c) ? 1UL : 0UL;
        t[4] = s;
        m = t[0] * LODE_INV;
        c = 0;
        (void)lode_mac(t[0], m, LODE_P0, &c);
        for (j = 1; j < 4; j++) {
            t[j - 1] = lode_mac(t[j], m, lode_p(j), &c);
        }
        s = t[4] + c;
        t[3] = s;
        t[4] = t[5] + ((s < c) ? 1UL : 0UL);
        t[5] = 0;
    }
    for (i = 0; i < 4; i++) {
        r[i] = t[i];
    }
    lode_fr_reduce(r);
}

/* x^5 */
DEVICE void lode_fr_quintic(u64 *x)
{
    u64 x2[4];
    u64 x4[4];
    lode_fr_mul(x2, x, x);
    lode_fr_mul(x4, x2, x2);
    lode_fr_mul(x, x4, x);
}

DEVICE void lode_load4(u64 *r, GLOBAL const u64 *g)
{
    int j;
    for (j = 0; j < 4; j++) {
        r[j] = g[j];
    }
}

/* nx = M st over t cells (row-major: nx_i = sum_j M[i t + j] st_j), then st = nx. */
DEVICE void lode_fr_dense(u64 *st, u64 *nx, GLOBAL const u64 *m, u32 t)
{
    u64 k[4];
    u64 x[4];
    u32 i;
    u32 j;
    for (i = 0; i < t; i++) {
        u64 *acc = nx + i * 4u;
        for (j = 0; j < 4; j++) {
            acc[j] = 0;
        }
        for (j = 0; j < t; j++) {
            lode_load4(k, m + ((u64)i * t + j) * 4u);
            lode_fr_mul(x, st + j * 4u, k);
            lode_fr_add(acc, acc, x);
        }
    }
    for (i = 0; i < t * 4u; i++) {
        st[i] = nx[i];
    }
}

/* Full rounds first .. last of the sparse form: constants, S-box on every cell, then the linear
 * layer (pre_sparse after the last round of the first half, none after the very last). */
DEVICE void lode_fr_full_rounds(u64 *st, u64 *nx, GLOBAL const u64 *c, u32 t, u32 first,
                                u32 last, u32 mid, u32 full_rounds, GLOBAL const u64 *mds,
                                GLOBAL const u64 *pre_sparse)
{
    u64 k[4];
    u32 r;
    u32 i;
    for (r = first; r < last; r++) {
        for (i = 0; i < t; i++) {
            lode_load4(k, c + ((u64)r * t + i) * 4u);
            lode_fr_add(st + i * 4u, st + i * 4u, k);
            lode_fr_quintic(st + i * 4u);
        }
        if (r + 1u == mid) {
            lode_fr_dense(st, nx, pre_sparse, t);
        } else if (r + 1u < full_rounds) {
            lode_fr_dense(st, nx, mds, t);
        }
    }
}

/* The sparse form of lode_proofs::poseidon (SparseForm): the constants arrive in one buffer, four
 * limbs each, in this order: the domain tag; full_rounds * t full-round constants; one constant
 * per partial round; the MDS matrix (t * t, row-major); the pre-sparse matrix (t * t); per
 * partial round its sparse row (t), then per partial round its sparse column (t - 1). Partial
 * rounds cost 2t + 2 multiplications instead of the t * t of the plain permutation. */
KERNEL void lode_poseidon(GLOBAL const u32 *inputs, u32 arity, u32 hashes, GLOBAL const u64 *c,
                          u32 full_rounds, u32 partial_rounds, GLOBAL u32 *out)
{
    u64 h = GLOBAL_ID;
    u64 st[LODE_MAX_WIDTH * 4];
    u64 nx[LODE_MAX_WIDTH * 4];
    u64 k[4];
    u64 x[4];
    u64 acc[4];
    u64 r2[4];
    u32 t = arity + 1u;
    u32 mid = full_rounds / 2u;
    GLOBAL const u64 *full;
    GLOBAL const u64 *partial;
    GLOBAL const u64 *mds;
    GLOBAL const u64 *pre_sparse;
    GLOBAL const u64 *rows;
    GLOBAL const u64 *cols;
    u32 p;
    u32 i;
    u32 j;
    if (h >= (u64)hashes || t > (u32)LODE_MAX_WIDTH) {
        return;
    }
    full = c + 4u;
    partial = full + (u64)full_rounds * t * 4u;
    mds = partial + (u64)partial_rounds * 4u;
    pre_sparse = mds + (u64)t * t * 4u;
    rows = pre_sparse + (u64)t * t * 4u;
    cols = rows + (u64)partial_rounds * t * 4u;
    /* R^2 mod p: multiplying by it enters Montgomery form. */
    r2[0] = 0xc999e990f3f29c6dUL;
    r2[1] = 0x2b6cedcb87925c23UL;
    r2[2] = 0x05d314967254398fUL;
    r2[3] = 0x0748d9d99f59ff11UL;
    lode_load4(st, c);
    for (i = 1; i < t; i++) {
        GLOBAL const u32 *w = inputs + (h * (u64)arity + (u64)(i - 1u)) * 8u;
        for (j = 0; j < 4; j++) {
            x[j] = (u64)w[2u * j] | ((u64)w[2u * j + 1u] << 32);
        }
        lode_fr_mul(st + i * 4u, x, r2);
    }
    lode_fr_full_rounds(st, nx, full, t, 0, mid, mid, full_rounds, mds, pre_sparse);
    for (p = 0; p < partial_rounds; p++) {
        lode_load4(k, partial + (u64)p * 4u);
        lode_fr_add(st, st, k);
        lode_fr_quintic(st);
        /* s0' = row . (x, s1, ...); s_i += col_i x. */
        for (j = 0; j < 4; j++) {
            acc[j] = 0;
        }
        for (j = 0; j < t; j++) {
            lode_load4(k, rows + ((u64)p * t + j) * 4u);
            lode_fr_mul(x, st + j * 4u, k);
            lode_fr_add(acc, acc, x);
        }
        for (i = 1; i < t; i++) {
            lode_load4(k, cols + ((u64)p * (t - 1u) + (i - 1u)) * 4u);
            lode_fr_mul(x, st, k);
            lode_fr_add(st + i * 4u, st + i * 4u, x);
        }
        for (j = 0; j < 4; j++) {
            st[j] = acc[j];
        }
    }
    lode_fr_full_rounds(st, nx, full, t, mid, full_rounds, mid, full_rounds, mds, pre_sparse);
    /* The digest: cell 1 of the last linear layer. */
    for (j = 0; j < 4; j++) {
        acc[j] = 0;
    }
    for (j = 0; j < t; j++) {
        lode_load4(k, mds + ((u64)t + j) * 4u);
        lode_fr_mul(x, st + j * 4u, k);
        lode_fr_add(acc, acc, x);
    }
    /* Leave Montgomery form: multiply by 1. */
    k[0] = 1;
    k[1] = 0;
    k[2] = 0;
    k[3] = 0;
    lode_fr_mul(x, acc, k);
    for (j = 0; j < 4; j++) {
        out[h * 8u + 2u * j] = (u32)x[j];
        out[h * 8u + 2u * j + 1u] = (u32)(x[j] >> 32);
    }
}
