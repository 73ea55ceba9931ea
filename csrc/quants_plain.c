/*
 * quants_plain.c: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * and the activation type Q8_1. Layouts in quants.h.
 *
 * Rounding. from_float is ggml's reference quantizer (quantize_row_*_ref):
 * the bytes equal gguf.quants.quantize's for the file types, and the AVX2
 * quantizers of Q8_0/Q8_1 give the same bytes as the scalar ones (unlike
 * ggml's AVX2 quantizer, which uses 127/amax and ties-to-even). to_float
 * computes d*q (+ m) with one rounding per operation on both paths, equal to
 * gguf.quants.dequantize.
 *
 * vec_dot. Per block the integer dot of the quants is exact (int32); the
 * float part is the same on both paths, so AVX2 and scalar agree bit for bit:
 * block b's term goes into lane b % 8 with one fused multiply-add,
 *     lane = fma(dx*dy, isum, lane)            (dx*dy of two halves is exact)
 *     lane = fma(mx, sy, lane)                 (Q4_1/Q5_1: the min times Q8_1's s)
 * and the 8 lanes are summed as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
 * The AVX2 path reduces 8 blocks' integer partials to one vector (hadd tree)
 * and does one vector fma per 8 blocks.
 * Precondition of Q8_0 x Q8_0 only (as in ggml): the activation row holds
 * quants in [-127, 127], which from_float guarantees for finite input; -128
 * there gives a wrong (not a crashing) result on the AVX2 path. Q4_0/Q5_0
 * compute u.y - off.y on the unsigned quants u and take any int8 y.
 */

/* no silent a*b+c contraction: the rounding must be the reference's; fused
   multiply-adds are written out (fmaf, _mm256_fmadd_ps) where wanted */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>

#include "quants.h"

/* ---- shared scalar pieces ---- */

static inline float gg_lanes_sum(const float l[8]) {
    const float s0 = l[0] + l[4], s1 = l[1] + l[5], s2 = l[2] + l[6], s3 = l[3] + l[7];
    return (s0 + s2) + (s1 + s3);
}

static inline uint32_t gg_load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* element j (0..31) of a 4-bit block: low nibbles hold 0..15, high nibbles 16..31 */
static inline int gg_nib(const uint8_t *qs, int j) {
    return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

/* element j of a 5-bit block: the nibble plus bit j of qh as bit 4 */
static inline int gg_q5(const uint8_t *qs, uint32_t qh, int j) {
    return gg_nib(qs, j) | (int)(((qh >> j) & 1u) << 4);
}

/* ---- scalar to_float ---- */

static void gg_dequantize_row_q4_0_scalar(const gg_block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)(gg_nib(x[b].qs, j) - 8) * d;
    }
}

static void gg_dequantize_row_q4_1_scalar(const gg_block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d), m = gg_fp16_to_fp32(x[b].m);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)gg_nib(x[b].qs, j) * d + m;
    }
}

static void gg_dequantize_row_q5_0_scalar(const gg_block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        const uint32_t qh = gg_load_u32(x[b].qh);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)(gg_q5(x[b].qs, qh, j) - 16) * d;
    }
}

static void gg_dequantize_row_q5_1_scalar(const gg_block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d), m = gg_fp16_to_fp32(x[b].m);
        const uint32_t qh = gg_load_u32(x[b].qh);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)gg_q5(x[b].qs, qh, j) * d + m;
    }
}

static void gg_dequantize_row_q8_0_scalar(const gg_block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)x[b].qs[j] * d;
    }
}

static void gg_dequantize_row_q8_1_scalar(const gg_block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)x[b].qs[j] * d;
    }
}

/* ---- scalar from_float: ggml's reference quantizers ---- */

/* the value of largest magnitude (the first one if tied), with its sign */
static inline float gg_signed_absmax(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    return max;
}

static inline void gg_minmax(const float *x, float *min, float *max) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo;
    *max = hi;
}

/* Q4_0: d = max / -8 (max: the signed value of largest magnitude), q = trunc(x/d + 8.5) capped at 15 */
static void gg_quantize_row_q4_0(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q4_0 *y = (gg_block_q4_0 *)vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        const float d = gg_signed_absmax(xb) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = gg_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            const int8_t q0 = (int8_t)(xb[j] * id + 8.5f), q1 = (int8_t)(xb[j + 16] * id + 8.5f);
            y[b].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = trunc((x - min)/d + 0.5) capped at 15 */
static void gg_quantize_row_q4_1(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q4_1 *y = (gg_block_q4_1 *)vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float min, max;
        gg_minmax(xb, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = gg_fp32_to_fp16(d);
        y[b].m = gg_fp32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            const int8_t q0 = (int8_t)((xb[j] - min) * id + 0.5f), q1 = (int8_t)((xb[j + 16] - min) * id + 0.5f);
            y[b].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

/* Q5_0: d = max / -16, q = trunc(x/d + 16.5) capped at 31; bit 4 of q_j is bit j of qh */
static void gg_quantize_row_q5_0(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q5_0 *y = (gg_block_q5_0 *)vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        const float d = gg_signed_absmax(xb) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = gg_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int8_t q0 = (int8_t)(xb[j] * id + 16.5f), q1 = (int8_t)(xb[j + 16] * id + 16.5f);
            const uint32_t u0 = (uint8_t)(q0 < 31 ? q0 : 31), u1 = (uint8_t)(q1 < 31 ? q1 : 31);
            y[b].qs[j] = (uint8_t)((u0 & 0x0F) | ((u1 & 0x0F) << 4));
            qh |= ((u0 >> 4) & 1u) << j;
            qh |= ((u1 >> 4) & 1u) << (j + 16);
        }
        memcpy(y[b].qh, &qh, sizeof(qh));
    }
}

/* Q5_1: d = (max - min) / 31, m = min, q = trunc((x - min)/d + 0.5) */
static void gg_quantize_row_q5_1(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q5_1 *y = (gg_block_q5_1 *)vy;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float min, max;
        gg_minmax(xb, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = gg_fp32_to_fp16(d);
        y[b].m = gg_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const uint32_t u0 = (uint8_t)((xb[j] - min) * id + 0.5f);
            const uint32_t u1 = (uint8_t)((xb[j + 16] - min) * id + 0.5f);
            y[b].qs[j] = (uint8_t)((u0 & 0x0F) | ((u1 & 0x0F) << 4));
            qh |= ((u0 >> 4) & 1u) << j;
            qh |= ((u1 >> 4) & 1u) << (j + 16);
        }
        memcpy(y[b].qh, &qh, sizeof(qh));
    }
}

/* Q8_0 / Q8_1: d = max|x| / 127, q = roundf(x * (1/d)) (half away from zero);
   Q8_1's s = d * sum(q) with the unrounded float d, rounded once to half */
static inline float gg_quantize_block_q8_scalar(const float *xb, int8_t *qs, int *qsum) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        qs[j] = (int8_t)roundf(xb[j] * id);
        sum += qs[j];
    }
    *qsum = sum;
    return d;
}

#if GG_AVX2
/* roundf on 8 lanes: truncate, then step away from zero when |fraction| >= 0.5
   (v - trunc(v) is exact, so this is roundf bit for bit) */
static inline __m256 gg_roundf_ps(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step));
}

/* the same bytes as gg_quantize_block_q8_scalar */
static inline float gg_quantize_block_q8_avx2(const float *xb, int8_t *qs, int *qsum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
    __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m256i i0 = _mm256_cvttps_epi32(gg_roundf_ps(_mm256_mul_ps(v0, id)));
    const __m256i i1 = _mm256_cvttps_epi32(gg_roundf_ps(_mm256_mul_ps(v1, id)));
    const __m256i i2 = _mm256_cvttps_epi32(gg_roundf_ps(_mm256_mul_ps(v2, id)));
    const __m256i i3 = _mm256_cvttps_epi32(gg_roundf_ps(_mm256_mul_ps(v3, id)));
    /* sum of the quants */
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
    *qsum = _mm_cvtsi128_si32(s4);
    /* int32 -> int8; the packs interleave 128-bit halves, the permute restores order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
}
#endif

static void gg_quantize_row_q8_0(int simd, const float *x, void *vy, int64_t n) {
    gg_block_q8_0 *y = (gg_block_q8_0 *)vy;
    int qsum;
    for (int64_t b = 0; b < n / 32; b++) {
#if GG_AVX2
        const float d = simd ? gg_quantize_block_q8_avx2(x + b * 32, y[b].qs, &qsum)
                             : gg_quantize_block_q8_scalar(x + b * 32, y[b].qs, &qsum);
#else
        GG_UNUSED(simd);
        const float d = gg_quantize_block_q8_scalar(x + b * 32, y[b].qs, &qsum);
#endif
        y[b].d = gg_fp32_to_fp16(d);
    }
}

static void gg_quantize_row_q8_1(int simd, const float *x, void *vy, int64_t n) {
    gg_block_q8_1 *y = (gg_block_q8_1 *)vy;
    int qsum;
    for (int64_t b = 0; b < n / 32; b++) {
#if GG_AVX2
        const float d = simd ? gg_quantize_block_q8_avx2(x + b * 32, y[b].qs, &qsum)
                             : gg_quantize_block_q8_scalar(x + b * 32, y[b].qs, &qsum);
#else
        GG_UNUSED(simd);
        const float d = gg_quantize_block_q8_scalar(x + b * 32, y[b].qs, &qsum);
#endif
        y[b].d = gg_fp32_to_fp16(d);
        y[b].s = gg_fp32_to_fp16((float)qsum * d);
    }
}

/* ---- scalar vec_dot: exact integer dot per block, then the lane scheme above ---- */

static inline int32_t gg_isum_q4_0(const gg_block_q4_0 *x, const gg_block_q8_0 *y) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += (gg_nib(x->qs, j) - 8) * y->qs[j];
    return s;
}

static inline int32_t gg_isum_q4_1(const gg_block_q4_1 *x, const gg_block_q8_1 *y) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += gg_nib(x->qs, j) * y->qs[j];
    return s;
}

static inline int32_t gg_isum_q5_0(const gg_block_q5_0 *x, const gg_block_q8_0 *y) {
    const uint32_t qh = gg_load_u32(x->qh);
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += (gg_q5(x->qs, qh, j) - 16) * y->qs[j];
    return s;
}

static inline int32_t gg_isum_q5_1(const gg_block_q5_1 *x, const gg_block_q8_1 *y) {
    const uint32_t qh = gg_load_u32(x->qh);
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += gg_q5(x->qs, qh, j) * y->qs[j];
    return s;
}

static inline int32_t gg_isum_q8_0(const gg_block_q8_0 *x, const gg_block_q8_0 *y) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += x->qs[j] * y->qs[j];
    return s;
}

/* one block's term into its lane: fma(dx*dy, isum, lane) [then fma(mx, sy, lane)] */
#define GG_LANE_D(lane, x, y, isum) \
    (lane) = fmaf(gg_fp16_to_fp32((x)->d) * gg_fp16_to_fp32((y)->d), (float)(isum), (lane))
#define GG_LANE_DM(lane, x, y, isum) do { \
        GG_LANE_D(lane, x, y, isum); \
        (lane) = fmaf(gg_fp16_to_fp32((x)->m), gg_fp16_to_fp32((y)->s), (lane)); \
    } while (0)

#if GG_AVX2
/* ---- AVX2 pieces ---- */

/* 32 nibbles -> 32 bytes 0..15 in element order (low nibbles first) */
static inline __m256i gg_nibbles_avx2(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where bit j of qh is set */
static inline __m256i gg_bits_avx2(const uint8_t *qh) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)gg_load_u32(qh)),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* unsigned x (< 128) times signed y: 8 int32 partial sums (one instruction
   with VNNI, which also never saturates) */
static inline __m256i gg_dot_us_avx2(__m256i x, __m256i y) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x, y);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
#endif
}

/* signed x times signed y (y in [-127, 127]): 8 int32 partial sums */
static inline __m256i gg_dot_ss_avx2(__m256i x, __m256i y) {
    return gg_dot_us_avx2(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

static inline __m256i gg_load_qs_avx2(const int8_t *qs) {
    return _mm256_loadu_si256((const __m256i *)qs);
}

/* (u - OFF) . y for unsigned u (< 32) and any int8 y, as u.y - OFF.y in int16
   (|each| <= 2 * 31 * 128: no saturation) */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define GG_DOT_OFF_AVX2(NAME, OFF)                                                              \
static inline __m256i NAME(__m256i u, __m256i y) {                                              \
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y),                  \
                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(OFF), y)); \
}
#else
#define GG_DOT_OFF_AVX2(NAME, OFF)                                                              \
static inline __m256i NAME(__m256i u, __m256i y) {                                              \
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, y),                              \
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(OFF), y));         \
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));                                          \
}
#endif
GG_DOT_OFF_AVX2(gg_dot_off8_avx2, 8)
GG_DOT_OFF_AVX2(gg_dot_off16_avx2, 16)

/* per block, its 32 quants as stored: unsigned for the 4/5-bit types (the
   offset of Q4_0/Q5_0 goes into the dot), signed for Q8_0 */
static inline __m256i gg_vals_q4(const uint8_t *qs) { return gg_nibbles_avx2(qs); }
static inline __m256i gg_vals_q5(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(gg_nibbles_avx2(qs), _mm256_and_si256(gg_bits_avx2(qh), _mm256_set1_epi8(0x10)));
}
static inline __m256i gg_vals_q4_0(const gg_block_q4_0 *x) { return gg_vals_q4(x->qs); }
static inline __m256i gg_vals_q4_1(const gg_block_q4_1 *x) { return gg_vals_q4(x->qs); }
static inline __m256i gg_vals_q5_0(const gg_block_q5_0 *x) { return gg_vals_q5(x->qs, x->qh); }
static inline __m256i gg_vals_q5_1(const gg_block_q5_1 *x) { return gg_vals_q5(x->qs, x->qh); }
static inline __m256i gg_vals_q8_0(const gg_block_q8_0 *x) { return gg_load_qs_avx2(x->qs); }

/* 8 vectors of 8 int32 partials -> one vector of their 8 totals, in order */
static inline __m256i gg_sum8x8_avx2(const __m256i p[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* a half field of 8 consecutive blocks as 8 floats: packed into two 64-bit
   words with scalar loads and shifts (cheaper than 8 vector inserts) */
static inline __m256 gg_half8_avx2(const void *field0, size_t stride) {
    const uint8_t *p = (const uint8_t *)field0;
    uint64_t w[2];
    for (int h = 0; h < 2; h++) {
        uint64_t v = 0;
        for (int k = 0; k < 4; k++) {
            uint16_t u;
            memcpy(&u, p + (size_t)(4 * h + k) * stride, sizeof(u));
            v |= (uint64_t)u << (16 * k);
        }
        w[h] = v;
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((int64_t)w[1], (int64_t)w[0]));
}
#define GG_HALF8(v, b, f) gg_half8_avx2(&(v)[(b)].f, sizeof((v)[0]))

/* the AVX2 vec_dot of x (type TX) with y (TY): 8 blocks per step, the tail
   blocks through the scalar lane update (same lanes, same rounding) */
#define GG_VEC_DOT_AVX2(NAME, TX, TY, VALS, DOT, MTERM, ISUM, LANE)                          \
static float NAME(int64_t nb, const TX *x, const TY *y) {                                   \
    __m256 acc = _mm256_setzero_ps();                                                       \
    int64_t b = 0;                                                                          \
    for (; b + 8 <= nb; b += 8) {                                                           \
        __m256i p[8];                                                                       \
        for (int k = 0; k < 8; k++) p[k] = DOT(VALS(&x[b + k]), gg_load_qs_avx2(y[b + k].qs)); \
        const __m256 dd = _mm256_mul_ps(GG_HALF8(x, b, d), GG_HALF8(y, b, d));              \
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(gg_sum8x8_avx2(p)), acc);               \
        acc = MTERM(acc, x, y, b);                                                          \
    }                                                                                       \
    float l[8];                                                                             \
    _mm256_storeu_ps(l, acc);                                                               \
    for (; b < nb; b++) LANE(l[b & 7], &x[b], &y[b], ISUM(&x[b], &y[b]));                   \
    return gg_lanes_sum(l);                                                                 \
}

/* the min term of Q4_1/Q5_1 (mx * sy per block), and none for the others */
#define GG_MTERM_NONE(acc, x, y, b) (acc)
#define GG_MTERM_MS(acc, x, y, b) _mm256_fmadd_ps(GG_HALF8(x, b, m), GG_HALF8(y, b, s), (acc))

GG_VEC_DOT_AVX2(gg_vec_dot_q4_0_avx2, gg_block_q4_0, gg_block_q8_0, gg_vals_q4_0, gg_dot_off8_avx2, GG_MTERM_NONE,
                gg_isum_q4_0, GG_LANE_D)
GG_VEC_DOT_AVX2(gg_vec_dot_q4_1_avx2, gg_block_q4_1, gg_block_q8_1, gg_vals_q4_1, gg_dot_us_avx2, GG_MTERM_MS,
                gg_isum_q4_1, GG_LANE_DM)
GG_VEC_DOT_AVX2(gg_vec_dot_q5_0_avx2, gg_block_q5_0, gg_block_q8_0, gg_vals_q5_0, gg_dot_off16_avx2, GG_MTERM_NONE,
                gg_isum_q5_0, GG_LANE_D)
GG_VEC_DOT_AVX2(gg_vec_dot_q5_1_avx2, gg_block_q5_1, gg_block_q8_1, gg_vals_q5_1, gg_dot_us_avx2, GG_MTERM_MS,
                gg_isum_q5_1, GG_LANE_DM)
GG_VEC_DOT_AVX2(gg_vec_dot_q8_0_avx2, gg_block_q8_0, gg_block_q8_0, gg_vals_q8_0, gg_dot_ss_avx2, GG_MTERM_NONE,
                gg_isum_q8_0, GG_LANE_D)

/* ---- AVX2 to_float: the same products (and sums) as the scalar loops ---- */

/* 32 int8 values (signed, or unsigned < 128) times d, plus m when add_m */
static inline void gg_scale_store_avx2(float *y, __m256i v, __m256 d, __m256 m, int add_m) {
    const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    const __m128i part[4] = { lo, _mm_unpackhi_epi64(lo, lo), hi, _mm_unpackhi_epi64(hi, hi) };
    for (int k = 0; k < 4; k++) {
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[k])), d);
        if (add_m) f = _mm256_add_ps(f, m);
        _mm256_storeu_ps(y + 8 * k, f);
    }
}

static void gg_dequantize_row_q4_0_avx2(const gg_block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, _mm256_sub_epi8(gg_vals_q4_0(&x[b]), _mm256_set1_epi8(8)), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_setzero_ps(), 0);
    }
}

static void gg_dequantize_row_q4_1_avx2(const gg_block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, gg_vals_q4_1(&x[b]), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_set1_ps(gg_fp16_to_fp32(x[b].m)), 1);
    }
}

static void gg_dequantize_row_q5_0_avx2(const gg_block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, _mm256_sub_epi8(gg_vals_q5_0(&x[b]), _mm256_set1_epi8(16)), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_setzero_ps(), 0);
    }
}

static void gg_dequantize_row_q5_1_avx2(const gg_block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, gg_vals_q5_1(&x[b]), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_set1_ps(gg_fp16_to_fp32(x[b].m)), 1);
    }
}

static void gg_dequantize_row_q8_0_avx2(const gg_block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, gg_load_qs_avx2(x[b].qs), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_setzero_ps(), 0);
    }
}

static void gg_dequantize_row_q8_1_avx2(const gg_block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        gg_scale_store_avx2(y + b * 32, gg_load_qs_avx2(x[b].qs), _mm256_set1_ps(gg_fp16_to_fp32(x[b].d)),
                            _mm256_setzero_ps(), 0);
    }
}
#endif /* GG_AVX2 */

/* ---- unpack (quants.h): u is the stored quant, made unsigned; the offset
 * of Q4_0/Q5_0 and Q8_0's sign go into m ---- */
#if GG_AVX2
#define GG_UNPACK_FN(T, BT, VALS, S, M)                                                           \
static void gg_unpack_##T(const void *vx, uint8_t *u, size_t ustride, float *s, float *m,        \
                          size_t sstride, int64_t n) {                                           \
    const BT *x = (const BT *)vx;                                                                \
    for (int64_t b = 0; b < n / 32; b++) {                                                       \
        const BT *xb = &x[b];                                                                    \
        const float d = gg_fp16_to_fp32(xb->d);                                                  \
        s[b * (int64_t)sstride] = (S);                                                           \
        m[b * (int64_t)sstride] = (M);                                                           \
        gg_put_u32(u, ustride, 32 * b, (VALS));                                                  \
    }                                                                                            \
}

GG_UNPACK_FN(q4_0, gg_block_q4_0, gg_vals_q4_0(xb), d, -8.0f * d)
GG_UNPACK_FN(q4_1, gg_block_q4_1, gg_vals_q4_1(xb), d, gg_fp16_to_fp32(xb->m))
GG_UNPACK_FN(q5_0, gg_block_q5_0, gg_vals_q5_0(xb), d, -16.0f * d)
GG_UNPACK_FN(q5_1, gg_block_q5_1, gg_vals_q5_1(xb), d, gg_fp16_to_fp32(xb->m))
GG_UNPACK_FN(q8_0, gg_block_q8_0, _mm256_xor_si256(gg_vals_q8_0(xb), _mm256_set1_epi8((char)0x80)), d, -128.0f * d)
#endif

/* ---- the vec_dot rows ---- */

#define GG_VEC_DOT_SCALAR(NAME, TX, TY, ISUM, LANE)                                         \
static float NAME(int64_t nb, const TX *x, const TY *y) {                                   \
    float l[8] = { 0 };                                                                     \
    for (int64_t b = 0; b < nb; b++) LANE(l[b & 7], &x[b], &y[b], ISUM(&x[b], &y[b]));       \
    return gg_lanes_sum(l);                                                                 \
}

GG_VEC_DOT_SCALAR(gg_vec_dot_q4_0_scalar, gg_block_q4_0, gg_block_q8_0, gg_isum_q4_0, GG_LANE_D)
GG_VEC_DOT_SCALAR(gg_vec_dot_q4_1_scalar, gg_block_q4_1, gg_block_q8_1, gg_isum_q4_1, GG_LANE_DM)
GG_VEC_DOT_SCALAR(gg_vec_dot_q5_0_scalar, gg_block_q5_0, gg_block_q8_0, gg_isum_q5_0, GG_LANE_D)
GG_VEC_DOT_SCALAR(gg_vec_dot_q5_1_scalar, gg_block_q5_1, gg_block_q8_1, gg_isum_q5_1, GG_LANE_DM)
GG_VEC_DOT_SCALAR(gg_vec_dot_q8_0_scalar, gg_block_q8_0, gg_block_q8_0, gg_isum_q8_0, GG_LANE_D)

/* ---- entry points: the traits rows ---- */

#if GG_AVX2
#define GG_PICK(simd, name, ...) ((simd) ? name##_avx2(__VA_ARGS__) : name##_scalar(__VA_ARGS__))
#else
#define GG_PICK(simd, name, ...) ((void)(simd), name##_scalar(__VA_ARGS__))
#endif

#define GG_ROW_FNS(T, BT)                                                                       \
static void gg_dequantize_row_##T(int simd, const void *x, float *y, int64_t n) {              \
    GG_PICK(simd, gg_dequantize_row_##T, (const BT *)x, y, n / 32);                            \
}
#define GG_DOT_FN(T, BT, VT)                                                                    \
static float gg_vec_dot_##T(int simd, int64_t n, const void *x, const void *y) {               \
    return GG_PICK(simd, gg_vec_dot_##T, n / 32, (const BT *)x, (const VT *)y);                 \
}

GG_ROW_FNS(q4_0, gg_block_q4_0)
GG_ROW_FNS(q4_1, gg_block_q4_1)
GG_ROW_FNS(q5_0, gg_block_q5_0)
GG_ROW_FNS(q5_1, gg_block_q5_1)
GG_ROW_FNS(q8_0, gg_block_q8_0)
GG_ROW_FNS(q8_1, gg_block_q8_1)
GG_DOT_FN(q4_0, gg_block_q4_0, gg_block_q8_0)
GG_DOT_FN(q4_1, gg_block_q4_1, gg_block_q8_1)
GG_DOT_FN(q5_0, gg_block_q5_0, gg_block_q8_0)
GG_DOT_FN(q5_1, gg_block_q5_1, gg_block_q8_1)
GG_DOT_FN(q8_0, gg_block_q8_0, gg_block_q8_0)

/* vec_dot_type as ggml-cpu's type_traits_cpu pairs them; Q8_1 only holds
   activations (ggml: no vec_dot), so it has -1 here */
const gg_quant_traits gg_quant_traits_plain[] = {
    { GG_TYPE_Q4_0, GG_QK4_0, sizeof(gg_block_q4_0), gg_dequantize_row_q4_0, gg_quantize_row_q4_0,
      GG_TYPE_Q8_0, gg_vec_dot_q4_0, 32, GG_UNPACK(gg_unpack_q4_0) },
    { GG_TYPE_Q4_1, GG_QK4_1, sizeof(gg_block_q4_1), gg_dequantize_row_q4_1, gg_quantize_row_q4_1,
      GG_TYPE_Q8_1, gg_vec_dot_q4_1, 32, GG_UNPACK(gg_unpack_q4_1) },
    { GG_TYPE_Q5_0, GG_QK5_0, sizeof(gg_block_q5_0), gg_dequantize_row_q5_0, gg_quantize_row_q5_0,
      GG_TYPE_Q8_0, gg_vec_dot_q5_0, 32, GG_UNPACK(gg_unpack_q5_0) },
    { GG_TYPE_Q5_1, GG_QK5_1, sizeof(gg_block_q5_1), gg_dequantize_row_q5_1, gg_quantize_row_q5_1,
      GG_TYPE_Q8_1, gg_vec_dot_q5_1, 32, GG_UNPACK(gg_unpack_q5_1) },
    { GG_TYPE_Q8_0, GG_QK8_0, sizeof(gg_block_q8_0), gg_dequantize_row_q8_0, gg_quantize_row_q8_0,
      GG_TYPE_Q8_0, gg_vec_dot_q8_0, 32, GG_UNPACK(gg_unpack_q8_0) },
    { GG_TYPE_Q8_1, GG_QK8_1, sizeof(gg_block_q8_1), gg_dequantize_row_q8_1, gg_quantize_row_q8_1,
      -1, NULL, 0, NULL },
    { -1, 0, 0, NULL, NULL, -1, NULL, 0, NULL },
};
