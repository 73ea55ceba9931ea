"""repeat, concat, pad and arange against numpy, over shapes, layouts, types and threads.

Layout ops copy values without arithmetic, so C and numpy must agree exactly
(rtol = atol = 0), for every type; arange is the one that computes.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.ops.layout import arange_count
from ggraph.testing import LAYOUTS, ROW_LAYOUTS, check_graph, layouts, make_tensor, seeds, shapes, types

PLAIN = (gg.F32, gg.F16, gg.BF16, gg.I32)
EXACT = dict(rtol=0.0, atol=0.0)      # pure copies: bit-for-bit


# ---- repeat ----

@given(ne=shapes(max_side=5), reps=st.lists(st.integers(1, 3), min_size=4, max_size=4),
       layout=layouts(ROW_LAYOUTS), type=types(PLAIN), shape_from=st.sampled_from(["b", "4d"]), seed=seeds())
def test_repeat_matches_numpy(ne, reps, layout, type, shape_from, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, rng=rng)
    target = [n * r for n, r in zip(ne, reps)]
    if shape_from == "b":
        b = ctx.new_tensor(gg.F16, target)             # only b's shape matters, not its type
        y = gg.repeat(a, b)
    else:
        y = gg.repeat_4d(a, *target)
    assert y.type is type and list(y.ne) == target
    check_graph([y], **EXACT, what=f"repeat {type} {layout}")


def test_repeat_same_shape_is_a_copy():
    ctx = gg.Context()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = ctx.from_numpy(x)
    y = gg.repeat(a, a).set_output()
    gg.Graph().build_forward_expand(y).compute(2)
    np.testing.assert_array_equal(y.numpy(), x)


def test_repeat_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match=r"repeat: each of b's sizes must be a multiple of a's"):
        gg.repeat(a, ctx.new_tensor(gg.F32, [6, 3]))
    with pytest.raises(gg.GGraphError, match=r"repeat_4d: each target size must be a multiple"):
        gg.repeat_4d(a, 8, 4, 1, 1)
    with pytest.raises(gg.GGraphError, match=r"repeat_4d: sizes must be >= 1"):
        gg.repeat_4d(a, 0, 3, 1, 1)
    with pytest.raises(gg.GGraphError, match=r"repeat_4d: ne1 must be an integer"):
        gg.repeat_4d(a, 4, 1.5, 1, 1)
    with pytest.raises(gg.GGraphError, match=r"repeat: rows of a must be packed"):
        gg.repeat(gg.transpose(a), ctx.new_tensor(gg.F32, [6, 8]))
    with pytest.raises(gg.GGraphError, match=r"repeat: argument b must be a ggraph Tensor"):
        gg.repeat(a, [8, 6])


# ---- concat ----

@given(ne=shapes(max_side=5), dim=st.integers(0, 3), nb_dim=st.integers(1, 4),
       layout_a=layouts(LAYOUTS), layout_b=layouts(LAYOUTS), type=types(PLAIN), seed=seeds())
def test_concat_matches_numpy(ne, dim, nb_dim, layout_a, layout_b, type, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    ne_b = list(ne)
    ne_b[dim] = nb_dim
    a = make_tensor(ctx, type, ne, layout_a, rng=rng)
    b = make_tensor(ctx, type, ne_b, layout_b, rng=rng)
    y = gg.concat(a, b, dim)
    assert y.ne[dim] == ne[dim] + nb_dim
    check_graph([y], **EXACT, what=f"concat dim={dim} {type} {layout_a}+{layout_b}")


def test_concat_default_dim_is_0():
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones((2, 3), np.float32))
    b = ctx.from_numpy(np.zeros((2, 5), np.float32))
    y = gg.concat(a, b).set_output()
    gg.Graph().build_forward_expand(y).compute(1)
    np.testing.assert_array_equal(y.numpy(), np.concatenate([np.ones((2, 3)), np.zeros((2, 5))], axis=1))


def test_concat_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3, 2])
    with pytest.raises(gg.GGraphError, match=r"concat: a and b must have the same sizes in every dim but 1"):
        gg.concat(a, ctx.new_tensor(gg.F32, [5, 3, 2]), 1)
    with pytest.raises(gg.GGraphError, match=r"concat: a and b must have the same type"):
        gg.concat(a, ctx.new_tensor(gg.F16, [4, 3, 2]), 0)
    with pytest.raises(gg.GGraphError, match=r"concat: dim must be 0..3, got 4"):
        gg.concat(a, a, 4)
    with pytest.raises(gg.GGraphError, match=r"concat: dim must be 0..3, got -1"):
        gg.concat(a, a, -1)
    with pytest.raises(gg.GGraphError, match=r"concat: dim must be an integer"):
        gg.concat(a, a, "x")


# ---- pad ----

pads = st.integers(0, 3)


@given(ne=shapes(max_side=6), p=st.lists(pads, min_size=8, max_size=8), layout=layouts(LAYOUTS),
       ext=st.booleans(), seed=seeds())
def test_pad_matches_numpy(ne, p, layout, ext, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, ne, layout, rng=rng)
    if ext:
        y = gg.pad_ext(a, *p)
        expect_ne = [ne[d] + p[2 * d] + p[2 * d + 1] for d in range(4)]
    else:
        y = gg.pad(a, *p[:4])
        expect_ne = [ne[d] + p[d] for d in range(4)]
    assert list(y.ne) == expect_ne
    check_graph([y], **EXACT, what=f"pad ext={ext} {layout}")


def test_pad_values():
    ctx = gg.Context()
    a = ctx.from_numpy(np.array([[1, 2], [3, 4]], np.float32))
    y = gg.pad_ext(a, 1, 2, 0, 1, 0, 0, 0, 0).set_output()
    gg.Graph().build_forward_expand(y).compute(2)
    np.testing.assert_array_equal(y.numpy(), [[0, 1, 2, 0, 0], [0, 3, 4, 0, 0], [0, 0, 0, 0, 0]])


def test_pad_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match=r"pad: padding must be >= 0 .*p1=-1"):
        gg.pad(a, 1, -1)
    with pytest.raises(gg.GGraphError, match=r"pad_ext: padding must be >= 0 .*lp2=-2"):
        gg.pad_ext(a, 0, 0, 0, 0, -2, 0, 0, 0)
    with pytest.raises(gg.GGraphError, match=r"pad: padding must be >= 0 \(and fit in int32\)"):
        gg.pad(a, 2**31)
    with pytest.raises(gg.GGraphError, match=r"pad: p0 must be an integer"):
        gg.pad(a, 0.5)
    with pytest.raises(gg.GGraphError, match=r"pad: a must be F32, got F16"):
        gg.pad(ctx.new_tensor(gg.F16, [4]), 1)


# ---- arange: the op with no sources ----

@given(start=st.floats(-1e3, 1e3, width=32), step=st.floats(0.015625, 50, width=32), n=st.integers(1, 300))
def test_arange_matches_numpy(start, step, n):
    stop = start + step * (n - 0.5)
    y = gg.arange(start, stop, step)
    assert y.ne[0] == arange_count(start, stop, step) and not y.src
    # the kernel rounds start + step*i once (fma); the reference rounds the
    # float64 value (exact product, one rounding in the sum) to float32: they
    # differ by at most one float32 ulp of the result
    check_graph([y], rtol=2.0**-23, atol=0.0, what=f"arange({start}, {stop}, {step})")


def test_arange_count_is_ggmls_float32_formula():
    # (0.3 - 0) / 0.01 is 30.000000x in float32 (ggml: ceilf -> 31) but 29.999... in float64
    assert gg.arange(0.0, 0.3, 0.01).ne[0] == 31
    assert gg.arange(0, 5, 1.5).ne[0] == 4
    assert gg.arange(0, 4, 1).ne[0] == 4


def test_arange_feeds_other_nodes():
    """A source-less node plans, allocates and runs inside a bigger graph."""
    ctx = gg.Context()
    x = ctx.from_numpy(np.arange(6, dtype=np.float32) * 10)
    r = gg.arange(0, 6, 1)
    y = gg.concat(gg.repeat(r, x), x, 0)
    s = gg.sum(y)
    check_graph([s, y], rtol=0, atol=0)
    g = gg.Graph().build_forward_expand(y.set_output())
    assert r in g.nodes and r not in g.leafs
    g.compute(3)
    np.testing.assert_array_equal(y.numpy(), np.concatenate([np.arange(6), np.arange(6) * 10]))


def test_arange_errors():
    with pytest.raises(gg.GGraphError, match=r"arange: step must not be 0"):
        gg.arange(0, 1, 0)
    with pytest.raises(gg.GGraphError, match=r"arange: stop must be > start"):
        gg.arange(1, 1, 0.5)
    with pytest.raises(gg.GGraphError, match=r"arange: stop must be > start"):
        gg.arange(5, 0, -1)                      # ggml asserts stop > start: no descending ranges
    with pytest.raises(gg.GGraphError, match=r"arange: step must be > 0"):
        gg.arange(0, 5, -1)
    with pytest.raises(gg.GGraphError, match=r"arange: empty range"):
        gg.arange(0, 1e-30, 1e30)                # the quotient underflows to 0 in float32
    with pytest.raises(gg.GGraphError, match=r"arange: start, stop and step must be finite"):
        gg.arange(0, float("inf"), 1)
    with pytest.raises(gg.GGraphError, match=r"arange: too many elements"):
        gg.arange(0, 1e10, 1)
    with pytest.raises(gg.GGraphError, match=r"arange: step must be a number"):
        gg.arange(0, 1, "x")
