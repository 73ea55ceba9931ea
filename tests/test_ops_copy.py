"""dup, cpy, cont and cont_Nd against numpy, over types, shapes, layouts and threads."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.ops.copy import COPY_TYPES, CPY_PAIRS, f32_to_i32
from ggraph.tensor import bf16_to_f32, f32_to_bf16
from ggraph.testing import check_graph, layouts, make_tensor, seeds, shapes

THREADS = (1, 2, 3, 4)


def _values(type, shape, rng):
    """Values that survive the conversions under test with some spread (I32: also negatives)."""
    if type is gg.I32:
        return rng.integers(-1000, 1000, size=shape).astype(np.int32)
    return (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(np.float32)


def _regroup(ne, rng):
    """Another shape with the same element count: a's sizes shuffled and multiplied in groups."""
    factors = [int(x) for x in rng.permutation(ne)]
    cuts = sorted(rng.choice(range(1, 4), size=int(rng.integers(0, 4)), replace=False).tolist())
    groups = np.split(np.array(factors), cuts)
    return [int(np.prod(g)) for g in groups if len(g)]


def _raw_bytes(t):
    base = t.base()
    return np.array(base._buf[base._offs: base._offs + base.nbytes()], copy=True)


def check_cpy(out, dst_base, what=""):
    """Runs out = cpy(a, b) with the numpy reference and with C (threads x simd/scalar),
    each time over a destination pre-filled with sentinel bytes, and compares every byte
    of b's base tensor: the copied slot and everything around it."""
    g = gg.Graph().build_forward_expand(out)
    buf = dst_base._buf[dst_base._offs: dst_base._offs + dst_base.nbytes()]
    sentinel = np.frombuffer(np.random.default_rng(7).bytes(buf.size), dtype=np.uint8)
    buf[...] = sentinel
    g.compute(backend="reference")
    expected = np.array(buf, copy=True)
    was = gg.get_use_simd()
    try:
        for simd in (True, False):
            gg.set_use_simd(simd)
            for n in THREADS:
                buf[...] = sentinel
                g.compute(n_threads=n)
                if not np.array_equal(buf, expected):
                    bad = np.flatnonzero(buf != expected)
                    raise AssertionError(f"{what}: n_threads={n} simd={simd}: {bad.size} bytes differ, "
                                         f"first at byte {bad[0]} of {buf.size}")
    finally:
        gg.set_use_simd(was)


# copies are exact: no tolerance
@pytest.mark.parametrize("op", ["dup", "cont"])
@given(ne=shapes(), layout=layouts(), type=st.sampled_from(COPY_TYPES), seed=seeds())
def test_dup_cont_match_numpy(op, ne, layout, type, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, values=_values(type, ne[::-1], rng), rng=rng)
    out = getattr(gg, op)(a)
    assert out.is_contiguous() and out.type is type and out.ne == a.ne
    check_graph([out], rtol=0, atol=0, what=f"{op} {type} {layout}")
    np.testing.assert_array_equal(out.numpy(), a.numpy())


@given(ne=shapes(), layout=layouts(), type=st.sampled_from(COPY_TYPES), seed=seeds())
def test_cont_nd_reshapes_in_row_major_order(ne, layout, type, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, values=_values(type, ne[::-1], rng), rng=rng)
    new_ne = _regroup(ne, rng)
    out = getattr(gg, f"cont_{len(new_ne)}d")(a, *new_ne)
    assert out.is_contiguous() and out.type is type
    check_graph([out], rtol=0, atol=0, what=f"cont_{len(new_ne)}d {type} {layout} -> {new_ne}")
    np.testing.assert_array_equal(out.numpy().reshape(-1), a.numpy().reshape(-1))


# conversions are deterministic (round to nearest even, truncation): C and numpy agree bit for bit
@given(ne=shapes(), pair=st.sampled_from(sorted(CPY_PAIRS, key=str)), la=layouts(), lb=layouts(),
       reshape=st.booleans(), seed=seeds())
def test_cpy_types_and_layouts(ne, pair, la, lb, reshape, seed):
    src_t, dst_t = pair
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, src_t, ne, la, values=_values(src_t, ne[::-1], rng), rng=rng)
    b_ne = _regroup(ne, rng) if reshape else ne
    b = make_tensor(ctx, dst_t, b_ne, lb, rng=rng)
    out = gg.cpy(a, b)
    assert out.type is dst_t and out.ne == b.ne and out.nb == b.nb and out.base() is b.base()
    check_cpy(out, b.base(), what=f"cpy {src_t}->{dst_t} {la}->{lb} {ne}->{b_ne}")


def test_cpy_into_kv_cache_slot_writes_only_the_slot():
    """K of 2 new tokens (all heads) into positions 4..5 of an F16 cache [head_dim, n_ctx, n_head]."""
    rng = np.random.default_rng(0)
    ctx = gg.Context()
    head_dim, n_ctx, n_head, n_tok, pos = 8, 10, 3, 2, 4
    cache = ctx.new_tensor(gg.F16, [head_dim, n_ctx, n_head])
    k_cur = ctx.new_tensor(gg.F32, [head_dim, n_tok, n_head])
    slot = gg.view_3d(cache, head_dim, n_tok, n_head, cache.nb[1], cache.nb[2], pos * cache.nb[1])
    out = gg.cpy(k_cur, slot)
    g = gg.Graph().build_forward_expand(out)
    was = gg.get_use_simd()
    try:
        for simd in (True, False):
            gg.set_use_simd(simd)
            for n in THREADS:
                before = rng.standard_normal((n_head, n_ctx, head_dim)).astype(np.float16)
                cache.set(before)
                k = rng.standard_normal((n_head, n_tok, head_dim)).astype(np.float32)
                k_cur.set(k)
                g.compute(n_threads=n)
                after = cache.numpy()
                expected = before.copy()
                expected[:, pos:pos + n_tok, :] = k.astype(np.float16)
                np.testing.assert_array_equal(after, expected, err_msg=f"n_threads={n} simd={simd}")
    finally:
        gg.set_use_simd(was)
    check_cpy(out, cache, what="kv slot")


def test_cpy_transposed_v_into_strided_cache_view():
    """llama.cpp's V cache layout: V^T stored per channel, new tokens written at column kv_head."""
    rng = np.random.default_rng(1)
    ctx = gg.Context()
    n_embd, n_ctx, n_tok, kv_head = 12, 16, 3, 5
    v_cache = ctx.new_tensor(gg.F16, [n_ctx, n_embd])                 # row i: channel i over positions
    v_cur = ctx.from_numpy(rng.standard_normal((n_tok, n_embd)).astype(np.float32))  # ne [n_embd, n_tok]
    before = rng.standard_normal((n_embd, n_ctx)).astype(np.float16)
    v_cache.set(before)
    view = gg.view_2d(v_cache, n_tok, n_embd, v_cache.nb[1], kv_head * v_cache.nb[0])
    out = gg.cpy(gg.transpose(v_cur), view)
    gg.Graph().build_forward_expand(out).compute(n_threads=3)
    expected = before.copy()
    expected[:, kv_head:kv_head + n_tok] = v_cur.numpy().T.astype(np.float16)
    np.testing.assert_array_equal(v_cache.numpy(), expected)
    check_cpy(out, v_cache, what="v cache")


def _special_f32():
    rng = np.random.default_rng(3)
    tiny = np.float32(2.0 ** -24)                                      # smallest f16 subnormal
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 70000.0, -1e30,
                         6.1e-5, 6.0e-5, 3e-8, 2.9e-8, 5.96e-8, 1e-45, -1e-45, 1.0 + 2.0 ** -11,
                         1.0 + 3 * 2.0 ** -11, 2049.0, 2051.0, -2049.0], dtype=np.float32)
    ties = (np.arange(-40, 40, dtype=np.float32) + 0.5) * tiny         # exact halfway subnormals
    spread = (rng.standard_normal(3000) * 10.0 ** rng.uniform(-9, 5, 3000)).astype(np.float32)
    bits = rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32).view(np.float32)   # any pattern
    return np.concatenate([specials, ties, spread, bits]).astype(np.float32)


@pytest.mark.parametrize("simd", [True, False])
def test_f32_f16_f32_round_trip_matches_numpy_float16(simd):
    x = _special_f32()
    ctx = gg.Context()
    a = ctx.from_numpy(x)
    h = gg.cpy(a, ctx.new_tensor(gg.F16, [x.size]))
    back = gg.cpy(h, ctx.new_tensor(gg.F32, [x.size]))
    was = gg.get_use_simd()
    try:
        gg.set_use_simd(simd)
        gg.Graph().build_forward_expand(back).compute(n_threads=2)
    finally:
        gg.set_use_simd(was)
    with np.errstate(over="ignore"):
        want16 = x.astype(np.float16)
    got16 = h.numpy()
    nan = np.isnan(want16)
    assert np.array_equal(np.isnan(got16), nan)
    assert np.array_equal(got16[~nan].view(np.uint16), want16[~nan].view(np.uint16))
    want = want16.astype(np.float32)
    got = back.numpy()
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("simd", [True, False])
def test_f32_bf16_f32_round_trip(simd):
    x = _special_f32()
    ctx = gg.Context()
    b16 = gg.cpy(ctx.from_numpy(x), ctx.new_tensor(gg.BF16, [x.size]))
    back = gg.cpy(b16, ctx.new_tensor(gg.F32, [x.size]))
    was = gg.get_use_simd()
    try:
        gg.set_use_simd(simd)
        gg.Graph().build_forward_expand(back).compute(n_threads=2)
    finally:
        gg.set_use_simd(was)
    want = bf16_to_f32(f32_to_bf16(x))
    got = back.numpy()
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.isnan(got[np.isnan(x)]).all()


@pytest.mark.parametrize("simd", [True, False])
def test_f32_i32_truncates_like_c(simd):
    x = np.array([1.5, -1.5, 2.9999, -0.5, -0.0, 7.0, 1e10, -1e10, np.nan, np.inf, -np.inf,
                  2147483520.0, 2.0**31, -2.0**31, 16777217.0, 123456.7, -99.99], dtype=np.float32)
    x = np.concatenate([x, x[::-1], x])                              # SIMD body and scalar tail
    ctx = gg.Context()
    i = gg.cpy(ctx.from_numpy(x), ctx.new_tensor(gg.I32, [x.size]))
    back = gg.cpy(i, ctx.new_tensor(gg.F32, [x.size]))
    was = gg.get_use_simd()
    try:
        gg.set_use_simd(simd)
        gg.Graph().build_forward_expand(back).compute(n_threads=1)
    finally:
        gg.set_use_simd(was)
    int_min = -2**31
    want = [1, -1, 2, 0, 0, 7, int_min, int_min, int_min, int_min, int_min, 2147483520, int_min, int_min,
            16777216, 123456, -99]
    np.testing.assert_array_equal(i.numpy()[:17], want)
    np.testing.assert_array_equal(i.numpy(), f32_to_i32(x))
    np.testing.assert_array_equal(back.numpy(), f32_to_i32(x).astype(np.float32))


def test_cpy_result_is_a_view_of_b_and_chains():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = ctx.new_tensor(gg.F16, [3, 2])
    out = gg.cpy(a, b)
    y = gg.add(gg.cpy(out, ctx.new_tensor(gg.F32, [3, 2])), a)       # read the copy through its view
    gg.Graph().build_forward_expand(y).compute(n_threads=2)
    np.testing.assert_array_equal(b.numpy(), np.arange(6, dtype=np.float16).reshape(2, 3))
    np.testing.assert_array_equal(y.numpy(), 2 * np.arange(6, dtype=np.float32).reshape(2, 3))


def test_copy_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match=r"cpy: a and b must have the same number of elements \(12 != 10\)"):
        gg.cpy(a, ctx.new_tensor(gg.F32, [10]))
    with pytest.raises(gg.GGraphError, match="cpy: cannot copy I32 into F16"):
        gg.cpy(ctx.new_tensor(gg.I32, [4]), ctx.new_tensor(gg.F16, [4]))
    with pytest.raises(gg.GGraphError, match="cpy: cannot copy BF16 into I32"):
        gg.cpy(ctx.new_tensor(gg.BF16, [4]), ctx.new_tensor(gg.I32, [4]))
    with pytest.raises(gg.GGraphError, match="cpy: argument b must be a ggraph Tensor"):
        gg.cpy(a, np.zeros(12))
    with pytest.raises(gg.GGraphError, match="dup: argument a must be a ggraph Tensor"):
        gg.dup([1, 2])
    with pytest.raises(gg.GGraphError, match=r"cont_2d: cannot make 12 elements into ne=\[5, 2\]"):
        gg.cont_2d(a, 5, 2)
    with pytest.raises(gg.GGraphError, match=r"cont_3d: sizes must be >= 1"):
        gg.cont_3d(a, 12, 0, 1)
    with pytest.raises(gg.GGraphError, match="cont_1d: ne0 must be an integer"):
        gg.cont_1d(a, 12.5)
