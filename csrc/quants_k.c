/*
 * quants_k.c: the 256-element super-block types Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K and the activation type Q8_K. Layouts in quants.h.
 *
 * Element order inside a super-block (e = element index 0..255):
 *   Q4_K/Q5_K: e = 64c + 32s + l: nibble s of qs[32c + l] (+16 if bit 2c+s
 *              of qh[l], Q5_K); sub-block j = 2c + s (32 elements) with a
 *              6-bit scale and a 6-bit min, packed into 12 bytes.
 *   Q2_K/Q3_K: e = 128h + 32j + l: bits 2j..2j+1 of qs[32h + l]; Q3_K's third
 *              bit is bit 4h+j of hmask[l] (set means +0, clear means -4);
 *              group g = e/16 with a 4-bit scale + 4-bit min (Q2_K) or a
 *              6-bit signed scale packed into 12 bytes (Q3_K).
 *   Q6_K:      e = 128h + 32k + l: low 4 bits from ql[64h + 32(k&1) + l]
 *              (low nibble for k < 2, high for k >= 2), top 2 bits from bits
 *              2k..2k+1 of qh[32h + l], minus 32; group g = e/16, int8 scale.
 * Q8_K holds activations: d = max/-127 (signed max), q = round(x/d), and
 * bsums = sums of 16-element groups of q, so the K types' vec_dot gets the
 * min / offset terms from bsums instead of touching q8 again.
 *
 * Quantization follows ggml's reference quantizers (quantize_row_q*_K_ref):
 * the same scale searches with the same float operations in the same order,
 * so the bytes match. It is scalar on both paths (a one-time conversion);
 * the file is compiled without fp contraction so a*b+c stays two roundings,
 * as in the reference (and as numpy's dequantize computes).
 */
#include "quants.h"
#include "vec.h"

#pragma GCC optimize("fp-contract=off")

#define GG_GROUP_MAX_EPS 1e-15f

/* round to nearest, ties to even (adds 1.5*2^23 so the fraction is rounded
 * away by the float add); clamped to the range where that trick is exact */
static inline int gg_qround(float v) {
    v = v > 4194303.0f ? 4194303.0f : v < -4194303.0f ? -4194303.0f : v;
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int gg_imin(int a, int b) { return a < b ? a : b; }
static inline int gg_imax(int a, int b) { return a > b ? a : b; }

/* Q4_K/Q5_K: the 8 6-bit scales and 8 6-bit mins of the 12 packed bytes.
 * bytes 0..3: scales 0..3 (low 6 bits), top 2 bits = high bits of scales 4..7
 * bytes 4..7: mins 0..3 (low 6 bits),   top 2 bits = high bits of mins 4..7
 * bytes 8..11: low nibble = scales 4..7 low 4 bits, high nibble = mins 4..7 */
static inline void gg_k4_unpack(const uint8_t *p, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t w[3], s[2], m[2];
    memcpy(w, p, 12);
    s[0] = w[0] & 0x3f3f3f3fu;
    m[0] = w[1] & 0x3f3f3f3fu;
    s[1] = (w[2] & 0x0f0f0f0fu) | (((w[0] >> 6) & 0x03030303u) << 4);
    m[1] = ((w[2] >> 4) & 0x0f0f0f0fu) | (((w[1] >> 6) & 0x03030303u) << 4);
    memcpy(sc, s, 8);
    memcpy(mn, m, 8);
}

static inline void gg_k4_pack(uint8_t *p, const uint8_t ls[8], const uint8_t lm[8]) {
    for (int j = 0; j < 4; j++) {
        p[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
        p[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
        p[j + 8] = (uint8_t)((ls[j + 4] & 0xf) | ((lm[j + 4] & 0xf) << 4));
    }
}

/* Q3_K: the 16 6-bit scales (still biased by +32). Scale j: low 4 bits are
 * nibble j/8 of byte j%8, top 2 bits are bits 2(j/4).. of byte 8 + j%4. */
static inline void gg_q3k_unpack(const uint8_t *p, uint8_t sc[16]) {
    uint32_t w[3], s[4];
    memcpy(w, p, 12);
    s[0] = (w[0] & 0x0f0f0f0fu) | (((w[2] >> 0) & 0x03030303u) << 4);
    s[1] = (w[1] & 0x0f0f0f0fu) | (((w[2] >> 2) & 0x03030303u) << 4);
    s[2] = ((w[0] >> 4) & 0x0f0f0f0fu) | (((w[2] >> 4) & 0x03030303u) << 4);
    s[3] = ((w[1] >> 4) & 0x0f0f0f0fu) | (((w[2] >> 6) & 0x03030303u) << 4);
    memcpy(sc, s, 16);
}

/* ---- unpacking the quants of one super-block (scalar paths) ---- */

static void gg_q2k_quants(const gg_block_q2_K *b, uint8_t q[GG_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * j + l] = (b->qs[32 * h + l] >> (2 * j)) & 3;
}

static void gg_q3k_quants(const gg_block_q3_K *b, int8_t q[GG_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int lo = (b->qs[32 * h + l] >> (2 * j)) & 3;
                const int hi = (b->hmask[l] >> (4 * h + j)) & 1;
                q[128 * h + 32 * j + l] = (int8_t)(lo - (hi ? 0 : 4));
            }
}

static void gg_q4k_quants(const gg_block_q4_K *b, uint8_t q[GG_QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 0xf;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
}

static void gg_q5k_quants(const gg_block_q5_K *b, uint8_t q[GG_QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0xf) | (((b->qh[l] >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4));
        }
}

static void gg_q6k_quants(const gg_block_q6_K *b, int8_t q[GG_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = b->ql[64 * h + 32 * (k & 1) + l];
                const int v = (k < 2 ? lo & 0xf : lo >> 4) | (((b->qh[32 * h + l] >> (2 * k)) & 3) << 4);
                q[128 * h + 32 * k + l] = (int8_t)(v - 32);
            }
}

/* ---- dequantize: y = (d*scale)*q - (dmin*min), each product rounded to f32 ---- */

static void gg_dequantize_row_q2_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q2_K *x = (const gg_block_q2_K *)vx;
    uint8_t q[GG_QK_K];
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        const float d = gg_fp16_to_fp32(x[b].d), dmin = gg_fp16_to_fp32(x[b].dmin);
        gg_q2k_quants(&x[b], q);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(x[b].scales[g] & 0xf), ml = dmin * (float)(x[b].scales[g] >> 4);
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l] - ml;
        }
    }
}

static void gg_dequantize_row_q3_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q3_K *x = (const gg_block_q3_K *)vx;
    int8_t q[GG_QK_K];
    uint8_t sc[16];
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        const float d = gg_fp16_to_fp32(x[b].d);
        gg_q3k_quants(&x[b], q);
        gg_q3k_unpack(x[b].scales, sc);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)((int)sc[g] - 32);
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l];
        }
    }
}

static void gg_dequantize_row_q4_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q4_K *x = (const gg_block_q4_K *)vx;
    uint8_t q[GG_QK_K], sc[8], mn[8];
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        const float d = gg_fp16_to_fp32(x[b].d), dmin = gg_fp16_to_fp32(x[b].dmin);
        gg_q4k_quants(&x[b], q);
        gg_k4_unpack(x[b].scales, sc, mn);
        for (int j = 0; j < 8; j++) {
            const float dl = d * (float)sc[j], ml = dmin * (float)mn[j];
            for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)q[32 * j + l] - ml;
        }
    }
}

static void gg_dequantize_row_q5_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q5_K *x = (const gg_block_q5_K *)vx;
    uint8_t q[GG_QK_K], sc[8], mn[8];
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        const float d = gg_fp16_to_fp32(x[b].d), dmin = gg_fp16_to_fp32(x[b].dmin);
        gg_q5k_quants(&x[b], q);
        gg_k4_unpack(x[b].scales, sc, mn);
        for (int j = 0; j < 8; j++) {
            const float dl = d * (float)sc[j], ml = dmin * (float)mn[j];
            for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)q[32 * j + l] - ml;
        }
    }
}

static void gg_dequantize_row_q6_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q6_K *x = (const gg_block_q6_K *)vx;
    int8_t q[GG_QK_K];
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        const float d = gg_fp16_to_fp32(x[b].d);
        gg_q6k_quants(&x[b], q);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)x[b].scales[g];
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l];
        }
    }
}

static void gg_dequantize_row_q8_K(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q8_K *x = (const gg_block_q8_K *)vx;
    for (int64_t b = 0; b < n / GG_QK_K; b++, y += GG_QK_K) {
        for (int l = 0; l < GG_QK_K; l++) y[l] = x[b].d * (float)x[b].qs[l];
    }
}

/* ---- the reference scale searches ---- */

/* symmetric: L[i] in [0, 2*nmax), x ~ scale * (L[i] - nmax). Weighted by x^2
 * (rmse_type 1 of the reference): start from scale = max/-nmax, then try 18
 * nearby scales (nmax +- 0.1..0.9) and keep the least-squares best. */
static float gg_make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GG_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = gg_imax(-nmax, gg_imin(nmax - 1, gg_qround(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = gg_imax(-nmax, gg_imin(nmax - 1, gg_qround(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                L[i] = (int8_t)(nmax + gg_imax(-nmax, gg_imin(nmax - 1, gg_qround(iscale * x[i]))));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's symmetric search: start from max/-nmax, then up to 5 passes of
 * moving single quants to their best level for the current x^2-weighted
 * least-squares scale, keeping a move when it lowers the error */
static float gg_make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GG_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    const float iscale = (float)(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = gg_imax(-nmax, gg_imin(nmax - 1, gg_qround(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int nl = gg_imax(-nmax, gg_imin(nmax - 1, gg_qround(x[i] * sl2 / slx)));
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* asymmetric: x ~ scale * L[i] - the_min with L[i] in [0, nmax]. Starts from
 * the min..max range, then tries nstep+1 scales (nmax + rmin + rdelta*is
 * levels over the range), each with the weighted least-squares scale and
 * min for its levels, and keeps the one with the least weighted error
 * (absolute if use_mad, else squared). */
static float gg_make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                                 uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)gg_imax(0, gg_imin(nmax, gg_qround(iscale * (x[i] - min))));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = gg_imax(0, gg_imin(nmax, gg_qround(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ---- quantize (scalar on both paths) ---- */

/* 2 bits: per 16 elements a 4-bit scale and a 4-bit min (of d, dmin) */
static void gg_quantize_row_q2_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q2_K *y = (gg_block_q2_K *)vy;
    uint8_t L[GG_QK_K], Laux[16];
    float w[16], mins[16], scales[16];
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int g = 0; g < 16; g++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * g + l]);
            scales[g] = gg_make_qkx2_quants(16, 3, x + 16 * g, w, L + 16 * g, &mins[g], Laux, -0.5f, 0.1f, 15, true);
            if (scales[g] > max_scale) max_scale = scales[g];
            if (mins[g] > max_min) max_min = mins[g];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int g = 0; g < 16; g++) y[b].scales[g] = (uint8_t)gg_qround(iscale * scales[g]);
            y[b].d = gg_fp32_to_fp16(max_scale / 15.0f);
        } else {
            for (int g = 0; g < 16; g++) y[b].scales[g] = 0;
            y[b].d = gg_fp32_to_fp16(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int g = 0; g < 16; g++) {
                y[b].scales[g] = (uint8_t)(y[b].scales[g] | ((uint32_t)gg_qround(iscale * mins[g]) << 4));
            }
            y[b].dmin = gg_fp32_to_fp16(max_min / 15.0f);
        } else {
            y[b].dmin = gg_fp32_to_fp16(0.0f);
        }
        /* re-quantize against the rounded scales */
        for (int g = 0; g < 16; g++) {
            const float d = gg_fp16_to_fp32(y[b].d) * (float)(y[b].scales[g] & 0xf);
            if (d == 0.0f) continue;
            const float dm = gg_fp16_to_fp32(y[b].dmin) * (float)(y[b].scales[g] >> 4);
            for (int l = 0; l < 16; l++) {
                L[16 * g + l] = (uint8_t)gg_imax(0, gg_imin(3, gg_qround((x[16 * g + l] + dm) / d)));
            }
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lh = L + 128 * h + l;
                y[b].qs[32 * h + l] = (uint8_t)(Lh[0] | (Lh[32] << 2) | (Lh[64] << 4) | (Lh[96] << 6));
            }
    }
}

/* 3 bits: per 16 elements a 6-bit signed scale of d */
static void gg_quantize_row_q3_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q3_K *y = (gg_block_q3_K *)vy;
    int8_t L[GG_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int g = 0; g < 16; g++) {
            scales[g] = gg_make_q3_quants(16, 4, x + 16 * g, L + 16 * g);
            const float a = fabsf(scales[g]);
            if (a > amax) { amax = a; max_scale = scales[g]; }
        }
        memset(y[b].scales, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int g = 0; g < 16; g++) {
                int8_t l = (int8_t)gg_qround(iscale * scales[g]);
                l = (int8_t)(gg_imax(-32, gg_imin(31, l)) + 32);
                if (g < 8) y[b].scales[g] = l & 0xf;
                else y[b].scales[g - 8] |= (uint8_t)((l & 0xf) << 4);
                y[b].scales[8 + g % 4] |= (uint8_t)((l >> 4) << (2 * (g / 4)));
            }
            y[b].d = gg_fp32_to_fp16(1.0f / iscale);
        } else {
            y[b].d = gg_fp32_to_fp16(0.0f);
        }
        uint8_t sc[16];
        gg_q3k_unpack(y[b].scales, sc);
        for (int g = 0; g < 16; g++) {
            const float d = gg_fp16_to_fp32(y[b].d) * (float)((int)sc[g] - 32);
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * g + l] = (int8_t)(gg_imax(-4, gg_imin(3, gg_qround(x[16 * g + l] / d))) + 4);
            }
        }
        memset(y[b].hmask, 0, sizeof(y[b].hmask));
        for (int e = 0; e < GG_QK_K; e++) {
            if (L[e] > 3) {        /* element e = 32*t + l: high bit t of hmask[l] */
                y[b].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *Lh = L + 128 * h + l;
                y[b].qs[32 * h + l] = (uint8_t)(Lh[0] | (Lh[32] << 2) | (Lh[64] << 4) | (Lh[96] << 6));
            }
    }
}

/* Q4_K/Q5_K share the scale search: per 32 elements make_qkx2 with weights
 * rms(sub-block) + |x|, then scales and mins rounded to 6 bits of d, dmin */
static void gg_quantize_k4_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                                  uint16_t *d_out, uint16_t *dmin_out, uint8_t packed[12]) {
    uint8_t Laux[32], ls[8], lm[8];
    float w[32], mins[8], scales[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = gg_make_qkx2_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; j++) {
        const uint8_t s = (uint8_t)gg_qround(inv_scale * scales[j]);
        const uint8_t m = (uint8_t)gg_qround(inv_min * mins[j]);
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    gg_k4_pack(packed, ls, lm);
    *d_out = gg_fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = gg_fp32_to_fp16(max_min / 63.0f);
    /* re-quantize against the rounded scales */
    const float d_all = gg_fp16_to_fp32(*d_out), dmin_all = gg_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        const float d = d_all * (float)ls[j];
        if (d == 0.0f) continue;
        const float dm = dmin_all * (float)lm[j];
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = (uint8_t)gg_imax(0, gg_imin(nmax, gg_qround((x[32 * j + l] + dm) / d)));
        }
    }
}

static void gg_quantize_row_q4_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q4_K *y = (gg_block_q4_K *)vy;
    uint8_t L[GG_QK_K];
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        gg_quantize_k4_scales(x, 15, -1.0f, 20, L, &y[b].d, &y[b].dmin, y[b].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void gg_quantize_row_q5_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q5_K *y = (gg_block_q5_K *)vy;
    uint8_t L[GG_QK_K];
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        gg_quantize_k4_scales(x, 31, -0.5f, 15, L, &y[b].d, &y[b].dmin, y[b].scales);
        memset(y[b].qh, 0, sizeof(y[b].qh));
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[b].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                y[b].qs[32 * c + l] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
            }
    }
}

/* 6 bits: per 16 elements an int8 scale of d */
static void gg_quantize_row_q6_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q6_K *y = (gg_block_q6_K *)vy;
    int8_t L[GG_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        float max_scale = 0.0f, max_abs = 0.0f;
        for (int g = 0; g < 16; g++) {
            scales[g] = gg_make_qx_quants(16, 32, x + 16 * g, L + 16 * g);
            const float a = fabsf(scales[g]);
            if (a > max_abs) { max_abs = a; max_scale = scales[g]; }
        }
        if (max_abs < GG_GROUP_MAX_EPS) {
            memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[b].d = gg_fp32_to_fp16(1.0f / iscale);
        for (int g = 0; g < 16; g++) y[b].scales[g] = (int8_t)gg_imin(127, gg_qround(iscale * scales[g]));
        for (int g = 0; g < 16; g++) {
            const float d = gg_fp16_to_fp32(y[b].d) * (float)y[b].scales[g];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * g + l] = (int8_t)(gg_imax(-32, gg_imin(31, gg_qround(x[16 * g + l] / d))) + 32);
            }
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lh = (const uint8_t *)L + 128 * h + l;
                y[b].ql[64 * h + l] = (uint8_t)((Lh[0] & 0xf) | ((Lh[64] & 0xf) << 4));
                y[b].ql[64 * h + 32 + l] = (uint8_t)((Lh[32] & 0xf) | ((Lh[96] & 0xf) << 4));
                y[b].qh[32 * h + l] = (uint8_t)((Lh[0] >> 4) | ((Lh[32] >> 4) << 2) | ((Lh[64] >> 4) << 4) |
                                                ((Lh[96] >> 4) << 6));
            }
    }
}

/* the activation type: d = max / -127 with max the signed value of largest
 * magnitude, q = min(127, round(x / d)), bsums over 16-element groups */
static void gg_quantize_row_q8_K(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q8_K *y = (gg_block_q8_K *)vy;
    for (int64_t b = 0; b < n / GG_QK_K; b++, x += GG_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int l = 0; l < GG_QK_K; l++) {
            const float ax = fabsf(x[l]);
            if (ax > amax) { amax = ax; max = x[l]; }
        }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int l = 0; l < GG_QK_K; l++) y[b].qs[l] = (int8_t)gg_imin(127, gg_qround(iscale * x[l]));
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[b].qs[16 * g + l];
            y[b].bsums[g] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ---- vec_dot with Q8_K ----
 * Per super-block the integer sum of scale * q * q8 is exact; the min and
 * offset terms (Q2_K/Q4_K/Q5_K mins, Q3_K's -4, Q6_K's -32) are sums of
 * scale * bsum. Only the f32 accumulation over super-blocks rounds. */

#if GG_AVX2
/* both 128-bit lanes hold 8 int16 scales; lane 0 takes scale 2k, lane 1
 * scale 2k+1, each broadcast over its 8 int16 (Q2_K/Q3_K/Q6_K: 32 quants
 * span two 16-element groups) */
static inline __m256i gg_scale_pair(__m256i sc, int k) {
    const __m128i lo = _mm_set1_epi16((short)(((4 * k + 1) << 8) | (4 * k)));
    const __m128i hi = _mm_set1_epi16((short)(((4 * k + 3) << 8) | (4 * k + 2)));
    return _mm256_shuffle_epi8(sc, _mm256_set_m128i(hi, lo));
}

/* 128-bit half h (0 or 1) of v in both halves; the immediate must be a
 * constant even where the compiler does not unroll the caller's loop (-O2) */
static inline __m256i gg_half_bcast(__m256i v, int h) {
    return h ? _mm256_permute2x128_si256(v, v, 0x11) : _mm256_permute2x128_si256(v, v, 0x00);
}

/* int16 scale j of 8 broadcast over all lanes (Q4_K/Q5_K: 32 quants, one scale) */
static inline __m256i gg_scale_one(__m256i sc, int j) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
}

#endif

static float gg_vec_dot_q2_K_q8_K(int simd, int64_t n, const void *vx, const void *vy) {
    const gg_block_q2_K *x = (const gg_block_q2_K *)vx;
    const gg_block_q8_K *y = (const gg_block_q8_K *)vy;
    const int64_t nb = n / GG_QK_K;
#if GG_AVX2
    if (simd) {
        const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0xf);
        __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const float d = y[b].d * gg_fp16_to_fp32(x[b].d), dmin = y[b].d * gg_fp16_to_fp32(x[b].dmin);
            const __m128i s8 = _mm_loadu_si128((const __m128i *)x[b].scales);
            const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm256_castsi256_si128(m4)));
            const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm256_castsi256_si128(m4)));
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
            accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs)), accm);
            __m256i sumi = _mm256_setzero_si256();
            for (int h = 0; h < 2; h++) {
                const __m256i sch = gg_half_bcast(sc, h);
                const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
                const int8_t *q8 = y[b].qs + 128 * h;
                for (int j = 0; j < 4; j++) {
                    const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * j), m3);
                    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, gg_scale_pair(sch, j)));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        return gg_hsum_avx(acc) - gg_hsum_avx(accm);
    }
#endif
    float sum = 0.0f;
    uint8_t q[GG_QK_K];
    for (int64_t b = 0; b < nb; b++) {
        gg_q2k_quants(&x[b], q);
        int32_t sumi = 0, summ = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * g + l] * y[b].qs[16 * g + l];
            sumi += (x[b].scales[g] & 0xf) * s;
            summ += (x[b].scales[g] >> 4) * y[b].bsums[g];
        }
        sum += y[b].d * (gg_fp16_to_fp32(x[b].d) * (float)sumi - gg_fp16_to_fp32(x[b].dmin) * (float)summ);
    }
    return sum;
}

static float gg_vec_dot_q3_K_q8_K(int simd, int64_t n, const void *vx, const void *vy) {
    const gg_block_q3_K *x = (const gg_block_q3_K *)vx;
    const gg_block_q8_K *y = (const gg_block_q8_K *)vy;
    const int64_t nb = n / GG_QK_K;
#if GG_AVX2
    if (simd) {
        const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const float d = y[b].d * gg_fp16_to_fp32(x[b].d);
            const __m256i sc = _mm256_cvtepi8_epi16(gg_q3k_unpack_v(x[b].scales));
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
            /* q = (2 low bits | high bit << 2) - 4: the -4 through bsums */
            __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 2);
            sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
            const __m256i hb = _mm256_loadu_si256((const __m256i *)x[b].hmask);
            for (int h = 0; h < 2; h++) {
                const __m256i sch = gg_half_bcast(sc, h);
                const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
                const int8_t *q8 = y[b].qs + 128 * h;
                for (int j = 0; j < 4; j++) {
                    const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4 * h + j), m1), 2);
                    const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv, 2 * j), m3), hi);
                    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, gg_scale_pair(sch, j)));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        return gg_hsum_avx(acc);
    }
#endif
    float sum = 0.0f;
    int8_t q[GG_QK_K];
    uint8_t sc[16];
    for (int64_t b = 0; b < nb; b++) {
        gg_q3k_quants(&x[b], q);
        gg_q3k_unpack(x[b].scales, sc);
        int32_t sumi = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * g + l] * y[b].qs[16 * g + l];
            sumi += ((int)sc[g] - 32) * s;
        }
        sum += y[b].d * gg_fp16_to_fp32(x[b].d) * (float)sumi;
    }
    return sum;
}

/* Q4_K and Q5_K: the same scales, mins and layout; Q5_K adds a fifth bit per
 * quant from qh (bits 2c and 2c + 1 for chunk c's low and high nibbles).
 * HIGH_LOAD / HIGH run on the AVX2 path only, QUANTS is the scalar unpacking. */
#define GG_VEC_DOT_K4(NAME, BT, QUANTS, HIGH_LOAD, HIGH)                                          \
static float NAME(int simd, int64_t n, const void *vx, const void *vy) {                          \
    const BT *x = (const BT *)vx;                                                                 \
    const gg_block_q8_K *y = (const gg_block_q8_K *)vy;                                          \
    const int64_t nb = n / GG_QK_K;                                                               \
    GG_VEC_DOT_K4_AVX2(HIGH_LOAD, HIGH)                                                           \
    float sum = 0.0f;                                                                             \
    uint8_t q[GG_QK_K], sc[8], mn[8];                                                             \
    for (int64_t b = 0; b < nb; b++) {                                                            \
        QUANTS(&x[b], q);                                                                         \
        gg_k4_unpack(x[b].scales, sc, mn);                                                        \
        int32_t sumi = 0, summ = 0;                                                               \
        for (int j = 0; j < 8; j++) {                                                             \
            int32_t s = 0;                                                                        \
            for (int l = 0; l < 32; l++) s += q[32 * j + l] * y[b].qs[32 * j + l];                \
            sumi += sc[j] * s;                                                                    \
            summ += mn[j] * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);                          \
        }                                                                                         \
        sum += y[b].d * (gg_fp16_to_fp32(x[b].d) * (float)sumi - gg_fp16_to_fp32(x[b].dmin) * (float)summ); \
    }                                                                                             \
    return sum;                                                                                   \
}

#if GG_AVX2
#define GG_VEC_DOT_K4_AVX2(HIGH_LOAD, HIGH)                                                       \
    if (simd) {                                                                                   \
        const __m256i m4 = _mm256_set1_epi8(0xf), m1 = _mm256_set1_epi8(1);                       \
        __m256 acc = _mm256_setzero_ps();                                                         \
        __m256 accm = _mm256_setzero_ps();                                                        \
        for (int64_t b = 0; b < nb; b++) {                                                        \
            const float d = y[b].d * gg_fp16_to_fp32(x[b].d), dmin = y[b].d * gg_fp16_to_fp32(x[b].dmin); \
            const __m128i sm = _mm_shuffle_epi32(gg_k4_unpack_v(x[b].scales), _MM_SHUFFLE(3, 1, 2, 0)); \
            /* mins doubled (m0 m0 m1 m1 ..) against the 16 bsums: m_j * q8 sum of sub-block j */ \
            const __m128i m8 = _mm_unpackhi_epi64(sm, sm);                                        \
            const __m256i mn = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));                   \
            const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));                \
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);                   \
            accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs)), accm); \
            HIGH_LOAD                                                                             \
            __m256i sumi = _mm256_setzero_si256();                                                \
            for (int c = 0; c < 4; c++) {                                                         \
                const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));       \
                __m256i ql = _mm256_and_si256(qv, m4);                                            \
                __m256i qh = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);                      \
                HIGH                                                                              \
                const __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * c))); \
                const __m256i ph = _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * c + 32))); \
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pl, gg_scale_one(sc, 2 * c)));     \
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(ph, gg_scale_one(sc, 2 * c + 1))); \
            }                                                                                     \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);              \
        }                                                                                         \
        (void)m1;                                                                                 \
        return gg_hsum_avx(acc) - gg_hsum_avx(accm);                                              \
    }
#else
#define GG_VEC_DOT_K4_AVX2(HIGH_LOAD, HIGH) GG_UNUSED(simd);
#endif

GG_VEC_DOT_K4(gg_vec_dot_q4_K_q8_K, gg_block_q4_K, gg_q4k_quants, , )
GG_VEC_DOT_K4(gg_vec_dot_q5_K_q8_K, gg_block_q5_K, gg_q5k_quants,
              const __m256i hb = _mm256_loadu_si256((const __m256i *)x[b].qh);,
              ql = _mm256_or_si256(ql, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), m1), 4));
              qh = _mm256_or_si256(qh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), m1), 4));)

static float gg_vec_dot_q6_K_q8_K(int simd, int64_t n, const void *vx, const void *vy) {
    const gg_block_q6_K *x = (const gg_block_q6_K *)vx;
    const gg_block_q8_K *y = (const gg_block_q8_K *)vy;
    const int64_t nb = n / GG_QK_K;
#if GG_AVX2
    if (simd) {
        const __m256i m4 = _mm256_set1_epi8(0xf), m3 = _mm256_set1_epi8(3);
        const __m256i m30 = _mm256_set1_epi8(0x30), mc = _mm256_set1_epi8(0x0c), mc0 = _mm256_set1_epi8((char)0xc0);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const float d = y[b].d * gg_fp16_to_fp32(x[b].d);
            const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
            /* quants are stored +32: subtract 32 * sum(scale * bsum) */
            __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 5));
            for (int h = 0; h < 2; h++) {
                const __m256i sch = gg_half_bcast(sc, h);
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h + 32));
                const __m256i hv = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
                const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m3), 4));
                const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(hv, mc), 2));
                const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m30));
                const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                   _mm256_srli_epi16(_mm256_and_si256(hv, mc0), 2));
                const int8_t *q8 = y[b].qs + 128 * h;
                const __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)(q8)));
                const __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
                const __m256i p2 = _mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(q8 + 64)));
                const __m256i p3 = _mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(q8 + 96)));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(p0, gg_scale_pair(sch, 0)),
                                                               _mm256_madd_epi16(p1, gg_scale_pair(sch, 1))));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(p2, gg_scale_pair(sch, 2)),
                                                               _mm256_madd_epi16(p3, gg_scale_pair(sch, 3))));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        return gg_hsum_avx(acc);
    }
#endif
    float sum = 0.0f;
    int8_t q[GG_QK_K];
    for (int64_t b = 0; b < nb; b++) {
        gg_q6k_quants(&x[b], q);
        int32_t sumi = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * g + l] * y[b].qs[16 * g + l];
            sumi += x[b].scales[g] * s;
        }
        sum += y[b].d * gg_fp16_to_fp32(x[b].d) * (float)sumi;
    }
    return sum;
}

/* ---- unpack (quants.h): the same quants and products as dequantize ---- */
#if GG_AVX2

/* bit j of every byte of v as bit 4 (16-bit shifts: |4 - j| <= 3 keeps bytes apart) */
static inline __m256i gg_bit_to_4(__m256i v, int j) {
    const __m256i t = j <= 4 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - j)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(j - 4));
    return _mm256_and_si256(t, _mm256_set1_epi8(0x10));
}

static void gg_unpack_q2_K(const void *vx, uint8_t *u, size_t us, float *s, float *m, size_t ss, int64_t n) {
    const gg_block_q2_K *x = (const gg_block_q2_K *)vx;
    uint8_t q[GG_QK_K];
    for (int64_t b = 0; b < n / GG_QK_K; b++) {
        const float d = gg_fp16_to_fp32(x[b].d), dmin = gg_fp16_to_fp32(x[b].dmin);
        gg_q2k_quants(&x[b], q);
        for (int g = 0; g < 16; g++) {
            s[(16 * b + g) * (int64_t)ss] = d * (float)(x[b].scales[g] & 0xf);
            m[(16 * b + g) * (int64_t)ss] = -(dmin * (float)(x[b].scales[g] >> 4));
        }
        for (int l = 0; l < GG_QK_K; l += 32) {
            gg_put_u32(u, us, GG_QK_K * b + l, _mm256_loadu_si256((const __m256i *)(q + l)));
        }
    }
}

static void gg_unpack_q3_K(const void *vx, uint8_t *u, size_t us, float *s, float *m, size_t ss, int64_t n) {
    const gg_block_q3_K *x = (const gg_block_q3_K *)vx;
    int8_t q[GG_QK_K];
    uint8_t sc[16];
    for (int64_t b = 0; b < n / GG_QK_K; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        gg_q3k_quants(&x[b], q);
        gg_q3k_unpack(x[b].scales, sc);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)((int)sc[g] - 32);
            s[(16 * b + g) * (int64_t)ss] = dl;
            m[(16 * b + g) * (int64_t)ss] = -4.0f * dl;
        }
        for (int l = 0; l < GG_QK_K; l += 32) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(q + l));
            gg_put_u32(u, us, GG_QK_K * b + l, _mm256_add_epi8(v, _mm256_set1_epi8(4)));
        }
    }
}

/* Q4_K and Q5_K: chunk c of 32 bytes holds quants 64c.. (low nibbles) and
 * 64c + 32.. (high nibbles); Q5_K's fifth bits are bits 2c and 2c + 1 of qh */
#define GG_UNPACK_K4(T, BT, HIGH)                                                                  \
static void gg_unpack_##T(const void *vx, uint8_t *u, size_t us, float *s, float *m, size_t ss, int64_t n) { \
    const BT *x = (const BT *)vx;                                                                  \
    uint8_t sc[8], mn[8];                                                                          \
    const __m256i lo4 = _mm256_set1_epi8(0x0F);                                                    \
    for (int64_t b = 0; b < n / GG_QK_K; b++) {                                                    \
        const float d = gg_fp16_to_fp32(x[b].d), dmin = gg_fp16_to_fp32(x[b].dmin);               \
        gg_k4_unpack(x[b].scales, sc, mn);                                                         \
        for (int j = 0; j < 8; j++) {                                                              \
            s[(8 * b + j) * (int64_t)ss] = d * (float)sc[j];                                       \
            m[(8 * b + j) * (int64_t)ss] = -(dmin * (float)mn[j]);                                 \
        }                                                                                          \
        for (int c = 0; c < 4; c++) {                                                              \
            const __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));            \
            __m256i l = _mm256_and_si256(v, lo4), h = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4); \
            HIGH                                                                                   \
            gg_put_u32(u, us, GG_QK_K * b + 64 * c, l);                                           \
            gg_put_u32(u, us, GG_QK_K * b + 64 * c + 32, h);                                      \
        }                                                                                          \
    }                                                                                              \
}
GG_UNPACK_K4(q4_K, gg_block_q4_K, )
GG_UNPACK_K4(q5_K, gg_block_q5_K,
             const __m256i qh = _mm256_loadu_si256((const __m256i *)x[b].qh);
             l = _mm256_or_si256(l, gg_bit_to_4(qh, 2 * c));
             h = _mm256_or_si256(h, gg_bit_to_4(qh, 2 * c + 1));)

/* Q6_K: quant 128h + 32k + l is a nibble of ql[64h + 32(k & 1) + l] (low for
 * k < 2) with bits 2k, 2k + 1 of qh[32h + l] above it */
static void gg_unpack_q6_K(const void *vx, uint8_t *u, size_t us, float *s, float *m, size_t ss, int64_t n) {
    const gg_block_q6_K *x = (const gg_block_q6_K *)vx;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < n / GG_QK_K; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)x[b].scales[g];
            s[(16 * b + g) * (int64_t)ss] = dl;
            m[(16 * b + g) * (int64_t)ss] = -32.0f * dl;
        }
        for (int h = 0; h < 2; h++) {
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
            const __m256i hi[4] = {
                _mm256_and_si256(_mm256_slli_epi16(qh, 4), two), _mm256_and_si256(_mm256_slli_epi16(qh, 2), two),
                _mm256_and_si256(qh, two), _mm256_and_si256(_mm256_srli_epi16(qh, 2), two) };
            for (int k = 0; k < 4; k++) {
                const __m256i ql = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h + 32 * (k & 1)));
                const __m256i lo = k < 2 ? _mm256_and_si256(ql, lo4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), lo4);
                gg_put_u32(u, us, GG_QK_K * b + 128 * h + 32 * k, _mm256_or_si256(lo, hi[k]));
            }
        }
    }
}
#endif

const gg_quant_traits gg_quant_traits_k[] = {
    { GG_TYPE_Q2_K, GG_QK_K, sizeof(gg_block_q2_K), gg_dequantize_row_q2_K, gg_quantize_row_q2_K,
      GG_TYPE_Q8_K, gg_vec_dot_q2_K_q8_K, 16, GG_UNPACK(gg_unpack_q2_K) },
    { GG_TYPE_Q3_K, GG_QK_K, sizeof(gg_block_q3_K), gg_dequantize_row_q3_K, gg_quantize_row_q3_K,
      GG_TYPE_Q8_K, gg_vec_dot_q3_K_q8_K, 16, GG_UNPACK(gg_unpack_q3_K) },
    { GG_TYPE_Q4_K, GG_QK_K, sizeof(gg_block_q4_K), gg_dequantize_row_q4_K, gg_quantize_row_q4_K,
      GG_TYPE_Q8_K, gg_vec_dot_q4_K_q8_K, 32, GG_UNPACK(gg_unpack_q4_K) },
    { GG_TYPE_Q5_K, GG_QK_K, sizeof(gg_block_q5_K), gg_dequantize_row_q5_K, gg_quantize_row_q5_K,
      GG_TYPE_Q8_K, gg_vec_dot_q5_K_q8_K, 32, GG_UNPACK(gg_unpack_q5_K) },
    { GG_TYPE_Q6_K, GG_QK_K, sizeof(gg_block_q6_K), gg_dequantize_row_q6_K, gg_quantize_row_q6_K,
      GG_TYPE_Q8_K, gg_vec_dot_q6_K_q8_K, 16, GG_UNPACK(gg_unpack_q6_K) },
    { GG_TYPE_Q8_K, GG_QK_K, sizeof(gg_block_q8_K), gg_dequantize_row_q8_K, gg_quantize_row_q8_K,
      -1, NULL, 0, NULL },
    { -1, 0, 0, NULL, NULL, -1, NULL, 0, NULL },
};
