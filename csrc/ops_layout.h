/* ops_layout: params of concat, pad and arange (read by cffi too: plain declarations only).
 * repeat has no params: its shape is dst's. */
typedef struct {
    int32_t dim;                        /* 0..3: the dimension a and b are joined along */
} gg_concat_params;

typedef struct {
    int32_t lp0, rp0;                   /* zeros before / after, per dimension, all >= 0 */
    int32_t lp1, rp1;
    int32_t lp2, rp2;
    int32_t lp3, rp3;
} gg_pad_params;

typedef struct {
    float start, stop, step;            /* dst[i] = start + step * i, i < ne0 */
} gg_arange_params;
