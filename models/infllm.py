"""InfLLM-style attention for one layer: initial tokens + retrieved memory blocks +
local window under one softmax, block retrieval with top_k and get_rows, all in
the step's graph (arXiv 2402.04617; see docs/long-context.md).

Keys are kept before RoPE. The local window's keys are rotated at their real
positions when written (a query is never further than n_local + chunk from
them); memory keys (initial tokens, blocks) sit at position 0, where RoPE is
the identity, so they are used as stored and the query is rotated a second
time at position n_local for them: the model never sees a distance larger
than the window.

Per layer, shapes in ne order (d = head_dim, hkv = KV heads, L = window slots,
cap = block slots, bs = block size):
    loc_k, loc_kraw         F16 [d*hkv, L]        the window (rotated K, raw K), one row a token
    loc_vt                  F16 [L, d*hkv]        its V, transposed (the layout attention reads)
    init_k / init_vt        F16 [d*hkv, n_init] / [n_init, d*hkv]   the first tokens, raw
    mem_k, mem_v            F16 [d*bs, hkv, cap]  one row = one head's block
    repr                    F32 [d, hkv, cap]     one representative key per block and head
Python keeps the window's tokens in the first slots, oldest first, so a step with
n tokens reads only the first n_local + n of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import ggraph as gg


@dataclass
class InfLLMInputs:
    """What a long-context step refills (plus constants set once per graph)."""
    tokens: gg.Tensor        # I32 [n_tokens]
    pos: gg.Tensor           # I32 [n_tokens]            real positions (local rotation)
    mem_pos: gg.Tensor       # I32 [n_tokens]            n_local for every token (memory rotation)
    loc_idx: gg.Tensor       # I32 [n_tokens]            window slots the batch writes
    loc_vidx: gg.Tensor      # I32 [d*hkv * n_tokens]    the same, element by element in loc_vt
    kq_mask: gg.Tensor       # F16 [n_cols, n_tokens]    init | selected blocks | local ring
    blk_mask: gg.Tensor | None   # F32 [cap, 1]          0 for a stored block, -inf for an empty slot
    loc_vis: gg.Tensor | None    # F32 [n_loc, n_tokens] 1 where the query sees the local key (qk scores)
    tok_mean: gg.Tensor      # F32 [n_tokens, 1]         1/n_tokens: mean query of the chunk
    tok_ones: gg.Tensor      # F32 [n_tokens, 1]         sum over the chunk's queries
    head_ones: gg.Tensor     # F32 [n_head or group, 1]  sum of scores over heads
    out_ids: gg.Tensor | None
    n_tokens: int
    cfg: object
    n_sel: int               # columns of retrieved blocks (topk * block_size, 0 without retrieval)
    n_loc: int               # window slots read: n_local + n_tokens
    extra: list = field(default_factory=list)       # nodes the graph must run besides the logits
    sel_idx: list = field(default_factory=list)     # per layer: I32 [topk, hkv] chosen blocks
    loc_score: list = field(default_factory=list)   # per layer: F32 [1, n_loc, n_head] score per local key
    infllm: bool = True

    @classmethod
    def new(cls, ctx: gg.Context, cfg, mem, n_tokens: int, n_outputs: int | None, n_head: int) -> "InfLLMInputs":
        def inp(t, ne, name):
            return ctx.new_tensor(t, ne, name=name).set_input()
        retrieval = cfg.mode == "infllm"
        n_sel = cfg.topk * cfg.block_size if retrieval else 0
        n_loc = min(mem.l_cap, cfg.n_local + n_tokens)
        n_cols = cfg.n_init + n_sel + n_loc
        group = n_head // mem.n_head_kv
        n_sum = n_head if cfg.score == "sum_heads" else group
        x = cls(tokens=inp(gg.I32, [n_tokens], "inp_tokens"),
                pos=inp(gg.I32, [n_tokens], "inp_pos"),
                mem_pos=inp(gg.I32, [n_tokens], "inp_mem_pos"),
                loc_idx=inp(gg.I32, [n_tokens], "inp_loc_idx"),
                loc_vidx=inp(gg.I32, [mem.kvd * n_tokens], "inp_loc_vidx"),
                kq_mask=inp(gg.F16, [n_cols, n_tokens], "inp_kq_mask"),
                blk_mask=inp(gg.F32, [mem.cap, 1], "inp_blk_mask") if retrieval else None,
                loc_vis=(inp(gg.F32, [n_loc, n_tokens], "inp_loc_vis")
                         if retrieval and cfg.repr_select == "qk" else None),
                tok_mean=inp(gg.F32, [n_tokens, 1], "tok_mean"),
                tok_ones=inp(gg.F32, [n_tokens, 1], "tok_ones"),
                head_ones=inp(gg.F32, [n_sum, 1], "head_ones"),
                out_ids=None if n_outputs is None else inp(gg.I32, [n_outputs], "inp_out_ids"),
                n_tokens=n_tokens, cfg=cfg, n_sel=n_sel, n_loc=n_loc)
        x.mem_pos.set([cfg.memory_distance] * n_tokens)
        x.tok_mean.set([1.0 / n_tokens] * n_tokens)
        x.tok_ones.set([1.0] * n_tokens)
        x.head_ones.set([1.0] * n_sum)
        return x


def value_slots(kvd: int, l_cap: int, slots) -> np.ndarray:
    """loc_vidx for tokens going to window slots: element f of token i lands at f * l_cap + slots[i]."""
    return (np.arange(kvd)[None, :] * l_cap + np.asarray(slots)[:, None]).reshape(-1).astype(np.int32)


def select_blocks(mem, il: int, inp: InfLLMInputs, q_mem: gg.Tensor) -> gg.Tensor:
    """I32 [topk, hkv]: per KV head, the blocks whose representative keys best match
    the chunk's mean query (best first). q_mem: [d, n_head, n_tokens], rotated for memory."""
    cfg = inp.cfg
    d, n_head, hkv, cap = q_mem.ne[0], q_mem.ne[1], mem.n_head_kv, mem.cap
    qt = gg.permute(q_mem, 1, 2, 0, 3)                                  # [n_tokens, d, n_head]
    q_mean = gg.reshape_3d(gg.mul_mat(inp.tok_mean, qt), d, 1, n_head)  # [d, 1, n_head]
    rep = mem.repr_rows(il)                                             # [d, cap, hkv]
    score = gg.mul_mat(rep, q_mean)                                     # [cap, 1, n_head]
    if cfg.score == "sum_heads":
        per_head = gg.transpose(gg.reshape_2d(score, cap, n_head))      # [n_head, cap]
        total = gg.reshape_2d(gg.mul_mat(inp.head_ones, per_head), cap, 1)
        total = gg.add(total, inp.blk_mask)
        score = gg.repeat_4d(total, cap, hkv, 1, 1)                     # the same blocks for every head
    else:
        group = n_head // hkv
        grouped = gg.permute(gg.reshape_3d(score, cap, group, hkv), 1, 0, 2, 3)   # [group, cap, hkv]
        score = gg.reshape_2d(gg.mul_mat(inp.head_ones, grouped), cap, hkv)
        score = gg.add(score, inp.blk_mask)
    return gg.top_k(score, cfg.topk)


def build_attn_infllm(mem, il: int, inp: InfLLMInputs, q: gg.Tensor, k: gg.Tensor, v: gg.Tensor,
                      head_dim: int, rope: dict) -> gg.Tensor:
    """q: [d, n_head, n_tokens], k, v: [d, hkv, n_tokens], all before RoPE.
    Returns [d * n_head, n_tokens]."""
    cfg, n_tokens = inp.cfg, inp.n_tokens
    d, n_head, hkv = head_dim, q.ne[1], k.ne[1]
    kvd = d * hkv
    L, n_loc = mem.l_cap, inp.n_loc
    q_loc = gg.rope_ext(q, inp.pos, None, **rope)
    k_loc_new = gg.rope_ext(k, inp.pos, None, **rope)
    q_mem = gg.rope_ext(q, inp.mem_pos, None, **rope)
    # the views below read the set_rows results, so the writes run first
    lk = gg.set_rows(mem.loc_k[il], gg.reshape_2d(k_loc_new, kvd, n_tokens), inp.loc_idx)
    # V goes in transposed, one element per row, so attention reads it without a copy
    lv = gg.set_rows(gg.reshape_2d(mem.loc_vt[il], 1, L * kvd), gg.reshape_2d(v, 1, kvd * n_tokens), inp.loc_vidx)
    # raw keys are kept for the move into block memory; nothing in this step reads them
    inp.extra.append(gg.set_rows(mem.loc_kraw[il], gg.reshape_2d(k, kvd, n_tokens), inp.loc_idx))
    ts, rb = gg.row_size(gg.F16, d), gg.row_size(gg.F16, kvd)
    qq_loc = gg.permute(q_loc, 0, 2, 1, 3)                               # [d, n_tokens, n_head]
    qq_mem = gg.permute(q_mem, 0, 2, 1, 3)

    def keys(t, n):                 # [kvd, n] rows -> [d, n, hkv]
        return gg.permute(gg.view_3d(t, d, hkv, n, ts, rb, 0), 0, 2, 1, 3)

    def values_t(t, n, stride):     # [stride, kvd] transposed V -> [n, d, hkv]
        return gg.view_3d(t, n, d, hkv, stride * 2, stride * 2 * d, 0)

    parts = []                                                           # (kq [n, n_tokens, n_head], v^T [n, d, hkv])
    if cfg.n_init:
        parts.append((gg.mul_mat(keys(mem.init_k[il], cfg.n_init), qq_mem),
                      values_t(mem.init_vt[il], cfg.n_init, cfg.n_init)))
    if inp.n_sel:
        idx = select_blocks(mem, il, inp, q_mem)
        inp.sel_idx.append(idx.set_output())
        ks = gg.reshape_3d(gg.get_rows(mem.block_rows(mem.mem_k[il]), idx), d, inp.n_sel, hkv)   # F32
        vs = gg.reshape_3d(gg.get_rows(mem.block_rows(mem.mem_v[il]), idx), d, inp.n_sel, hkv)
        parts.append((gg.mul_mat(ks, qq_mem), gg.cont(gg.transpose(vs))))
    kq_loc = gg.mul_mat(keys(lk, n_loc), qq_loc)                         # [n_loc, n_tokens, n_head]
    parts.append((kq_loc, values_t(lv, n_loc, L)))

    kq = parts[0][0]
    for p, _ in parts[1:]:
        kq = gg.concat(kq, p, 0)                                         # [n_cols, n_tokens, n_head]
    kq = gg.soft_max_ext(kq, inp.kq_mask, 1.0 / math.sqrt(d), 0.0)      # one softmax over all three
    out, off = None, 0
    for p, vt in parts:
        n = p.ne[0]
        probs = gg.view_3d(kq, n, n_tokens, n_head, kq.nb[1], kq.nb[2], off * 4)
        o = gg.mul_mat(vt, probs)                                        # [d, n_tokens, n_head]
        out = o if out is None else gg.add(out, o)
        off += n
    if inp.n_sel:
        # score each local key for its block's representative choice
        if cfg.repr_select == "qk":
            src = gg.mul(kq_loc, inp.loc_vis)                            # raw q.k of the queries that see it
        else:
            src = gg.view_3d(kq, n_loc, n_tokens, n_head, kq.nb[1], kq.nb[2], (off - n_loc) * 4)   # attention
        inp.loc_score.append(gg.mul_mat(inp.tok_ones, gg.permute(src, 1, 0, 2, 3)).set_output())
    return gg.cont_2d(gg.permute(out, 0, 2, 1, 3), d * n_head, n_tokens)
