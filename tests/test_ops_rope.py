"""rope and rope_ext against numpy, hand-computed values and rotation identities."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.testing import ROW_LAYOUTS, check_graph, make_tensor, seeds

SIMD_MODES = (True, False) if gg.simd_available() else (False,)
NORMAL, NEOX = gg.ROPE_TYPE_NORMAL, gg.ROPE_TYPE_NEOX


def rope_tolerance(type, x_max: float, mscale: float):
    """(rtol, atol) for a rope result.

    The kernel's cos and sin are computed in double and rounded once to f32,
    so they carry no position-dependent error (large positions need no extra
    slack). Each output is mscale*(x0*c -+ x1*s) in f32: at most a few
    roundings of terms bounded by mscale*max|x|, so F32 results are within
    8 * 2^-24 * mscale * max|x| of the float64 reference (which is itself
    rounded to f32 when stored). F16 results are rounded to half precision on
    both sides and may land one half-precision ulp apart (2^-10 relative,
    2^-24 absolute at the subnormal end).
    """
    atol = 8 * 2.0**-24 * mscale * max(x_max, 1e-30)
    if type is gg.F16:
        return 2.0**-10, atol + 2.0**-24
    return 0.0, atol


@st.composite
def rope_args(draw):
    half = draw(st.integers(1, 24))
    head_dim = 2 * half
    n_dims = draw(st.one_of(st.just(head_dim), st.integers(1, half).map(lambda h: 2 * h)))
    ne = [head_dim, draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 2))]
    yarn = draw(st.booleans())
    params = dict(
        mode=draw(st.sampled_from([NORMAL, NEOX])),
        n_ctx_orig=draw(st.sampled_from([0, 2048, 4096, 8192])),
        freq_base=draw(st.sampled_from([10000.0, 500000.0, 1e6, 1234.5])),
        freq_scale=draw(st.sampled_from([1.0, 0.5, 0.25, 0.125])) if yarn else 1.0,
        ext_factor=draw(st.sampled_from([0.0, 1.0, 0.5])) if yarn else 0.0,
        attn_factor=draw(st.sampled_from([1.0, 0.5, 1.25])),
        beta_fast=draw(st.sampled_from([32.0, 16.0])),
        beta_slow=draw(st.sampled_from([1.0, 2.0])),
    )
    return ne, n_dims, params


@given(args=rope_args(), type=st.sampled_from([gg.F32, gg.F16]), layout=st.sampled_from(ROW_LAYOUTS),
       pos_max=st.sampled_from([8, 4096, 32768]), freq_factors=st.booleans(), seed=seeds())
def test_rope_ext_matches_numpy(args, type, layout, pos_max, freq_factors, seed):
    ne, n_dims, prm = args
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, rng=rng)
    pos = rng.integers(-pos_max, pos_max + 1, ne[2]).astype(np.int32)    # negative: KV-cache shifts
    pos[rng.integers(0, ne[2])] = pos_max
    b = ctx.from_numpy(pos)
    c = None
    if freq_factors:
        c = ctx.from_numpy(rng.uniform(1.0, 8.0, n_dims // 2 + int(rng.integers(0, 3))).astype(np.float32))
    y = gg.rope_ext(a, b, c, n_dims, **prm)
    mscale = prm["attn_factor"] * (1 + 0.1 * math.log(1 / prm["freq_scale"]) if prm["ext_factor"] else 1.0)
    rtol, atol = rope_tolerance(type, float(np.abs(a.numpy()).max()), mscale)
    check_graph([y], rtol=rtol, atol=atol, simd=SIMD_MODES,
                what=f"rope_ext {type} {layout} n_dims={n_dims} pos<={pos_max} ff={freq_factors} {prm}")


def test_rope_large_positions_are_exact_to_f32_rounding():
    rng = np.random.default_rng(5)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, [128, 2, 6], rng=rng)
    b = ctx.from_numpy(np.array([32767, 32768, 100000, 1 << 24, -5000, 2**31 - 1], np.int32))
    for mode in (NORMAL, NEOX):
        y = gg.rope_ext(a, b, None, 128, mode, 4096, 1e6, 0.25, 1.0, 1.0, 32.0, 1.0)
        mscale = 1 + 0.1 * math.log(4)
        check_graph([y], rtol=0.0, atol=8 * 2.0**-24 * mscale * float(np.abs(a.numpy()).max()), simd=SIMD_MODES)


@pytest.mark.parametrize("type", [gg.F32, gg.F16])
def test_rope_neox_and_normal_hand_computed(type):
    # head_dim 6, n_dims 4, position 1, freq_base 10000: pair 0 turns by 1 rad,
    # pair 1 by 10000^(-2/4) = 0.01 rad; dims 4 and 5 are copied
    ctx = gg.Context()
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], np.float32)
    a = ctx.from_numpy(x.reshape(1, 1, 6), type=type)
    b = ctx.from_numpy(np.array([1], np.int32))
    c1, s1, c2, s2 = math.cos(1.0), math.sin(1.0), math.cos(0.01), math.sin(0.01)
    # normal: pairs (x0, x1) and (x2, x3)
    want_normal = [1 * c1 - 2 * s1, 1 * s1 + 2 * c1, 3 * c2 - 4 * s2, 3 * s2 + 4 * c2, 5.0, 6.0]
    # NEOX: pairs (x0, x2) and (x1, x3)
    want_neox = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 1 * s1 + 3 * c1, 2 * s2 + 4 * c2, 5.0, 6.0]
    tol = 2e-3 if type is gg.F16 else 1e-6
    for mode, want in ((NORMAL, want_normal), (NEOX, want_neox)):
        y = gg.rope(a, b, 4, mode)
        check_graph([y], rtol=tol, atol=tol, simd=SIMD_MODES)
        np.testing.assert_allclose(y.numpy().reshape(6), want, rtol=tol, atol=tol)
        np.testing.assert_array_equal(y.numpy().reshape(6)[4:], [5.0, 6.0])


@pytest.mark.parametrize("type", [gg.F32, gg.F16])
@pytest.mark.parametrize("mode", [NORMAL, NEOX])
def test_rope_at_position_zero_is_identity(type, mode):
    rng = np.random.default_rng(11)
    ctx = gg.Context()
    a = make_tensor(ctx, type, [40, 3, 4], "gapped", rng=rng)
    b = ctx.from_numpy(np.zeros(4, np.int32))
    c = ctx.from_numpy(rng.uniform(1, 4, 16).astype(np.float32))
    for y in (gg.rope(a, b, 40, mode), gg.rope_ext(a, b, c, 32, mode, 4096, 500000.0, 1.0, 0.0, 1.0)):
        check_graph([y], rtol=0, atol=0, simd=SIMD_MODES)
        np.testing.assert_array_equal(y.numpy(), a.numpy())


@pytest.mark.parametrize("mode", [NORMAL, NEOX])
def test_rope_composes_like_rotations(mode):
    # rope by p1 then by p2 is rope by p1 + p2 (no YaRN magnitude scaling);
    # the second rope runs in place over the first
    rng = np.random.default_rng(2)
    ctx = gg.Context()
    a = make_tensor(ctx, gg.F32, [64, 4, 5], rng=rng)
    p1 = rng.integers(-3000, 3000, 5).astype(np.int32)
    p2 = rng.integers(-3000, 3000, 5).astype(np.int32)
    b1, b2, b12 = ctx.from_numpy(p1), ctx.from_numpy(p2), ctx.from_numpy(p1 + p2)
    kw = dict(n_ctx_orig=4096, freq_base=10000.0, freq_scale=0.5)
    twice = gg.rope_ext(gg.rope_ext(a, b1, None, 48, mode, **kw), b2, None, 48, mode, **kw)
    once = gg.rope_ext(a, b12, None, 48, mode, **kw)
    g = gg.Graph().build_forward_expand(twice).build_forward_expand(once)
    assert f"{twice.name}: in place over {twice.src[0].name}" in g.alloc_log
    once.set_output()
    twice.set_output()
    for simd in SIMD_MODES:
        gg.set_use_simd(simd)
        try:
            g.compute(3)
        finally:
            gg.set_use_simd(True)
        # two f32 rotations vs one: twice the single-rope bound
        np.testing.assert_allclose(twice.numpy(), once.numpy(), rtol=0,
                                   atol=16 * 2.0**-24 * float(np.abs(a.numpy()).max()))


@pytest.mark.parametrize("type", [gg.F32, gg.F16])
def test_rope_on_views_of_a_fused_qkv_tensor(type):
    # llama.cpp's fused QKV: each token's row holds q, k, v heads back to back
    rng = np.random.default_rng(4)
    ctx = gg.Context()
    head_dim, n_head, n_tokens = 32, 3, 5
    qkv = make_tensor(ctx, type, [3 * n_head * head_dim, n_tokens], rng=rng)
    ts = type.type_size
    q = gg.view_3d(qkv, head_dim, n_head, n_tokens, head_dim * ts, qkv.nb[1], 0)
    k = gg.view_3d(qkv, head_dim, n_head, n_tokens, head_dim * ts, qkv.nb[1], n_head * head_dim * ts)
    b = ctx.from_numpy(np.array([0, 5, 17, 1000, 30000], np.int32))
    outs = [gg.rope_ext(q, b, None, head_dim, NEOX, 32768, 1e6, 1.0, 0.0, 1.0, 32.0, 1.0),
            gg.rope_ext(k, b, None, 16, NORMAL, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0)]
    rtol, atol = rope_tolerance(type, float(np.abs(qkv.numpy()).max()), 1.0)
    check_graph(outs, rtol=rtol, atol=atol, simd=SIMD_MODES)


def test_rope_yarn_angles_follow_the_ramp():
    # unit vectors (1, 0) in every NEOX pair come out as mscale*(cos, sin) of the
    # pair's angle. n_ctx_orig 4096, base 10000, beta 32/1, n_dims 64 put the
    # ramp bounds at floor(10.47) = 10 and ceil(22.5) = 23: pairs <= 10 keep the
    # extrapolated angle, pairs >= 23 take freq_scale times it, pairs between
    # mix linearly; the magnitude is 1 + 0.1*ln(1/freq_scale).
    ctx = gg.Context()
    x = np.zeros(64, np.float32)
    x[:32] = 1.0
    a = ctx.from_numpy(x.reshape(1, 1, 64))
    b = ctx.from_numpy(np.array([3], np.int32))
    y = gg.rope_ext(a, b, None, 64, NEOX, 4096, 10000.0, 0.25, 1.0, 1.0, 32.0, 1.0)
    check_graph([y], rtol=0, atol=1e-6, simd=SIMD_MODES)
    out = y.numpy().reshape(64).astype(np.float64)
    k = np.arange(32)
    extrap = 3 * 10000.0 ** (-2 * k / 64)
    ramp = np.clip(1 - (k - 10) / 13, 0, 1)
    want_theta = 0.25 * extrap * (1 - ramp) + extrap * ramp
    np.testing.assert_allclose(np.hypot(out[:32], out[32:]), 1 + 0.1 * math.log(4), rtol=1e-6)
    np.testing.assert_allclose(np.arctan2(out[32:], out[:32]), want_theta, rtol=1e-5, atol=1e-6)
    assert want_theta[10] == extrap[10] and want_theta[23] == 0.25 * extrap[23]


def test_rope_defaults_are_ggml_rope():
    ctx = gg.Context()
    a, b = ctx.new_tensor(gg.F16, [8, 2, 3]), ctx.new_tensor(gg.I32, [3])
    assert gg.rope(a, b, 8, NEOX).params == dict(n_dims=8, mode=2, n_ctx_orig=0, freq_base=10000.0, freq_scale=1.0,
                                                 ext_factor=0.0, attn_factor=1.0, beta_fast=0.0, beta_slow=0.0)
    y = gg.rope_ext(a, b, n_dims=4)
    assert y.type is gg.F16 and y.ne == a.ne and y.is_contiguous()
    assert (y.params["mode"], y.params["beta_fast"], y.params["beta_slow"]) == (NORMAL, 32.0, 1.0)
    assert (gg.ROPE_TYPE_NORMAL, gg.ROPE_TYPE_NEOX) == (0, 2)


def test_rope_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 2, 3])
    b = ctx.new_tensor(gg.I32, [3])
    cases = [
        (lambda: gg.rope(ctx.new_tensor(gg.BF16, [8, 2, 3]), b, 8), "rope_ext: a must be F32, F16, got BF16"),
        (lambda: gg.rope(a, ctx.new_tensor(gg.F32, [3]), 8), "rope_ext: b must be I32"),
        (lambda: gg.rope(a, ctx.new_tensor(gg.I32, [3, 2]), 8), "rope_ext: b .positions. must be a vector"),
        (lambda: gg.rope(a, ctx.new_tensor(gg.I32, [4]), 8), r"b.ne\[0\] == a.ne\[2\]"),
        (lambda: gg.rope(gg.transpose(ctx.new_tensor(gg.F32, [2, 8, 3])), b, 2), "unit element stride"),
        (lambda: gg.rope(a, b, 7), "n_dims must be even"),
        (lambda: gg.rope(a, b, 0), "n_dims must be even and in 1..a.ne"),
        (lambda: gg.rope(a, b, 10), "n_dims must be even and in 1..a.ne"),
        (lambda: gg.rope_ext(a, b), "rope_ext: n_dims is required"),
        (lambda: gg.rope(a, b, 8, 1), r"mode & 1 is no longer supported"),
        (lambda: gg.rope(a, b, 8, 8), "multi-section .mrope/imrope. and vision modes are not supported"),
        (lambda: gg.rope(a, b, 8, 24), "vision modes are not supported"),
        (lambda: gg.rope(a, b, 8, 40), "vision modes are not supported"),
        (lambda: gg.rope(a, b, 8, 4), "mode must be ROPE_TYPE_NORMAL .0. or ROPE_TYPE_NEOX .2., got 4"),
        (lambda: gg.rope_ext(a, b, ctx.new_tensor(gg.F16, [4]), 8), "rope_ext: c must be F32"),
        (lambda: gg.rope_ext(a, b, ctx.new_tensor(gg.F32, [3]), 8), r"c.ne\[0\] >= n_dims/2 = 4"),
        (lambda: gg.rope_ext(a, b, None, 8, 0, -1), "n_ctx_orig must be >= 0"),
        (lambda: gg.rope_ext(a, b, None, 8, 0, 0, 0.0), "freq_base must be > 0"),
        (lambda: gg.rope_ext(a, b, None, 8, 0, 0, 1e4, -1.0), "freq_scale must be > 0"),
        (lambda: gg.rope_ext(a, b, None, 8, 0, 0, 1e4, 1.0, float("inf")), "ext_factor must be finite"),
        (lambda: gg.rope_ext(a, b, None, 8, 0, 0, 1e4, 1.0, 0.0, 1e40), "attn_factor must be finite"),
        (lambda: gg.rope_ext(a, b, None, 8.5), "n_dims must be an integer"),
        (lambda: gg.rope_ext(a, [0, 1, 2], None, 8), "argument b must be a ggraph Tensor"),
    ]
    for make, msg in cases:
        with pytest.raises(gg.GGraphError, match=msg):
            make()
