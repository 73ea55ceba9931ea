"""Copies and type conversions.

    dup(a)                    a new contiguous tensor with a's type and ne
    cpy(a, b)                 a's values converted to b's type, written into b; the result is a view of b
    cont(a)                   a contiguous copy of a (same type and ne)
    cont_1d .. cont_4d(a, ne0, ...)   a contiguous copy of a with a new shape

Elements are copied in row-major order of a (ne0 fastest) into row-major
order of the destination, so shapes may differ as long as the element
counts match (as in ggml). Any layout works for the source, and for cpy's
destination b: b is typically a view into a bigger tensor, e.g. one slot of
a KV cache, and only the bytes of that view are written.

Types (ggml's CPU backend): dup and cont keep a's type (F32, F16, BF16, I32).
cpy converts between
    F32  <-> F16, BF16, I32 (both ways)
    F16  <-> BF16
    any of F32, F16, BF16, I32 to itself
F16 rounds to nearest even (F16C), BF16 rounds to nearest even with NaN kept
quiet, F32 -> I32 truncates toward zero (NaN and out-of-range values give
INT32_MIN, as x86's cvttss2si in ggml does). I32 <-> F16/BF16 is refused, as
in ggml.

Block (quantized) types, whichever have C rows built in (csrc/quants_*.c):
    dup, cont, cont_Nd, cpy to the same type   blocks copied as bytes (any block type)
    cpy F32 or F16 -> Q8_0, Q4_0, Q4_1, Q5_0, Q5_1   (a quantized KV cache) rows quantized whole
    cpy any block type -> F32                  dequantized
A block-type tensor must have its blocks packed along dim 0 (nb[0] == bytes
per block: not transposed), and every row on both sides of a copy involving
a block type must be a whole number of its blocks (ne[0] % block size == 0),
so rows are converted in whole blocks. In C the block types come from the
converter table in csrc/ops_copy.c (gg_cvt_get), filled from quants.h.
"""
from __future__ import annotations

import math

from functools import cache

import numpy as np

from .. import quant
from ..errors import GGraphError
from ..tensor import BF16, F16, F32, I32, Tensor
from ..types import GGType, as_type
from .registry import as_int, check, check_tensor, check_types, defop

__all__ = ["dup", "cpy", "cast", "cont", "cont_1d", "cont_2d", "cont_3d", "cont_4d"]


@cache
def c_can_dequantize(t: GGType) -> bool:
    """The C runtime has block type t's to_float (its rows in csrc/quants_*.c are built in)."""
    try:
        quant.dequantize(np.zeros(t.type_size, np.uint8), t, t.blck_size, simd=False)
    except GGraphError:
        return False
    return True


@cache
def c_can_quantize(t: GGType) -> bool:
    """The C runtime has block type t's from_float."""
    try:
        quant.quantize(np.zeros(t.blck_size, np.float32), t, simd=False)
    except GGraphError:
        return False
    return True


COPY_TYPES = (F32, F16, BF16, I32)
# dup / cont / same-type cpy copy blocks as bytes: every block type
ALL_COPY_TYPES = COPY_TYPES + quant.QUANT_TYPES
# quantized KV caches: cpy and set_rows quantize F32/F16 rows into these (when built in)
KV_QUANT_TYPES = tuple(t for t in (quant.Q8_0, quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1)
                       if c_can_quantize(t))
# block types cpy dequantizes into F32
DEQUANT_TYPES = tuple(t for t in quant.QUANT_TYPES if c_can_dequantize(t))

# (src, dst) pairs cpy accepts: ggml's CPU dup/cpy kernels, plain types ...
_PLAIN_PAIRS = [(F32, F16), (F32, BF16), (F32, I32), (F16, F32), (BF16, F32), (I32, F32), (F16, BF16),
                (BF16, F16)]
CPY_PAIRS = frozenset([(t, t) for t in COPY_TYPES] + _PLAIN_PAIRS)
# ... and block types
QUANT_CPY_PAIRS = frozenset(
    [(t, t) for t in quant.QUANT_TYPES]
    + [(s, q) for q in KV_QUANT_TYPES for s in (F32, F16)]
    + [(q, F32) for q in DEQUANT_TYPES]
)


def _check_blocks(op: str, name: str, t: Tensor, blck: int, what: str) -> None:
    """Rows of t are whole blocks of `blck` elements, and a block-type t has its blocks packed along dim 0."""
    if t.type.blck_size > 1:
        check(t.nb[0] == t.type.type_size, op, f"{name}: the blocks of a {t.type} tensor must be packed "
              f"along dim 0 (nb[0] == {t.type.type_size}, not transposed), got nb={list(t.nb)}", t)
    check(t.ne[0] % blck == 0, op, f"{name}.ne[0]={t.ne[0]} is not a whole number of {what} blocks of "
          f"{blck} elements", t)


def _work_size(node: Tensor, n_threads: int) -> int:
    """One f32 scratch row per thread when the types differ (csrc/ops_copy.c: gg_copy_scratch_bytes)."""
    if node.src[0].type is node.type:
        return 0
    per = (node.ne[0] * 4 + 63) // 64 * 64 + 64
    return n_threads * per


DUP = defop("dup", work_size=_work_size)
CPY = defop("cpy", writes_src=1, work_size=_work_size)
CONT = defop("cont", work_size=_work_size)


def dup(a: Tensor) -> Tensor:
    check_tensor("dup", "a", a)
    check_types("dup", "a", a, ALL_COPY_TYPES)
    _check_blocks("dup", "a", a, a.type.blck_size, str(a.type))
    return DUP.node(a.type, a.ne, [a])


def _check_pair(op: str, a: Tensor, b_type, *shapes) -> None:
    if (a.type, b_type) not in CPY_PAIRS | QUANT_CPY_PAIRS:
        pairs = ", ".join(sorted(f"{s}->{d}" for s, d in _PLAIN_PAIRS))
        check(False, op, f"cannot copy {a.type} into {b_type}; supported: same type "
              f"({', '.join(str(t) for t in COPY_TYPES)}), {pairs}, "
              f"F32/F16 -> {'/'.join(str(t) for t in KV_QUANT_TYPES) or '(none built in)'}, "
              f"{'/'.join(str(t) for t in DEQUANT_TYPES) or '(none built in)'} -> F32", *shapes)


def cpy(a: Tensor, b: Tensor) -> Tensor:
    """Writes a's values, converted to b's type, into b; returns a view of b
    that carries the op (add it to the graph to run the copy)."""
    check_tensor("cpy", "a", a)
    check_tensor("cpy", "b", b)
    _check_pair("cpy", a, b.type, a, b)
    check(a.nelements() == b.nelements(), "cpy",
          f"a and b must have the same number of elements ({a.nelements()} != {b.nelements()})", a, b)
    blck = max(a.type.blck_size, b.type.blck_size)
    if blck > 1:
        q = a.type if a.type.blck_size > 1 else b.type
        _check_blocks("cpy", "a", a, blck, str(q))
        _check_blocks("cpy", "b", b, blck, str(q))
    return CPY.node(b.type, b.ne, [a, b], nb=b.nb)


def cast(a: Tensor, type) -> Tensor:
    """a's values converted to `type` in a new contiguous tensor (ggml_cast):
    e.g. cast(q4_weights, gg.F32) dequantizes, cast(x, gg.Q8_0) quantizes rows."""
    check_tensor("cast", "a", a)
    t = as_type(type)
    _check_pair("cast", a, t, a)
    blck = max(a.type.blck_size, t.blck_size)
    if blck > 1:
        _check_blocks("cast", "a", a, blck, str(a.type if a.type.blck_size > 1 else t))
    return DUP.node(t, a.ne, [a])


def cont(a: Tensor) -> Tensor:
    check_tensor("cont", "a", a)
    check_types("cont", "a", a, ALL_COPY_TYPES)
    _check_blocks("cont", "a", a, a.type.blck_size, str(a.type))
    return CONT.node(a.type, a.ne, [a])


def _cont_nd(op: str, a: Tensor, ne) -> Tensor:
    check_tensor(op, "a", a)
    check_types(op, "a", a, ALL_COPY_TYPES)
    _check_blocks(op, "a", a, a.type.blck_size, str(a.type))
    ne = [as_int(op, f"ne{i}", x) for i, x in enumerate(ne)]
    check(all(x >= 1 for x in ne), op, f"sizes must be >= 1, got {ne}", a)
    n = math.prod(ne)              # Python ints: a huge size must not overflow before the check
    check(n == a.nelements(), op, f"cannot make {a.nelements()} elements into ne={ne}", a)
    check(ne[0] % a.type.blck_size == 0, op, f"ne0={ne[0]} is not a whole number of {a.type} blocks of "
          f"{a.type.blck_size} elements", a)
    return CONT.node(a.type, ne, [a])


def cont_1d(a: Tensor, ne0: int) -> Tensor:
    return _cont_nd("cont_1d", a, [ne0])


def cont_2d(a: Tensor, ne0: int, ne1: int) -> Tensor:
    return _cont_nd("cont_2d", a, [ne0, ne1])


def cont_3d(a: Tensor, ne0: int, ne1: int, ne2: int) -> Tensor:
    return _cont_nd("cont_3d", a, [ne0, ne1, ne2])


def cont_4d(a: Tensor, ne0: int, ne1: int, ne2: int, ne3: int) -> Tensor:
    return _cont_nd("cont_4d", a, [ne0, ne1, ne2, ne3])


# ---- numpy references ----

def f32_to_i32(x: np.ndarray) -> np.ndarray:
    """Truncation toward zero; NaN and values outside int32 become INT32_MIN (x86 cvttss2si)."""
    x = np.asarray(x, dtype=np.float64)
    ok = (x >= -2.0**31) & (x < 2.0**31)
    return np.where(ok, np.trunc(np.where(ok, x, 0.0)), -2.0**31).astype(np.int32)


def _copy_ref(node, a, *_):
    flat = a.reshape(-1)
    if node.type is I32 and flat.dtype != np.int32:
        flat = f32_to_i32(flat)
    return flat.reshape(node.ne[::-1])


DUP.reference(_copy_ref)
CPY.reference(_copy_ref)
CONT.reference(_copy_ref)


# ---- examples ----

@DUP.case
def _dup_case(ctx, rng):
    from .view import transpose
    a = ctx.from_numpy(rng.standard_normal((3, 5, 7)).astype(np.float16))
    return dup(transpose(a))


@CPY.case
def _cpy_case(ctx, rng):
    """One token's K row written into slot 2 of an F16 KV cache."""
    from .view import view_2d
    cache = ctx.new_tensor(F16, [16, 6])
    k = ctx.from_numpy(rng.standard_normal((1, 16)).astype(np.float32))
    return cpy(k, view_2d(cache, 16, 1, cache.nb[1], 2 * cache.nb[1]))


@CONT.case
def _cont_case(ctx, rng):
    from .view import permute
    a = ctx.from_numpy(rng.standard_normal((2, 3, 4, 5)).astype(np.float32))
    return cont_2d(permute(a, 1, 0, 3, 2), 20, 6)
