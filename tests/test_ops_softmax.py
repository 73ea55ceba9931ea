"""soft_max, soft_max_ext and diag_mask_inf against numpy, over shapes, masks, layouts and threads."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.ops.softmax import alibi_slopes
from ggraph.testing import ROW_LAYOUTS, check_graph, layouts, make_tensor, seeds, shapes

SIMD_MODES = (True, False) if gg.simd_available() else (False,)

# Softmax tolerance. The kernel forms w = a*scale + slope*mask in f32 (one
# rounding each, relative 2^-24), subtracts the row max (one more), takes exp
# (libm expf on the scalar path, a ~1.5 ulp polynomial on the SIMD path), sums
# in double and multiplies by 1/sum (two roundings). An absolute error d in
# w - max is a relative error d in the result, so the relative error is about
# |w|*2^-22 + 4*2^-24; the tests keep |w| < ~20, hence rtol 1e-5. atol only
# covers results that underflow differently near 1e-38.
SM_RTOL, SM_ATOL = 1e-5, 1e-30


def _divisor(draw, n):
    return draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))


@st.composite
def soft_max_args(draw):
    ne = draw(shapes(max_side=40, min_dims=1))
    ne[1] = min(ne[1], 9)
    ne[2] = draw(st.integers(1, 12))                       # heads: powers of two and not, for ALiBi
    mask_type = draw(st.sampled_from([None, gg.F32, gg.F16]))
    mask_ne = None
    if mask_type is not None:
        mask_ne = [ne[0], ne[1] + draw(st.integers(0, 3)), _divisor(draw, ne[2]), _divisor(draw, ne[3])]
    scale = draw(st.sampled_from([1.0, 0.125, 0.5, 2.0, -1.0]))
    max_bias = draw(st.sampled_from([0.0, 0.5, 8.0])) if mask_type is not None else 0.0
    p_inf = draw(st.sampled_from([0.0, 0.3, 0.9]))
    return ne, mask_type, mask_ne, scale, max_bias, p_inf


@given(args=soft_max_args(), seed=seeds())
def test_soft_max_ext_matches_numpy(args, seed):
    ne, mask_type, mask_ne, scale, max_bias, p_inf = args
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, ne, "contiguous", values=3 * rng.standard_normal(ne[::-1]), rng=rng)
    mask = None
    if mask_type is not None:
        m = 2 * rng.standard_normal(mask_ne[::-1])
        m[rng.random(m.shape) < p_inf] = -np.inf                 # some rows may be all -inf: NaN rows
        mask = make_tensor(ctx, mask_type, mask_ne, "contiguous", values=m, rng=rng)
    y = gg.soft_max_ext(a, mask, scale, max_bias)
    check_graph([y], rtol=SM_RTOL, atol=SM_ATOL, simd=SIMD_MODES,
                what=f"soft_max_ext mask={mask_type} scale={scale} max_bias={max_bias}")


@pytest.mark.parametrize("simd", SIMD_MODES)
def test_soft_max_rows_sum_to_one(simd):
    rng = np.random.default_rng(7)
    ctx = gg.Context()
    y = gg.soft_max(ctx.from_numpy((4 * rng.standard_normal((3, 7, 517))).astype(np.float32)))
    gg.set_use_simd(simd)
    try:
        gg.Graph().build_forward_expand(y.set_output()).compute(3)
    finally:
        gg.set_use_simd(True)
    np.testing.assert_allclose(y.numpy().sum(axis=-1, dtype=np.float64), 1.0, rtol=1e-5)


def test_soft_max_all_inf_row_is_nan_like_ggml():
    ctx = gg.Context()
    a = ctx.from_numpy(np.zeros((3, 20), np.float32))
    m = np.zeros((3, 20), np.float32)
    m[1, :] = -np.inf                  # row 1 is fully masked
    m[2, 5:] = -np.inf                 # row 2 keeps 5 columns
    y = gg.soft_max_ext(a, ctx.from_numpy(m), 1.0, 0.0)
    check_graph([y], rtol=SM_RTOL, atol=SM_ATOL, simd=SIMD_MODES)
    out = y.numpy()
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[2, 5:], 0.0)
    np.testing.assert_allclose(out[2, :5], 0.2, rtol=1e-6)
    np.testing.assert_allclose(out[0], 1 / 20, rtol=1e-6)


@pytest.mark.parametrize("simd", SIMD_MODES)
def test_soft_max_exp_is_accurate(simd):
    """The exp inside soft_max, read back through ratios y_i / y_0 = e^(x_i - x_0)
    (x_0 = 0 is the row max); each ratio carries the exp error plus the
    rounding of two products by 1/sum: within 4 f32 ulps on the normal range,
    2^-148 absolute where e^x is subnormal."""
    ctx = gg.Context()
    x = np.concatenate([[0.0], -np.linspace(0, 87.0, 4001), -np.geomspace(1e-8, 1.0, 999),
                        -np.linspace(87.0, 106.0, 999), [-np.inf]]).astype(np.float32)
    y = gg.soft_max(ctx.from_numpy(x))
    gg.set_use_simd(simd)
    try:
        gg.Graph().build_forward_expand(y.set_output()).compute(2)
    finally:
        gg.set_use_simd(True)
    out = y.numpy().astype(np.float64)
    expect = np.exp(x.astype(np.float64)) * out[0]
    normal = expect > 2.0**-126
    ulp = np.spacing(expect[normal].astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(out[normal] - expect[normal]) <= 4 * ulp)
    assert np.all(np.abs(out[~normal] - expect[~normal]) <= 2.0**-148)
    assert out[-1] == 0.0                                           # e^-inf


def test_alibi_slopes_hand_computed():
    # 8 heads, max_bias 8: the ALiBi paper's 1/2, 1/4, ..., 1/256
    np.testing.assert_allclose(alibi_slopes(8, 8.0), 2.0 ** -np.arange(1, 9), rtol=1e-15)
    # 12 heads: the 8 above, then odd powers of 2^-0.5 for the 4 extra heads
    np.testing.assert_allclose(alibi_slopes(12, 8.0)[8:], 2.0 ** -np.array([0.5, 1.5, 2.5, 3.5]), rtol=1e-15)
    np.testing.assert_array_equal(alibi_slopes(5, 0.0), 1.0)


def test_alibi_slope_scales_the_mask_per_head():
    # a = 0, mask row = column index: head h's softmax is softmax(slope_h * i)
    ctx = gg.Context()
    n_head, n = 6, 11
    a = ctx.from_numpy(np.zeros((n_head, 2, n), np.float32))
    mask = ctx.from_numpy(np.tile(np.arange(n, dtype=np.float32), (2, 1)))
    y = gg.soft_max_ext(a, mask, 1.0, 4.0)
    check_graph([y], rtol=SM_RTOL, atol=SM_ATOL, simd=SIMD_MODES)
    slopes = [2.0 ** (-4.0 / 4 * (h + 1)) for h in range(4)] + [2.0 ** (-2.0 / 4 * k) for k in (1, 3)]
    for h, s in enumerate(slopes):
        e = np.exp(s * np.arange(n))
        np.testing.assert_allclose(y.numpy()[h, 0], e / e.sum(), rtol=1e-5)


def test_soft_max_runs_in_place_after_diag_mask_inf():
    # the causal attention pattern: soft_max(diag_mask_inf(kq * scale, n_past))
    rng = np.random.default_rng(3)
    ctx = gg.Context()
    kq = make_tensor(ctx, gg.F32, [13, 5, 4], rng=rng)
    y = gg.soft_max(gg.diag_mask_inf(kq, 8))
    log = gg.Graph().build_forward_expand(y).alloc_log
    assert f"{y.name}: in place over {y.src[0].name}" in log
    ref = check_graph([y], rtol=SM_RTOL, atol=SM_ATOL, simd=SIMD_MODES)[0]
    assert np.all(ref[:, 0, 9:] == 0.0) and np.all(ref[:, 4, :13] > 0.0)


@given(ne=shapes(max_side=20), layout=layouts(ROW_LAYOUTS), n_past=st.integers(0, 12), seed=seeds())
def test_diag_mask_inf_matches_numpy(ne, layout, n_past, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, ne, layout, rng=rng)
    check_graph([gg.diag_mask_inf(a, n_past)], rtol=0, atol=0, simd=SIMD_MODES, what=f"diag_mask_inf {layout}")


def test_diag_mask_inf_hand_computed():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5))
    y = gg.diag_mask_inf(a, 1)
    gg.Graph().build_forward_expand(y.set_output()).compute(2)
    inf = -np.inf
    want_plane = np.array([[0, 1, inf, inf, inf],
                           [5, 6, 7, inf, inf],
                           [10, 11, 12, 13, inf]])
    np.testing.assert_array_equal(y.numpy(), np.stack([want_plane, want_plane + np.where(want_plane > -1, 15, 0)]))


def test_soft_max_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 4, 2])
    with pytest.raises(gg.GGraphError, match="soft_max_ext: a must be F32, got F16"):
        gg.soft_max_ext(ctx.new_tensor(gg.F16, [8, 4]))
    with pytest.raises(gg.GGraphError, match="soft_max: a must be F32"):
        gg.soft_max(ctx.new_tensor(gg.I32, [8]))
    with pytest.raises(gg.GGraphError, match="soft_max: a must be contiguous"):
        gg.soft_max(gg.transpose(ctx.new_tensor(gg.F32, [8, 4])))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: a must be contiguous"):
        gg.soft_max_ext(gg.permute(a, 0, 2, 1, 3))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: mask must be F16, F32, got I32"):
        gg.soft_max_ext(a, ctx.new_tensor(gg.I32, [8, 4]))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: mask must be contiguous"):
        gg.soft_max_ext(a, gg.transpose(ctx.new_tensor(gg.F32, [4, 8])))
    with pytest.raises(gg.GGraphError, match=r"soft_max_ext: mask.ne\[0\] must equal a.ne\[0\]"):
        gg.soft_max_ext(a, ctx.new_tensor(gg.F32, [9, 4]))
    with pytest.raises(gg.GGraphError, match=r"soft_max_ext: mask.ne\[1\] must be >= a.ne\[1\]"):
        gg.soft_max_ext(a, ctx.new_tensor(gg.F16, [8, 3]))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: mask must broadcast over a in dims 2 and 3"):
        gg.soft_max_ext(a, ctx.new_tensor(gg.F32, [8, 4, 3]))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: max_bias > 0 .* needs a mask"):
        gg.soft_max_ext(a, None, 1.0, 8.0)
    with pytest.raises(gg.GGraphError, match="soft_max_ext: scale must be finite"):
        gg.soft_max_ext(a, None, float("nan"))
    with pytest.raises(gg.GGraphError, match="soft_max_ext: max_bias must be a number"):
        gg.soft_max_ext(a, None, 1.0, "big")
    with pytest.raises(gg.GGraphError, match="soft_max_ext: argument mask must be a ggraph Tensor"):
        gg.soft_max_ext(a, np.zeros((4, 8)))


def test_diag_mask_inf_errors():
    ctx = gg.Context()
    with pytest.raises(gg.GGraphError, match="diag_mask_inf: a must be F32, got F16"):
        gg.diag_mask_inf(ctx.new_tensor(gg.F16, [8, 4]), 0)
    with pytest.raises(gg.GGraphError, match="diag_mask_inf: rows of a must be contiguous"):
        gg.diag_mask_inf(gg.transpose(ctx.new_tensor(gg.F32, [8, 4])), 0)
    with pytest.raises(gg.GGraphError, match="diag_mask_inf: n_past must be >= 0"):
        gg.diag_mask_inf(ctx.new_tensor(gg.F32, [8, 4]), -1)
    with pytest.raises(gg.GGraphError, match="diag_mask_inf: n_past must be an integer"):
        gg.diag_mask_inf(ctx.new_tensor(gg.F32, [8, 4]), 1.5)
    with pytest.raises(gg.GGraphError, match="diag_mask_inf: argument a must be a ggraph Tensor"):
        gg.diag_mask_inf([1.0], 0)
