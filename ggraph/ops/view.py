"""Views: new shapes and strides over the same bytes. No kernel runs and no
memory is copied; the result's view_src is the tensor that owns the bytes.

    view_2d(a, ne0, ne1, nb1, offset)   nb1 in bytes, offset in bytes from a's first element
    reshape_2d(a, ne0, ne1)             a must be contiguous; same element count
    permute(a, ax0, ax1, ax2, ax3)      source dim i becomes result dim ax_i
    transpose(a)                        swaps dims 0 and 1 (= permute(a, 1, 0, 2, 3))
"""
from __future__ import annotations

from ..tensor import Tensor, contiguous_strides, normalize_ne
from .registry import as_int, check, check_tensor, defop

VIEW = defop("view", view=True)
RESHAPE = defop("reshape", view=True)
PERMUTE = defop("permute", view=True)
TRANSPOSE = defop("transpose", view=True)

__all__ = ["view_1d", "view_2d", "view_3d", "view_4d", "view_tensor",
           "reshape", "reshape_1d", "reshape_2d", "reshape_3d", "reshape_4d",
           "permute", "transpose"]


def _make_view(opdef, op: str, a: Tensor, ne, nb, offset: int, **params) -> Tensor:
    check_tensor(op, "a", a)
    ne = normalize_ne(ne, f"{op} ne")
    offset = as_int(op, "offset", offset)
    check(offset >= 0, op, f"offset must be >= 0, got {offset}", a)
    check(all(int(x) > 0 for x in nb), op, f"strides must be positive, got nb={list(nb)}", a)
    # view_src is flattened to the tensor that owns the bytes, as in ggml
    base_offs = a.view_offs + offset if a.view_src is not None else offset
    base = a.view_src if a.view_src is not None else a
    t = opdef.node(a.type, ne, [a], nb=tuple(int(x) for x in nb), view_src=base, view_offs=base_offs, **params)
    end = base_offs + t.nbytes()
    check(end <= base.nbytes(), op,
          f"view of {t.nbytes()} bytes at offset {base_offs} runs past the end of its source "
          f"({base.nbytes()} bytes)", a)
    return t


def _args(op: str, a, **ints) -> list[int]:
    """a checked first, then each size/stride/offset as an int: nothing below computes with junk."""
    check_tensor(op, "a", a)
    return [as_int(op, k, v) for k, v in ints.items()]


def view_1d(a: Tensor, ne0: int, offset: int = 0) -> Tensor:
    ne0, offset = _args("view_1d", a, ne0=ne0, offset=offset)
    nb = contiguous_strides(a.type, normalize_ne([ne0], "view_1d ne"))
    return _make_view(VIEW, "view_1d", a, [ne0], nb, offset)


def view_2d(a: Tensor, ne0: int, ne1: int, nb1: int, offset: int = 0) -> Tensor:
    ne0, ne1, nb1, offset = _args("view_2d", a, ne0=ne0, ne1=ne1, nb1=nb1, offset=offset)
    nb = (a.type.type_size, nb1, nb1 * ne1, nb1 * ne1)
    return _make_view(VIEW, "view_2d", a, [ne0, ne1], nb, offset)


def view_3d(a: Tensor, ne0: int, ne1: int, ne2: int, nb1: int, nb2: int, offset: int = 0) -> Tensor:
    ne0, ne1, ne2, nb1, nb2, offset = _args("view_3d", a, ne0=ne0, ne1=ne1, ne2=ne2, nb1=nb1, nb2=nb2,
                                            offset=offset)
    nb = (a.type.type_size, nb1, nb2, nb2 * ne2)
    return _make_view(VIEW, "view_3d", a, [ne0, ne1, ne2], nb, offset)


def view_4d(a: Tensor, ne0: int, ne1: int, ne2: int, ne3: int, nb1: int, nb2: int, nb3: int,
            offset: int = 0) -> Tensor:
    ne0, ne1, ne2, ne3, nb1, nb2, nb3, offset = _args("view_4d", a, ne0=ne0, ne1=ne1, ne2=ne2, ne3=ne3,
                                                      nb1=nb1, nb2=nb2, nb3=nb3, offset=offset)
    nb = (a.type.type_size, nb1, nb2, nb3)
    return _make_view(VIEW, "view_4d", a, [ne0, ne1, ne2, ne3], nb, offset)


def view_tensor(a: Tensor) -> Tensor:
    """A view with a's own shape and strides."""
    check_tensor("view_tensor", "a", a)
    return _make_view(VIEW, "view_tensor", a, a.ne, a.nb, 0)


def _reshape(op: str, a: Tensor, ne) -> Tensor:
    check_tensor(op, "a", a)
    ne = normalize_ne(ne, f"{op} ne")
    check(a.is_contiguous(), op, "a must be contiguous (use cont() first)", a)
    n = ne[0] * ne[1] * ne[2] * ne[3]
    check(n == a.nelements(), op, f"cannot reshape {a.nelements()} elements into ne={list(ne)}", a)
    return _make_view(RESHAPE, op, a, ne, contiguous_strides(a.type, ne), 0)


def reshape(a: Tensor, b: Tensor) -> Tensor:
    """a with b's shape (ggml_reshape)."""
    check_tensor("reshape", "b", b)
    return _reshape("reshape", a, b.ne)


def reshape_1d(a: Tensor, ne0: int) -> Tensor:
    return _reshape("reshape_1d", a, [ne0])


def reshape_2d(a: Tensor, ne0: int, ne1: int) -> Tensor:
    return _reshape("reshape_2d", a, [ne0, ne1])


def reshape_3d(a: Tensor, ne0: int, ne1: int, ne2: int) -> Tensor:
    return _reshape("reshape_3d", a, [ne0, ne1, ne2])


def reshape_4d(a: Tensor, ne0: int, ne1: int, ne2: int, ne3: int) -> Tensor:
    return _reshape("reshape_4d", a, [ne0, ne1, ne2, ne3])


def permute(a: Tensor, axis0: int, axis1: int, axis2: int = 2, axis3: int = 3) -> Tensor:
    """Source dimension i moves to result dimension axis_i (ggml_permute)."""
    check_tensor("permute", "a", a)
    axes = [as_int("permute", f"axis{i}", x) for i, x in enumerate((axis0, axis1, axis2, axis3))]
    check(sorted(axes) == [0, 1, 2, 3], "permute", f"axes must be a permutation of 0..3, got {axes}", a)
    ne = [0] * 4
    nb = [0] * 4
    for i, ax in enumerate(axes):
        ne[ax] = a.ne[i]
        nb[ax] = a.nb[i]
    return _make_view(PERMUTE, "permute", a, ne, nb, 0, axes=tuple(axes))


def transpose(a: Tensor) -> Tensor:
    check_tensor("transpose", "a", a)
    ne = [a.ne[1], a.ne[0], a.ne[2], a.ne[3]]
    nb = [a.nb[1], a.nb[0], a.nb[2], a.nb[3]]
    return _make_view(TRANSPOSE, "transpose", a, ne, nb, 0)


@VIEW.case
def _view_case(ctx, rng):
    import numpy as np
    a = ctx.from_numpy(rng.standard_normal((3, 4, 6)).astype(np.float32))
    return view_2d(a, 5, 3, a.nb[1] * 2, offset=4)


@PERMUTE.case
def _permute_case(ctx, rng):
    import numpy as np
    a = ctx.from_numpy(rng.standard_normal((2, 3, 4, 5)).astype(np.float32))
    return permute(a, 2, 0, 3, 1)
