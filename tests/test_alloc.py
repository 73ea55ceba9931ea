"""The graph allocator: liveness-based reuse, in-place, outputs kept, no overlap of live tensors."""
import numpy as np
from hypothesis import given, strategies as st

import ggraph as gg


def check_no_live_overlap(g: gg.Graph) -> None:
    """No two tensors that are alive at the same node share bytes (in-place hand-overs aside)."""
    g.plan()
    pos = {n.id: i for i, n in enumerate(g.nodes)}
    last = {}
    for i, n in enumerate(g.nodes):
        for s in n.src:
            if s is not None:
                last[s.base().id] = i
    placed = [n for n in g.nodes if n.view_src is None and n._alloc_owner is g]
    inplace = {line.split(":")[0] for line in g.alloc_log if "in place over" in line}
    end = len(g.nodes)
    spans = []
    for n in placed:
        live_to = end if (n.is_output or n.id not in last) else last[n.id]
        spans.append((n, pos[n.id], live_to, n._offs, n._offs + n.nbytes()))
    for i, (a, a0, a1, ab0, ab1) in enumerate(spans):
        for b, b0, b1, bb0, bb1 in spans[i + 1:]:
            if ab0 < bb1 and bb0 < ab1 and a0 <= b1 and b0 <= a1:
                handover = (a1 == b0 and b.name in inplace) or (b1 == a0 and a.name in inplace)
                assert handover, (f"{a.name} [{a0},{a1}] bytes [{ab0},{ab1}) overlaps "
                                  f"{b.name} [{b0},{b1}] bytes [{bb0},{bb1})")


def test_chain_runs_in_place_in_one_buffer():
    ctx = gg.Context()
    t = ctx.new_tensor(gg.F32, [256, 4])
    first = t = gg.norm(t, 1e-5)
    for _ in range(9):
        t = gg.rms_norm(t, 1e-6)
    g = gg.Graph().build_forward_expand(t)
    assert g.mem_size() == first.nbytes()
    assert g.naive_mem_size() == 10 * first.nbytes()
    assert sum("in place over" in line for line in g.alloc_log) == 9


def test_no_in_place_when_the_source_has_other_readers():
    ctx = gg.Context()
    a = gg.norm(ctx.new_tensor(gg.F32, [64]), 1e-5)
    b = gg.rms_norm(a, 1e-6)
    c = gg.rms_norm(a, 1e-6)
    g = gg.Graph().build_forward_expand(b).build_forward_expand(c)
    assert any("not reusing" in line and "2 readers" in line for line in g.alloc_log)
    check_no_live_overlap(g)


def test_outputs_are_never_reused():
    ctx = gg.Context()
    x = ctx.from_numpy(np.arange(1, 65, dtype=np.float32))
    mid = gg.norm(x, 1e-5).set_output()
    out = gg.rms_norm(gg.rms_norm(mid, 1e-6), 1e-6)
    g = gg.Graph().build_forward_expand(out)
    assert any("it is an output" in line for line in g.alloc_log)
    g.compute(2)
    xs = np.arange(1, 65, dtype=np.float64)
    np.testing.assert_allclose(mid.numpy(), (xs - xs.mean()) / xs.std(), rtol=1e-4)
    check_no_live_overlap(g)


def test_freed_memory_is_reused_by_later_nodes():
    # a ladder: each rung reads the previous two, so blocks are freed and taken again
    ctx = gg.Context()
    x = ctx.new_tensor(gg.F32, [1024])
    prev, cur = gg.norm(x, 1e-5), gg.rms_norm(x, 1e-6)
    for _ in range(20):
        prev, cur = cur, gg.norm(gg.rms_norm(prev, 1e-6), 1e-5)
    g = gg.Graph().build_forward_expand(cur).build_forward_expand(prev)
    assert g.mem_size() <= 4 * 4096
    assert g.naive_mem_size() > 10 * g.mem_size()
    check_no_live_overlap(g)


@given(st.lists(st.tuples(st.sampled_from(["norm", "rms_norm", "view", "add", "out"]),
                          st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=40),
       st.integers(1, 3))
def test_random_graphs_never_overlap_live_tensors(program, n_threads):
    ctx = gg.Context()
    x = ctx.from_numpy(np.linspace(-1, 1, 48, dtype=np.float32).reshape(3, 16))
    pool = [x]
    for op, i, j in program:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        if op == "norm":
            t = gg.norm(a, 1e-5)
        elif op == "rms_norm":
            t = gg.rms_norm(a, 1e-6)
        elif op == "view":
            t = gg.view_tensor(a)
        elif op == "add" and hasattr(gg, "add"):
            t = gg.add(a, b)
        else:
            t = gg.rms_norm(a, 1e-6).set_output()
        pool.append(t)
    g = gg.Graph()
    for t in pool[1:]:
        g.build_forward_expand(t)
    check_no_live_overlap(g)
    # and the C results equal the numpy references node for node where still readable
    outs = [t for t in pool[1:] if t.is_output] or [pool[-1]]
    g.compute(backend="reference")
    ref = [o.numpy().copy() for o in outs]
    g.compute(n_threads=n_threads)
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o.numpy(), r, rtol=1e-4, atol=1e-5)


def _block(ctx, rng, cur, n_embd, n_head, n_ff, n_tokens, mask, il):
    """One pre-norm transformer block, llama.cpp style."""
    def w(*shape):
        return ctx.from_numpy((rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32),
                              name=f"blk.{il}.w{len(ctx.tensors)}")
    d = n_embd // n_head
    inp = cur
    cur = gg.mul(gg.rms_norm(cur, 1e-6), w(n_embd))
    q = gg.reshape_3d(gg.mul_mat(w(n_embd, n_embd), cur), d, n_head, n_tokens)
    k = gg.reshape_3d(gg.mul_mat(w(n_embd, n_embd), cur), d, n_head, n_tokens)
    v = gg.reshape_3d(gg.mul_mat(w(n_embd, n_embd), cur), d, n_head, n_tokens)
    q = gg.permute(q, 0, 2, 1, 3)                       # [d, n_tokens, n_head]
    k = gg.permute(k, 0, 2, 1, 3)
    kq = gg.soft_max_ext(gg.mul_mat(k, q), mask, 1.0 / np.sqrt(d), 0.0)   # [n_kv, n_tokens, n_head]
    vt = gg.cont(gg.permute(v, 1, 2, 0, 3))             # [n_tokens(kv), d, n_head]
    kqv = gg.permute(gg.mul_mat(vt, kq), 0, 2, 1, 3)    # [d, n_head, n_tokens]
    cur = gg.mul_mat(w(n_embd, n_embd), gg.cont_2d(kqv, n_embd, n_tokens))
    cur = gg.add(cur, inp)
    ffn_inp = cur
    cur = gg.mul(gg.rms_norm(cur, 1e-6), w(n_embd))
    cur = gg.swiglu_split(gg.mul_mat(w(n_ff, n_embd), cur), gg.mul_mat(w(n_ff, n_embd), cur))
    return gg.add(gg.mul_mat(w(n_embd, n_ff), cur), ffn_inp)


def test_thirty_layer_stack_reuses_memory_and_matches_reference():
    n_embd, n_head, n_ff, n_tokens, n_layer = 64, 4, 96, 8, 30
    rng = np.random.default_rng(0)
    ctx = gg.Context()
    x = ctx.from_numpy(rng.standard_normal((n_tokens, n_embd)).astype(np.float32), name="inp")
    mask = ctx.from_numpy(np.triu(np.full((n_tokens, n_tokens), -np.inf, np.float32), 1), name="mask")
    cur = x
    for il in range(n_layer):
        cur = _block(ctx, rng, cur, n_embd, n_head, n_ff, n_tokens, mask, il)
    out = gg.rms_norm(cur, 1e-6)
    g = gg.Graph().build_forward_expand(out)
    assert len(g.nodes) > 30 * 20
    # the arena holds a few layers' worth of activations, not one block per node
    per_token_row = n_ff * n_tokens * 4
    assert g.mem_size() < 12 * per_token_row, (g.mem_size(), g.naive_mem_size())
    assert g.naive_mem_size() > 40 * g.mem_size()
    check_no_live_overlap(g)
    g.compute(backend="reference")
    ref = out.numpy().copy()
    for n in (1, 2):
        g.compute(n_threads=n)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-3, atol=1e-3)
