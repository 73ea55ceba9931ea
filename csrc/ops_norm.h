/* ops_norm: params of norm and rms_norm (read by cffi too: plain declarations only) */
typedef struct {
    float eps;
} gg_norm_params;
