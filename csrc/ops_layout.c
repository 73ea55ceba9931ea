/*
 * ops_layout.c: repeat, concat, pad and arange.
 *
 * These move bytes and compute nothing, so there is no separate SIMD path:
 * packed runs go through memcpy (already vectorised by libc), strided ones
 * through a plain element loop. Every kernel takes whole dst rows
 * (dims 1..3 flattened) in contiguous chunks per thread, and dst is the
 * packed node the allocator made (nb[0] == type size, checked). Sources may
 * have any strides for dims 1..3; concat and pad also accept a strided dim 0
 * (as ggml), repeat needs packed source rows (the Python side checks).
 */
#include "ggraph_impl.h"
#include "ops_layout.h"

/* bytes per element of the plain types these ops move, 0 for others */
static inline size_t gg_plain_size(int type) {
    switch (type) {
    case GG_TYPE_F32: case GG_TYPE_I32: return 4;
    case GG_TYPE_F16: case GG_TYPE_BF16: return 2;
    default: return 0;
    }
}

/* n elements of ts bytes from x (stride xs bytes) to packed y */
static inline void gg_copy_row(char *y, const char *x, size_t xs, size_t ts, int64_t n) {
    if (xs == ts) {
        memcpy(y, x, (size_t)n * ts);
    } else if (ts == 4) {
        for (int64_t i = 0; i < n; i++) memcpy(y + 4 * i, x + (size_t)i * xs, 4);
    } else {
        for (int64_t i = 0; i < n; i++) memcpy(y + 2 * i, x + (size_t)i * xs, 2);
    }
}

/* row ir of dst (dims 1..3 flattened) as indices */
static inline void gg_row_index(const gg_tensor *t, int64_t ir, int64_t idx[4]) {
    idx[0] = 0;
    idx[1] = ir % t->ne[1];
    idx[2] = (ir / t->ne[1]) % t->ne[2];
    idx[3] = ir / (t->ne[1] * t->ne[2]);
}

static inline char *gg_row_ptr(const gg_tensor *t, const int64_t idx[4]) {
    return (char *)t->data + idx[1] * t->nb[1] + idx[2] * t->nb[2] + idx[3] * t->nb[3];
}

/* ---- repeat: dst[i] = src0[i mod src0.ne] ---- */

void gg_fwd_repeat(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const size_t ts = gg_plain_size(src0->type);
    if (ts == 0 || dst->type != src0->type) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    if (nb00 != ts || nb0 != ts || ne0 % ne00 || ne1 % ne01 || ne2 % ne02 || ne3 % ne03) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const int64_t nr0 = ne0 / ne00;          /* copies of a source row in a dst row */
    const size_t row_bytes = (size_t)ne00 * ts;
    int64_t r0, r1;
    gg_row_range(p, ne1 * ne2 * ne3, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t idx[4];
        gg_row_index(dst, ir, idx);
        const char *x = (const char *)src0->data + (idx[1] % ne01) * nb01 + (idx[2] % ne02) * nb02 +
                        (idx[3] % ne03) * nb03;
        char *y = gg_row_ptr(dst, idx);
        for (int64_t k = 0; k < nr0; k++) memcpy(y + (size_t)k * row_bytes, x, row_bytes);
    }
}

/* ---- concat: src0 then src1 along dim ---- */

void gg_fwd_concat(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const gg_tensor *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS
    const int32_t dim = GG_PARAMS(gg_concat_params, dst)->dim;
    const size_t ts = gg_plain_size(src0->type);
    if (ts == 0 || src1->type != src0->type || dst->type != src0->type) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    if (dim < 0 || dim > 3 || nb0 != ts) { gg_fail(p, GG_ERR_BAD_INPUT); return; }
    for (int d = 0; d < 4; d++) {
        const int64_t want = d == dim ? src0->ne[d] + src1->ne[d] : src0->ne[d];
        if (dst->ne[d] != want || (d != dim && src1->ne[d] != src0->ne[d])) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
    }
    int64_t r0, r1;
    gg_row_range(p, ne1 * ne2 * ne3, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t idx[4];
        gg_row_index(dst, ir, idx);
        char *y = gg_row_ptr(dst, idx);
        if (dim == 0) {
            gg_copy_row(y, gg_row_ptr(src0, idx), nb00, ts, ne00);
            gg_copy_row(y + (size_t)ne00 * ts, gg_row_ptr(src1, idx), nb10, ts, ne10);
        } else if (idx[dim] < src0->ne[dim]) {
            gg_copy_row(y, gg_row_ptr(src0, idx), nb00, ts, ne0);
        } else {
            idx[dim] -= src0->ne[dim];
            gg_copy_row(y, gg_row_ptr(src1, idx), nb10, ts, ne0);
        }
    }
}

/* ---- pad: zeros before (lp) and after (rp) src0 in each dim ---- */

void gg_fwd_pad(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const gg_pad_params *pp = GG_PARAMS(gg_pad_params, dst);
    const int64_t lp[4] = {pp->lp0, pp->lp1, pp->lp2, pp->lp3};
    const int64_t rp[4] = {pp->rp0, pp->rp1, pp->rp2, pp->rp3};
    if (src0->type != GG_TYPE_F32 || dst->type != GG_TYPE_F32) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    if (nb0 != sizeof(float)) { gg_fail(p, GG_ERR_BAD_INPUT); return; }
    for (int d = 0; d < 4; d++) {
        if (lp[d] < 0 || rp[d] < 0 || dst->ne[d] != src0->ne[d] + lp[d] + rp[d]) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
    }
    int64_t r0, r1;
    gg_row_range(p, ne1 * ne2 * ne3, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t idx[4];
        gg_row_index(dst, ir, idx);
        float *y = (float *)gg_row_ptr(dst, idx);
        bool inside = true;
        for (int d = 1; d < 4; d++) {
            idx[d] -= lp[d];                          /* now the source index */
            inside = inside && idx[d] >= 0 && idx[d] < src0->ne[d];
        }
        if (!inside) {
            memset(y, 0, (size_t)ne0 * sizeof(float));
            continue;
        }
        memset(y, 0, (size_t)lp[0] * sizeof(float));
        gg_copy_row((char *)(y + lp[0]), gg_row_ptr(src0, idx), nb00, sizeof(float), ne00);
        memset(y + lp[0] + ne00, 0, (size_t)rp[0] * sizeof(float));
    }
}

/* ---- arange: start, start + step, ... (no sources) ---- */

void gg_fwd_arange(const gg_params *p, gg_tensor *dst) {
    const gg_arange_params *ap = GG_PARAMS(gg_arange_params, dst);
    if (dst->type != GG_TYPE_F32) { gg_fail(p, GG_ERR_UNSUPPORTED_TYPE); return; }
    if (dst->nb[0] != sizeof(float)) { gg_fail(p, GG_ERR_BAD_INPUT); return; }
    const int64_t n = dst->ne[0];                /* the Python side computed ceil((stop - start) / step) */
    float *y = (float *)dst->data;
    int64_t i0, i1;
    gg_row_range(p, n, &i0, &i1);
    /* one rounding (fused multiply-add), as ggml's start + step * i compiles to with FMA */
    for (int64_t i = i0; i < i1; i++) y[i] = fmaf(ap->step, (float)i, ap->start);
}
