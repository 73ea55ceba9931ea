/*
 * quants.h: block (quantized) types. Not read by cffi.
 *
 * Each block type is one row of a traits table: its block layout (the same
 * bytes as GGUF/ggml, so tensors from a memory-mapped file are used in place),
 * row conversions to and from f32, and the dot product of one of its rows
 * with a row of its vec_dot_type (the type mul_mat converts the activations
 * to once per node: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for
 * the K types).
 *
 * Every function takes `simd`: nonzero may use AVX2/FMA/F16C (when built in),
 * zero must run the plain scalar reference. n is always a multiple of the
 * block size; x/y are packed rows of blocks.
 */
#ifndef GGRAPH_QUANTS_H
#define GGRAPH_QUANTS_H

#include "ggraph_impl.h"

#define GG_QK4_0 32
#define GG_QK4_1 32
#define GG_QK5_0 32
#define GG_QK5_1 32
#define GG_QK8_0 32
#define GG_QK8_1 32
#define GG_QK_K 256
#define GG_K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[GG_QK4_0 / 2]; } gg_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[GG_QK4_1 / 2]; } gg_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[GG_QK5_0 / 2]; } gg_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[GG_QK5_1 / 2]; } gg_block_q5_1;
typedef struct { uint16_t d; int8_t qs[GG_QK8_0]; } gg_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[GG_QK8_1]; } gg_block_q8_1;      /* s = d * sum(qs) */

typedef struct { uint8_t scales[GG_QK_K / 16]; uint8_t qs[GG_QK_K / 4]; uint16_t d, dmin; } gg_block_q2_K;
typedef struct { uint8_t hmask[GG_QK_K / 8]; uint8_t qs[GG_QK_K / 4]; uint8_t scales[12]; uint16_t d; } gg_block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[GG_K_SCALE_SIZE]; uint8_t qs[GG_QK_K / 2]; } gg_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[GG_K_SCALE_SIZE]; uint8_t qh[GG_QK_K / 8]; uint8_t qs[GG_QK_K / 2]; } gg_block_q5_K;
typedef struct { uint8_t ql[GG_QK_K / 2]; uint8_t qh[GG_QK_K / 4]; int8_t scales[GG_QK_K / 16]; uint16_t d; } gg_block_q6_K;
typedef struct { float d; int8_t qs[GG_QK_K]; int16_t bsums[GG_QK_K / 16]; } gg_block_q8_K;

_Static_assert(sizeof(gg_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(gg_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(gg_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(gg_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(gg_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(gg_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(gg_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(gg_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(gg_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(gg_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(gg_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(gg_block_q8_K) == 292, "q8_K block");

typedef void  (*gg_to_float_fn)(int simd, const void *x, float *y, int64_t n);
typedef void  (*gg_from_float_fn)(int simd, const float *x, void *y, int64_t n);
typedef float (*gg_vec_dot_fn)(int simd, int64_t n, const void *x, const void *y);
/* a row of n values as unsigned 8-bit quants with one scale and one offset per
 * sub-block of gemm_sub values: x[i] = s[i / sub] * u[i] + m[i / sub], the
 * values to_float gives. u[i] goes to u[(i / 4) * ustride + i % 4] and the
 * scale of sub-block j to s[j * sstride] (m likewise), so a caller can write
 * rows straight into an interleaved tile (qgemm.c). */
typedef void  (*gg_unpack_fn)(const void *x, uint8_t *u, size_t ustride, float *s, float *m, size_t sstride,
                              int64_t n);

typedef struct {
    int              type;
    int64_t          blck_size;
    size_t           type_size;
    gg_to_float_fn   to_float;      /* dequantize a row */
    gg_from_float_fn from_float;    /* quantize a row: ggml's reference rounding on both paths */
    int              vec_dot_type;  /* -1 for activation-only types (Q8_1, Q8_K) */
    gg_vec_dot_fn    vec_dot;       /* sum_i x[i] * y[i], x of this type, y of vec_dot_type */
    int              gemm_sub;      /* sub-block of unpack: 16 or 32 (0: no unpack) */
    gg_unpack_fn     unpack;        /* for the matrix-matrix kernels; NULL for activation types */
} gg_quant_traits;

#if GG_AVX2
/* unpack (see gg_unpack_fn) puts quants i0 .. i0 + 31 (i0 a multiple of 4) */
static inline void gg_put_u32(uint8_t *u, size_t ustride, int64_t i0, __m256i v) {
    uint32_t w[8];
    _mm256_storeu_si256((__m256i *)w, v);
    uint8_t *dst = u + (size_t)(i0 >> 2) * ustride;
    for (int q = 0; q < 8; q++) memcpy(dst + (size_t)q * ustride, &w[q], sizeof(w[q]));
}
/* the unpack functions are written with AVX2 only: their one user, the
 * matrix-matrix path (qgemm.c), needs AVX-512 */
#define GG_UNPACK(fn) fn

/* the packed scales of the K types in registers (quants_k.c's vec_dot,
 * qgemv.c), from two broadcast loads of their 12 bytes w0 w1 w2: no shuffles */
static inline __m128i gg_k_w01(const uint8_t *p) {          /* [w0 w1 w0 w1] */
    int64_t v;
    memcpy(&v, p, 8);
    return _mm_set1_epi64x(v);
}
static inline __m128i gg_k_w2(const uint8_t *p) {           /* [w2 w2 w2 w2] */
    int32_t v;
    memcpy(&v, p + 8, 4);
    return _mm_set1_epi32(v);
}

/* Q4_K/Q5_K (gg_k4_unpack) -> dwords [scales 0..3, mins 0..3, scales 4..7, mins 4..7] */
static inline __m128i gg_k4_unpack_v(const uint8_t *p) {
    const __m128i w01 = gg_k_w01(p);
    const __m128i lo = _mm_and_si128(w01, _mm_setr_epi32(0x3f3f3f3f, 0x3f3f3f3f, 0, 0));
    /* 4..7: the low (scales) and high (mins) nibbles of w2, the top 2 bits of w0 / w1 above them */
    const __m128i h2 = _mm_srlv_epi32(gg_k_w2(p), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i hi = _mm_or_si128(_mm_and_si128(h2, _mm_setr_epi32(0, 0, 0x0f0f0f0f, 0x0f0f0f0f)),
                                    _mm_and_si128(_mm_srli_epi32(w01, 2), _mm_setr_epi32(0, 0, 0x30303030, 0x30303030)));
    return _mm_or_si128(lo, hi);
}

/* Q3_K (gg_q3k_unpack), minus the +32 bias: 16 int8 scales */
static inline __m128i gg_q3k_unpack_v(const uint8_t *p) {
    /* low 4 bits: nibble 0, 0, 1, 1 of w0, w1, w0, w1; top 2: bits 2k..2k+1 of each byte of w2 */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(gg_k_w01(p), _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_slli_epi32(_mm_srlv_epi32(gg_k_w2(p), _mm_setr_epi32(0, 2, 4, 6)), 4);
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_and_si128(hi, _mm_set1_epi8(0x30))), _mm_set1_epi8(32));
}
#else
#define GG_UNPACK(fn) NULL
#endif

/* the traits of a block type, or NULL for plain or unknown types */
const gg_quant_traits *gg_quant_traits_of(int type);

/* each family file defines its rows; a row with type < 0 ends the list */
extern const gg_quant_traits gg_quant_traits_plain[];   /* quants_plain.c: Q4_0 .. Q8_1 */
extern const gg_quant_traits gg_quant_traits_k[];       /* quants_k.c: Q2_K .. Q8_K */

#endif
