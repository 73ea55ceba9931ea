/*
 * ops_attention.c: flash_attn_ext, attention in one pass over the KV rows.
 *
 *   q    [DK, n_q,  n_head,    ne3] F32
 *   k    [DK, n_kv, n_head_kv, ne3] F32/F16/BF16
 *   v    [DV, n_kv, n_head_v,  ne3] F32/F16/BF16   (not transposed)
 *   mask [>= n_kv, >= n_q, ne32, ne33] F16, contiguous, or absent
 *   dst  [DV, n_head, n_q, ne3] F32                   (permuted, as ggml's)
 *
 * A unit of work is one q row of the heads that share a K/V head (grouped-query
 * attention: each K and V row is loaded once for all of them); threads take
 * units in turn. For one q row and head the scores
 *   s = softcap * tanh(scale/softcap * q.k) + slope * mask       (softcap != 0)
 *   s = scale * q.k + slope * mask                                (softcap == 0)
 * are folded into the result with an online softmax: a running max M, a
 * running sum S and an accumulator VKQ rescaled whenever M grows. Columns whose
 * mask is -inf are skipped; a row with all of them masked has S == 0 and its
 * result is 0, as ggml's CPU kernel gives.
 *
 * Unlike ggml's CPU kernel, q stays in f32 for F16 K (ggml rounds it to F16)
 * and the accumulator is f32 for F16 V (ggml's is F16): ggraph always
 * accumulates in f32, so the precision setting changes nothing.
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_attention.h"

/* q heads handled together per pass over the K/V rows of their shared head */
#define GG_MAX_GROUP 16

/* sum_i x[i] * y[i] for y F16 */
static inline float gg_fa_dot_f16(int simd, const float *x, const uint16_t *y, int64_t n) {
    int64_t i = 0;
    float sum = 0.0f;
#if GG_AVX2
    if (simd) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (; i + 16 <= n; i += 16) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                                   _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i))), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8),
                                   _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8))), acc1);
        }
        for (; i + 8 <= n; i += 8) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                                   _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i))), acc0);
        }
        sum = gg_hsum_avx(_mm256_add_ps(acc0, acc1));
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) sum += x[i] * gg_fp16_to_fp32(y[i]);
    return sum;
}

/* y[i] += x[i] * v for x F32 */
static inline void gg_fa_mad_f32(int simd, float *y, const float *x, float v, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        const __m256 vv = _mm256_set1_ps(v);
        for (; i + 8 <= n; i += 8) {
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vv, _mm256_loadu_ps(y + i)));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) y[i] += x[i] * v;
}

/* y[i] += x[i] * v for x F16 */
static inline void gg_fa_mad_f16(int simd, float *y, const uint16_t *x, float v, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        const __m256 vv = _mm256_set1_ps(v);
        for (; i + 8 <= n; i += 8) {
            const __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(xv, vv, _mm256_loadu_ps(y + i)));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) y[i] += gg_fp16_to_fp32(x[i]) * v;
}

static void gg_fa_bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gg_bf16_to_fp32(x[i]);
}

/* q.k for one K row of type `type`; tmp: DK floats for BF16 rows */
static inline float gg_fa_dot(int simd, int type, const float *q, const void *k, float *tmp, int64_t n) {
    switch (type) {
    case GG_TYPE_F16:
        return gg_fa_dot_f16(simd, q, (const uint16_t *)k, n);
    case GG_TYPE_BF16:
        gg_fa_bf16_to_f32((const uint16_t *)k, tmp, n);
        return gg_vec_dot_f32(simd, q, tmp, n);
    default:
        return gg_vec_dot_f32(simd, q, (const float *)k, n);
    }
}

/* acc += v * w for one V row of type `type`; tmp: DV floats for BF16 rows */
static inline void gg_fa_mad(int simd, int type, float *acc, const void *v, float w, float *tmp, int64_t n) {
    switch (type) {
    case GG_TYPE_F16:
        gg_fa_mad_f16(simd, acc, (const uint16_t *)v, w, n);
        break;
    case GG_TYPE_BF16:
        gg_fa_bf16_to_f32((const uint16_t *)v, tmp, n);
        gg_fa_mad_f32(simd, acc, tmp, w, n);
        break;
    default:
        gg_fa_mad_f32(simd, acc, (const float *)v, w, n);
        break;
    }
}

static bool gg_fa_kv_type_ok(int type) {
    return type == GG_TYPE_F32 || type == GG_TYPE_F16 || type == GG_TYPE_BF16;
}

/* per-thread scratch in floats for units of g heads: g accumulators, one converted
 * row, and g running maxima and sums, cache lines apart (the Python side's work_size
 * computes the same for g = n_head / n_head_kv, the largest g used) */
static size_t gg_fa_stride(int64_t dk, int64_t dv, int64_t g) {
    const int64_t acc = g * ((dv + 15) / 16 * 16);
    const int64_t row = (GG_MAX(dk, dv) + 15) / 16 * 16;
    const int64_t ms = (2 * g + 15) / 16 * 16;
    return (size_t)(acc + row + ms + 16);
}

void gg_fwd_flash_attn_ext(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *q = dst->src[0];
    const gg_tensor *k = dst->src[1];
    const gg_tensor *v = dst->src[2];
    const gg_tensor *mask = dst->src[3];
    const gg_flash_attn_ext_params *pp = GG_PARAMS(gg_flash_attn_ext_params, dst);

    const int64_t DK = k->ne[0], DV = v->ne[0];
    const int64_t n_q = q->ne[1], n_head = q->ne[2], n_kv = k->ne[1];
    if (q->type != GG_TYPE_F32 || !gg_fa_kv_type_ok(k->type) || !gg_fa_kv_type_ok(v->type) ||
        (mask && mask->type != GG_TYPE_F16) || dst->type != GG_TYPE_F32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }

    /* broadcast of K and V heads over q heads (grouped-query attention) */
    const int64_t rk2 = n_head / k->ne[2], rk3 = q->ne[3] / k->ne[3];
    const int64_t rv2 = n_head / v->ne[2], rv3 = q->ne[3] / v->ne[3];

    /* a unit of work: one q row of the g heads that read the same K and V head, so each
     * K/V row is loaded once for all g of them; g = 1 when that leaves threads idle */
    const int64_t nr1 = n_q * q->ne[3];
    const int64_t g = (rk2 == rv2 && nr1 * (n_head / rk2) >= p->nth) ? rk2 : 1;
    const int64_t n_units = nr1 * (n_head / g);

    const size_t stride = gg_fa_stride(DK, DV, g);
    if (p->wdata == NULL || p->wsize < (size_t)p->nth * stride * sizeof(float)) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }

    float scale = pp->scale;
    const float max_bias = pp->max_bias, softcap = pp->logit_softcap;
    if (softcap != 0.0f) scale /= softcap;

    /* ALiBi slopes: heads below the largest power of two <= n_head use m0, the rest m1 */
    const uint32_t n_head_log2 = 1u << (uint32_t)floor(log2((double)n_head));
    const float m0 = powf(2.0f, -(max_bias) / (float)n_head_log2);
    const float m1 = powf(2.0f, -(max_bias / 2.0f) / (float)n_head_log2);

    const int64_t dvp = (DV + 15) / 16 * 16;
    float *acc = (float *)p->wdata + (size_t)p->ith * stride;          /* g rows of dvp */
    float *tmp = acc + g * dvp;
    float *M = tmp + (GG_MAX(DK, DV) + 15) / 16 * 16;                    /* largest score so far */
    float *S = M + g;                                                    /* sum of exp(s - M) */
    const int simd = p->use_simd;

    const float *pq[GG_MAX_GROUP];
    const uint16_t *mp[GG_MAX_GROUP];
    float slope[GG_MAX_GROUP];

    for (int64_t iu = p->ith; iu < n_units; iu += p->nth) {
        const int64_t iq1 = iu % n_q;                         /* q row */
        const int64_t ig = (iu / n_q) % (n_head / g);         /* group of heads */
        const int64_t iq3 = iu / (n_q * (n_head / g));
        const int64_t h0 = ig * g;                            /* first head of the unit */

        const char *kbase = (const char *)k->data + (h0 / rk2) * k->nb[2] + (iq3 / rk3) * k->nb[3];
        const char *vbase = (const char *)v->data + (h0 / rv2) * v->nb[2] + (iq3 / rv3) * v->nb[3];

        for (int64_t j0 = 0; j0 < g; j0 += GG_MAX_GROUP) {
            const int64_t gn = GG_MIN(g - j0, GG_MAX_GROUP);
            for (int64_t j = 0; j < gn; j++) {
                const int64_t iq2 = h0 + j0 + j;
                const uint32_t h = (uint32_t)iq2;
                slope[j] = max_bias > 0.0f
                    ? (h < n_head_log2 ? powf(m0, (float)(h + 1)) : powf(m1, (float)(2 * (h - n_head_log2) + 1)))
                    : 1.0f;
                mp[j] = mask
                    ? (const uint16_t *)((const char *)mask->data + iq1 * mask->nb[1] +
                                         (iq2 % mask->ne[2]) * mask->nb[2] + (iq3 % mask->ne[3]) * mask->nb[3])
                    : NULL;
                pq[j] = (const float *)((const char *)q->data + iq1 * q->nb[1] + iq2 * q->nb[2] + iq3 * q->nb[3]);
                memset(acc + j * dvp, 0, (size_t)DV * sizeof(float));
                M[j] = -INFINITY;
                S[j] = 0.0f;
            }

            for (int64_t ic = 0; ic < n_kv; ic++) {
                const char *krow = kbase + ic * k->nb[1];
                const char *vrow = vbase + ic * v->nb[1];
                for (int64_t j = 0; j < gn; j++) {
                    const float mv = mp[j] ? slope[j] * gg_fp16_to_fp32(mp[j][ic]) : 0.0f;
                    if (mv == -INFINITY) continue;

                    float s = gg_fa_dot(simd, k->type, pq[j], krow, tmp, DK) * scale;
                    if (softcap != 0.0f) s = softcap * tanhf(s);
                    s += mv;

                    float *a = acc + j * dvp;
                    float ms = 1.0f;        /* rescales the old terms when the max grows */
                    float vs = 1.0f;        /* exp(s - M) of this term */
                    if (s > M[j]) {
                        const float M_old = M[j];
                        M[j] = s;
                        ms = expf(M_old - s);
                        gg_vec_scale_f32(simd, a, a, ms, DV);
                    } else {
                        vs = expf(s - M[j]);
                    }
                    gg_fa_mad(simd, v->type, a, vrow, vs, tmp, DV);
                    S[j] = S[j] * ms + vs;
                }
            }

            for (int64_t j = 0; j < gn; j++) {
                const int64_t iq2 = h0 + j0 + j;
                const float S_inv = S[j] == 0.0f ? 0.0f : 1.0f / S[j];
                /* permuted: dst[:, head, q row, iq3] */
                float *y = (float *)((char *)dst->data + iq2 * dst->nb[1] + iq1 * dst->nb[2] + iq3 * dst->nb[3]);
                gg_vec_scale_f32(simd, y, acc + j * dvp, S_inv, DV);
            }
        }
    }
}
