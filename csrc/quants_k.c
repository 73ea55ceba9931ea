/*
 * quants_k.c: the 256-element super-block types Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K and the activation type Q8_K. Layouts in quants.h.
 */
#include "quants.h"

const gg_quant_traits gg_quant_traits_k[] = {
    { -1, 0, 0, NULL, NULL, -1, NULL },
};
