/* ops_attention: params of flash_attn_ext (read by cffi too: plain declarations only) */
typedef struct {
    float scale;                        /* applied to q.k before the soft cap */
    float max_bias;                     /* ALiBi: 0 disables; > 0 needs a mask */
    float logit_softcap;                /* 0 disables; else s = softcap * tanh(s / softcap) */
} gg_flash_attn_ext_params;
