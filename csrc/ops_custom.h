/*
 * ops_custom.h: params of map_custom1/2/3 (ops_custom.c).
 * Read by cffi too: plain declarations only.
 */
#ifndef GGRAPH_OPS_CUSTOM_H
#define GGRAPH_OPS_CUSTOM_H
#include "ggraph.h"

/* a user kernel: the same signature as ggraph's own gg_fwd_<op> */
typedef void (*gg_custom_kernel)(const gg_params *p, gg_tensor *dst);

typedef struct {
    gg_custom_kernel fn;                /* a compiled gg.CKernel, or NULL: a Python function */
    void   *userdata;                   /* passed through untouched (gg_custom_userdata) */
    int32_t py_slot;                    /* the Python function's registration, when fn is NULL */
} gg_custom_params;

#endif
