/*
 * ggraph_impl.h: what every kernel file includes. Not seen by cffi.
 *
 * A kernel has the signature
 *     void gg_fwd_<op>(const gg_params *p, gg_tensor *dst);
 * and does its share of the rows: for (ir = p->ith; ir < nr; ir += p->nth),
 * or a contiguous range from gg_row_range(). Its params struct lives in the
 * family header (ops_<family>.h), which cffi also reads.
 */
#ifndef GGRAPH_IMPL_H
#define GGRAPH_IMPL_H

#include "ggraph.h"
#include <math.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define GG_AVX2 1
#include <immintrin.h>
#else
#define GG_AVX2 0
#endif

/* type ids: the same numbers as ggml's enum ggml_type */
enum {
    GG_TYPE_F32 = 0, GG_TYPE_F16 = 1,
    GG_TYPE_Q4_0 = 2, GG_TYPE_Q4_1 = 3, GG_TYPE_Q5_0 = 6, GG_TYPE_Q5_1 = 7,
    GG_TYPE_Q8_0 = 8, GG_TYPE_Q8_1 = 9,
    GG_TYPE_Q2_K = 10, GG_TYPE_Q3_K = 11, GG_TYPE_Q4_K = 12, GG_TYPE_Q5_K = 13,
    GG_TYPE_Q6_K = 14, GG_TYPE_Q8_K = 15,
    GG_TYPE_I8 = 24, GG_TYPE_I16 = 25, GG_TYPE_I32 = 26, GG_TYPE_I64 = 27,
    GG_TYPE_F64 = 28, GG_TYPE_BF16 = 30,
};

/* op ids, generated from ops.def */
enum gg_op {
#define GG_OP(NAME, name) GG_OP_##NAME,
#include "ops.def"
#undef GG_OP
    GG_OP_COUNT
};

#ifndef GG_USER_KERNEL
/* a kernel reports a problem it cannot handle (an unsupported type pair)
 * instead of aborting; the graph stops after the current node */
void gg_fail(const gg_params *p, int code);

/* waits until every thread working on this graph gets here: all n_threads of
 * the compute, not only the node's p->nth. A kernel that calls it must run on
 * all threads (its op keeps the default n_tasks), and every thread must call
 * it, rows or not, or it pairs with the end-of-node barrier. */
void gg_barrier(const gg_params *p);

/* element converters (ops_copy.c: its table is the one place a type's row
 * conversion is added). xs/ys are element strides in bytes. */
int  gg_cvt_has(int type);
void gg_cvt_to_f32(int simd, int type, const void *x, size_t xs, float *y, int64_t n);
void gg_cvt_from_f32(int simd, int type, const float *x, void *y, size_t ys, int64_t n);
#else
/* a kernel built apart from the runtime (gg.CKernel) reaches the same
 * services through the table in its params */
static inline void gg_fail(const gg_params *p, int code) { p->rt->fail(p, code); }
static inline void gg_barrier(const gg_params *p) { p->rt->barrier(p); }
#endif

/* f32 -> i32 truncating toward zero; NaN and out-of-range give INT32_MIN, as
 * x86's cvttss2si does (a plain C cast would be undefined there) */
static inline int32_t gg_f32_to_i32(float v) {
    return (v >= -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
}

#define GG_UNUSED(x) (void)(x)
#define GG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* shorthands in ggml's style: ne00 is src0's ne[0], ne1 is dst's ne[1], ... */
#define GG_LOCALS_1(pfx, t)                                   \
    const int64_t pfx##0 = (t)->ne[0], pfx##1 = (t)->ne[1],   \
                  pfx##2 = (t)->ne[2], pfx##3 = (t)->ne[3];   \
    GG_UNUSED(pfx##0); GG_UNUSED(pfx##1); GG_UNUSED(pfx##2); GG_UNUSED(pfx##3);
#define GG_LOCALS_NB(pfx, t)                                  \
    const size_t pfx##0 = (t)->nb[0], pfx##1 = (t)->nb[1],    \
                 pfx##2 = (t)->nb[2], pfx##3 = (t)->nb[3];    \
    GG_UNUSED(pfx##0); GG_UNUSED(pfx##1); GG_UNUSED(pfx##2); GG_UNUSED(pfx##3);

#define GG_TENSOR_UNARY_LOCALS        \
    GG_LOCALS_1(ne0, dst->src[0])     \
    GG_LOCALS_NB(nb0, dst->src[0])    \
    GG_LOCALS_1(ne, dst)              \
    GG_LOCALS_NB(nb, dst)

#define GG_TENSOR_BINARY_LOCALS       \
    GG_TENSOR_UNARY_LOCALS            \
    GG_LOCALS_1(ne1, dst->src[1])     \
    GG_LOCALS_NB(nb1, dst->src[1])

#define GG_PARAMS(type, t) ((const type *)(const void *)(t)->op_params)

static inline int64_t gg_nrows(const gg_tensor *t) {
    return t->ne[1] * t->ne[2] * t->ne[3];
}

static inline int64_t gg_nelements(const gg_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* rows [*r0, *r1) of nr for this thread: contiguous chunks, for kernels
 * whose threads should touch neighbouring memory */
static inline void gg_row_range(const gg_params *p, int64_t nr, int64_t *r0, int64_t *r1) {
    const int64_t dr = (nr + p->nth - 1) / p->nth;
    *r0 = GG_MIN(dr * p->ith, nr);
    *r1 = GG_MIN(*r0 + dr, nr);
}

static inline bool gg_is_contiguous_rows(const gg_tensor *t, size_t type_size) {
    return t->nb[0] == type_size;
}

/* ---- half precision ---- */

static inline float gg_fp16_to_fp32(uint16_t h) {
#if GG_AVX2
    return _cvtsh_ss(h);
#else
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {                                  /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

static inline uint16_t gg_fp32_to_fp16(float f) {
#if GG_AVX2
    return _cvtss_sh(f, 0);                       /* round to nearest even */
#else
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) {                    /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) {                    /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    }
    if (absx < 0x38800000u) {                     /* below the smallest normal half */
        if (absx < 0x33000000u) return (uint16_t)sign;   /* < 2^-25 rounds to 0 */
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e;           /* 14..24 */
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    const uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
#endif
}

/* bf16: the top half of an f32; rounding to nearest even, NaN kept quiet */
static inline float gg_bf16_to_fp32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t gg_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

/* reads element i of a row of type t as f32 (F32, F16, BF16, I32) */
static inline float gg_get_f32(const void *row, int type, int64_t i) {
    switch (type) {
    case GG_TYPE_F32:  return ((const float *)row)[i];
    case GG_TYPE_F16:  return gg_fp16_to_fp32(((const uint16_t *)row)[i]);
    case GG_TYPE_BF16: return gg_bf16_to_fp32(((const uint16_t *)row)[i]);
    case GG_TYPE_I32:  return (float)((const int32_t *)row)[i];
    default:           return NAN;
    }
}

static inline void gg_set_f32(void *row, int type, int64_t i, float v) {
    switch (type) {
    case GG_TYPE_F32:  ((float *)row)[i] = v; break;
    case GG_TYPE_F16:  ((uint16_t *)row)[i] = gg_fp32_to_fp16(v); break;
    case GG_TYPE_BF16: ((uint16_t *)row)[i] = gg_fp32_to_bf16(v); break;
    case GG_TYPE_I32:  ((int32_t *)row)[i] = gg_f32_to_i32(v); break;
    default: break;
    }
}

static inline bool gg_is_float_type(int type) {
    return type == GG_TYPE_F32 || type == GG_TYPE_F16 || type == GG_TYPE_BF16;
}

#endif
