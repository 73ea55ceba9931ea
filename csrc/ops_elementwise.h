/* ops_elementwise: params (read by cffi too: plain declarations only) */

/* scale, scale_bias: y = x*s + b */
typedef struct {
    float s;
    float b;
} gg_scale_params;

/* clamp: y = max(min(x, max), min); NaN gives max, as ggml's MIN/MAX macros */
typedef struct {
    float min;
    float max;
} gg_clamp_params;

/* swiglu: silu(gate) * up; without src1 a row is [gate | up] ([up | gate] when swapped) */
typedef struct {
    int32_t swapped;
} gg_swiglu_params;
