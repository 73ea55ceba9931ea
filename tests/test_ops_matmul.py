"""mul_mat and out_prod against numpy (float64), over shapes, types, layouts,
broadcasting, threads 1..4 and the SIMD and scalar paths."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.testing import LAYOUTS, ROW_LAYOUTS, check_graph, make_tensor, seeds


def _tol(K: int) -> dict:
    # Every product is exact in f32 (f16 x f16 and bf16 x bf16 need at most 22
    # significand bits; the reference rounds b to a's type first, as the kernel
    # does), so the only error is the f32 summation of K terms of size ~1
    # (standard normal inputs): at most ~K * 2^-24 * sum|a*b| ~ K^2 * 6e-8,
    # typically far less; K * 2e-6 absolute covers it with margin for K <= ~1000.
    return dict(rtol=1e-5, atol=max(1e-5, 2e-6 * K))


sizes = st.integers(1, 15)
ks = st.one_of(st.integers(1, 40), st.sampled_from([7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]))


@given(K=ks, M=sizes, N=sizes, ne02=st.integers(1, 2), r2=st.integers(1, 3), ne03=st.integers(1, 2),
       r3=st.integers(1, 2), ta=st.sampled_from([gg.F32, gg.F16, gg.BF16]), tb=st.sampled_from([gg.F32, gg.F16]),
       la=st.sampled_from(ROW_LAYOUTS), lb=st.sampled_from(LAYOUTS), seed=seeds())
def test_mul_mat_matches_numpy(K, M, N, ne02, r2, ne03, r3, ta, tb, la, lb, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, ta, [K, M, ne02, ne03], la, rng=rng)
    b = make_tensor(ctx, tb, [K, N, ne02 * r2, ne03 * r3], lb, rng=rng)
    y = gg.mul_mat(a, b)
    assert y.type is gg.F32 and y.ne == (M, N, ne02 * r2, ne03 * r3)
    check_graph([y], **_tol(K), what=f"mul_mat {ta}x{tb} a {la} b {lb}")


# big enough for several row blocks (128), column blocks and k blocks (512),
# so the chunk counter, tile edges and the k-block accumulation all run
@pytest.mark.parametrize("ta", [gg.F32, gg.F16, gg.BF16])
@pytest.mark.parametrize("K,M,N", [(1100, 261, 1), (1100, 261, 5), (600, 263, 103), (37, 530, 101)])
def test_mul_mat_large(ta, K, M, N):
    rng = np.random.default_rng(K + M + N)
    ctx = gg.Context()
    a = make_tensor(ctx, ta, [K, M], rng=rng)
    b = make_tensor(ctx, gg.F32, [K, N], rng=rng)
    check_graph([gg.mul_mat(a, b)], **_tol(K), threads=(1, 2, 3), what=f"mul_mat large {ta}")


def test_mul_mat_gqa_broadcast():
    # grouped-query attention: 2 K/V heads shared by 6 query heads, 3 per group
    rng = np.random.default_rng(3)
    ctx = gg.Context()
    k = make_tensor(ctx, gg.F16, [64, 19, 2], rng=rng)
    q = make_tensor(ctx, gg.F32, [64, 5, 6], "permuted", rng=rng)
    y = gg.mul_mat(k, q)
    assert y.ne == (19, 5, 6, 1)
    exp = check_graph([y], **_tol(64))[0]
    # plane i12 meets a's plane i12 // 3: heads 0-2 use K head 0, heads 3-5 K head 1
    kv = k.numpy().astype(np.float64)
    qv = q.numpy().astype(np.float16).astype(np.float64)
    for h in range(6):
        np.testing.assert_allclose(exp[h], qv[h] @ kv[h // 3].T, rtol=1e-6, atol=1e-6)


def test_mul_mat_vector_and_known_values():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))   # ne [4, 3]
    b = ctx.from_numpy(np.array([1, 0, 2, 1], dtype=np.float32))        # ne [4]
    y = gg.mul_mat(a, b)
    y.set_output()
    gg.Graph().build_forward_expand(y).compute(2)
    np.testing.assert_array_equal(y.numpy(), [7.0, 23.0, 39.0])


def test_mul_mat_reused_graph_and_work_buffer():
    # two mul_mats in one graph share the work buffer and chunk counter, one
    # with a converted b (F16 weights), one without; recompute with new inputs
    rng = np.random.default_rng(5)
    ctx = gg.Context()
    w1 = make_tensor(ctx, gg.F16, [48, 40], rng=rng)
    w2 = make_tensor(ctx, gg.F32, [40, 24], rng=rng)
    x = make_tensor(ctx, gg.F32, [48, 9], rng=rng)
    h = gg.mul_mat(w1, x)
    y = gg.mul_mat(w2, h)
    check_graph([y], rtol=1e-4, atol=1e-3)
    x.set(rng.standard_normal((9, 48)).astype(np.float32))
    check_graph([y], rtol=1e-4, atol=1e-3)


@given(n=st.integers(1, 40), m=st.integers(1, 12), p=st.integers(1, 9), ne02=st.integers(1, 2),
       r2=st.integers(1, 3), ne03=st.integers(1, 2), r3=st.integers(1, 2), ta=st.sampled_from([gg.F32, gg.F16]),
       la=st.sampled_from(ROW_LAYOUTS), lb=st.sampled_from(LAYOUTS), seed=seeds())
def test_out_prod_matches_numpy(n, m, p, ne02, r2, ne03, r3, ta, la, lb, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, ta, [n, m, ne02, ne03], la, rng=rng)
    b = make_tensor(ctx, gg.F32, [p, m, ne02 * r2, ne03 * r3], lb, rng=rng)
    y = gg.out_prod(a, b)
    assert y.type is gg.F32 and y.ne == (n, p, ne02 * r2, ne03 * r3)
    check_graph([y], **_tol(m), what=f"out_prod {ta} a {la} b {lb}")


def test_out_prod_known_values():
    ctx = gg.Context()
    a = ctx.from_numpy(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))   # ne [3, 2]: n=3, m=2
    b = ctx.from_numpy(np.array([[1, 0], [0, 1]], dtype=np.float32))         # ne [2, 2]: p=2
    y = gg.out_prod(a, b)
    y.set_output()
    gg.Graph().build_forward_expand(y).compute(1)
    # dst[i, j] = sum_k a[i, k] b[j, k]: column j of b picks row j of a
    np.testing.assert_array_equal(y.numpy(), [[1, 2, 3], [4, 5, 6]])


def test_mul_mat_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 4])
    with pytest.raises(gg.GGraphError, match=r"mul_mat: a.ne\[0\] \(K=8\) must equal b.ne\[0\] \(K=7\)"):
        gg.mul_mat(a, ctx.new_tensor(gg.F32, [7, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: a must broadcast over b in dims 2 and 3"):
        gg.mul_mat(ctx.new_tensor(gg.F32, [8, 4, 2]), ctx.new_tensor(gg.F32, [8, 3, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: a must broadcast over b in dims 2 and 3"):
        gg.mul_mat(ctx.new_tensor(gg.F32, [8, 4, 1, 2]), ctx.new_tensor(gg.F32, [8, 3, 1, 1]))
    with pytest.raises(gg.GGraphError, match="mul_mat: a must not be transposed"):
        gg.mul_mat(gg.transpose(ctx.new_tensor(gg.F32, [4, 8])), ctx.new_tensor(gg.F32, [8, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: rows of a must be contiguous"):
        # ne [8, 3, 4] with nb [16, 128, 4]: not transposed, but dim 0 is strided
        gg.mul_mat(gg.permute(ctx.new_tensor(gg.F32, [4, 8, 3]), 2, 0, 1, 3), ctx.new_tensor(gg.F32, [8, 3, 4]))
    with pytest.raises(gg.GGraphError, match="mul_mat: a must be F32, F16, BF16, got I32"):
        gg.mul_mat(ctx.new_tensor(gg.I32, [8, 4]), ctx.new_tensor(gg.F32, [8, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: b must be F32, F16, got BF16"):
        gg.mul_mat(a, ctx.new_tensor(gg.BF16, [8, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: b must be F32, F16, got I32"):
        gg.mul_mat(a, ctx.new_tensor(gg.I32, [8, 3]))
    with pytest.raises(gg.GGraphError, match="mul_mat: argument b must be a ggraph Tensor"):
        gg.mul_mat(a, np.zeros((3, 8), np.float32))


def test_out_prod_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [5, 4])
    with pytest.raises(gg.GGraphError, match=r"out_prod: a.ne\[1\] \(4\) must equal b.ne\[1\] \(3\)"):
        gg.out_prod(a, ctx.new_tensor(gg.F32, [6, 3]))
    with pytest.raises(gg.GGraphError, match="out_prod: a must broadcast over b in dims 2 and 3"):
        gg.out_prod(ctx.new_tensor(gg.F32, [5, 4, 2]), ctx.new_tensor(gg.F32, [6, 4, 3]))
    with pytest.raises(gg.GGraphError, match="out_prod: a must not be transposed"):
        gg.out_prod(gg.transpose(ctx.new_tensor(gg.F32, [4, 5])), ctx.new_tensor(gg.F32, [6, 4]))
    with pytest.raises(gg.GGraphError, match="out_prod: a must be F32, F16, got BF16"):
        gg.out_prod(ctx.new_tensor(gg.BF16, [5, 4]), ctx.new_tensor(gg.F32, [6, 4]))
    with pytest.raises(gg.GGraphError, match="out_prod: b must be F32, got F16"):
        gg.out_prod(a, ctx.new_tensor(gg.F16, [6, 4]))
    with pytest.raises(gg.GGraphError, match="out_prod: argument a must be a ggraph Tensor"):
        gg.out_prod(None, a)
