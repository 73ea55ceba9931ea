"""Tensors, contexts and views: ggml's ne/nb vocabulary, memory sharing, set/numpy."""
import numpy as np
import pytest

import ggraph as gg


def test_ne_nb_shape_follow_ggml_order():
    ctx = gg.Context()
    w = ctx.from_numpy(np.zeros((64, 32), np.float32))
    assert w.ne == (32, 64, 1, 1)
    assert w.nb == (4, 128, 8192, 8192)
    assert w.shape == (64, 32)
    assert w.type is gg.F32 and w.n_dims == 2
    h = ctx.new_tensor(gg.F16, [5, 1, 3])
    assert h.nb == (2, 10, 10, 30) and h.shape == (3, 1, 5)
    s = ctx.new_tensor(gg.I32, [1])
    assert s.shape == (1,) and s.nbytes() == 4


def test_type_traits():
    assert (gg.type_size(gg.F32), gg.blck_size(gg.F32)) == (4, 1)
    assert (gg.type_size(gg.F16), gg.type_size(gg.BF16), gg.type_size(gg.I32)) == (2, 2, 4)
    assert gg.as_type("f16") is gg.F16 and gg.as_type(30) is gg.BF16
    assert gg.row_size(gg.F16, 10) == 20
    with pytest.raises(gg.GGraphError, match="unknown tensor type"):
        gg.as_type("F8")


def test_numpy_is_zero_copy_for_contiguous_data():
    ctx = gg.Context()
    t = ctx.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))
    a = t.numpy()
    a[1, 2] = 100.0
    assert t.numpy()[1, 2] == 100.0
    assert np.shares_memory(t.numpy(), t.numpy())


def test_set_and_numpy_round_trip_all_types():
    ctx = gg.Context()
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    for ty, expect in ((gg.F32, x), (gg.F16, x.astype(np.float16).astype(np.float32)),
                       (gg.I32, x.astype(np.int32))):
        t = ctx.new_tensor(ty, [5, 3]).set(x)
        np.testing.assert_array_equal(t.numpy().astype(np.float32), expect.astype(np.float32))
    b = ctx.new_tensor(gg.BF16, [5, 3]).set(x)
    bits = x.view(np.uint32)
    expect = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(b.numpy(), expect)


def test_from_numpy_types():
    ctx = gg.Context()
    assert ctx.from_numpy(np.zeros(3)).type is gg.F32           # float64 narrowed
    assert ctx.from_numpy(np.zeros(3, np.int64)).type is gg.I32
    assert ctx.from_numpy(np.zeros(3, np.float16)).type is gg.F16
    assert ctx.from_numpy(np.ones(4, np.float32), type=gg.BF16).numpy().tolist() == [1, 1, 1, 1]
    with pytest.raises(gg.GGraphError, match="no ggraph type for numpy dtype"):
        ctx.from_numpy(np.zeros(3, np.complex64))
    with pytest.raises(gg.GGraphError, match="at most 4 dimensions"):
        ctx.from_numpy(np.zeros((1, 1, 1, 1, 2), np.float32))
    with pytest.raises(gg.GGraphError, match="empty"):
        ctx.from_numpy(np.zeros((0, 3), np.float32))


def test_new_tensor_errors():
    ctx = gg.Context()
    for ne, msg in (([], "1 to 4"), ([1, 2, 3, 4, 5], "1 to 4"), ([3, 0], ">= 1"), ([-1], ">= 1"),
                    (["a"], "integers"), ([2**40, 2**30], "too many")):
        with pytest.raises(gg.GGraphError, match=msg):
            ctx.new_tensor(gg.F32, ne)


def test_set_checks_shape():
    t = gg.Context().new_tensor(gg.F32, [4, 2])
    with pytest.raises(gg.GGraphError, match="does not fit"):
        t.set(np.zeros((4, 2)))
    t.set(np.ones((1, 1, 2, 4)))                                      # the full 4-d shape is fine
    with pytest.raises(gg.GGraphError, match="non-finite"):
        gg.Context().new_tensor(gg.I32, [2]).set(np.array([1.0, np.nan]))


def test_views_share_memory_and_never_copy():
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    v = gg.view_2d(a, 2, 3, a.nb[1], offset=4)
    assert v.view_src is a and v.view_offs == 4
    np.testing.assert_array_equal(v.numpy(), np.arange(24, dtype=np.float32).reshape(6, 4)[:3, 1:3])
    v.set(np.zeros((3, 2)))
    assert a.numpy()[0, :, 1:3].sum() == 0 and a.numpy()[0, 0, 0] == 0 and a.numpy()[0, 0, 3] == 3
    vv = gg.view_1d(v, 2, offset=8)                                   # a view of a view flattens to a
    assert vv.view_src is a and vv.view_offs == 12
    t = gg.transpose(a)
    assert t.ne == (3, 4, 2, 1) and t.nb == (16, 4, 48, 96) and t.is_transposed()
    np.testing.assert_array_equal(t.numpy(), np.swapaxes(a.numpy(), 1, 2))
    p = gg.permute(a, 2, 0, 1, 3)                                     # dim 0 -> 2, 1 -> 0, 2 -> 1
    assert p.ne == (3, 2, 4, 1)
    np.testing.assert_array_equal(p.numpy(), np.transpose(a.numpy(), (2, 0, 1)))
    r = gg.reshape_3d(a, 6, 2, 2)
    np.testing.assert_array_equal(r.numpy().ravel(), a.numpy().ravel())


def test_view_errors():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    with pytest.raises(gg.GGraphError, match="runs past the end"):
        gg.view_1d(a, 13)
    with pytest.raises(gg.GGraphError, match="runs past the end"):
        gg.view_2d(a, 4, 3, 16, offset=4)
    with pytest.raises(gg.GGraphError, match="offset must be >= 0"):
        gg.view_1d(a, 2, offset=-4)
    with pytest.raises(gg.GGraphError, match="cannot reshape 12 elements"):
        gg.reshape_2d(a, 5, 2)
    with pytest.raises(gg.GGraphError, match="must be contiguous"):
        gg.reshape_1d(gg.transpose(a), 12)
    with pytest.raises(gg.GGraphError, match="permutation of 0..3"):
        gg.permute(a, 0, 0, 1, 2)
    with pytest.raises(gg.GGraphError, match="sizes must be >= 1"):
        gg.view_2d(a, 0, 3, 16)
    with pytest.raises(gg.GGraphError, match="must be a ggraph Tensor"):
        gg.transpose([1, 2])


def test_numpy_before_compute_is_an_error():
    ctx = gg.Context()
    y = gg.rms_norm(ctx.new_tensor(gg.F32, [4]), 1e-6)
    with pytest.raises(gg.GGraphError, match="no memory yet"):
        y.numpy()


def test_tensor_description_is_read_only():
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [4, 3])
    y = gg.rms_norm(a, 1e-6)
    for attr, value in (("ne", (100, 1, 1, 1)), ("nb", (4, 4, 4, 4)), ("type", gg.F16),
                        ("src", ()), ("view_src", None), ("op", "add")):
        with pytest.raises(AttributeError):
            setattr(y, attr, value)
    with pytest.raises(TypeError):
        y.params["eps"] = 1.0
    with pytest.raises(gg.GGraphError, match="Python-only"):
        y.set_py_param("eps", 2.0)
    y.set_py_param("_note", "kept")
    assert y.params["_note"] == "kept" and y.params["eps"] == pytest.approx(1e-6)


def test_ggml_free_functions():
    ctx = gg.Context()
    t = ctx.new_tensor(gg.F16, [6, 4, 2])
    assert (gg.nelements(t), gg.nrows(t), gg.nbytes(t), gg.element_size(t)) == (48, 8, 96, 2)
    assert gg.is_contiguous(t) and not gg.is_contiguous(gg.transpose(t))
    assert gg.format_name(t, "blk.%d.attn_%s", 3, "q").name == "blk.3.attn_q"
    assert gg.set_name(t, "x") is t and t.name == "x"
    assert gg.set_output(gg.set_input(t)).is_input and t.is_output
