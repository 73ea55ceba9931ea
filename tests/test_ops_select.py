"""get_rows, set_rows, argsort and top_k against numpy, over shapes, layouts, types and threads.

All four ops move or compare values without arithmetic, so results must be
exact: every comparison here is exact equality (conversions F16/BF16 -> F32
are exact, and F32 -> F16/BF16 rounds the same way, to nearest even, in numpy
and C).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.backend.ffi import get_use_simd, set_use_simd
from ggraph.testing import LAYOUTS, ROW_LAYOUTS, check_graph, layouts, make_tensor, seeds, shapes, types

THREADS = (1, 2, 3, 4)


def _runs():
    """(use_simd, n_threads) for every path check_graph would try."""
    for use_simd in (True, False):
        for n in THREADS:
            yield use_simd, n


# ---- get_rows ----

@given(ne=shapes(max_dims=4, max_side=7), n_embd=st.integers(1, 40), n_idx=st.integers(1, 9),
       type=types((gg.F32, gg.F16, gg.BF16, gg.I32)), a_layout=layouts(ROW_LAYOUTS),
       b_layout=layouts(LAYOUTS), seed=seeds())
def test_get_rows_matches_numpy(ne, n_embd, n_idx, type, a_layout, b_layout, seed):
    rng = np.random.default_rng(seed)
    ctx = gg.Context()
    ne_a = [n_embd, ne[1], ne[2], ne[3]]
    a = make_tensor(ctx, type, ne_a, a_layout, rng=rng)
    idx = rng.integers(0, ne_a[1], size=(ne_a[3], ne_a[2], n_idx)).astype(np.int32)
    b = make_tensor(ctx, gg.I32, [n_idx, ne_a[2], ne_a[3]], b_layout, values=idx, rng=rng)
    y = gg.get_rows(a, b)
    assert y.ne == (n_embd, n_idx, ne_a[2], ne_a[3])
    assert y.type is (gg.I32 if type is gg.I32 else gg.F32)
    check_graph([y], rtol=0, atol=0, what=f"get_rows {type} {a_layout}/{b_layout}")
    # and against a direct numpy gather
    av = a.numpy().reshape(ne_a[::-1])
    want = np.stack([np.stack([av[i3, i2, idx[i3, i2]] for i2 in range(ne_a[2])]) for i3 in range(ne_a[3])])
    np.testing.assert_array_equal(y.numpy().reshape(want.shape), want)


def test_get_rows_embedding_lookup():
    ctx = gg.Context()
    table = np.arange(5 * 8, dtype=np.float32).reshape(5, 8)     # 5 tokens, n_embd 8
    tok = ctx.from_numpy(table, type=gg.F16)
    ids = ctx.from_numpy(np.array([4, 0, 4, 2], np.int32)).set_input()
    emb = gg.get_rows(tok, ids)
    g = gg.Graph().build_forward_expand(emb)
    g.compute(2)
    np.testing.assert_array_equal(emb.numpy(), table[[4, 0, 4, 2]])
    ids.set(np.array([1, 1, 3, 0], np.int32))                    # refill, no rebuild
    g.compute(2)
    np.testing.assert_array_equal(emb.numpy(), table[[1, 1, 3, 0]])


@pytest.mark.parametrize("bad", [-1, 5, 2**31 - 1, -2**31])
def test_get_rows_out_of_range_fails_compute_and_graph_recovers(bad):
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(15, dtype=np.float32).reshape(5, 3))
    b = ctx.from_numpy(np.array([0, 1, 2, 3], np.int32)).set_input()
    y = gg.get_rows(a, b).set_output()
    g = gg.Graph().build_forward_expand(y)
    for use_simd, n in _runs():
        was = get_use_simd()
        set_use_simd(use_simd)
        try:
            b.set(np.array([0, bad, 2, 3], np.int32))
            with pytest.raises(gg.GGraphError, match="refused its input"):
                g.compute(n)
            b.set(np.array([4, 3, 2, 0], np.int32))
            g.compute(n)
            np.testing.assert_array_equal(y.numpy(), np.arange(15, dtype=np.float32).reshape(5, 3)[[4, 3, 2, 0]])
        finally:
            set_use_simd(was)
    b.set(np.array([0, bad, 2, 3], np.int32))
    with pytest.raises(gg.GGraphError, match="get_rows: index out of range"):
        g.compute(backend="reference")


def test_get_rows_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 5, 2])
    with pytest.raises(gg.GGraphError, match="get_rows: b must be I32, got F32"):
        gg.get_rows(a, ctx.new_tensor(gg.F32, [3, 2]))
    with pytest.raises(gg.GGraphError, match=r"get_rows: b must be \[n_idx, a.ne\[2\], a.ne\[3\], 1\]"):
        gg.get_rows(a, ctx.new_tensor(gg.I32, [3]))
    with pytest.raises(gg.GGraphError, match="get_rows: rows of a must be contiguous"):
        gg.get_rows(gg.transpose(ctx.new_tensor(gg.F32, [5, 8, 2])), ctx.new_tensor(gg.I32, [3, 2]))
    with pytest.raises(gg.GGraphError, match="get_rows: argument b must be a ggraph Tensor"):
        gg.get_rows(a, [1, 2])


# ---- set_rows ----

def _unique_rows(rng, n_slots, n_rows, ne11, ne12):
    """c values: within each (i11, i12) a set of distinct slots (no row written twice)."""
    c = np.empty((ne12, ne11, n_rows), np.int32)
    for i in range(ne12):
        for j in range(ne11):
            c[i, j] = rng.permutation(n_slots)[:n_rows]
    return c


def _set_rows_expected(a0, b, c):
    out = np.array(a0, dtype=np.float64, copy=True)
    for i3 in range(b.shape[0]):
        for i2 in range(b.shape[1]):
            out[i3, i2, c[i3 % c.shape[0], i2 % c.shape[1]]] = b[i3, i2]
    return out


def _check_set_rows(y, a, a0_values, expected, rtol, what):
    """Resets the destination before every run: the result is a view of a, so a kernel
    that wrote nothing would otherwise see the reference's values."""
    g = gg.Graph().build_forward_expand(y)
    g.compute(backend="reference")
    np.testing.assert_allclose(a.numpy().reshape(expected.shape), expected, rtol=rtol, atol=0, err_msg=what)
    for use_simd, n in _runs():
        was = get_use_simd()
        set_use_simd(use_simd)
        try:
            a.set(a0_values)
            g.compute(n)
        finally:
            set_use_simd(was)
        got = a.numpy().reshape(expected.shape)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0,
                                   err_msg=f"{what} n_threads={n} simd={use_simd}")
        np.testing.assert_array_equal(y.numpy(), a.numpy())


@given(n_embd=st.integers(1, 40), n_slots=st.integers(1, 12), ne2=st.integers(1, 4), ne3=st.integers(1, 3),
       data=st.data(), a_type=types((gg.F32, gg.F16, gg.BF16)), b_type=types((gg.F32, gg.F16)),
       a_layout=layouts(ROW_LAYOUTS), b_layout=layouts(ROW_LAYOUTS), c_layout=layouts(LAYOUTS), seed=seeds())
def test_set_rows_matches_numpy(n_embd, n_slots, ne2, ne3, data, a_type, b_type, a_layout, b_layout,
                                c_layout, seed):
    rng = np.random.default_rng(seed)
    n_rows = data.draw(st.integers(1, n_slots), label="n_rows")
    ne11 = data.draw(st.sampled_from([d for d in range(1, ne2 + 1) if ne2 % d == 0]), label="ne11")
    ne12 = data.draw(st.sampled_from([d for d in range(1, ne3 + 1) if ne3 % d == 0]), label="ne12")
    ctx = gg.Context()
    a = make_tensor(ctx, a_type, [n_embd, n_slots, ne2, ne3], a_layout, rng=rng)
    a0 = a.numpy().copy()
    b = make_tensor(ctx, b_type, [n_embd, n_rows, ne2, ne3], b_layout, rng=rng)
    cv = _unique_rows(rng, n_slots, n_rows, ne11, ne12)
    c = make_tensor(ctx, gg.I32, [n_rows, ne11, ne12], c_layout, values=cv, rng=rng)
    y = gg.set_rows(a, b, c)
    assert y.ne == a.ne and y.nb == a.nb and y.type is a_type and y.base() is a.base()
    bv = b.numpy().reshape(ne3, ne2, n_rows, n_embd).astype(np.float64)
    expected = _set_rows_expected(a0.reshape(ne3, ne2, n_slots, n_embd), bv, cv)
    # rounding into a: F16/BF16 keep 11/8 significant bits (same rounding in numpy and C)
    if a_type is gg.F16:
        expected = expected.astype(np.float16).astype(np.float64)
    elif a_type is gg.BF16:
        expected = gg.tensor.bf16_to_f32(gg.tensor.f32_to_bf16(expected.astype(np.float32))).astype(np.float64)
    _check_set_rows(y, a, a0, expected, 0, f"set_rows {a_type}<-{b_type} {a_layout}/{b_layout}/{c_layout}")


def test_set_rows_into_f16_kv_cache_view_then_attend_rows():
    """The decode-step pattern: K of the new tokens written into slots of an F16 cache
    through a view of one layer's part, then read back with get_rows."""
    rng = np.random.default_rng(3)
    n_embd, n_slots, n_layer, n_tok = 16, 10, 2, 3
    ctx = gg.Context()
    cache = ctx.new_tensor(gg.F16, [n_embd, n_slots, n_layer], name="k_cache")
    before = rng.standard_normal((n_layer, n_slots, n_embd)).astype(np.float32)
    cache.set(before)
    layer = 1
    k_l = gg.view_2d(cache, n_embd, n_slots, cache.nb[1], layer * cache.nb[2])
    k_cur = ctx.from_numpy(rng.standard_normal((n_tok, n_embd)).astype(np.float32)).set_input()
    slots = ctx.from_numpy(np.array([7, 2, 9], np.int32)).set_input()
    written = gg.set_rows(k_l, k_cur, slots)
    back = gg.get_rows(written, slots)           # reads the cache after the write
    g = gg.Graph().build_forward_expand(back)
    for step in range(2):
        g.compute(2)
        now = cache.numpy()
        want = before.astype(np.float16).copy()
        for s, i in zip(slots.numpy(), range(n_tok)):
            want[layer, s] = k_cur.numpy()[i].astype(np.float16)
        np.testing.assert_array_equal(now, want)
        np.testing.assert_array_equal(back.numpy(), want[layer, slots.numpy()].astype(np.float32))
        before = now.astype(np.float32)
        k_cur.set(rng.standard_normal((n_tok, n_embd)).astype(np.float32))
        slots.set(np.array([0, 5, 1], np.int32))


@pytest.mark.parametrize("bad", [-1, 6])
def test_set_rows_out_of_range_fails_compute_and_graph_recovers(bad):
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F16, [4, 6])
    b = ctx.from_numpy(np.ones((2, 4), np.float32))
    c = ctx.from_numpy(np.array([1, bad], np.int32)).set_input()
    y = gg.set_rows(a, b, c)
    g = gg.Graph().build_forward_expand(y)
    for use_simd, n in _runs():
        was = get_use_simd()
        set_use_simd(use_simd)
        try:
            c.set(np.array([1, bad], np.int32))
            with pytest.raises(gg.GGraphError, match="refused its input"):
                g.compute(n)
            a.set(np.zeros((6, 4)))
            c.set(np.array([5, 0], np.int32))
            g.compute(n)
            want = np.zeros((6, 4), np.float32)
            want[[5, 0]] = 1.0
            np.testing.assert_array_equal(a.numpy(), want)
        finally:
            set_use_simd(was)


def test_set_rows_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F16, [8, 6, 2])
    b = ctx.new_tensor(gg.F32, [8, 3, 2])
    c = ctx.new_tensor(gg.I32, [3])
    with pytest.raises(gg.GGraphError, match="set_rows: a must be F32, F16, BF16, got I32"):
        gg.set_rows(ctx.new_tensor(gg.I32, [8, 6, 2]), b, c)
    with pytest.raises(gg.GGraphError, match="set_rows: b must be F32, F16, got BF16"):
        gg.set_rows(a, ctx.new_tensor(gg.BF16, [8, 3, 2]), c)
    with pytest.raises(gg.GGraphError, match="set_rows: c must be I32, got F32"):
        gg.set_rows(a, b, ctx.new_tensor(gg.F32, [3]))
    with pytest.raises(gg.GGraphError, match=r"set_rows: a and b must agree in ne\[0\]"):
        gg.set_rows(a, ctx.new_tensor(gg.F32, [7, 3, 2]), c)
    with pytest.raises(gg.GGraphError, match=r"set_rows: c.ne\[0\] must equal"):
        gg.set_rows(a, b, ctx.new_tensor(gg.I32, [4]))
    with pytest.raises(gg.GGraphError, match="set_rows: c must be"):
        gg.set_rows(a, b, ctx.new_tensor(gg.I32, [3, 3]))
    with pytest.raises(gg.GGraphError, match="set_rows: rows of b must be contiguous"):
        gg.set_rows(ctx.new_tensor(gg.F32, [3, 6, 2]), gg.transpose(ctx.new_tensor(gg.F32, [8, 3, 2])),
                    ctx.new_tensor(gg.I32, [8]))


# ---- argsort and top_k ----

def _values(rng, shape, kind):
    """Row values: distinct normals, many ties, or ties with NaN, infinities and signed zeros."""
    if kind == "normal":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "ties":
        return rng.integers(-3, 4, size=shape).astype(np.float32)
    pool = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5], np.float32)
    return pool[rng.integers(0, len(pool), size=shape)]


@given(ne=shapes(max_side=7), ne0=st.integers(1, 70), type=types((gg.F32, gg.F16, gg.BF16)),
       layout=layouts(LAYOUTS), order=st.sampled_from([gg.SORT_ORDER_ASC, gg.SORT_ORDER_DESC]),
       kind=st.sampled_from(["normal", "ties", "special"]), seed=seeds())
def test_argsort_matches_numpy(ne, ne0, type, layout, order, kind, seed):
    rng = np.random.default_rng(seed)
    ne = [ne0] + ne[1:]
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, values=_values(rng, tuple(reversed(ne)), kind), rng=rng)
    y = gg.argsort(a, order)
    assert y.type is gg.I32 and y.ne == a.ne
    check_graph([y], what=f"argsort {type} {layout} order={order} {kind}")
    # the indices sort the row (checked without the reference)
    x = a.numpy().reshape(-1, ne[0]).astype(np.float64)
    idx = y.numpy().reshape(-1, ne[0])
    for r in range(x.shape[0]):
        assert sorted(idx[r]) == list(range(ne[0]))
        s = x[r, idx[r]]
        s = np.where(np.isnan(s), np.inf if order == gg.SORT_ORDER_ASC else -np.inf, s)  # NaN: past +inf
        with np.errstate(invalid="ignore"):                 # inf - inf between equal infinities
            d = np.diff(s) if order == gg.SORT_ORDER_ASC else -np.diff(s)
        assert np.all(d[np.isfinite(d)] >= 0)


def test_argsort_stable_and_nan_order():
    ctx = gg.Context()
    x = np.array([1.0, np.nan, -0.0, 3.0, 0.0, 1.0, np.inf, np.nan, -np.inf], np.float32)
    a = ctx.from_numpy(x)
    asc, desc = gg.argsort(a), gg.argsort(a, gg.SORT_ORDER_DESC)
    gg.Graph().build_forward_expand(asc).build_forward_expand(desc).compute(1)
    assert asc.numpy().tolist() == [8, 2, 4, 0, 5, 3, 6, 1, 7]
    assert desc.numpy().tolist() == [1, 7, 6, 3, 0, 5, 2, 4, 8]


def _top_k_compare(a_values, k):
    """check_graph compare: the same set as numpy's top k (order-free, like ggml's test),
    then descending order with lower index first on ties, then equal to the reference."""
    x = np.asarray(a_values, np.float64).reshape(-1, np.shape(a_values)[-1])
    isnan = np.isnan(x)
    xs = np.where(isnan, np.inf, x)                          # NaN counts above +inf
    best = np.sort(np.sort(xs, axis=1)[:, ::-1][:, :k], axis=1)
    want_nans = np.minimum(k, isnan.sum(axis=1))

    def compare(got, expected, msg):
        got = got.reshape(-1, k).astype(np.int64)
        assert np.all((got >= 0) & (got < x.shape[1])), f"{msg}: index out of range"
        assert np.all(np.diff(np.sort(got, axis=1), axis=1) != 0), f"{msg}: repeated indices"
        # order-free: the chosen values are the k largest (as multisets), NaNs included
        chosen = np.take_along_axis(xs, got, axis=1)
        bad = ~np.all(np.sort(chosen, axis=1) == best, axis=1)
        bad |= np.take_along_axis(isnan, got, axis=1).sum(axis=1) != want_nans
        assert not bad.any(), f"{msg}: row {np.argmax(bad)} is not the top {k}: {got[np.argmax(bad)]}"
        # order: NaNs first, then descending value; equal values by ascending index
        n = np.take_along_axis(isnan, got, axis=1)
        v = np.where(n, 0.0, np.take_along_axis(x, got, axis=1))
        na, nb, va, vb = n[:, :-1], n[:, 1:], v[:, :-1], v[:, 1:]
        ok = (na & ~nb) | ((na == nb) & ((va > vb) | ((va == vb) & (got[:, :-1] < got[:, 1:]))))
        assert ok.all(), f"{msg}: row {np.argwhere(~ok)[0][0]} out of order: {got[np.argwhere(~ok)[0][0]]}"
        np.testing.assert_array_equal(got, expected.reshape(-1, k), err_msg=msg)
    return compare


@given(ne=shapes(max_side=7), ne0=st.integers(1, 70), type=types((gg.F32, gg.F16, gg.BF16)),
       layout=layouts(LAYOUTS), kind=st.sampled_from(["normal", "ties", "special"]), data=st.data(), seed=seeds())
def test_top_k_matches_numpy(ne, ne0, type, layout, kind, data, seed):
    rng = np.random.default_rng(seed)
    ne = [ne0] + ne[1:]
    k = data.draw(st.integers(1, ne[0]), label="k")
    ctx = gg.Context()
    a = make_tensor(ctx, type, ne, layout, values=_values(rng, tuple(reversed(ne)), kind), rng=rng)
    y = gg.top_k(a, k)
    assert y.type is gg.I32 and y.ne == (k, ne[1], ne[2], ne[3])
    check_graph([y], compare=_top_k_compare(a.numpy(), k), what=f"top_k {type} {layout} k={k} {kind}")


@pytest.mark.parametrize("k", [1, 8, 300, 4099])
def test_top_k_long_rows(k):
    """Rows much longer than k (the heap path), ties included."""
    rng = np.random.default_rng(k)
    n = 4099
    x = np.round(rng.standard_normal((3, n)) * 50).astype(np.float32)
    ctx = gg.Context()
    a = ctx.from_numpy(x, type=gg.F16)
    check_graph([gg.top_k(a, k)], compare=_top_k_compare(a.numpy(), k), what=f"top_k n={n} k={k}")


def test_sort_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [8, 3])
    with pytest.raises(gg.GGraphError, match="argsort: a must be F32, F16, BF16, got I32"):
        gg.argsort(ctx.new_tensor(gg.I32, [8]))
    with pytest.raises(gg.GGraphError, match="argsort: order must be SORT_ORDER_ASC"):
        gg.argsort(a, 2)
    with pytest.raises(gg.GGraphError, match=r"top_k: k must be in \[1, a.ne\[0\]=8\], got 9"):
        gg.top_k(a, 9)
    with pytest.raises(gg.GGraphError, match=r"top_k: k must be in \[1, a.ne\[0\]=8\], got 0"):
        gg.top_k(a, 0)
    with pytest.raises(gg.GGraphError, match="top_k: k must be an integer"):
        gg.top_k(a, 2.5)
    with pytest.raises(gg.GGraphError, match="top_k: a must be F32, F16, BF16, got I32"):
        gg.top_k(ctx.new_tensor(gg.I32, [8]), 2)
