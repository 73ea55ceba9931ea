"""The pieces LLaMA-family builders share: inputs, norm, attention over the KV
cache, SwiGLU FFN, output. Only ggraph's public DSL is used, in the order
llama.cpp's builders use it, so a graph here reads like one there.

Shapes are in ggml order (ne): [n_embd, n_tokens] is n_tokens rows of n_embd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import ggraph as gg


@dataclass
class GraphInputs:
    """The small tensors a session refills before each compute."""
    tokens: gg.Tensor      # I32 [n_tokens]            token ids
    pos: gg.Tensor         # I32 [n_tokens]            positions (rope)
    kv_idx: gg.Tensor      # I32 [n_tokens]            cache cells the batch writes
    kq_mask: gg.Tensor     # F16 [n_kv, n_tokens]      0 or -inf
    out_ids: gg.Tensor | None   # I32 [n_outputs]      rows whose logits are computed (None: all)
    n_tokens: int
    n_kv: int

    @classmethod
    def new(cls, ctx: gg.Context, n_tokens: int, n_kv: int, n_outputs: int | None) -> "GraphInputs":
        def inp(t, ne, name):
            return ctx.new_tensor(t, ne, name=name).set_input()
        return cls(tokens=inp(gg.I32, [n_tokens], "inp_tokens"),
                   pos=inp(gg.I32, [n_tokens], "inp_pos"),
                   kv_idx=inp(gg.I32, [n_tokens], "inp_kv_idx"),
                   kq_mask=inp(gg.F16, [n_kv, n_tokens], "inp_kq_mask"),
                   out_ids=None if n_outputs is None else inp(gg.I32, [n_outputs], "inp_out_ids"),
                   n_tokens=n_tokens, n_kv=n_kv)


def cb(t: gg.Tensor, name: str, il: int = -1) -> gg.Tensor:
    """Names a node like llama.cpp's callback: 'attn_norm-3'."""
    return gg.set_name(t, f"{name}-{il}" if il >= 0 else name)


def build_norm(x: gg.Tensor, w: gg.Tensor, eps: float, norm=None) -> gg.Tensor:
    """rms_norm times the weight row; `norm(x, w, eps)` replaces the pair (e.g. a
    fused custom kernel: examples/custom_rms_norm.py)."""
    if norm is not None:
        return norm(x, w, eps)
    return gg.mul(gg.rms_norm(x, eps), w)


def build_linear(w: gg.Tensor, x: gg.Tensor, b: gg.Tensor | None = None) -> gg.Tensor:
    y = gg.mul_mat(w, x)
    return y if b is None else gg.add(y, b)


def build_ffn(x: gg.Tensor, gate: gg.Tensor, up: gg.Tensor, down: gg.Tensor, il: int) -> gg.Tensor:
    g = cb(gg.mul_mat(gate, x), "ffn_gate", il)                  # [n_ff, n_tokens]
    u = cb(gg.mul_mat(up, x), "ffn_up", il)
    return gg.mul_mat(down, cb(gg.swiglu_split(g, u), "ffn_swiglu", il))   # [n_embd, n_tokens]


def build_attn(cache, il: int, inp: GraphInputs, q: gg.Tensor, k: gg.Tensor, v: gg.Tensor,
               head_dim: int, flash_attn: bool) -> gg.Tensor:
    """Writes this batch's K/V into the cache, then attends over n_kv cells.

    q: [head_dim, n_head, n_tokens], k, v: [head_dim, n_head_kv, n_tokens]
    returns [head_dim * n_head, n_tokens]
    """
    n_tokens, n_kv = inp.n_tokens, inp.n_kv
    n_head, n_head_kv = q.ne[1], k.ne[1]
    # the views below read the set_rows results, so the writes run first
    k_cache = gg.set_rows(cache.k[il], gg.reshape_2d(k, head_dim * n_head_kv, n_tokens), inp.kv_idx)
    v_cache = gg.set_rows(cache.v[il], gg.reshape_2d(v, head_dim * n_head_kv, n_tokens), inp.kv_idx)
    ts = gg.row_size(cache.type, head_dim)
    kk = gg.view_3d(k_cache, head_dim, n_head_kv, n_kv, ts, cache.k_row_bytes(), 0)    # [d, n_head_kv, n_kv]
    vv = gg.view_3d(v_cache, head_dim, n_head_kv, n_kv, ts, cache.v_row_bytes(), 0)
    if cache.type.blck_size > 1:
        # a quantized cache is decoded to F32 for attention (flash_attn_ext reads plain K/V)
        kk, vv = gg.cast(kk, gg.F32), gg.cast(vv, gg.F32)
    kk = gg.permute(kk, 0, 2, 1, 3)                                   # [d, n_kv, n_head_kv]
    qq = gg.permute(q, 0, 2, 1, 3)                                    # [d, n_tokens, n_head]
    scale = 1.0 / math.sqrt(head_dim)
    if flash_attn:
        vp = gg.permute(vv, 0, 2, 1, 3)                               # [d, n_kv, n_head_kv]
        cur = gg.flash_attn_ext(qq, kk, vp, inp.kq_mask, scale, 0.0, 0.0)   # [d, n_head, n_tokens]
        return gg.reshape_2d(cur, head_dim * n_head, n_tokens)
    kq = cb(gg.mul_mat(kk, qq), "kq", il)                             # [n_kv, n_tokens, n_head]
    kq = cb(gg.soft_max_ext(kq, inp.kq_mask, scale, 0.0), "kq_soft_max", il)
    vt = gg.cont(gg.permute(vv, 1, 2, 0, 3))                          # [n_kv, d, n_head_kv]
    kqv = cb(gg.mul_mat(vt, kq), "kqv", il)                           # [d, n_tokens, n_head]
    return gg.cont_2d(gg.permute(kqv, 0, 2, 1, 3), head_dim * n_head, n_tokens)
