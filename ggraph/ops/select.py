"""Gather, scatter and sort along rows.

    get_rows(a, b)        rows of a picked by the I32 indices b          (embeddings, KV gathers)
    set_rows(a, b, c)     rows of b written into a at the I32 indices c   (KV cache writes; a view of a)
    argsort(a, order)     I32 indices that sort each row of a
    top_k(a, k)           I32 indices of the k largest values of each row of a

Indices are data, so they cannot be checked when the graph is built: an index
outside its range makes compute() raise GGraphError (the kernel checks every
index it reads and stops the graph) instead of reading or writing out of bounds.

Sort order (argsort, top_k): -0.0 equals +0.0, NaN is greater than +inf, and
equal values keep the lower index first, so results are fully determined.
"""
from __future__ import annotations

import numpy as np

from .. import quant
from ..errors import GGraphError
from ..tensor import BF16, F16, F32, I32, Tensor
from .copy import KV_QUANT_TYPES, c_can_dequantize
from .registry import as_int, check, check_tensor, check_types, defop

# block types get_rows reads (dequantized to F32): those whose C to_float is built in
GET_ROWS_QUANT_TYPES = tuple(t for t in quant.QUANT_TYPES if c_can_dequantize(t))

SORT_ORDER_ASC = 0
SORT_ORDER_DESC = 1


def _set_rows_work(node, n_threads: int) -> int:
    b = node.src[0]
    if b.type is F16 and node.type is not F16:
        return n_threads * ((b.ne[0] + 15) // 16 * 16 + 16) * 4
    return 0


def _sort_work(node, n_threads: int) -> int:
    ne00 = node.src[0].ne[0]
    # per thread: ne00 keys and ne00 indices (argsort) or k heap slots (top_k), padded (ops_select.c)
    return n_threads * (2 * ((ne00 + 15) // 16 * 16) + 16) * 4


GET_ROWS = defop("get_rows")
SET_ROWS = defop("set_rows", writes_src=2, work_size=_set_rows_work)
ARGSORT = defop("argsort", params="gg_argsort_params", work_size=_sort_work)
TOP_K = defop("top_k", work_size=_sort_work)

__all__ = ["get_rows", "set_rows", "argsort", "top_k", "SORT_ORDER_ASC", "SORT_ORDER_DESC"]


def _rows_contiguous(t: Tensor) -> bool:
    return t.nb[0] == t.type.type_size


# ---- get_rows ----

def get_rows(a: Tensor, b: Tensor) -> Tensor:
    """Gathers rows: result[:, i, j, l] = a[:, b[i, j, l], j, l].

    a: [n_embd, n_rows, ne2, ne3] F32, F16, BF16, I32 or a block type (quantized embeddings:
       each row dequantized), rows contiguous (nb[0] == type size, or bytes per block)
    b: I32 [n_idx, ne2, ne3] (b.ne[1] == a.ne[2], b.ne[2] == a.ne[3], b.ne[3] == 1), any strides
    returns [n_embd, n_idx, ne2, ne3], F32 (I32 when a is I32), contiguous.
    Each index must lie in [0, n_rows), else compute() raises GGraphError.
    """
    op = "get_rows"
    check_tensor(op, "a", a)
    check_tensor(op, "b", b)
    if a.type.blck_size > 1:
        check(a.type in GET_ROWS_QUANT_TYPES, op, f"a: {a.type} has no to_float in this build (block "
              f"types get_rows reads: {', '.join(map(str, GET_ROWS_QUANT_TYPES)) or 'none'})", a)
    else:
        check_types(op, "a", a, (F32, F16, BF16, I32))
    check_types(op, "b", b, (I32,))
    check(b.ne[1] == a.ne[2] and b.ne[2] == a.ne[3] and b.ne[3] == 1, op,
          "b must be [n_idx, a.ne[2], a.ne[3], 1]", a, b)
    check(_rows_contiguous(a), op, "rows of a must be contiguous (nb[0] == type size)", a)
    out_type = I32 if a.type is I32 else F32
    return GET_ROWS.node(out_type, [a.ne[0], b.ne[0], b.ne[1], b.ne[2]], [a, b])


@GET_ROWS.reference
def _get_rows_ref(node, a, b):
    ne3, ne2 = a.shape[0], a.shape[1]
    idx = b[0]                                       # (ne3, ne2, n_idx)
    out = np.empty((ne3, ne2, idx.shape[2], a.shape[3]), dtype=a.dtype)
    for i3 in range(ne3):
        for i2 in range(ne2):
            rows = idx[i3, i2]
            if rows.size and (rows.min() < 0 or rows.max() >= a.shape[2]):
                raise GGraphError(f"get_rows: index out of range [0, {a.shape[2]})")
            out[i3, i2] = a[i3, i2, rows]
    return out


@GET_ROWS.case
def _get_rows_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 10, 12)).astype(np.float32), type=F16)
    b = ctx.from_numpy(rng.integers(0, 10, size=(2, 7)).astype(np.int32))
    return get_rows(a, b)


# ---- set_rows ----

def set_rows(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Scatters rows: a[:, c[i, j % c.ne1, l % c.ne2], j, l] = b[:, i, j, l]; returns a view of a.

    a: destination [n_embd, ne1, ne2, ne3] F32, F16, BF16, or Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 (each row
       quantized whole: a quantized KV cache), a KV cache or a view of one, rows contiguous
    b: source [n_embd, n_rows, ne2, ne3] F32 or F16, rows contiguous
    c: I32 [n_rows, ne11, ne12, 1] with ne2 % ne11 == 0 and ne3 % ne12 == 0 (broadcast over b), any strides
    Each index must lie in [0, ne1), else compute() raises GGraphError. Rows
    written twice (repeated indices) end with either value, as in ggml.
    The result shares a's memory: read a (or the result) after compute.
    """
    op = "set_rows"
    for nm, t in (("a", a), ("b", b), ("c", c)):
        check_tensor(op, nm, t)
    if a.type.blck_size > 1:
        check(a.type in KV_QUANT_TYPES, op, f"a: cannot quantize rows into {a.type} (block types set_rows "
              f"writes: {', '.join(map(str, KV_QUANT_TYPES)) or 'none'})", a)
    else:
        check_types(op, "a", a, (F32, F16, BF16))
    check_types(op, "b", b, (F32, F16))
    check_types(op, "c", c, (I32,))
    check(a.ne[0] == b.ne[0] and a.ne[2] == b.ne[2] and a.ne[3] == b.ne[3], op,
          "a and b must agree in ne[0], ne[2] and ne[3]", a, b)
    check(b.ne[1] == c.ne[0], op, "c.ne[0] must equal the number of rows of b (b.ne[1])", b, c)
    check(b.ne[2] % c.ne[1] == 0 and b.ne[3] % c.ne[2] == 0 and c.ne[3] == 1, op,
          "c must be [b.ne[1], ne11, ne12, 1] with b.ne[2] % ne11 == 0 and b.ne[3] % ne12 == 0", b, c)
    check(_rows_contiguous(a), op, "rows of a must be contiguous (nb[0] == type size)", a)
    check(_rows_contiguous(b), op, "rows of b must be contiguous (nb[0] == type size)", b)
    # sources in ggml's order: b, c, then the destination a
    return SET_ROWS.node(a.type, a.ne, [b, c, a], nb=a.nb)


@GET_ROWS.case
def _get_rows_case_q8_0(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((12, 64)).astype(np.float32), type=quant.Q8_0)
    b = ctx.from_numpy(rng.integers(0, 12, size=5).astype(np.int32))
    return get_rows(a, b)


@SET_ROWS.reference
def _set_rows_ref(node, b, c, a):
    out = np.array(a, copy=True)
    ne3, ne2 = b.shape[0], b.shape[1]
    n_slots = a.shape[2]
    for i3 in range(ne3):
        for i2 in range(ne2):
            rows = c[0, i3 % c.shape[1], i2 % c.shape[2]]
            if rows.size and (rows.min() < 0 or rows.max() >= n_slots):
                raise GGraphError(f"set_rows: index out of range [0, {n_slots})")
            out[i3, i2, rows] = b[i3, i2]
    return out


@SET_ROWS.case
def _set_rows_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((3, 16, 8)).astype(np.float32), type=F16)
    b = ctx.from_numpy(rng.standard_normal((3, 5, 8)).astype(np.float32))
    c = ctx.from_numpy(rng.permutation(16)[:5].astype(np.int32))
    return set_rows(a, b, c)


# ---- argsort ----

def argsort(a: Tensor, order: int = SORT_ORDER_ASC) -> Tensor:
    """I32 indices that sort each row of a (dim 0), ascending or descending.

    a: F32, F16 or BF16, any shape and layout. Returns I32 of a's shape, contiguous.
    Equal values keep index order (stable); NaN sorts above +inf.
    """
    op = "argsort"
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32, F16, BF16))
    order = as_int(op, "order", order)
    check(order in (SORT_ORDER_ASC, SORT_ORDER_DESC), op,
          f"order must be SORT_ORDER_ASC (0) or SORT_ORDER_DESC (1), got {order}")
    check(a.ne[0] <= 2**31 - 1, op, "rows longer than INT32_MAX", a)
    return ARGSORT.node(I32, a.ne, [a], order=order)


def _sort_rows(x: np.ndarray, desc: bool) -> np.ndarray:
    """Stable argsort along the last axis in ggraph's order (NaN above +inf, -0 == +0)."""
    x = np.asarray(x, dtype=np.float64)
    nan = np.isnan(x)
    v = np.where(nan, 0.0, x) + 0.0                  # + 0.0 turns -0.0 into +0.0
    flat_v = v.reshape(-1, x.shape[-1])
    flat_nan = nan.reshape(-1, x.shape[-1])
    out = np.empty(flat_v.shape, dtype=np.int32)
    for r in range(flat_v.shape[0]):
        if desc:   # primary: NaN first, then larger values; lexsort is stable
            out[r] = np.lexsort((-flat_v[r], ~flat_nan[r]))
        else:
            out[r] = np.lexsort((flat_v[r], flat_nan[r]))
    return out.reshape(x.shape)


@ARGSORT.reference
def _argsort_ref(node, a):
    return _sort_rows(a, node.params["order"] == SORT_ORDER_DESC)


@ARGSORT.case
def _argsort_case(ctx, rng):
    return argsort(ctx.from_numpy(rng.standard_normal((3, 37)).astype(np.float32)), SORT_ORDER_DESC)


# ---- top_k ----

def top_k(a: Tensor, k: int) -> Tensor:
    """I32 indices of the k largest values of each row of a (dim 0).

    a: F32, F16 or BF16, any shape and layout; 1 <= k <= a.ne[0].
    Returns I32 [k, a.ne[1], a.ne[2], a.ne[3]]. ggml promises no order; ggraph
    returns the indices by descending value, equal values lower index first,
    NaN counted above +inf (so NaNs are picked first). Selection uses a heap
    of k entries: O(n log k) per row, no full sort.
    """
    op = "top_k"
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32, F16, BF16))
    k = as_int(op, "k", k)
    check(1 <= k <= a.ne[0], op, f"k must be in [1, a.ne[0]={a.ne[0]}], got {k}", a)
    return TOP_K.node(I32, [k, a.ne[1], a.ne[2], a.ne[3]], [a])


@TOP_K.reference
def _top_k_ref(node, a):
    return _sort_rows(a, True)[..., :node.ne[0]]


@TOP_K.case
def _top_k_case(ctx, rng):
    return top_k(ctx.from_numpy(rng.standard_normal((2, 3, 50)).astype(np.float32)), 7)
