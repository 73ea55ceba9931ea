/*
 * ops_custom.c: map_custom1/2/3, user functions as graph nodes.
 *
 * A compiled kernel (gg.CKernel) is called directly, like any other kernel.
 * A Python function is reached through gg_custom_py_call, a cffi
 * `extern "Python+C"` callback: cffi takes the GIL for the call only, so the
 * rest of the graph runs without it.
 */
#include "ggraph_impl.h"
#include "ops_custom.h"

/* defined by the cffi module (build_ffi.py); 0 on success */
int gg_custom_py_call(const gg_params *p, gg_tensor *dst, int32_t slot);

static void gg_custom_run(const gg_params *p, gg_tensor *dst) {
    const gg_custom_params *cp = GG_PARAMS(gg_custom_params, dst);
    if (cp->fn != NULL) {
        cp->fn(p, dst);
        return;
    }
    if (cp->py_slot < 0 || gg_custom_py_call(p, dst, cp->py_slot) != 0) {
        gg_fail(p, GG_ERR_PYTHON);
    }
}

void gg_fwd_map_custom1(const gg_params *p, gg_tensor *dst) { gg_custom_run(p, dst); }
void gg_fwd_map_custom2(const gg_params *p, gg_tensor *dst) { gg_custom_run(p, dst); }
void gg_fwd_map_custom3(const gg_params *p, gg_tensor *dst) { gg_custom_run(p, dst); }
