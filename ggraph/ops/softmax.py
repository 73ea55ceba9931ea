"""Softmax over rows (dim 0), with ggml's additive mask and ALiBi, and the causal mask.

    soft_max(a)                                   softmax(a) over each row
    soft_max_ext(a, mask, scale, max_bias)        softmax(a*scale + slope*mask) over each row
    diag_mask_inf(a, n_past)                      a with a[i0, i1] = -inf where i0 > n_past + i1

soft_max_ext shapes, in ne order:
    a     [n, rows, heads, batch]   F32, contiguous (ggml asserts it)
    mask  [n, >= rows, m2, m3]      F32 or F16, contiguous, or None; row i1 of a
                                    adds row i1 of the mask; heads % m2 == 0 and
                                    batch % m3 == 0: the mask repeats over dims 2, 3
    result [n, rows, heads, batch]  F32, contiguous
slope is 1 unless max_bias > 0 (ALiBi, which needs a mask): head h = i2 of
n_head = a.ne[2] heads gets
    m0^(h+1)                  for h <  n_head_log2
    m1^(2*(h-n_head_log2)+1)  for h >= n_head_log2
with n_head_log2 the largest power of two <= n_head, m0 = 2^(-max_bias/n_head_log2)
and m1 = 2^(-max_bias/2/n_head_log2). -inf mask entries give a weight of 0;
a row that is -inf everywhere has no softmax and gives NaN in every element,
as ggml's CPU kernel does (it asserts in debug builds).

diag_mask_inf: a F32 with unit element stride (nb[0] == 4, other strides
free; ggml also wants it contiguous), n_past >= 0; the result is F32,
contiguous. The mask applies to every (i2, i3) plane alike.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import F16, F32, Tensor
from .registry import as_float, as_int, check, check_tensor, check_types, defop

__all__ = ["soft_max", "soft_max_ext", "diag_mask_inf"]


def _soft_max_work_size(node: Tensor, n_threads: int) -> int:
    # a row per thread, rounded to a cache line, plus a line of padding (csrc/ops_softmax.c)
    stride = (node.ne[0] + 15) // 16 * 16 + 16
    return n_threads * stride * 4


SOFT_MAX = defop("soft_max", params="gg_soft_max_params", inplace=True, work_size=_soft_max_work_size)
DIAG_MASK_INF = defop("diag_mask_inf", params="gg_diag_mask_params", inplace=True)


def soft_max_ext(a: Tensor, mask: Tensor | None = None, scale: float = 1.0, max_bias: float = 0.0) -> Tensor:
    op = "soft_max_ext"
    check_tensor(op, "a", a)
    check_tensor(op, "mask", mask, optional=True)
    check_types(op, "a", a, (F32,))
    check(a.is_contiguous(), op, "a must be contiguous", a)
    # params are stored as the kernel sees them (float, like ggml's op params)
    with np.errstate(over="ignore"):
        scale32 = float(np.float32(as_float(op, "scale", scale)))
        max_bias32 = float(np.float32(as_float(op, "max_bias", max_bias)))
    check(math.isfinite(scale32), op, f"scale must be finite (as a float32), got {scale}")
    check(math.isfinite(max_bias32), op, f"max_bias must be finite (as a float32), got {max_bias}")
    scale, max_bias = scale32, max_bias32
    if mask is not None:
        check_types(op, "mask", mask, (F16, F32))
        check(mask.is_contiguous(), op, "mask must be contiguous", mask)
        check(mask.ne[0] == a.ne[0], op, "mask.ne[0] must equal a.ne[0]", a, mask)
        check(mask.ne[1] >= a.ne[1], op, "mask.ne[1] must be >= a.ne[1]", a, mask)
        check(a.ne[2] % mask.ne[2] == 0 and a.ne[3] % mask.ne[3] == 0, op,
              "mask must broadcast over a in dims 2 and 3 (a.ne[2] % mask.ne[2] == 0, "
              "a.ne[3] % mask.ne[3] == 0)", a, mask)
    check(max_bias <= 0.0 or mask is not None, op, f"max_bias > 0 (ALiBi, got {max_bias}) needs a mask")
    return SOFT_MAX.node(F32, a.ne, [a, mask], scale=scale, max_bias=max_bias)


def soft_max(a: Tensor) -> Tensor:
    """softmax over each row of a (F32, contiguous)."""
    check_tensor("soft_max", "a", a)
    check_types("soft_max", "a", a, (F32,))
    check(a.is_contiguous(), "soft_max", "a must be contiguous", a)
    return soft_max_ext(a, None, 1.0, 0.0)


def diag_mask_inf(a: Tensor, n_past: int) -> Tensor:
    op = "diag_mask_inf"
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32,))
    check(a.nb[0] == 4, op, "rows of a must be contiguous (nb[0] == 4)", a)
    n_past = as_int(op, "n_past", n_past)
    check(0 <= n_past < 2**31, op, f"n_past must be >= 0 (and fit int32), got {n_past}")
    return DIAG_MASK_INF.node(F32, a.ne, [a], n_past=n_past)


def alibi_slopes(n_head: int, max_bias: float) -> np.ndarray:
    """The ALiBi slope of each head (float64): a geometric sequence over the
    largest power of two n <= n_head, then odd powers of the half-step ratio
    for the heads beyond n (Press et al., as MPT and ggml extend it)."""
    if max_bias <= 0.0:
        return np.ones(n_head)
    n = 2 ** int(math.floor(math.log2(n_head)))
    h = np.arange(n_head, dtype=np.float64)
    first = 2.0 ** (-max_bias / n * (h + 1))
    rest = 2.0 ** (-max_bias / 2.0 / n * (2.0 * (h - n) + 1.0))
    return np.where(h < n, first, rest)


@SOFT_MAX.reference
def _soft_max_ref(node, a, mask=None):
    scale, max_bias = node.params["scale"], node.params["max_bias"]
    ne0, ne1, ne2, ne3 = node.ne
    x = a.astype(np.float64) * scale                       # (ne3, ne2, ne1, ne0)
    if mask is not None:
        m = mask.astype(np.float64)[:, :, :ne1, :]         # row i1 of a takes row i1 of the mask
        m = np.tile(m, (ne3 // m.shape[0], ne2 // m.shape[1], 1, 1))   # i2 -> i2 % m2, i3 -> i3 % m3
        slope = alibi_slopes(ne2, max_bias)[None, :, None, None]
        x = x + slope * m
    e = np.exp(x - x.max(axis=-1, keepdims=True))           # an all -inf row: nan, as ggml
    return e / e.sum(axis=-1, keepdims=True)


@DIAG_MASK_INF.reference
def _diag_mask_inf_ref(node, a):
    ne0, ne1 = node.ne[0], node.ne[1]
    future = np.arange(ne0)[None, :] > node.params["n_past"] + np.arange(ne1)[:, None]   # (ne1, ne0)
    return np.where(future, -np.inf, a.astype(np.float64))


@SOFT_MAX.case
def _soft_max_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 4, 3, 37)).astype(np.float32))
    m = rng.standard_normal((1, 1, 5, 37)).astype(np.float32)
    m[:, :, :, 30:] = -np.inf
    mask = ctx.from_numpy(m.astype(np.float16))
    return soft_max_ext(a, mask, 0.125, 8.0)


@SOFT_MAX.case
def _soft_max_plain_case(ctx, rng):
    return soft_max(ctx.from_numpy(rng.standard_normal((3, 20)).astype(np.float32)))


@DIAG_MASK_INF.case
def _diag_mask_inf_case(ctx, rng):
    return diag_mask_inf(ctx.from_numpy(rng.standard_normal((2, 5, 9)).astype(np.float32)), 3)
