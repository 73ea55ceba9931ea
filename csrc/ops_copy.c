/*
 * ops_copy.c: dup, cpy, cont (and cont_Nd) with type conversion.
 *
 * All three copy the elements of src0, taken in row-major order of src0's
 * ne, into dst in row-major order of dst's ne: the shapes may differ, the
 * element counts match (checked in Python). dst may be any strided view
 * (cpy writes into a slot of a bigger tensor, e.g. a KV cache).
 *
 * Threads split dst rows. A dst row is filled from one or more segments of
 * src rows; same-type segments are copied as bytes, other pairs go through
 * f32: src -> f32 (into the dst row itself when dst is contiguous F32, else
 * into the thread's scratch row) -> dst.
 *
 * Converters: one table entry per plain type (gg_cvt_types below); every
 * block (quantized) type gets its entry from quants.h's traits (gg_cvt_get):
 * its unit is a block of blck elements in `size` bytes, converted whole with
 * to_float / from_float. The kernel gathers the whole dst row in f32 before
 * converting it, so a block destination always sees complete rows; a block
 * source is read in whole blocks because both row lengths are multiples of
 * its block size (checked in Python and here). Same-type copies of a block
 * type copy blocks as bytes. Blocks must be packed along dim 0 (nb[0] ==
 * bytes per block).
 */
#include "ggraph_impl.h"
#include "quants.h"
#include "vec.h"
#include "ops_copy.h"

/* ---- element converters: n elements spaced xs (ys) bytes apart <-> packed f32 ---- */

typedef void (*gg_to_f32_fn)(int simd, const void *x, size_t xs, float *y, int64_t n);
typedef void (*gg_from_f32_fn)(int simd, const float *x, void *y, size_t ys, int64_t n);

static void gg_f32_to_f32(int simd, const void *x, size_t xs, float *y, int64_t n) {
    GG_UNUSED(simd);
    if (xs == sizeof(float)) {
        if ((const void *)y != x) memmove(y, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(y + i, (const char *)x + i * xs, sizeof(float));
}

static void gg_f32_from_f32(int simd, const float *x, void *y, size_t ys, int64_t n) {
    GG_UNUSED(simd);
    if (ys == sizeof(float)) {
        if ((const void *)x != y) memmove(y, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy((char *)y + i * ys, x + i, sizeof(float));
}

static void gg_f16_to_f32(int simd, const void *x, size_t xs, float *y, int64_t n) {
    int64_t i = 0;
    if (xs == sizeof(uint16_t)) {
        const uint16_t *h = (const uint16_t *)x;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) {
                _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
            }
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) y[i] = gg_fp16_to_fp32(h[i]);
        return;
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const char *)x + i * xs, sizeof(h));
        y[i] = gg_fp16_to_fp32(h);
    }
}

static void gg_f16_from_f32(int simd, const float *x, void *y, size_t ys, int64_t n) {
    int64_t i = 0;
    if (ys == sizeof(uint16_t)) {
        uint16_t *h = (uint16_t *)y;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) {
                _mm_storeu_si128((__m128i *)(h + i),
                                 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
            }
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) h[i] = gg_fp32_to_fp16(x[i]);
        return;
    }
    for (; i < n; i++) {
        const uint16_t h = gg_fp32_to_fp16(x[i]);
        memcpy((char *)y + i * ys, &h, sizeof(h));
    }
}

static void gg_bf16_to_f32_cvt(int simd, const void *x, size_t xs, float *y, int64_t n) {
    int64_t i = 0;
    if (xs == sizeof(uint16_t)) {
        const uint16_t *h = (const uint16_t *)x;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) {
                const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
                _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
            }
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) y[i] = gg_bf16_to_fp32(h[i]);
        return;
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const char *)x + i * xs, sizeof(h));
        y[i] = gg_bf16_to_fp32(h);
    }
}

#if GG_AVX2
/* 8 floats -> 8 bf16, round to nearest even, NaN kept quiet (as gg_fp32_to_bf16) */
static inline __m128i gg_v_f32_to_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    /* pack 32 -> 16 bits within lanes, then gather the two useful quarters */
    const __m256i packed = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}
#endif

static void gg_bf16_from_f32_cvt(int simd, const float *x, void *y, size_t ys, int64_t n) {
    int64_t i = 0;
    if (ys == sizeof(uint16_t)) {
        uint16_t *h = (uint16_t *)y;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(h + i), gg_v_f32_to_bf16(_mm256_loadu_ps(x + i)));
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) h[i] = gg_fp32_to_bf16(x[i]);
        return;
    }
    for (; i < n; i++) {
        const uint16_t h = gg_fp32_to_bf16(x[i]);
        memcpy((char *)y + i * ys, &h, sizeof(h));
    }
}

static void gg_i32_to_f32(int simd, const void *x, size_t xs, float *y, int64_t n) {
    int64_t i = 0;
    if (xs == sizeof(int32_t)) {
        const int32_t *v = (const int32_t *)x;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) {
                _mm256_storeu_ps(y + i, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(v + i))));
            }
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) y[i] = (float)v[i];
        return;
    }
    for (; i < n; i++) {
        int32_t v;
        memcpy(&v, (const char *)x + i * xs, sizeof(v));
        y[i] = (float)v;
    }
}

static void gg_i32_from_f32(int simd, const float *x, void *y, size_t ys, int64_t n) {
    int64_t i = 0;
    if (ys == sizeof(int32_t)) {
        int32_t *v = (int32_t *)y;
#if GG_AVX2
        if (simd) {
            for (; i + 8 <= n; i += 8) {
                _mm256_storeu_si256((__m256i *)(v + i), _mm256_cvttps_epi32(_mm256_loadu_ps(x + i)));
            }
        }
#else
        GG_UNUSED(simd);
#endif
        for (; i < n; i++) v[i] = gg_f32_to_i32(x[i]);
        return;
    }
    for (; i < n; i++) {
        const int32_t v = gg_f32_to_i32(x[i]);
        memcpy((char *)y + i * ys, &v, sizeof(v));
    }
}

typedef struct {
    int            type;
    size_t         size;        /* bytes of one unit: an element, or a block */
    int64_t        blck;        /* elements per unit: 1, or the block size */
    gg_to_f32_fn   to_f32;      /* plain types (strided); NULL for block types */
    gg_from_f32_fn from_f32;
    const gg_quant_traits *q;   /* block types: to_float / from_float over packed blocks */
} gg_cvt_type;

/* the one place a plain copyable type is added */
static const gg_cvt_type gg_cvt_types[] = {
    { GG_TYPE_F32,  4, 1, gg_f32_to_f32,      gg_f32_from_f32,      NULL },
    { GG_TYPE_F16,  2, 1, gg_f16_to_f32,      gg_f16_from_f32,      NULL },
    { GG_TYPE_BF16, 2, 1, gg_bf16_to_f32_cvt, gg_bf16_from_f32_cvt, NULL },
    { GG_TYPE_I32,  4, 1, gg_i32_to_f32,      gg_i32_from_f32,      NULL },
};

/* plain types only */
static const gg_cvt_type *gg_cvt_find(int type) {
    for (size_t k = 0; k < sizeof(gg_cvt_types) / sizeof(gg_cvt_types[0]); k++) {
        if (gg_cvt_types[k].type == type) return &gg_cvt_types[k];
    }
    return NULL;
}

/* the converter of any copyable type: a plain table entry, or a block type's
 * entry made from its quants.h traits. false for unknown types. */
static bool gg_cvt_get(int type, gg_cvt_type *out) {
    const gg_cvt_type *t = gg_cvt_find(type);
    if (t != NULL) {
        *out = *t;
        return true;
    }
    const gg_quant_traits *q = gg_quant_traits_of(type);
    if (q == NULL) return false;
    *out = (gg_cvt_type){ type, q->type_size, q->blck_size, NULL, NULL, q };
    return true;
}

static bool gg_cvt_can_to_f32(const gg_cvt_type *t) { return t->q ? t->q->to_float != NULL : true; }
static bool gg_cvt_can_from_f32(const gg_cvt_type *t) { return t->q ? t->q->from_float != NULL : true; }

/* n elements at x (units xs bytes apart; block types: packed, n whole blocks) -> packed f32 */
static void gg_cvt_row_to_f32(const gg_cvt_type *t, int simd, const void *x, size_t xs, float *y, int64_t n) {
    if (t->q) {
        t->q->to_float(simd && GG_AVX2, x, y, n);
    } else {
        t->to_f32(simd, x, xs, y, n);
    }
}

/* packed f32 -> n elements at y (units ys bytes apart; block types: packed, n whole blocks) */
static void gg_cvt_row_from_f32(const gg_cvt_type *t, int simd, const float *x, void *y, size_t ys, int64_t n) {
    if (t->q) {
        t->q->from_float(simd && GG_AVX2, x, y, n);
    } else {
        t->from_f32(simd, x, y, ys, n);
    }
}

/* exported for ops_elementwise.c (prototypes there); plain types only */
int gg_cvt_has(int type) { return gg_cvt_find(type) != NULL; }

void gg_cvt_to_f32(int simd, int type, const void *x, size_t xs, float *y, int64_t n) {
    const gg_cvt_type *t = gg_cvt_find(type);
    if (t) t->to_f32(simd, x, xs, y, n);
}

void gg_cvt_from_f32(int simd, int type, const float *x, void *y, size_t ys, int64_t n) {
    const gg_cvt_type *t = gg_cvt_find(type);
    if (t) t->from_f32(simd, x, y, ys, n);
}

/* ---- the copy kernel ---- */

/* n elements of `size` bytes, spaced xs / ys bytes apart */
static void gg_copy_bytes(const char *x, size_t xs, char *y, size_t ys, size_t size, int64_t n) {
    if (xs == size && ys == size) {
        memcpy(y, x, (size_t)n * size);
    } else if (size == 4) {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * ys, x + i * xs, 4);
    } else if (size == 2) {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * ys, x + i * xs, 2);
    } else {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * ys, x + i * xs, size);
    }
}

/* scratch row of a copy kernel: must match copy.py's _work_size */
static size_t gg_copy_scratch_bytes(int64_t ne0) {
    return (((size_t)ne0 * sizeof(float) + 63) & ~(size_t)63) + 64;
}

static void gg_copy(const gg_params *p, const gg_tensor *src0, gg_tensor *dst) {
    GG_TENSOR_UNARY_LOCALS
    gg_cvt_type cs, cd;
    if (!gg_cvt_get(src0->type, &cs) || !gg_cvt_get(dst->type, &cd) || gg_nelements(src0) != gg_nelements(dst)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const gg_cvt_type *ts = &cs, *td = &cd;
    const bool same = src0->type == dst->type;
    if (!same && (!gg_cvt_can_to_f32(ts) || !gg_cvt_can_from_f32(td))) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    /* block types: packed blocks along dim 0, rows of whole blocks on both
     * sides so every segment of a row starts and ends on a block boundary */
    const int64_t blk = GG_MAX(ts->blck, td->blck);
    if ((ts->q && nb00 != ts->size) || (td->q && nb0 != td->size) || ne00 % blk != 0 || ne0 % blk != 0) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    const int simd = p->use_simd;

    float *scratch = NULL;
    if (!same) {
        const size_t per = gg_copy_scratch_bytes(ne0);
        if (p->wdata == NULL || p->wsize < per * (size_t)(p->ith + 1)) {
            gg_fail(p, GG_ERR_BAD_INPUT);
            return;
        }
        scratch = (float *)((char *)p->wdata + per * (size_t)p->ith);
    }

    int64_t r0, r1;
    gg_row_range(p, gg_nrows(dst), &r0, &r1);
    if (r0 >= r1) return;

    /* src position of the first element of dst row r0 (row-major order) */
    int64_t k = r0 * ne0;
    int64_t i00 = k % ne00; k /= ne00;
    int64_t i01 = k % ne01; k /= ne01;
    int64_t i02 = k % ne02; k /= ne02;
    int64_t i03 = k;

    int64_t i1 = r0 % ne1, i2 = (r0 / ne1) % ne2, i3 = r0 / (ne1 * ne2);

    for (int64_t r = r0; r < r1; r++) {
        char *drow = (char *)dst->data + i1 * nb1 + i2 * nb2 + i3 * nb3;
        /* contiguous F32 src covering the whole dst row: convert straight from it */
        const bool direct = !same && src0->type == GG_TYPE_F32 && nb00 == sizeof(float) && i00 + ne0 <= ne00;
        float *f = NULL;
        if (!same && !direct) f = (dst->type == GG_TYPE_F32 && nb0 == sizeof(float)) ? (float *)drow : scratch;

        int64_t done = 0;
        while (done < ne0) {
            const int64_t n = GG_MIN(ne00 - i00, ne0 - done);
            const char *s = (const char *)src0->data + i00 / ts->blck * nb00 + i01 * nb01 + i02 * nb02 + i03 * nb03;
            if (same) {
                gg_copy_bytes(s, nb00, drow + done / td->blck * nb0, nb0, ts->size, n / ts->blck);
            } else if (direct) {
                gg_cvt_row_from_f32(td, simd, (const float *)s, drow, nb0, n);
            } else {
                gg_cvt_row_to_f32(ts, simd, s, nb00, f + done, n);
            }
            done += n;
            i00 += n;
            if (i00 == ne00) {
                i00 = 0;
                if (++i01 == ne01) {
                    i01 = 0;
                    if (++i02 == ne02) { i02 = 0; i03++; }
                }
            }
        }
        if (f != NULL && f != (float *)drow) gg_cvt_row_from_f32(td, simd, f, drow, nb0, ne0);

        if (++i1 == ne1) {
            i1 = 0;
            if (++i2 == ne2) { i2 = 0; i3++; }
        }
    }
}

void gg_fwd_dup(const gg_params *p, gg_tensor *dst) { gg_copy(p, dst->src[0], dst); }

void gg_fwd_cont(const gg_params *p, gg_tensor *dst) { gg_copy(p, dst->src[0], dst); }

/* dst is a view of src[1] (same type, ne, nb): writing dst writes b */
void gg_fwd_cpy(const gg_params *p, gg_tensor *dst) { gg_copy(p, dst->src[0], dst); }
