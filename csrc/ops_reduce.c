/*
 * ops_reduce.c: sum, sum_rows, mean (sums accumulated in double, as ggml's
 * ggml_float) and argmax over rows. Source rows must be packed
 * (nb[0] == type size, checked in Python as ggml asserts it); dims 1..3 may
 * have any strides.
 *
 * A double accumulator keeps the sum of a row within one float rounding of
 * the exact value: for n elements the accumulated error is about
 * n * 2^-53 * sum|x|, far below the final rounding to float. The SIMD paths
 * keep 8 double lanes, a different order but the same bound.
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_reduce.h"

#if GG_AVX2
static inline double gg_hsum_pd(__m256d v) {
    __m128d lo = _mm256_castpd256_pd128(v);
    lo = _mm_add_pd(lo, _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

/* adds 8 floats to two 4-lane double accumulators */
static inline void gg_acc8_pd(__m256 v, __m256d *a0, __m256d *a1) {
    *a0 = _mm256_add_pd(*a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *a1 = _mm256_add_pd(*a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
#endif

/* sum of a packed row of n F32/F16/BF16 elements, in double */
static double gg_row_sum_f64(int simd, const void *row, int type, int64_t n) {
    int64_t i = 0;
    double sum = 0.0;
#if GG_AVX2
    if (simd && n >= 8) {
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
        if (type == GG_TYPE_F32) {
            const float *x = (const float *)row;
            for (; i + 8 <= n; i += 8) gg_acc8_pd(_mm256_loadu_ps(x + i), &a0, &a1);
        } else if (type == GG_TYPE_F16) {
            const uint16_t *x = (const uint16_t *)row;
            for (; i + 8 <= n; i += 8) {
                gg_acc8_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), &a0, &a1);
            }
        } else if (type == GG_TYPE_BF16) {
            const uint16_t *x = (const uint16_t *)row;
            for (; i + 8 <= n; i += 8) {
                const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
                gg_acc8_pd(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), &a0, &a1);
            }
        }
        sum = gg_hsum_pd(_mm256_add_pd(a0, a1));
    }
#else
    GG_UNUSED(simd);
#endif
    switch (type) {
    case GG_TYPE_F32:
        for (; i < n; i++) sum += (double)((const float *)row)[i];
        break;
    case GG_TYPE_F16:
        for (; i < n; i++) sum += (double)gg_fp16_to_fp32(((const uint16_t *)row)[i]);
        break;
    case GG_TYPE_BF16:
        for (; i < n; i++) sum += (double)gg_bf16_to_fp32(((const uint16_t *)row)[i]);
        break;
    default:
        break;
    }
    return sum;
}

static inline size_t gg_float_size(int type) {
    return type == GG_TYPE_F32 ? 4 : (type == GG_TYPE_F16 || type == GG_TYPE_BF16) ? 2 : 0;
}

static inline const char *gg_src_row(const gg_tensor *t, int64_t ir) {
    const int64_t i1 = ir % t->ne[1], i2 = (ir / t->ne[1]) % t->ne[2], i3 = ir / (t->ne[1] * t->ne[2]);
    return (const char *)t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

/* ---- sum: every element, one value of src0's type ---- */

void gg_fwd_sum(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const size_t ts = gg_float_size(src0->type);
    /* every thread takes the same exit: the barrier below needs all of them or none */
    if (ts == 0 || dst->type != src0->type) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    const int64_t nr = gg_nrows(src0);
    const int64_t nch = GG_MIN(nr, GG_SUM_CHUNKS);
    if (src0->nb[0] != ts || p->wsize < (size_t)nch * sizeof(double)) { gg_fail(p, GG_ERR_BAD_INPUT); return; }
    double *part = (double *)p->wdata;
    for (int64_t c = p->ith; c < nch; c += p->nth) {
        const int64_t r0 = c * nr / nch, r1 = (c + 1) * nr / nch;
        double s = 0.0;
        for (int64_t ir = r0; ir < r1; ir++) s += gg_row_sum_f64(p->use_simd, gg_src_row(src0, ir), src0->type, src0->ne[0]);
        part[c] = s;
    }
    gg_barrier(p);
    if (p->ith == 0) {
        double total = 0.0;
        for (int64_t c = 0; c < nch; c++) total += part[c];
        gg_set_f32(dst->data, dst->type, 0, (float)total);
    }
}

/* ---- sum_rows and mean: one value per row ---- */

static void gg_row_sums(const gg_params *p, gg_tensor *dst, bool mean) {
    const gg_tensor *src0 = dst->src[0];
    if (src0->type != GG_TYPE_F32 || dst->type != GG_TYPE_F32) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    if (src0->nb[0] != sizeof(float) || dst->ne[0] != 1 || gg_nrows(dst) != gg_nrows(src0)) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const int64_t ne00 = src0->ne[0];
    int64_t r0, r1;
    gg_row_range(p, gg_nrows(src0), &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        float v = (float)gg_row_sum_f64(p->use_simd, gg_src_row(src0, ir), GG_TYPE_F32, ne00);
        if (mean) v /= (float)ne00;               /* in float, as ggml */
        *(float *)gg_src_row(dst, ir) = v;
    }
}

void gg_fwd_sum_rows(const gg_params *p, gg_tensor *dst) { gg_row_sums(p, dst, false); }

void gg_fwd_mean(const gg_params *p, gg_tensor *dst) { gg_row_sums(p, dst, true); }

/* ---- argmax: index of the largest element of each row ---- */

/* ggml's scan: the running max m = (m > x ? m : x) and the last i where
 * m == x[i]. Ties go to the LAST index; a NaN resets the running max, so the
 * result comes from the last NaN-free stretch of the row (0 if all NaN). */
static int32_t gg_argmax_scan(const float *x, int64_t n) {
    float m = -INFINITY;
    int32_t idx = 0;
    for (int64_t i = 0; i < n; i++) {
        m = m > x[i] ? m : x[i];
        if (m == x[i]) idx = (int32_t)i;
    }
    return idx;
}

static int32_t gg_argmax_row(int simd, const float *x, int64_t n) {
#if GG_AVX2
    if (simd && n >= 8) {
        /* without NaNs the scan's answer is the last index holding the max */
        __m256 vm = _mm256_set1_ps(-INFINITY), vnan = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(x + i);
            vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            vm = _mm256_max_ps(vm, v);
        }
        bool nan = _mm256_movemask_ps(vnan) != 0;
        float t[8], m = -INFINITY;
        _mm256_storeu_ps(t, vm);
        for (int k = 0; k < 8; k++) m = t[k] > m ? t[k] : m;
        for (; i < n; i++) {
            nan = nan || x[i] != x[i];
            m = x[i] > m ? x[i] : m;
        }
        if (!nan) {
            for (int64_t j = n - 1; j > 0; j--) {
                if (x[j] == m) return (int32_t)j;
            }
            return 0;
        }
    }
#else
    GG_UNUSED(simd);
#endif
    return gg_argmax_scan(x, n);
}

void gg_fwd_argmax(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    if (src0->type != GG_TYPE_F32 || dst->type != GG_TYPE_I32) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    if (src0->nb[0] != sizeof(float) || src0->ne[2] != 1 || src0->ne[3] != 1 || dst->ne[0] != src0->ne[1] ||
        dst->nb[0] != sizeof(int32_t) || src0->ne[0] > INT32_MAX) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    int64_t r0, r1;
    gg_row_range(p, src0->ne[1], &r0, &r1);
    for (int64_t i1 = r0; i1 < r1; i1++) {
        const float *x = (const float *)((const char *)src0->data + i1 * src0->nb[1]);
        ((int32_t *)dst->data)[i1] = gg_argmax_row(p->use_simd, x, src0->ne[0]);
    }
}
