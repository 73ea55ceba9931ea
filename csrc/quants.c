/*
 * quants.c: the lookup over the block types' traits rows, and the row-level
 * entry points Python calls (gg.quantize, gg.dequantize, tests of vec_dot).
 */
#include "quants.h"

const gg_quant_traits *gg_quant_traits_of(int type) {
    static const gg_quant_traits *const families[] = { gg_quant_traits_plain, gg_quant_traits_k };
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        for (const gg_quant_traits *t = families[f]; t->type >= 0; t++) {
            if (t->type == type) return t;
        }
    }
    return NULL;
}

int gg_quant_blck_size(int type) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    return t ? (int)t->blck_size : 0;
}

int gg_quant_type_size(int type) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    return t ? (int)t->type_size : 0;
}

int gg_quant_vec_dot_type(int type) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    return t ? t->vec_dot_type : -1;
}

static int gg_quant_check(const gg_quant_traits *t, int64_t n) {
    if (t == NULL) return GG_ERR_UNSUPPORTED_TYPE;
    if (n < 0 || n % t->blck_size != 0) return GG_ERR_BAD_INPUT;
    return GG_OK;
}

int gg_quantize_rows(int type, const float *x, void *y, int64_t nrows, int64_t n_per_row, int simd) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    const int rc = gg_quant_check(t, n_per_row);
    if (rc != GG_OK || t->from_float == NULL) return rc != GG_OK ? rc : GG_ERR_UNSUPPORTED_TYPE;
    const size_t row_bytes = (size_t)(n_per_row / t->blck_size) * t->type_size;
    for (int64_t r = 0; r < nrows; r++) {
        t->from_float(simd && GG_AVX2, x + r * n_per_row, (char *)y + r * row_bytes, n_per_row);
    }
    return GG_OK;
}

int gg_dequantize_rows(int type, const void *x, float *y, int64_t nrows, int64_t n_per_row, int simd) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    const int rc = gg_quant_check(t, n_per_row);
    if (rc != GG_OK || t->to_float == NULL) return rc != GG_OK ? rc : GG_ERR_UNSUPPORTED_TYPE;
    const size_t row_bytes = (size_t)(n_per_row / t->blck_size) * t->type_size;
    for (int64_t r = 0; r < nrows; r++) {
        t->to_float(simd && GG_AVX2, (const char *)x + r * row_bytes, y + r * n_per_row, n_per_row);
    }
    return GG_OK;
}

int gg_quant_vec_dot(int type, const void *x, const void *y, int64_t n, int simd, float *out) {
    const gg_quant_traits *t = gg_quant_traits_of(type);
    const int rc = gg_quant_check(t, n);
    if (rc != GG_OK || t->vec_dot == NULL) return rc != GG_OK ? rc : GG_ERR_UNSUPPORTED_TYPE;
    *out = t->vec_dot(simd && GG_AVX2, n, x, y);
    return GG_OK;
}
