"""Reductions over rows (dim 0) or the whole tensor (ggml semantics).

    sum(a)       ne = [1]: the sum of every element; result type a.type (F32, F16, BF16)
    sum_rows(a)  ne = [1, ne1, ne2, ne3]: the sum of each row; F32
    mean(a)      ne = [1, ne1, ne2, ne3]: the mean of each row; F32
    argmax(a)    a a matrix (ne2 = ne3 = 1); I32 ne = [ne1]: the index of each row's max

Rows of a must be packed (nb[0] == type size, as ggml's kernels assume); dims
1..3 may have any strides. Sums are accumulated in double (ggml's
ggml_float) and rounded once to the result type; mean divides that float sum
by ne0 in float, as ggml does.

argmax follows ggml's CPU scan exactly: on ties it returns the LAST index of
the maximum (numpy returns the first); a NaN resets the running maximum, so
with NaNs the answer comes from the last NaN-free stretch of the row, and an
all-NaN row gives 0.
"""
from __future__ import annotations

import numpy as np

from ..tensor import BF16, F16, F32, I32, Tensor
from .registry import check, check_tensor, check_types, defop

_SUM_CHUNKS = 64          # GG_SUM_CHUNKS in csrc/ops_reduce.h: one double of scratch per chunk of rows

SUM = defop("sum", work_size=lambda node, n_threads: _SUM_CHUNKS * 8)
SUM_ROWS = defop("sum_rows")
MEAN = defop("mean")
ARGMAX = defop("argmax")

__all__ = ["sum", "sum_rows", "mean", "argmax"]


def _check_rows(op: str, a: Tensor, types) -> None:
    check_tensor(op, "a", a)
    check_types(op, "a", a, types)
    check(a.nb[0] == a.type.type_size, op, "rows of a must be packed (nb[0] == type size), as in ggml", a)


def sum(a: Tensor) -> Tensor:  # noqa: A001 - ggml's name
    """The sum of all elements of a: one element of a's type."""
    _check_rows("sum", a, (F32, F16, BF16))
    return SUM.node(a.type, [1], [a])


def sum_rows(a: Tensor) -> Tensor:
    """The sum of each row: ne = [1, ne1, ne2, ne3]."""
    _check_rows("sum_rows", a, (F32,))
    return SUM_ROWS.node(F32, [1, a.ne[1], a.ne[2], a.ne[3]], [a])


def mean(a: Tensor) -> Tensor:
    """The mean of each row: ne = [1, ne1, ne2, ne3]."""
    _check_rows("mean", a, (F32,))
    return MEAN.node(F32, [1, a.ne[1], a.ne[2], a.ne[3]], [a])


def argmax(a: Tensor) -> Tensor:
    """I32 [ne1]: the index of the maximum of each row of the matrix a (ties: the last index)."""
    _check_rows("argmax", a, (F32,))
    check(a.ne[2] == 1 and a.ne[3] == 1, "argmax", "a must be a matrix (ne2 == ne3 == 1)", a)
    check(a.ne[0] <= 2**31 - 1, "argmax", "rows must have at most 2^31 - 1 elements", a)
    return ARGMAX.node(I32, [a.ne[1]], [a])


@SUM.reference
def _sum_ref(node, a):
    return a.astype(np.float64).sum()


@SUM_ROWS.reference
def _sum_rows_ref(node, a):
    return a.astype(np.float64).sum(axis=-1, keepdims=True)


@MEAN.reference
def _mean_ref(node, a):
    s = a.astype(np.float64).sum(axis=-1, keepdims=True).astype(np.float32)
    return s / np.float32(a.shape[-1])


def argmax_scan(row: np.ndarray) -> int:
    """ggml's argmax of one row: the last index of the max of the last NaN-free stretch."""
    nan = np.isnan(row)
    if not nan.any():
        m = row.max()
        return int(len(row) - 1 - np.argmax(row[::-1] == m))
    # stretches between NaNs; the scan's state survives trailing NaNs
    cut = np.flatnonzero(nan)
    bounds = zip(np.concatenate([[0], cut + 1]), np.concatenate([cut, [len(row)]]))
    last = [(s, e) for s, e in bounds if e > s]
    if not last:
        return 0
    s, e = last[-1]
    return int(s) + argmax_scan(row[s:e])


@ARGMAX.reference
def _argmax_ref(node, a):
    rows = a.reshape(a.shape[-2], a.shape[-1])
    return np.array([argmax_scan(r) for r in rows], dtype=np.int32)


@SUM.case
def _sum_case(ctx, rng):
    return sum(ctx.from_numpy(rng.standard_normal((2, 3, 37)).astype(np.float32)))


@SUM.case
def _sum_f16_case(ctx, rng):
    return sum(ctx.from_numpy(rng.standard_normal((5, 20)).astype(np.float16)))


@SUM_ROWS.case
def _sum_rows_case(ctx, rng):
    return sum_rows(ctx.from_numpy(rng.standard_normal((3, 4, 29)).astype(np.float32)))


@MEAN.case
def _mean_case(ctx, rng):
    return mean(ctx.from_numpy(rng.standard_normal((2, 5, 33)).astype(np.float32)))


@ARGMAX.case
def _argmax_case(ctx, rng):
    x = rng.standard_normal((7, 50)).astype(np.float32)
    x[2, [3, 40]] = 9.0                     # a tie: ggml takes the last index (40)
    return argmax(ctx.from_numpy(x))
