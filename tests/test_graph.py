"""Graph building, recompute with refilled inputs, printing, profiling, DOT, threads."""
import threading

import numpy as np
import pytest

import ggraph as gg


def _rms(x, eps=1e-6):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)


def test_build_forward_expand_order_and_dedup():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 2], name="a")
    n1 = gg.rms_norm(a, 1e-6)
    n2 = gg.norm(n1, 1e-5)
    n3 = gg.rms_norm(gg.view_tensor(n1), 1e-6)      # n1 read twice
    g = gg.Graph()
    g.build_forward_expand(n2)
    g.build_forward_expand(n3)
    g.build_forward_expand(n3)                       # again: nothing added
    assert g.leafs == [a]
    assert g.nodes[:2] == [n1, n2] and g.nodes[-1] is n3
    assert len(g.nodes) == 4 and len(set(map(id, g.nodes))) == 4
    pos = {t.id: i for i, t in enumerate(g.nodes)}
    for n in g.nodes:
        for s in n.src:
            if s.op is not None:
                assert pos[s.id] < pos[n.id]
    assert [n.name for n in g.nodes] == ["node_0", "node_1", "node_2", "node_3"]


def test_deep_chain_has_no_recursion_limit():
    ctx = gg.Context()
    t = ctx.new_tensor(gg.F32, [4])
    for _ in range(5000):
        t = gg.rms_norm(t, 1e-6)
    g = gg.Graph().build_forward_expand(t)
    assert len(g.nodes) == 5000
    g.compute(2)


def test_recompute_after_set_without_rebuilding():
    ctx = gg.Context()
    x = ctx.new_tensor(gg.F32, [16, 3]).set_input()
    y = gg.rms_norm(gg.norm(x, 1e-5), 1e-6)
    g = gg.Graph().build_forward_expand(y)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal((3, 16)).astype(np.float32)
        x.set(v)
        plan = g.plan()
        g.compute(n_threads=2)
        assert g.plan() is plan                      # no re-planning between computes
        c = v - v.mean(-1, keepdims=True)
        np.testing.assert_allclose(y.numpy(), _rms(c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e-5)),
                                   rtol=1e-5, atol=1e-6)


def test_same_result_for_every_thread_count():
    ctx = gg.Context()
    x = ctx.from_numpy(np.random.default_rng(1).standard_normal((37, 65)).astype(np.float32))
    y = gg.rms_norm(x, 1e-6)
    g = gg.Graph().build_forward_expand(y)
    g.compute(1)
    ref = y.numpy().copy()
    for n in (2, 3, 4, 7, 16):
        g.compute(n)
        np.testing.assert_array_equal(y.numpy(), ref)


def test_concurrent_computes_from_python_threads():
    rng = np.random.default_rng(2)
    jobs = []
    for _ in range(4):
        ctx = gg.Context()
        v = rng.standard_normal((64, 256)).astype(np.float32)
        y = gg.rms_norm(ctx.from_numpy(v), 1e-6)
        jobs.append((gg.Graph().build_forward_expand(y), y, _rms(v)))
    errors = []

    def work(g, y, expect):
        try:
            for _ in range(20):
                g.compute(2)
                np.testing.assert_allclose(y.numpy(), expect, rtol=1e-5, atol=1e-6)
        except Exception as e:                      # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_compute_argument_errors():
    ctx = gg.Context()
    g = gg.Graph().build_forward_expand(gg.rms_norm(ctx.new_tensor(gg.F32, [4]), 1e-6))
    for bad in (0, -1, 65, 2.5, "2", True):
        with pytest.raises(gg.GGraphError, match="n_threads"):
            g.compute(n_threads=bad)
    with pytest.raises(gg.GGraphError, match="unknown backend"):
        g.compute(backend="gpu")
    with pytest.raises(gg.GGraphError, match="expected a Tensor"):
        g.build_forward_expand(np.zeros(3))


def test_intermediate_memory_reuse_is_detected_on_read():
    ctx = gg.Context()
    x = ctx.from_numpy(np.ones((2, 8), np.float32))
    a = gg.norm(x, 1e-5)
    b = gg.rms_norm(a, 1e-6)                      # in place over a
    kept = gg.rms_norm(x, 1e-6).set_output()
    c = gg.rms_norm(kept, 1e-6)
    g = gg.Graph()
    g.build_forward_expand(b)
    g.build_forward_expand(c)
    g.compute(1)
    with pytest.raises(gg.GGraphError, match="was reused by node"):
        a.numpy()
    assert kept.numpy().shape == (2, 8)          # flagged output: still readable
    b.numpy()


def test_print_and_profile(capsys):
    ctx = gg.Context()
    x = ctx.from_numpy(np.ones((4, 8), np.float32), name="x")
    y = gg.rms_norm(gg.norm(x, 1e-5), 1e-6).set_name("y")
    g = gg.Graph("demo").build_forward_expand(y)
    with pytest.raises(gg.GGraphError, match="no profile yet"):
        g.profile_by_op()
    g.compute(2, profile=True)
    assert g.node_ns is not None and len(g.node_ns) == 2 and (g.node_ns >= 0).all()
    ops = {op for op, _, _ in g.profile_by_op()}
    assert ops == {"norm", "rms_norm"}
    g.print()
    out = capsys.readouterr().out
    assert "n_nodes = 2" in out and "RMS_NORM" in out and "ms" in out and "n_leafs = 1" in out
    assert "TOTAL" in out and "x" in out and "y" in out


def test_dump_dot(tmp_path):
    ctx = gg.Context()
    x = ctx.new_tensor(gg.F32, [8, 4], name="x").set_input()
    w = ctx.new_tensor(gg.F32, [8], name="w").set_param()
    y = gg.rms_norm(gg.norm(x, 1e-5), 1e-6).set_name("out")
    g = gg.Graph().build_forward_expand(y)
    p = g.dump_dot(tmp_path / "g.dot")
    text = open(p).read()
    assert text.startswith("digraph") and "RMS_NORM" in text and "NORM" in text
    assert "input" in text and "F32 [8, 4]" in text and "src0" in text
    g2 = gg.Graph().build_forward_expand(gg.rms_norm(w, 1e-6))
    assert "param" in open(g2.dump_dot(tmp_path / "p.dot")).read()
    with pytest.raises(gg.GGraphError, match="needs a profile"):
        g.dump_dot(tmp_path / "t.dot", color_by="time")
    g.compute(1, profile=True)
    assert "ms (" in open(g.dump_dot(tmp_path / "t.dot", color_by="time")).read()
    with pytest.raises(gg.GGraphError, match="color_by"):
        g.dump_dot(tmp_path / "x.dot", color_by="size")


def test_dump_svg(tmp_path):
    import shutil
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed (make test installs it)")
    ctx = gg.Context()
    y = gg.rms_norm(ctx.new_tensor(gg.F32, [8, 4], name="x"), 1e-6)
    p = gg.Graph().build_forward_expand(y).dump_dot(tmp_path / "g.svg")
    assert open(p).read().lstrip().startswith("<?xml") or "<svg" in open(p).read()
