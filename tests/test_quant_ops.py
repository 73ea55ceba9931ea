"""Block (quantized) types in the ops: mul_mat with quantized weights, get_rows
from quantized embeddings, set_rows / cpy into quantized KV caches and back,
dup / cont of block tensors, and the refusals.

Every test is parametrized over ggraph.quant.WEIGHT_TYPES (or the KV cache
types); a type whose C rows (csrc/quants_plain.c, quants_k.c) are missing fails.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ggraph as gg
from ggraph.backend.ffi import get_use_simd, lib, set_kernel_path, set_use_simd
from ggraph.ops.copy import DEQUANT_TYPES, KV_QUANT_TYPES, c_can_dequantize, c_can_quantize
from ggraph.ops.matmul import VEC_DOT_TYPE, _broadcast_planes, _round_to
from ggraph.quant import WEIGHT_TYPES
from ggraph.testing import check_graph, make_tensor, seeds

THREADS = (1, 2, 3, 4)
KV_TYPES = (gg.Q8_0, gg.Q4_0, gg.Q4_1, gg.Q5_0, gg.Q5_1)
ids = [str(t) for t in WEIGHT_TYPES]


def need_mul_mat(t):
    assert lib.gg_quant_vec_dot_type(t.id) >= 0 and t in VEC_DOT_TYPE, f"{t}: no vec_dot rows built in"


def need_rows(t, *, to_float=True, from_float=True):
    assert not (from_float and not c_can_quantize(t)), f"{t}: no from_float row built in"
    assert not (to_float and not c_can_dequantize(t)), f"{t}: no to_float row built in"


def tensor_bytes(t: gg.Tensor) -> np.ndarray:
    buf, offs = t.storage()
    return np.array(buf[offs:offs + t.nbytes()], copy=True)


def run_paths(outputs, check):
    """Computes `outputs` at 1..4 threads on the SIMD and scalar paths; check(use_simd) after each."""
    g = gg.Graph()
    for o in outputs:
        o.set_output()
        g.build_forward_expand(o)
    was = get_use_simd()
    try:
        for use_simd in (True, False):
            set_use_simd(use_simd)
            for n in THREADS:
                g.compute(n_threads=n)
                check(use_simd, n)
    finally:
        set_use_simd(was)


# ---- mul_mat ----

# Tolerance of mul_mat with quantized weights. The reference sees the same
# numbers the kernel does: the weights dequantized, and the activations
# quantized to the vec_dot type and decoded back (_mul_mat_ref), so the
# quantization error of src1 itself is NOT in the difference. What is left,
# relative to E = sum_k |a_k| |b'_k| (the size of the terms of one output):
#   - f32 accumulation in vec_dot (block scales d_a * d_b multiplied in f32,
#     K / blck block sums added in f32): <= (K / 32 + 4) * 2^-24 ~ 1e-5 at K = 4096;
#   - the activation types store block sums in f16 (Q8_1's s = d * sum(q), used
#     with the weights' min for Q4_1 / Q5_1): <= 2^-11 * |m| * sum|b'| per block,
#     about 3 * 2^-11 of E for Gaussian data (max|a| / mean|a| ~ 3 over 32 values);
#   - a tie rounded differently by a SIMD quantizer of src1: one quantum
#     d_b = max|b| / 127 on one element, ~1e-3 of E at K = 32.
# 2^-9 (~2e-3) of E covers all three; 1e-5 absolute for outputs near E = 0.
# The unpacked-tile path (csrc/qgemm.c, >= 16 columns with SIMD) multiplies the
# same quantized activations: exact int32 sums per sub-block, f32 scales and sums.
MM_REL = 2.0 ** -9


def mm_compare(a, b_vals, vdt):
    """compare() for check_graph: |got - ref| <= MM_REL * E + 1e-5 elementwise."""
    a = a.numpy().reshape(a.ne[::-1]).astype(np.float64)
    b = _round_to(np.asarray(b_vals, np.float32), vdt).astype(np.float64)
    x = _broadcast_planes(a, b.shape[1], b.shape[0])
    e = np.abs(b) @ np.swapaxes(np.abs(x), -1, -2)

    def compare(got, exp, msg):
        err = np.abs(got.reshape(e.shape) - exp.reshape(e.shape))
        bound = MM_REL * e + 1e-5
        bad = err > bound
        assert not bad.any(), (f"{msg}: {int(bad.sum())} of {err.size} off; worst error "
                               f"{(err - bound).max():.3g} above its bound")
    return compare


def mm_case(t, M, N, K, ne2=(1, 1), ne3=(1, 1), b_type=gg.F32, a_layout="contiguous", b_layout="contiguous",
            seed=0):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    a = make_tensor(ctx, t, [K, M, ne2[0], ne3[0]], a_layout, rng=rng)
    b_vals = rng.standard_normal((ne3[1], ne2[1], N, K)).astype(np.float32)
    if b_type is gg.F16:
        b_vals = b_vals.astype(np.float16).astype(np.float32)
    b = make_tensor(ctx, b_type, [K, N, ne2[1], ne3[1]], b_layout, values=b_vals, rng=rng)
    out = gg.mul_mat(a, b)
    check_graph([out], compare=mm_compare(a, b_vals, VEC_DOT_TYPE[t]),
                what=f"mul_mat {t} M={M} N={N} K={K}")


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
@pytest.mark.parametrize("N", [1, 2, 7, 33])
def test_mul_mat_shapes(t, N):
    """Matrix-vector (N = 1: decode) and matrix-matrix (prefill) products, K from one block to 4096."""
    need_mul_mat(t)
    blk = t.blck_size
    for K, M in ((blk, 5), (3 * blk, 37), (4096, 19)):
        mm_case(t, M, N, K, seed=K + N)


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
def test_mul_mat_broadcast_f16_and_layouts(t):
    """a broadcast over dims 2 and 3 (grouped heads), F16 activations, gapped / permuted a,
    transposed / permuted b (converted through the work buffer)."""
    need_mul_mat(t)
    K = 2 * t.blck_size
    mm_case(t, 6, 3, K, ne2=(2, 4), ne3=(1, 3), seed=1)
    # enough columns for the unpacked-tile path (csrc/qgemm.c): converted b, planes, partial tiles
    mm_case(t, 21, 17, K, ne2=(2, 4), ne3=(1, 1), b_type=gg.F16, b_layout="transposed", seed=2)
    mm_case(t, 9, 5, K, ne2=(1, 2), ne3=(2, 2), b_type=gg.F16, seed=2)
    mm_case(t, 7, 4, K, ne2=(2, 2), a_layout="gapped", b_layout="transposed", seed=3)
    mm_case(t, 5, 8, K, ne2=(3, 3), ne3=(2, 2), a_layout="permuted", b_layout="permuted", seed=4)


@settings(deadline=None)
@given(data=st.data(), seed=seeds())
def test_mul_mat_property(data, seed):
    avail = [t for t in WEIGHT_TYPES if t in VEC_DOT_TYPE]
    t = data.draw(st.sampled_from(avail))
    K = t.blck_size * data.draw(st.integers(1, 4 if t.blck_size == 32 else 2))
    M, N = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    r2, r3 = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    n2, n3 = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    mm_case(t, M, N, K, ne2=(n2, n2 * r2), ne3=(n3, n3 * r3),
            b_type=data.draw(st.sampled_from([gg.F32, gg.F16])),
            a_layout=data.draw(st.sampled_from(["contiguous", "gapped", "permuted"])),
            b_layout=data.draw(st.sampled_from(["contiguous", "gapped", "permuted", "transposed"])), seed=seed)


def _mat_vec_on_and_off(y):
    """y computed with csrc/qgemv.c's path off and on, at 1, 2 and 3 threads: {(on, n): copy}."""
    y.set_output()
    g = gg.Graph().build_forward_expand(y)
    got = {}
    try:
        for on in (False, True):
            set_kernel_path("qgemv", on)
            for n in (1, 2, 3):
                g.compute(n_threads=n)
                got[on, n] = y.numpy().copy()
    finally:
        set_kernel_path("qgemv", True)
    return got


@pytest.mark.parametrize("t", [gg.Q4_0, gg.Q4_1, gg.Q5_0, gg.Q5_1, gg.Q8_0], ids=str)
def test_mat_vec_rows_path_is_bit_identical_to_vec_dot(t):
    """Matrix-vector products of the 32-value block types take csrc/qgemv.c's
    AVX-512 path when it is built; it promises the same bits as the type's
    vec_dot (the path switched off), for every row length: whole and partial
    groups of 8 blocks, and rows longer than one prepared pass (256 blocks)."""
    if not lib.gg_qgemv_built():
        pytest.skip("the AVX-512 VNNI matrix-vector path is not in this build")
    rng = np.random.default_rng(5)
    for nb in (1, 2, 3, 5, 7, 8, 9, 18, 48, 255, 256, 257, 520):
        K, M = 32 * nb, 37
        ctx = gg.Context()
        w = ctx.from_numpy(rng.standard_normal((M, K)).astype(np.float32), type=t)
        x = ctx.from_numpy(rng.standard_normal((1, K)).astype(np.float32))
        got = {key: out.view(np.uint32) for key, out in _mat_vec_on_and_off(gg.mul_mat(w, x)).items()}
        for (on, n), bits in got.items():
            assert np.array_equal(bits, got[False, 1]), \
                f"mul_mat {t} M={M} N=1 K={K}: qgemv={'on' if on else 'off'} at {n} threads differs from vec_dot"


@pytest.mark.parametrize("t", [gg.Q4_K, gg.Q5_K, gg.Q6_K, gg.Q2_K, gg.Q3_K], ids=str)
def test_mat_vec_rows_path_k_types_match_vec_dot(t):
    """The K types' matrix-vector rows in csrc/qgemv.c sum each super-block's
    integer products exactly, then add d * yd * isum (- dmin * yd * msum) in
    f32 in another order than vec_dot's AVX2 lanes: not the same bits, but
    within a few roundings of the f32 sum. Row lengths: 1, 2, 3 super-blocks
    (partial groups of 8), 31, 32 (one prepared pass), 33 (two passes)."""
    if not lib.gg_qgemv_built():
        pytest.skip("the AVX-512 VNNI matrix-vector path is not in this build")
    rng = np.random.default_rng(6)
    for nb in (1, 2, 3, 8, 9, 19, 31, 32, 33, 70):
        K, M = 256 * nb, 37
        ctx = gg.Context()
        w = ctx.from_numpy(rng.standard_normal((M, K)).astype(np.float32), type=t)
        xv = rng.standard_normal((1, K)).astype(np.float32)
        got = {key: out.astype(np.float64).ravel()
               for key, out in _mat_vec_on_and_off(gg.mul_mat(w, ctx.from_numpy(xv))).items()}
        # the size of the terms (as mm_compare): f32 rounding over K / 256 super-blocks stays far below 1e-5 of it
        wd = w.numpy().reshape(M, K).astype(np.float64)
        e = np.abs(wd) @ np.abs(_round_to(xv, VEC_DOT_TYPE[t]).astype(np.float64)[0])
        for (on, n), v in got.items():
            err = np.abs(v - got[False, 1])
            assert (err <= 1e-5 * e).all(), \
                f"mul_mat {t} M={M} N=1 K={K}: qgemv={'on' if on else 'off'} at {n} threads: " \
                f"{(err / e).max():.3g} of sum|terms| from vec_dot"
        # the same bits whatever the number of threads
        for n in (2, 3):
            assert np.array_equal(got[True, n], got[True, 1])


def test_mul_mat_work_size_counts_converted_b():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.Q8_0, [4096, 8])
    b = ctx.new_tensor(gg.F32, [4096, 7, 2])
    out = gg.mul_mat(a, b)
    from ggraph.ops.registry import get_op
    # chunk counter + 14 columns of 128 Q8_0 blocks (34 bytes) + padding
    assert get_op("mul_mat").work_size(out, 4) >= 64 + 14 * 128 * 34


# ---- get_rows ----

@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
def test_get_rows_quantized_exact(t):
    """Each gathered row is exactly the dequantized row (the same to_float, same path)."""
    need_rows(t)
    rng = np.random.default_rng(5)
    K = 2 * t.blck_size
    x = rng.standard_normal((2, 11, K)).astype(np.float32)      # ne [K, 11 rows, 2 planes]
    ctx = gg.Context()
    a = ctx.from_numpy(x, type=t)
    idx = rng.integers(0, 11, size=(2, 6)).astype(np.int32)
    out = gg.get_rows(a, ctx.from_numpy(idx))
    blocks = gg.quantize(x, t)
    assert np.array_equal(tensor_bytes(a), blocks.ravel())

    def check(use_simd, n):
        rows = gg.dequantize(blocks, t, simd=use_simd)
        exp = np.stack([rows[p][idx[p]] for p in range(2)])
        assert out.type is gg.F32
        np.testing.assert_array_equal(out.numpy(), exp, err_msg=f"{t} simd={use_simd} n_threads={n}")
    run_paths([out], check)


def test_get_rows_quantized_reference():
    """The registry path: check_graph against the numpy reference (Q8_0, 3-d)."""
    ctx = gg.Context()
    rng = np.random.default_rng(6)
    a = make_tensor(ctx, gg.Q8_0, [64, 9, 3], "gapped", rng=rng)
    b = ctx.from_numpy(rng.integers(0, 9, size=(3, 4)).astype(np.int32))
    check_graph([gg.get_rows(a, b)], rtol=0, atol=0)   # same decode on both sides: exact


# ---- set_rows / cpy into quantized caches, and back ----

@pytest.mark.parametrize("src_type", [gg.F32, gg.F16])
@pytest.mark.parametrize("t", KV_TYPES, ids=[str(t) for t in KV_TYPES])
def test_set_rows_quantized_cache(t, src_type):
    need_rows(t)
    rng = np.random.default_rng(7)
    K, slots = 2 * t.blck_size, 10
    ctx = gg.Context()
    old = rng.standard_normal((4, 2, slots, K)).astype(np.float32)
    cache = ctx.from_numpy(old, type=t)
    vals = rng.standard_normal((4, 2, 3, K)).astype(np.float32)   # 3 rows per plane
    if src_type is gg.F16:
        vals = vals.astype(np.float16).astype(np.float32)
    b = make_tensor(ctx, src_type, [K, 3, 2, 4], "gapped", values=vals, rng=rng)
    c_idx = np.stack([rng.permutation(slots)[:3] for _ in range(2)]).astype(np.int32)   # [3, 2]: broadcast over dim 3
    out = gg.set_rows(cache, b, ctx.from_numpy(c_idx))
    exp = gg.quantize(old, t)
    for i3 in range(4):
        for i2 in range(2):
            exp[i3, i2, c_idx[i2 % 2]] = gg.quantize(vals[i3, i2], t)
    before = tensor_bytes(cache)

    def check(use_simd, n):
        got = tensor_bytes(cache).reshape(exp.shape)
        np.testing.assert_array_equal(got, exp, err_msg=f"{t} simd={use_simd} n_threads={n}")
        cache._buf[cache._offs:cache._offs + before.size] = before    # next run starts from the old cache
    run_paths([out], check)


@pytest.mark.parametrize("t", KV_TYPES, ids=[str(t) for t in KV_TYPES])
def test_cpy_into_quantized_cache_and_back(t):
    """cpy F32/F16 rows (any layout) into a slot range of a quantized cache: the
    bytes are gg.quantize's; cpy back to F32 gives gg.dequantize's values."""
    need_rows(t)
    rng = np.random.default_rng(8)
    K = 3 * t.blck_size
    ctx = gg.Context()
    cache = ctx.new_tensor(t, [K, 8, 2])
    slot = gg.view_3d(cache, K, 3, 2, cache.nb[1], cache.nb[2], 4 * cache.nb[1])   # slots 4..6 of both planes
    vals = rng.standard_normal((2, 3, K)).astype(np.float32)
    src = make_tensor(ctx, gg.F32, [K, 3, 2], "transposed", values=vals, rng=rng)
    w = gg.cpy(src, slot)
    vals16 = rng.standard_normal((2, 3, K)).astype(np.float16)
    slot2 = gg.view_3d(cache, K, 3, 2, cache.nb[1], cache.nb[2], 0)                 # slots 0..2
    w2 = gg.cpy(make_tensor(ctx, gg.F16, [K, 3, 2], "permuted", values=vals16, rng=rng), slot2)
    back = gg.cpy(gg.view_3d(cache, K, 3, 2, cache.nb[1], cache.nb[2], 4 * cache.nb[1]),
                  ctx.new_tensor(gg.F32, [K, 3, 2]))
    g_outputs = [w, w2]
    q = gg.quantize(vals, t)
    q16 = gg.quantize(vals16.astype(np.float32), t)

    def check(use_simd, n):
        got = tensor_bytes(cache).reshape(2, 8, -1)
        np.testing.assert_array_equal(got[:, 4:7], q, err_msg=f"{t} simd={use_simd} n={n}")
        np.testing.assert_array_equal(got[:, 0:3], q16, err_msg=f"{t} F16 simd={use_simd} n={n}")
    run_paths(g_outputs, check)

    # back to F32 in a second graph (reads the cache the first one wrote)
    def check_back(use_simd, n):
        np.testing.assert_array_equal(back.numpy(), gg.dequantize(q, t, simd=use_simd),
                                      err_msg=f"{t} -> F32 simd={use_simd} n={n}")
    run_paths([back], check_back)


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
def test_cpy_block_to_f32_reshaped(t):
    """Any block type with a to_float dequantizes through cpy, also into another shape
    (rows of whole blocks) and a strided destination."""
    need_rows(t)
    rng = np.random.default_rng(9)
    blk = t.blck_size
    ctx = gg.Context()
    x = rng.standard_normal((3, 4 * blk)).astype(np.float32)
    a = ctx.from_numpy(x, type=t)
    dst = make_tensor(ctx, gg.F32, [2 * blk, 6], "gapped", values=np.zeros((6, 2 * blk), np.float32), rng=rng)
    out = gg.cpy(a, dst)
    blocks = gg.quantize(x, t)

    def check(use_simd, n):
        exp = gg.dequantize(blocks, t, simd=use_simd).reshape(6, 2 * blk)
        np.testing.assert_array_equal(out.numpy(), exp, err_msg=f"{t} simd={use_simd} n={n}")
    run_paths([out], check)


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
def test_dup_cont_block_bytes(t):
    """dup, cont (of a permuted block tensor) and cont_2d copy whole blocks: same bytes."""
    need_rows(t, to_float=False)
    rng = np.random.default_rng(10)
    blk = t.blck_size
    ctx = gg.Context()
    x = rng.standard_normal((3, 5, 2 * blk)).astype(np.float32)
    a = ctx.from_numpy(x, type=t)
    d = gg.dup(a)
    p = gg.cont(gg.permute(a, 0, 2, 1, 3))                # ne [2 blk, 3, 5]: planes and rows swapped
    r = gg.cont_2d(gg.permute(a, 0, 2, 1, 3), blk, 30)     # and re-cut into rows of one block... per 2 rows
    blocks = gg.quantize(x, t)                             # (3, 5, row bytes)
    perm = np.ascontiguousarray(blocks.transpose(1, 0, 2))

    def check(use_simd, n):
        assert np.array_equal(tensor_bytes(d), blocks.ravel())
        assert np.array_equal(tensor_bytes(p), perm.ravel())
        assert np.array_equal(tensor_bytes(r), perm.ravel())
        assert d.type is t and p.ne == (2 * blk, 3, 5, 1) and r.ne == (blk, 30, 1, 1)
    run_paths([d, p, r], check)


# ---- refusals ----

def test_refusals():
    ctx = gg.Context()
    q = ctx.new_tensor(gg.Q8_0, [64, 64])
    f = ctx.new_tensor(gg.F32, [64, 4])
    with pytest.raises(gg.GGraphError, match="mul_mat: b must be F32, F16, got Q8_0"):
        gg.mul_mat(f, q)                                   # quantized src1
    with pytest.raises(gg.GGraphError, match="mul_mat: a: Q8_1 has no vec_dot"):
        gg.mul_mat(ctx.new_tensor(gg.Q8_1, [64, 4]), f)    # an activation-only type
    with pytest.raises(gg.GGraphError, match="mul_mat: a must not be transposed"):
        gg.mul_mat(gg.transpose(q), f)
    # block types in elementwise ops
    for fn, args in ((gg.add, (q, ctx.new_tensor(gg.F32, [64, 64]))), (gg.mul, (q, q)),
                     (gg.scale, (q, 2.0)), (gg.silu, (q,))):
        with pytest.raises(gg.GGraphError, match=fn.__name__ + ": a must be"):
            fn(*args)
    # rows that are not whole blocks
    with pytest.raises(gg.GGraphError, match="not a multiple of the Q8_0 block size 32"):
        ctx.new_tensor(gg.Q8_0, [40, 2])
    with pytest.raises(gg.GGraphError, match="cont_2d: ne0=16 is not a whole number of Q8_0 blocks"):
        gg.cont_2d(q, 16, 256)
    with pytest.raises(gg.GGraphError, match=r"cpy: b.ne\[0\]=16 is not a whole number of Q8_0 blocks"):
        gg.cpy(q, ctx.new_tensor(gg.F32, [16, 256]))
    with pytest.raises(gg.GGraphError, match=r"cpy: a.ne\[0\]=16 is not a whole number of Q8_0 blocks"):
        gg.cpy(ctx.new_tensor(gg.F32, [16, 256]), q)
    # transposed block tensors
    with pytest.raises(gg.GGraphError, match="cpy: a: the blocks of a Q8_0 tensor must be packed along dim 0"):
        gg.cpy(gg.transpose(q), ctx.new_tensor(gg.F32, [64, 64]))
    with pytest.raises(gg.GGraphError, match="cont: a: the blocks of a Q8_0 tensor must be packed"):
        gg.cont(gg.transpose(q))
    with pytest.raises(gg.GGraphError, match="get_rows: rows of a must be contiguous"):
        gg.get_rows(gg.transpose(q), ctx.new_tensor(gg.I32, [3]))
    # pairs that are not copies ggml makes
    with pytest.raises(gg.GGraphError, match="cpy: cannot copy Q8_0 into F16"):
        gg.cpy(q, ctx.new_tensor(gg.F16, [64, 64]))
    with pytest.raises(gg.GGraphError, match="cpy: cannot copy Q8_0 into Q4_0"):
        gg.cpy(q, ctx.new_tensor(gg.Q4_0, [64, 64]))
    with pytest.raises(gg.GGraphError, match="cpy: cannot copy I32 into Q8_0"):
        gg.cpy(ctx.new_tensor(gg.I32, [64, 64]), q)
    with pytest.raises(gg.GGraphError, match="set_rows: a: cannot quantize rows into Q4_K"):
        gg.set_rows(ctx.new_tensor(gg.Q4_K, [256, 4]), ctx.new_tensor(gg.F32, [256, 2]),
                    ctx.new_tensor(gg.I32, [2]))
    with pytest.raises(gg.GGraphError, match="set_rows: b must be F32, F16, got Q8_0"):
        gg.set_rows(q, ctx.new_tensor(gg.Q8_0, [64, 2]), ctx.new_tensor(gg.I32, [2]))


def test_type_tables_follow_the_built_rows():
    """The op tables list exactly the block types whose C rows are built in."""
    assert gg.Q8_0 in VEC_DOT_TYPE and VEC_DOT_TYPE[gg.Q8_0] is gg.Q8_0
    assert gg.Q8_0 in KV_QUANT_TYPES and gg.Q8_0 in DEQUANT_TYPES
    for t in WEIGHT_TYPES:
        if t in VEC_DOT_TYPE:
            assert lib.gg_quant_vec_dot_type(t.id) == VEC_DOT_TYPE[t].id
        assert (t in KV_QUANT_TYPES) == (t in KV_TYPES and c_can_quantize(t))


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=ids)
def test_cast_dequantizes_and_quantizes(t):
    """cast(q, F32) equals gg.dequantize; cast(x, q) equals gg.quantize for the KV types."""
    rng = np.random.default_rng(5)
    ctx = gg.Context()
    x = rng.standard_normal((3, 2 * t.blck_size)).astype(np.float32)
    q = ctx.from_numpy(x, type=t)
    f = gg.cast(q, gg.F32)
    outs = [f]
    if t in KV_TYPES:
        outs.append(gg.cast(ctx.from_numpy(x), t))
    g = gg.Graph()
    for o in outs:
        g.build_forward_expand(o.set_output())
    g.compute(2)
    np.testing.assert_array_equal(f.numpy(), gg.dequantize(gg.quantize(x, t), t).reshape(3, -1))
    if t in KV_TYPES:
        np.testing.assert_array_equal(tensor_bytes(outs[1]).reshape(3, -1), gg.quantize(x, t))
    with pytest.raises(gg.GGraphError, match="cast: cannot copy"):
        gg.cast(q, gg.I32)


def test_mat_vec_waits_for_the_whole_activation_conversion():
    """Each thread converts a slice of b's k; the products may only start after all
    slices are done. A long k makes a missing barrier show as wrong outputs."""
    rng = np.random.default_rng(11)
    ctx = gg.Context()
    K, M = 16384, 96
    w = ctx.from_numpy(rng.standard_normal((M, K)).astype(np.float32), type=gg.Q4_0)
    x = ctx.from_numpy(rng.standard_normal((1, K)).astype(np.float32))
    y_ref, y = gg.mul_mat(w, x), gg.mul_mat(w, x)
    g_ref = gg.Graph().build_forward_expand(y_ref)      # its own work buffer
    g = gg.Graph().build_forward_expand(y)
    for n in (2, 3, 4):
        for _ in range(5):
            # new values each time: g's work buffer still holds the last conversion,
            # which a product that does not wait would read
            x.set(rng.standard_normal((1, K)).astype(np.float32))
            g_ref.compute(1)
            g.compute(n)
            np.testing.assert_array_equal(y.numpy(), y_ref.numpy())
