/*
 * ggraph.h: the C side of ggraph as cffi sees it.
 *
 * This file is read twice: by the C compiler and, with preprocessor lines
 * dropped, by cffi's cdef parser. Keep it to plain declarations (no macros
 * with bodies, no includes below the guard).
 *
 * Tensor layout follows ggml: ne[0] is the innermost (fastest) dimension,
 * nb[i] is the stride of dimension i in bytes. For block (quantized) types
 * nb[0] is the size of one block and ne[0] counts elements.
 */
#ifndef GGRAPH_H
#define GGRAPH_H
#include <stdint.h>
#include <stddef.h>

#define GG_MAX_DIMS 4
#define GG_MAX_SRC 6
#define GG_MAX_OP_PARAMS 64

typedef struct gg_tensor gg_tensor;

struct gg_tensor {
    int32_t type;                       /* gg type id, equal to ggml's */
    int32_t op;                         /* index into ops.def */
    int64_t ne[4];                      /* elements per dimension */
    size_t  nb[4];                      /* bytes per step in each dimension */
    void   *data;
    gg_tensor *src[6];
    int32_t op_params[16];              /* read through the op's params struct */
};

typedef struct gg_threadpool gg_threadpool;
typedef struct gg_params gg_params;

/* runtime services reached through a table, so that kernels compiled apart
 * from the runtime (gg.CKernel: a separate .so that cannot link its symbols)
 * can call them too (ggraph_kernel.h wraps them) */
typedef struct {
    int  version;                       /* GG_RUNTIME_VERSION */
    void (*barrier)(const gg_params *p);
    void (*fail)(const gg_params *p, int code);
    void (*cvt_to_f32)(int simd, int type, const void *x, size_t xs, float *y, int64_t n);
    void (*cvt_from_f32)(int simd, int type, const float *x, void *y, size_t ys, int64_t n);
} gg_runtime;

/* what every kernel gets besides its dst: the thread's share and scratch */
struct gg_params {
    int    ith, nth;                    /* this thread, threads working on this node */
    size_t wsize;                       /* work buffer shared by all threads of the node */
    void  *wdata;
    int    use_simd;                    /* 0 forces the scalar reference paths */
    gg_threadpool *pool;
    const gg_runtime *rt;
};

/* a planned graph: built once in Python, run many times */
typedef struct {
    int32_t     n_nodes;
    gg_tensor **nodes;
    int32_t    *n_tasks;                /* threads per node, <= n_threads */
    size_t      wsize;
    void       *wdata;
    int64_t    *node_ns;                /* per-node wall time, or NULL */
    int32_t     failed_node;            /* out: index of the node that failed, or -1 */
} gg_cgraph;

/* runs every node in order; 0 on success, else a GG_ERR_* code */
int  gg_graph_compute(gg_cgraph *graph, int n_threads);

int  gg_op_count(void);
const char *gg_op_name(int op);
int  gg_op_is_nop(int op);
int  gg_op_has_kernel(int op);
int  gg_simd_available(void);           /* 1 when built with AVX2+FMA+F16C */
void gg_set_use_simd(int on);
int  gg_get_use_simd(void);
int  gg_threadpool_size(void);          /* threads created so far (including the caller) */

void gg_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n);
void gg_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n);
void gg_fp32_to_bf16_row(const float *x, uint16_t *y, int64_t n);
void gg_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n);

/* block types (quants.c): row conversions and dot products, for gg.quantize,
 * gg.dequantize and tests; n_per_row must be a multiple of the block size */
int  gg_quant_blck_size(int type);        /* 0: not a block type */
int  gg_quant_type_size(int type);
int  gg_quant_vec_dot_type(int type);     /* -1: activation-only type */
int  gg_quantize_rows(int type, const float *x, void *y, int64_t nrows, int64_t n_per_row, int simd);
int  gg_dequantize_rows(int type, const void *x, float *y, int64_t nrows, int64_t n_per_row, int simd);
int  gg_quant_vec_dot(int type, const void *x, const void *y, int64_t n, int simd, float *out);
/* extra work bytes mul_mat's matrix-matrix path (qgemm.c) takes for ncols
   columns of k values at nth threads; 0 when that path is not built in */
size_t gg_qgemm_work_bytes(int type, int64_t k, int64_t ncols, int nth);
/* 0 turns that path off (to measure what it buys); returns the previous setting */
int  gg_qgemm_enable(int on);
int  gg_qgemm_built(void);               /* the AVX-512 VNNI tile path is compiled in */
int  gg_qgemv_enable(int on);            /* rows times one column, AVX-512 VNNI (qgemv.c) */
int  gg_qgemv_built(void);
int  gg_fa_tiled_built(void);            /* the AVX-512 tiled flash attention is compiled in */
int  gg_fa_tiled_enable(int on);         /* 0 turns it off (to measure it); returns the previous setting */
/* work bytes of flash_attn_ext (its shapes; the kernel checks it has them) */
size_t gg_fa_work_bytes(int64_t dk, int64_t dv, int64_t n_q, int64_t n_head, int64_t n_head_kv, int64_t n_head_v,
                        int64_t ne3, int64_t n_kv, int nth);

#define GG_OK 0
#define GG_ERR_NO_KERNEL 1
#define GG_ERR_UNSUPPORTED_TYPE 2
#define GG_ERR_BAD_INPUT 3
#define GG_ERR_THREADS 4
#define GG_ERR_PYTHON 5

#define GG_RUNTIME_VERSION 1

#endif
