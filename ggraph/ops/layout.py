"""Layout ops: new tensors assembled from the values of others (ggml semantics).

    repeat(a, b)                    a tiled to b's shape: each b.ne[i] a multiple of a.ne[i];
                                    result a.type, ne = b.ne (b gives only its shape)
    repeat_4d(a, ne0, ne1, ne2, ne3)  the same with the shape given
    concat(a, b, dim=0)             a then b along dim; all other sizes equal, same type
    pad(a, p0, p1=0, p2=0, p3=0)    zeros appended after each dim: ne[i] + p_i
    pad_ext(a, lp0, rp0, ..., lp3, rp3)  zeros before (lp_i) and after (rp_i) each dim
    arange(start, stop, step)       F32 [start, start + step, ...], ne0 = ceil((stop - start) / step)

Types and layouts (ggml's CPU backend):
  repeat  F32, F16, BF16, I32; rows of a packed (nb[0] == type size), dims 1..3 any strides
  concat  F32, F16, BF16, I32; any strides
  pad     F32; any strides
Results are packed tensors. ggml's pad_reflect_1d and circular padding are
not provided.
"""
from __future__ import annotations

import numpy as np

from ..tensor import BF16, F16, F32, I32, Tensor
from .registry import as_float, as_int, can_repeat, check, check_tensor, check_types, defop

REPEAT = defop("repeat")
CONCAT = defop("concat", params="gg_concat_params")
PAD = defop("pad", params="gg_pad_params")
ARANGE = defop("arange", params="gg_arange_params")

__all__ = ["repeat", "repeat_4d", "concat", "pad", "pad_ext", "arange"]

_PLAIN = (F32, F16, BF16, I32)
_INT32_MAX = 2**31 - 1


# ---- repeat ----

def _repeat_node(op: str, a: Tensor, ne) -> Tensor:
    check_types(op, "a", a, _PLAIN)
    check(a.nb[0] == a.type.type_size, op, "rows of a must be packed (nb[0] == type size), as in ggml", a)
    reps_ok = all(ne[i] % a.ne[i] == 0 for i in range(4))
    check(reps_ok, op, f"each target size must be a multiple of a's: cannot tile ne={list(a.ne)} "
                       f"into ne={list(ne)}", a)
    return REPEAT.node(a.type, ne, [a])


def repeat(a: Tensor, b: Tensor) -> Tensor:
    """a repeated (tiled) to b's shape; only b's ne is used."""
    check_tensor("repeat", "a", a)
    check_tensor("repeat", "b", b)
    check(can_repeat(a, b), "repeat", "each of b's sizes must be a multiple of a's (ggml_can_repeat)", a, b)
    return _repeat_node("repeat", a, b.ne)


def repeat_4d(a: Tensor, ne0: int, ne1: int, ne2: int, ne3: int) -> Tensor:
    """a repeated (tiled) to ne = [ne0, ne1, ne2, ne3]."""
    check_tensor("repeat_4d", "a", a)
    ne = [as_int("repeat_4d", f"ne{i}", v) for i, v in enumerate((ne0, ne1, ne2, ne3))]
    check(all(x >= 1 for x in ne), "repeat_4d", f"sizes must be >= 1, got {ne}", a)
    return _repeat_node("repeat_4d", a, ne)


@REPEAT.reference
def _repeat_ref(node, a):
    reps = [n // s for n, s in zip(node.ne[::-1], a.shape)]
    return np.tile(a, reps)


@REPEAT.case
def _repeat_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((3, 5)).astype(np.float32))
    return repeat(a, ctx.new_tensor(F32, [10, 3, 4, 2]))


@REPEAT.case
def _repeat_4d_case(ctx, rng):
    a = ctx.from_numpy(rng.integers(-9, 9, (2, 1, 3)).astype(np.int32))
    return repeat_4d(a, 6, 4, 2, 3)


# ---- concat ----

def concat(a: Tensor, b: Tensor, dim: int = 0) -> Tensor:
    """a and b joined along dim: ne[dim] = a.ne[dim] + b.ne[dim], other sizes equal."""
    check_tensor("concat", "a", a)
    check_tensor("concat", "b", b)
    dim = as_int("concat", "dim", dim)
    check(0 <= dim < 4, "concat", f"dim must be 0..3, got {dim}", a, b)
    check_types("concat", "a", a, _PLAIN)
    check(a.type is b.type, "concat", "a and b must have the same type", a, b)
    check(all(a.ne[d] == b.ne[d] for d in range(4) if d != dim), "concat",
          f"a and b must have the same sizes in every dim but {dim}", a, b)
    ne = list(a.ne)
    ne[dim] += b.ne[dim]
    return CONCAT.node(a.type, ne, [a, b], dim=dim)


@CONCAT.reference
def _concat_ref(node, a, b):
    return np.concatenate([a, b], axis=3 - node.params["dim"])


@CONCAT.case
def _concat_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 3, 5)).astype(np.float32))
    b = ctx.from_numpy(rng.standard_normal((2, 4, 5)).astype(np.float32))
    return concat(a, b, 1)


# ---- pad ----

_PAD_KEYS = ("lp0", "rp0", "lp1", "rp1", "lp2", "rp2", "lp3", "rp3")


def _pad_node(op: str, a: Tensor, args: dict) -> Tensor:
    """args: the user's argument name -> (params key, value)."""
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32,))
    vals = {k: 0 for k in _PAD_KEYS}
    for name, (key, v) in args.items():
        v = as_int(op, name, v)
        check(0 <= v <= _INT32_MAX, op, f"padding must be >= 0 (and fit in int32), got {name}={v}", a)
        vals[key] = v
    ne = [a.ne[d] + vals[f"lp{d}"] + vals[f"rp{d}"] for d in range(4)]
    return PAD.node(F32, ne, [a], **vals)


def pad(a: Tensor, p0: int, p1: int = 0, p2: int = 0, p3: int = 0) -> Tensor:
    """a with p_i zeros appended after dim i."""
    return _pad_node("pad", a, {f"p{d}": (f"rp{d}", v) for d, v in enumerate((p0, p1, p2, p3))})


def pad_ext(a: Tensor, lp0: int, rp0: int, lp1: int, rp1: int,
            lp2: int, rp2: int, lp3: int, rp3: int) -> Tensor:
    """a with lp_i zeros before and rp_i zeros after dim i."""
    args = dict(zip(_PAD_KEYS, (lp0, rp0, lp1, rp1, lp2, rp2, lp3, rp3)))
    return _pad_node("pad_ext", a, {k: (k, v) for k, v in args.items()})


@PAD.reference
def _pad_ref(node, a):
    p = node.params
    return np.pad(a, [(p[f"lp{d}"], p[f"rp{d}"]) for d in (3, 2, 1, 0)])


@PAD.case
def _pad_case(ctx, rng):
    return pad(ctx.from_numpy(rng.standard_normal((2, 3, 5)).astype(np.float32)), 3, 1, 0, 2)


@PAD.case
def _pad_ext_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((3, 4, 7)).astype(np.float32))
    return pad_ext(a, 2, 1, 0, 3, 1, 1, 0, 0)


# ---- arange ----

def arange_count(start: float, stop: float, step: float) -> int:
    """ggml's element count, computed in float32 as ggml does: ceilf((stop - start) / step)."""
    f = np.float32
    with np.errstate(all="ignore"):
        q = (f(stop) - f(start)) / f(step)
    return int(np.ceil(q)) if np.isfinite(q) else -1


def arange(start: float, stop: float, step: float) -> Tensor:
    """F32 [start, start + step, ...] below stop: ne0 = ceil((stop - start) / step).

    Like ggml, stop must be above start (so step > 0). The values are computed
    as fma(step, i, start) in float32. The params are rounded to float32 first.
    """
    vals = [as_float("arange", n, v) for n, v in (("start", start), ("stop", stop), ("step", step))]
    start, stop, step = (float(np.float32(v)) for v in vals)
    check(all(np.isfinite(v) for v in (start, stop, step)), "arange",
          f"start, stop and step must be finite float32 values, got {vals}")
    check(step != 0.0, "arange", "step must not be 0")
    check(stop > start, "arange", f"stop must be > start (ggml_arange), got start={start}, stop={stop}")
    check(step > 0.0, "arange", f"step must be > 0 when stop > start, got step={step}")
    n = arange_count(start, stop, step)
    check(n >= 1, "arange", f"empty range: ceil((stop - start) / step) = {n} for start={start}, "
                            f"stop={stop}, step={step}")
    check(n < 2**31, "arange", f"too many elements: {n}")
    return ARANGE.node(F32, [n], [], start=start, stop=stop, step=step)


@ARANGE.reference
def _arange_ref(node):
    p = node.params
    i = np.arange(node.ne[0], dtype=np.float32).astype(np.float64)   # float(i), as the kernel
    return p["start"] + p["step"] * i


@ARANGE.case
def _arange_case(ctx, rng):
    return arange(-1.5, 2.0, 0.25)
