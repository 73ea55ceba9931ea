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
#include <stdatomic.h>

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


/* ---- the tiled path (AVX-512): many q rows against blocks of K/V rows ----
 *
 * A unit is up to GG_FA_R query vectors (a block of q rows x the g heads that
 * share one K/V head), kept transposed (qt[d][r]: 16 vectors per zmm). Per
 * block of GG_FA_BK K/V rows, converted to f32 once for the unit:
 *   scores  St[c][r] = k_c . q_r         4 K rows x 64 vectors per pass, k_c[d]
 *                                         broadcast against qt[d][...]
 *   mask, then per vector (lanes): the block's max, the online-softmax
 *   rescale of the running sum and output, P = exp(St - max)
 *   O[r] += sum_c P[c][r] v_c             4 vectors x 64 values per pass
 * Blocks that every vector of the unit has masked out (the future of a causal
 * batch) are skipped. The same online softmax as the row-at-a-time path, in
 * f32, with the max taken per block instead of per column. */
#if GG_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define GG_FA_TILED 1
#else
#define GG_FA_TILED 0
#endif
#define GG_FA_BK 64
#define GG_FA_R 64          /* query vectors per unit: 4 zmm of lanes */
#define GG_FA_DMAX 256
#define GG_FA_MIN_NQ 8      /* fewer q rows (decode): the row-at-a-time path */

/* floats of the tiled path's per-thread scratch */
static size_t gg_fa_tiled_floats(int64_t dk, int64_t dv) {
    return (size_t)(GG_FA_BK * dk + GG_FA_BK * dv + GG_FA_BK * GG_FA_R + GG_FA_R * dv + dk * GG_FA_R +
                    4 * GG_FA_R + 64);
}

int gg_fa_tiled_built(void) { return GG_FA_TILED; }

static _Atomic int gg_fa_tiled_on = 1;

int gg_fa_tiled_enable(int on) { return atomic_exchange(&gg_fa_tiled_on, on != 0); }

static inline bool gg_fa_tiled_ok(int simd, const gg_tensor *q, const gg_tensor *k, const gg_tensor *v) {
    const int64_t dk = k->ne[0], dv = v->ne[0];
    const int64_t rk2 = q->ne[2] / k->ne[2], rv2 = q->ne[2] / v->ne[2];
    return GG_FA_TILED && simd && atomic_load(&gg_fa_tiled_on) && q->ne[1] >= GG_FA_MIN_NQ && dk % 16 == 0 && dv % 16 == 0 &&
           dk <= GG_FA_DMAX && dv <= GG_FA_DMAX && rk2 == rv2 && rk2 <= GG_FA_R &&
           k->ne[3] == q->ne[3] && v->ne[3] == q->ne[3];
}

#if GG_FA_TILED
#define GG_FA_INLINE static inline __attribute__((always_inline))

/* n values of a K/V row of `type` as f32 (n a multiple of 16) */
GG_FA_INLINE void gg_fa_row_f32(int type, const void *row, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __m512 x;
        if (type == GG_TYPE_F16) {
            x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
        } else if (type == GG_TYPE_BF16) {
            const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
            x = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
        } else {
            x = _mm512_loadu_ps((const float *)row + i);
        }
        _mm512_storeu_ps(out + i, x);
    }
}

GG_FA_INLINE __m512 gg_fa_exp16(__m512 x) {
    const __m256 lo = gg_v_expf(_mm512_castps512_ps256(x));
    const __m256 hi = gg_v_expf(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

/* St[c][0..16 NV) = k_c . qt[:, 0..16 NV) for NC (<= 4) K rows */
GG_FA_INLINE void gg_fa_scores(const int NC, const int NV, const float *kf, int64_t dk, const float *qt,
                               float *St) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 4
        for (int x = 0; x < NV; x++) acc[c][x] = _mm512_setzero_ps();
    for (int64_t d = 0; d < dk; d++) {
        __m512 qv[4];
#pragma GCC unroll 4
        for (int x = 0; x < NV; x++) qv[x] = _mm512_loadu_ps(qt + d * GG_FA_R + 16 * x);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const __m512 kv = _mm512_set1_ps(kf[c * dk + d]);
#pragma GCC unroll 4
            for (int x = 0; x < NV; x++) acc[c][x] = _mm512_fmadd_ps(kv, qv[x], acc[c][x]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 4
        for (int x = 0; x < NV; x++) _mm512_storeu_ps(St + c * GG_FA_R + 16 * x, acc[c][x]);
}

/* O[r][j0..j0+16 NJ) += sum_c Pt[c][r] * vf[c][j0..) for NR (<= 4) vectors */
GG_FA_INLINE void gg_fa_pv(const int NR, const int NJ, const float *Pt, int64_t r0, const float *vf, int64_t dv,
                           int64_t bk, float *O, int64_t j0) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int x = 0; x < NJ; x++) acc[r][x] = _mm512_loadu_ps(O + (r0 + r) * dv + j0 + 16 * x);
    for (int64_t c = 0; c < bk; c++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int x = 0; x < NJ; x++) vv[x] = _mm512_loadu_ps(vf + c * dv + j0 + 16 * x);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m512 pv = _mm512_set1_ps(Pt[c * GG_FA_R + r0 + r]);
#pragma GCC unroll 4
            for (int x = 0; x < NJ; x++) acc[r][x] = _mm512_fmadd_ps(pv, vv[x], acc[r][x]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int x = 0; x < NJ; x++) _mm512_storeu_ps(O + (r0 + r) * dv + j0 + 16 * x, acc[r][x]);
}

/* F(A, N, ...) with N = n (1..4, above 4 taken as 4) a compile-time constant,
 * so the register blocks of the kernels below unroll */
#define GG_FA_CONST4(n, F, A, ...) do {                                     \
        switch (n) {                                                        \
        case 1: F(A, 1, __VA_ARGS__); break;                                \
        case 2: F(A, 2, __VA_ARGS__); break;                                \
        case 3: F(A, 3, __VA_ARGS__); break;                                \
        default: F(A, 4, __VA_ARGS__); break;                               \
        }                                                                   \
    } while (0)
#define GG_FA_SCORES_NV(NC, nv, ...) GG_FA_CONST4(nv, gg_fa_scores, NC, __VA_ARGS__)
#define GG_FA_PV_NJ(NR, nj, ...) GG_FA_CONST4(nj, gg_fa_pv, NR, __VA_ARGS__)

static void gg_fa_tiled(const gg_params *p, gg_tensor *dst, float scale, float softcap, float max_bias) {
    const gg_tensor *q = dst->src[0], *k = dst->src[1], *v = dst->src[2], *mask = dst->src[3];
    const int64_t DK = k->ne[0], DV = v->ne[0];
    const int64_t n_q = q->ne[1], n_head = q->ne[2], n_kv = k->ne[1], ne3 = q->ne[3];
    const int64_t g = n_head / k->ne[2];
    const int64_t bq = GG_MAX(1, GG_FA_R / g);                 /* q rows per unit */
    const int64_t nqb = (n_q + bq - 1) / bq;
    const int64_t n_units = nqb * (n_head / g) * ne3;

    const uint32_t n_head_log2 = 1u << (uint32_t)floor(log2((double)n_head));
    const float m0 = powf(2.0f, -(max_bias) / (float)n_head_log2);
    const float m1 = powf(2.0f, -(max_bias / 2.0f) / (float)n_head_log2);

    float *kf = (float *)p->wdata + (size_t)p->ith * gg_fa_tiled_floats(DK, DV);
    float *vf = kf + GG_FA_BK * DK;
    float *St = vf + GG_FA_BK * DV;                   /* [BK][R] scores, then P */
    float *O = St + GG_FA_BK * GG_FA_R;               /* [R][DV] */
    float *qt = O + GG_FA_R * DV;                     /* [DK][R] */
    float *Mx = qt + DK * GG_FA_R, *L = Mx + GG_FA_R, *alpha = L + GG_FA_R;

    const uint16_t *mp[GG_FA_R];
    float slope[GG_FA_R];
    int64_t rq1[GG_FA_R], rq2[GG_FA_R];

    for (int64_t iu = p->ith; iu < n_units; iu += p->nth) {
        const int64_t iqb = iu % nqb, ikv = (iu / nqb) % (n_head / g), iq3 = iu / (nqb * (n_head / g));
        const int64_t q0 = iqb * bq, nqr = GG_MIN(bq, n_q - q0);
        const int64_t R = nqr * g, nv = (R + 15) / 16;
        for (int64_t r = 0; r < nv * 16; r++) {
            Mx[r] = -INFINITY;
            L[r] = 0.0f;
            if (r >= R) {                                /* lanes past the unit's vectors */
                for (int64_t d = 0; d < DK; d++) qt[d * GG_FA_R + r] = 0.0f;
                continue;
            }
            const int64_t iq1 = q0 + r / g, iq2 = ikv * g + r % g;
            const uint32_t h = (uint32_t)iq2;
            rq1[r] = iq1;
            rq2[r] = iq2;
            slope[r] = max_bias > 0.0f
                ? (h < n_head_log2 ? powf(m0, (float)(h + 1)) : powf(m1, (float)(2 * (h - n_head_log2) + 1)))
                : 1.0f;
            mp[r] = mask ? (const uint16_t *)((const char *)mask->data + iq1 * mask->nb[1] +
                                              (iq2 % mask->ne[2]) * mask->nb[2] + (iq3 % mask->ne[3]) * mask->nb[3])
                         : NULL;
            const float *pq = (const float *)((const char *)q->data + iq1 * q->nb[1] + iq2 * q->nb[2] + iq3 * q->nb[3]);
            for (int64_t d = 0; d < DK; d++) qt[d * GG_FA_R + r] = pq[d] * scale;
            memset(O + r * DV, 0, (size_t)DV * sizeof(float));
        }
        const char *kbase = (const char *)k->data + ikv * k->nb[2] + iq3 * k->nb[3];
        const char *vbase = (const char *)v->data + ikv * v->nb[2] + iq3 * v->nb[3];

        for (int64_t kb = 0; kb < n_kv; kb += GG_FA_BK) {
            const int64_t bk = GG_MIN(GG_FA_BK, n_kv - kb);
            /* one pass over the unit's mask rows: the block's rows every vector masks
             * out (hidden; all of them: skip the block), and whether the mask is all
             * zero there (the past of a causal batch: nothing to add). Hidden rows (the
             * unfilled end of a padded cache) are taken as zeros: whatever they hold
             * (NaN, inf) must not reach the sums, and 0 * NaN would. */
            bool zero_mask = true;
            uint64_t hidden = 0;
            if (mask) {
                const uint64_t all = bk >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << bk) - 1);
                const __m256i ninf = _mm256_set1_epi16((short)0xFC00), abs = _mm256_set1_epi16(0x7FFF);
                hidden = all;
                for (int64_t r = 0; r < R && (hidden || zero_mask); r++) {
                    for (int64_t c = 0; c < bk; c += 16) {
                        const __mmask16 in = bk - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (bk - c)) - 1);
                        const __m256i mv = _mm256_maskz_loadu_epi16(in, mp[r] + kb + c);
                        const uint64_t seen = (uint64_t)(uint16_t)~_mm256_mask_cmpeq_epi16_mask(in, mv, ninf);
                        hidden &= ~(seen << c);
                        zero_mask = zero_mask && _mm256_testz_si256(mv, abs);       /* +-0 only */
                    }
                }
                if (hidden == all) continue;
            }
            for (int64_t c = 0; c < bk; c++) {
                if (hidden >> c & 1) {
                    memset(kf + c * DK, 0, (size_t)DK * sizeof(float));
                    memset(vf + c * DV, 0, (size_t)DV * sizeof(float));
                    continue;
                }
                gg_fa_row_f32(k->type, kbase + (kb + c) * k->nb[1], kf + c * DK, DK);
                gg_fa_row_f32(v->type, vbase + (kb + c) * v->nb[1], vf + c * DV, DV);
            }
            int64_t c = 0;
            for (; c + 4 <= bk; c += 4) GG_FA_SCORES_NV(4, nv, kf + c * DK, DK, qt, St + c * GG_FA_R);
            for (; c < bk; c++) GG_FA_SCORES_NV(1, nv, kf + c * DK, DK, qt, St + c * GG_FA_R);

            /* softcap and mask, by vector (scalar: only blocks on the diagonal of a
             * causal batch get here, and they are few) */
            for (int64_t r = 0; r < R && !(zero_mask && softcap == 0.0f); r++) {
                for (c = 0; c < bk; c++) {
                    float x = St[c * GG_FA_R + r];
                    if (softcap != 0.0f) x = softcap * tanhf(x);
                    if (mp[r]) x = mp[r][kb + c] == 0xFC00 ? -INFINITY : x + slope[r] * gg_fp16_to_fp32(mp[r][kb + c]);
                    St[c * GG_FA_R + r] = x;
                }
            }
            /* the online softmax, 16 vectors per zmm */
            for (int64_t x = 0; x < nv; x++) {
                __m512 mx = _mm512_set1_ps(-INFINITY);
                for (c = 0; c < bk; c++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(St + c * GG_FA_R + 16 * x));
                const __m512 m_old = _mm512_loadu_ps(Mx + 16 * x);
                const __m512 m_new = _mm512_max_ps(m_old, mx);
                /* lanes still at -inf (nothing seen yet) subtract 0: exp(-inf) = 0, no NaN */
                const __mmask16 live = _mm512_cmp_ps_mask(m_new, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
                const __m512 m_sub = _mm512_maskz_mov_ps(live, m_new);
                const __m512 a = _mm512_mask_blend_ps(live, _mm512_set1_ps(1.0f),
                                                      gg_fa_exp16(_mm512_sub_ps(m_old, m_sub)));
                __m512 sum = _mm512_setzero_ps();
                for (c = 0; c < bk; c++) {
                    const __m512 e = gg_fa_exp16(_mm512_sub_ps(_mm512_loadu_ps(St + c * GG_FA_R + 16 * x), m_sub));
                    _mm512_storeu_ps(St + c * GG_FA_R + 16 * x, e);
                    sum = _mm512_add_ps(sum, e);
                }
                _mm512_storeu_ps(L + 16 * x, _mm512_fmadd_ps(_mm512_loadu_ps(L + 16 * x), a, sum));
                _mm512_storeu_ps(Mx + 16 * x, m_new);
                _mm512_storeu_ps(alpha + 16 * x, a);
            }
            for (int64_t r = 0; r < R; r++) {
                if (alpha[r] != 1.0f) {
                    const __m512 av = _mm512_set1_ps(alpha[r]);
                    for (int64_t j = 0; j < DV; j += 16) {
                        _mm512_storeu_ps(O + r * DV + j, _mm512_mul_ps(_mm512_loadu_ps(O + r * DV + j), av));
                    }
                }
            }
            for (int64_t j0 = 0; j0 < DV; j0 += 64) {
                const int64_t nj = GG_MIN(4, (DV - j0) / 16);
                int64_t r = 0;
                for (; r + 4 <= R; r += 4) GG_FA_PV_NJ(4, nj, St, r, vf, DV, bk, O, j0);
                for (; r < R; r++) GG_FA_PV_NJ(1, nj, St, r, vf, DV, bk, O, j0);
            }
        }
        for (int64_t r = 0; r < R; r++) {
            const float inv = L[r] == 0.0f ? 0.0f : 1.0f / L[r];
            float *y = (float *)((char *)dst->data + rq2[r] * dst->nb[1] + rq1[r] * dst->nb[2] + iq3 * dst->nb[3]);
            for (int64_t d = 0; d < DV; d++) y[d] = O[r * DV + d] * inv;
        }
    }
}
#endif

/* ---- the row-at-a-time path's AVX-512 block kernel (decode) ----
 *
 * One q row of g heads against a block of up to GG_FA_RB K/V rows, the same
 * online softmax as the scalar loop in gg_fwd_flash_attn_ext. Scores are
 * taken 8 K rows at a time: each row is converted to f32 once and multiplied
 * with the q of up to 3 heads (one vector of partial products over d per row
 * and head), then a transpose-and-add tree turns a head's 8 vectors into the
 * 8 rows' scores. Mask, softcap, max and exp then run 16 rows per
 * instruction. For V, each row is converted once and added into up to 4
 * heads' outputs, held in registers for the whole block. Rows the mask hides
 * get score -inf and weight 0 and are never added, so a masked row holding
 * NaN or garbage (the unfilled end of a padded cache) changes nothing.
 * Switched with the tiled path (gg_fa_tiled_enable). */
#define GG_FA_RB 64         /* K/V rows per block of the row-at-a-time path */
#define GG_FA_ROWS GG_FA_TILED

static inline bool gg_fa_rows_ok(int simd, int64_t dk, int64_t dv) {
    return GG_FA_ROWS && simd && atomic_load(&gg_fa_tiled_on) && dk % 16 == 0 && dv % 16 == 0 &&
           dk <= GG_FA_DMAX && dv <= GG_FA_DMAX;
}

#if GG_FA_ROWS
/* 16 values of a K/V row of type T (or of `type` when T < 0) from value i, as f32 */
GG_FA_INLINE __m512 gg_fa_load16(const int T, int type, const char *row, int64_t i) {
    const int t = T >= 0 ? T : type;
    if (t == GG_TYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
    if (t == GG_TYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i))), 16));
    return _mm512_loadu_ps((const float *)row + i);
}

/* lane r (< 8) = the sum of the 16 lanes of p[r] */
GG_FA_INLINE __m256 gg_fa_hsum8(const __m512 p[8]) {
    __m512 t[4], u[2];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * i], p[2 * i + 1]), _mm512_unpackhi_ps(p[2 * i], p[2 * i + 1]));
    for (int i = 0; i < 2; i++) {
        const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* u[i]: 128-bit lane L holds rows 4i..4i+3, summed over that lane's d */
    const __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 1, 2, 0)),
                                   _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 0, 3, 1)));
    return _mm512_castps512_ps256(w);
}

/* raw scores (q . k) of NH heads (q: NH rows of NQ * 16 floats) over the
 * block's rows [0, bk), 8 rows at a time: each K row is converted once and
 * multiplied with every head's q; rows past bk in the last 8 repeat row
 * bk - 1 (never read past the block) and are not stored */
GG_FA_INLINE void gg_fa_scores_heads(const int T, const int NH, const int NQC, int type, int64_t nq,
                                     const float *const *q, const char *krow0, size_t nb1, int64_t bk,
                                     float scale, float *const *sc) {
    const int64_t NQ = NQC > 0 ? NQC : nq;
    for (int64_t c = 0; c < bk; c += 8) {
        __m512 p[3][8];
        for (int r = 0; r < 8; r++) {
            const char *row = krow0 + (size_t)GG_MIN(c + r, bk - 1) * nb1;
            __m512 kv = gg_fa_load16(T, type, row, 0);
            for (int h = 0; h < NH; h++) p[h][r] = _mm512_mul_ps(kv, _mm512_loadu_ps(q[h]));
            for (int64_t x = 1; x < NQ; x++) {
                kv = gg_fa_load16(T, type, row, 16 * x);
                for (int h = 0; h < NH; h++) p[h][r] = _mm512_fmadd_ps(kv, _mm512_loadu_ps(q[h] + 16 * x), p[h][r]);
            }
        }
        const __mmask8 in = bk - c >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (bk - c)) - 1);
        for (int h = 0; h < NH; h++)
            _mm256_mask_storeu_ps(sc[h] + c, in, _mm256_mul_ps(gg_fa_hsum8(p[h]), _mm256_set1_ps(scale)));
    }
}

/* for NH (<= 4) heads h: acc[h][0..16 NJ) += sum_c w[h][c] * vf[c][...], skipping
 * rows every one of them weighs 0; the heads' NH * NJ chains of FMAs run
 * side by side (one head alone splits its rows over two sets, so the adds
 * do not wait on each other) */
GG_FA_INLINE void gg_fa_pv_heads(const int T, const int NH, const int NJ, int type, float *const *acc,
                                 const float *const *w, const char *vrow0, size_t nb1, int64_t d0, int64_t bk) {
    const int NS = NH == 1 ? 2 : 1;
    __m512 o[4][2][4];
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < NS; t++)
            for (int x = 0; x < NJ; x++) o[h][t][x] = t ? _mm512_setzero_ps() : _mm512_loadu_ps(acc[h] + 16 * x);
    for (int64_t c = 0; c < bk; c++) {
        bool live = false;
        for (int h = 0; h < NH; h++) live = live || w[h][c] != 0.0f;
        if (!live) continue;
        const int t = NS == 2 ? (int)(c & 1) : 0;
        const char *row = vrow0 + (size_t)c * nb1;
        __m512 vv[4];
        for (int x = 0; x < NJ; x++) vv[x] = gg_fa_load16(T, type, row, d0 + 16 * x);
        for (int h = 0; h < NH; h++) {
            const __m512 wv = _mm512_set1_ps(w[h][c]);
            for (int x = 0; x < NJ; x++) o[h][t][x] = _mm512_fmadd_ps(wv, vv[x], o[h][t][x]);
        }
    }
    for (int h = 0; h < NH; h++)
        for (int x = 0; x < NJ; x++)
            _mm512_storeu_ps(acc[h] + 16 * x, NS == 2 ? _mm512_add_ps(o[h][0][x], o[h][1][x]) : o[h][0][x]);
}

#define GG_FA_PV_HEADS_T(NH, NJ, type, ...) do {                            \
        if ((type) == GG_TYPE_F16) gg_fa_pv_heads(GG_TYPE_F16, NH, NJ, type, __VA_ARGS__); \
        else gg_fa_pv_heads(-1, NH, NJ, type, __VA_ARGS__);                 \
    } while (0)
#define GG_FA_PV_HEADS_NJ(NH, nj, ...) GG_FA_CONST4(nj, GG_FA_PV_HEADS_T, NH, __VA_ARGS__)

/* the largest of sc[0..n) */
static inline float gg_fa_max(const float *sc, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 in = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
        m = _mm512_mask_max_ps(m, in, m, _mm512_maskz_loadu_ps(in, sc + c));
    }
    return _mm512_reduce_max_ps(m);
}

/* any of the n f16 mask values not -inf */
static bool gg_fa_mask_any(const uint16_t *m, int64_t n) {
    int64_t c = 0;
    const __m256i ninf = _mm256_set1_epi16((short)0xFC00);
    for (; c + 16 <= n; c += 16)
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_loadu_si256((const __m256i *)(m + c)), ninf)) != -1) return true;
    for (; c < n; c++)
        if (m[c] != 0xFC00) return true;
    return false;
}

/* softcap, ALiBi-scaled mask, and -inf wherever the mask hides a row (whatever
 * its score: garbage K in a padded cache may give NaN) over sc[0..bk) */
static void gg_fa_block_finish(float *sc, int64_t bk, const uint16_t *mrow, float slope, float softcap) {
    if (softcap != 0.0f)
        for (int64_t c = 0; c < bk; c++) sc[c] = softcap * tanhf(sc[c]);
    if (mrow == NULL) return;
    for (int64_t c = 0; c < bk; c += 16) {
        const __mmask16 in = bk - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (bk - c)) - 1);
        const __m512 mv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(in, mrow + c));
        __m512 x = _mm512_fmadd_ps(_mm512_set1_ps(slope), mv, _mm512_maskz_loadu_ps(in, sc + c));
        const __mmask16 hidden = _mm512_cmp_ps_mask(mv, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
        x = _mm512_mask_mov_ps(x, hidden, _mm512_set1_ps(-INFINITY));
        _mm512_mask_storeu_ps(sc + c, in, x);
    }
}

/* the scores of heads [0, gn) over the block, dispatched on the K type and head size */
static void gg_fa_block_scores(int type, int64_t DK, int64_t gn, const float *const *pq, const char *krow0,
                               size_t nb1, int64_t bk, float scale, float *const *sc) {
    const int64_t nq = DK / 16;
    const int64_t hc = DK <= 64 ? 3 : DK <= 128 ? 2 : 1;      /* heads per pass: p[][] + K row in registers */
    for (int64_t h0 = 0; h0 < gn; h0 += hc) {
        const int nh = (int)GG_MIN(hc, gn - h0);
        const float *const *q = pq + h0;
        float *const *o = sc + h0;
#define GG_FA_SC(T, NH, NQC) gg_fa_scores_heads(T, NH, NQC, type, nq, q, krow0, nb1, bk, scale, o)
        if (type == GG_TYPE_F16 && nq == 4) {
            if (nh == 3) GG_FA_SC(GG_TYPE_F16, 3, 4);
            else if (nh == 2) GG_FA_SC(GG_TYPE_F16, 2, 4);
            else GG_FA_SC(GG_TYPE_F16, 1, 4);
        } else if (type == GG_TYPE_F16 && nq == 8) {
            if (nh == 2) GG_FA_SC(GG_TYPE_F16, 2, 8);
            else GG_FA_SC(GG_TYPE_F16, 1, 8);
        } else {
            if (nh == 3) GG_FA_SC(-1, 3, 0);
            else if (nh == 2) GG_FA_SC(-1, 2, 0);
            else GG_FA_SC(-1, 1, 0);
        }
#undef GG_FA_SC
    }
}
#endif

#define GG_FA_SPLIT_MIN 1024

/* the row-at-a-time path cuts the K/V rows of each unit among threads when
 * there are few units (decode: one q row, n_head / g units), each piece giving
 * a partial (unnormalized output, max, sum) that a second phase merges */
static int64_t gg_fa_nsplit(int64_t n_units, int64_t n_kv, int nth) {
    if (nth <= 1 || n_units >= 2 * nth) return 1;
    /* pieces of at least GG_FA_SPLIT_MIN rows: on short caches the merge and its
     * barrier cost more than the idle thread (SmolLM2 tg128 from an empty cache,
     * n_kv 256: 220-227 t/s split in two, 250 not split) */
    const int64_t ns = GG_MIN((2 * nth + n_units - 1) / n_units, n_kv / GG_FA_SPLIT_MIN);
    return GG_MAX(1, ns);
}

static int64_t gg_fa_group(int64_t n_head, const gg_tensor *k, const gg_tensor *v) {
    const int64_t rk2 = n_head / k->ne[2], rv2 = n_head / v->ne[2];
    return rk2 == rv2 ? rk2 : 1;
}

size_t gg_fa_work_bytes(int64_t dk, int64_t dv, int64_t n_q, int64_t n_head, int64_t n_head_kv, int64_t n_head_v,
                        int64_t ne3, int64_t n_kv, int nth) {
    const int64_t rk2 = n_head / n_head_kv, rv2 = n_head / n_head_v;
    const int64_t g = rk2 == rv2 ? rk2 : 1;
    const int64_t n_units = n_q * ne3 * (n_head / g);
    const int64_t ns = gg_fa_nsplit(n_units, n_kv, nth);
    size_t floats = (size_t)nth * gg_fa_stride(dk, dv, g);
    if (ns > 1) floats += (size_t)(n_units * ns * g * (dv + 2));
    if (GG_FA_TILED) floats = GG_MAX(floats, (size_t)nth * gg_fa_tiled_floats(dk, dv));
    return floats * sizeof(float);
}

/* sj[c] = exp(sj[c] - m) for c < n, 0 where sj[c] is -inf; returns the sum */
static float gg_fa_exp_block(int simd, float *sj, float m, int64_t n) {
    int64_t c = 0;
    float sum = 0.0f;
#if GG_AVX2
    if (simd) {
        const __m256 mv = _mm256_set1_ps(m), ninf = _mm256_set1_ps(-INFINITY);
        __m256 acc = _mm256_setzero_ps();
        for (; c + 8 <= n; c += 8) {
            const __m256 x = _mm256_loadu_ps(sj + c);
            const __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(x, ninf, _CMP_EQ_OQ), gg_v_expf(_mm256_sub_ps(x, mv)));
            _mm256_storeu_ps(sj + c, e);
            acc = _mm256_add_ps(acc, e);
        }
        sum = gg_hsum_avx(acc);
    }
#endif
    for (; c < n; c++) {
        sj[c] = sj[c] == -INFINITY ? 0.0f : expf(sj[c] - m);
        sum += sj[c];
    }
    return sum;
}

/* folds one head's scores of a block (sc[0..bk), their max bmax) into its running
 * max M, sum S and output acc: one rescale when the block raises the max, then sc
 * becomes the weights exp(s - M). False (nothing changed) when the block is all
 * masked for this head. */
static bool gg_fa_softmax_block(int simd, float *sc, int64_t bk, float bmax, float *M, float *S, float *acc,
                                int64_t DV) {
    if (bmax == -INFINITY) return false;
    const float m_new = bmax > *M ? bmax : *M;
    if (*M != -INFINITY && m_new != *M) {
        const float ms = expf(*M - m_new);
        gg_vec_scale_f32(simd, acc, acc, ms, DV);
        *S *= ms;
    }
    *M = m_new;
    *S += gg_fa_exp_block(simd, sc, m_new, bk);
    return true;
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
     * K/V row is loaded once for all g of them; with few units their K/V rows are cut
     * into nsplit pieces */
    const int64_t nr1 = n_q * q->ne[3];
    const int64_t g = gg_fa_group(n_head, k, v);
    const int64_t n_units = nr1 * (n_head / g);
    const int64_t nsplit = gg_fa_nsplit(n_units, n_kv, p->nth);

    const size_t stride = gg_fa_stride(DK, DV, g);
    if (p->wdata == NULL ||
        p->wsize < gg_fa_work_bytes(DK, DV, n_q, n_head, k->ne[2], v->ne[2], q->ne[3], n_kv, p->nth)) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }

    float scale = pp->scale;
    const float max_bias = pp->max_bias, softcap = pp->logit_softcap;
    if (softcap != 0.0f) scale /= softcap;
#if GG_FA_TILED
    if (gg_fa_tiled_ok(p->use_simd, q, k, v)) {
        gg_fa_tiled(p, dst, scale, softcap, max_bias);
        return;
    }
#endif

    /* ALiBi slopes: heads below the largest power of two <= n_head use m0, the rest m1 */
    const uint32_t n_head_log2 = 1u << (uint32_t)floor(log2((double)n_head));
    const float m0 = powf(2.0f, -(max_bias) / (float)n_head_log2);
    const float m1 = powf(2.0f, -(max_bias / 2.0f) / (float)n_head_log2);

    const int64_t dvp = (DV + 15) / 16 * 16;
    float *acc = (float *)p->wdata + (size_t)p->ith * stride;          /* g rows of dvp */
    float *tmp = acc + g * dvp;
    float *M = tmp + (GG_MAX(DK, DV) + 15) / 16 * 16;                    /* largest score so far */
    float *S = M + g;                                                    /* sum of exp(s - M) */
    float *part = (float *)p->wdata + (size_t)p->nth * stride;          /* [unit][split][g][DV + 2] */
    const int simd = p->use_simd;
    const bool rows_simd = gg_fa_rows_ok(simd, DK, DV);

    const float *pq[GG_MAX_GROUP];
    const uint16_t *mp[GG_MAX_GROUP];
    float slope[GG_MAX_GROUP];
    float sc[GG_MAX_GROUP][GG_FA_RB];          /* a block's scores, then its weights */
#if GG_FA_ROWS
    float *scp[GG_MAX_GROUP];                  /* its rows, for the block kernel */
    for (int j = 0; j < GG_MAX_GROUP; j++) scp[j] = sc[j];
#endif
    bool live[GG_MAX_GROUP];

    for (int64_t it = p->ith; it < n_units * nsplit; it += p->nth) {
        const int64_t iu = it / nsplit, isp = it % nsplit;
        const int64_t iq1 = iu % n_q;                         /* q row */
        const int64_t ig = (iu / n_q) % (n_head / g);         /* group of heads */
        const int64_t iq3 = iu / (n_q * (n_head / g));
        const int64_t h0 = ig * g;                            /* first head of the unit */
        const int64_t c0 = n_kv * isp / nsplit, c1 = n_kv * (isp + 1) / nsplit;

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

#if GG_FA_ROWS
            /* the same steps with the AVX-512 block kernel (see above it) */
            for (int64_t kb = c0; rows_simd && kb < c1; kb += GG_FA_RB) {
                const int64_t bk = GG_MIN(GG_FA_RB, c1 - kb);
                bool any = mask == NULL;
                for (int64_t j = 0; j < gn && !any; j++) {
                    if (j == 0 || mp[j] != mp[j - 1]) any = gg_fa_mask_any(mp[j] + kb, bk);
                }
                if (!any) continue;
                gg_fa_block_scores(k->type, DK, gn, pq, kbase + kb * k->nb[1], k->nb[1], bk, scale, scp);
                any = false;
                for (int64_t j = 0; j < gn; j++) {
                    gg_fa_block_finish(sc[j], bk, mp[j] ? mp[j] + kb : NULL, slope[j], softcap);
                    live[j] = gg_fa_softmax_block(simd, sc[j], bk, gg_fa_max(sc[j], bk), &M[j], &S[j], acc + j * dvp, DV);
                    any = any || live[j];
                }
                if (!any) continue;
                /* the live heads, up to 4 at a time, each 64 values of V at a time */
                const char *vrow0 = vbase + kb * v->nb[1];
                int64_t lh[GG_MAX_GROUP], nl = 0;
                for (int64_t j = 0; j < gn; j++)
                    if (live[j]) lh[nl++] = j;
                for (int64_t h0 = 0; h0 < nl; h0 += 4) {
                    const int nh = (int)GG_MIN(4, nl - h0);
                    for (int64_t d0 = 0; d0 < DV; d0 += 64) {
                        float *ah[4];
                        const float *wh[4];
                        for (int h = 0; h < nh; h++) {
                            ah[h] = acc + lh[h0 + h] * dvp + d0;
                            wh[h] = sc[lh[h0 + h]];
                        }
                        const int64_t nj = GG_MIN(4, (DV - d0) / 16);
                        switch (nh) {
                        case 1: GG_FA_PV_HEADS_NJ(1, nj, v->type, ah, wh, vrow0, v->nb[1], d0, bk); break;
                        case 2: GG_FA_PV_HEADS_NJ(2, nj, v->type, ah, wh, vrow0, v->nb[1], d0, bk); break;
                        case 3: GG_FA_PV_HEADS_NJ(3, nj, v->type, ah, wh, vrow0, v->nb[1], d0, bk); break;
                        default: GG_FA_PV_HEADS_NJ(4, nj, v->type, ah, wh, vrow0, v->nb[1], d0, bk); break;
                        }
                    }
                }
            }
#endif
            /* per block of rows: the scores of every head, one rescale of its running
             * output when the block raises its max, the weights exp(s - max) in one
             * vector pass, then each V row is read once for all heads */
            for (int64_t kb = c0; !rows_simd && kb < c1; kb += GG_FA_RB) {
                const int64_t bk = GG_MIN(GG_FA_RB, c1 - kb);
                bool any = false;
                for (int64_t j = 0; j < gn; j++) {
                    float bmax = -INFINITY;
                    for (int64_t c = 0; c < bk; c++) {
                        const float mv = mp[j] ? slope[j] * gg_fp16_to_fp32(mp[j][kb + c]) : 0.0f;
                        if (mv == -INFINITY) {
                            sc[j][c] = -INFINITY;
                            continue;
                        }
                        float s = gg_fa_dot(simd, k->type, pq[j], kbase + (kb + c) * k->nb[1], tmp, DK) * scale;
                        if (softcap != 0.0f) s = softcap * tanhf(s);
                        s += mv;
                        sc[j][c] = s;
                        bmax = s > bmax ? s : bmax;
                    }
                    live[j] = gg_fa_softmax_block(simd, sc[j], bk, bmax, &M[j], &S[j], acc + j * dvp, DV);
                    any = any || live[j];
                }
                if (!any) continue;
                for (int64_t c = 0; c < bk; c++) {
                    const char *vrow = vbase + (kb + c) * v->nb[1];
                    for (int64_t j = 0; j < gn; j++) {
                        if (live[j] && sc[j][c] != 0.0f) gg_fa_mad(simd, v->type, acc + j * dvp, vrow, sc[j][c], tmp, DV);
                    }
                }
            }

            for (int64_t j = 0; j < gn; j++) {
                const int64_t iq2 = h0 + j0 + j;
                if (nsplit > 1) {                    /* a partial, merged below */
                    float *pj = part + ((iu * nsplit + isp) * g + j0 + j) * (DV + 2);
                    memcpy(pj, acc + j * dvp, (size_t)DV * sizeof(float));
                    pj[DV] = M[j];
                    pj[DV + 1] = S[j];
                    continue;
                }
                const float S_inv = S[j] == 0.0f ? 0.0f : 1.0f / S[j];
                /* permuted: dst[:, head, q row, iq3] */
                float *y = (float *)((char *)dst->data + iq2 * dst->nb[1] + iq1 * dst->nb[2] + iq3 * dst->nb[3]);
                gg_vec_scale_f32(simd, y, acc + j * dvp, S_inv, DV);
            }
        }
    }
    if (nsplit == 1) return;

    /* merge the pieces of each unit: rescale each to the largest max, add, divide */
    gg_barrier(p);
    for (int64_t iu = p->ith; iu < n_units; iu += p->nth) {
        const int64_t iq1 = iu % n_q, ig = (iu / n_q) % (n_head / g), iq3 = iu / (n_q * (n_head / g));
        for (int64_t j = 0; j < g; j++) {
            const int64_t iq2 = ig * g + j;
            float mx = -INFINITY, sum = 0.0f;
            for (int64_t isp = 0; isp < nsplit; isp++) {
                const float mi = part[((iu * nsplit + isp) * g + j) * (DV + 2) + DV];
                mx = mi > mx ? mi : mx;
            }
            float *y = (float *)((char *)dst->data + iq2 * dst->nb[1] + iq1 * dst->nb[2] + iq3 * dst->nb[3]);
            memset(y, 0, (size_t)DV * sizeof(float));
            if (mx == -INFINITY) continue;                  /* every row masked: 0 */
            for (int64_t isp = 0; isp < nsplit; isp++) {
                const float *pj = part + ((iu * nsplit + isp) * g + j) * (DV + 2);
                if (pj[DV] == -INFINITY) continue;
                const float w = expf(pj[DV] - mx);
                sum += pj[DV + 1] * w;
                for (int64_t d = 0; d < DV; d++) y[d] += pj[d] * w;
            }
            gg_vec_scale_f32(simd, y, y, sum == 0.0f ? 0.0f : 1.0f / sum, DV);
        }
    }
}
