"""The window/infllm attention of one layer (models/infllm.py) against a float64
numpy version of the same algorithm, on small random tensors: block scores and the
blocks chosen (summed over heads or per KV head), the gathered K/V, the two RoPE
rotations under one softmax, the per-key scores kept for representative tokens,
and the writes into the window ring. Then the representative-key rule.
"""
import numpy as np
import pytest

import ggraph as gg
from ggraph.infllm import AttnConfig, BlockMemory, representative_key
from ggraph.models.infllm import InfLLMInputs, build_attn_infllm, value_slots

D, NH, HKV = 8, 4, 2                 # head_dim, query heads, KV heads (GQA 2:1)
BASE = 10000.0
ROPE = dict(n_dims=D, mode=gg.ROPE_TYPE_NORMAL, n_ctx_orig=0, freq_base=BASE, freq_scale=1.0,
            ext_factor=0.0, attn_factor=1.0, beta_fast=32.0, beta_slow=1.0)
ATOL = 5e-3                          # q and the probabilities meet F16 K/V in mul_mat


def f16(x):
    return np.asarray(x, dtype=np.float16).astype(np.float64)


def rope_np(x, pos):
    """x (n, heads, D) rotated at pos (n,): pairs (2i, 2i+1), angle pos * BASE^(-2i/D)."""
    ang = np.asarray(pos, np.float64)[:, None] * BASE ** (-np.arange(0, D, 2) / D)[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = np.empty_like(x, dtype=np.float64)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


class Scenario:
    """A layer's memory in some state and a chunk of new tokens."""

    def __init__(self, cfg, rng, n_tok, init_count, n_blocks):
        self.cfg, self.n_tok, self.init_count, self.n_blocks = cfg, n_tok, init_count, n_blocks
        self.mem = BlockMemory(1, D, HKV, cfg)
        m, L = self.mem, self.mem.l_cap
        # the step reads the first n_local + n_tok slots; put gaps in them (the graph must not
        # care where the tokens are) and leave the slots past them full of junk
        self.n_loc = cfg.n_local + n_tok
        n_old = cfg.n_local - 2
        base_pos = 1000
        order = rng.permutation(self.n_loc)
        self.slot_pos = np.full(L, -1)
        self.slot_pos[order[:n_old]] = base_pos + rng.permutation(n_old)
        self.slots = np.sort(order[n_old:n_old + n_tok])
        self.pos = base_pos + n_old + np.arange(n_tok)
        self.slot_pos_after = self.slot_pos.copy()
        self.slot_pos_after[self.slots] = self.pos
        for t in (m.loc_k[0], m.loc_kraw[0], m.init_k[0]):
            m.ring(t)[:] = rng.standard_normal(m.ring(t).shape)
        for t in (m.loc_vt[0], m.init_vt[0]):
            m.ring_t(t)[:] = rng.standard_normal(m.ring_t(t).shape)
        if cfg.mode == "infllm":
            m.blocks(m.mem_k[0])[:] = rng.standard_normal(m.blocks(m.mem_k[0]).shape)
            m.blocks(m.mem_v[0])[:] = rng.standard_normal(m.blocks(m.mem_v[0]).shape)
            # block representatives of very different strengths, so the ranking has margins
            scale = rng.permutation(m.cap)[:, None, None] * 0.3 + 0.1
            m.reprs(0)[:] = rng.standard_normal(m.reprs(0).shape) * scale
        self.before = {}
        self.snapshot()

    def snapshot(self):
        m = self.mem
        for name in ("loc_k", "loc_kraw", "init_k"):
            self.before[name] = m.ring(getattr(m, name)[0]).astype(np.float64)
        for name in ("loc_vt", "init_vt"):         # as (n, hkv, d) like the keys
            vt = m.ring_t(getattr(m, name)[0]).astype(np.float64)
            self.before[name[:-1]] = vt.T.reshape(vt.shape[1], HKV, D)

    def inputs(self, inp, q, k, v, qv, kv, vv):
        cfg, L = self.cfg, self.mem.l_cap
        q.set(qv)
        k.set(kv)
        v.set(vv)
        inp.pos.set(self.pos.astype(np.int32))
        inp.loc_idx.set(self.slots.astype(np.int32))
        inp.loc_vidx.set(value_slots(HKV * D, L, self.slots))
        sp = self.slot_pos_after[:self.n_loc]
        vis_loc = (sp[None, :] >= 0) & (sp[None, :] <= self.pos[:, None])
        cols = [np.broadcast_to(np.arange(cfg.n_init) < self.init_count, (self.n_tok, cfg.n_init))]
        if inp.n_sel:
            n_valid = min(cfg.topk, self.n_blocks) * cfg.block_size
            cols.append(np.broadcast_to(np.arange(inp.n_sel) < n_valid, (self.n_tok, inp.n_sel)))
        cols.append(vis_loc)
        inp.kq_mask.set(np.where(np.concatenate(cols, 1), 0.0, -np.inf).astype(np.float16))
        if inp.blk_mask is not None:
            inp.blk_mask.set(np.where(np.arange(self.mem.cap) < self.n_blocks, 0.0, -np.inf))
        if inp.loc_vis is not None:
            inp.loc_vis.set(vis_loc.astype(np.float32))
        self.vis_loc = vis_loc
        assert inp.n_loc == self.n_loc and L > self.n_loc

    def reference(self, qv, kv, vv):
        """float64: (chosen blocks (topk, HKV) or None, output (n_tok, NH*D), local scores (NH, L))."""
        cfg, m, b = self.cfg, self.mem, self.before
        g = NH // HKV
        q_loc, q_mem = rope_np(qv, self.pos), rope_np(qv, np.full(self.n_tok, cfg.n_local))
        loc_k, loc_v = b["loc_k"][:self.n_loc].copy(), b["loc_v"][:self.n_loc].copy()
        loc_k[self.slots] = f16(rope_np(kv, self.pos))
        loc_v[self.slots] = f16(vv)
        keys = [b["init_k"][:cfg.n_init]]
        vals = [b["init_v"][:cfg.n_init]]
        valid = [np.arange(cfg.n_init) < self.init_count]
        sel = None
        if cfg.mode == "infllm":
            reps = m.reprs(0).astype(np.float64)                         # (cap, HKV, D)
            qmean = q_mem.mean(axis=0)                                   # (NH, D)
            s = np.einsum("bhd,hd->bh", reps[:, np.arange(NH) // g], qmean)  # (cap, NH)
            if cfg.score == "sum_heads":
                s = np.repeat(s.sum(axis=1, keepdims=True), HKV, axis=1)
            else:
                s = s.reshape(m.cap, HKV, g).sum(axis=2)
            s[self.n_blocks:] = -np.inf
            sel = np.argsort(-s, axis=0, kind="stable")[:cfg.topk]       # (topk, HKV)
            srt = np.sort(s[:self.n_blocks], axis=0)[::-1]
            if self.n_blocks > cfg.topk:
                assert np.all(srt[cfg.topk - 1] - srt[cfg.topk] > 1e-2), "test data: ranking too close to call"
            blk_k, blk_v = m.blocks(m.mem_k[0]).astype(np.float64), m.blocks(m.mem_v[0]).astype(np.float64)
            ks = np.stack([blk_k[sel[:, h], h].reshape(-1, D) for h in range(HKV)], axis=1)   # (n_sel, HKV, D)
            vs = np.stack([blk_v[sel[:, h], h].reshape(-1, D) for h in range(HKV)], axis=1)
            keys.append(ks)
            vals.append(vs)
            valid.append(np.arange(ks.shape[0]) < min(cfg.topk, self.n_blocks) * cfg.block_size)
        out = np.zeros((self.n_tok, NH, D))
        L = loc_k.shape[0]
        mass = np.zeros((NH, L))
        qk = np.zeros((NH, L))
        for h in range(NH):
            kvh = h // g
            for t in range(self.n_tok):
                logit = [keys[i][:, kvh] @ q_mem[t, h] for i in range(len(keys))]
                logit.append(loc_k[:, kvh] @ q_loc[t, h])
                ok = np.concatenate(valid + [self.vis_loc[t]])
                a = np.concatenate(logit) / np.sqrt(D)
                a = np.where(ok, a, -np.inf)
                p = np.exp(a - a.max())
                p /= p.sum()
                out[t, h] = p @ np.concatenate([x[:, kvh] for x in vals] + [loc_v[:, kvh]])
                mass[h] += p[-L:]
                qk[h] += np.where(self.vis_loc[t], logit[-1], 0.0)
        return sel, out.reshape(self.n_tok, NH * D), (qk if self.cfg.repr_select == "qk" else mass)


def build(sc):
    ctx = gg.Context()
    inp = InfLLMInputs.new(ctx, sc.cfg, sc.mem, sc.n_tok, None, NH)
    q = ctx.new_tensor(gg.F32, [D, NH, sc.n_tok], name="q")
    k = ctx.new_tensor(gg.F32, [D, HKV, sc.n_tok], name="k")
    v = ctx.new_tensor(gg.F32, [D, HKV, sc.n_tok], name="v")
    out = build_attn_infllm(sc.mem, 0, inp, q, k, v, D, ROPE).set_output()
    g = gg.Graph("infllm layer").build_forward_expand(out)
    for t in inp.extra + inp.sel_idx + inp.loc_score:
        g.build_forward_expand(t)
    return g, inp, q, k, v, out


CONFIGS = [
    dict(mode="infllm", score="sum_heads", repr_select="attn_mass"),
    dict(mode="infllm", score="per_kv_head", repr_select="attn_mass"),
    dict(mode="infllm", score="sum_heads", repr_select="qk"),
    dict(mode="window"),
]


@pytest.mark.parametrize("n_tok", [1, 5])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(kw.values()))
def test_layer_matches_numpy(kw, n_tok):
    cfg = AttnConfig(n_init=3, n_local=8, block_size=4, topk=3, repr_topk=2, chunk=6, **kw)
    rng = np.random.default_rng(5 + n_tok)
    for n_blocks in ([2, 20] if cfg.mode == "infllm" else [0]):     # fewer blocks than topk, then many
        sc = Scenario(cfg, rng, n_tok, init_count=2, n_blocks=n_blocks)
        g, inp, q, k, v, out = build(sc)
        for step in range(2):                                        # refilled inputs, same graph
            qv = rng.standard_normal((n_tok, NH, D))
            kv = rng.standard_normal((n_tok, HKV, D))
            vv = rng.standard_normal((n_tok, HKV, D))
            sc.inputs(inp, q, k, v, qv, kv, vv)
            g.compute(2)
            sel, want, score = sc.reference(qv, kv, vv)
            what = f"{kw} n_tok={n_tok} n_blocks={n_blocks} step={step}"
            if sel is not None:
                got_sel = inp.sel_idx[0].numpy().reshape(HKV, cfg.topk).T
                n = min(cfg.topk, n_blocks)       # padding picks past the stored blocks are masked
                # the order among chosen blocks does not matter: they share one position
                np.testing.assert_array_equal(np.sort(got_sel[:n], 0), np.sort(sel[:n], 0),
                                              err_msg=f"{what}: chosen blocks")
                np.testing.assert_allclose(inp.loc_score[0].numpy().reshape(NH, -1), score, rtol=1e-2,
                                           atol=ATOL * n_tok, err_msg=f"{what}: local key scores")
            np.testing.assert_allclose(out.numpy().reshape(n_tok, NH * D), want, atol=ATOL, rtol=1e-2,
                                       err_msg=f"{what}: attention output")
            m = sc.mem
            np.testing.assert_array_equal(m.ring(m.loc_kraw[0])[sc.slots], kv.astype(np.float16),
                                          err_msg=f"{what}: raw keys written to the ring")
            np.testing.assert_allclose(m.ring(m.loc_k[0])[sc.slots], rope_np(kv, sc.pos), atol=2e-3,
                                       err_msg=f"{what}: rotated keys written to the ring")
            vt = m.ring_t(m.loc_vt[0])
            np.testing.assert_array_equal(vt[:, sc.slots].T, vv.reshape(n_tok, -1).astype(np.float16),
                                          err_msg=f"{what}: values written to the ring")
            untouched = np.setdiff1d(np.arange(m.l_cap), sc.slots)
            np.testing.assert_array_equal(vt[:, untouched].T.reshape(-1, HKV, D), sc.before["loc_v"][untouched],
                                          err_msg=f"{what}: other ring slots")
            sc.snapshot()


def test_memory_rotation_is_a_fixed_distance():
    """The memory part depends on the query only through RoPE at n_local: the same
    query at two positions gets the same memory logits (the window part moves)."""
    cfg = AttnConfig(mode="infllm", n_init=3, n_local=8, block_size=4, topk=3, chunk=6)
    rng = np.random.default_rng(3)
    sc = Scenario(cfg, rng, 1, init_count=3, n_blocks=10)
    g, inp, q, k, v, out = build(sc)
    qv = rng.standard_normal((1, NH, D))
    kv = rng.standard_normal((1, HKV, D))
    vv = rng.standard_normal((1, HKV, D))
    sc.inputs(inp, q, k, v, qv, kv, vv)
    g.compute(1)
    sel0 = inp.sel_idx[0].numpy().copy()
    # the same query far later, window empty but the token itself: memory choice unchanged
    sc.slot_pos_after[:] = -1
    sc.slot_pos_after[sc.slots] = sc.pos + 50_000
    sc.pos = sc.pos + 50_000
    sc.inputs(inp, q, k, v, qv, kv, vv)
    g.compute(1)
    np.testing.assert_array_equal(inp.sel_idx[0].numpy(), sel0)


# ---- representative keys ----

def test_representative_key_uniform_picks_top_scored_tokens():
    keys = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)      # (bs, hkv, d)
    scores = np.array([[0.1, 5.0], [0.9, 0.2], [0.5, 0.3], [0.0, 0.4]])
    got = representative_key(keys, scores, 2, "uniform", "attn_mass")
    want = np.stack([(keys[1, 0] + keys[2, 0]) / 2, (keys[0, 1] + keys[3, 1]) / 2])
    np.testing.assert_allclose(got, want)


def test_representative_key_weighted_by_attention_mass():
    keys = np.random.default_rng(0).standard_normal((4, 1, 3)).astype(np.float32)
    scores = np.array([[3.0], [1.0], [0.0], [0.5]])
    got = representative_key(keys, scores, 2, "score", "attn_mass")
    np.testing.assert_allclose(got[0], (3 * keys[0, 0] + 1 * keys[1, 0]) / 4, rtol=1e-6)


def test_representative_key_weighted_by_qk_is_a_softmax():
    keys = np.random.default_rng(1).standard_normal((5, 1, 4)).astype(np.float32)
    scores = np.array([[-2.0], [4.0], [1.0], [-9.0], [0.0]])
    got = representative_key(keys, scores, 3, "score", "qk")
    w = np.exp(np.array([4.0, 1.0, 0.0]) / 2.0)
    w /= w.sum()
    np.testing.assert_allclose(got[0], w @ keys[[1, 2, 4], 0], rtol=1e-5)


def test_representative_key_zero_mass_falls_back_to_uniform():
    keys = np.random.default_rng(2).standard_normal((3, 1, 2)).astype(np.float32)
    got = representative_key(keys, np.zeros((3, 1)), 2, "score", "attn_mass")
    np.testing.assert_allclose(got[0], keys[:2, 0].mean(axis=0), rtol=1e-6)
