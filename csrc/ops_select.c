/*
 * ops_select.c: gather (get_rows), scatter (set_rows), sort (argsort, top_k).
 *
 * Indices are data, so get_rows and set_rows check every index they read and
 * fail the compute with GG_ERR_BAD_INPUT (the graph stops after this node)
 * instead of touching memory outside a tensor.
 *
 * argsort and top_k order values by a 32-bit key (gg_sort_key) that makes the
 * comparison total: -0.0 equals +0.0, every NaN sorts above +inf. Ties keep
 * the lower index first, so both ops are deterministic.
 */
#include "ggraph_impl.h"
#include "quants.h"
#include "vec.h"
#include "ops_select.h"

/* ---- rows to f32: one function per plain source type; block types use their
 * quants.h to_float (the same signature), so every type with C rows works ---- */

typedef gg_to_float_fn gg_to_f32_row_fn;

static void gg_sel_f32_to_f32(int simd, const void *x, float *y, int64_t n) {
    GG_UNUSED(simd);
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void gg_sel_f16_to_f32(int simd, const void *x, float *y, int64_t n) {
    const uint16_t *h = (const uint16_t *)x;
    if (simd) {
        gg_vec_f16_to_f32(h, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = gg_fp16_to_fp32(h[i]);
}

static void gg_sel_bf16_to_f32(int simd, const void *x, float *y, int64_t n) {
    GG_UNUSED(simd);
    const uint16_t *h = (const uint16_t *)x;
    for (int64_t i = 0; i < n; i++) y[i] = gg_bf16_to_fp32(h[i]);
}

static gg_to_f32_row_fn gg_sel_to_f32(int type) {
    switch (type) {
    case GG_TYPE_F32:  return gg_sel_f32_to_f32;
    case GG_TYPE_F16:  return gg_sel_f16_to_f32;
    case GG_TYPE_BF16: return gg_sel_bf16_to_f32;
    default: {
        const gg_quant_traits *q = gg_quant_traits_of(type);
        return q ? q->to_float : NULL;
    }
    }
}

/* a destination type set_rows can write: F32, F16, BF16, or a block type with a from_float */
static bool gg_sel_dst_ok(int type) {
    if (type == GG_TYPE_F32 || type == GG_TYPE_F16 || type == GG_TYPE_BF16) return true;
    const gg_quant_traits *q = gg_quant_traits_of(type);
    return q != NULL && q->from_float != NULL;
}

/* f32 row to a destination row of type F32, F16, BF16 or a block type
 * (n a multiple of its block size: whole blocks, quantized with from_float) */
static void gg_sel_from_f32(int simd, const float *x, int type, void *y, int64_t n) {
    switch (type) {
    case GG_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case GG_TYPE_F16:
        if (simd) {
            gg_vec_f32_to_f16(x, (uint16_t *)y, n);
        } else {
            for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = gg_fp32_to_fp16(x[i]);
        }
        break;
    case GG_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = gg_fp32_to_bf16(x[i]);
        break;
    default: {
        const gg_quant_traits *q = gg_quant_traits_of(type);
        if (q != NULL && q->from_float != NULL) q->from_float(simd, x, y, n);
        break;
    }
    }
}

/* ---- get_rows ----
 * src0 [n_embd, n_rows, ne02, ne03] F32/F16/BF16/I32 or a block type (rows
 *      of whole blocks, dequantized with to_float), rows contiguous
 * src1 I32 [n_idx, ne02, ne03]
 * dst  [n_embd, n_idx, ne02, ne03] F32 (I32 when src0 is I32):
 *      dst[:, i10, i11, i12] = src0[:, src1[i10, i11, i12], i11, i12]
 */
void gg_fwd_get_rows(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const gg_tensor *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS

    const bool raw_i32 = src0->type == GG_TYPE_I32 && dst->type == GG_TYPE_I32;
    const gg_to_f32_row_fn to_f32 = gg_sel_to_f32(src0->type);
    if (src1->type != GG_TYPE_I32 || (!raw_i32 && (to_f32 == NULL || dst->type != GG_TYPE_F32))) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const gg_quant_traits *qs = gg_quant_traits_of(src0->type);
    if (qs != NULL && (ne00 % qs->blck_size != 0 || nb00 != qs->type_size || nb0 != sizeof(float))) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }

    const int64_t nr = ne10 * ne11 * ne12;
    int64_t r0, r1;
    gg_row_range(p, nr, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i10 = ir % ne10;
        const int64_t i11 = (ir / ne10) % ne11;
        const int64_t i12 = ir / (ne10 * ne11);
        const int32_t i01 = *(const int32_t *)((const char *)src1->data + i10 * nb10 + i11 * nb11 + i12 * nb12);
        if (i01 < 0 || i01 >= ne01) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
        const char *x = (const char *)src0->data + i01 * nb01 + i11 * nb02 + i12 * nb03;
        char *y = (char *)dst->data + i10 * nb1 + i11 * nb2 + i12 * nb3;
        if (raw_i32) {
            memcpy(y, x, (size_t)ne00 * sizeof(int32_t));
        } else {
            to_f32(p->use_simd && GG_AVX2, x, (float *)y, ne00);
        }
    }
}

/* ---- set_rows (src order as ggml's: src0 = source rows, src1 = indices, src2 = destination) ----
 * src0 [n_embd, n_rows, ne2, ne3] F32/F16, rows contiguous
 * src1 I32 [n_rows, ne11, ne12] with ne2 % ne11 == 0, ne3 % ne12 == 0 (broadcast)
 * dst  a view of src2 [n_embd, ne1, ne2, ne3] F32/F16/BF16 or a block type
 *      with a from_float (a quantized KV cache: each row quantized whole):
 *      dst[:, src1[i, i02 % ne11, i03 % ne12], i02, i03] = src0[:, i, i02, i03]
 * work: one f32 row per thread when an F16 source goes to a non-F16 row
 */
static size_t gg_set_rows_stride(int64_t ne00) {
    return (size_t)((ne00 + 15) / 16 * 16 + 16);       /* floats, whole cache lines apart */
}

void gg_fwd_set_rows(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    const gg_tensor *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS

    const bool src_ok = src0->type == GG_TYPE_F32 || src0->type == GG_TYPE_F16;
    if (!gg_sel_dst_ok(dst->type) || !src_ok || src1->type != GG_TYPE_I32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const gg_quant_traits *qd = gg_quant_traits_of(dst->type);
    if (qd != NULL && (ne00 % qd->blck_size != 0 || nb0 != qd->type_size)) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const int simd = p->use_simd && GG_AVX2;
    const bool via_f32 = src0->type == GG_TYPE_F16 && dst->type != GG_TYPE_F16;
    float *tmp = NULL;
    if (via_f32) {
        const size_t stride = gg_set_rows_stride(ne00);
        if (p->wdata == NULL || p->wsize < (size_t)p->nth * stride * sizeof(float)) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
        tmp = (float *)p->wdata + (size_t)p->ith * stride;
    }

    const int64_t nr = ne01 * ne02 * ne03;
    int64_t r0, r1;
    gg_row_range(p, nr, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i01 = ir % ne01;
        const int64_t i02 = (ir / ne01) % ne02;
        const int64_t i03 = ir / (ne01 * ne02);
        const int64_t i11 = i02 % ne11, i12 = i03 % ne12;
        const int32_t i1 = *(const int32_t *)((const char *)src1->data + i01 * nb10 + i11 * nb11 + i12 * nb12);
        if (i1 < 0 || i1 >= ne1) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
        const char *x = (const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03;
        char *y = (char *)dst->data + i1 * nb1 + i02 * nb2 + i03 * nb3;
        if (src0->type == dst->type) {
            memcpy(y, x, (size_t)ne00 * (src0->type == GG_TYPE_F32 ? 4 : 2));
        } else if (src0->type == GG_TYPE_F32) {
            gg_sel_from_f32(simd, (const float *)x, dst->type, y, ne00);
        } else {
            gg_sel_f16_to_f32(simd, x, tmp, ne00);
            gg_sel_from_f32(simd, tmp, dst->type, y, ne00);
        }
    }
}

/* ---- sort keys ---- */

/* a uint32 whose unsigned order is the order of the floats: -0.0 == +0.0, NaN above +inf */
static inline uint32_t gg_sort_key(float f) {
    if (f != f) return 0xffffffffu;
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* keys of row (i01, i02, i03) of src0 (F32/F16/BF16, any strides) */
static void gg_sort_keys_row(const gg_tensor *src0, int64_t i01, int64_t i02, int64_t i03, uint32_t *key) {
    const char *row = (const char *)src0->data + i01 * src0->nb[1] + i02 * src0->nb[2] + i03 * src0->nb[3];
    const int64_t n = src0->ne[0];
    const size_t nb00 = src0->nb[0];
    if (src0->type == GG_TYPE_F32 && nb00 == sizeof(float)) {
        const float *x = (const float *)row;
        for (int64_t i = 0; i < n; i++) key[i] = gg_sort_key(x[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) key[i] = gg_sort_key(gg_get_f32(row + i * nb00, src0->type, 0));
}

static bool gg_sort_type_ok(int type) {
    return type == GG_TYPE_F32 || type == GG_TYPE_F16 || type == GG_TYPE_BF16;
}

/* scratch of argsort and top_k: per thread ne00 keys and ne00 indices, cache lines apart */
static size_t gg_sort_stride(int64_t ne00) {
    return (size_t)(2 * ((ne00 + 15) / 16 * 16) + 16);   /* 4-byte words */
}

/* ---- argsort: a stable merge sort of indices by key ---- */

#define GG_SORT_RUN 16

static inline bool gg_before(const uint32_t *key, int32_t a, int32_t b, int desc) {
    return desc ? key[a] > key[b] : key[a] < key[b];
}

/* sorts idx[0..n) (holding 0..n-1) by key, equal keys in index order; aux: n ints */
static void gg_argsort_row(const uint32_t *key, int32_t *idx, int32_t *aux, int64_t n, int desc) {
    for (int64_t s = 0; s < n; s += GG_SORT_RUN) {
        const int64_t e = GG_MIN(s + GG_SORT_RUN, n);
        for (int64_t i = s + 1; i < e; i++) {
            const int32_t v = idx[i];
            int64_t j = i;
            while (j > s && gg_before(key, v, idx[j - 1], desc)) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = v;
        }
    }
    int32_t *from = idx, *to = aux;
    for (int64_t w = GG_SORT_RUN; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            const int64_t mid = GG_MIN(lo + w, n), hi = GG_MIN(lo + 2 * w, n);
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                /* the right run wins only when strictly before: stable */
                to[o++] = gg_before(key, from[j], from[i], desc) ? from[j++] : from[i++];
            }
            while (i < mid) to[o++] = from[i++];
            while (j < hi) to[o++] = from[j++];
        }
        int32_t *t = from;
        from = to;
        to = t;
    }
    if (from != idx) memcpy(idx, from, (size_t)n * sizeof(int32_t));
}

/* this thread's sort scratch (keys, then aux indices) for rows of src0, after
 * the checks argsort and top_k share; NULL (and the compute fails) otherwise */
static uint32_t *gg_sort_scratch(const gg_params *p, const gg_tensor *src0, const gg_tensor *dst) {
    if (!gg_sort_type_ok(src0->type) || dst->type != GG_TYPE_I32 || dst->nb[0] != sizeof(int32_t)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return NULL;
    }
    const size_t stride = gg_sort_stride(src0->ne[0]);
    if (p->wdata == NULL || p->wsize < (size_t)p->nth * stride * 4) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return NULL;
    }
    return (uint32_t *)p->wdata + (size_t)p->ith * stride;
}

void gg_fwd_argsort(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const int desc = GG_PARAMS(gg_argsort_params, dst)->order == 1;
    uint32_t *key = gg_sort_scratch(p, src0, dst);
    if (key == NULL) return;
    int32_t *aux = (int32_t *)(key + (ne00 + 15) / 16 * 16);

    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        gg_sort_keys_row(src0, i01, i02, i03, key);
        int32_t *y = (int32_t *)((char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3);
        for (int64_t i = 0; i < ne00; i++) y[i] = (int32_t)i;
        gg_argsort_row(key, y, aux, ne00, desc);
    }
}

/* ---- top_k: a heap of the k best seen so far, its worst at the root ---- */

/* a before b in the result: larger key, or the same key and a lower index */
static inline bool gg_better(const uint32_t *key, int32_t a, int32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
}

static void gg_heap_sift_down(const uint32_t *key, int32_t *h, int64_t n, int64_t i) {
    for (;;) {
        const int64_t l = 2 * i + 1, r = l + 1;
        int64_t w = i;                                     /* the worst of i and its children */
        if (l < n && gg_better(key, h[w], h[l])) w = l;
        if (r < n && gg_better(key, h[w], h[r])) w = r;
        if (w == i) return;
        const int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* y[0..k): the indices of the k best keys, best first; heap: k ints */
static void gg_top_k_row(const uint32_t *key, int64_t n, int64_t k, int32_t *heap, int32_t *y) {
    for (int64_t i = 0; i < k; i++) heap[i] = (int32_t)i;
    for (int64_t i = k / 2 - 1; i >= 0; i--) gg_heap_sift_down(key, heap, k, i);
    for (int64_t j = k; j < n; j++) {
        if (gg_better(key, (int32_t)j, heap[0])) {
            heap[0] = (int32_t)j;
            gg_heap_sift_down(key, heap, k, 0);
        }
    }
    /* pop the worst to the back */
    for (int64_t m = k - 1; m >= 0; m--) {
        y[m] = heap[0];
        heap[0] = heap[m];
        gg_heap_sift_down(key, heap, m, 0);
    }
}

void gg_fwd_top_k(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const int64_t k = ne0;
    if (k < 1 || k > ne00) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    uint32_t *key = gg_sort_scratch(p, src0, dst);
    if (key == NULL) return;
    int32_t *heap = (int32_t *)(key + (ne00 + 15) / 16 * 16);

    const int64_t nr = ne01 * ne02 * ne03;
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        gg_sort_keys_row(src0, i01, i02, i03, key);
        int32_t *y = (int32_t *)((char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3);
        gg_top_k_row(key, ne00, k, heap, y);
    }
}
