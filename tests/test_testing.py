"""ggraph.testing itself: the strategies draw what they promise, check_op catches
wrong kernels and says where."""
import numpy as np
import pytest
from hypothesis import find, given, settings, strategies as st

import ggraph as gg
from ggraph.testing import (LAYOUTS, ROW_LAYOUTS, check_op, check_op_once, layout_of, make_tensor, shapes,
                            tensors, types, values)


@given(t=tensors())
def test_tensors_hold_their_values_in_a_known_layout(t):
    assert t.type in (gg.F32, gg.F16)
    assert layout_of(t) in LAYOUTS
    a = t.numpy()
    assert a.shape == t.shape and not np.isnan(a).any()      # no NaN unless asked
    # the same values read through a contiguous copy made by the runtime
    c = gg.cont(t)
    gg.Graph().build_forward_expand(c).compute(1)
    np.testing.assert_array_equal(c.numpy(), a)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tensors_draw_every_layout(layout):
    t = find(tensors(type=gg.F32, shape=[3, 4, 2]), lambda t: layout_of(t) == layout)
    assert layout_of(t) == layout and t.ne == (3, 4, 2, 1)


def test_contiguous_and_restricted_layouts():
    @given(tensors(contiguous=True), tensors(layouts=ROW_LAYOUTS))
    @settings(max_examples=30)
    def run(c, r):
        assert c.is_contiguous()
        assert r.nb[0] == r.type.type_size          # rows stay packed
    run()


@pytest.mark.parametrize("edge, pred", [
    ("zeros", lambda a: (a == 0).sum() >= 2),
    ("large", lambda a: np.abs(a).max() >= 1e3),
    ("tiny", lambda a: ((np.abs(a) > 0) & (np.abs(a) < 1e-20)).any()),
    ("negative", lambda a: (a < 0).all()),
])
def test_values_include_edge_cases(edge, pred):
    a = find(values(gg.F32, [16, 4]), pred)
    assert pred(a)


def test_nan_and_inf_only_when_asked():
    @given(values(gg.F32, [8, 8]), values(gg.F16, [8, 8]))
    @settings(max_examples=50)
    def finite(a, b):
        assert np.isfinite(a).all() and np.isfinite(b).all()
    finite()
    assert np.isnan(find(values(gg.F32, [8], allow_nan=True), lambda a: np.isnan(a).any())).any()
    assert np.isinf(find(values(gg.F32, [8], allow_inf=True), lambda a: np.isinf(a).any())).any()


def test_i32_values_and_types():
    a = find(values(gg.I32, [5, 3], int_range=(-3, 3)), lambda a: (a < 0).any())
    assert a.dtype == np.int32 and a.min() >= -3 and a.max() < 3
    assert find(types((gg.F32, gg.BF16)), lambda t: t is gg.BF16) is gg.BF16
    ne = find(shapes(max_dims=2, max_side=5), lambda ne: ne[1] > 3)
    assert len(ne) == 4 and ne[2:] == [1, 1]


def test_check_op_passes_a_right_op():
    check_op(lambda ctx, x: gg.silu(x), lambda x: x / (1 + np.exp(-x.astype(np.float64))),
             strategies=[tensors(type=gg.F32, large=30.0)], rtol=1e-5, atol=1e-6)


def _off_at_row_2(dst, a, ith, nth):
    d, x = dst.reshape(-1, dst.shape[-1]), a.reshape(-1, a.shape[-1])
    for r in range(ith, d.shape[0], nth):
        d[r] = 2 * x[r] + (0.5 if r == 2 else 0.0)


def test_check_op_catches_a_wrong_kernel_with_a_useful_message():
    with pytest.raises(AssertionError) as ei:
        check_op(lambda ctx, a: gg.map_custom1(a, _off_at_row_2), lambda a: 2 * a,
                 strategies=[tensors(type=gg.F32)], settings=settings(max_examples=50, database=None))
    e = ei.value
    msg = str(e)
    notes = "\n".join(getattr(e, "__notes__", []))
    assert "input 0: F32 ne=[" in msg and " nb=[" in msg          # shapes and layouts of the inputs
    assert any(f" {lay} nb=" in msg for lay in LAYOUTS)
    assert "custom:_off_at_row_2" in msg                             # the graph
    assert "n_threads=1" in msg and "simd path" in msg               # where it failed
    assert "worst at index" in msg and "got " in msg and "expected " in msg
    # how to replay it (hypothesis names the example "Falsifying example" or, from 6.1xx on,
    # "Failing test case")
    assert ("Falsifying example" in notes or "Failing test case" in notes) and "reproduce=(" in notes


def test_check_op_replays_a_reported_example():
    with pytest.raises(AssertionError) as ei:
        check_op(lambda ctx, a: gg.map_custom1(a, _off_at_row_2), lambda a: 2 * a,
                 strategies=[tensors(type=gg.F32)], settings=settings(max_examples=50, database=None))
    notes = "\n".join(ei.value.__notes__)
    blob = notes.split("reproduce=(")[1].rsplit("))", 1)[0]
    version, data = eval(blob)                  # the ('version', b'...') pair printed for the user
    with pytest.raises(AssertionError, match="worst at index"):
        check_op(lambda ctx, a: gg.map_custom1(a, _off_at_row_2), lambda a: 2 * a,
                 strategies=[tensors(type=gg.F32)], reproduce=(version, data))


def test_check_op_catches_thread_dependent_and_silent_kernels():
    def only_thread_0(dst, a, ith, nth):
        if ith == 0:
            d, x = dst.reshape(-1, dst.shape[-1]), a.reshape(-1, a.shape[-1])
            d[0::nth] = 2 * x[0::nth]              # rows of the other threads never written

    def build(ctx, a):
        return gg.map_custom1(a, only_thread_0)
    t = make_tensor(gg.Context(), gg.F32, [4, 3], values=np.ones((3, 4)))
    with pytest.raises(AssertionError, match="n_threads=2"):
        check_op_once(build, lambda a: 2 * a, [t], threads=(1, 2))


def test_check_op_wrong_reference_shape_and_bad_strategies():
    t = make_tensor(gg.Context(), gg.F32, [4, 3])
    with pytest.raises(AssertionError, match=r"the reference returned shape \(4, 3\) for output 0, but the graph's "
                                             r"output has shape \(3, 4\)"):
        check_op_once(lambda ctx, a: gg.scale(a, 2.0), lambda a: (2 * a).T, [t])
    with pytest.raises(gg.GGraphError, match="strategies must be hypothesis strategies; item 1 is float"):
        check_op(lambda ctx, a, s: gg.scale(a, s), lambda a, s: a * s, strategies=[tensors(), 2.0])
    with pytest.raises(gg.GGraphError, match="build must return a Tensor"):
        check_op_once(lambda ctx, a: a.numpy(), lambda a: a, [t])


def test_check_op_with_plain_values_and_several_outputs():
    check_op(lambda ctx, a, s: [gg.scale(a, s), gg.sqr(a)], lambda a, s: [a * s, a.astype(np.float64) ** 2],
             strategies=[tensors(type=gg.F32, large=100.0), st.floats(-4, 4, width=32)], rtol=1e-6, atol=1e-6)
