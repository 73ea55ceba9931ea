/*
 * vec.h: row primitives shared by the kernels. Each has a scalar loop (the
 * reference, always compiled) and an AVX2 path; `simd` chooses at run time so
 * tests can compare both on the same machine.
 */
#ifndef GGRAPH_VEC_H
#define GGRAPH_VEC_H

#include "ggraph_impl.h"

#if GG_AVX2
static inline float gg_hsum_avx(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#endif

static inline void gg_vec_f16_to_f32(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    }
#endif
    for (; i < n; i++) y[i] = gg_fp16_to_fp32(x[i]);
}

static inline void gg_vec_f32_to_f16(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    }
#endif
    for (; i < n; i++) y[i] = gg_fp32_to_fp16(x[i]);
}

/* converts a row of F32/F16/BF16 to f32 (y may not alias x unless F32) */
static inline void gg_row_to_f32(const void *x, int type, float *y, int64_t n) {
    switch (type) {
    case GG_TYPE_F32:  if ((const void *)y != x) memcpy(y, x, (size_t)n * sizeof(float)); break;
    case GG_TYPE_F16:  gg_vec_f16_to_f32((const uint16_t *)x, y, n); break;
    case GG_TYPE_BF16: for (int64_t i = 0; i < n; i++) y[i] = gg_bf16_to_fp32(((const uint16_t *)x)[i]); break;
    case GG_TYPE_I32:  for (int64_t i = 0; i < n; i++) y[i] = (float)((const int32_t *)x)[i]; break;
    default: break;
    }
}

static inline void gg_row_from_f32(const float *x, int type, void *y, int64_t n) {
    switch (type) {
    case GG_TYPE_F32:  if ((const void *)x != y) memcpy(y, x, (size_t)n * sizeof(float)); break;
    case GG_TYPE_F16:  gg_vec_f32_to_f16(x, (uint16_t *)y, n); break;
    case GG_TYPE_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = gg_fp32_to_bf16(x[i]); break;
    case GG_TYPE_I32:  for (int64_t i = 0; i < n; i++) ((int32_t *)y)[i] = gg_f32_to_i32(x[i]); break;
    default: break;
    }
}

/* sum_i x[i]*y[i], accumulated in f32 */
static inline float gg_vec_dot_f32(int simd, const float *x, const float *y, int64_t n) {
    int64_t i = 0;
    float sum = 0.0f;
#if GG_AVX2
    if (simd) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (; i + 16 <= n; i += 16) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
        }
        for (; i + 8 <= n; i += 8) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
        }
        sum = gg_hsum_avx(_mm256_add_ps(acc0, acc1));
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

#if GG_AVX2
/*
 * e^x for 8 floats. x = n*ln2 + r with |r| <= ln2/2 (ln2 split in two so
 * n*ln2 is exact), e^r by its degree-7 Taylor polynomial (truncation error
 * < 1e-8 relative, i.e. well under an ulp; measured max error vs expf about
 * 1 ulp over [-104, 89], see tests), then 2^n applied in two halves so that
 * subnormal results and results near FLT_MAX come out right. x above
 * ~88.72 overflows to +inf, x below -104 gives 0, NaN stays NaN.
 */
static inline __m256 gg_v_expf(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 q = _mm256_set1_ps(1.0f / 5040.0f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    /* n in [-150, 128]: 2^n = 2^n1 * 2^n2 with both halves normal floats */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    const __m256 y = _mm256_mul_ps(_mm256_mul_ps(q, s1), s2);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

/* y[i] = x[i] * v */
static inline void gg_vec_scale_f32(int simd, float *y, const float *x, float v, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        const __m256 vv = _mm256_set1_ps(v);
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vv));
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) y[i] = x[i] * v;
}

/* max of a row */
static inline float gg_vec_max_f32(int simd, const float *x, int64_t n) {
    int64_t i = 0;
    float m = -INFINITY;
#if GG_AVX2
    if (simd && n >= 8) {
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        float t[8];
        _mm256_storeu_ps(t, vm);
        for (int k = 0; k < 8; k++) m = t[k] > m ? t[k] : m;
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

#endif
