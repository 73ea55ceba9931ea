"""norm and rms_norm against numpy, over shapes, layouts and threads."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.testing import ROW_LAYOUTS, check_graph, check_op, layouts, make_tensor, seeds, shapes, tensors


def test_rms_norm_matches_numpy():
    # f32 sum of squares over <= 40 terms vs float64: ~1e-6 relative, also for rows
    # with zeros, large (1e4: squares far from overflow) and tiny values (their
    # squares underflow in f32 and in the reference they are negligible next to eps)
    check_op(lambda ctx, a, eps: gg.rms_norm(a, eps),
             lambda a, eps: a / np.sqrt((a.astype(np.float64) ** 2).mean(-1, keepdims=True) + eps),
             strategies=[tensors(type=gg.F32, layouts=ROW_LAYOUTS, max_side=40), st.sampled_from([1e-6, 1e-5, 0.1])],
             rtol=2e-5, atol=2e-6, threads=(1, 2, 3, 4))


@given(ne=shapes(max_side=40), layout=layouts(ROW_LAYOUTS), eps=st.sampled_from([1e-6, 1e-5, 0.1]), seed=seeds())
def test_norm_matches_numpy(ne, layout, eps, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, ne, layout, rng=rng)
    # f32 sums of <= 40 terms vs a float64 reference: ~1e-6 relative. norm also
    # subtracts an f32 mean whose error (~ne0 * 2^-24 * max|x|) the division by
    # the row's std amplifies, which matters for short rows of similar values
    # (a tolerance that depends on the values: check_graph on one drawn tensor)
    x = a.numpy().astype(np.float64).reshape(-1, ne[0])
    std = np.sqrt(x.var(axis=1) + eps).min()
    atol = 2e-6 + 4 * 2.0**-24 * ne[0] * np.abs(x).max() / std
    check_graph([gg.norm(a, eps)], rtol=2e-5, atol=atol, what=f"norm {layout}")


def test_rms_norm_of_constant_row_is_one():
    ctx = gg.Context()
    a = ctx.from_numpy(np.full((3, 16), 7.0, np.float32))
    y = gg.rms_norm(a, 0.0)
    gg.Graph().build_forward_expand(y).compute(1)
    np.testing.assert_allclose(y.numpy(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("op", ["norm", "rms_norm"])
def test_norm_errors(op):
    ctx = gg.Context()
    f = getattr(gg, op)
    with pytest.raises(gg.GGraphError, match=f"{op}: a must be F32, got F16"):
        f(ctx.new_tensor(gg.F16, [8, 2]), 1e-5)
    with pytest.raises(gg.GGraphError, match=f"{op}: rows of a must be contiguous"):
        f(gg.transpose(ctx.new_tensor(gg.F32, [8, 2])), 1e-5)
    with pytest.raises(gg.GGraphError, match="eps must be finite"):
        f(ctx.new_tensor(gg.F32, [8]), float("nan"))
    with pytest.raises(gg.GGraphError, match="must be a ggraph Tensor"):
        f(np.zeros(3), 1e-5)
