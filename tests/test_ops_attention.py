"""flash_attn_ext against numpy (plain softmax(s) v in float64), over shapes, layouts,
types, masks, grouped-query broadcast, ALiBi, soft cap and threads."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.backend.ffi import get_use_simd, set_use_simd
from ggraph.ops.attention import alibi_slopes, causal_mask
from ggraph.testing import ROW_LAYOUTS, check_graph, layouts, make_tensor, seeds, types

# The kernel sums q.k in f32 (D <= 80 terms) and accumulates exp-weighted V rows in
# f32 with an online softmax, against a float64 reference fed the same (already
# rounded F16/BF16) inputs: errors are a few f32 ulps of the scores (|s| up to ~30)
# carried through exp, i.e. ~1e-5 relative on outputs of size ~1.
RTOL, ATOL = 2e-4, 5e-5


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _mask_values(rng, kind, ne33, ne32, n_q_m, n_kv_m, n_q, n_kv):
    shape = (ne33, ne32, n_q_m, n_kv_m)
    if kind == "random":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "causal":
        m = np.zeros(shape, np.float32)
        m[..., :n_q, :n_kv] = causal_mask(n_kv, n_q) if n_kv >= n_q else causal_mask(n_kv, n_q, 0)
        return m
    # random finite values with -inf holes, some rows masked completely
    m = rng.standard_normal(shape).astype(np.float32)
    m[rng.random(shape) < 0.4] = -np.inf
    rows = rng.random(shape[:3]) < 0.2
    m[rows] = -np.inf
    return m


# head sizes that are multiples of 16 with 8 or more q rows take the tiled path
# (blocks of 64 K/V rows, ops_attention.c); the others the row-at-a-time path
@given(d=st.one_of(st.integers(1, 24), st.sampled_from([16, 40, 64, 80, 128])), dv_same=st.booleans(),
       dv=st.one_of(st.integers(1, 20), st.sampled_from([16, 48, 96])),
       n_q=st.one_of(st.integers(1, 9), st.integers(8, 40)),
       n_kv=st.one_of(st.integers(1, 20), st.integers(60, 70), st.integers(200, 300)),
       n_head_kv=st.integers(1, 3), group=st.one_of(st.integers(1, 3), st.sampled_from([4, 7])),
       ne3=st.integers(1, 2),
       k_type=types((gg.F32, gg.F16, gg.BF16)), v_type=types((gg.F32, gg.F16, gg.BF16)),
       q_layout=layouts(ROW_LAYOUTS), kv_layout=layouts(ROW_LAYOUTS),
       mask_kind=st.sampled_from(["none", "random", "causal", "holes"]), pad=st.booleans(),
       alibi=st.booleans(), softcap=st.sampled_from([0.0, 0.0, 20.0]), data=st.data(), seed=seeds())
def test_flash_attn_ext_matches_numpy(d, dv_same, dv, n_q, n_kv, n_head_kv, group, ne3, k_type, v_type,
                                      q_layout, kv_layout, mask_kind, pad, alibi, softcap, data, seed):
    rng = np.random.default_rng(seed)
    dv = d if dv_same else dv
    n_head = n_head_kv * group
    ctx = gg.Context()
    q = make_tensor(ctx, gg.F32, [d, n_q, n_head, ne3], q_layout, rng=rng)
    k = make_tensor(ctx, k_type, [d, n_kv, n_head_kv, ne3], kv_layout, rng=rng)
    v = make_tensor(ctx, v_type, [dv, n_kv, n_head_kv, ne3], kv_layout, rng=rng)
    mask = None
    if mask_kind != "none":
        ne32 = data.draw(st.sampled_from(_divisors(n_head)), label="ne32")
        ne33 = data.draw(st.sampled_from(_divisors(ne3)), label="ne33")
        n_kv_m, n_q_m = (n_kv + 3, n_q + 5) if pad else (n_kv, n_q)      # extra columns/rows are ignored
        mv = _mask_values(rng, mask_kind, ne33, ne32, n_q_m, n_kv_m, n_q, n_kv)
        mask = ctx.from_numpy(mv, type=gg.F16)
    max_bias = 8.0 if (alibi and mask is not None) else 0.0
    scale = float(data.draw(st.sampled_from([1.0 / np.sqrt(d), 0.5, 1.0]), label="scale"))
    y = gg.flash_attn_ext(q, k, v, mask, scale, max_bias, softcap)
    assert y.type is gg.F32 and y.ne == (dv, n_head, n_q, ne3)
    check_graph([y], rtol=RTOL, atol=ATOL,
                what=f"flash_attn_ext K {k_type} V {v_type} q {q_layout} kv {kv_layout} mask {mask_kind}")


def _numpy_attention(q, k, v, mask, scale, max_bias=0.0):
    """Independent of the op's reference: q (n_head, n_q, D), k/v (n_head_kv, n_kv, D),
    mask (n_q, n_kv); returns (n_q, n_head, Dv) like ggml's permuted result."""
    n_head, n_q, _ = q.shape
    rep = n_head // k.shape[0]
    slopes = alibi_slopes(n_head, max_bias)
    out = np.zeros((n_q, n_head, v.shape[2]))
    for h in range(n_head):
        kh, vh = k[h // rep].astype(np.float64), v[h // rep].astype(np.float64)
        s = q[h].astype(np.float64) @ kh.T * scale
        bias = np.where(np.isinf(mask), 0.0, mask) * slopes[h]
        s = np.where(np.isinf(mask), -np.inf, s + bias)
        s -= s.max(axis=1, keepdims=True)
        w = np.exp(s)
        out[:, h, :] = (w / w.sum(axis=1, keepdims=True)) @ vh
    return out


@pytest.mark.parametrize("d", [64, 40])
@pytest.mark.parametrize("n_q, n_kv", [(1, 300), (7, 300), (40, 300), (1, 1000), (3, 1000)])
@pytest.mark.parametrize("max_bias", [0.0, 8.0])
def test_gqa_causal_over_f16_cache_views(d, n_q, n_kv, max_bias):
    """n_head 6 over n_head_kv 2, K/V views of a bigger F16 cache, permuted q as llama.cpp builds it.
    Few q rows over many K/V rows: the rows are cut among threads and the pieces merged."""
    rng = np.random.default_rng(d + n_q)
    n_head, n_head_kv, kv_size = 6, 2, n_kv + 20
    ctx = gg.Context()
    k_cache = ctx.from_numpy(rng.standard_normal((n_head_kv, kv_size, d)).astype(np.float32), type=gg.F16)
    v_cache = ctx.from_numpy(rng.standard_normal((n_head_kv, kv_size, d)).astype(np.float32), type=gg.F16)
    k = gg.view_3d(k_cache, d, n_kv, n_head_kv, k_cache.nb[1], k_cache.nb[2], 0)
    v = gg.view_3d(v_cache, d, n_kv, n_head_kv, v_cache.nb[1], v_cache.nb[2], 0)
    q_cur = ctx.new_tensor(gg.F32, [d, n_head, n_q])                                       # [d, n_head, n_q]
    q_cur.set(rng.standard_normal((1, n_q, n_head, d)))    # 4-d: from_numpy refuses a leading 1 (n_q == 1)
    q = gg.permute(q_cur, 0, 2, 1, 3)                                                      # [d, n_q, n_head]
    m = causal_mask(n_kv, n_q)
    mask = ctx.from_numpy(m, type=gg.F16)
    scale = 1.0 / np.sqrt(d)
    y = gg.flash_attn_ext(q, k, v, mask, scale, max_bias, 0.0)
    assert y.ne == (d, n_head, n_q, 1)
    check_graph([y], rtol=RTOL, atol=ATOL, what="gqa causal")
    kv = k_cache.numpy()[:, :n_kv].astype(np.float64)
    vv = v_cache.numpy()[:, :n_kv].astype(np.float64)
    want = _numpy_attention(q_cur.numpy().reshape(n_q, n_head, d).transpose(1, 0, 2), kv, vv, m.astype(np.float64), scale, max_bias)
    np.testing.assert_allclose(y.numpy().reshape(want.shape), want, rtol=RTOL, atol=ATOL)


def test_fully_masked_rows_give_zero():
    rng = np.random.default_rng(0)
    ctx = gg.Context()
    q = ctx.from_numpy(rng.standard_normal((2, 3, 16)).astype(np.float32))
    k = ctx.from_numpy(rng.standard_normal((2, 5, 16)).astype(np.float32), type=gg.F16)
    v = ctx.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32), type=gg.F16)
    m = np.zeros((3, 5), np.float32)
    m[1] = -np.inf                         # query row 1 sees nothing
    y = gg.flash_attn_ext(q, k, v, ctx.from_numpy(m, type=gg.F16), 0.25)
    out = check_graph([y], rtol=RTOL, atol=ATOL)[0]
    assert np.all(y.numpy()[1] == 0.0) and np.all(out.reshape(3, 2, 8)[1] == 0.0)
    assert np.all(np.abs(y.numpy()[[0, 2]]) > 0)


@pytest.mark.parametrize("n_q", [1, 3, 16])
@pytest.mark.parametrize("kv_type", [gg.F16, gg.F32])
def test_masked_cache_rows_holding_nan_change_nothing(n_q, kv_type):
    """A KV cache is padded past its filled rows and masks them; whatever those rows
    hold (here NaN and inf) must not reach the result, on every path (decode rows,
    few q rows, tiled)."""
    rng = np.random.default_rng(n_q)
    d, n_kv, valid, n_head_kv, group = 64, 200, 131, 2, 7
    kv = rng.standard_normal((2, n_head_kv, n_kv, d)).astype(np.float32)
    kv[:, :, valid:, ::2] = np.nan
    kv[:, :, valid:, 1::2] = np.inf
    ctx = gg.Context()
    q = ctx.from_numpy(rng.standard_normal((n_head_kv * group, n_q, d)).astype(np.float32))
    k = ctx.from_numpy(kv[0], type=kv_type)
    v = ctx.from_numpy(kv[1], type=kv_type)
    m = np.zeros((n_q, n_kv), np.float32)
    m[:, valid:] = -np.inf
    y = gg.flash_attn_ext(q, k, v, ctx.from_numpy(m, type=gg.F16), 0.125)
    y.set_output()
    g = gg.Graph().build_forward_expand(y)
    kq = kv.astype(np.float16).astype(np.float64) if kv_type is gg.F16 else kv.astype(np.float64)
    want = _numpy_attention(q.numpy().astype(np.float64), kq[0][:, :valid], kq[1][:, :valid],
                            m[:, :valid].astype(np.float64), 0.125)
    was = get_use_simd()
    try:
        for use_simd in (True, False):
            set_use_simd(use_simd)
            for n in (1, 2):
                g.compute(n_threads=n)
                np.testing.assert_allclose(y.numpy().reshape(want.shape), want, rtol=RTOL, atol=ATOL,
                                           err_msg=f"flash_attn_ext n_q={n_q} K/V {kv_type} at {n} threads, "
                                                   f"{'SIMD' if use_simd else 'scalar'}")
    finally:
        set_use_simd(was)


def test_large_scores_stay_finite():
    """Scores in the hundreds: the running max must rescale, nothing overflows."""
    rng = np.random.default_rng(1)
    ctx = gg.Context()
    q = ctx.from_numpy(10 * rng.standard_normal((3, 4, 32)).astype(np.float32))
    k = ctx.from_numpy(rng.standard_normal((3, 50, 32)).astype(np.float32))
    v = ctx.from_numpy(rng.standard_normal((3, 50, 32)).astype(np.float32))
    y = gg.flash_attn_ext(q, k, v, None, 1.0)
    check_graph([y], rtol=1e-3, atol=1e-4)   # |s| ~ 60..200: f32 score errors ~1e-5 absolute, weights ~1e-5
    assert np.all(np.isfinite(y.numpy()))


def test_softcap_bounds_scores():
    rng = np.random.default_rng(2)
    ctx = gg.Context()
    q = ctx.from_numpy(20 * rng.standard_normal((2, 2, 8)).astype(np.float32))
    k = ctx.from_numpy(rng.standard_normal((2, 9, 8)).astype(np.float32))
    v = ctx.from_numpy(np.eye(9, dtype=np.float32)[None].repeat(2, 0))                 # outputs = weights
    y = gg.flash_attn_ext(q, k, v, None, 1.0, 0.0, 1.0)
    check_graph([y], rtol=RTOL, atol=ATOL)
    w = y.numpy()
    # with |s| <= 1 no weight can exceed e^2 times another
    assert np.all(w.max(axis=-1) <= np.exp(2.0) * w.min(axis=-1) * (1 + 1e-5))


def test_prec_setter():
    ctx = gg.Context()
    q, k = ctx.new_tensor(gg.F32, [8, 2, 2]), ctx.new_tensor(gg.F16, [8, 4, 2])
    y = gg.flash_attn_ext(q, k, k)
    assert gg.flash_attn_ext_get_prec(y) == gg.PREC_DEFAULT
    gg.flash_attn_ext_set_prec(y, gg.PREC_F32)
    assert gg.flash_attn_ext_get_prec(y) == gg.PREC_F32
    check_graph([y], rtol=RTOL, atol=ATOL, threads=(1, 2))
    with pytest.raises(gg.GGraphError, match="flash_attn_ext_set_prec: prec must be"):
        gg.flash_attn_ext_set_prec(y, 3)
    with pytest.raises(gg.GGraphError, match="flash_attn_ext_set_prec: a must be a flash_attn_ext result"):
        gg.flash_attn_ext_set_prec(q, gg.PREC_F32)


def test_flash_attn_ext_errors():
    ctx = gg.Context()
    q = ctx.new_tensor(gg.F32, [8, 3, 4])
    k = ctx.new_tensor(gg.F16, [8, 5, 2])
    v = ctx.new_tensor(gg.F16, [6, 5, 2])
    m = ctx.new_tensor(gg.F16, [5, 3])
    fa = gg.flash_attn_ext
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: q must be F32, got F16"):
        fa(ctx.new_tensor(gg.F16, [8, 3, 4]), k, v)
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: k must be F32, F16, BF16, got I32"):
        fa(q, ctx.new_tensor(gg.I32, [8, 5, 2]), v)
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: k.ne\[0\] must equal q.ne\[0\]"):
        fa(q, ctx.new_tensor(gg.F16, [7, 5, 2]), v)
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: v.ne\[1\] must equal k.ne\[1\]"):
        fa(q, k, ctx.new_tensor(gg.F16, [6, 4, 2]))
    with pytest.raises(gg.GGraphError, match="must be a multiple of k.ne"):
        fa(q, ctx.new_tensor(gg.F16, [8, 5, 3]), ctx.new_tensor(gg.F16, [6, 5, 3]))
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: q, k and v must agree in ne\[3\]"):
        fa(ctx.new_tensor(gg.F32, [8, 3, 4, 2]), k, v)
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: mask must be F16, got F32"):
        fa(q, k, v, ctx.new_tensor(gg.F32, [5, 3]))
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: mask.ne\[0\] must be >= n_kv"):
        fa(q, k, v, ctx.new_tensor(gg.F16, [4, 3]))
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: mask.ne\[1\] must be >= n_q"):
        fa(q, k, v, ctx.new_tensor(gg.F16, [5, 2]))
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: mask must broadcast over q"):
        fa(q, k, v, ctx.new_tensor(gg.F16, [5, 3, 3]))
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: mask must be contiguous"):
        fa(q, k, v, gg.transpose(ctx.new_tensor(gg.F16, [5, 5])))
    with pytest.raises(gg.GGraphError, match=r"flash_attn_ext: max_bias = 8.0 > 0 \(ALiBi\) needs a mask"):
        fa(q, k, v, None, 1.0, 8.0)
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: rows of k must be contiguous"):
        fa(q, gg.transpose(ctx.new_tensor(gg.F16, [5, 8, 2])), v)
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: scale must be finite"):
        fa(q, k, v, m, float("inf"))
    with pytest.raises(gg.GGraphError, match="flash_attn_ext: argument mask must be a ggraph Tensor"):
        fa(q, k, v, np.zeros((3, 5)))
