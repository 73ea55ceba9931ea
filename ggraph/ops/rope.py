"""Rotary position embeddings (RoPE) with YaRN context scaling, as ggml_rope_ext.

    rope_ext(a, b, c, n_dims, mode, n_ctx_orig, freq_base, freq_scale,
             ext_factor, attn_factor, beta_fast, beta_slow)
    rope(a, b, n_dims, mode)        ggml_rope: rope_ext with c=None, n_ctx_orig=0,
                                    freq_base=10000, freq_scale=1, ext_factor=0,
                                    attn_factor=1, beta_fast=0, beta_slow=0

Shapes, in ne order:
    a   [head_dim, n_head, n_tokens, batch]  F32 or F16, unit element stride
        (nb[0] == type size); other strides free, so a view of a fused QKV
        row works
    b   [n_tokens]                           I32 positions (a vector)
    c   [>= n_dims/2]                        F32 frequency factors, or None
    result: a's type and shape, contiguous.

Per token t (i2) at position p = b[t], pair k < n_dims/2 of each head's
vector is rotated by the angle
    theta_k = p * freq_base^(-2k/n_dims) / c[k]                (extrapolated)
    theta   = freq_scale * theta_k                              (interpolated)
and, when ext_factor != 0 (YaRN),
    theta   = theta*(1 - mix_k) + theta_k*mix_k,  mix_k = ext_factor * ramp(k)
    ramp(k) = 1 - clamp((k - lo) / max(0.001, hi - lo), 0, 1)
    lo, hi  = the pair dims where n_ctx_orig positions make beta_fast and
              beta_slow turns: d(r) = n_dims*ln(n_ctx_orig/(2*pi*r)) / (2*ln(freq_base)),
              lo = max(0, floor(d(beta_fast))), hi = min(n_dims-1, ceil(d(beta_slow)))
The rotation is scaled by mscale = attn_factor, times (1 + 0.1*ln(1/freq_scale))
when ext_factor != 0:
    (x0, x1) -> mscale * (x0*cos - x1*sin, x0*sin + x1*cos)
Pairs: mode 0 (ROPE_TYPE_NORMAL) (x[2k], x[2k+1]); mode 2 (ROPE_TYPE_NEOX)
(x[k], x[k + n_dims/2]). Dims n_dims.. of each row are copied. Multi-section
(mrope, imrope) and vision modes are not supported.

Numerics: the kernel computes the angles and their cos/sin in double (once
per token and thread) and rotates in f32, so results are exact to f32
rounding at any position. ggml builds theta_k in float by repeated
multiplication, which drifts by ~k ulps of theta (about 5e-3 rad at position
32768); results differ from llama.cpp's by that much, not more. The float
params are rounded to float32 when the node is made, as ggml stores them.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import F16, F32, I32, Tensor
from .registry import as_float, as_int, check, check_tensor, check_types, defop

ROPE_TYPE_NORMAL = 0
ROPE_TYPE_NEOX = 2
_ROPE_TYPE_MROPE = 8             # also set in ggml's vision (24) and imrope (40) modes

__all__ = ["rope", "rope_ext", "ROPE_TYPE_NORMAL", "ROPE_TYPE_NEOX"]


def _rope_work_size(node: Tensor, n_threads: int) -> int:
    # cos and sin of n_dims/2 angles per thread, a cache line of padding (csrc/ops_rope.c)
    stride = (node.params["n_dims"] + 15) // 16 * 16 + 16
    return n_threads * stride * 4


ROPE = defop("rope", params="gg_rope_params", inplace=True, work_size=_rope_work_size)


def rope_ext(a: Tensor, b: Tensor, c: Tensor | None = None, n_dims: int | None = None, mode: int = 0,
             n_ctx_orig: int = 0, freq_base: float = 10000.0, freq_scale: float = 1.0,
             ext_factor: float = 0.0, attn_factor: float = 1.0, beta_fast: float = 32.0,
             beta_slow: float = 1.0) -> Tensor:
    op = "rope_ext"
    check_tensor(op, "a", a)
    check_tensor(op, "b", b)
    check_tensor(op, "c", c, optional=True)
    check_types(op, "a", a, (F32, F16))
    check_types(op, "b", b, (I32,))
    check(a.nb[0] == a.type.type_size, op, "rows of a must have unit element stride (nb[0] == type size)", a)
    check(n_dims is not None, op, "n_dims is required")
    n_dims = as_int(op, "n_dims", n_dims)
    check(0 < n_dims <= a.ne[0] and n_dims % 2 == 0, op,
          f"n_dims must be even and in 1..a.ne[0], got n_dims={n_dims}", a)
    mode = as_int(op, "mode", mode)
    check(mode & 1 == 0, op, f"mode & 1 is no longer supported by ggml (got mode={mode})")
    check(mode & _ROPE_TYPE_MROPE == 0, op,
          f"multi-section (mrope/imrope) and vision modes are not supported (got mode={mode})")
    check(mode in (ROPE_TYPE_NORMAL, ROPE_TYPE_NEOX), op,
          f"mode must be ROPE_TYPE_NORMAL (0) or ROPE_TYPE_NEOX (2), got {mode}")
    check(b.ne[1] == b.ne[2] == b.ne[3] == 1, op, "b (positions) must be a vector", b)
    check(b.ne[0] == a.ne[2], op, "b must hold one position per token: b.ne[0] == a.ne[2]", a, b)
    if c is not None:
        check_types(op, "c", c, (F32,))
        check(c.ne[0] >= n_dims // 2, op, f"c (freq factors) needs c.ne[0] >= n_dims/2 = {n_dims // 2}", c)
    n_ctx_orig = as_int(op, "n_ctx_orig", n_ctx_orig)
    check(0 <= n_ctx_orig < 2**31, op, f"n_ctx_orig must be >= 0, got {n_ctx_orig}")
    floats = {}
    for name, v in (("freq_base", freq_base), ("freq_scale", freq_scale), ("ext_factor", ext_factor),
                    ("attn_factor", attn_factor), ("beta_fast", beta_fast), ("beta_slow", beta_slow)):
        v = as_float(op, name, v)
        with np.errstate(over="ignore"):
            v32 = float(np.float32(v))             # the kernel's params are float, like ggml's
        check(math.isfinite(v32), op, f"{name} must be finite (as a float32), got {v}")
        floats[name] = v32
    check(floats["freq_base"] > 0.0, op, f"freq_base must be > 0, got {floats['freq_base']}")
    check(floats["freq_scale"] > 0.0, op, f"freq_scale must be > 0, got {floats['freq_scale']}")
    return ROPE.node(a.type, a.ne, [a, b, c], n_dims=n_dims, mode=mode, n_ctx_orig=n_ctx_orig, **floats)


def rope(a: Tensor, b: Tensor, n_dims: int, mode: int = ROPE_TYPE_NORMAL) -> Tensor:
    """ggml_rope: rope_ext with no freq factors, no YaRN, freq_base 10000."""
    return rope_ext(a, b, None, n_dims, mode, 0, 10000.0, 1.0, 0.0, 1.0, 0.0, 0.0)


def yarn_corr_dims(n_dims: int, n_ctx_orig: int, freq_base: float, beta_fast: float,
                   beta_slow: float) -> tuple[float, float]:
    """YaRN's correction range in pair dims (float64): pairs below lo keep their
    extrapolated angle, pairs above hi are fully interpolated."""
    def dim_of(n_rot: float) -> float:
        # the dim whose wavelength fits n_ctx_orig / n_rot: solves
        # n_ctx_orig = 2*pi*n_rot * freq_base^(2*dim/n_dims) for dim
        with np.errstate(all="ignore"):
            return float(n_dims * np.log(np.float64(n_ctx_orig) / (n_rot * 2 * math.pi))
                         / (2 * math.log(freq_base)))
    lo, hi = np.floor(dim_of(beta_fast)), np.ceil(dim_of(beta_slow))
    # comparisons written so that a NaN bound stays NaN, as in the kernel
    lo = 0.0 if 0.0 > lo else lo
    hi = float(n_dims - 1) if float(n_dims - 1) < hi else hi
    return float(lo), float(hi)


def rope_angles(pos: np.ndarray, n_dims: int, freq_base: float, freq_scale: float, ext_factor: float,
                n_ctx_orig: int, beta_fast: float, beta_slow: float, freq_factors=None):
    """theta[t, k] (float64) for positions pos[t] and pairs k < n_dims/2, and mscale."""
    k = np.arange(n_dims // 2, dtype=np.float64)
    inv_freq = float(freq_base) ** (-2.0 * k / n_dims)
    if freq_factors is not None:
        inv_freq = inv_freq / np.asarray(freq_factors, dtype=np.float64)
    extrap = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    theta = freq_scale * extrap
    mscale = 1.0
    if ext_factor != 0.0:
        lo, hi = yarn_corr_dims(n_dims, n_ctx_orig, freq_base, beta_fast, beta_slow)
        width = hi - lo
        width = 0.001 if 0.001 > width else width           # NaN-propagating max, as the kernel's
        ramp = 1.0 - np.clip((k - lo) / width, 0.0, 1.0)
        mix = ext_factor * ramp
        theta = theta * (1.0 - mix) + extrap * mix
        mscale = 1.0 + 0.1 * math.log(1.0 / freq_scale)
    return theta, mscale


@ROPE.reference
def _rope_ref(node, a, b, c=None):
    prm = node.params
    n_dims, half = prm["n_dims"], prm["n_dims"] // 2
    ff = None if c is None else c[0, 0, 0, :half]
    theta, mscale = rope_angles(b[0, 0, 0, :], n_dims, prm["freq_base"], prm["freq_scale"], prm["ext_factor"],
                                prm["n_ctx_orig"], prm["beta_fast"], prm["beta_slow"], ff)
    mscale *= prm["attn_factor"]
    cos = (np.cos(theta) * mscale)[None, :, None, :]          # (1, n_tokens, 1, half)
    sin = (np.sin(theta) * mscale)[None, :, None, :]
    x = a.astype(np.float64)                                   # (batch, n_tokens, n_head, head_dim)
    out = x.copy()
    if prm["mode"] == ROPE_TYPE_NEOX:
        first, second = slice(0, half), slice(half, n_dims)
    else:
        first, second = slice(0, n_dims, 2), slice(1, n_dims, 2)
    x0, x1 = x[..., first], x[..., second]
    out[..., first] = x0 * cos - x1 * sin
    out[..., second] = x0 * sin + x1 * cos
    return out


@ROPE.case
def _rope_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((5, 4, 64)).astype(np.float32))
    pos = ctx.from_numpy(np.array([0, 1, 7, 100, 4095], dtype=np.int32))
    return rope_ext(a, pos, None, 64, ROPE_TYPE_NEOX, 4096, 10000.0, 0.25, 1.0, 1.0, 32.0, 1.0)


@ROPE.case
def _rope_normal_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((3, 2, 24)).astype(np.float16))
    pos = ctx.from_numpy(np.array([3, 4, 5], dtype=np.int32))
    ff = ctx.from_numpy(rng.uniform(1.0, 4.0, 8).astype(np.float32))
    return rope_ext(a, pos, ff, 16, ROPE_TYPE_NORMAL, 0, 500000.0)
