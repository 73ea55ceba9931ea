/*
 * qgemm.c: block-type weights times many columns (see qgemm.h).
 *
 * Activation column layout (k values, k a multiple of 32), transcoded from
 * the column quantized to the weights' vec_dot_type:
 *   int8  q[k]          the quants
 *   float d[k / 32]     the scale of each 32 (Q8_K: of its 256, repeated)
 *   float ds16[k / 16]  d * sum(q) over each 16 values
 *   float ds32[k / 32]  d * sum(q) over each 32 values (Q8_1: its stored s)
 * The sums carry the weights' offsets: x . y over a sub-block is
 * d_y * (s * (u . q) + m * sum(q)) for weights x = s * u + m.
 *
 * Weight tile layout (GG_QGEMM_ROWS = 16 rows, k values each):
 *   uint8 u[k / 4][16][4]   4 consecutive quants of every row: one zmm
 *   float s[k / sub][16]    the rows' scale of each sub-block
 *   float m[k / sub][16]    and offset
 * so one vpdpbusd multiplies 4 k of 16 rows by a broadcast 4 k of a column.
 */
#include <stdatomic.h>

#include "qgemm.h"

#define GG_QGEMM_ALIGN 64

static int64_t gg_round_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

size_t gg_qgemm_col_bytes(int64_t k) {
    return (size_t)gg_round_up(k + 4 * (k / 32 + k / 16 + k / 32), GG_QGEMM_ALIGN);
}

size_t gg_qgemm_tile_bytes(int64_t k, int sub) {
    return (size_t)gg_round_up((int64_t)GG_QGEMM_ROWS * k + 2 * 4 * GG_QGEMM_ROWS * (k / sub), GG_QGEMM_ALIGN);
}

static _Atomic int gg_qgemm_on = 1;

int gg_qgemm_enable(int on) {
    return atomic_exchange(&gg_qgemm_on, on != 0);
}

int gg_qgemm_built(void) { return GG_QGEMM; }

static int gg_qgemm_has(int type) {
    const gg_quant_traits *q = gg_quant_traits_of(type);
    return GG_QGEMM && q != NULL && q->unpack != NULL && (q->gemm_sub == 16 || q->gemm_sub == 32);
}

static int64_t gg_qgemm_min_n(int type) {
    return gg_quant_traits_of(type)->gemm_sub == 16 ? GG_QGEMM_MIN_N_SUB16 : GG_QGEMM_MIN_N;
}

int gg_qgemm_usable(int type, int64_t n, int simd) {
    return simd && atomic_load(&gg_qgemm_on) && gg_qgemm_has(type) && n >= gg_qgemm_min_n(type);
}

/* independent of the switch above: a graph planned with the path off still has room for it */
size_t gg_qgemm_work_bytes(int type, int64_t k, int64_t ncols, int nth) {
    if (!gg_qgemm_has(type) || ncols < gg_qgemm_min_n(type) || k % 32 != 0) return 0;
    const gg_quant_traits *q = gg_quant_traits_of(type);
    return (size_t)ncols * gg_qgemm_col_bytes(k) + (size_t)nth * GG_QGEMM_GROUP * gg_qgemm_tile_bytes(k, q->gemm_sub) +
           GG_QGEMM_ALIGN;
}

/* the quants and scales of one column already quantized to the weights'
 * vec_dot_type (Q8_0, Q8_1 or Q8_K, by that type's own from_float), so this
 * path multiplies exactly the values the dot-product path does and a token's
 * result does not depend on the size of its batch beyond summation order */
void gg_qgemm_from_blocks(int vec_dot_type, const void *blocks, int64_t k, char *col) {
    int8_t *q = (int8_t *)col;
    float *d = (float *)(col + k), *ds16 = d + k / 32, *ds32 = ds16 + k / 16;
    for (int64_t b = 0; b < k / 32; b++) {
        const int8_t *qb;
        float db, s1 = NAN;
        if (vec_dot_type == GG_TYPE_Q8_K) {
            const gg_block_q8_K *y = (const gg_block_q8_K *)blocks + b / 8;
            qb = y->qs + 32 * (b % 8);
            db = y->d;
        } else if (vec_dot_type == GG_TYPE_Q8_1) {
            const gg_block_q8_1 *y = (const gg_block_q8_1 *)blocks + b;
            qb = y->qs;
            db = gg_fp16_to_fp32(y->d);
            s1 = gg_fp16_to_fp32(y->s);          /* d * sum(q) as Q8_1 stores it */
        } else {
            const gg_block_q8_0 *y = (const gg_block_q8_0 *)blocks + b;
            qb = y->qs;
            db = gg_fp16_to_fp32(y->d);
        }
        int32_t sum[2] = { 0, 0 };
        for (int j = 0; j < 32; j++) sum[j / 16] += qb[j];
        memcpy(q + 32 * b, qb, 32);
        d[b] = db;
        ds16[2 * b] = db * (float)sum[0];
        ds16[2 * b + 1] = db * (float)sum[1];
        ds32[b] = isnan(s1) ? db * (float)(sum[0] + sum[1]) : s1;
    }
}

void gg_qgemm_unpack_tile(const gg_quant_traits *q, const char *a, size_t lda, int64_t nrows, int64_t k,
                          char *tile) {
    uint8_t *u = (uint8_t *)tile;
    float *s = (float *)(tile + GG_QGEMM_ROWS * k), *m = s + GG_QGEMM_ROWS * (k / q->gemm_sub);
    if (nrows < GG_QGEMM_ROWS) memset(tile, 0, gg_qgemm_tile_bytes(k, q->gemm_sub));
    for (int64_t r = 0; r < nrows; r++) {
        q->unpack(a + (size_t)r * lda, u + 4 * r, 4 * GG_QGEMM_ROWS, s + r, m + r, GG_QGEMM_ROWS, k);
    }
}

#if GG_QGEMM

#define GG_QINLINE static inline __attribute__((always_inline))

/* 16 rows x RN columns over k in [k0, k1), added to c unless k0 == 0; SUB
 * and RN are constants in every instance */
GG_QINLINE void gg_qgemm_block(const int SUB, const int RN, const char *tile, int64_t nrows, int64_t k,
                               int64_t k0, int64_t k1, const char *b, size_t ldb, float *c, int64_t ldc) {
    const uint8_t *u = (const uint8_t *)tile;
    const float *s = (const float *)(tile + GG_QGEMM_ROWS * k), *m = s + GG_QGEMM_ROWS * (k / SUB);
    const int8_t *yq[8];
    const float *yd[8], *yds[8];
    __m512 acc[8];
    const __mmask16 rows = (__mmask16)((1u << nrows) - 1u);
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) {
        yq[j] = (const int8_t *)(b + j * ldb);
        yd[j] = (const float *)(b + j * ldb + k);
        yds[j] = SUB == 16 ? yd[j] + k / 32 : yd[j] + k / 32 + k / 16;
        acc[j] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, c + j * ldc);
    }
    for (int64_t sb = k0 / SUB; sb < k1 / SUB; sb++) {
        __m512i is[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) is[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int g = 0; g < SUB / 4; g++) {
            const __m512i w = _mm512_loadu_si512((const void *)(u + (sb * (SUB / 4) + g) * 64));
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) {
                int32_t y4;
                memcpy(&y4, yq[j] + sb * SUB + 4 * g, sizeof(y4));
                is[j] = _mm512_dpbusd_epi32(is[j], w, _mm512_set1_epi32(y4));
            }
        }
        const __m512 sv = _mm512_loadu_ps(s + GG_QGEMM_ROWS * sb), mv = _mm512_loadu_ps(m + GG_QGEMM_ROWS * sb);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            const __m512 dsv = _mm512_mul_ps(sv, _mm512_set1_ps(yd[j][sb * SUB / 32]));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]), dsv, acc[j]);
            acc[j] = _mm512_fmadd_ps(mv, _mm512_set1_ps(yds[j][sb]), acc[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) _mm512_mask_storeu_ps(c + j * ldc, rows, acc[j]);
}

#define GG_QGEMM_DEF(sub, rn) \
    static void gg_qgemm_##sub##_##rn(const char *t, int64_t nr, int64_t k, int64_t k0, int64_t k1, \
                                      const char *b, size_t ldb, float *c, int64_t ldc) {             \
        gg_qgemm_block(sub, rn, t, nr, k, k0, k1, b, ldb, c, ldc);                                    \
    }
#define GG_QGEMM_DEFS(sub) GG_QGEMM_DEF(sub, 1) GG_QGEMM_DEF(sub, 2) GG_QGEMM_DEF(sub, 3) GG_QGEMM_DEF(sub, 4) \
                           GG_QGEMM_DEF(sub, 5) GG_QGEMM_DEF(sub, 6) GG_QGEMM_DEF(sub, 7) GG_QGEMM_DEF(sub, 8)
GG_QGEMM_DEFS(16)
GG_QGEMM_DEFS(32)

typedef void (*gg_qgemm_fn)(const char *, int64_t, int64_t, int64_t, int64_t, const char *, size_t, float *, int64_t);
static const gg_qgemm_fn gg_qgemm_fns[2][8] = {
    { gg_qgemm_16_1, gg_qgemm_16_2, gg_qgemm_16_3, gg_qgemm_16_4,
      gg_qgemm_16_5, gg_qgemm_16_6, gg_qgemm_16_7, gg_qgemm_16_8 },
    { gg_qgemm_32_1, gg_qgemm_32_2, gg_qgemm_32_3, gg_qgemm_32_4,
      gg_qgemm_32_5, gg_qgemm_32_6, gg_qgemm_32_7, gg_qgemm_32_8 },
};

void gg_qgemm_tile_cols(const char *tile, int sub, int64_t nrows, int64_t k, int64_t k0, int64_t k1,
                        const char *b, size_t ldb, int64_t ncols, float *c, int64_t ldc) {
    const gg_qgemm_fn *fns = gg_qgemm_fns[sub == 32];
    for (int64_t j = 0; j < ncols; j += 8) {
        const int rn = (int)GG_MIN(8, ncols - j);
        fns[rn - 1](tile, nrows, k, k0, k1, b + j * ldb, ldb, c + j * ldc, ldc);
    }
}

#else

void gg_qgemm_tile_cols(const char *tile, int sub, int64_t nrows, int64_t k, int64_t k0, int64_t k1,
                        const char *b, size_t ldb, int64_t ncols, float *c, int64_t ldc) {
    /* never called: gg_qgemm_usable() is false without GG_QGEMM */
    GG_UNUSED(tile); GG_UNUSED(sub); GG_UNUSED(nrows); GG_UNUSED(k); GG_UNUSED(k0); GG_UNUSED(k1);
    GG_UNUSED(b); GG_UNUSED(ldb);
    GG_UNUSED(ncols); GG_UNUSED(c); GG_UNUSED(ldc);
}

#endif
