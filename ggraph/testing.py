"""Helpers to test ops the way ggraph tests its own: against numpy references,
over random shapes and memory layouts, at several thread counts, on the SIMD
and the scalar paths.

    t = make_tensor(ctx, gg.F16, [5, 3, 2], layout="permuted", rng=rng)
    check_graph([gg.soft_max_ext(t, None, 0.5, 0.0)], rtol=1e-5, atol=1e-6)

Layouts (all hold the same values, only nb and the bytes around differ):
  contiguous  packed rows
  gapped      rows of a wider, taller tensor: gaps between rows and planes
  permuted    dims 1..3 stored in another order; rows (dim 0) stay packed
  transposed  dim 0 is not the innermost in memory (nb[0] > nb[1])
"""
from __future__ import annotations

import numpy as np

from .backend.ffi import get_use_simd, set_use_simd
from .context import Context
from .errors import GGraphError
from .graph import Graph
from .ops.registry import get_op
from .ops.view import permute, view_4d
from .tensor import Tensor
from .types import BF16, F16, F32, I32, GGType

LAYOUTS = ("contiguous", "gapped", "permuted", "transposed")
ROW_LAYOUTS = ("contiguous", "gapped", "permuted")       # rows stay contiguous


def _perm_for(layout: str, rng) -> list[int]:
    if layout == "transposed":
        return [1, 0, 2, 3]
    rest = [1, 2, 3]
    while rest == [1, 2, 3]:
        rest = list(rng.permutation([1, 2, 3]))
    return [0] + [int(x) for x in rest]


def make_tensor(ctx: Context, type: GGType, ne, layout: str = "contiguous", values=None, rng=None,
                name: str = "") -> Tensor:
    """A tensor of `type` and sizes `ne` (ggml order) in the given memory layout.

    values: an array of numpy shape ne[::-1] (or None for standard normal
    values from `rng`; I32 tensors get small non-negative integers).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    ne = list(ne) + [1] * (4 - len(ne))
    if layout == "contiguous":
        t = ctx.new_tensor(type, ne, name=name)
    elif layout == "gapped":
        g0 = type.blck_size * int(rng.integers(1, 3))
        base = ctx.new_tensor(type, [ne[0] + g0, ne[1] + 1, ne[2], ne[3] + 1], name=name + ".base")
        offset = type.type_size * int(rng.integers(0, g0 // type.blck_size + 1))
        t = view_4d(base, ne[0], ne[1], ne[2], ne[3], base.nb[1], base.nb[2], base.nb[3], offset)
    elif layout in ("permuted", "transposed"):
        if layout == "transposed" and type.blck_size != 1:
            raise GGraphError(f"a transposed layout needs a plain type, not {type}")
        axes = _perm_for(layout, rng)
        src_ne = [ne[axes[i]] for i in range(4)]
        base = ctx.new_tensor(type, src_ne, name=name + ".base")
        t = permute(base, *axes)
    else:
        raise GGraphError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
    if name:
        t.name = name
    if values is None:
        shape = tuple(reversed(ne))
        if type is I32:
            values = rng.integers(0, 8, size=shape).astype(np.int32)
        else:
            values = rng.standard_normal(shape).astype(np.float32)
    t.set(np.asarray(values).reshape(tuple(reversed(ne))))
    return t


def describe(outputs) -> str:
    """The graph behind `outputs`, one node per line, for failure messages."""
    g = Graph()
    for o in outputs:
        g.build_forward_expand(o)
    lines = []
    for n in g.nodes:
        if n.op in ("view", "permute", "transpose", "reshape"):
            continue
        srcs = ", ".join(
            f"{s.type} ne={list(s.ne)} nb={list(s.nb)}{'' if s.is_contiguous() else ' (non-contiguous)'}"
            for s in n.src if s is not None)
        params = {k: v for k, v in n.params.items() if not k.startswith("_")}
        lines.append(f"{n.op}({srcs}) params={params} -> {n.type} ne={list(n.ne)}")
    return "\n  ".join(lines)


def assert_close(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float, what: str = "") -> None:
    """NaN where expected is NaN, the same infinities, |a - e| <= atol + rtol * |e| elsewhere."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        i = np.unravel_index(np.argmax(nan_a != nan_e), a.shape)
        raise AssertionError(f"{what}: NaN mismatch at {i}: got {a[i]}, expected {e[i]}")
    inf_e = np.isinf(e)
    if not np.array_equal(np.isinf(a), inf_e) or not np.array_equal(a[inf_e], e[inf_e]):
        i = np.unravel_index(np.argmax((np.isinf(a) != inf_e) | (np.isinf(a) & (a != e))), a.shape)
        raise AssertionError(f"{what}: infinity mismatch at {i}: got {a[i]}, expected {e[i]}")
    fin = ~(nan_e | inf_e)
    with np.errstate(invalid="ignore"):
        err = np.where(fin, np.abs(a - e), 0.0)
    bound = atol + rtol * np.abs(np.where(fin, e, 0.0))
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), a.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {a.size} elements off (rtol={rtol}, atol={atol}); "
            f"worst at index {tuple(int(x) for x in i)}: got {a[i]!r}, expected {e[i]!r}, "
            f"error {err[i]:.3g} > bound {bound[i]:.3g}")


def check_graph(outputs, *, rtol: float = 1e-5, atol: float = 1e-6, threads=(1, 2, 3, 4),
                simd=(True, False), compare=None, what: str = "") -> list[np.ndarray]:
    """Computes `outputs` with the numpy references and with the C runtime at
    each thread count (SIMD and scalar paths) and asserts they agree.

    compare(actual, expected, msg) replaces the default elementwise check
    (for results defined only up to order, like top_k). Returns the reference
    values.
    """
    outputs = list(outputs)
    g = Graph()
    for o in outputs:
        o.set_output()
        g.build_forward_expand(o)
    # ops that write into a source (cpy, set_rows) leave their result in memory the
    # reference run already filled: put the old bytes back before each C run
    written = {}
    for n in g.nodes:
        od = get_op(n.op)
        if od.writes_src is not None and n.src[od.writes_src] is not None:
            b = n.src[od.writes_src].base()
            if b._buf is not None:
                written[b.id] = (b, b._buf[b._offs:b._offs + b.nbytes()].copy())
    g.compute(backend="reference")
    expected = [np.array(o.numpy(), copy=True) for o in outputs]
    desc = describe(outputs)
    was = get_use_simd()
    try:
        for use_simd in simd:
            set_use_simd(use_simd)
            for n in threads:
                for o in outputs:
                    if o.view_src is None:
                        o._raw()[...] = 0       # a kernel that writes nothing must not pass
                for b, saved in written.values():
                    b._buf[b._offs:b._offs + saved.nbytes] = saved
                g.plan().poison_work(n)
                g.compute(n_threads=n)
                for k, (o, e) in enumerate(zip(outputs, expected)):
                    msg = (f"{what + ': ' if what else ''}output {k} with n_threads={n}, "
                           f"{'simd' if use_simd else 'scalar'}\n  {desc}")
                    got = o.numpy()
                    if compare is not None:
                        compare(got, e, msg)
                    elif o.type is I32:
                        if not np.array_equal(got, e):
                            i = np.argwhere(got != e)[0]
                            raise AssertionError(f"{msg}: int mismatch at {tuple(i)}: got {got[tuple(i)]}, "
                                                 f"expected {e[tuple(i)]}")
                    else:
                        assert_close(got, e, rtol=rtol, atol=atol, what=msg)
    finally:
        set_use_simd(was)
    return expected


def float_types(with_bf16: bool = False) -> tuple[GGType, ...]:
    return (F32, F16, BF16) if with_bf16 else (F32, F16)


# ---- hypothesis strategies (hypothesis is a test dependency, imported lazily) ----

def shapes(max_dims: int = 4, min_side: int = 1, max_side: int = 9, min_dims: int = 1):
    """ne lists in ggml order, padded to 4, with 1s and odd sizes."""
    from hypothesis import strategies as st
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(
        lambda ne: ne + [1] * (4 - len(ne)))


def layouts(allowed=LAYOUTS):
    from hypothesis import strategies as st
    return st.sampled_from(list(allowed))


def types(allowed=(F32, F16)):
    from hypothesis import strategies as st
    return st.sampled_from(list(allowed))


def seeds():
    from hypothesis import strategies as st
    return st.integers(0, 2**32 - 1)
