/*
 * ops_softmax.c: soft_max (with an optional additive mask and ALiBi slopes)
 * and diag_mask_inf, F32.
 *
 * soft_max: each thread takes every nth row of a, forms
 *     w = a*scale + slope*mask
 * in its own slice of the work buffer, then writes exp(w - max(w)) / sum to
 * dst. The row is copied out before dst is written, so dst may alias a.
 * A row whose w is all -inf gives NaN (-inf - -inf), as in ggml.
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_softmax.h"

/* floats per thread in the work buffer: the row, rounded up to a cache
 * line, plus one line so neighbouring threads never share one
 * (ggraph/ops/softmax.py computes the same size) */
static inline int64_t gg_soft_max_stride(int64_t ne00) {
    return (ne00 + 15) / 16 * 16 + 16;
}

#if GG_AVX2

static inline double gg_hsum_pd(__m256d v) {
    __m128d lo = _mm256_castpd256_pd128(v);
    lo = _mm_add_pd(lo, _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}
#endif

/* y[i] = e^(x[i] - max); returns the sum of the y[i], accumulated in double */
static double gg_vec_exp_sum(int simd, float *y, const float *x, float max, int64_t n) {
    int64_t i = 0;
    double sum = 0.0;
#if GG_AVX2
    if (simd) {
        const __m256 vmax = _mm256_set1_ps(max);
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        for (; i + 8 <= n; i += 8) {
            const __m256 e = gg_v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
            _mm256_storeu_ps(y + i, e);
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        sum = gg_hsum_pd(_mm256_add_pd(acc0, acc1));
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) {
        y[i] = expf(x[i] - max);
        sum += (double)y[i];
    }
    return sum;
}

/* w[i] = x[i]*scale + slope*m[i], m a row of F32 or F16 (or absent) */
static void gg_soft_max_prep(int simd, float *w, const float *x, float scale,
                             const void *m, int mtype, float slope, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        const __m256 vs = _mm256_set1_ps(scale), vsl = _mm256_set1_ps(slope);
        for (; i + 8 <= n; i += 8) {
            const __m256 xs = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
            if (m == NULL) {
                _mm256_storeu_ps(w + i, xs);
                continue;
            }
            const __m256 mv = mtype == GG_TYPE_F16
                ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)m + i)))
                : _mm256_loadu_ps((const float *)m + i);
            _mm256_storeu_ps(w + i, _mm256_fmadd_ps(vsl, mv, xs));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) {
        float v = x[i] * scale;
        if (m != NULL) v += slope * gg_get_f32(m, mtype, i);
        w[i] = v;
    }
}

void gg_fwd_soft_max(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const gg_tensor *src1 = dst->src[1];          /* the mask, or NULL */
    GG_TENSOR_UNARY_LOCALS
    if (src0->type != GG_TYPE_F32 || dst->type != GG_TYPE_F32 ||
        (src1 != NULL && src1->type != GG_TYPE_F32 && src1->type != GG_TYPE_F16)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int64_t stride = gg_soft_max_stride(ne00);
    if (nb00 != sizeof(float) || nb0 != sizeof(float) ||
        p->wsize < (size_t)(stride * p->nth) * sizeof(float) ||
        (src1 != NULL && (src1->ne[0] != ne00 || src1->ne[1] < ne01 ||
                          ne02 % src1->ne[2] != 0 || ne03 % src1->ne[3] != 0))) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const gg_soft_max_params *pp = GG_PARAMS(gg_soft_max_params, dst);
    const float scale = pp->scale, max_bias = pp->max_bias;

    /* ALiBi: heads are dims 2; n_head_log2 is the largest power of two <= n_head */
    const uint32_t n_head = (uint32_t)ne02;
    const uint32_t n_head_log2 = 1u << (uint32_t)floor(log2((double)n_head));
    /* (slopes in double: one pow per row, exact to rounding; ggml uses powf) */
    const double m0 = pow(2.0, -(double)max_bias / n_head_log2);
    const double m1 = pow(2.0, -((double)max_bias / 2.0) / n_head_log2);

    const int64_t ne12 = src1 ? src1->ne[2] : 1, ne13 = src1 ? src1->ne[3] : 1;
    const size_t nb11 = src1 ? src1->nb[1] : 0, nb12 = src1 ? src1->nb[2] : 0, nb13 = src1 ? src1->nb[3] : 0;

    float *w = (float *)p->wdata + stride * p->ith;
    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        const uint32_t h = (uint32_t)i02;
        const float slope = !(max_bias > 0.0f) ? 1.0f
                          : h < n_head_log2 ? (float)pow(m0, h + 1)
                          : (float)pow(m1, 2 * (h - n_head_log2) + 1);
        const float *x = (const float *)((const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03);
        float *y = (float *)((char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3);
        /* the mask's rows are a's rows; its dims 2 and 3 repeat over a's */
        const void *m = src1 ? (const char *)src1->data + i01 * nb11 + (i02 % ne12) * nb12 + (i03 % ne13) * nb13
                             : NULL;
        gg_soft_max_prep(p->use_simd, w, x, scale, m, src1 ? src1->type : GG_TYPE_F32, slope, ne00);
        const float max = gg_vec_max_f32(p->use_simd, w, ne00);
        const double sum = gg_vec_exp_sum(p->use_simd, y, w, max, ne00);
        gg_vec_scale_f32(p->use_simd, y, y, (float)(1.0 / sum), ne00);
    }
}

void gg_fwd_diag_mask_inf(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    if (src0->type != GG_TYPE_F32 || dst->type != GG_TYPE_F32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int64_t n_past = GG_PARAMS(gg_diag_mask_params, dst)->n_past;
    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        const char *x = (const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03;
        char *y = (char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3;
        /* columns past n_past + i01 are in the future of row i01 */
        const int64_t n_keep = GG_MAX(0, GG_MIN(ne00, n_past + i01 + 1));
        for (int64_t i = 0; i < n_keep; i++) *(float *)(y + i * nb0) = *(const float *)(x + i * nb00);
        for (int64_t i = n_keep; i < ne00; i++) *(float *)(y + i * nb0) = -INFINITY;
    }
}
