/*
 * qgemv.h: rows of block-type weights times one activation column (decode).
 * Not read by cffi.
 *
 * The dot-product path calls the type's vec_dot once per weight row. Its
 * AVX2 form handles one block per 256-bit step and assembles every block's
 * f16 scales with scalar loads, which left Q4_1 decode compute-bound at about
 * half the memory bandwidth. Here, with AVX-512 VNNI, a row is multiplied
 * two blocks (or a quarter of a K super-block) per 512-bit instruction
 * against a column prepared once per call (its quants in the same layout),
 * and a group of 8 blocks or super-blocks shares its scale arithmetic.
 * Each output of a 32-value type is bit-identical to the type's vec_dot: the
 * same exact integer sum per block, the same fused multiply-adds into the
 * same lanes, the same final lane sum. The K types sum each super-block
 * exactly in int32 and add it in f32 in their own order (qgemv.c): not
 * vec_dot's bits, but as accurate.
 *
 * Built only where AVX-512 VNNI and VL are; elsewhere gg_qgemv_usable() is
 * false and mul_mat keeps calling vec_dot.
 */
#ifndef GGRAPH_QGEMV_H
#define GGRAPH_QGEMV_H

#include "quants.h"

#if GG_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define GG_QGEMV 1
#else
#define GG_QGEMV 0
#endif

/* true when this path computes rows of `type` (and the switch is on) */
int gg_qgemv_usable(int type, int simd);

/* out[i] = (row i of a, at a + i * lda) . y for i < nrows, as the type's
 * vec_dot(simd=1) (the same bits for the 32-value types); y is k values of
 * the type's vec_dot_type */
void gg_qgemv(int type, int64_t k, const char *a, size_t lda, int64_t nrows, const void *y, float *out);

#endif
