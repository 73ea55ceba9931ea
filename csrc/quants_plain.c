/*
 * quants_plain.c: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * and the activation type Q8_1. Layouts in quants.h.
 */
#include "quants.h"

/* ---- Q8_0: d = max|x| / 127, q = round(x / d) ---- */

static void gg_quantize_row_q8_0(int simd, const float *x, void *vy, int64_t n) {
    GG_UNUSED(simd);
    gg_block_q8_0 *y = (gg_block_q8_0 *)vy;
    for (int64_t b = 0; b < n / GG_QK8_0; b++) {
        const float *xb = x + b * GG_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < GG_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = gg_fp32_to_fp16(d);
        for (int j = 0; j < GG_QK8_0; j++) y[b].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

static void gg_dequantize_row_q8_0(int simd, const void *vx, float *y, int64_t n) {
    GG_UNUSED(simd);
    const gg_block_q8_0 *x = (const gg_block_q8_0 *)vx;
    for (int64_t b = 0; b < n / GG_QK8_0; b++) {
        const float d = gg_fp16_to_fp32(x[b].d);
        for (int j = 0; j < GG_QK8_0; j++) y[b * GG_QK8_0 + j] = x[b].qs[j] * d;
    }
}

static float gg_vec_dot_q8_0_q8_0(int simd, int64_t n, const void *vx, const void *vy) {
    GG_UNUSED(simd);
    const gg_block_q8_0 *x = (const gg_block_q8_0 *)vx, *y = (const gg_block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / GG_QK8_0; b++) {
        int32_t acc = 0;
        for (int j = 0; j < GG_QK8_0; j++) acc += x[b].qs[j] * y[b].qs[j];
        sum += (float)acc * gg_fp16_to_fp32(x[b].d) * gg_fp16_to_fp32(y[b].d);
    }
    return sum;
}

const gg_quant_traits gg_quant_traits_plain[] = {
    { GG_TYPE_Q8_0, GG_QK8_0, sizeof(gg_block_q8_0), gg_dequantize_row_q8_0, gg_quantize_row_q8_0,
      GG_TYPE_Q8_0, gg_vec_dot_q8_0_q8_0 },
    { -1, 0, 0, NULL, NULL, -1, NULL },
};
