"""map_custom1/2/3 with Python functions: results, planning, pictures, profiles, errors."""
import threading

import numpy as np
import pytest
from hypothesis import strategies as st

import ggraph as gg
from ggraph.testing import check_op, shapes, tensors


def rows(x):
    """A 4-d view as rows (a copy when x is not contiguous: fine for reading)."""
    return x.reshape(-1, x.shape[-1])


def twice(dst, a, ith, nth):
    d, x = rows(dst), rows(a)
    for r in range(ith, d.shape[0], nth):
        d[r] = 2 * x[r]


def mul_add(dst, a, b, c, ith, nth):
    d, x, y, z = rows(dst), rows(a), rows(b), rows(c)
    for r in range(ith, d.shape[0], nth):
        d[r] = x[r] * y[r] + z[r]


def row_dot(dst, a, b, ith, nth):
    d, x, y = dst.reshape(-1), rows(a), rows(b)
    for r in range(ith, d.shape[0], nth):
        d[r] = np.dot(x[r].astype(np.float64), y[r])


def test_map_custom1_matches_numpy_over_layouts_and_threads():
    check_op(lambda ctx, a: gg.map_custom1(a, twice), lambda a: 2 * a,
             strategies=[tensors(type=gg.F32)], rtol=0, atol=0, threads=(1, 2, 4))


@st.composite
def three_alike(draw):
    ne = draw(shapes(max_dims=3))
    return tuple(draw(tensors(type=gg.F32, shape=ne)) for _ in range(3))


def test_map_custom3_matches_numpy():
    check_op(lambda ctx, a, b, c: gg.map_custom3(a, b, c, mul_add), lambda a, b, c: a * b + c,
             strategies=three_alike(), rtol=1e-6, atol=1e-6)


@st.composite
def two_alike(draw):
    ne = draw(shapes(max_dims=3, max_side=12))
    return draw(tensors(type=gg.F32, shape=ne)), draw(tensors(type=gg.F32, shape=ne))


def test_map_custom2_declared_shape():
    # one value per row: the declared shape is not a's
    def build(ctx, a, b):
        return gg.map_custom2(a, b, row_dot, ne=[1, *a.ne[1:]])
    check_op(build, lambda a, b: (a.astype(np.float64) * b).sum(-1, keepdims=True),
             strategies=two_alike(), rtol=1e-5, atol=1e-4)


def test_declared_type_and_userdata():
    ctx = gg.Context()
    a = ctx.from_numpy(np.array([[1.5, -2.0, 7.9]], np.float32))

    def truncate_plus(dst, a, ith, nth, offset):
        if ith == 0:
            dst[...] = np.trunc(a).astype(np.int32) + offset

    y = gg.map_custom1(a, truncate_plus, userdata=10, type=gg.I32)
    assert y.type is gg.I32 and y.ne == a.ne
    gg.Graph().build_forward_expand(y).compute(2)
    assert y.numpy().tolist() == [11, 8, 17]


def test_views_have_real_strides_and_sources_are_read_only():
    ctx = gg.Context()
    base = ctx.from_numpy(np.arange(24, dtype=np.float32).reshape(4, 6))
    a = gg.transpose(base)                 # ne [4, 6], nb[0] = 24 bytes
    seen = {}

    def look(dst, a, ith, nth):
        seen["a_strides"], seen["dst_writable"], seen["a_writable"] = a.strides, dst.flags.writeable, a.flags.writeable
        dst[...] = a

    y = gg.map_custom1(a, look, n_tasks=1)
    gg.Graph().build_forward_expand(y).compute(1)
    assert seen["a_strides"] == tuple(a.nb[::-1])
    assert seen["dst_writable"] and not seen["a_writable"]
    np.testing.assert_array_equal(y.numpy(), np.arange(24, dtype=np.float32).reshape(4, 6).T)

    def write_source(dst, a, ith, nth):
        a[...] = 0
    z = gg.map_custom1(a, write_source)
    with pytest.raises(gg.GGraphError, match="read-only"):
        gg.Graph().build_forward_expand(z).compute(1)


def test_n_tasks_limits_the_threads_that_call_fn():
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((8, 4), np.float32))
    calls = []
    lock = threading.Lock()

    def record(dst, a, ith, nth):
        with lock:
            calls.append((ith, nth))
        d, x = rows(dst), rows(a)
        for r in range(ith, d.shape[0], nth):
            d[r] = x[r]

    g = gg.Graph().build_forward_expand(gg.map_custom1(a, record, 2))
    g.compute(4)
    assert sorted(calls) == [(0, 2), (1, 2)]
    calls.clear()
    g.compute(1)
    assert calls == [(0, 1)]


def test_python_exception_fails_compute_with_traceback_and_graph_recovers():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(12, dtype=np.float32).reshape(6, 2))
    state = {"fail": True}

    def flaky_kernel(dst, a, ith, nth):
        if state["fail"] and ith == nth - 1:
            raise ValueError(f"bad row on thread {ith}")
        twice(dst, a, ith, nth)

    y = gg.map_custom1(gg.scale(a, 1.0), flaky_kernel)
    z = gg.add(y, a)
    g = gg.Graph().build_forward_expand(z)
    for n in (1, 4):
        with pytest.raises(gg.GGraphError) as ei:
            g.compute(n)
        msg = str(ei.value)
        assert "custom:flaky_kernel raised ValueError: bad row on thread" in msg
        assert "Traceback" in msg and "in flaky_kernel" in msg
        assert isinstance(ei.value.__cause__, ValueError)
    state["fail"] = False
    for n in (1, 2, 4):
        z.numpy()[...] = 0
        g.compute(n)
        np.testing.assert_array_equal(z.numpy(), 3 * np.arange(12, dtype=np.float32).reshape(6, 2))


def test_compute_inside_a_custom_op_is_refused_not_deadlocked():
    ctx = gg.Context()
    inner = gg.Graph().build_forward_expand(gg.scale(ctx.from_numpy(np.ones(4, np.float32)), 2.0))

    def nested(dst, a, ith, nth):
        inner.compute(1)

    y = gg.map_custom1(ctx.from_numpy(np.ones(4, np.float32)), nested)
    with pytest.raises(gg.GGraphError, match="cannot run a graph"):
        gg.Graph().build_forward_expand(y).compute(2)


def test_dot_dump_and_profile_name_the_function(tmp_path):
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((3, 4), np.float32))
    y = gg.map_custom1(gg.sqr(a), twice)
    g = gg.Graph().build_forward_expand(y)
    g.compute(2, profile=True)
    ops = [op for op, _, _ in g.profile_by_op()]
    assert sorted(ops) == ["custom:twice", "sqr"]
    dot = open(g.dump_dot(tmp_path / "g.dot")).read()
    assert "CUSTOM:TWICE" in dot and "SQR" in dot
    assert "CUSTOM:TWICE" in g.format()
    named = gg.map_custom1(a, lambda dst, a, ith, nth: None, name="my_fn")
    assert [op for op, _, _ in gg.Graph().build_forward_expand(named).compute(1, profile=True).profile_by_op()] \
        == ["custom:my_fn"]


def test_allocator_reuses_a_only_when_declared_inplace():
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((3, 4), np.float32))
    for inplace in (False, True):
        t = gg.scale(a, 3.0).set_name("t")       # an intermediate read only by the custom op
        y = gg.map_custom1(t, twice, inplace=inplace).set_name("y")
        g = gg.Graph().build_forward_expand(gg.scale(y, 1.0))
        log = "\n".join(g.alloc_log)
        assert ("y: in place over t" in log) == inplace, log
        g.compute(2)
        np.testing.assert_array_equal(g.nodes[-1].numpy(), 6.0)


def test_reference_backend_runs_python_functions():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(6, dtype=np.float16).reshape(2, 3))
    y = gg.map_custom1(a, twice)
    gg.Graph().build_forward_expand(y).compute(backend="reference")
    np.testing.assert_array_equal(y.numpy(), 2 * np.arange(6, dtype=np.float16).reshape(2, 3))


@pytest.mark.parametrize("kw, match", [
    ({"n_tasks": 0}, "n_tasks must be >= 1 or -1"),
    ({"n_tasks": -2}, "n_tasks must be >= 1 or -1"),
    ({"n_tasks": 1.5}, "n_tasks must be an integer"),
    ({"n_tasks": True}, "n_tasks must be an integer"),
    ({"ne": [0, 3]}, "bad declared output shape: ne sizes must be >= 1"),
    ({"ne": [-4]}, "bad declared output shape: ne sizes must be >= 1"),
    ({"ne": [1, 2, 3, 4, 5]}, "bad declared output shape: ne must have 1 to 4 dimensions"),
    ({"ne": "abc"}, "bad declared output shape"),
    ({"type": "F99"}, "bad output type"),
    ({"type": gg.Q4_0, "ne": [32]}, "cannot write block type Q4_0"),
    ({"inplace": True, "ne": [4, 2]}, "inplace=True needs the result to have a's type and shape"),
    ({"inplace": True, "type": gg.F16}, "inplace=True needs the result to have a's type and shape"),
])
def test_bad_declarations_are_build_time_errors(kw, match):
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match=match):
        gg.map_custom1(a, twice, **kw)


def test_bad_functions_and_arguments():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match=r"twice must take 5 positional arguments fn\(dst, a, b, ith, nth\)"):
        gg.map_custom2(a, a, twice)
    with pytest.raises(gg.GGraphError, match=r"must take 5 positional arguments fn\(dst, a, ith, nth, userdata\)"):
        gg.map_custom1(a, twice, userdata=3)
    with pytest.raises(gg.GGraphError, match="fn must be a Python callable or a gg.CKernel, got str"):
        gg.map_custom1(a, "twice")
    with pytest.raises(gg.GGraphError, match="argument b must be a ggraph Tensor, got ndarray"):
        gg.map_custom2(a, np.zeros(3), row_dot)
    with pytest.raises(gg.GGraphError, match="a is a block type"):
        gg.map_custom1(ctx.new_tensor(gg.Q8_0, [32]), twice)


def test_fn_writing_the_wrong_shape_is_a_clear_error():
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((3, 4), np.float32))

    def wrong(dst, a, ith, nth):
        dst[...] = np.ones((5, 5))

    g = gg.Graph().build_forward_expand(gg.map_custom1(a, wrong))
    with pytest.raises(gg.GGraphError, match="custom:wrong raised ValueError"):
        g.compute(2)


def test_node_moved_by_another_graph_is_refused_not_misread():
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((2, 4), np.float32))
    y = gg.map_custom1(a, twice)
    g1 = gg.Graph().build_forward_expand(y)
    g1.compute(1)
    g2 = gg.Graph().build_forward_expand(gg.scale(y, 1.0))
    g2.compute(1)                                   # g2's plan writes y where g1 placed it
    g1.build_forward_expand(gg.sqr(a))              # g1 plans again: y moves to a new arena
    g1.compute(1)
    np.testing.assert_array_equal(y.numpy(), 2.0)
    # g2's plan still points at the old place: the function would see other memory than C writes
    with pytest.raises(gg.GGraphError, match="the node's memory belongs to another graph"):
        g2.compute(1)
