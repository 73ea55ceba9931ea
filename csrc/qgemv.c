/*
 * qgemv.c: block-type weight rows times one column (see qgemv.h), for the
 * 32-value block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K types Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * 32-value types.
 *
 * Pair layout. One zmm holds two consecutive blocks b, b+1 as
 *     [b 0..15 | b+1 0..15 | b 16..31 | b+1 16..31]      (16 bytes each)
 * which is what two 4-bit blocks give with one mask and one shift (low
 * nibbles are values 0..15, high nibbles 16..31). The column is rearranged
 * into the same layout once per call, so one vpdpbusd multiplies two blocks
 * and every int32 lane holds four products of a single block.
 *
 * Groups of 8 blocks. The four pair products are reduced to the 8 blocks'
 * exact integer sums in lane order SIGMA = [0 2 4 6 1 3 5 7] (what the
 * unpack/add tree yields), then each lane takes the same terms as
 * quants_plain.c's scalar vec_dot puts into lane b % 8:
 *     lane = fma(dx * dy, isum, lane);  lane = fma(mx, sy, lane)   (Q4_1/Q5_1)
 * The column's scales are stored in SIGMA order, the rows' come through one
 * gather whose offsets are in SIGMA order, and the accumulator stays in
 * SIGMA order until the final lane sum, which adds in vec_dot's order. The
 * offsets of the unsigned types go into the integer sums: Q4_0 is
 * u . y - 8 * sum(y), Q5_0 the same with 16, Q8_0 (signed) is taken as
 * (x + 128) . y - 128 * sum(y), since vpdpbusd multiplies unsigned by signed.
 *
 * A row's last, partial group loads only its blocks and updates only their
 * lanes (masked gather and fma), so nothing past a row is read and no lane
 * is touched that vec_dot would not touch.
 *
 * K types (256-value super-blocks against Q8_K; layouts in quants_k.c).
 *
 * Chunk order. A super-block's quants come in as 4 vectors of 64 unsigned
 * bytes straight from its loads (masks, shifts, and the third / fifth /
 * top bits added under a byte mask), so each 32-byte half is a chunk of 32
 * consecutive values, in an order that depends on the type's bit layout
 * (gg_qgemv_kchunk; Q4_K: [0 2] [1 3] [4 6] [5 7]). The column's quants are
 * put in the same order once per call; its bsums and d are kept as they are.
 *
 * One super-block: 4 vpdpbusd give int32 lanes of 4 products each, 128-bit
 * lane k holding one 16-value group. |lane| <= 4 * 63 * 128 < 2^15, so two
 * packs_epi32 halve them exactly, and vpmaddwd + vpdpwssd multiply them by
 * their group's scale (int16 words that vpermw, with tables built once per
 * call, picks from the decoded scales) and add: an exact int32 sum over the
 * super-block of scale * q * y, in 16 lanes.
 *
 * Mins and offsets, per pair of super-blocks: one vpmaddwd of a word per
 * 16-value group with the column's bsums. Q2_K/Q4_K/Q5_K take their min
 * (each of Q4_K/Q5_K's 8 mins twice) and keep msum apart for dmin; Q3_K and
 * Q6_K, whose quants are stored +4 / +32, take offset * scale and subtract
 * it from the integer sum (exact).
 *
 * Groups of 8 super-blocks: the integer sums reduce to 8 lanes in SIGMA
 * order, and with d (and dmin) collected by one masked broadcast of the 4
 * bytes holding them per super-block (only present super-blocks are read):
 *     lane = fma(d * yd, isum, lane);  lane = fnmadd(dmin * yd, msum, lane)
 * then the lane sum above. Not vec_dot's bits: its AVX2 form spreads each
 * super-block's integer sum over 8 f32 lanes and keeps the min terms in a
 * second accumulator subtracted at the end; here each super-block rounds
 * once (twice with a min) and measured 2-4x closer to an f64 reference
 * (tests/test_quant_ops.py checks 1e-5 of sum |terms|). The thread count
 * does not change the bits.
 *
 * Rows are prefetched GG_QGEMV_PREFETCH bytes ahead: from memory, K rows of
 * 17..20 super-blocks streamed at about half the speed of 16 or 24 without,
 * and every type streamed slower.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "qgemv.h"

static _Atomic int gg_qgemv_on = 1;

int gg_qgemv_enable(int on) { return atomic_exchange(&gg_qgemv_on, on != 0); }

int gg_qgemv_built(void) { return GG_QGEMV; }

static int gg_qgemv_has(int type) {
    switch (type) {
    case GG_TYPE_Q4_0: case GG_TYPE_Q4_1: case GG_TYPE_Q5_0: case GG_TYPE_Q5_1: case GG_TYPE_Q8_0:
    case GG_TYPE_Q2_K: case GG_TYPE_Q3_K: case GG_TYPE_Q4_K: case GG_TYPE_Q5_K: case GG_TYPE_Q6_K:
        return GG_QGEMV;
    default:
        return 0;
    }
}

int gg_qgemv_usable(int type, int simd) {
    return simd && atomic_load(&gg_qgemv_on) && gg_qgemv_has(type);
}

#if GG_QGEMV

#define GG_INLINE static inline __attribute__((always_inline))

/* prefetch distance of the rows: on Zen 5, 4 KB and 8 KB ahead gave 31 and
 * 33-35 GB/s from memory on one core (Q4_K, 896 rows of 17..25 super-blocks),
 * 12 KB 35-37: about the core's read bandwidth; none, 15-21. The 32-value
 * types (one prefetch per pair of blocks) went from 25 / 24 / 31 to 30 / 26 /
 * 40 GB/s (Q4_0 / Q5_0 / Q8_0) from memory, and lost 3-7% with rows in L3 */
#define GG_QGEMV_PREFETCH 12288

/* blocks of the column prepared per pass: 8 KB of quants and 3 KB of scales
 * on the stack; rows of k up to 8192 take one pass */
#define GG_QGEMV_SEG 256

typedef struct {
    __m512i q[GG_QGEMV_SEG / 2];    /* quants, a pair of blocks per vector */
    float   d[GG_QGEMV_SEG];        /* scale per block, SIGMA order within each 8 */
    float   s[GG_QGEMV_SEG];        /* Q8_1's s (d * sum of quants), SIGMA order */
    int32_t sum[GG_QGEMV_SEG];      /* Q8_0's sum of quants, SIGMA order */
} gg_qgemv_col;

/* block i (0..7) of a group sits in lane SIGMA^-1(i) */
static inline int gg_qgemv_lane(int i) { return (i & 1) ? 4 + i / 2 : i / 2; }

/* 32 quants of each of two blocks (the second may be NULL: zeros) -> pair layout */
GG_INLINE __m512i gg_qgemv_pair8(const int8_t *q0, const int8_t *q1) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)q0);
    const __m256i b = q1 ? _mm256_loadu_si256((const __m256i *)q1) : _mm256_setzero_si256();
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

/* 16 bytes of nibbles of each of two blocks (the second may be NULL) -> pair layout */
GG_INLINE __m512i gg_qgemv_pair4(const uint8_t *q0, const uint8_t *q1) {
    const __m128i a = _mm_loadu_si128((const __m128i *)q0);
    const __m256i w = q1 ? _mm256_inserti128_si256(_mm256_castsi128_si256(a), _mm_loadu_si128((const __m128i *)q1), 1)
                         : _mm256_zextsi128_si256(a);
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(w), _mm256_srli_epi16(w, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* the fifth bits of two Q5 blocks as a byte mask in pair layout */
GG_INLINE __mmask64 gg_qgemv_bits5(const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (qh1) memcpy(&h1, qh1, 4);
    return (__mmask64)((uint64_t)(h0 & 0xFFFF) | (uint64_t)(h1 & 0xFFFF) << 16 | (uint64_t)(h0 >> 16) << 32 |
                       (uint64_t)(h1 >> 16) << 48);
}

/* per type: block size in bytes, where its quants are, its integer offset
 * (subtracted as off * sum(y)) and whether it has a min (m, at byte 2) */
GG_INLINE size_t gg_qgemv_ts(const int T) {
    switch (T) {
    case GG_TYPE_Q4_0: return sizeof(gg_block_q4_0);
    case GG_TYPE_Q4_1: return sizeof(gg_block_q4_1);
    case GG_TYPE_Q5_0: return sizeof(gg_block_q5_0);
    case GG_TYPE_Q5_1: return sizeof(gg_block_q5_1);
    case GG_TYPE_Q2_K: return sizeof(gg_block_q2_K);
    case GG_TYPE_Q3_K: return sizeof(gg_block_q3_K);
    case GG_TYPE_Q4_K: return sizeof(gg_block_q4_K);
    case GG_TYPE_Q5_K: return sizeof(gg_block_q5_K);
    case GG_TYPE_Q6_K: return sizeof(gg_block_q6_K);
    default:           return sizeof(gg_block_q8_0);
    }
}
GG_INLINE int gg_qgemv_off_shift(const int T) {    /* log2 of the offset, 0: none */
    switch (T) {
    case GG_TYPE_Q4_0: return 3;
    case GG_TYPE_Q5_0: return 4;
    case GG_TYPE_Q8_0: return 7;
    default:           return 0;
    }
}
GG_INLINE int gg_qgemv_has_m(const int T) { return T == GG_TYPE_Q4_1 || T == GG_TYPE_Q5_1; }

/* blocks x0 and x1 (x1 NULL: only x0) of type T as unsigned quants in pair layout */
GG_INLINE __m512i gg_qgemv_vals(const int T, const char *x0, const char *x1) {
    switch (T) {
    case GG_TYPE_Q4_0:
        return gg_qgemv_pair4(((const gg_block_q4_0 *)x0)->qs, x1 ? ((const gg_block_q4_0 *)x1)->qs : NULL);
    case GG_TYPE_Q4_1:
        return gg_qgemv_pair4(((const gg_block_q4_1 *)x0)->qs, x1 ? ((const gg_block_q4_1 *)x1)->qs : NULL);
    case GG_TYPE_Q5_0: {
        const gg_block_q5_0 *b0 = (const gg_block_q5_0 *)x0, *b1 = (const gg_block_q5_0 *)x1;
        const __m512i v = gg_qgemv_pair4(b0->qs, b1 ? b1->qs : NULL);
        return _mm512_mask_add_epi8(v, gg_qgemv_bits5(b0->qh, b1 ? b1->qh : NULL), v, _mm512_set1_epi8(16));
    }
    case GG_TYPE_Q5_1: {
        const gg_block_q5_1 *b0 = (const gg_block_q5_1 *)x0, *b1 = (const gg_block_q5_1 *)x1;
        const __m512i v = gg_qgemv_pair4(b0->qs, b1 ? b1->qs : NULL);
        return _mm512_mask_add_epi8(v, gg_qgemv_bits5(b0->qh, b1 ? b1->qh : NULL), v, _mm512_set1_epi8(16));
    }
    default:
        return _mm512_xor_si512(gg_qgemv_pair8(((const gg_block_q8_0 *)x0)->qs,
                                               x1 ? ((const gg_block_q8_0 *)x1)->qs : NULL),
                                _mm512_set1_epi8((char)0x80));
    }
}

/* blocks [b0, b0 + n) of the column (n <= GG_QGEMV_SEG) -> c; missing
 * blocks of the last group are zero */
/* block b of a column of Q8_0 or Q8_1 blocks (both start with their f16 d) */
static inline const void *gg_qgemv_col_block(int vdt, const void *y, int64_t b) {
    return vdt == GG_TYPE_Q8_1 ? (const void *)((const gg_block_q8_1 *)y + b) : (const void *)((const gg_block_q8_0 *)y + b);
}
static inline const int8_t *gg_qgemv_col_qs(int vdt, const void *blk) {
    return vdt == GG_TYPE_Q8_1 ? ((const gg_block_q8_1 *)blk)->qs : ((const gg_block_q8_0 *)blk)->qs;
}

static void gg_qgemv_prepare(int vdt, const void *y, int64_t b0, int64_t n, gg_qgemv_col *c) {
    const int64_t npad = (n + 7) / 8 * 8;
    for (int64_t k = 0; k < npad; k++) {
        const int64_t slot = k / 8 * 8 + gg_qgemv_lane((int)(k % 8));
        float d = 0.0f, s = 0.0f;
        int32_t sum = 0;
        if (k < n) {
            const void *blk = gg_qgemv_col_block(vdt, y, b0 + k);
            d = gg_fp16_to_fp32(*(const uint16_t *)blk);
            if (vdt == GG_TYPE_Q8_1) {
                s = gg_fp16_to_fp32(((const gg_block_q8_1 *)blk)->s);
            } else {                    /* the offset types' sum(y); Q8_1 carries it in s */
                const int8_t *q = gg_qgemv_col_qs(vdt, blk);
                for (int j = 0; j < 32; j++) sum += q[j];
            }
        }
        c->d[slot] = d;
        c->s[slot] = s;
        c->sum[slot] = sum;
    }
    for (int64_t p = 0; p < npad / 2; p++) {
        const int64_t k0 = 2 * p, k1 = 2 * p + 1;
        const int8_t *q0 = k0 < n ? gg_qgemv_col_qs(vdt, gg_qgemv_col_block(vdt, y, b0 + k0)) : NULL;
        const int8_t *q1 = k1 < n ? gg_qgemv_col_qs(vdt, gg_qgemv_col_block(vdt, y, b0 + k1)) : NULL;
        c->q[p] = q0 ? gg_qgemv_pair8(q0, q1) : _mm512_setzero_si512();
    }
}

/* the 8 blocks' integer sums, in SIGMA order, from the 4 pair products */
GG_INLINE __m256i gg_qgemv_reduce(const __m512i P[4]) {
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(P[0], P[1]), _mm512_unpackhi_epi32(P[0], P[1]));
    const __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2], P[3]), _mm512_unpackhi_epi32(P[2], P[3]));
    const __m512i w = _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));
    return _mm256_add_epi32(_mm512_castsi512_si256(w), _mm512_extracti64x4_epi64(w, 1));
}

/* one group of 8 blocks (or its first n < 8 when partial) of a row into acc */
GG_INLINE __m256 gg_qgemv_group(const int T, const char *xb, const gg_qgemv_col *c, int64_t g, const int n,
                                __m256i gidx, __m256 acc) {
    const size_t ts = gg_qgemv_ts(T);
    __m512i P[4];
    for (int j = 0; j < 4; j++) {
        if (2 * j >= n) {
            P[j] = _mm512_setzero_si512();
            continue;
        }
        const char *x0 = xb + (size_t)(2 * j) * ts, *x1 = 2 * j + 1 < n ? x0 + ts : NULL;
        _mm_prefetch(x0 + GG_QGEMV_PREFETCH, _MM_HINT_T0);
        P[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), gg_qgemv_vals(T, x0, x1), c->q[g * 4 + j]);
    }
    __m256i isum = gg_qgemv_reduce(P);
    const int sh = gg_qgemv_off_shift(T);
    if (sh) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_load_si256((const __m256i *)(c->sum + g * 8)), sh));
    /* the d (and m) halves of the row's blocks: bytes 0..3 of each */
    const __mmask8 mask = n >= 8 ? 0xFF : (__mmask8)(0x0F >> (4 - (n + 1) / 2) | (0x0F >> (4 - n / 2)) << 4);
    const __m256i dm = n >= 8 ? _mm256_i32gather_epi32((const int *)xb, gidx, 1)
                              : _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), mask, gidx, xb, 1);
    const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(dm)), _mm256_load_ps(c->d + g * 8));
    if (n >= 8) {
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum), acc);
        if (gg_qgemv_has_m(T))
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dm, 16))),
                                  _mm256_load_ps(c->s + g * 8), acc);
    } else {
        acc = _mm256_mask3_fmadd_ps(dd, _mm256_cvtepi32_ps(isum), acc, mask);
        if (gg_qgemv_has_m(T))
            acc = _mm256_mask3_fmadd_ps(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dm, 16))),
                                        _mm256_load_ps(c->s + g * 8), acc, mask);
    }
    return acc;
}

/* blocks [0, nb) of one row (its part in this pass) against the prepared column */
GG_INLINE __m256 gg_qgemv_row(const int T, const char *x, int64_t nb, const gg_qgemv_col *c, __m256 acc) {
    const int ts = (int)gg_qgemv_ts(T);
    const __m256i gidx = _mm256_setr_epi32(0, 2 * ts, 4 * ts, 6 * ts, ts, 3 * ts, 5 * ts, 7 * ts);
    int64_t g = 0;
    for (; 8 * g + 8 <= nb; g++) acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 8, gidx, acc);
    switch (nb - 8 * g) {
    case 0: break;
    case 1: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 1, gidx, acc); break;
    case 2: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 2, gidx, acc); break;
    case 3: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 3, gidx, acc); break;
    case 4: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 4, gidx, acc); break;
    case 5: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 5, gidx, acc); break;
    case 6: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 6, gidx, acc); break;
    default: acc = gg_qgemv_group(T, x + (size_t)(8 * g) * ts, c, g, 7, gidx, acc); break;
    }
    return acc;
}

/* vec_dot's final sum ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) of
 * lanes held in SIGMA order t = [l0 l2 l4 l6 l1 l3 l5 l7] */
GG_INLINE float gg_qgemv_lanes_sum(__m256 t) {
    const __m256 a = _mm256_add_ps(t, _mm256_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));  /* [l0+l4, l2+l6, ..| l1+l5, l3+l7] */
    const __m256 b = _mm256_add_ps(a, _mm256_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));  /* lane 0, 4: the halves */
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1)));
}

/* ---- the K types: super-blocks of 256 values against Q8_K ---- */

/* super-blocks of the column prepared per pass: 8 KB of quants, 1 KB of
 * bsums; rows of k up to 8192 take one pass, as with GG_QGEMV_SEG */
#define GG_QGEMV_KSEG 32

typedef struct {
    __m512i q[GG_QGEMV_KSEG * 4];                               /* 4 vectors per super-block, chunk order */
    int16_t bsums[GG_QGEMV_KSEG * 16] __attribute__((aligned(64)));  /* Q8_K's, as they are */
    float   d[GG_QGEMV_KSEG];                                   /* SIGMA order within each 8 */
} gg_qgemv_kcol;

GG_INLINE int gg_qgemv_is_k(const int T) {
    return T == GG_TYPE_Q2_K || T == GG_TYPE_Q3_K || T == GG_TYPE_Q4_K || T == GG_TYPE_Q5_K || T == GG_TYPE_Q6_K;
}

/* the chunk (32 consecutive values, 0..7) in half h of quant vector v: where
 * the bits of a 64-byte load land without moving bytes */
GG_INLINE int gg_qgemv_kchunk(const int T, int v, int h) {
    switch (T) {
    case GG_TYPE_Q2_K: case GG_TYPE_Q3_K: return v + 4 * h;                  /* bits 2v of qs[32h + l] */
    case GG_TYPE_Q4_K: case GG_TYPE_Q5_K: return (v >> 1) * 4 + (v & 1) + 2 * h;  /* nibble v&1 of qs[64(v>>1) + 32h + l] */
    default:                              return 2 * v + h;                  /* Q6_K: nibble of ql[64(v>>1) + 32h + l] */
    }
}

/* the row's scales as gg_qgemv_kscales decodes them: the word holding the
 * scale of 16-value group g, and the one holding its min (Q2_K/Q4_K/Q5_K)
 * or its scale again, for the offset (Q3_K/Q6_K) */
GG_INLINE int gg_qgemv_kslot(const int T, int g) {
    /* Q4_K/Q5_K: sub-block j = g / 2 at word j of [s0..3 m0..3 s4..7 m4..7] */
    return T == GG_TYPE_Q4_K || T == GG_TYPE_Q5_K ? g / 2 % 4 + g / 8 * 8 : g;
}
GG_INLINE int gg_qgemv_kmslot(const int T, int g) {
    switch (T) {
    case GG_TYPE_Q2_K:                    return 16 + g;
    case GG_TYPE_Q4_K: case GG_TYPE_Q5_K: return 4 + g / 2 % 4 + g / 8 * 8;
    default:                              return g;
    }
}
/* signed scales (Q3_K/Q6_K) come with an offset, log2 4 and 32; the others have a min and dmin */
GG_INLINE int gg_qgemv_ksigned(const int T) { return T == GG_TYPE_Q3_K || T == GG_TYPE_Q6_K; }
GG_INLINE int gg_qgemv_koff_shift(const int T) { return T == GG_TYPE_Q3_K ? 2 : T == GG_TYPE_Q6_K ? 5 : 0; }
/* the 4 bytes of a super-block holding d (and dmin after it), or, where d is
 * the last field (Q3_K/Q6_K), the 4 ending with d: nothing past a row is read */
GG_INLINE int gg_qgemv_kdpos(const int T) {
    switch (T) {
    case GG_TYPE_Q2_K: return (int)offsetof(gg_block_q2_K, d);
    case GG_TYPE_Q3_K: return (int)offsetof(gg_block_q3_K, d) - 2;
    case GG_TYPE_Q6_K: return (int)offsetof(gg_block_q6_K, d) - 2;
    default:           return 0;
    }
}

/* the scales (and mins) of one super-block as int16 words, at the words
 * gg_qgemv_kslot / kmslot name (words 16..31 undefined but for Q2_K) */
GG_INLINE __m512i gg_qgemv_kscales(const int T, const char *x) {
    switch (T) {
    case GG_TYPE_Q2_K: {
        const __m128i s = _mm_loadu_si128((const __m128i *)((const gg_block_q2_K *)x)->scales);
        const __m128i m4 = _mm_set1_epi8(0x0F);
        return _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(s, 4), m4), _mm_and_si128(s, m4)));
    }
    case GG_TYPE_Q3_K:
        return _mm512_castsi256_si512(_mm256_cvtepi8_epi16(gg_q3k_unpack_v(((const gg_block_q3_K *)x)->scales)));
    case GG_TYPE_Q4_K:
        return _mm512_castsi256_si512(_mm256_cvtepu8_epi16(gg_k4_unpack_v(((const gg_block_q4_K *)x)->scales)));
    case GG_TYPE_Q5_K:
        return _mm512_castsi256_si512(_mm256_cvtepu8_epi16(gg_k4_unpack_v(((const gg_block_q5_K *)x)->scales)));
    default:
        return _mm512_castsi256_si512(
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const gg_block_q6_K *)x)->scales)));
    }
}

/* the 256 quants of one super-block as unsigned bytes, in 4 vectors whose
 * halves are the chunks gg_qgemv_kchunk names */
GG_INLINE void gg_qgemv_kquants(const int T, const char *x, __m512i u[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    switch (T) {
    case GG_TYPE_Q2_K: case GG_TYPE_Q3_K: {
        const uint8_t *qs = T == GG_TYPE_Q2_K ? ((const gg_block_q2_K *)x)->qs : ((const gg_block_q3_K *)x)->qs;
        const __m512i v = _mm512_loadu_si512(qs);
        for (int j = 0; j < 4; j++) u[j] = _mm512_and_si512(_mm512_srli_epi16(v, 2 * j), _mm512_set1_epi8(3));
        break;
    }
    case GG_TYPE_Q4_K: case GG_TYPE_Q5_K: {
        const uint8_t *qs = T == GG_TYPE_Q4_K ? ((const gg_block_q4_K *)x)->qs : ((const gg_block_q5_K *)x)->qs;
        for (int z = 0; z < 2; z++) {
            const __m512i v = _mm512_loadu_si512(qs + 64 * z);
            u[2 * z] = _mm512_and_si512(v, m4);
            u[2 * z + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        break;
    }
    default: {
        /* Q6_K: the top 2 bits of chunk 4h + 2k + s are bits 2(2k + s) of qh[32h + l]:
         * half s of t = qh >> 2s has them at bits 0..1 (k = 0) and 4..5 (k = 1) */
        const gg_block_q6_K *b = (const gg_block_q6_K *)x;
        const __m512i m30 = _mm512_set1_epi8(0x30);
        const __m512i sh = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
            const __m512i t = _mm512_srlv_epi16(
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h))), sh);
            /* a | (b & c) */
            u[2 * h] = _mm512_ternarylogic_epi32(_mm512_and_si512(l, m4), _mm512_slli_epi16(t, 4), m30, 0xF8);
            u[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), t, m30, 0xF8);
        }
        break;
    }
    }
    /* Q3_K/Q5_K: the high bit of chunk c is bit c of hmask[l] / qh[l] */
    if (T == GG_TYPE_Q3_K || T == GG_TYPE_Q5_K) {
        const uint8_t *hb = T == GG_TYPE_Q3_K ? ((const gg_block_q3_K *)x)->hmask : ((const gg_block_q5_K *)x)->qh;
        const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)hb));
        const __m512i hv = _mm512_set1_epi8(T == GG_TYPE_Q3_K ? 4 : 16);
        for (int v = 0; v < 4; v++) {
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << gg_qgemv_kchunk(T, v, 0))),
                                                   _mm256_set1_epi8((char)(1 << gg_qgemv_kchunk(T, v, 1))), 1);
            u[v] = _mm512_mask_add_epi8(u[v], _mm512_test_epi8_mask(H, bit), u[v], hv);
        }
    }
}

/* vpermw / vpermt2w tables, built once per call: the scale words of the two
 * packed products of a super-block, and the min (or offset) words of a pair */
typedef struct { __m512i s[2], m; } gg_qgemv_kidx;

GG_INLINE void gg_qgemv_kindex(const int T, gg_qgemv_kidx *ix) {
    int16_t s[2][32], m[32];
    /* packs_epi32(P[2p], P[2p + 1]): 128-bit lane k has 4 words of each, and
     * lane k of P[v] is the 16 values of group 2 * chunk(v, k / 2) + k % 2 */
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 4; k++)
            for (int w = 0; w < 8; w++) {
                const int g = 2 * gg_qgemv_kchunk(T, 2 * p + w / 4, k / 2) + k % 2;
                s[p][8 * k + w] = (int16_t)gg_qgemv_kslot(T, g);
            }
    /* word w of a pair: group w % 16 of super-block w / 16 (the second table from word 32) */
    for (int w = 0; w < 32; w++) m[w] = (int16_t)(32 * (w / 16) + gg_qgemv_kmslot(T, w % 16));
    ix->s[0] = _mm512_loadu_si512(s[0]);
    ix->s[1] = _mm512_loadu_si512(s[1]);
    ix->m = _mm512_loadu_si512(m);
}

/* blocks [0, n) of the column (n <= GG_QGEMV_KSEG) -> c, missing super-blocks of the last group zero */
GG_INLINE void gg_qgemv_kprepare(const int T, const gg_block_q8_K *y, int64_t n, gg_qgemv_kcol *c) {
    const int64_t npad = (n + 7) / 8 * 8;
    for (int64_t k = 0; k < npad; k++) {
        const int64_t slot = k / 8 * 8 + gg_qgemv_lane((int)(k % 8));
        if (k >= n) {
            c->d[slot] = 0.0f;
            for (int v = 0; v < 4; v++) c->q[4 * k + v] = _mm512_setzero_si512();
            memset(c->bsums + 16 * k, 0, 16 * sizeof(int16_t));
            continue;
        }
        c->d[slot] = y[k].d;
        for (int v = 0; v < 4; v++) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(y[k].qs + 32 * gg_qgemv_kchunk(T, v, 0)));
            const __m256i b = _mm256_loadu_si256((const __m256i *)(y[k].qs + 32 * gg_qgemv_kchunk(T, v, 1)));
            c->q[4 * k + v] = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
        }
        memcpy(c->bsums + 16 * k, y[k].bsums, 16 * sizeof(int16_t));
    }
}

/* one super-block's sum over its groups of scale * (quants . column), 16 lanes */
GG_INLINE __m512i gg_qgemv_ksb(const int T, const char *x, __m512i r, const __m512i *y, const gg_qgemv_kidx *ix) {
    __m512i u[4], P[4];
    for (size_t o = 0; o < gg_qgemv_ts(T); o += 64) _mm_prefetch(x + GG_QGEMV_PREFETCH + o, _MM_HINT_T0);
    gg_qgemv_kquants(T, x, u);
    for (int v = 0; v < 4; v++) P[v] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[v], y[v]);
    /* a lane holds 4 products (|sum| <= 4 * 63 * 128): packing to int16 is exact */
    const __m512i s0 = _mm512_permutexvar_epi16(ix->s[0], r), s1 = _mm512_permutexvar_epi16(ix->s[1], r);
    return _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_packs_epi32(P[0], P[1]), s0),
                               _mm512_packs_epi32(P[2], P[3]), s1);
}

/* the dword with d (and dmin) of super-block i (0..7) of a group into lane SIGMA^-1(i) */
GG_INLINE __m256i gg_qgemv_kd(const int T, const char *x, const int i, __m256i dm) {
    int32_t w;
    memcpy(&w, x + gg_qgemv_kdpos(T), 4);
    return _mm256_mask_set1_epi32(dm, (__mmask8)(1u << gg_qgemv_lane(i)), w);
}

/* the sums of 8 super-blocks, in SIGMA order, from 4 pair vectors (super-block
 * 2p in 128-bit lanes 0..1 of X[p], 2p + 1 in lanes 2..3) */
GG_INLINE __m256i gg_qgemv_kreduce(const __m512i X[4]) {
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(X[0], X[1]), _mm512_unpackhi_epi32(X[0], X[1]));
    const __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi32(X[2], X[3]), _mm512_unpackhi_epi32(X[2], X[3]));
    const __m512i w = _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));
    const __m512i t = _mm512_add_epi32(w, _mm512_shuffle_i64x2(w, w, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castsi512_si256(_mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(2, 0, 2, 0)));
}

/* one group of 8 super-blocks (or its first n < 8) of a row into acc:
 *     acc = fma(d * yd, isum, acc);  acc = fnmadd(dmin * yd, msum, acc)   (Q2_K/Q4_K/Q5_K) */
GG_INLINE __m256 gg_qgemv_kgroup(const int T, const char *xb, const gg_qgemv_kcol *c, int64_t g, const int n,
                                 const gg_qgemv_kidx *ix, __m256 acc) {
    const size_t ts = gg_qgemv_ts(T);
    __m512i X[4], M[4];
    __m256i dm = _mm256_setzero_si256();     /* d (and dmin) of super-block i in lane SIGMA^-1(i) */
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        if (2 * p >= n) {
            X[p] = M[p] = _mm512_setzero_si512();
            continue;
        }
        const int64_t s = 8 * g + 2 * p;
        const char *xa = xb + (size_t)(2 * p) * ts;
        const __m512i ra = gg_qgemv_kscales(T, xa);
        const __m512i ia = gg_qgemv_ksb(T, xa, ra, c->q + 4 * s, ix);
        dm = gg_qgemv_kd(T, xa, 2 * p, dm);
        __m512i rb = _mm512_setzero_si512();
        __m512i ib = _mm512_setzero_si512();
        if (2 * p + 1 < n) {
            rb = gg_qgemv_kscales(T, xa + ts);
            ib = gg_qgemv_ksb(T, xa + ts, rb, c->q + 4 * (s + 1), ix);
            dm = gg_qgemv_kd(T, xa + ts, 2 * p + 1, dm);
        }
        /* [ia lanes 0..7 + 8..15, ib lanes 8..15 + 0..7] */
        X[p] = _mm512_add_epi32(_mm512_mask_blend_epi64(0xF0, ia, ib),
                                _mm512_shuffle_i64x2(ia, ib, _MM_SHUFFLE(1, 0, 3, 2)));
        /* sum over groups of min * bsum (Q3_K/Q6_K: offset * scale * bsum, taken off X) */
        const __m512i mw = _mm512_slli_epi16(_mm512_permutex2var_epi16(ra, ix->m, rb), gg_qgemv_koff_shift(T));
        M[p] = _mm512_madd_epi16(mw, _mm512_load_si512(c->bsums + 16 * s));
        if (gg_qgemv_ksigned(T)) X[p] = _mm512_sub_epi32(X[p], M[p]);
    }
    const __m256i isum = gg_qgemv_kreduce(X);
    const __m256 yd = _mm256_load_ps(c->d + g * 8);
    const __m256i d16 = gg_qgemv_ksigned(T) ? _mm256_srli_epi32(dm, 16) : dm;
    acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(d16)), yd), _mm256_cvtepi32_ps(isum), acc);
    if (!gg_qgemv_ksigned(T)) {
        const __m256 dmin = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dm, 16)));
        acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, yd), _mm256_cvtepi32_ps(gg_qgemv_kreduce(M)), acc);
    }
    return acc;
}

/* super-blocks [0, nb) of one row (its part in this pass) against the prepared column */
GG_INLINE __m256 gg_qgemv_krow(const int T, const char *x, int64_t nb, const gg_qgemv_kcol *c,
                               const gg_qgemv_kidx *ix, __m256 acc) {
    const size_t ts = gg_qgemv_ts(T);
    int64_t g = 0;
    for (; 8 * g + 8 <= nb; g++) acc = gg_qgemv_kgroup(T, x + (size_t)(8 * g) * ts, c, g, 8, ix, acc);
    const char *xg = x + (size_t)(8 * g) * ts;
    switch (nb - 8 * g) {
    case 0: break;
    case 1: acc = gg_qgemv_kgroup(T, xg, c, g, 1, ix, acc); break;
    case 2: acc = gg_qgemv_kgroup(T, xg, c, g, 2, ix, acc); break;
    case 3: acc = gg_qgemv_kgroup(T, xg, c, g, 3, ix, acc); break;
    case 4: acc = gg_qgemv_kgroup(T, xg, c, g, 4, ix, acc); break;
    case 5: acc = gg_qgemv_kgroup(T, xg, c, g, 5, ix, acc); break;
    case 6: acc = gg_qgemv_kgroup(T, xg, c, g, 6, ix, acc); break;
    default: acc = gg_qgemv_kgroup(T, xg, c, g, 7, ix, acc); break;
    }
    return acc;
}

/* ---- the driver: passes over the column, rows in blocks ---- */

typedef union {
    gg_qgemv_col  b;    /* 32-value block types */
    gg_qgemv_kcol k;    /* K types */
} gg_qgemv_cols;

/* blocks [b0, b0 + n) of the column, one pass */
GG_INLINE void gg_qgemv_pass_prepare(const int T, int vdt, const void *y, int64_t b0, int64_t n, gg_qgemv_cols *c) {
    if (gg_qgemv_is_k(T)) gg_qgemv_kprepare(T, (const gg_block_q8_K *)y + b0, n, &c->k);
    else gg_qgemv_prepare(vdt, y, b0, n, &c->b);
}

GG_INLINE __m256 gg_qgemv_pass_row(const int T, const char *x, int64_t nb, const gg_qgemv_cols *c,
                                   const gg_qgemv_kidx *ix, __m256 acc) {
    return gg_qgemv_is_k(T) ? gg_qgemv_krow(T, x, nb, &c->k, ix, acc) : gg_qgemv_row(T, x, nb, &c->b, acc);
}

/* rows per block when k takes several passes: their accumulators wait on the stack */
#define GG_QGEMV_ROWS 64

GG_INLINE void gg_qgemv_type(const int T, int vdt, int64_t k, const char *a, size_t lda, int64_t nrows,
                             const void *y, float *out) {
    const int kt = gg_qgemv_is_k(T);
    const int64_t nb = k / (kt ? GG_QK_K : 32), seg = kt ? GG_QGEMV_KSEG : GG_QGEMV_SEG;
    const size_t ts = gg_qgemv_ts(T);
    gg_qgemv_cols col;
    gg_qgemv_kidx ix;
    if (kt) gg_qgemv_kindex(T, &ix);
    if (nb <= seg) {
        gg_qgemv_pass_prepare(T, vdt, y, 0, nb, &col);
        for (int64_t r = 0; r < nrows; r++)
            out[r] = gg_qgemv_lanes_sum(gg_qgemv_pass_row(T, a + (size_t)r * lda, nb, &col, &ix, _mm256_setzero_ps()));
        return;
    }
    __m256 acc[GG_QGEMV_ROWS];
    for (int64_t r0 = 0; r0 < nrows; r0 += GG_QGEMV_ROWS) {
        const int64_t nr = GG_MIN(GG_QGEMV_ROWS, nrows - r0);
        for (int64_t r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += seg) {
            const int64_t n = GG_MIN(seg, nb - b0);
            gg_qgemv_pass_prepare(T, vdt, y, b0, n, &col);
            for (int64_t r = 0; r < nr; r++)
                acc[r] = gg_qgemv_pass_row(T, a + (size_t)(r0 + r) * lda + (size_t)b0 * ts, n, &col, &ix, acc[r]);
        }
        for (int64_t r = 0; r < nr; r++) out[r0 + r] = gg_qgemv_lanes_sum(acc[r]);
    }
}

void gg_qgemv(int type, int64_t k, const char *a, size_t lda, int64_t nrows, const void *y, float *out) {
    switch (type) {
    case GG_TYPE_Q4_0: gg_qgemv_type(GG_TYPE_Q4_0, GG_TYPE_Q8_0, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q4_1: gg_qgemv_type(GG_TYPE_Q4_1, GG_TYPE_Q8_1, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q5_0: gg_qgemv_type(GG_TYPE_Q5_0, GG_TYPE_Q8_0, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q5_1: gg_qgemv_type(GG_TYPE_Q5_1, GG_TYPE_Q8_1, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q8_0: gg_qgemv_type(GG_TYPE_Q8_0, GG_TYPE_Q8_0, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q2_K: gg_qgemv_type(GG_TYPE_Q2_K, GG_TYPE_Q8_K, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q3_K: gg_qgemv_type(GG_TYPE_Q3_K, GG_TYPE_Q8_K, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q4_K: gg_qgemv_type(GG_TYPE_Q4_K, GG_TYPE_Q8_K, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q5_K: gg_qgemv_type(GG_TYPE_Q5_K, GG_TYPE_Q8_K, k, a, lda, nrows, y, out); break;
    case GG_TYPE_Q6_K: gg_qgemv_type(GG_TYPE_Q6_K, GG_TYPE_Q8_K, k, a, lda, nrows, y, out); break;
    default: break;
    }
}

#else

void gg_qgemv(int type, int64_t k, const char *a, size_t lda, int64_t nrows, const void *y, float *out) {
    GG_UNUSED(type); GG_UNUSED(k); GG_UNUSED(a); GG_UNUSED(lda); GG_UNUSED(nrows); GG_UNUSED(y); GG_UNUSED(out);
}

#endif
