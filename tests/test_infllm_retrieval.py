"""End to end: InfLLM-style block retrieval for long-context attention, in one graph.

Past keys and values are kept in blocks of BLOCK tokens. Each block has a
representative key (here the mean of its keys). For the current chunk of
queries, every head scores every block by dot(mean query, representative
key), keeps the TOPK best blocks (top_k), gathers their keys and values
(get_rows over the cache viewed as rows of D * BLOCK values, so one index
fetches a whole block) and attends over them (flash_attn_ext).

    k_store  F16 [D, BLOCK, N_BLOCKS, H]   --reshape-->  rows [D*BLOCK, N_BLOCKS, H]
    score    F32 [N_BLOCKS, 1, H]          --top_k-->    idx [TOPK, 1, H] --reshape--> [TOPK, H]
    get_rows(rows, idx)    [D*BLOCK, TOPK, H]  --reshape-->  k [D, BLOCK*TOPK, H]
    flash_attn_ext(q [D, N_Q, H], k, v)    [D, H, N_Q]

numpy does the same retrieval in float64 and the two must agree; then the
query is refilled with set() and the same graph is computed again.

Two variants: one scores the blocks inside the graph with mul_mat and
soft_max_ext (ops of other families, present once the branches are merged),
one takes the scores as an input tensor and uses only gather/sort/attention.
"""
import numpy as np

import ggraph as gg

D, BLOCK, N_BLOCKS, H, N_Q, TOPK = 32, 8, 12, 2, 4, 3
SCALE = 1.0 / np.sqrt(D)
# f32 scores and online softmax against float64 numpy (see test_ops_attention.py)
RTOL, ATOL = 2e-4, 5e-5


def _store(rng):
    """Keys and values of the past tokens by block, rounded to F16 like the cache, and
    the representative key of each block (its mean key)."""
    k = rng.standard_normal((H, N_BLOCKS, BLOCK, D)).astype(np.float16).astype(np.float32)
    v = rng.standard_normal((H, N_BLOCKS, BLOCK, D)).astype(np.float16).astype(np.float32)
    # make some blocks stand out so the ranking is not a coin toss
    k += 0.5 * rng.standard_normal((H, N_BLOCKS, 1, D)).astype(np.float32)
    k = k.astype(np.float16).astype(np.float32)
    return k, v, k.mean(axis=2)                                  # repr: (H, N_BLOCKS, D)


def _block_scores(q, rep):
    """(H, N_BLOCKS): dot(mean query of the head, representative key)."""
    return np.einsum("hd,hbd->hb", q.astype(np.float64).mean(axis=1), rep.astype(np.float64))


def _query(rng, rep):
    """A query chunk (H, N_Q, D) whose top-TOPK blocks are separated from the rest by a
    clear margin in every head, so f32 and float64 pick the same blocks."""
    while True:
        q = rng.standard_normal((H, N_Q, D)).astype(np.float32)
        s = np.sort(_block_scores(q, rep), axis=1)[:, ::-1]
        if np.all(s[:, TOPK - 1] - s[:, TOPK] > 0.05) and np.all(np.diff(s[:, :TOPK], axis=1) < -1e-3):
            return q


def _numpy_retrieval(q, k, v, rep):
    """Selected blocks (H, TOPK), best first, and the attention output (N_Q, H, D)."""
    s = _block_scores(q, rep)
    sel = np.argsort(-s, axis=1, kind="stable")[:, :TOPK]
    out = np.zeros((N_Q, H, D))
    for h in range(H):
        kh = k[h, sel[h]].reshape(-1, D).astype(np.float64)     # (TOPK*BLOCK, D)
        vh = v[h, sel[h]].reshape(-1, D).astype(np.float64)
        a = q[h].astype(np.float64) @ kh.T * SCALE
        w = np.exp(a - a.max(axis=1, keepdims=True))
        out[:, h, :] = (w / w.sum(axis=1, keepdims=True)) @ vh
    return sel, out


def _retrieve_and_attend(score, q, k_store, v_store):
    """The gather/sort/attention part of the graph; score is [N_BLOCKS, 1, H]."""
    idx = gg.top_k(score, TOPK)                                  # [TOPK, 1, H] best first
    idx_rows = gg.reshape_2d(idx, TOPK, H)                       # [TOPK, H]: one index list per head
    k_rows = gg.reshape_3d(k_store, D * BLOCK, N_BLOCKS, H)      # a block is one row
    v_rows = gg.reshape_3d(v_store, D * BLOCK, N_BLOCKS, H)
    k_sel = gg.reshape_3d(gg.get_rows(k_rows, idx_rows), D, BLOCK * TOPK, H)    # [D, n_kv, H] F32
    v_sel = gg.reshape_3d(gg.get_rows(v_rows, idx_rows), D, BLOCK * TOPK, H)
    out = gg.flash_attn_ext(q, k_sel, v_sel, None, SCALE, 0.0, 0.0)             # [D, H, N_Q]
    return idx.set_output(), out.set_output()


def _leaves(ctx, rng):
    k, v, rep = _store(rng)
    k_store = ctx.new_tensor(gg.F16, [D, BLOCK, N_BLOCKS, H], name="k_store")
    v_store = ctx.new_tensor(gg.F16, [D, BLOCK, N_BLOCKS, H], name="v_store")
    k_store.set(k)
    v_store.set(v)
    q = ctx.new_tensor(gg.F32, [D, N_Q, H], name="q").set_input()
    return k, v, rep, k_store, v_store, q


def _check(idx, out, q_val, k, v, rep, what):
    sel, want = _numpy_retrieval(q_val, k, v, rep)
    np.testing.assert_array_equal(idx.numpy().reshape(H, TOPK), sel, err_msg=f"{what}: selected blocks")
    np.testing.assert_allclose(out.numpy().reshape(N_Q, H, D), want, rtol=RTOL, atol=ATOL, err_msg=what)
    return sel


def _run_twice(g, set_inputs, idx, out, k, v, rep, rng):
    selections = []
    for step in range(2):
        q_val = _query(rng, rep)
        if step == 1:       # the second query must pick other blocks, or the refill proves little
            while np.array_equal(_numpy_retrieval(q_val, k, v, rep)[0], selections[0]):
                q_val = _query(rng, rep)
        set_inputs(q_val)
        for n_threads in (1, 3):
            g.compute(n_threads)                                  # one compute, no rebuild
            selections.append(_check(idx, out, q_val, k, v, rep, f"step {step} n_threads={n_threads}"))
    assert not np.array_equal(selections[0], selections[-1])


def test_infllm_retrieval_scores_in_graph():
    """Block scores computed in the graph: mul_mat(q, repr) -> mean over queries (a second
    mul_mat with a 1/N_Q column) -> soft_max_ext over blocks -> top_k -> get_rows -> attention."""
    rng = np.random.default_rng(7)
    ctx = gg.Context()
    k, v, rep, k_store, v_store, q = _leaves(ctx, rng)
    rep_t = ctx.new_tensor(gg.F32, [D, N_BLOCKS, H], name="repr")
    rep_t.set(rep)
    mean_w = ctx.new_tensor(gg.F32, [N_Q, 1, H], name="mean_w")
    mean_w.set(np.full((H, 1, N_Q), 1.0 / N_Q))
    qk = gg.mul_mat(q, rep_t)                                    # [N_Q, N_BLOCKS, H]: q_i . repr_b
    score = gg.mul_mat(qk, mean_w)                               # [N_BLOCKS, 1, H]: mean over queries
    prob = gg.soft_max_ext(score, None, 1.0, 0.0)                # per head, over blocks (monotonic)
    idx, out = _retrieve_and_attend(prob, q, k_store, v_store)
    g = gg.Graph("infllm").build_forward_expand(out).build_forward_expand(idx)

    def set_inputs(q_val):
        q.set(q_val)
    _run_twice(g, set_inputs, idx, out, k, v, rep, rng)


def test_infllm_retrieval_scores_as_input():
    """The same retrieval with the block scores fed as an input (only gather/sort/attention ops)."""
    rng = np.random.default_rng(11)
    ctx = gg.Context()
    k, v, rep, k_store, v_store, q = _leaves(ctx, rng)
    score = ctx.new_tensor(gg.F32, [N_BLOCKS, 1, H], name="score").set_input()
    idx, out = _retrieve_and_attend(score, q, k_store, v_store)
    g = gg.Graph("infllm").build_forward_expand(out).build_forward_expand(idx)

    def set_inputs(q_val):
        q.set(q_val)
        score.set(_block_scores(q_val, rep).astype(np.float32).reshape(H, 1, N_BLOCKS))
    _run_twice(g, set_inputs, idx, out, k, v, rep, rng)
