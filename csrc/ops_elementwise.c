/*
 * ops_elementwise.c: binary ops with broadcasting (add, sub, mul, div, add1),
 * scale, clamp, unary maps and swiglu, for F32, F16 and BF16.
 *
 * Every kernel works on rows (dim 0) split among threads in contiguous
 * chunks. A row is handled in f32: a source row that is packed F32 is used
 * in place, any other (F16/BF16, or strided: permuted, transposed, gapped)
 * is converted into the thread's scratch row or straight into the dst row;
 * the f32 result is written to dst directly when dst is packed F32, else
 * converted. Each op works element by element, so dst may alias src0 (the
 * allocator runs them in place).
 *
 * AVX2 paths: the binary ops, scale, clamp, sqr/sqrt/neg/abs/relu and the
 * exp family (exp, sigmoid, silu, gelu, swiglu) through gg_v_expf. log, sin,
 * cos and tanh call libm on both paths.
 */
#include "ggraph_impl.h"
#include "vec.h"
#include "ops_elementwise.h"

/* this thread's scratch of nf floats, or NULL if the work buffer is short;
 * the size per thread must match elementwise.py's _scratch_bytes */
static float *gg_ew_scratch(const gg_params *p, int64_t nf) {
    const size_t per = (((size_t)nf * sizeof(float) + 63) & ~(size_t)63) + 64;
    if (p->wdata == NULL || p->wsize < per * (size_t)(p->ith + 1)) return NULL;
    return (float *)((char *)p->wdata + per * (size_t)p->ith);
}

static inline bool gg_same_shape(const gg_tensor *a, const gg_tensor *b) {
    return a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] && a->ne[3] == b->ne[3];
}

/* ---- exp and friends ---- */

#if GG_AVX2

/* x / (1 + e^-x) */
static inline __m256 gg_v_silu(__m256 x) {
    const __m256 e = gg_v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 gg_v_sigmoid(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = gg_v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}
#endif

static const float GG_GELU_C = 0.79788456080286535588f;    /* sqrt(2/pi) */
static const float GG_GELU_A = 0.044715f;

/* gelu, tanh approximation: 0.5*x*(1 + tanh(u)) = x / (1 + e^(-2u)),
 * u = sqrt(2/pi)*(x + 0.044715*x^3); the second form has no cancellation
 * for negative x */
static inline float gg_gelu_f32(float x) {
    const float u = GG_GELU_C * x * (1.0f + GG_GELU_A * x * x);
    return x / (1.0f + expf(-2.0f * u));
}

#if GG_AVX2
static inline __m256 gg_v_gelu(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f * GG_GELU_C), x),
                                   _mm256_fmadd_ps(_mm256_set1_ps(GG_GELU_A), x2, one));
    return _mm256_div_ps(x, _mm256_add_ps(one, gg_v_expf(u)));
}
#endif

/* ---- unary row functions: y[i] = f(x[i]), y may alias x; c: the op's float params ---- */

typedef void (*gg_unary_fn)(int simd, float *y, const float *x, int64_t n, const float *c);

#if GG_AVX2
#define GG_VLOOP(VEXPR)                                                    \
    if (simd) {                                                            \
        for (; i + 8 <= n; i += 8) {                                       \
            const __m256 v = _mm256_loadu_ps(x + i);                       \
            _mm256_storeu_ps(y + i, (VEXPR));                              \
        }                                                                  \
    }
#else
#define GG_VLOOP(VEXPR) GG_UNUSED(simd);
#endif

/* an op with an AVX2 expression and a scalar one, both of v */
#define GG_UNARY(name, VEXPR, SEXPR)                                                      \
    static void gg_un_##name(int simd, float *y, const float *x, int64_t n, const float *c) { \
        int64_t i = 0;                                                                    \
        GG_UNUSED(c);                                                                     \
        GG_VLOOP(VEXPR)                                                                   \
        for (; i < n; i++) {                                                              \
            const float v = x[i];                                                         \
            y[i] = (SEXPR);                                                               \
        }                                                                                 \
    }

/* an op computed by libm on both paths */
#define GG_UNARY_LIBM(name, SEXPR)                                                        \
    static void gg_un_##name(int simd, float *y, const float *x, int64_t n, const float *c) { \
        GG_UNUSED(simd);                                                                  \
        GG_UNUSED(c);                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                 \
            const float v = x[i];                                                         \
            y[i] = (SEXPR);                                                               \
        }                                                                                 \
    }

GG_UNARY(sqr,     _mm256_mul_ps(v, v), v * v)
GG_UNARY(sqrt,    _mm256_sqrt_ps(v), sqrtf(v))
GG_UNARY(neg,     _mm256_xor_ps(v, _mm256_set1_ps(-0.0f)), -v)
GG_UNARY(abs,     _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), fabsf(v))
/* max_ps returns its second operand for NaN: NaN -> 0, as ggml's x > 0 ? x : 0 */
GG_UNARY(relu,    _mm256_max_ps(v, _mm256_setzero_ps()), v > 0.0f ? v : 0.0f)
GG_UNARY(exp,     gg_v_expf(v), expf(v))
GG_UNARY(sigmoid, gg_v_sigmoid(v), 1.0f / (1.0f + expf(-v)))
GG_UNARY(silu,    gg_v_silu(v), v / (1.0f + expf(-v)))
GG_UNARY(gelu,    gg_v_gelu(v), gg_gelu_f32(v))
GG_UNARY_LIBM(log,  logf(v))
GG_UNARY_LIBM(sin,  sinf(v))
GG_UNARY_LIBM(cos,  cosf(v))
GG_UNARY_LIBM(tanh, tanhf(v))

/* y = x*s, or x*s + b when b != 0 (c = {s, b}) */
static void gg_un_scale(int simd, float *y, const float *x, int64_t n, const float *c) {
    const float s = c[0], b = c[1];
    int64_t i = 0;
    if (b == 0.0f) {
        gg_vec_scale_f32(simd, y, x, s, n);
        return;
    }
#if GG_AVX2
    if (simd) {
        const __m256 vs = _mm256_set1_ps(s), vb = _mm256_set1_ps(b);
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vs, vb));
    }
#endif
    for (; i < n; i++) y[i] = x[i] * s + b;
}

/* y = max(min(x, hi), lo) with ggml's comparisons: NaN -> hi (c = {lo, hi}) */
static void gg_un_clamp(int simd, float *y, const float *x, int64_t n, const float *c) {
    const float lo = c[0], hi = c[1];
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
        for (; i + 8 <= n; i += 8) {
            _mm256_storeu_ps(y + i, _mm256_max_ps(_mm256_min_ps(_mm256_loadu_ps(x + i), vhi), vlo));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) {
        const float t = x[i] < hi ? x[i] : hi;
        y[i] = t > lo ? t : lo;
    }
}

/* the unary kernel: dst has src0's type and shape */
static void gg_unary(const gg_params *p, gg_tensor *dst, gg_unary_fn fn, const float *c) {
    const gg_tensor *src0 = dst->src[0];
    GG_TENSOR_UNARY_LOCALS
    const int t = src0->type;
    if (!gg_is_float_type(t) || dst->type != t || !gg_same_shape(src0, dst)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int simd = p->use_simd;
    const bool x_f32 = t == GG_TYPE_F32 && nb00 == sizeof(float);
    const bool z_f32 = t == GG_TYPE_F32 && nb0 == sizeof(float);
    float *scratch = NULL;
    if (!(x_f32 && z_f32) && (scratch = gg_ew_scratch(p, ne00)) == NULL) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    int64_t r0, r1;
    gg_row_range(p, ne01 * ne02 * ne03, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i1 = ir % ne01, i2 = (ir / ne01) % ne02, i3 = ir / (ne01 * ne02);
        const char *x = (const char *)src0->data + i1 * nb01 + i2 * nb02 + i3 * nb03;
        char *z = (char *)dst->data + i1 * nb1 + i2 * nb2 + i3 * nb3;
        float *zf = z_f32 ? (float *)z : scratch;
        const float *xf = (const float *)x;
        if (!x_f32) {
            gg_cvt_to_f32(simd, t, x, nb00, zf, ne00);
            xf = zf;
        }
        fn(simd, zf, xf, ne00, c);
        if (!z_f32) gg_cvt_from_f32(simd, t, zf, z, nb0, ne0);
    }
}

#define GG_UNARY_KERNEL(name) \
    void gg_fwd_##name(const gg_params *p, gg_tensor *dst) { gg_unary(p, dst, gg_un_##name, NULL); }

GG_UNARY_KERNEL(sqr)
GG_UNARY_KERNEL(sqrt)
GG_UNARY_KERNEL(log)
GG_UNARY_KERNEL(sin)
GG_UNARY_KERNEL(cos)
GG_UNARY_KERNEL(exp)
GG_UNARY_KERNEL(neg)
GG_UNARY_KERNEL(abs)
GG_UNARY_KERNEL(tanh)
GG_UNARY_KERNEL(sigmoid)
GG_UNARY_KERNEL(relu)
GG_UNARY_KERNEL(gelu)
GG_UNARY_KERNEL(silu)

void gg_fwd_scale(const gg_params *p, gg_tensor *dst) {
    const gg_scale_params *sp = GG_PARAMS(gg_scale_params, dst);
    const float c[2] = { sp->s, sp->b };
    gg_unary(p, dst, gg_un_scale, c);
}

void gg_fwd_clamp(const gg_params *p, gg_tensor *dst) {
    const gg_clamp_params *cp = GG_PARAMS(gg_clamp_params, dst);
    const float c[2] = { cp->min, cp->max };
    gg_unary(p, dst, gg_un_clamp, c);
}

/* ---- binary ops: z = x op y over a row; y either n long or one value ---- */

typedef void (*gg_vv_fn)(int simd, float *z, const float *x, const float *y, int64_t n);
typedef void (*gg_vs_fn)(int simd, float *z, const float *x, float y, int64_t n);

#if GG_AVX2
#define GG_BIN_VLOOP(VOP, YV)                                                           \
    if (simd) {                                                                         \
        for (; i + 8 <= n; i += 8) {                                                    \
            _mm256_storeu_ps(z + i, VOP(_mm256_loadu_ps(x + i), (YV)));                 \
        }                                                                               \
    }
#else
#define GG_BIN_VLOOP(VOP, YV) GG_UNUSED(simd);
#endif

#define GG_BINARY(name, VOP, OP)                                                        \
    static void gg_vv_##name(int simd, float *z, const float *x, const float *y, int64_t n) { \
        int64_t i = 0;                                                                  \
        GG_BIN_VLOOP(VOP, _mm256_loadu_ps(y + i))                                       \
        for (; i < n; i++) z[i] = x[i] OP y[i];                                         \
    }                                                                                   \
    static void gg_vs_##name(int simd, float *z, const float *x, float y, int64_t n) {  \
        int64_t i = 0;                                                                  \
        GG_BIN_VLOOP(VOP, _mm256_set1_ps(y))                                            \
        for (; i < n; i++) z[i] = x[i] OP y;                                            \
    }

GG_BINARY(add, _mm256_add_ps, +)
GG_BINARY(sub, _mm256_sub_ps, -)
GG_BINARY(mul, _mm256_mul_ps, *)
GG_BINARY(div, _mm256_div_ps, /)

/*
 * dst = src0 op src1, src1 repeated over src0 (each src0 ne a multiple of
 * src1's; ggml_can_repeat). Types: src0 = dst in F32/F16/BF16, src1 F32 or
 * src0's type.
 */
static void gg_binary(const gg_params *p, gg_tensor *dst, gg_vv_fn vv, gg_vs_fn vs) {
    const gg_tensor *src0 = dst->src[0], *src1 = dst->src[1];
    GG_TENSOR_BINARY_LOCALS
    const int t0 = src0->type, t1 = src1->type;
    if (!gg_is_float_type(t0) || dst->type != t0 || (t1 != GG_TYPE_F32 && t1 != t0) ||
        !gg_same_shape(src0, dst) || ne00 % ne10 || ne01 % ne11 || ne02 % ne12 || ne03 % ne13) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int simd = p->use_simd;
    const bool x_f32 = t0 == GG_TYPE_F32 && nb00 == sizeof(float);
    const bool y_f32 = t1 == GG_TYPE_F32 && nb10 == sizeof(float);
    const bool z_f32 = t0 == GG_TYPE_F32 && nb0 == sizeof(float);
    float *scratch = NULL;         /* [ne00 floats of z | ne10 floats of y] */
    if (!(x_f32 && y_f32 && z_f32) && (scratch = gg_ew_scratch(p, ne00 + ne10)) == NULL) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    int64_t r0, r1;
    gg_row_range(p, ne01 * ne02 * ne03, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i01 = ir % ne01, i02 = (ir / ne01) % ne02, i03 = ir / (ne01 * ne02);
        const int64_t i11 = i01 % ne11, i12 = i02 % ne12, i13 = i03 % ne13;
        const char *x = (const char *)src0->data + i01 * nb01 + i02 * nb02 + i03 * nb03;
        const char *y = (const char *)src1->data + i11 * nb11 + i12 * nb12 + i13 * nb13;
        char *z = (char *)dst->data + i01 * nb1 + i02 * nb2 + i03 * nb3;

        float *zf = z_f32 ? (float *)z : scratch;
        const float *xf = (const float *)x, *yf = (const float *)y;
        if (!x_f32) {
            gg_cvt_to_f32(simd, t0, x, nb00, zf, ne00);
            xf = zf;
        }
        if (!y_f32) {
            gg_cvt_to_f32(simd, t1, y, nb10, scratch + ne00, ne10);
            yf = scratch + ne00;
        }
        if (ne10 == ne00) {
            vv(simd, zf, xf, yf, ne00);
        } else if (ne10 == 1) {
            vs(simd, zf, xf, yf[0], ne00);
        } else {
            for (int64_t r = 0; r < ne00 / ne10; r++) vv(simd, zf + r * ne10, xf + r * ne10, yf, ne10);
        }
        if (!z_f32) gg_cvt_from_f32(simd, t0, zf, z, nb0, ne0);
    }
}

void gg_fwd_add(const gg_params *p, gg_tensor *dst) { gg_binary(p, dst, gg_vv_add, gg_vs_add); }
void gg_fwd_sub(const gg_params *p, gg_tensor *dst) { gg_binary(p, dst, gg_vv_sub, gg_vs_sub); }
void gg_fwd_mul(const gg_params *p, gg_tensor *dst) { gg_binary(p, dst, gg_vv_mul, gg_vs_mul); }
void gg_fwd_div(const gg_params *p, gg_tensor *dst) { gg_binary(p, dst, gg_vv_div, gg_vs_div); }

/* add1: src1 is a single value, which the broadcasting binary kernel repeats */
void gg_fwd_add1(const gg_params *p, gg_tensor *dst) { gg_binary(p, dst, gg_vv_add, gg_vs_add); }

/* ---- swiglu: silu(gate) * up ---- */

static void gg_vec_swiglu(int simd, float *z, const float *g, const float *u, int64_t n) {
    int64_t i = 0;
#if GG_AVX2
    if (simd) {
        for (; i + 8 <= n; i += 8) {
            _mm256_storeu_ps(z + i, _mm256_mul_ps(gg_v_silu(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
        }
    }
#else
    GG_UNUSED(simd);
#endif
    for (; i < n; i++) z[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/*
 * Without src1 a row of src0 holds [gate | up] (nc = dst ne0 each; an odd
 * last element is ignored, as in ggml), or [up | gate] when swapped. With
 * src1 (same type and shape as src0): gate = src0, up = src1.
 */
void gg_fwd_swiglu(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *src0 = dst->src[0], *src1 = dst->src[1];
    GG_TENSOR_UNARY_LOCALS
    const int t = src0->type;
    const int64_t nc = ne0;
    const bool swapped = GG_PARAMS(gg_swiglu_params, dst)->swapped != 0;
    if (!gg_is_float_type(t) || dst->type != t || ne01 != ne1 || ne02 != ne2 || ne03 != ne3 ||
        (src1 ? (src1->type != t || !gg_same_shape(src0, src1) || ne00 != nc) : ne00 < 2 * nc)) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    const int simd = p->use_simd;
    const size_t ugs = src1 ? src1->nb[0] : nb00;        /* element stride of up */
    const bool g_f32 = t == GG_TYPE_F32 && nb00 == sizeof(float);
    const bool u_f32 = t == GG_TYPE_F32 && ugs == sizeof(float);
    const bool z_f32 = t == GG_TYPE_F32 && nb0 == sizeof(float);
    float *scratch = NULL;         /* [nc floats of z | nc floats of up] */
    if (!(g_f32 && u_f32 && z_f32) && (scratch = gg_ew_scratch(p, 2 * nc)) == NULL) {
        gg_fail(p, GG_ERR_BAD_INPUT);
        return;
    }
    int64_t r0, r1;
    gg_row_range(p, ne01 * ne02 * ne03, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t i1 = ir % ne01, i2 = (ir / ne01) % ne02, i3 = ir / (ne01 * ne02);
        const char *a = (const char *)src0->data + i1 * nb01 + i2 * nb02 + i3 * nb03;
        const char *gate, *up;
        if (src1) {
            gate = a;
            up = (const char *)src1->data + i1 * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3];
        } else {
            gate = a + (swapped ? nc : 0) * nb00;
            up = a + (swapped ? 0 : nc) * nb00;
        }
        char *z = (char *)dst->data + i1 * nb1 + i2 * nb2 + i3 * nb3;

        float *zf = z_f32 ? (float *)z : scratch;
        const float *gf = (const float *)gate, *uf = (const float *)up;
        if (!g_f32) {
            gg_cvt_to_f32(simd, t, gate, nb00, zf, nc);
            gf = zf;
        }
        if (!u_f32) {
            gg_cvt_to_f32(simd, t, up, ugs, scratch + nc, nc);
            uf = scratch + nc;
        }
        gg_vec_swiglu(simd, zf, gf, uf, nc);
        if (!z_f32) gg_cvt_from_f32(simd, t, zf, z, nb0, ne0);
    }
}
