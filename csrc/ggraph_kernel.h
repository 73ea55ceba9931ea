/*
 * ggraph_kernel.h: the header for kernels users write (gg.CKernel).
 *
 *     #include "ggraph_kernel.h"
 *     void my_kernel(const gg_params *p, gg_tensor *dst) {
 *         const gg_tensor *a = dst->src[0];
 *         for (int64_t ir = p->ith; ir < gg_nrows(dst); ir += p->nth) { ... }
 *     }
 *
 * It gives what ggraph's own kernels use: gg_tensor and gg_params, the type
 * ids, GG_TENSOR_UNARY_LOCALS and friends, gg_row_range, f16/bf16
 * conversions, gg_get_f32/gg_set_f32, and gg_barrier/gg_fail (through the
 * runtime's service table: a user kernel lives in its own shared library).
 */
#ifndef GGRAPH_KERNEL_H
#define GGRAPH_KERNEL_H

#define GG_USER_KERNEL 1
#include "ggraph_impl.h"
#include "ops_custom.h"

/* the userdata given to gg.map_customN(..., userdata=...) (NULL if none) */
static inline void *gg_custom_userdata(const gg_tensor *dst) {
    return GG_PARAMS(gg_custom_params, dst)->userdata;
}

/* a row of any type the runtime converts (F32, F16, BF16, I32, ...) to f32 and
 * back; xs/ys are element strides in bytes */
static inline void gg_row_to_f32(const gg_params *p, int type, const void *x, size_t xs, float *y, int64_t n) {
    p->rt->cvt_to_f32(p->use_simd, type, x, xs, y, n);
}
static inline void gg_row_from_f32(const gg_params *p, int type, const float *x, void *y, size_t ys, int64_t n) {
    p->rt->cvt_from_f32(p->use_simd, type, x, y, ys, n);
}

#endif
