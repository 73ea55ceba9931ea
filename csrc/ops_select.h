/* ops_select: params of the gather/scatter/sort ops (read by cffi too: plain declarations only).
 * get_rows and set_rows take no params; top_k's k is its result's ne[0]. */
typedef struct {
    int32_t order;                      /* 0: ascending, 1: descending (ggml_sort_order) */
} gg_argsort_params;
