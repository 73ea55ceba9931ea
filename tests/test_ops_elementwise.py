"""Binary ops with broadcasting, add1, scale, clamp, unary maps and swiglu against numpy,
over shapes, types, layouts and threads (SIMD and scalar paths)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.testing import check_graph, check_op, layouts, make_tensor, seeds, shapes, tensors

# Tolerances by result type, for ops whose f32 result is within a few ulps of the exact
# value: the result is rounded once to the type, and the float64 reference rounds the
# exact value (through f32) to the type, so the two may differ by one ulp of the type.
ULP1 = {gg.F32: 2.0**-23, gg.F16: 2.0**-10, gg.BF16: 2.0**-7}


def tol(type, f32_rtol):
    """rtol: the op's own f32 error, or one ulp of a narrower result type (x2 for the
    binade edge); atol: room for results that round to (sub)normal zero-ish values."""
    if type is gg.F32:
        return dict(rtol=f32_rtol, atol=1e-30)
    return dict(rtol=2 * ULP1[type], atol={gg.F16: 1e-7, gg.BF16: 1e-30}[type])


@st.composite
def broadcast_shapes(draw):
    """(a.ne, b.ne) with each b.ne[i] a divisor of a.ne[i] (ggml_can_repeat)."""
    ne = draw(shapes())
    bne = [draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0])) for n in ne]
    return ne, bne


# ---- binary ----

# f32: add/sub/mul/div of f32 values are correctly rounded, as is the float64 reference
# rounded to f32; 1e-6 leaves room only for the rare double rounding of float64 sums
@given(shp=broadcast_shapes(), ta=st.sampled_from([gg.F32, gg.F16, gg.BF16]), b_f32=st.booleans(),
       la=layouts(), lb=layouts(), seed=seeds())
def test_binary_ops_broadcast(shp, ta, b_f32, la, lb, seed):
    ne, bne = shp
    tb = gg.F32 if b_f32 else ta
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, ta, ne, la, rng=rng)
    b = make_tensor(ctx, tb, bne, lb, rng=rng)
    outs = [gg.add(a, b), gg.sub(a, b), gg.mul(a, b), gg.div(a, b)]
    for o in outs:
        assert o.type is ta and o.ne == a.ne and o.is_contiguous()
    check_graph(outs, **tol(ta, 1e-6), what=f"binary {ta}/{tb} {la}/{lb} {ne}/{bne}")


@pytest.mark.parametrize("a_ne,b_ne", [
    ([8, 4, 3], [8, 1, 3]),          # broadcast over rows
    ([8, 5, 2], [8]),                # a row vector times every row
    ([8, 5, 2], [4, 1, 2]),          # b repeated twice along each row
    ([8, 5, 2, 3], [1, 5, 1, 3]),    # one value per row
    ([33, 3], [1]),                  # a single value
    ([33, 3], [33, 3]),              # same shape
])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_broadcast_cases_equal_numpy_f32(a_ne, b_ne, op):
    rng = np.random.default_rng(0)
    ctx = gg.Context()
    x = rng.standard_normal(a_ne[::-1]).astype(np.float32)
    y = rng.uniform(0.5, 2.0, b_ne[::-1]).astype(np.float32)
    out = getattr(gg, op)(ctx.from_numpy(x), ctx.from_numpy(y))
    want = getattr(np, {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}[op])(
        x, np.tile(y.reshape((1,) * (x.ndim - y.ndim) + y.shape),
                   [s // t for s, t in zip(x.shape, (1,) * (x.ndim - y.ndim) + y.shape)]))
    # f32 arithmetic on both sides: bit-exact
    got = check_graph([out], rtol=0, atol=0)[0]
    np.testing.assert_array_equal(got, want)


def test_binary_in_place_over_a_dead_intermediate():
    ctx = gg.Context()
    x = ctx.from_numpy(np.arange(1, 25, dtype=np.float32).reshape(3, 8))
    w = ctx.from_numpy(np.full(8, 0.5, np.float32))
    t = gg.mul(x, x)
    y = gg.silu(gg.add(t, w))
    g = gg.Graph().build_forward_expand(y)
    log = g.alloc_log
    assert any(line.startswith(f"{n.name}: in place over") for n in g.nodes if n.op == "add" for line in log), log
    assert any(line.startswith(f"{n.name}: in place over") for n in g.nodes if n.op == "silu" for line in log), log
    g.compute(n_threads=2)
    v = np.arange(1, 25, dtype=np.float64).reshape(3, 8) ** 2 + 0.5
    np.testing.assert_allclose(y.numpy(), v / (1 + np.exp(-v)), rtol=3e-7)


# ---- add1, scale, clamp ----

@given(ne=shapes(), ta=st.sampled_from([gg.F32, gg.F16, gg.BF16]), b_f32=st.booleans(), la=layouts(),
       seed=seeds())
def test_add1(ne, ta, b_f32, la, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, ta, ne, la, rng=rng)
    b = make_tensor(ctx, gg.F32 if b_f32 else ta, [1], rng=rng)
    check_graph([gg.add1(a, b)], **tol(ta, 1e-6), what=f"add1 {ta} {la}")


# a*s + b in f32 (FMA or not) vs float64: one or two roundings, relative to |a*s| when
# the sum cancels: |a| < ~6, |s| <= 4, so an absolute 1e-5 covers it
@given(ne=shapes(max_side=20), la=layouts(), s=st.floats(-4, 4), b=st.sampled_from([0.0, 1.5, -0.25]),
       seed=seeds())
def test_scale_and_scale_bias(ne, la, s, b, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, ne, la, rng=rng)
    outs = [gg.scale(a, s), gg.scale_bias(a, s, b)]
    assert outs[0].params == {"s": s, "b": 0.0}
    check_graph(outs, rtol=1e-6, atol=1e-5, what=f"scale {la} s={s} b={b}")


# clamp only selects values: exact, edge values included (the bounds are f32 params, then rounded to t)
@pytest.mark.parametrize("t", [gg.F32, gg.F16])
def test_clamp(t):
    check_op(lambda ctx, a, lo, width: gg.clamp(a, lo, lo + width),
             lambda a, lo, width: np.clip(a, *(a.dtype.type(np.float32(v)) for v in (lo, lo + width))),
             strategies=[tensors(type=t, max_side=20), st.floats(-2, 0), st.floats(0, 3)], rtol=0, atol=0,
             what=f"clamp {t}")


def test_clamp_and_relu_nan_follow_ggml():
    """ggml's MAX(MIN(x, max), min) sends NaN to max; relu (x > 0 ? x : 0) sends it to 0."""
    x = np.array([np.nan, -np.inf, np.inf, 0.3, -3.0, 2.0, -0.0, np.nan, 5, 6, 7, 8], np.float32)
    ctx = gg.Context()
    a = ctx.from_numpy(x)
    c, r = gg.clamp(a, -1.0, 1.0), gg.relu(a)
    got_c, got_r = check_graph([c, r], rtol=0, atol=0)
    np.testing.assert_array_equal(got_c, np.float32([1, -1, 1, 0.3, -1, 1, 0, 1, 1, 1, 1, 1]))
    np.testing.assert_array_equal(got_r, np.float32([0, 0, np.inf, 0.3, 0, 2, 0, 0, 5, 6, 7, 8]))
    np.testing.assert_array_equal(c.numpy(), got_c)


# ---- unary ----

# f32 tolerances: exact or correctly rounded ops (sqr, sqrt, neg, abs, relu) are within half
# an ulp; libm's logf/sinf/cosf/tanhf within ~1 ulp; exp within 1 ulp (measured 0.9 on the
# AVX2 path, test_exp_family_accuracy); sigmoid and silu add a rounded 1 + e and a division
# (measured 2.4 ulp); gelu's f32 argument u carries a few ulps that e^(-2u) amplifies by
# |2u| (measured 1.2e-5 relative at x ~ -10, 5e-6 for x > -5)
UNARY_GROUPS = {
    "exact": (["sqr", "sqrt", "neg", "abs", "relu"], 2.0**-23),
    "libm": (["log", "sin", "cos", "tanh"], 3e-7),
    "exp": (["exp", "sigmoid", "silu"], 5e-7),
    "gelu": (["gelu"], 2e-5),
}


@pytest.mark.parametrize("group", sorted(UNARY_GROUPS))
@given(ne=shapes(max_side=20), t=st.sampled_from([gg.F32, gg.F16, gg.BF16]), la=layouts(),
       spread=st.sampled_from([1.0, 4.0]), seed=seeds())
def test_unary(group, ne, t, la, spread, seed):
    names, f32_rtol = UNARY_GROUPS[group]
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    values = (rng.standard_normal(ne[::-1]) * spread).astype(np.float32)    # negatives: log/sqrt give NaN
    a = make_tensor(ctx, t, ne, la, values=values, rng=rng)
    outs = [getattr(gg, n)(a) for n in names]
    for o in outs:
        assert o.type is t and o.ne == a.ne and o.is_contiguous()
    check_graph(outs, **tol(t, f32_rtol), what=f"{group} {t} {la}")


def test_exp_family_accuracy():
    """Sweeps the whole f32 range of exp, sigmoid and silu on both paths, in ulps."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-104, 89, 200_000), rng.uniform(-2, 2, 50_000),
                        [np.nan, np.inf, -np.inf, 88.7228, 88.73, -87.3, -103.9, -104.5, 0.0, -0.0]])
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    ctx = gg.Context()
    a = ctx.from_numpy(x)
    with np.errstate(all="ignore"):
        refs = {"exp": np.exp(x64), "sigmoid": 1 / (1 + np.exp(-x64)), "silu": x64 / (1 + np.exp(-x64))}
    outs = {k: getattr(gg, k)(a).set_output() for k in refs}
    g = gg.Graph()
    for o in outs.values():
        g.build_forward_expand(o)
    max_ulp = {"exp": 1.0, "sigmoid": 2.5, "silu": 2.5}
    was = gg.get_use_simd()
    try:
        for simd in (True, False):
            gg.set_use_simd(simd)
            g.compute(n_threads=2)
            for k, want in refs.items():
                got = outs[k].numpy().astype(np.float64)
                with np.errstate(over="ignore"):
                    want32 = want.astype(np.float32)
                assert np.array_equal(np.isnan(got), np.isnan(want32)), k
                assert np.array_equal(got[np.isinf(want32)], want32[np.isinf(want32)]), k
                # results in ulps down to 1e-36; below, an absolute bound: sigmoid and silu of
                # x < -88.7 flush to 0 once e^-x overflows, as ggml's x/(1 + expf(-x)) does
                normal = np.isfinite(want32) & (np.abs(want) >= 1e-36)
                ulps = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want32[normal])).astype(np.float64)
                assert ulps.max() <= max_ulp[k], f"{k} simd={simd}: {ulps.max():.2f} ulp"
                tiny = np.isfinite(want32) & ~normal
                assert np.abs(got[tiny] - want[tiny]).max() <= 1e-36, k
    finally:
        gg.set_use_simd(was)


# ---- swiglu ----

@given(ne=shapes(max_side=12), t=st.sampled_from([gg.F32, gg.F16]), la=layouts(), lb=layouts(),
       seed=seeds())
def test_swiglu_variants(ne, t, la, lb, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    wide = [max(2, ne[0] * 2 - int(rng.integers(0, 2)))] + ne[1:]            # odd widths too
    a2 = make_tensor(ctx, t, wide, la, rng=rng)
    a = make_tensor(ctx, t, ne, la, rng=rng)
    b = make_tensor(ctx, t, ne, lb, rng=rng)
    outs = [gg.swiglu(a2), gg.swiglu_swapped(a2), gg.swiglu_split(a, b)]
    assert outs[0].ne == (wide[0] // 2, *wide[1:]) and outs[2].ne == a.ne
    # silu's 2.5 ulp (see UNARY_GROUPS) and one more rounding for the product
    check_graph(outs, **tol(t, 6e-7), what=f"swiglu {t} {la}/{lb} {wide}")


def test_swiglu_halves_explicitly():
    ctx = gg.Context()
    row = np.array([[1.0, -2.0, 3.0, 10.0, 20.0, 30.0, 99.0]], np.float32)     # odd: last is ignored
    a = ctx.from_numpy(row)
    s, w = gg.swiglu(a), gg.swiglu_swapped(a)
    check_graph([s, w], rtol=1e-6, atol=0)

    def silu(v):
        return v / (1 + np.exp(-v))
    np.testing.assert_allclose(s.numpy(), (silu(row[:, :3]) * row[:, 3:6])[0], rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), (silu(row[:, 3:6]) * row[:, :3])[0], rtol=1e-6)


# ---- errors ----

def test_elementwise_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 4])
    with pytest.raises(gg.GGraphError, match=r"add: b must broadcast over a .*F32 ne=\[8, 4, 1, 1\], F32 ne=\[3, 4, 1, 1\]"):
        gg.add(a, ctx.new_tensor(gg.F32, [3, 4]))
    with pytest.raises(gg.GGraphError, match="mul: b must broadcast over a"):
        gg.mul(ctx.new_tensor(gg.F32, [8]), a)
    with pytest.raises(gg.GGraphError, match=r"sub: b must be F32 \(got F32"):
        gg.sub(a, ctx.new_tensor(gg.F16, [8, 4]))
    with pytest.raises(gg.GGraphError, match="div: a must be F32, F16, BF16, got I32"):
        gg.div(ctx.new_tensor(gg.I32, [8]), ctx.new_tensor(gg.F32, [8]))
    with pytest.raises(gg.GGraphError, match="add: argument b must be a ggraph Tensor"):
        gg.add(a, 1.0)
    with pytest.raises(gg.GGraphError, match="add1: b must hold a single value"):
        gg.add1(a, ctx.new_tensor(gg.F32, [2]))
    with pytest.raises(gg.GGraphError, match="scale: a must be F32, got F16"):
        gg.scale(ctx.new_tensor(gg.F16, [8]), 2.0)
    with pytest.raises(gg.GGraphError, match="scale_bias: b must be a number"):
        gg.scale_bias(a, 2.0, "x")
    with pytest.raises(gg.GGraphError, match="clamp: a must be F32, F16, got BF16"):
        gg.clamp(ctx.new_tensor(gg.BF16, [8]), 0.0, 1.0)
    with pytest.raises(gg.GGraphError, match="silu: a must be F32, F16, BF16, got I32"):
        gg.silu(ctx.new_tensor(gg.I32, [8]))
    with pytest.raises(gg.GGraphError, match="exp: argument a must be a ggraph Tensor"):
        gg.exp(np.ones(3))
    with pytest.raises(gg.GGraphError, match=r"swiglu: a.ne\[0\] must be at least 2"):
        gg.swiglu(ctx.new_tensor(gg.F32, [1, 4]))
    with pytest.raises(gg.GGraphError, match="swiglu_split: a and b must have the same shape"):
        gg.swiglu_split(a, ctx.new_tensor(gg.F32, [8, 2]))
    with pytest.raises(gg.GGraphError, match="swiglu_split: a and b must have the same type"):
        gg.swiglu_split(a, ctx.new_tensor(gg.F16, [8, 4]))
    with pytest.raises(gg.GGraphError, match="swiglu_swapped: a must be F32, F16, got BF16"):
        gg.swiglu_swapped(ctx.new_tensor(gg.BF16, [8]))
