"""Random ill-formed DSL programs: every op call either returns a Tensor or raises
GGraphError, and every graph built from the results either computes or raises
GGraphError; no other exception, and never a crash in C.

Hypothesis draws a sequence of op calls from every public op, with arguments
picked among earlier tensors (of several types, shapes and views) and hostile
values: negative, zero and huge sizes, NaN, wrong Python types, None.
"""
import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ggraph as gg
from ggraph.ops import __all__ as OP_NAMES

OPS = sorted(n for n in OP_NAMES if callable(getattr(gg, n, None)))
MAX_NODE_BYTES = 1 << 24      # graphs with bigger results are built but not computed (memory of a shared box)

SPECIAL_INTS = [-2**63, -2**31, -7, -1, 0, 1, 2, 3, 4, 5, 8, 16, 31, 32, 64, 2**31 - 1, 2**32, 2**62, 2**63]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e-45, 1e38, 0.5, -3.0]


def _leaves(ctx):
    rng = np.random.default_rng(0)
    out = [ctx.from_numpy(rng.standard_normal((2, 3, 4, 8)).astype(np.float32), name="f32_4d"),
           ctx.from_numpy(rng.standard_normal((6, 32)).astype(np.float32), name="f32_2d"),
           ctx.from_numpy(rng.standard_normal(7).astype(np.float32), name="f32_1d"),
           ctx.from_numpy(rng.standard_normal((5, 32)).astype(np.float16), name="f16_2d"),
           ctx.from_numpy(rng.integers(-3, 9, (4,)).astype(np.int32), name="i32_1d"),
           ctx.from_numpy(rng.integers(0, 6, (3, 2)).astype(np.int32), name="i32_2d")]
    q = ctx.new_tensor(gg.Q8_0, [32, 6], name="q8_2d")
    q.set(rng.standard_normal((6, 32)).astype(np.float32))
    out.append(q)
    out.append(gg.view_2d(out[0], 4, 3, 32, 16))          # a strided view
    out.append(gg.transpose(out[1]))                      # a transposed one
    return out


arg = st.one_of(
    st.tuples(st.just("tensor"), st.integers(0, 10**6)),
    st.tuples(st.just("int"), st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-3, 70))),
    st.tuples(st.just("float"), st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(-10, 10))),
    st.tuples(st.just("other"), st.sampled_from([None, "x", [1, 2], (3,), True, 2.5, gg.F32, gg.I32, gg.Q4_0,
                                                 {"a": 1}, b"\x00"])),
)
call = st.tuples(st.sampled_from(OPS), st.lists(arg, max_size=9), st.integers(0, 3))


def _materialize(a, pool):
    kind, v = a
    if kind == "tensor":
        return pool[v % len(pool)]
    return v


def _describe(x):
    return f"{x.type} ne={list(x.ne)} nb={list(x.nb)}" if isinstance(x, gg.Tensor) else repr(x)


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(call, min_size=1, max_size=12), n_out=st.integers(1, 3), threads=st.sampled_from([1, 2]))
def test_random_programs_raise_only_ggraph_error(calls, n_out, threads):
    ctx = gg.Context()
    pool = _leaves(ctx)
    made = []
    for name, args, n_kw_default in calls:
        fn = getattr(gg, name)
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = sum(p.default is inspect.Parameter.empty for p in params)
        n = min(len(params), max(required, len(args)))   # the right count; extra args fill optional ones
        values = [_materialize(args[i], pool) if i < len(args) else pool[i % len(pool)] for i in range(n)]
        try:
            t = fn(*values)
        except gg.GGraphError:
            continue
        except Exception as e:   # noqa: BLE001 - the point of the test
            pytest.fail(f"{name}({', '.join(map(_describe, values))}) raised {type(e).__name__}: {e}")
        if isinstance(t, gg.Tensor):
            pool.append(t)
            made.append(t)
    if not made:
        return
    outs = made[-n_out:]
    if any(t.nbytes() > MAX_NODE_BYTES for t in made):
        return
    g = gg.Graph()
    try:
        for t in outs:
            g.build_forward_expand(t)
        g.compute(threads)
        for t in outs:
            t.numpy()
    except gg.GGraphError:
        pass
    except Exception as e:   # noqa: BLE001
        pytest.fail(f"graph of {[t.op for t in g.nodes]} raised {type(e).__name__}: {e}")


@pytest.mark.parametrize("make", [
    lambda a: gg.view_1d(a, 10**6),                          # longer than its source
    lambda a: gg.view_1d(a, 4, 2**62),                       # offset far past the end
    lambda a: gg.view_1d(a, 4, -4),                          # negative offset
    lambda a: gg.view_2d(a, 8, 4, 4 * 64, 0),                # rows stepping past the end
    lambda a: gg.view_2d(a, 8, 2, -32, 64),                  # negative stride
    lambda a: gg.view_1d(gg.view_1d(a, 16, 4 * 180), 16, 4 * 10),   # a view of a view, past the base
    lambda a: gg.reshape_2d(a, 7, 30),                       # element count differs
    lambda a: gg.reshape_1d(a, -192),
    lambda a: gg.view_4d(a, 4, 4, 4, 4, 16, 64, 2**62),      # huge stride
    lambda a: gg.repeat_4d(a, 192 * 2**40, 2**30, 1, 1),   # too many elements
])
def test_bad_views_and_sizes_raise_at_build_time(make):
    a = gg.Context().from_numpy(np.zeros(192, np.float32))
    with pytest.raises(gg.GGraphError):
        make(a)


def test_cycle_through_a_view_is_refused():
    """Sources are fixed at construction, so a cycle needs a forged src; the graph refuses it."""
    ctx = gg.Context()
    a = ctx.from_numpy(np.ones(8, np.float32))
    b = gg.add(a, a)
    v = gg.view_1d(b, 8)
    c = gg.mul(v, a)
    object.__setattr__(b, "_src", (c, a))        # b <- c <- v <- b
    with pytest.raises(gg.GGraphError, match="cycle in the graph"):
        gg.Graph().build_forward_expand(c)


@pytest.mark.parametrize("shape", [[0], [-1, 2], [2**40, 2**40], [1, 2, 3, 4, 5], ["a"], [2.5]])
def test_bad_tensor_shapes(shape):
    with pytest.raises(gg.GGraphError):
        gg.Context().new_tensor(gg.F32, shape)
