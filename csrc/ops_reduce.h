/* ops_reduce: sum, sum_rows, mean and argmax take no params.
 * sum splits the rows of its source into at most GG_SUM_CHUNKS fixed chunks
 * (fixed by the row count, not the thread count, so the result does not
 * depend on n_threads); one double per chunk goes in the work buffer. */
#define GG_SUM_CHUNKS 64
