/*
 * qgemm.h: matrix-matrix products of block-type weights (prefill). Not read
 * by cffi.
 *
 * The matrix-vector path (ops_matmul.c) streams each weight row once per
 * token through the type's vec_dot. With many columns that re-unpacks every
 * weight block once per column; here a tile of GG_QGEMM_ROWS weight rows is
 * unpacked once (quants.h's unpack: unsigned 8-bit quants with a scale and
 * an offset per sub-block), interleaved so one vector holds 4 consecutive k
 * of every row of the tile, and then multiplied with every column by 8-bit
 * dot-product instructions (AVX-512 VNNI). Activations are quantized once per
 * node exactly as on the dot-product path (to the type's vec_dot_type).
 *
 * Built only where AVX-512 VNNI is; elsewhere gg_qgemm_usable() is false and
 * mul_mat keeps its dot-product path.
 */
#ifndef GGRAPH_QGEMM_H
#define GGRAPH_QGEMM_H

#include "quants.h"

#if GG_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define GG_QGEMM 1
#else
#define GG_QGEMM 0
#endif

#define GG_QGEMM_ROWS 16     /* weight rows per tile: the 16 int32 lanes of a zmm */
#define GG_QGEMM_GROUP 4     /* tiles unpacked per chunk (each thread's scratch) */
#define GG_QGEMM_KC 512      /* k per pass: the group's slice of tiles and 8 columns stay in L1 */
/* fewer columns than this: unpacking a tile costs more than it saves (measured:
 * Q4_1/Q5_0 at 4 columns 1.6-2.4x faster than the dot path, Q6_K only from 12) */
#define GG_QGEMM_MIN_N 4
#define GG_QGEMM_MIN_N_SUB16 12

/* true when mul_mat of src0 type `type` with n columns takes this path */
int gg_qgemm_usable(int type, int64_t n, int simd);

/* in ggraph.h too: the work bytes the path needs, 0 if unusable */
size_t gg_qgemm_work_bytes(int type, int64_t k, int64_t ncols, int nth);

/* bytes of one column of activations in the qgemm layout (k values) */
size_t gg_qgemm_col_bytes(int64_t k);
/* bytes of one unpacked tile of weights (k values per row) */
size_t gg_qgemm_tile_bytes(int64_t k, int sub);

/* one column quantized to vec_dot_type (a row of k values of Q8_0, Q8_1 or
 * Q8_K blocks) -> the qgemm activation layout */
void gg_qgemm_from_blocks(int vec_dot_type, const void *blocks, int64_t k, char *col);

/* rows [0, nrows) (nrows <= GG_QGEMM_ROWS) of a at stride lda -> tile; the
 * missing rows of a partial tile are zero */
void gg_qgemm_unpack_tile(const gg_quant_traits *q, const char *a, size_t lda, int64_t nrows, int64_t k,
                          char *tile);

/* c[j * ldc + i] (+)= row i of the tile . column j over k in [k0, k1)
 * (added when k0 > 0), i < nrows, j < ncols; k0, k1 multiples of 32;
 * columns of k values at b + j * ldb in the qgemm activation layout */
void gg_qgemm_tile_cols(const char *tile, int sub, int64_t nrows, int64_t k, int64_t k0, int64_t k1,
                        const char *b, size_t ldb, int64_t ncols, float *c, int64_t ldc);

#endif
