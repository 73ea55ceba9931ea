/* ops_softmax: params of soft_max and diag_mask_inf (read by cffi too: plain declarations only) */
typedef struct {
    float scale;                        /* a is multiplied by scale before the mask is added */
    float max_bias;                     /* ALiBi: > 0 gives each head (dim 2) its own mask slope */
} gg_soft_max_params;

typedef struct {
    int32_t n_past;                     /* a[i0, i1] = -inf where i0 > n_past + i1 */
} gg_diag_mask_params;
