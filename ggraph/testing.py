"""Property tests for ops and graphs: ggraph's own test suite uses these, and
so can you, for your graphs and custom ops.

    from hypothesis import strategies as st
    import ggraph as gg
    from ggraph.testing import check_op, tensors

    check_op(lambda ctx, x: gg.silu(x),                 # the graph under test
             lambda x: x / (1 + np.exp(-x)),            # numpy reference
             strategies=[tensors(type=gg.F32)], rtol=1e-5, atol=1e-6)

check_op draws inputs (shapes, memory layouts, edge-case values), builds the
graph, computes it at each thread count on the SIMD and the scalar paths and
compares every run with the reference; a failure names the inputs' shapes
and layouts, the thread count, the worst element, and hypothesis prints the
example that reproduces it.

Layouts (all hold the same values, only nb and the bytes around differ):
  contiguous  packed rows
  gapped      rows of a wider, taller tensor: gaps between rows and planes
  permuted    dims 1..3 stored in another order; rows (dim 0) stay packed
  transposed  dim 0 is not the innermost in memory (nb[0] > nb[1])

Lower level: make_tensor builds one tensor in a given layout, check_graph
compares a graph with the ops' own numpy references, assert_close compares
two arrays.
"""
from __future__ import annotations

import re

import numpy as np

from .backend.ffi import ffi, get_use_simd, set_use_simd
from .context import Context
from .errors import GGraphError
from .graph import Graph
from .ops.registry import get_op, op_label
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
        params = {k: v for k, v in n.params.items() if not k.startswith("_") and not isinstance(v, ffi.CData)}
        lines.append(f"{op_label(n)}({srcs}) params={params} -> {n.type} ne={list(n.ne)}")
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
            f"worst at index {tuple(int(x) for x in i)}: got {a[i]:.8g}, expected {e[i]:.8g}, "
            f"error {err[i]:.3g} > bound {bound[i]:.3g}")


def layout_of(t: Tensor) -> str:
    """Which of LAYOUTS a tensor's strides look like (for failure messages)."""
    if t.is_contiguous():
        return "contiguous"
    if t.ne[0] > 1 and t.ne[1] > 1 and t.nb[0] > t.nb[1]:
        return "transposed"
    if t.is_permuted():
        return "permuted"
    return "gapped"


def _written_snapshot(g: Graph) -> dict:
    """The bytes of sources that ops write into (cpy, set_rows), to put back before each run."""
    written = {}
    for n in g.nodes:
        od = get_op(n.op)
        if od.writes_src is not None and n.src[od.writes_src] is not None:
            b = n.src[od.writes_src].base()
            if b._buf is not None:
                written[b.id] = (b, b._buf[b._offs:b._offs + b.nbytes()].copy())
    return written


def _compare(got, expected, o: Tensor, msg: str, *, rtol, atol, compare) -> None:
    if compare is not None:
        compare(got, expected, msg)
    elif o.type is I32:
        if not np.array_equal(got, expected):
            i = tuple(int(x) for x in np.argwhere(got != expected)[0])
            raise AssertionError(f"{msg}: int mismatch at index {i}: got {got[i]}, expected {expected[i]}")
    else:
        assert_close(got, expected, rtol=rtol, atol=atol, what=msg)


def _verify(g: Graph, outputs, expected, written, *, rtol, atol, threads, simd, compare, header: str) -> None:
    """Runs g with the C runtime at each thread count on each path; compares outputs with expected."""
    g.plan()
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
                    msg = f"{header}\n  output {k} with n_threads={n}, {'simd' if use_simd else 'scalar'} path"
                    _compare(o.numpy(), e, o, msg, rtol=rtol, atol=atol, compare=compare)
    finally:
        set_use_simd(was)


def check_graph(outputs, *, rtol: float = 1e-5, atol: float = 1e-6, threads=(1, 2, 3, 4),
                simd=(True, False), compare=None, what: str = "") -> list[np.ndarray]:
    """Computes `outputs` with the ops' numpy references and with the C runtime
    at each thread count (SIMD and scalar paths) and asserts they agree.

    compare(actual, expected, msg) replaces the default elementwise check
    (for results defined only up to order, like top_k). Returns the reference
    values.
    """
    outputs = list(outputs)
    g = Graph()
    for o in outputs:
        o.set_output()
        g.build_forward_expand(o)
    # ops that write into a source leave their result in memory the reference
    # run already filled: the snapshot is taken before it
    written = _written_snapshot(g)
    g.compute(backend="reference")
    expected = [np.array(o.numpy(), copy=True) for o in outputs]
    header = f"{what + ': ' if what else ''}graph\n  {describe(outputs)}"
    _verify(g, outputs, expected, written, rtol=rtol, atol=atol, threads=threads, simd=simd,
            compare=compare, header=header)
    return expected


def _describe_input(i: int, x) -> str:
    if isinstance(x, Tensor):
        return (f"input {i}: {x.type} ne={list(x.ne)} {layout_of(x)} nb={list(x.nb)}"
                + (f" '{x.name}'" if x.name else ""))
    r = repr(x)
    return f"input {i}: {r if len(r) < 80 else r[:77] + '...'}"


def _inputs_for_reference(inputs) -> list:
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            out.append(np.array(x.numpy(), copy=True))
        elif isinstance(x, np.ndarray):
            out.append(x.copy())
        else:
            out.append(x)
    return out


def _as_expected(e, o: Tensor, k: int, header: str) -> np.ndarray:
    e = np.asarray(e)
    if e.shape != o.shape:
        strip = lambda sh: tuple(sh[next((i for i, d in enumerate(sh) if d != 1), len(sh)):])  # noqa: E731
        if e.size != o.nelements() or strip(e.shape) != strip(o.shape):
            raise AssertionError(f"{header}\n  the reference returned shape {e.shape} for output {k}, "
                                 f"but the graph's output has shape {o.shape} (ne={list(o.ne)})")
        e = e.reshape(o.shape)
    return e


def check_op_once(build, reference, inputs, *, rtol: float = 1e-5, atol: float = 1e-6, threads=(1, 2, 4),
                  simd=(True, False), compare=None, what: str = "") -> list[np.ndarray]:
    """check_op's check for one set of inputs (tensors or plain values): build
    the graph with build(ctx, *inputs), compare it at each thread count and
    path with reference(*numpy_inputs). Returns the reference values."""
    inputs = tuple(inputs)
    header = (f"{what + ': ' if what else ''}check_op with\n  "
              + "\n  ".join(_describe_input(i, x) for i, x in enumerate(inputs)))
    ref_inputs = _inputs_for_reference(inputs)
    out = build(Context(), *inputs)
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    for k, o in enumerate(outputs):
        if not isinstance(o, Tensor):
            raise GGraphError(f"check_op: build must return a Tensor or a list of them, got "
                              f"{type(o).__name__} for output {k}")
    g = Graph()
    for o in outputs:
        o.set_output()
        g.build_forward_expand(o)
    written = _written_snapshot(g)
    with np.errstate(all="ignore"):
        exp = reference(*ref_inputs)
    exps = list(exp) if isinstance(exp, (list, tuple)) else [exp]
    if len(exps) != len(outputs):
        raise AssertionError(f"{header}\n  build returned {len(outputs)} outputs, reference {len(exps)}")
    header += f"\n  graph\n  {describe(outputs)}"
    expected = [_as_expected(e, o, k, header) for k, (e, o) in enumerate(zip(exps, outputs))]
    _verify(g, outputs, expected, written, rtol=rtol, atol=atol, threads=threads, simd=simd,
            compare=compare, header=header)
    return expected


def check_op(build, reference, *, strategies, rtol: float = 1e-5, atol: float = 1e-6, threads=(1, 2, 4),
             simd=(True, False), compare=None, settings=None, reproduce=None, what: str = "") -> None:
    """A property test: for inputs drawn from `strategies`, the graph that
    build(ctx, *inputs) returns (a tensor or a list of them) computes, at each
    thread count and on the SIMD and scalar paths, what reference(*inputs as
    numpy arrays) returns, within atol + rtol * |expected|.

    strategies: one strategy per input (tensors(...), or any strategy: its
    values are passed as they are, e.g. an eps), or a single strategy that
    draws the whole tuple of inputs (for inputs whose shapes depend on each
    other: see docs/testing.md). settings: a hypothesis settings object
    (default: the loaded profile). reproduce: the (version, blob) pair a
    failure report gives, to replay exactly that example. Call it from a
    plain test function, not from one decorated with @given.
    """
    from hypothesis import given, settings as hsettings, strategies as st
    from hypothesis.strategies import SearchStrategy
    if isinstance(strategies, SearchStrategy):
        strat = strategies.map(lambda x: x if isinstance(x, tuple) else (x,))
    else:
        strategies = list(strategies)
        bad = [i for i, s in enumerate(strategies) if not isinstance(s, SearchStrategy)]
        if bad:
            raise GGraphError(f"check_op: strategies must be hypothesis strategies; item {bad[0]} is "
                              f"{type(strategies[bad[0]]).__name__} (wrap constants in st.just)")
        strat = st.tuples(*strategies)

    def check_op_example(inputs):
        check_op_once(build, reference, inputs, rtol=rtol, atol=atol, threads=threads, simd=simd,
                      compare=compare, what=what)

    test = given(strat)(check_op_example)
    if reproduce is not None:
        from hypothesis import reproduce_failure
        test = reproduce_failure(*reproduce)(test)
    # print_blob: hypothesis reports the blob that replays the failing example
    test = (hsettings(settings, print_blob=True) if settings is not None else hsettings(print_blob=True))(test)
    try:
        test()
    except Exception as e:
        notes = "\n".join(getattr(e, "__notes__", []))
        m = re.search(r"@reproduce_failure\((.*?)\)", notes)
        if m and hasattr(e, "add_note"):
            e.add_note(f"Replay exactly this example: check_op(..., reproduce=({m.group(1)}))")
        raise


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


EDGE_CASES = ("zeros", "large", "tiny", "negative")
# "large" and "tiny" magnitudes per type: far from 1, still finite and
# representable (tiny F16 values are subnormal)
_LARGE = {"F32": 1e4, "F16": 1e3, "BF16": 1e4}
_TINY = {"F32": 1e-30, "F16": 1e-6, "BF16": 1e-30}


def values(type: GGType, ne, *, edge_cases=EDGE_CASES, allow_nan: bool = False, allow_inf: bool = False,
           large: float | None = None, tiny: float | None = None, int_range=(0, 8)):
    """Arrays of numpy shape ne[::-1] for a tensor of `type`: standard normal
    values with, in some examples, a share of them replaced by the drawn edge
    cases (zeros, large, tiny, negative; NaN and inf only when allowed). I32
    tensors get integers in int_range (default: small non-negative, index-like).
    Shrinks towards plain normal values."""
    from hypothesis import strategies as st
    shape = tuple(reversed(list(ne) + [1] * (4 - len(ne))))
    kinds = list(edge_cases) + (["nan"] if allow_nan else []) + (["inf"] if allow_inf else [])
    unknown = sorted(set(kinds) - set(EDGE_CASES) - {"nan", "inf"})
    if unknown:
        raise GGraphError(f"values: unknown edge cases {unknown}; use some of {EDGE_CASES}")
    big = large if large is not None else _LARGE.get(type.name, 1e4)
    small = tiny if tiny is not None else _TINY.get(type.name, 1e-30)

    @st.composite
    def draw_values(draw):
        rng = np.random.default_rng(draw(seeds()))
        if type is I32:
            return rng.integers(int_range[0], int_range[1], size=shape).astype(np.int32)
        x = rng.standard_normal(shape)
        picked = draw(st.lists(st.sampled_from(kinds), unique=True, max_size=len(kinds))) if kinds else []
        for kind in picked:
            share = draw(st.sampled_from([0.1, 0.5, 1.0]))
            mask = rng.random(shape) < share
            sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
            if kind == "zeros":
                x = np.where(mask, 0.0, x)
            elif kind == "large":
                x = np.where(mask, sign * big * rng.uniform(0.5, 1.0, shape), x)
            elif kind == "tiny":
                x = np.where(mask, sign * small * rng.uniform(1.0, 10.0, shape), x)
            elif kind == "negative":
                x = np.where(mask, -np.abs(x), x)
            elif kind == "nan":
                x = np.where(mask, np.nan, x)
            elif kind == "inf":
                x = np.where(mask, sign * np.inf, x)
        return x.astype(np.float32)

    return draw_values()


def tensors(ctx: Context | None = None, type=None, shape=None, contiguous: bool = False, *, layouts=None,
            max_dims: int = 4, min_side: int = 1, max_side: int = 9, **value_kw):
    """Tensors for property tests: a drawn type (or `type`: a GGType or a
    strategy; default F32 or F16), shape (or `shape`: an ne list or a
    strategy; default shapes(max_dims, min_side, max_side)), memory layout
    (contiguous only if contiguous=True, else any of `layouts`, default all
    four; transposed only for plain types) and values (see values(): edge
    cases included, no NaN unless allow_nan=True).

    ctx: the Context that holds them (default: a new one per tensor).
    """
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
    type_st = types() if type is None else type if isinstance(type, SearchStrategy) else st.just(type)
    shape_st = (shapes(max_dims, min_side, max_side) if shape is None
                else shape if isinstance(shape, SearchStrategy) else st.just(list(shape)))
    allowed = ("contiguous",) if contiguous else tuple(layouts or LAYOUTS)
    for lay in allowed:
        if lay not in LAYOUTS:
            raise GGraphError(f"tensors: unknown layout {lay!r}; use some of {LAYOUTS}")

    @st.composite
    def draw_tensor(draw):
        from .types import as_type
        t = as_type(draw(type_st))
        ne = list(draw(shape_st))
        ne = ne + [1] * (4 - len(ne))
        if ne[0] % t.blck_size:
            raise GGraphError(f"tensors: ne[0]={ne[0]} is not a multiple of the {t} block size {t.blck_size}")
        ok = [lay for lay in allowed if lay != "transposed" or t.blck_size == 1]
        layout = draw(st.sampled_from(ok or ["contiguous"]))
        vals = draw(values(t, ne, **value_kw))
        rng = np.random.default_rng(draw(seeds()))
        return make_tensor(ctx if ctx is not None else Context(), t, ne, layout, values=vals, rng=rng)

    return draw_tensor()
