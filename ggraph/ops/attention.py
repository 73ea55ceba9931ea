"""Attention in one op: flash_attn_ext (ggml_flash_attn_ext).

    q    [DK, n_q,  n_head,    ne3] F32
    k    [DK, n_kv, n_head_kv, ne3] F32, F16 or BF16
    v    [DV, n_kv, n_head_v,  ne3] F32, F16 or BF16   !! not transposed !!
    mask [n_kv, n_q, ne32, ne33] F16, contiguous, optional
    res  [DV, n_head, n_q, ne3] F32                     !! permuted !!

broadcast:
    n_head % n_head_kv == 0, n_head % n_head_v == 0    (grouped-query attention)
    n_head % ne32 == 0, ne3 % ne33 == 0                (the mask over heads and dim 3)

res[:, h, i, l] = softmax_j(s[i, j]) @ v[:, j, h / (n_head / n_head_kv), l] with
    s[i, j] = scale * q.k                                     (logit_softcap == 0)
    s[i, j] = logit_softcap * tanh(scale * q.k / logit_softcap)
    s[i, j] += slope(h) * mask[j, i, h % ne32, l % ne33]     (slope 1 unless max_bias > 0: ALiBi)
Columns whose mask is -inf are left out; a row with every column masked gives 0
(as ggml's CPU kernel). The mask may be wider (ne0 > n_kv) or taller (ne1 > n_q,
older ggml padded n_q): extra columns and rows are ignored.

q, k and v need contiguous rows (nb[0] == type size); their other strides are
free, so views of a KV cache and permuted q work directly. The kernel
accumulates in f32 whatever the precision set by flash_attn_ext_set_prec.
"""
from __future__ import annotations

import numpy as np

from ..errors import GGraphError
from ..tensor import BF16, F16, F32, Tensor
from .registry import as_float, as_int, check, check_tensor, check_types, defop

PREC_DEFAULT = 0
PREC_F32 = 10


def _fa_work(node, n_threads: int) -> int:
    from ..backend.ffi import lib
    q, k, v = node.src[0], node.src[1], node.src[2]
    # per thread (ops_attention.c): the row-at-a-time path's accumulators of the g q heads
    # that share a K head (and, with few q rows, the partial results of K/V pieces), or
    # the tiled path's converted K/V block, scores and outputs
    return int(lib.gg_fa_work_bytes(k.ne[0], v.ne[0], q.ne[1], q.ne[2], k.ne[2], v.ne[2], q.ne[3], k.ne[1],
                                    n_threads))


FLASH_ATTN_EXT = defop("flash_attn_ext", params="gg_flash_attn_ext_params", work_size=_fa_work)

__all__ = ["flash_attn_ext", "flash_attn_ext_set_prec", "flash_attn_ext_get_prec", "PREC_DEFAULT", "PREC_F32"]


def flash_attn_ext(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, scale: float = 1.0,
                   max_bias: float = 0.0, logit_softcap: float = 0.0) -> Tensor:
    """softmax(scale * q k^T + mask) v per head; see the module docstring for shapes."""
    op = "flash_attn_ext"
    check_tensor(op, "q", q)
    check_tensor(op, "k", k)
    check_tensor(op, "v", v)
    check_tensor(op, "mask", mask, optional=True)
    check_types(op, "q", q, (F32,))
    check_types(op, "k", k, (F32, F16, BF16))
    check_types(op, "v", v, (F32, F16, BF16))
    for nm, t in (("q", q), ("k", k), ("v", v)):
        check(t.nb[0] == t.type.type_size, op, f"rows of {nm} must be contiguous (nb[0] == type size)", t)
    check(k.ne[0] == q.ne[0], op, "k.ne[0] must equal q.ne[0] (the head size of q and k)", q, k)
    check(v.ne[1] == k.ne[1], op, "v.ne[1] must equal k.ne[1] (n_kv)", k, v)
    check(q.ne[3] == k.ne[3] and q.ne[3] == v.ne[3], op, "q, k and v must agree in ne[3]", q, k, v)
    check(q.ne[2] % k.ne[2] == 0, op, "q.ne[2] (n_head) must be a multiple of k.ne[2] (n_head_kv)", q, k)
    check(q.ne[2] % v.ne[2] == 0, op, "q.ne[2] (n_head) must be a multiple of v.ne[2]", q, v)
    scale = as_float(op, "scale", scale)
    max_bias = as_float(op, "max_bias", max_bias)
    logit_softcap = as_float(op, "logit_softcap", logit_softcap)
    for nm, x in (("scale", scale), ("max_bias", max_bias), ("logit_softcap", logit_softcap)):
        check(bool(np.isfinite(x)), op, f"{nm} must be finite, got {x}")
    if mask is not None:
        check_types(op, "mask", mask, (F16,))
        check(mask.is_contiguous(), op, "mask must be contiguous", mask)
        check(mask.ne[0] >= k.ne[1], op, "mask.ne[0] must be >= n_kv (k.ne[1])", mask, k)
        check(mask.ne[1] >= q.ne[1], op, "mask.ne[1] must be >= n_q (q.ne[1])", mask, q)
        check(q.ne[2] % mask.ne[2] == 0 and q.ne[3] % mask.ne[3] == 0, op,
              "mask must broadcast over q: q.ne[2] % mask.ne[2] == 0 and q.ne[3] % mask.ne[3] == 0", q, mask)
    check(max_bias <= 0.0 or mask is not None, op, f"max_bias = {max_bias} > 0 (ALiBi) needs a mask")
    ne = [v.ne[0], q.ne[2], q.ne[1], q.ne[3]]
    return FLASH_ATTN_EXT.node(F32, ne, [q, k, v, mask], scale=scale, max_bias=max_bias,
                               logit_softcap=logit_softcap, _prec=PREC_DEFAULT)


def flash_attn_ext_set_prec(a: Tensor, prec: int) -> None:
    """Records the requested precision (PREC_DEFAULT or PREC_F32); ggraph always accumulates in f32."""
    if not isinstance(a, Tensor) or a.op != "flash_attn_ext":
        raise GGraphError(f"flash_attn_ext_set_prec: a must be a flash_attn_ext result, got {a!r}")
    prec = as_int("flash_attn_ext_set_prec", "prec", prec)
    check(prec in (PREC_DEFAULT, PREC_F32), "flash_attn_ext_set_prec",
          f"prec must be PREC_DEFAULT (0) or PREC_F32 (10), got {prec}")
    a.set_py_param("_prec", prec)


def flash_attn_ext_get_prec(a: Tensor) -> int:
    if not isinstance(a, Tensor) or a.op != "flash_attn_ext":
        raise GGraphError(f"flash_attn_ext_get_prec: a must be a flash_attn_ext result, got {a!r}")
    return int(a.params.get("_prec", PREC_DEFAULT))


def alibi_slopes(n_head: int, max_bias: float) -> np.ndarray:
    """ALiBi slope of each head, as ggml: 1 for every head when max_bias <= 0."""
    if max_bias <= 0.0:
        return np.ones(n_head)
    n_head_log2 = 1 << int(np.floor(np.log2(n_head)))
    m0 = 2.0 ** (-max_bias / n_head_log2)
    m1 = 2.0 ** (-(max_bias / 2.0) / n_head_log2)
    h = np.arange(n_head)
    return np.where(h < n_head_log2, m0 ** (h + 1), m1 ** (2 * (h - n_head_log2) + 1))


@FLASH_ATTN_EXT.reference
def _flash_attn_ext_ref(node, q, k, v, mask=None):
    """Plain softmax(s) v in float64, one head at a time."""
    p = node.params
    scale, max_bias, softcap = p["scale"], p["max_bias"], p["logit_softcap"]
    ne3, n_head, n_q, _ = q.shape
    n_kv, dv = k.shape[2], v.shape[3]
    slopes = alibi_slopes(n_head, max_bias)
    out = np.zeros((ne3, n_q, n_head, dv))
    for i3 in range(ne3):
        for h in range(n_head):
            kh = k[i3 // (ne3 // k.shape[0]), h // (n_head // k.shape[1])].astype(np.float64)
            vh = v[i3 // (ne3 // v.shape[0]), h // (n_head // v.shape[1])].astype(np.float64)
            s = (q[i3, h].astype(np.float64) @ kh.T) * scale             # (n_q, n_kv)
            if softcap != 0.0:
                s = softcap * np.tanh(s / softcap)
            if mask is not None:
                m = mask[i3 % mask.shape[0], h % mask.shape[1], :n_q, :n_kv].astype(np.float64)
                masked = m == -np.inf
                s = np.where(masked, -np.inf, s + slopes[h] * np.where(masked, 0.0, m))
            mx = s.max(axis=1, keepdims=True)
            live = np.isfinite(mx)[:, 0]                                  # rows with a column left
            w = np.zeros_like(s)
            w[live] = np.exp(s[live] - mx[live])
            w[live] /= w[live].sum(axis=1, keepdims=True)
            out[i3, :, h, :] = w @ vh
    return out


def causal_mask(n_kv: int, n_q: int, n_past: int | None = None) -> np.ndarray:
    """(n_q, n_kv) float32: 0 where query i (at position n_past + i) may see key j, else -inf."""
    n_past = n_kv - n_q if n_past is None else n_past
    j = np.arange(n_kv)[None, :]
    i = np.arange(n_q)[:, None]
    return np.where(j <= n_past + i, 0.0, -np.inf).astype(np.float32)


@FLASH_ATTN_EXT.case
def _flash_attn_ext_case(ctx, rng):
    q = ctx.from_numpy(rng.standard_normal((4, 3, 40)).astype(np.float32))            # n_head 4, n_q 3, D 40
    k = ctx.from_numpy(rng.standard_normal((2, 17, 40)).astype(np.float32), type=F16)  # n_head_kv 2, n_kv 17
    v = ctx.from_numpy(rng.standard_normal((2, 17, 24)).astype(np.float32), type=F16)
    mask = ctx.from_numpy(causal_mask(17, 3), type=F16)
    return flash_attn_ext(q, k, v, mask, 1.0 / np.sqrt(40), 0.0, 0.0)
