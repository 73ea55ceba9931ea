/* ops_rope: params of rope (read by cffi too: plain declarations only) */
typedef struct {
    int32_t n_dims;                     /* leading dims of each row that rotate (even, <= ne0) */
    int32_t mode;                       /* 0 normal (adjacent pairs), 2 NEOX (halves) */
    int32_t n_ctx_orig;                 /* YaRN: the context the model was trained on */
    float   freq_base;                  /* theta_k = pos * freq_base^(-2k/n_dims) */
    float   freq_scale;                 /* position interpolation factor */
    float   ext_factor;                 /* YaRN: mix of extrapolated theta, 0 disables */
    float   attn_factor;                /* scales cos and sin */
    float   beta_fast;                  /* YaRN correction range, in rotations */
    float   beta_slow;
} gg_rope_params;
