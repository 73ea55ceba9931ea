"""Normalisation over rows (dim 0).

    norm(a, eps)       (x - mean(x)) / sqrt(var(x) + eps)      layer norm without affine
    rms_norm(a, eps)   x / sqrt(mean(x^2) + eps)

a: F32, any ne; rows need unit element stride (nb[0] == 4), other strides free.
The result is a contiguous F32 tensor of a's shape. Scale and shift are
separate mul/add nodes, as in ggml.
"""
from __future__ import annotations

import numpy as np

from ..tensor import F32, Tensor
from .registry import as_float, check, check_tensor, check_types, defop

NORM = defop("norm", params="gg_norm_params", inplace=True)
RMS_NORM = defop("rms_norm", params="gg_norm_params", inplace=True)

__all__ = ["norm", "rms_norm"]


def _norm_node(opdef, op: str, a: Tensor, eps) -> Tensor:
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32,))
    check(a.nb[0] == 4, op, "rows of a must be contiguous (nb[0] == 4)", a)
    eps = as_float(op, "eps", eps)
    check(eps >= 0.0 and np.isfinite(eps), op, f"eps must be finite and >= 0, got {eps}")
    return opdef.node(F32, a.ne, [a], eps=eps)


def norm(a: Tensor, eps: float) -> Tensor:
    return _norm_node(NORM, "norm", a, eps)


def rms_norm(a: Tensor, eps: float) -> Tensor:
    return _norm_node(RMS_NORM, "rms_norm", a, eps)


@NORM.reference
def _norm_ref(node, a):
    x = a.astype(np.float64)
    y = x - x.mean(axis=-1, keepdims=True)
    return y / np.sqrt((y * y).mean(axis=-1, keepdims=True) + node.params["eps"])


@RMS_NORM.reference
def _rms_norm_ref(node, a):
    x = a.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + node.params["eps"])


@NORM.case
def _norm_case(ctx, rng):
    return norm(ctx.from_numpy(rng.standard_normal((3, 5, 33)).astype(np.float32)), 1e-5)


@RMS_NORM.case
def _rms_norm_case(ctx, rng):
    return rms_norm(ctx.from_numpy(rng.standard_normal((2, 7, 64)).astype(np.float32)), 1e-6)
