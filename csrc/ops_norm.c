/*
 * ops_norm.c: norm and rms_norm over rows (dim 0), F32.
 * Each thread takes every nth row; a row is read whole before it is written,
 * so dst may alias src0 (the allocator runs these in place).
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_norm.h"

/* sum of x[i]^2 over a row */
static float gg_row_sumsq(int simd, const float *x, int64_t n) {
    return gg_vec_dot_f32(simd, x, x, n);
}

static float gg_row_sum(int simd, const float *x, int64_t n) {
    int64_t i = 0;
    float sum = 0.0f;
#if GG_AVX2
    if (simd) {
        __m256 acc = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
        sum = gg_hsum_avx(acc);
    }
#endif
    for (; i < n; i++) sum += x[i];
    return sum;
}

void gg_fwd_rms_norm(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const float eps = GG_PARAMS(gg_norm_params, dst)->eps;
    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        const float *x = (const float *)((const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03);
        float *y = (float *)((char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3);
        const float mean = gg_row_sumsq(p->use_simd, x, ne00) / (float)ne00;
        const float scale = 1.0f / sqrtf(mean + eps);
        gg_vec_scale_f32(p->use_simd, y, x, scale, ne00);
    }
}

void gg_fwd_norm(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const float eps = GG_PARAMS(gg_norm_params, dst)->eps;
    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        const float *x = (const float *)((const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03);
        float *y = (float *)((char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3);
        const float mean = gg_row_sum(p->use_simd, x, ne00) / (float)ne00;
        for (int64_t i = 0; i < ne00; i++) y[i] = x[i] - mean;
        const float var = gg_row_sumsq(p->use_simd, y, ne00) / (float)ne00;
        gg_vec_scale_f32(p->use_simd, y, y, 1.0f / sqrtf(var + eps), ne00);
    }
}
