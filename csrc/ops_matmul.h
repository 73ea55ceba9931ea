/* ops_matmul: mul_mat and out_prod take no params (read by cffi too: plain declarations only).
 * mul_mat's work buffer: a 64-byte chunk counter, then (when b is converted)
 * b's columns in a's vec_dot type, packed: column j of plane (i12, i13) at
 * ((i13 * ne12 + i12) * ne11 + j) * row_size(vec_dot_type, K). */
