/* Stacked-DRG labelling of several sectors at once (SPEC §4.3), one work item per sector.
 *
 * label(layer, v) = trunc254(BLAKE3-keyed(key, replica_id || layer || v || 0… || parents…)):
 * a 64-byte header and 14 parent labels of 32 bytes, 512 bytes in one BLAKE3 chunk (8 blocks).
 * The six base parents come from this layer, the eight expander parents from the previous one
 * (zeros in layer 1); node 0 has every parent slot zero.
 *
 * Layers are sector-interleaved as on the CPU: word w of node v of sector s is at
 * (v * sectors + s) * 8 + w, so the work items of one node read neighbouring labels. Nodes depend
 * on earlier nodes of the same layer, so each work item walks its sector's nodes in order; a
 * launch covers `count` nodes from `v_start`, with their parents (14 words per node) in
 * `parents`. */

#define LODE_CHUNK_START 1u
#define LODE_CHUNK_END 2u
#define LODE_ROOT 8u
#define LODE_KEYED_HASH 16u

#define LODE_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

#define LODE_G(a, b, c, d, x, y)        \
    s[a] = s[a] + s[b] + (x);           \
    s[d] = LODE_ROTR(s[d] ^ s[a], 16);  \
    s[c] = s[c] + s[d];                 \
    s[b] = LODE_ROTR(s[b] ^ s[c], 12);  \
    s[a] = s[a] + s[b] + (y);           \
    s[d] = LODE_ROTR(s[d] ^ s[a], 8);   \
    s[c] = s[c] + s[d];                 \
    s[b] = LODE_ROTR(s[b] ^ s[c], 7);

/* One BLAKE3 compression of a 64-byte block at chunk counter 0, updating the chaining value. */
DEVICE void lode_blake3_compress(u32 *cv, const u32 *block, u32 flags)
{
    u32 s[16];
    u32 m[16];
    u32 t[16];
    int i;
    int r;
    for (i = 0; i < 8; i++) {
        s[i] = cv[i];
    }
    s[8] = 0x6A09E667u;
    s[9] = 0xBB67AE85u;
    s[10] = 0x3C6EF372u;
    s[11] = 0xA54FF53Au;
    s[12] = 0u;
    s[13] = 0u;
    s[14] = 64u;
    s[15] = flags;
    for (i = 0; i < 16; i++) {
        m[i] = block[i];
    }
    for (r = 0; r < 7; r++) {
        LODE_G(0, 4, 8, 12, m[0], m[1]);
        LODE_G(1, 5, 9, 13, m[2], m[3]);
        LODE_G(2, 6, 10, 14, m[4], m[5]);
        LODE_G(3, 7, 11, 15, m[6], m[7]);
        LODE_G(0, 5, 10, 15, m[8], m[9]);
        LODE_G(1, 6, 11, 12, m[10], m[11]);
        LODE_G(2, 7, 8, 13, m[12], m[13]);
        LODE_G(3, 4, 9, 14, m[14], m[15]);
        /* The message schedule's permutation. */
        t[0] = m[2];   t[1] = m[6];   t[2] = m[3];   t[3] = m[10];
        t[4] = m[7];   t[5] = m[0];   t[6] = m[4];   t[7] = m[13];
        t[8] = m[1];   t[9] = m[11];  t[10] = m[12]; t[11] = m[5];
        t[12] = m[9];  t[13] = m[14]; t[14] = m[15]; t[15] = m[8];
        for (i = 0; i < 16; i++) {
            m[i] = t[i];
        }
    }
    for (i = 0; i < 8; i++) {
        cv[i] = s[i] ^ s[i + 8];
    }
}

KERNEL void lode_label(GLOBAL const u32 *key, GLOBAL const u32 *replica_ids, u32 layer,
                       u32 v_start, u32 count, GLOBAL const u32 *parents, GLOBAL u32 *cur,
                       GLOBAL const u32 *prev, u32 has_prev, u32 sectors, u32 mask)
{
    u64 sector = GLOBAL_ID;
    u32 block[16];
    u32 cv[8];
    u32 i;
    u32 k;
    u32 w;
    u32 b;
    if (sector >= (u64)sectors) {
        return;
    }
    for (i = 0; i < count; i++) {
        u32 v = v_start + i;
        GLOBAL const u32 *ps = parents + (u64)i * 14u;
        u64 at;
        for (w = 0; w < 8; w++) {
            cv[w] = key[w];
        }
        /* The header block: replica id, layer, node index (64-bit little-endian), zeros. */
        for (w = 0; w < 8; w++) {
            block[w] = replica_ids[sector * 8u + w];
        }
        block[8] = layer;
        block[9] = v;
        for (w = 10; w < 16; w++) {
            block[w] = 0u;
        }
        lode_blake3_compress(cv, block, LODE_KEYED_HASH | LODE_CHUNK_START);
        /* Seven blocks of two parent labels each. */
        for (b = 0; b < 7; b++) {
            for (k = 0; k < 2; k++) {
                u32 slot = b * 2u + k;
                u32 p = ps[slot] & mask;
                GLOBAL const u32 *src = 0;
                if (v != 0u) {
                    if (slot < 6u) {
                        src = cur;
                    } else if (has_prev != 0u) {
                        src = prev;
                    }
                }
                for (w = 0; w < 8; w++) {
                    block[k * 8u + w] =
                        src != 0 ? src[((u64)p * (u64)sectors + sector) * 8u + w] : 0u;
                }
            }
            lode_blake3_compress(cv, block,
                                 b == 6u ? (LODE_KEYED_HASH | LODE_CHUNK_END | LODE_ROOT)
                                         : LODE_KEYED_HASH);
        }
        cv[7] &= 0x3FFFFFFFu;
        at = ((u64)v * (u64)sectors + sector) * 8u;
        for (w = 0; w < 8; w++) {
            cur[at + w] = cv[w];
        }
    }
}
