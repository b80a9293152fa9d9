/* Multi-scalar multiplication over BLS12-381 G1 (y^2 = x^3 + 4 over Fp): sum_i s_i P_i, Pippenger's
 * bucket method in three launches.
 *
 * 1. lode_msm_buckets: work item (g, w) takes group g of the points (a contiguous range) and
 *    window w (bits w*c .. w*c + c of every scalar), adds each point into bucket d of its own
 *    2^c - 1 buckets (d the window's digit, 0 skipped), then sums the buckets as
 *    sum_d d * B_d with two running sums, into partial[g * windows + w].
 * 2. lode_msm_windows: work item w adds up window w's partial sums of every group.
 * 3. lode_msm_combine: one work item forms sum_w 2^(c w) W_w by doubling (Horner), highest
 *    window first.
 *
 * Field elements are six little-endian 64-bit limbs in Montgomery form (R = 2^384), always
 * fully reduced. Bases are affine (x, y): 12 limbs. Accumulators are extended Jacobian XYZZ points
 * (X, Y, ZZ, ZZZ; x = X / ZZ, y = Y / ZZZ): 24 limbs, ZZ = 0 the identity. The formulas, with
 * their exact slow paths for equal and opposite points, are those of the CPU prover
 * (lode_proofs::prover::curve): madd-2008-s, add-2008-s and dbl-2008-s-1. Scalars are four
 * canonical little-endian limbs (below the group order, so 255 bits). */

#define LODE_FP_N 6
#define LODE_G1_WORDS 24
#define LODE_MAX_WINDOW 16

DEVICE u64 lode_fp_p(int j)
{
    return j == 0 ? 0xb9feffffffffaaabUL
         : j == 1 ? 0x1eabfffeb153ffffUL
         : j == 2 ? 0x6730d2a0f6b0f624UL
         : j == 3 ? 0x64774b84f38512bfUL
         : j == 4 ? 0x4b1ba7b6434bacd7UL
                  : 0x1a0111ea397fe69aUL;
}

/* -p^-1 mod 2^64 */
#define LODE_FP_INV 0x89f3fffcfffcfffdUL

/* R mod p: one in Montgomery form. */
DEVICE u64 lode_fp_one(int j)
{
    return j == 0 ? 0x760900000002fffdUL
         : j == 1 ? 0xebf4000bc40c0002UL
         : j == 2 ? 0x5f48985753c758baUL
         : j == 3 ? 0x77ce585370525745UL
         : j == 4 ? 0x5c071a97a256ec6dUL
                  : 0x15f65ec3fa80e493UL;
}

DEVICE void lode_fp_copy(u64 *r, const u64 *a)
{
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        r[j] = a[j];
    }
}

DEVICE int lode_fp_is_zero(const u64 *a)
{
    u64 acc = 0;
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        acc |= a[j];
    }
    return acc == 0;
}

/* r = r - p when r >= p. */
DEVICE void lode_fp_reduce(u64 *r)
{
    u64 d[LODE_FP_N];
    u64 borrow = 0;
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        u64 p = lode_fp_p(j);
        u64 x = r[j] - p;
        u64 b1 = (r[j] < p) ? 1UL : 0UL;
        u64 y = x - borrow;
        u64 b2 = (x < borrow) ? 1UL : 0UL;
        d[j] = y;
        borrow = b1 | b2;
    }
    if (borrow == 0) {
        lode_fp_copy(r, d);
    }
}

/* r = a + b mod p (p < 2^381: no carry out of the top limb). r may alias a or b. */
DEVICE void lode_fp_add(u64 *r, const u64 *a, const u64 *b)
{
    u64 c = 0;
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        u64 s = a[j] + c;
        u64 c1 = (s < c) ? 1UL : 0UL;
        u64 s2 = s + b[j];
        c = c1 + ((s2 < s) ? 1UL : 0UL);
        r[j] = s2;
    }
    lode_fp_reduce(r);
}

/* r = a - b mod p. r may alias a or b. */
DEVICE void lode_fp_sub(u64 *r, const u64 *a, const u64 *b)
{
    u64 d[LODE_FP_N];
    u64 borrow = 0;
    u64 c = 0;
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        u64 x = a[j] - b[j];
        u64 b1 = (a[j] < b[j]) ? 1UL : 0UL;
        u64 y = x - borrow;
        u64 b2 = (x < borrow) ? 1UL : 0UL;
        d[j] = y;
        borrow = b1 | b2;
    }
    if (borrow != 0) {
        /* d + p wraps around 2^384 back into [0, p). */
        for (j = 0; j < LODE_FP_N; j++) {
            u64 s = d[j] + c;
            u64 c1 = (s < c) ? 1UL : 0UL;
            u64 s2 = s + lode_fp_p(j);
            c = c1 + ((s2 < s) ? 1UL : 0UL);
            d[j] = s2;
        }
    }
    lode_fp_copy(r, d);
}

/* r = a * b / 2^384 mod p (Montgomery multiplication, CIOS). r may alias a or b. */
DEVICE void lode_fp_mul(u64 *r, const u64 *a, const u64 *b)
{
    u64 t[LODE_FP_N + 2];
    int i;
    int j;
    for (i = 0; i < LODE_FP_N + 2; i++) {
        t[i] = 0;
    }
    for (i = 0; i < LODE_FP_N; i++) {
        u64 c = 0;
        u64 m;
        u64 s;
        for (j = 0; j < LODE_FP_N; j++) {
            t[j] = lode_mac(t[j], a[j], b[i], &c);
        }
        s = t[LODE_FP_N] + c;
        t[LODE_FP_N + 1] = (s < c) ? 1UL : 0UL;
        t[LODE_FP_N] = s;
        m = t[0] * LODE_FP_INV;
        c = 0;
        (void)lode_mac(t[0], m, lode_fp_p(0), &c);
        for (j = 1; j < LODE_FP_N; j++) {
            t[j - 1] = lode_mac(t[j], m, lode_fp_p(j), &c);
        }
        s = t[LODE_FP_N] + c;
        t[LODE_FP_N - 1] = s;
        t[LODE_FP_N] = t[LODE_FP_N + 1] + ((s < c) ? 1UL : 0UL);
        t[LODE_FP_N + 1] = 0;
    }
    for (i = 0; i < LODE_FP_N; i++) {
        r[i] = t[i];
    }
    lode_fp_reduce(r);
}

/* Point layout: X at 0, Y at 6, ZZ at 12, ZZZ at 18. */
#define LODE_X(p) (p)
#define LODE_Y(p) ((p) + 6)
#define LODE_ZZ(p) ((p) + 12)
#define LODE_ZZZ(p) ((p) + 18)

DEVICE void lode_g1_identity(u64 *p)
{
    int j;
    for (j = 0; j < LODE_G1_WORDS; j++) {
        p[j] = 0;
    }
}

DEVICE int lode_g1_is_identity(const u64 *p)
{
    return lode_fp_is_zero(LODE_ZZ(p));
}

/* p = the affine point a (x, y). */
DEVICE void lode_g1_from_affine(u64 *p, const u64 *a)
{
    int j;
    for (j = 0; j < LODE_FP_N; j++) {
        p[j] = a[j];
        p[6 + j] = a[6 + j];
        p[12 + j] = lode_fp_one(j);
        p[18 + j] = lode_fp_one(j);
    }
}

/* p = 2 p. */
DEVICE void lode_g1_double(u64 *p)
{
    u64 u[LODE_FP_N];
    u64 v[LODE_FP_N];
    u64 w[LODE_FP_N];
    u64 s[LODE_FP_N];
    u64 m[LODE_FP_N];
    u64 t[LODE_FP_N];
    if (lode_g1_is_identity(p) || lode_fp_is_zero(LODE_Y(p))) {
        lode_g1_identity(p);
        return;
    }
    lode_fp_add(u, LODE_Y(p), LODE_Y(p));
    lode_fp_mul(v, u, u);
    lode_fp_mul(w, u, v);
    lode_fp_mul(s, LODE_X(p), v);
    lode_fp_mul(t, LODE_X(p), LODE_X(p));
    lode_fp_add(m, t, t);
    lode_fp_add(m, m, t);
    /* X3 = M^2 - 2 S */
    lode_fp_mul(t, m, m);
    lode_fp_sub(t, t, s);
    lode_fp_sub(t, t, s);
    /* Y3 = M (S - X3) - W Y */
    lode_fp_sub(s, s, t);
    lode_fp_mul(s, m, s);
    lode_fp_mul(u, w, LODE_Y(p));
    lode_fp_sub(LODE_Y(p), s, u);
    lode_fp_copy(LODE_X(p), t);
    lode_fp_mul(LODE_ZZ(p), v, LODE_ZZ(p));
    lode_fp_mul(LODE_ZZZ(p), w, LODE_ZZZ(p));
}

/* The common tail of both additions: from U1, S1, P = U2 - U1 (non-zero) and R = S2 - S1, sets
 * X3 and Y3 and multiplies ZZ by PP and ZZZ by PPP. */
DEVICE void lode_g1_add_tail(u64 *p, const u64 *u1, const u64 *s1, const u64 *pd, const u64 *r)
{
    u64 pp[LODE_FP_N];
    u64 ppp[LODE_FP_N];
    u64 q[LODE_FP_N];
    u64 x3[LODE_FP_N];
    u64 t[LODE_FP_N];
    lode_fp_mul(pp, pd, pd);
    lode_fp_mul(ppp, pd, pp);
    lode_fp_mul(q, u1, pp);
    /* X3 = R^2 - PPP - 2 Q */
    lode_fp_mul(x3, r, r);
    lode_fp_sub(x3, x3, ppp);
    lode_fp_sub(x3, x3, q);
    lode_fp_sub(x3, x3, q);
    /* Y3 = R (Q - X3) - S1 PPP */
    lode_fp_sub(q, q, x3);
    lode_fp_mul(q, r, q);
    lode_fp_mul(t, s1, ppp);
    lode_fp_sub(LODE_Y(p), q, t);
    lode_fp_copy(LODE_X(p), x3);
    lode_fp_mul(LODE_ZZ(p), LODE_ZZ(p), pp);
    lode_fp_mul(LODE_ZZZ(p), LODE_ZZZ(p), ppp);
}

/* p = p + a, a affine. */
DEVICE void lode_g1_add_affine(u64 *p, const u64 *a)
{
    u64 pd[LODE_FP_N];
    u64 r[LODE_FP_N];
    u64 u1[LODE_FP_N];
    u64 s1[LODE_FP_N];
    if (lode_g1_is_identity(p)) {
        lode_g1_from_affine(p, a);
        return;
    }
    lode_fp_mul(pd, a, LODE_ZZ(p));
    lode_fp_sub(pd, pd, LODE_X(p));
    lode_fp_mul(r, a + 6, LODE_ZZZ(p));
    lode_fp_sub(r, r, LODE_Y(p));
    if (lode_fp_is_zero(pd)) {
        if (lode_fp_is_zero(r)) {
            lode_g1_from_affine(p, a);
            lode_g1_double(p);
        } else {
            lode_g1_identity(p);
        }
        return;
    }
    lode_fp_copy(u1, LODE_X(p));
    lode_fp_copy(s1, LODE_Y(p));
    lode_g1_add_tail(p, u1, s1, pd, r);
}

/* p = p + q, both XYZZ. */
DEVICE void lode_g1_add(u64 *p, const u64 *q)
{
    u64 u1[LODE_FP_N];
    u64 s1[LODE_FP_N];
    u64 pd[LODE_FP_N];
    u64 r[LODE_FP_N];
    if (lode_g1_is_identity(q)) {
        return;
    }
    if (lode_g1_is_identity(p)) {
        int j;
        for (j = 0; j < LODE_G1_WORDS; j++) {
            p[j] = q[j];
        }
        return;
    }
    lode_fp_mul(u1, LODE_X(p), LODE_ZZ(q));
    lode_fp_mul(pd, LODE_X(q), LODE_ZZ(p));
    lode_fp_mul(s1, LODE_Y(p), LODE_ZZZ(q));
    lode_fp_mul(r, LODE_Y(q), LODE_ZZZ(p));
    lode_fp_sub(pd, pd, u1);
    lode_fp_sub(r, r, s1);
    if (lode_fp_is_zero(pd)) {
        if (lode_fp_is_zero(r)) {
            lode_g1_double(p);
        } else {
            lode_g1_identity(p);
        }
        return;
    }
    /* ZZ3 = ZZ1 ZZ2 PP and ZZZ3 = ZZZ1 ZZZ2 PPP: the tail multiplies by PP and PPP. */
    lode_fp_mul(LODE_ZZ(p), LODE_ZZ(p), LODE_ZZ(q));
    lode_fp_mul(LODE_ZZZ(p), LODE_ZZZ(p), LODE_ZZZ(q));
    lode_g1_add_tail(p, u1, s1, pd, r);
}

DEVICE void lode_g1_load(u64 *p, GLOBAL const u64 *g)
{
    int j;
    for (j = 0; j < LODE_G1_WORDS; j++) {
        p[j] = g[j];
    }
}

DEVICE void lode_g1_store(GLOBAL u64 *g, const u64 *p)
{
    int j;
    for (j = 0; j < LODE_G1_WORDS; j++) {
        g[j] = p[j];
    }
}

/* Bits bit .. bit + c of a scalar (c <= 16). */
DEVICE u32 lode_msm_digit(GLOBAL const u64 *s, u32 bit, u32 c)
{
    u32 limb = bit / 64;
    u32 shift = bit % 64;
    u64 v;
    if (limb >= 4) {
        return 0;
    }
    v = s[limb] >> shift;
    if (shift + c > 64 && limb + 1 < 4) {
        v |= s[limb + 1] << (64 - shift);
    }
    return (u32)(v & ((1UL << c) - 1UL));
}

KERNEL void lode_msm_buckets(GLOBAL const u64 *bases, GLOBAL const u64 *scalars, u32 n, u32 c,
                             u32 windows, u32 groups, GLOBAL u64 *buckets, GLOBAL u64 *partial)
{
    u64 id = GLOBAL_ID;
    u32 w;
    u32 g;
    u32 per;
    u32 start;
    u32 end;
    u32 nb;
    u32 i;
    u32 k;
    u64 a[12];
    u64 acc[LODE_G1_WORDS];
    u64 sum[LODE_G1_WORDS];
    u64 b[LODE_G1_WORDS];
    GLOBAL u64 *mine;
    if (id >= (u64)windows * (u64)groups || c == 0 || c > LODE_MAX_WINDOW) {
        return;
    }
    w = (u32)(id % windows);
    g = (u32)(id / windows);
    per = n / groups + ((n % groups) != 0 ? 1 : 0);
    start = g * per;
    end = start + per;
    if (end > n || end < start) {
        end = n;
    }
    nb = (1U << c) - 1U;
    mine = buckets + id * (u64)nb * LODE_G1_WORDS;
    for (k = 0; k < nb; k++) {
        lode_g1_identity(b);
        lode_g1_store(mine + (u64)k * LODE_G1_WORDS, b);
    }
    for (i = start; i < end; i++) {
        u32 d = lode_msm_digit(scalars + (u64)i * 4, w * c, c);
        int j;
        if (d == 0) {
            continue;
        }
        for (j = 0; j < 12; j++) {
            a[j] = bases[(u64)i * 12 + j];
        }
        lode_g1_load(b, mine + (u64)(d - 1) * LODE_G1_WORDS);
        lode_g1_add_affine(b, a);
        lode_g1_store(mine + (u64)(d - 1) * LODE_G1_WORDS, b);
    }
    /* sum_d d B_d = sum over k of (B_nb + ... + B_k). */
    lode_g1_identity(acc);
    lode_g1_identity(sum);
    for (k = nb; k > 0; k--) {
        lode_g1_load(b, mine + (u64)(k - 1) * LODE_G1_WORDS);
        lode_g1_add(acc, b);
        lode_g1_add(sum, acc);
    }
    lode_g1_store(partial + id * LODE_G1_WORDS, sum);
}

KERNEL void lode_msm_windows(GLOBAL const u64 *partial, u32 windows, u32 groups,
                             GLOBAL u64 *window_sums)
{
    u64 w = GLOBAL_ID;
    u32 g;
    u64 acc[LODE_G1_WORDS];
    u64 b[LODE_G1_WORDS];
    if (w >= windows) {
        return;
    }
    lode_g1_identity(acc);
    for (g = 0; g < groups; g++) {
        lode_g1_load(b, partial + ((u64)g * windows + w) * LODE_G1_WORDS);
        lode_g1_add(acc, b);
    }
    lode_g1_store(window_sums + w * LODE_G1_WORDS, acc);
}

KERNEL void lode_msm_combine(GLOBAL const u64 *window_sums, u32 windows, u32 c, GLOBAL u64 *out)
{
    u32 w;
    u32 k;
    u64 acc[LODE_G1_WORDS];
    u64 b[LODE_G1_WORDS];
    if (GLOBAL_ID != 0) {
        return;
    }
    lode_g1_identity(acc);
    for (w = windows; w > 0; w--) {
        for (k = 0; k < c; k++) {
            lode_g1_double(acc);
        }
        lode_g1_load(b, window_sums + (u64)(w - 1) * LODE_G1_WORDS);
        lode_g1_add(acc, b);
    }
    lode_g1_store(out, acc);
}
