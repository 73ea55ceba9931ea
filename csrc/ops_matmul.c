/*
 * ops_matmul.c: mul_mat and out_prod.
 *
 * mul_mat: dst[m, n] = sum_k a[k, m] * b[k, n] per plane, a broadcast over
 * dims 2 and 3. Both operands are read along k (dim 0), so every output is
 * a dot product of a row of a and a column of b.
 *
 * Per src0 type, one row of gg_mm_traits says how: the type b is converted
 * to (vec_dot_type) and its from_f32 conversion, a scalar dot product, and
 * register-blocked SIMD micro-kernels computing an RM x RN tile of dot
 * products (RM rows of a against RN columns of b: RM + RN loads feed RM * RN
 * FMAs per 8 values of k). Block (quantized) types take their row from
 * quants.h's traits (gg_quant_traits_of): b is converted to their
 * vec_dot_type (Q8_0, Q8_1 or Q8_K) with its from_float, and the type's
 * vec_dot computes each output over whole rows; they have no tile kernels.
 *
 * A node runs in two phases:
 *   1. if b is not already packed rows of vec_dot_type, every thread converts
 *      a share of it into the work buffer (columns, or a slice of k of every
 *      column when there are fewer columns than threads); barrier.
 *   2. the output is cut into chunks (a block of rows of a x a block of
 *      columns of b, within one plane); threads take chunks from a shared
 *      atomic counter (in the first cache line of the work buffer) until none
 *      are left. Inside a chunk k is cut into blocks so the b tile stays in L1
 *      and the a block in L2 while the tile loops run.
 */
#include <stdatomic.h>

#include "ggraph_impl.h"
#include "quants.h"
#include "qgemm.h"
#include "qgemv.h"
#include "vec.h"
#include "ops_matmul.h"

#define GG_MM_CACHE_LINE 64

/* matrix-vector products stream a from memory at a few FLOPs per byte; on one
 * core the hardware prefetcher alone does not overlap the loads with the
 * FMAs. Prefetching each row this many bytes ahead took F16 decode from ~28
 * to ~37 GB/s and N = 2..4 from ~22-30 to ~36-39 GB/s on Zen 5 (F32 N = 1
 * stays ~38-40). */
#define GG_MM_PREFETCH 2048

/* tile shape of the SIMD micro-kernels: RM rows of a x RN columns of b.
 * RM * RN accumulators + RN b vectors + 1 a vector must fit the vector
 * registers: 4x3 (16) with AVX2's 16, 4x6 (31) when AVX-512VL gives 32. */
#define GG_MM_RM 4
#if defined(__AVX512VL__)
#define GG_MM_RN 6
#else
#define GG_MM_RN 3
#endif

/* rows of a per tile of the dot-product path (block types; plain types on
 * the scalar path): with K = 4096, 16 rows of Q8_0 are 70 KB, 16 of Q4_0 37 KB,
 * small enough to stay in L2 while the chunk's columns pass over them */
#define GG_MM_DOT_ROWS 16

/* one tile of dot products over k in [k0, k1):
 * c[j * ldc + i] (+)= sum_k a_row_i[k] * b_col_j[k], i < rm, j < rn */
typedef struct {
    int64_t     k0, k1;
    const char *a;              /* row i at a + i * lda; elements of the src0 type */
    size_t      lda;
    const char *b;              /* column j at b + j * ldb; elements of vec_dot_type */
    size_t      ldb;
    float      *c;
    int64_t     ldc;            /* in floats */
    int         add;            /* accumulate into c (later k blocks) instead of storing */
    int         prefetch;       /* a streams from memory: prefetch its rows ahead */
} gg_mm_tile_args;

typedef void  (*gg_mm_tile_fn)(const gg_mm_tile_args *t);
/* the same signatures as quants.h's vec_dot and from_float, so a block type's
 * traits row plugs in directly; plain types ignore simd */
typedef gg_vec_dot_fn    gg_mm_dot_fn;
typedef gg_from_float_fn gg_mm_from_f32_fn;

typedef struct {
    int               type;              /* src0 type */
    int               vec_dot_type;      /* b is converted to this */
    size_t            vd_type_size;      /* bytes per block of vec_dot_type */
    int64_t           vd_blck_size;      /* elements per block of vec_dot_type */
    int64_t           k_align;           /* k blocks are multiples of this */
    gg_mm_from_f32_fn from_f32;          /* f32 -> vec_dot_type, n a multiple of vd_blck_size */
    gg_mm_dot_fn      dot;               /* scalar reference dot product */
#if GG_AVX2
    gg_mm_tile_fn     tile[GG_MM_RM][GG_MM_RN];   /* [rm - 1][rn - 1]; NULL: scalar dots */
#endif
} gg_mm_traits;

/* ---- conversions of b ---- */

static void gg_mm_from_f32_f32(int simd, const float *x, void *y, int64_t n) {
    GG_UNUSED(simd);
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void gg_mm_from_f32_f16(int simd, const float *x, void *y, int64_t n) {
    GG_UNUSED(simd);
    gg_vec_f32_to_f16(x, (uint16_t *)y, n);
}

static void gg_mm_from_f32_bf16(int simd, const float *x, void *y, int64_t n) {
    GG_UNUSED(simd);
    uint16_t *out = (uint16_t *)y;
    for (int64_t i = 0; i < n; i++) out[i] = gg_fp32_to_bf16(x[i]);
}

/* ---- scalar dot products (the reference paths), f32 accumulation ---- */

static float gg_mm_dot_f32(int simd, int64_t n, const void *x, const void *y) {
    GG_UNUSED(simd);
    const float *a = (const float *)x, *b = (const float *)y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float gg_mm_dot_f16(int simd, int64_t n, const void *x, const void *y) {
    GG_UNUSED(simd);
    const uint16_t *a = (const uint16_t *)x, *b = (const uint16_t *)y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += gg_fp16_to_fp32(a[i]) * gg_fp16_to_fp32(b[i]);
    return sum;
}

static float gg_mm_dot_bf16(int simd, int64_t n, const void *x, const void *y) {
    GG_UNUSED(simd);
    const uint16_t *a = (const uint16_t *)x, *b = (const uint16_t *)y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += gg_bf16_to_fp32(a[i]) * gg_bf16_to_fp32(b[i]);
    return sum;
}

/* ---- SIMD micro-kernels ---- */
#if GG_AVX2

#define GG_INLINE static inline __attribute__((always_inline))

GG_INLINE size_t gg_mm_elem_size(int type) { return type == GG_TYPE_F32 ? 4 : 2; }

/* 8 consecutive values of a row of `type` as f32 */
GG_INLINE __m256 gg_mm_load8(int type, const char *p) {
    if (type == GG_TYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (type == GG_TYPE_BF16) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    return _mm256_loadu_ps((const float *)p);
}

/* the four horizontal sums of v0..v3, in order, in one vector */
GG_INLINE __m128 gg_mm_hsum4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    const __m256 t0 = _mm256_hadd_ps(v0, v1);
    const __m256 t1 = _mm256_hadd_ps(v2, v3);
    const __m256 t2 = _mm256_hadd_ps(t0, t1);
    return _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
}

/* the RM x RN tile; RM, RN and the types are constants in every instance,
 * so the loops unroll and the accumulators live in registers */
GG_INLINE void gg_mm_tile_avx(const int ta, const int tb, const int RM, const int RN,
                              const gg_mm_tile_args *t) {
    const size_t sa = gg_mm_elem_size(ta), sb = gg_mm_elem_size(tb);
    const char *a = t->a, *b = t->b;
    const size_t lda = t->lda, ldb = t->ldb;
    __m256 acc[GG_MM_RM][GG_MM_RN];
#pragma GCC unroll 8
    for (int i = 0; i < RM; i++) {
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    }
    int64_t k = t->k0;
    for (; k + 8 <= t->k1; k += 8) {
        __m256 vb[GG_MM_RN];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            vb[j] = gg_mm_load8(tb, b + j * ldb + (size_t)k * sb);
            /* keep each b vector in a register: without this GCC folds the
             * load into every FMA that uses it (RM loads instead of one) */
            __asm__("" : "+x"(vb[j]));
        }
#pragma GCC unroll 8
        for (int i = 0; i < RM; i++) {
            if (t->prefetch) _mm_prefetch(a + i * lda + (size_t)k * sa + GG_MM_PREFETCH, _MM_HINT_T0);
            const __m256 va = gg_mm_load8(ta, a + i * lda + (size_t)k * sa);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) acc[i][j] = _mm256_fmadd_ps(va, vb[j], acc[i][j]);
        }
    }
    const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) {
        __m128 s = gg_mm_hsum4(acc[0][j], RM > 1 ? acc[1][j] : z, RM > 2 ? acc[2][j] : z, RM > 3 ? acc[3][j] : z);
        float *c = t->c + j * t->ldc;
        if (k < t->k1) {                       /* the last k % 8 values */
            float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const char *bj = b + j * ldb;
            for (int i = 0; i < RM; i++) {
                const char *ai = a + i * lda;
                for (int64_t kk = k; kk < t->k1; kk++) {
                    tail[i] += gg_get_f32(ai, ta, kk) * gg_get_f32(bj, tb, kk);
                }
            }
            s = _mm_add_ps(s, _mm_loadu_ps(tail));
        }
        if (RM == 4) {
            if (t->add) s = _mm_add_ps(s, _mm_loadu_ps(c));
            _mm_storeu_ps(c, s);
        } else {
            float out[4];
            _mm_storeu_ps(out, s);
            for (int i = 0; i < RM; i++) c[i] = t->add ? c[i] + out[i] : out[i];
        }
    }
}

#define GG_MM_TILE_DEF(tn, ta, tb, rm, rn) \
    static void gg_mm_tile_##tn##_##rm##x##rn(const gg_mm_tile_args *t) { gg_mm_tile_avx(ta, tb, rm, rn, t); }

#define GG_MM_TILE_ROW_DEFS(tn, ta, tb, rm) \
    GG_MM_TILE_DEF(tn, ta, tb, rm, 1) GG_MM_TILE_DEF(tn, ta, tb, rm, 2) GG_MM_TILE_DEF(tn, ta, tb, rm, 3) \
    GG_MM_TILE_DEF(tn, ta, tb, rm, 4) GG_MM_TILE_DEF(tn, ta, tb, rm, 5) GG_MM_TILE_DEF(tn, ta, tb, rm, 6)

#define GG_MM_TILE_DEFS(tn, ta, tb)          \
    GG_MM_TILE_ROW_DEFS(tn, ta, tb, 1) GG_MM_TILE_ROW_DEFS(tn, ta, tb, 2) \
    GG_MM_TILE_ROW_DEFS(tn, ta, tb, 3) GG_MM_TILE_ROW_DEFS(tn, ta, tb, 4)

#if GG_MM_RN == 6
#define GG_MM_TILE_ROW(tn, rm) { gg_mm_tile_##tn##_##rm##x1, gg_mm_tile_##tn##_##rm##x2, gg_mm_tile_##tn##_##rm##x3, \
                                 gg_mm_tile_##tn##_##rm##x4, gg_mm_tile_##tn##_##rm##x5, gg_mm_tile_##tn##_##rm##x6 }
#else
#define GG_MM_TILE_ROW(tn, rm) { gg_mm_tile_##tn##_##rm##x1, gg_mm_tile_##tn##_##rm##x2, gg_mm_tile_##tn##_##rm##x3 }
#endif
#define GG_MM_TILES(tn) { GG_MM_TILE_ROW(tn, 1), GG_MM_TILE_ROW(tn, 2), GG_MM_TILE_ROW(tn, 3), GG_MM_TILE_ROW(tn, 4) }

/* unused instances (rn > GG_MM_RN) are dropped by the compiler */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
GG_MM_TILE_DEFS(f32, GG_TYPE_F32, GG_TYPE_F32)
GG_MM_TILE_DEFS(f16, GG_TYPE_F16, GG_TYPE_F16)
GG_MM_TILE_DEFS(bf16, GG_TYPE_BF16, GG_TYPE_BF16)
#pragma GCC diagnostic pop

#endif /* GG_AVX2 */

/* ---- the type table ---- */

static const gg_mm_traits gg_mm_type_traits[] = {
    { GG_TYPE_F32, GG_TYPE_F32, 4, 1, 8, gg_mm_from_f32_f32, gg_mm_dot_f32,
#if GG_AVX2
      GG_MM_TILES(f32),
#endif
    },
    { GG_TYPE_F16, GG_TYPE_F16, 2, 1, 8, gg_mm_from_f32_f16, gg_mm_dot_f16,
#if GG_AVX2
      GG_MM_TILES(f16),
#endif
    },
    { GG_TYPE_BF16, GG_TYPE_BF16, 2, 1, 8, gg_mm_from_f32_bf16, gg_mm_dot_bf16,
#if GG_AVX2
      GG_MM_TILES(bf16),
#endif
    },
};

/* the row of a plain src0 type, or one filled in *tmp from the block type's
 * quants.h traits (its vec_dot and its vec_dot_type's from_float): block types
 * have no tile kernels, their vec_dot is the unit (see gg_mm_chunk). NULL when
 * the type, its vec_dot or its vec_dot_type's from_float is not built in. */
static const gg_mm_traits *gg_mm_traits_of(int type, gg_mm_traits *tmp) {
    for (size_t i = 0; i < sizeof(gg_mm_type_traits) / sizeof(gg_mm_type_traits[0]); i++) {
        if (gg_mm_type_traits[i].type == type) return &gg_mm_type_traits[i];
    }
    const gg_quant_traits *q = gg_quant_traits_of(type);
    if (q == NULL || q->vec_dot == NULL || q->vec_dot_type < 0) return NULL;
    const gg_quant_traits *qv = gg_quant_traits_of(q->vec_dot_type);
    if (qv == NULL || qv->from_float == NULL || qv->blck_size != q->blck_size) return NULL;
    memset(tmp, 0, sizeof(*tmp));           /* no tile kernels */
    tmp->type = type;
    tmp->vec_dot_type = q->vec_dot_type;
    tmp->vd_type_size = qv->type_size;
    tmp->vd_blck_size = qv->blck_size;
    tmp->k_align = q->blck_size;
    tmp->from_f32 = qv->from_float;
    tmp->dot = q->vec_dot;
    return tmp;
}

/* bytes per element of a plain type, per block of a block type; 0 if unknown */
static size_t gg_mm_unit_size(int type) {
    switch (type) {
    case GG_TYPE_F32: return 4;
    case GG_TYPE_F16: case GG_TYPE_BF16: return 2;
    default: {
        const gg_quant_traits *q = gg_quant_traits_of(type);
        return q ? q->type_size : 0;
    }
    }
}

static size_t gg_type_size_plain(int type) {
    switch (type) {
    case GG_TYPE_F32: return 4;
    case GG_TYPE_F16: case GG_TYPE_BF16: return 2;
    default: return 0;
    }
}

/* ---- phase 1: b -> vec_dot_type ---- */

/* converts elements [k0, k1) of one column of b (F32 or F16, element stride nb10) */
static void gg_mm_convert_col(const gg_mm_traits *tt, int simd, const char *src, int src_type, size_t nb10,
                              char *dst, int64_t k0, int64_t k1) {
    const int64_t blk = tt->vd_blck_size;
    if (src_type == GG_TYPE_F32 && nb10 == sizeof(float)) {
        tt->from_f32(simd, (const float *)src + k0, dst + k0 / blk * tt->vd_type_size, k1 - k0);
        return;
    }
    float tmp[512];                              /* a multiple of every block size */
    for (int64_t k = k0; k < k1; k += 512) {
        const int64_t n = GG_MIN(512, k1 - k);
        if (src_type == GG_TYPE_F16 && nb10 == 2) {
            gg_vec_f16_to_f32((const uint16_t *)src + k, tmp, n);
        } else {
            for (int64_t i = 0; i < n; i++) tmp[i] = gg_get_f32(src + (k + i) * nb10, src_type, 0);
        }
        tt->from_f32(simd, tmp, dst + k / blk * tt->vd_type_size, n);
    }
}

static void gg_mm_convert_b(const gg_params *p, const gg_mm_traits *tt, const gg_tensor *src1,
                            char *wb, size_t row_size) {
    const int64_t ne10 = src1->ne[0], ne11 = src1->ne[1], ne12 = src1->ne[2], ne13 = src1->ne[3];
    const int64_t ncols = ne11 * ne12 * ne13;
    int64_t c0 = 0, c1 = ncols, k0 = 0, k1 = ne10;
    if (ncols >= p->nth) {
        gg_row_range(p, ncols, &c0, &c1);        /* whole columns per thread */
    } else {                                     /* a slice of k of every column */
        const int64_t nblk = ne10 / tt->vd_blck_size;
        k0 = nblk * p->ith / p->nth * tt->vd_blck_size;
        k1 = nblk * (p->ith + 1) / p->nth * tt->vd_blck_size;
    }
    if (k0 >= k1) return;
    for (int64_t c = c0; c < c1; c++) {
        const int64_t i11 = c % ne11, i12 = (c / ne11) % ne12, i13 = c / (ne11 * ne12);
        const char *src = (const char *)src1->data + i11 * src1->nb[1] + i12 * src1->nb[2] + i13 * src1->nb[3];
        gg_mm_convert_col(tt, p->use_simd && GG_AVX2, src, src1->type, src1->nb[0], wb + c * row_size, k0, k1);
    }
}

/* ---- phase 2: chunks of the output ---- */

typedef struct {
    const gg_mm_traits *tt;
    const char *a;           /* plane 0 of src0 */
    size_t nb01, nb02, nb03;
    const char *b;           /* plane 0 of b as the kernel reads it (src1 or the work buffer) */
    size_t ldb, bp2, bp3;    /* column stride, plane strides of b */
    float *c;
    size_t nb1, nb2, nb3;
    int64_t K, M, N, ne12, r2, r3;
    int64_t rb, cb, kc;      /* chunk rows, chunk columns, k block */
    int64_t nrb, ncb;        /* row blocks, column blocks per plane */
    int simd, prefetch;
} gg_mm_plan;

static void gg_mm_chunk(const gg_mm_plan *pl, int64_t chunk) {
    const int64_t ib = chunk % pl->nrb;
    const int64_t jb = (chunk / pl->nrb) % pl->ncb;
    const int64_t plane = chunk / (pl->nrb * pl->ncb);
    const int64_t i12 = plane % pl->ne12, i13 = plane / pl->ne12;
    const int64_t m0 = ib * pl->rb, m1 = GG_MIN(m0 + pl->rb, pl->M);
    const int64_t n0 = jb * pl->cb, n1 = GG_MIN(n0 + pl->cb, pl->N);
    const char *a = pl->a + (i12 / pl->r2) * pl->nb02 + (i13 / pl->r3) * pl->nb03;
    const char *b = pl->b + i12 * pl->bp2 + i13 * pl->bp3;
    char *c = (char *)pl->c + i12 * pl->nb2 + i13 * pl->nb3;
    const gg_mm_traits *tt = pl->tt;

#if GG_AVX2
    if (pl->simd && tt->tile[0][0] != NULL) {
        gg_mm_tile_args t;
        t.lda = pl->nb01;
        t.ldb = pl->ldb;
        t.ldc = (int64_t)(pl->nb1 / sizeof(float));
        t.prefetch = pl->prefetch;
        for (int64_t k0 = 0; k0 < pl->K; k0 += pl->kc) {
            t.k0 = k0;
            t.k1 = GG_MIN(k0 + pl->kc, pl->K);
            t.add = k0 > 0;
            for (int64_t n = n0; n < n1; n += GG_MM_RN) {
                const int rn = (int)GG_MIN(GG_MM_RN, n1 - n);
                t.b = b + n * pl->ldb;
                for (int64_t m = m0; m < m1; m += GG_MM_RM) {
                    const int rm = (int)GG_MIN(GG_MM_RM, m1 - m);
                    t.a = a + m * pl->nb01;
                    t.c = (float *)(c + n * pl->nb1) + m;
                    tt->tile[rm - 1][rn - 1](&t);
                }
            }
        }
        return;
    }
#endif
    /* one dot product per output (block types always, plain types on the
     * scalar path), in tiles of GG_MM_DOT_ROWS rows of a: the tile's rows stay
     * in cache while every column of the chunk passes over them, so a is read
     * from memory once per chunk, not once per column */
    for (int64_t mt = m0; mt < m1; mt += GG_MM_DOT_ROWS) {
        const int64_t mt1 = GG_MIN(mt + GG_MM_DOT_ROWS, m1);
        for (int64_t n = n0; n < n1; n++) {
            const char *bc = b + n * pl->ldb;
            float *dc = (float *)(c + n * pl->nb1);
            for (int64_t m = mt; m < mt1; m++) {
                dc[m] = tt->dot(pl->simd, pl->K, a + m * pl->nb01, bc);
            }
        }
    }
}

/* many columns of a block type: unpacked weight tiles times 8-bit columns
 * (qgemm.c). Phase 1 quantizes b's columns to vec_dot_type, as the dot
 * path does, and transcodes them into the work buffer. Phase 2
 * hands out chunks of up to GG_QGEMM_GROUP row tiles x a block of columns of
 * one plane: the chunk's tiles are unpacked once and stay in L2 while each
 * group of 8 columns (in L1) passes over all of them, so a column is read
 * from memory once per group of tiles, not once per tile; k is cut into
 * passes of GG_QGEMM_KC so the tiles' slice and the columns fit L1. */
static void gg_mm_qgemm(const gg_params *p, const gg_mm_traits *tt, const gg_tensor *src0, const gg_tensor *src1,
                        gg_tensor *dst) {
    GG_TENSOR_BINARY_LOCALS
    const gg_quant_traits *q = gg_quant_traits_of(src0->type);
    const int64_t K = ne00, ncols = ne11 * ne12 * ne13;
    const size_t col_bytes = gg_qgemm_col_bytes(K), tile_bytes = gg_qgemm_tile_bytes(K, q->gemm_sub);
    atomic_llong *next_chunk = (atomic_llong *)p->wdata;
    char *cols = (char *)p->wdata + GG_MM_CACHE_LINE;
    char *tiles = cols + (size_t)ncols * col_bytes + (size_t)p->ith * GG_QGEMM_GROUP * tile_bytes;

    int64_t c0, c1;
    gg_row_range(p, ncols, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        const int64_t i11 = c % ne11, i12 = (c / ne11) % ne12, i13 = c / (ne11 * ne12);
        const char *src = (const char *)src1->data + i11 * nb11 + i12 * nb12 + i13 * nb13;
        /* the tiles are not in use yet: 16 * K bytes hold K floats and a row of blocks */
        float *tmp = (float *)tiles;
        char *blocks = tiles + K * sizeof(float);
        const float *x = (const float *)src;
        if (src1->type != GG_TYPE_F32 || nb10 != sizeof(float)) {
            for (int64_t k = 0; k < K; k++) tmp[k] = gg_get_f32(src + k * nb10, src1->type, 0);
            x = tmp;
        }
        tt->from_f32(1, x, blocks, K);
        gg_qgemm_from_blocks(tt->vec_dot_type, blocks, K, cols + c * col_bytes);
    }
    if (p->ith == 0) atomic_store_explicit(next_chunk, p->nth, memory_order_relaxed);
    gg_barrier(p);

    /* as many tiles per chunk as keep 4 chunks per thread; split the columns
     * when even single tiles are too few */
    const int64_t nplanes = ne12 * ne13, ntiles = (ne01 + GG_QGEMM_ROWS - 1) / GG_QGEMM_ROWS;
    const int64_t want = 4 * p->nth;
    const int64_t group = GG_MAX(1, GG_MIN(GG_QGEMM_GROUP, ntiles * nplanes / want));
    const int64_t ngroups = (ntiles + group - 1) / group;
    int64_t ncb = 1;
    while (ngroups * nplanes * ncb < want && ne11 / (ncb * 2) >= 32) ncb *= 2;
    const int64_t cb = (ne11 + ncb - 1) / ncb;
    const int64_t nchunks = ngroups * ncb * nplanes, r2 = ne12 / ne02, r3 = ne13 / ne03;
    const int64_t ldc = (int64_t)(nb1 / sizeof(float));
    for (int64_t chunk = p->ith; chunk < nchunks;
         chunk = atomic_fetch_add_explicit(next_chunk, 1, memory_order_relaxed)) {
        const int64_t ig = chunk % ngroups, jb = (chunk / ngroups) % ncb, plane = chunk / (ngroups * ncb);
        const int64_t i12 = plane % ne12, i13 = plane / ne12;
        const int64_t m0 = ig * group * GG_QGEMM_ROWS, m1 = GG_MIN(ne01, m0 + group * GG_QGEMM_ROWS);
        const int64_t n0 = jb * cb, n1 = GG_MIN(ne11, n0 + cb);
        const char *a = (const char *)src0->data + (i12 / r2) * nb02 + (i13 / r3) * nb03;
        for (int64_t m = m0; m < m1; m += GG_QGEMM_ROWS) {
            gg_qgemm_unpack_tile(q, a + m * nb01, nb01, GG_MIN(GG_QGEMM_ROWS, m1 - m), K,
                                 tiles + (m - m0) / GG_QGEMM_ROWS * tile_bytes);
        }
        const char *b = cols + (size_t)(plane * ne11) * col_bytes;
        float *c = (float *)((char *)dst->data + i12 * nb2 + i13 * nb3);
        for (int64_t k0 = 0; k0 < K; k0 += GG_QGEMM_KC) {
            const int64_t k1 = GG_MIN(K, k0 + GG_QGEMM_KC);
            for (int64_t n = n0; n < n1; n += 8) {
                const int64_t nc = GG_MIN(8, n1 - n);
                for (int64_t m = m0; m < m1; m += GG_QGEMM_ROWS) {
                    gg_qgemm_tile_cols(tiles + (m - m0) / GG_QGEMM_ROWS * tile_bytes, q->gemm_sub,
                                       GG_MIN(GG_QGEMM_ROWS, m1 - m), K, k0, k1, b + n * col_bytes, col_bytes,
                                       nc, c + n * ldc + m, ldc);
                }
            }
        }
    }
}

void gg_fwd_mul_mat(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0], *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS
    gg_mm_traits qtt;
    const gg_mm_traits *tt = gg_mm_traits_of(src0->type, &qtt);
    /* every thread takes the same early exit, so none waits at the barrier alone */
    if (tt == NULL || (src1->type != GG_TYPE_F32 && src1->type != GG_TYPE_F16) || dst->type != GG_TYPE_F32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    if (nb00 != gg_mm_unit_size(src0->type) || nb0 != sizeof(float) || ne00 != ne10 || ne0 != ne01 ||
        ne1 != ne11 || ne2 != ne12 || ne3 != ne13 || ne12 % ne02 != 0 || ne13 % ne03 != 0 ||
        ne10 % tt->vd_blck_size != 0) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    /* every thread decides alike (the work size is the node's), so the barriers match */
    if (gg_qgemm_usable(src0->type, ne11, p->use_simd) && ne10 % 32 == 0 && nb1 % sizeof(float) == 0 &&
        p->wdata != NULL &&
        p->wsize >= GG_MM_CACHE_LINE + gg_qgemm_work_bytes(src0->type, ne10, ne11 * ne12 * ne13, p->nth)) {
        gg_mm_qgemm(p, tt, src0, src1, dst);
        return;
    }
    const size_t row_size = (size_t)(ne10 / tt->vd_blck_size) * tt->vd_type_size;
    const int convert = src1->type != tt->vec_dot_type || nb10 != gg_type_size_plain(src1->type);
    const size_t need = GG_MM_CACHE_LINE + (convert ? (size_t)(ne11 * ne12 * ne13) * row_size : 0);
    if (p->wdata == NULL || p->wsize < need) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    atomic_llong *next_chunk = (atomic_llong *)p->wdata;
    char *wb = (char *)p->wdata + GG_MM_CACHE_LINE;

    gg_mm_plan pl;
    pl.tt = tt;
    pl.a = (const char *)src0->data;
    pl.nb01 = nb01; pl.nb02 = nb02; pl.nb03 = nb03;
    if (convert) {
        gg_mm_convert_b(p, tt, src1, wb, row_size);
        pl.b = wb;
        pl.ldb = row_size;
        pl.bp2 = row_size * (size_t)ne11;
        pl.bp3 = pl.bp2 * (size_t)ne12;
    } else {
        pl.b = (const char *)src1->data;
        pl.ldb = nb11;
        pl.bp2 = nb12;
        pl.bp3 = nb13;
    }
    pl.c = (float *)dst->data;
    pl.nb1 = nb1; pl.nb2 = nb2; pl.nb3 = nb3;
    pl.K = ne00; pl.M = ne01; pl.N = ne11; pl.ne12 = ne12;
    pl.r2 = ne12 / ne02; pl.r3 = ne13 / ne03;
    pl.simd = p->use_simd && GG_AVX2;

    /* chunk shape: matrix-vector streams a in row blocks; matrix-matrix takes
     * blocks of columns too, and cuts k so a tile's b columns stay in L1 */
    const int64_t nplanes = ne12 * ne13;
    if (pl.N <= GG_MM_RN) {
        pl.rb = 32;
        pl.cb = pl.N;
        pl.kc = pl.K;
        pl.prefetch = 1;
    } else {
        /* measured on Zen 5 (1 MB L2): flat between 64..128 rows, 48..96
         * columns and k blocks of 512..all; small k blocks cost reductions */
        pl.rb = 128;
        pl.kc = 512;
        /* columns in blocks of at most 16 tiles, split evenly (128 -> 66 + 62, not 96 + 32) */
        const int64_t ncb = (pl.N + 16 * GG_MM_RN - 1) / (16 * GG_MM_RN);
        pl.cb = ((pl.N + ncb - 1) / ncb + GG_MM_RN - 1) / GG_MM_RN * GG_MM_RN;
        pl.prefetch = 0;
    }
    /* enough chunks to balance the threads */
    while (pl.rb > GG_MM_RM && ((pl.M + pl.rb - 1) / pl.rb) * ((pl.N + pl.cb - 1) / pl.cb) * nplanes < 4 * p->nth) {
        pl.rb /= 2;
    }
    pl.kc -= pl.kc % tt->k_align;
    if (pl.kc <= 0) pl.kc = pl.K;
    pl.nrb = (pl.M + pl.rb - 1) / pl.rb;
    pl.ncb = (pl.N + pl.cb - 1) / pl.cb;
    const int64_t nchunks = pl.nrb * pl.ncb * nplanes;

    if (pl.N <= GG_MM_RN && nplanes == 1) {
        /* matrix-vector: each thread streams one contiguous run of rows. Handing
         * out interleaved chunks made two threads slower than one once the
         * weights came from memory (the prefetchers lose the stream). */
        if (convert) gg_barrier(p);              /* b is converted by all threads */
        if (pl.N == 1 && gg_qgemv_usable(src0->type, pl.simd)) {
            const int64_t r0 = pl.M * p->ith / p->nth, r1 = pl.M * (p->ith + 1) / p->nth;
            gg_qgemv(src0->type, pl.K, pl.a + r0 * nb01, nb01, r1 - r0, pl.b, pl.c + r0);
            return;
        }
        const int64_t c0 = nchunks * p->ith / p->nth, c1 = nchunks * (p->ith + 1) / p->nth;
        for (int64_t chunk = c0; chunk < c1; chunk++) gg_mm_chunk(&pl, chunk);
        return;
    }

    /* every thread starts on chunk ith; the counter hands out the rest (the
     * barrier also waits for the conversion of b) */
    if (p->ith == 0) atomic_store_explicit(next_chunk, p->nth, memory_order_relaxed);
    gg_barrier(p);

    for (int64_t chunk = p->ith; chunk < nchunks;
         chunk = atomic_fetch_add_explicit(next_chunk, 1, memory_order_relaxed)) {
        gg_mm_chunk(&pl, chunk);
    }
}

/* ---- out_prod ---- */

/*
 * dst[i0, i1] = sum_k a[i0, k] * b[i1, k] per plane: row i1 of dst is the
 * sum of the rows of a weighted by b[i1, k] (ggml's vec_mad form). Threads
 * take contiguous ranges of dst rows; the SIMD path keeps a 16 x 4 block of
 * dst in registers while it walks k (the rows of a), so dst is written once.
 */
#if GG_AVX2
/* dst rows j < NR, columns [0, 16 * (ne0 / 16)): 2 x NR accumulators over all k;
 * returns the first column left for the scalar loop */
GG_INLINE int64_t gg_out_prod_strips(const int ta, const int NR, const char *a, size_t nb01,
                                     const char *b, size_t nb10, size_t nb11,
                                     char *d, size_t nb1, int64_t K, int64_t ne0) {
    const size_t sa = gg_mm_elem_size(ta);
    int64_t i0 = 0;
    for (; i0 + 16 <= ne0; i0 += 16) {
        __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) acc0[j] = acc1[j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            const char *ak = a + k * nb01 + (size_t)i0 * sa;
            const __m256 va0 = gg_mm_load8(ta, ak);
            const __m256 va1 = gg_mm_load8(ta, ak + 8 * sa);
            const char *bk = b + k * nb11;
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) {
                const __m256 vb = _mm256_broadcast_ss((const float *)(bk + j * nb10));
                acc0[j] = _mm256_fmadd_ps(va0, vb, acc0[j]);
                acc1[j] = _mm256_fmadd_ps(va1, vb, acc1[j]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            float *dj = (float *)(d + j * nb1) + i0;
            _mm256_storeu_ps(dj, acc0[j]);
            _mm256_storeu_ps(dj + 8, acc1[j]);
        }
    }
    return i0;
}
#endif

void gg_fwd_out_prod(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0], *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS
    if ((src0->type != GG_TYPE_F32 && src0->type != GG_TYPE_F16) || src1->type != GG_TYPE_F32 ||
        dst->type != GG_TYPE_F32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    if (nb00 != gg_type_size_plain(src0->type) || nb0 != sizeof(float) || ne0 != ne00 || ne1 != ne10 ||
        ne01 != ne11 || ne2 != ne12 || ne3 != ne13 || ne2 % ne02 != 0 || ne3 % ne03 != 0) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const int ta = src0->type;
    const int64_t K = ne01, r2 = ne2 / ne02, r3 = ne3 / ne03;
    int64_t ir0, ir1;
    gg_row_range(p, ne1 * ne2 * ne3, &ir0, &ir1);

    for (int64_t ir = ir0; ir < ir1;) {
        const int64_t i1 = ir % ne1, i2 = (ir / ne1) % ne2, i3 = ir / (ne1 * ne2);
        const int64_t nr = GG_MIN(GG_MIN(4, ne1 - i1), ir1 - ir);   /* dst rows in this group, same plane */
        const char *a = (const char *)src0->data + (i2 / r2) * nb02 + (i3 / r3) * nb03;
        const char *b = (const char *)src1->data + i1 * nb10 + i2 * nb12 + i3 * nb13;
        char *d = (char *)dst->data + i1 * nb1 + i2 * nb2 + i3 * nb3;
        int64_t i0 = 0;
#if GG_AVX2
        if (p->use_simd) {
            switch (nr) {
            case 4:  i0 = gg_out_prod_strips(ta, 4, a, nb01, b, nb10, nb11, d, nb1, K, ne0); break;
            case 3:  i0 = gg_out_prod_strips(ta, 3, a, nb01, b, nb10, nb11, d, nb1, K, ne0); break;
            case 2:  i0 = gg_out_prod_strips(ta, 2, a, nb01, b, nb10, nb11, d, nb1, K, ne0); break;
            default: i0 = gg_out_prod_strips(ta, 1, a, nb01, b, nb10, nb11, d, nb1, K, ne0); break;
            }
        }
#endif
        /* scalar: the rest of the row (all of it without SIMD), k outermost */
        if (i0 < ne0) {
            for (int j = 0; j < nr; j++) {
                float *dj = (float *)(d + j * nb1);
                for (int64_t i = i0; i < ne0; i++) dj[i] = 0.0f;
            }
            for (int64_t k = 0; k < K; k++) {
                const char *ak = a + k * nb01;
                for (int j = 0; j < nr; j++) {
                    const float bv = *(const float *)(b + j * nb10 + k * nb11);
                    float *dj = (float *)(d + j * nb1);
                    for (int64_t i = i0; i < ne0; i++) dj[i] += gg_get_f32(ak, ta, i) * bv;
                }
            }
        }
        ir += nr;
    }
}
