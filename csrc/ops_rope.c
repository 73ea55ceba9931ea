/*
 * ops_rope.c: rotary position embeddings with YaRN scaling, F32 and F16.
 *
 * Row (i1, i2, i3) of a is the vector of head i1 of token i2; its first
 * n_dims values rotate in pairs by angles that depend on the token's position
 * pos[i2], the rest are copied. Pair k (k < n_dims/2) is
 *     normal: (x[2k], x[2k+1])       NEOX: (x[k], x[k + n_dims/2])
 * and turns by theta_k = pos * freq_base^(-2k/n_dims) / freq_factor[k], with
 * YaRN's interpolation (freq_scale), ramp and magnitude scaling on top.
 *
 * Threads take contiguous ranges of rows, so consecutive rows usually share a
 * token: each thread keeps the cos/sin of the current token's angles in its
 * slice of the work buffer and recomputes them when the token changes.
 *
 * Each pair is read before it is written, so dst may alias a.
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_rope.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* floats per thread in the work buffer: cos and sin of n_dims/2 angles,
 * rounded up to a cache line, plus one line (ggraph/ops/rope.py agrees) */
static inline int64_t gg_rope_stride(int64_t n_dims) {
    return (n_dims + 15) / 16 * 16 + 16;
}

/* the pair dim at which n_ctx_orig positions make n_rot full turns:
 * solves n_ctx_orig = 2*pi*n_rot * base^(2*dim/n_dims) for dim (YaRN) */
static double gg_rope_yarn_dim(int64_t n_dims, int32_t n_ctx_orig, double n_rot, double base) {
    return (double)n_dims * log((double)n_ctx_orig / (n_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

typedef struct {
    int64_t      half;                  /* pairs per row: n_dims / 2 */
    double       theta_scale;           /* freq_base^(-2/n_dims) */
    double       freq_scale, ext_factor, mscale;
    double       corr_lo, corr_hi;      /* YaRN ramp bounds, in pairs */
    const char  *ff;                    /* freq factors (F32, stride ff_nb) or NULL */
    size_t       ff_nb;
} gg_rope_setup;

/* cos and sin of every pair's angle at position pos, times the magnitude
 * scale. In double: the f32 results are then exact to rounding at any
 * position (ggml iterates theta in float, which drifts by ~k ulps of theta
 * at pair k, about 5e-3 rad at position 32768). Once per token and thread. */
static void gg_rope_angles(const gg_rope_setup *s, int32_t pos, float *cos_k, float *sin_k) {
    double theta = (double)pos;         /* pos * theta_scale^k, extrapolated */
    for (int64_t k = 0; k < s->half; k++) {
        const double extrap = s->ff ? theta / (double)*(const float *)(s->ff + k * s->ff_nb) : theta;
        double th = s->freq_scale * extrap;     /* interpolated */
        if (s->ext_factor != 0.0) {
            /* ramp: 1 below corr_lo (fast pairs keep extrapolated angles), 0 above corr_hi */
            const double y = ((double)k - s->corr_lo) / GG_MAX(0.001, s->corr_hi - s->corr_lo);
            const double mix = (1.0 - GG_MIN(1.0, GG_MAX(0.0, y))) * s->ext_factor;
            th = th * (1.0 - mix) + extrap * mix;
        }
        cos_k[k] = (float)(cos(th) * s->mscale);
        sin_k[k] = (float)(sin(th) * s->mscale);
        theta *= s->theta_scale;
    }
}

static inline float gg_rope_ld(const void *x, int f16, int64_t i) {
    return f16 ? gg_fp16_to_fp32(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

static inline void gg_rope_st(void *y, int f16, int64_t i, float v) {
    if (f16) ((uint16_t *)y)[i] = gg_fp32_to_fp16(v);
    else     ((float *)y)[i] = v;
}

#if GG_AVX2
static inline __m256 gg_rope_ld8(const void *x, int f16, int64_t i) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)x + i)))
               : _mm256_loadu_ps((const float *)x + i);
}

static inline void gg_rope_st8(void *y, int f16, int64_t i, __m256 v) {
    if (f16) _mm_storeu_si128((__m128i *)((uint16_t *)y + i), _mm256_cvtps_ph(v, 0));
    else     _mm256_storeu_ps((float *)y + i, v);
}
#endif

/* normal mode: pair k is (x[2k], x[2k+1]) */
static void gg_rope_row_normal(int simd, int f16, const void *x, void *y,
                               const float *cos_k, const float *sin_k, int64_t half) {
    int64_t k = 0;
#if GG_AVX2
    if (simd) {
        /* 4 pairs at a time: cos/sin of pair j fill lanes 2j and 2j+1 */
        const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
        for (; k + 4 <= half; k += 4) {
            const __m256 v = gg_rope_ld8(x, f16, 2 * k);
            const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos_k + k)), dup);
            const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin_k + k)), dup);
            const __m256 vs = _mm256_permute_ps(v, 0xB1);         /* (x1, x0) in each pair */
            /* even lanes x0*c - x1*s, odd lanes x1*c + x0*s */
            gg_rope_st8(y, f16, 2 * k, _mm256_fmaddsub_ps(v, c, _mm256_mul_ps(vs, s)));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; k < half; k++) {
        const float x0 = gg_rope_ld(x, f16, 2 * k), x1 = gg_rope_ld(x, f16, 2 * k + 1);
        gg_rope_st(y, f16, 2 * k, x0 * cos_k[k] - x1 * sin_k[k]);
        gg_rope_st(y, f16, 2 * k + 1, x0 * sin_k[k] + x1 * cos_k[k]);
    }
}

/* NEOX mode: pair k is (x[k], x[k + half]) */
static void gg_rope_row_neox(int simd, int f16, const void *x, void *y,
                             const float *cos_k, const float *sin_k, int64_t half) {
    int64_t k = 0;
#if GG_AVX2
    if (simd) {
        for (; k + 8 <= half; k += 8) {
            const __m256 x0 = gg_rope_ld8(x, f16, k), x1 = gg_rope_ld8(x, f16, k + half);
            const __m256 c = _mm256_loadu_ps(cos_k + k), s = _mm256_loadu_ps(sin_k + k);
            gg_rope_st8(y, f16, k, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
            gg_rope_st8(y, f16, k + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; k < half; k++) {
        const float x0 = gg_rope_ld(x, f16, k), x1 = gg_rope_ld(x, f16, k + half);
        gg_rope_st(y, f16, k, x0 * cos_k[k] - x1 * sin_k[k]);
        gg_rope_st(y, f16, k + half, x0 * sin_k[k] + x1 * cos_k[k]);
    }
}

void gg_fwd_rope(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const gg_tensor *src1 = dst->src[1];          /* positions, I32 [ne2] */
    const gg_tensor *src2 = dst->src[2];          /* freq factors, F32 [>= n_dims/2], or NULL */
    GG_TENSOR_UNARY_LOCALS
    const gg_rope_params *rp = GG_PARAMS(gg_rope_params, dst);
    if ((src0->type != GG_TYPE_F32 && src0->type != GG_TYPE_F16) || dst->type != src0->type ||
        src1 == NULL || src1->type != GG_TYPE_I32 || (src2 != NULL && src2->type != GG_TYPE_F32)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int f16 = src0->type == GG_TYPE_F16;
    const size_t ts = f16 ? sizeof(uint16_t) : sizeof(float);
    const int64_t n_dims = rp->n_dims;
    const int64_t stride = gg_rope_stride(n_dims);
    if (nb00 != ts || nb0 != ts || n_dims <= 0 || n_dims % 2 != 0 || n_dims > ne00 ||
        (rp->mode != 0 && rp->mode != 2) || src1->ne[0] < ne02 ||
        (src2 != NULL && src2->ne[0] < n_dims / 2) ||
        p->wsize < (size_t)(stride * p->nth) * sizeof(float)) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }

    gg_rope_setup s = {
        .half = n_dims / 2,
        .theta_scale = pow((double)rp->freq_base, -2.0 / (double)n_dims),
        .freq_scale = rp->freq_scale,
        .ext_factor = rp->ext_factor,
        .mscale = rp->attn_factor,
        .ff = src2 ? (const char *)src2->data : NULL,
        .ff_nb = src2 ? src2->nb[0] : 0,
    };
    if (rp->ext_factor != 0.0f) s.mscale *= 1.0 + 0.1 * log(1.0 / (double)rp->freq_scale);
    /* YaRN's ramp bounds, clamped to the rotated pairs (a NaN bound stays NaN) */
    const double lo = floor(gg_rope_yarn_dim(n_dims, rp->n_ctx_orig, rp->beta_fast, rp->freq_base));
    const double hi = ceil(gg_rope_yarn_dim(n_dims, rp->n_ctx_orig, rp->beta_slow, rp->freq_base));
    s.corr_lo = GG_MAX(0.0, lo);
    s.corr_hi = GG_MIN((double)(n_dims - 1), hi);

    float *cos_k = (float *)p->wdata + stride * p->ith;
    float *sin_k = cos_k + s.half;

    int64_t r0, r1;
    gg_row_range(p, ne01 * ne02 * ne03, &r0, &r1);
    int64_t cached_i2 = -1;
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        if (i02 != cached_i2) {
            const int32_t pos = *(const int32_t *)((const char *)src1->data + i02 * src1->nb[0]);
            gg_rope_angles(&s, pos, cos_k, sin_k);
            cached_i2 = i02;
        }
        const char *x = (const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03;
        char *y = (char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3;
        if (rp->mode == 0) gg_rope_row_normal(p->use_simd, f16, x, y, cos_k, sin_k, s.half);
        else               gg_rope_row_neox(p->use_simd, f16, x, y, cos_k, sin_k, s.half);
        if (n_dims < ne00 && x != y) {
            memcpy(y + n_dims * ts, x + n_dims * ts, (size_t)(ne00 - n_dims) * ts);
        }
    }
}
