"""sum, sum_rows, mean and argmax against numpy, over shapes, layouts, types and threads.

Tolerances. The kernels accumulate in double (ggml's ggml_float) and round
once to the result type; the references sum in float64 and are rounded to
the same type when stored. The two double sums differ only by accumulation
order: at most n * 2^-53 * sum|x|, about 4e-9 for the largest tensors here
(n <= 6561, |x| ~ N(0,1)) and ~1e-9 for 4096-element rows. So results agree
to one rounding of the result type: rtol = 2 ulps (F32: 2^-22; F16: 2^-9;
BF16: 2^-6) plus atol = 1e-8 for sums that cancel to ~0. mean then divides
in float32 in both, which can add one more ulp: 3 ulps.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ggraph as gg
from ggraph.ops.reduce import argmax_scan
from ggraph.testing import ROW_LAYOUTS, check_graph, layouts, make_tensor, seeds, shapes, types

ULP = {gg.F32: 2.0**-23, gg.F16: 2.0**-10, gg.BF16: 2.0**-7}
ATOL = 1e-8


@given(ne=shapes(max_side=9), layout=layouts(ROW_LAYOUTS), type=types((gg.F32, gg.F16, gg.BF16)), seed=seeds())
def test_sum_matches_numpy(ne, layout, type, seed):
    rng = np.random.default_rng(seed)
    a = make_tensor(gg.Context(), type, ne, layout, rng=rng)
    y = gg.sum(a)
    assert y.type is type and y.ne == (1, 1, 1, 1)
    check_graph([y], rtol=2 * ULP[type], atol=ATOL, what=f"sum {type} {layout}")


@pytest.mark.parametrize("op", ["sum_rows", "mean"])
@given(ne=shapes(max_side=9), layout=layouts(ROW_LAYOUTS), seed=seeds())
def test_row_sums_match_numpy(op, ne, layout, seed):
    rng = np.random.default_rng(seed)
    a = make_tensor(gg.Context(), gg.F32, ne, layout, rng=rng)
    y = getattr(gg, op)(a)
    assert y.type is gg.F32 and y.ne == (1, ne[1], ne[2], ne[3])
    ulps = 2 if op == "sum_rows" else 3
    check_graph([y], rtol=ulps * ULP[gg.F32], atol=ATOL, what=f"{op} {layout}")


@pytest.mark.parametrize("op", ["sum", "sum_rows", "mean"])
@settings(max_examples=8)          # fixed structure, only the values vary: a few draws suffice
@given(rows=st.integers(1, 3), offset=st.sampled_from([0.0, 1e3]), seed=seeds())
def test_long_rows(op, rows, offset, seed):
    """4096-element rows, also around a large offset where f32 accumulation
    loses ~1e-4 relative (sqrt(n) * 2^-24 per step on sums ~4e6): the double
    accumulator keeps C within 2 ulps of the float64 reference."""
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal((rows, 4096))).astype(np.float32)
    a = make_tensor(gg.Context(), gg.F32, [4096, rows], "gapped", values=x, rng=rng)
    y = getattr(gg, op)(a)
    check_graph([y], rtol=(3 if op == "mean" else 2) * ULP[gg.F32], atol=ATOL, what=f"{op} 4096 offset={offset}")


def test_sum_against_exact_arithmetic():
    """Cancelling terms: the exact sum (math.fsum) is recovered to one f32 rounding."""
    rng = np.random.default_rng(7)
    big = rng.uniform(1e4, 2e4, 4096).astype(np.float32)
    small = rng.standard_normal(8192).astype(np.float32)
    x = rng.permutation(np.concatenate([big, -big]) + small)   # sum ~ sum(small) ~ 90, terms up to 2e4
    x = x.astype(np.float32).reshape(2, 4096)
    exact = math.fsum(float(v) for v in x.ravel())
    ctx = gg.Context()
    a = ctx.from_numpy(x)
    ys = [gg.sum(a).set_output(), gg.sum_rows(a).set_output()]
    g = gg.Graph()
    for y in ys:
        g.build_forward_expand(y)
    for simd in (True, False):
        gg.set_use_simd(simd)
        try:
            g.compute(4)
        finally:
            gg.set_use_simd(True)
        got = float(ys[0].numpy()[0])
        assert abs(got - exact) <= abs(exact) * ULP[gg.F32], (got, exact)
        rows_exact = [math.fsum(float(v) for v in r) for r in x]
        for g_r, e_r in zip(ys[1].numpy().ravel(), rows_exact):
            assert abs(float(g_r) - e_r) <= abs(e_r) * ULP[gg.F32], (g_r, e_r)
    # an f32 accumulator would be off here by far more than an ulp
    f32_acc = np.float32(0)
    for v in x.ravel():
        f32_acc = np.float32(f32_acc + v)
    assert abs(float(f32_acc) - exact) > 10 * abs(exact) * ULP[gg.F32]


def test_sum_is_the_same_for_every_thread_count():
    """The rows are split into chunks fixed by the row count, not the threads."""
    rng = np.random.default_rng(3)
    a = gg.Context().from_numpy(rng.standard_normal((300, 17)).astype(np.float32))
    y = gg.sum(a).set_output()
    g = gg.Graph().build_forward_expand(y)
    got = set()
    for n in (1, 2, 3, 4, 7):
        g.compute(n)
        got.add(float(y.numpy()[0]))
    assert len(got) == 1


def test_mean_values():
    a = gg.Context().from_numpy(np.array([[1, 2, 3, 4], [-1, -1, -1, 5]], np.float32))
    y = gg.mean(a).set_output()
    gg.Graph().build_forward_expand(y).compute(2)
    np.testing.assert_array_equal(y.numpy().ravel(), [2.5, 0.5])


# ---- argmax ----

def ggml_argmax_loop(row) -> int:
    """ggml_vec_argmax_f32 transcribed literally: the oracle for argmax_scan."""
    m, idx = np.float32(-np.inf), 0
    for i, v in enumerate(np.asarray(row, np.float32)):
        m = m if m > v else v
        if m == v:
            idx = i
    return idx


special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0])


@given(n=st.integers(1, 40), seed=seeds(), n_special=st.integers(0, 6), special_vals=st.lists(special, min_size=6, max_size=6))
def test_argmax_reference_is_ggmls_loop(n, seed, n_special, special_vals):
    rng = np.random.default_rng(seed)
    row = rng.integers(-3, 4, n).astype(np.float32)          # small ints: many ties
    for v in special_vals[:n_special]:
        row[rng.integers(0, n)] = v
    assert argmax_scan(row) == ggml_argmax_loop(row), row


@given(ne0=st.integers(1, 70), ne1=st.integers(1, 9), layout=layouts(ROW_LAYOUTS),
       ties=st.booleans(), n_special=st.integers(0, 4), special_vals=st.lists(special, min_size=4, max_size=4),
       seed=seeds())
def test_argmax_matches_numpy(ne0, ne1, layout, ties, n_special, special_vals, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ne1, ne0)).astype(np.float32)
    if ties:
        x = np.round(x).astype(np.float32)                    # -3..3: ties everywhere
    for v in special_vals[:n_special]:
        x[rng.integers(0, ne1), rng.integers(0, ne0)] = v
    a = make_tensor(gg.Context(), gg.F32, [ne0, ne1], layout, values=x, rng=rng)
    y = gg.argmax(a)
    assert y.type is gg.I32 and y.ne == (ne1, 1, 1, 1)
    check_graph([y], what=f"argmax {layout}")                 # I32: exact


def test_argmax_ties_and_nans():
    x = np.array([
        [1, 5, 2, 5, 0, 0, 0, 0, 0, 5, 1],          # tie: the LAST index of the max, as ggml's CPU
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        [9, 1, 2, np.nan, 4, 3, 4, 1, 0, 0, 0],     # NaN restarts the scan: the last max after it
        [9, 1, 2, 3, 4, 5, 6, 7, 8, 1, np.nan],     # trailing NaN keeps the earlier answer
        [np.nan] * 11,                              # all NaN: 0
        [-np.inf] * 11,                             # all -inf: the last
    ], np.float32)
    a = gg.Context().from_numpy(x)
    y = gg.argmax(a).set_output()
    g = gg.Graph().build_forward_expand(y)
    for simd in (True, False):
        gg.set_use_simd(simd)
        try:
            g.compute(2)
        finally:
            gg.set_use_simd(True)
        np.testing.assert_array_equal(y.numpy(), [9, 10, 6, 0, 0, 10])


def test_argmax_long_rows():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 151936)).astype(np.float32)     # a Qwen2 vocabulary
    a = gg.Context().from_numpy(x)
    out = check_graph([gg.argmax(a)], threads=(1, 3))
    np.testing.assert_array_equal(out[0], x.argmax(axis=1))    # no ties here: numpy agrees


# ---- errors ----

def test_reduce_errors():
    ctx = gg.Context()
    f32 = ctx.new_tensor(gg.F32, [8, 4])
    with pytest.raises(gg.GGraphError, match=r"sum: a must be F32, F16, BF16, got I32"):
        gg.sum(ctx.new_tensor(gg.I32, [8]))
    with pytest.raises(gg.GGraphError, match=r"sum: rows of a must be packed"):
        gg.sum(gg.transpose(f32))
    for op in ("sum_rows", "mean", "argmax"):
        with pytest.raises(gg.GGraphError, match=rf"{op}: a must be F32, got F16"):
            getattr(gg, op)(ctx.new_tensor(gg.F16, [8, 4]))
        with pytest.raises(gg.GGraphError, match=rf"{op}: rows of a must be packed"):
            getattr(gg, op)(gg.transpose(f32))
        with pytest.raises(gg.GGraphError, match=rf"{op}: argument a must be a ggraph Tensor"):
            getattr(gg, op)(np.zeros(4))
    with pytest.raises(gg.GGraphError, match=r"argmax: a must be a matrix \(ne2 == ne3 == 1\)"):
        gg.argmax(ctx.new_tensor(gg.F32, [8, 4, 2]))
    with pytest.raises(gg.GGraphError, match=r"argmax: a must be a matrix"):
        gg.argmax(ctx.new_tensor(gg.F32, [8, 4, 1, 3]))
