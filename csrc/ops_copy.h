/* ops_copy: dup, cpy and cont take no params (read by cffi too: plain declarations only).
 * The element converters they share with ops_elementwise.c are declared in that file. */
