"""User functions as graph nodes: map_custom1/2/3, with ggml's meaning.

    y = gg.map_custom1(a, fn, n_tasks=-1, userdata=None, type=None, ne=None)
    y = gg.map_custom2(a, b, fn, ...)
    y = gg.map_custom3(a, b, c, fn, ...)

The node's result has a declared type and shape (default: a's), gets memory
from the graph allocator like any node, and shows in DOT dumps and profiles
under the function's name ("custom:<name>"). `fn` is either

- a Python callable fn(dst, a, [b, c,] ith, nth[, userdata]) on numpy views
  (dst writable, with the tensor's real strides; the sources read-only).
  The C executor calls it from each of the node's threads, taking the GIL
  for the call only: correct and convenient, but far slower than a kernel.
  An exception fails the compute with a GGraphError carrying its traceback;
  the graph stays usable.
- a gg.CKernel: C source compiled once, called like ggraph's own kernels
  inside the graph's single C call, no Python on the path.

n_tasks: threads the function may use, -1 for all of them (ggml's
GGML_N_TASKS_MAX); rows are split by ith/nth inside the function.
inplace=True lets the allocator hand the result a's memory when nobody else
reads a; declare it only if the function is right when dst is a.
"""
from __future__ import annotations

import inspect
import itertools
import threading
import traceback
import weakref

import numpy as np

from ..backend.ffi import ffi
from ..errors import GGraphError
from ..tensor import BF16, Tensor, bf16_to_f32, f32_to_bf16, normalize_ne
from ..types import as_type
from .registry import N_TASKS_ALL, as_int, check_tensor, defop

__all__ = ["map_custom1", "map_custom2", "map_custom3"]


def _tasks(node: Tensor, n_threads: int) -> int:
    n = node.params["_n_tasks"]
    return n_threads if n == N_TASKS_ALL else n


def _inplace(node: Tensor) -> bool:
    return node.params["_inplace"]


MAP_CUSTOM = {k: defop(f"map_custom{k}", params="gg_custom_params", n_tasks=_tasks, inplace=_inplace)
              for k in (1, 2, 3)}


# ---- Python functions, called back from the C executor ----

_SLOTS: "weakref.WeakValueDictionary[int, _PyCustom]" = weakref.WeakValueDictionary()
_slot_ids = itertools.count()
_tls = threading.local()


def in_callback() -> bool:
    """True while this thread runs a custom op's Python function."""
    return getattr(_tls, "depth", 0) > 0


class _PyCustom:
    """One node's Python function: what the C callback needs to call it."""

    def __init__(self, fn, userdata, has_userdata: bool, label: str):
        self.fn = fn
        self.userdata = userdata
        self.has_userdata = has_userdata
        self.label = label
        self.node_ref = None
        self.error: tuple[BaseException, str] | None = None
        self.lock = threading.Lock()
        self.slot = next(_slot_ids) & 0x7FFFFFFF
        _SLOTS[self.slot] = self

    def call(self, c_dst, ith: int, nth: int) -> None:
        node = self.node_ref() if self.node_ref is not None else None
        if node is None:
            raise GGraphError(f"custom op {self.label}: its node no longer exists")
        dst = node._raw()
        if dst.ctypes.data != int(ffi.cast("uintptr_t", c_dst.data)):
            # the node was planned again by another graph: its Python memory moved
            raise GGraphError(f"custom op {self.label}: the node's memory belongs to another graph; "
                              f"compute the graph that planned it last, or rebuild")
        args = [dst]
        for s in node.src:
            v = s._raw()
            v.flags.writeable = False
            args.append(v)
        args += [ith, nth]
        if self.has_userdata:
            args.append(self.userdata)
        self.fn(*args)

    def record(self, e: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = (e, "".join(traceback.format_exception(type(e), e, e.__traceback__)))


@ffi.def_extern()
def gg_custom_py_call(p, dst, slot):
    reg = _SLOTS.get(slot)
    if reg is None:
        return 1
    _tls.depth = getattr(_tls, "depth", 0) + 1
    try:
        reg.call(dst, p.ith, p.nth)
        return 0
    except BaseException as e:        # noqa: BLE001 - everything goes back to the caller of compute
        reg.record(e)
        return 1
    finally:
        _tls.depth -= 1


def raise_failure(index: int, node: Tensor) -> None:
    """Raises the GGraphError for a custom op whose Python function failed at node `index`."""
    reg = node.params.get("_py")
    err = None
    if reg is not None:
        with reg.lock:
            err, reg.error = reg.error, None
    if err is None:
        raise GGraphError(f"compute failed at node {index} {node.label()}: custom op {op_name(node)} failed")
    exc, text = err
    raise GGraphError(f"compute failed at node {index} {node.label()}: the Python function of custom op "
                      f"{op_name(node)} raised {type(exc).__name__}: {exc}\n{text.rstrip()}") from exc


def op_name(node: Tensor) -> str:
    return node.params.get("_label", node.op)


# ---- the DSL ----

def _function_name(fn) -> str:
    return getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _map_custom(k: int, srcs, fn, n_tasks, userdata, type, ne, inplace, name) -> Tensor:
    from ..ckernel import CKernel
    op = f"map_custom{k}"
    for arg, s in zip("abc", srcs):
        check_tensor(op, arg, s)
    if isinstance(n_tasks, bool):
        raise GGraphError(f"{op}: n_tasks must be an integer >= 1 or -1 (all threads), got {n_tasks!r}")
    n_tasks = as_int(op, "n_tasks", n_tasks)
    if n_tasks != N_TASKS_ALL and n_tasks < 1:
        raise GGraphError(f"{op}: n_tasks must be >= 1 or -1 (all threads), got {n_tasks}")
    a = srcs[0]
    try:
        out_type = a.type if type is None else as_type(type)
    except (GGraphError, KeyError, TypeError, ValueError) as e:
        raise GGraphError(f"{op}: bad output type {type!r}: {e}") from None
    try:
        out_ne = a.ne if ne is None else normalize_ne(ne, "ne")
    except GGraphError as e:
        raise GGraphError(f"{op}: bad declared output shape: {e}") from None
    if out_ne[0] % out_type.blck_size:
        raise GGraphError(f"{op}: declared ne[0]={out_ne[0]} is not a multiple of the {out_type} block size "
                          f"{out_type.blck_size}")
    inplace = bool(inplace)
    if inplace and (out_type is not a.type or tuple(out_ne) != a.ne):
        raise GGraphError(f"{op}: inplace=True needs the result to have a's type and shape "
                          f"({a.type} ne={list(a.ne)}), got {out_type} ne={list(out_ne)}")

    params = {"_n_tasks": n_tasks, "_inplace": inplace}
    if isinstance(fn, CKernel):
        label = name or fn.name
        params.update(fn=fn.fn_ptr, py_slot=-1, _kernel=fn)
        if userdata is None:
            params["userdata"] = ffi.NULL
        elif isinstance(userdata, np.ndarray):
            params["userdata"] = ffi.cast("void *", userdata.ctypes.data)
            params["_userdata"] = userdata          # kept alive with the node
        elif isinstance(userdata, ffi.CData):
            params["userdata"] = ffi.cast("void *", userdata)
            params["_userdata"] = userdata
        else:
            raise GGraphError(f"{op}: a CKernel's userdata must be a numpy array or a cffi pointer "
                              f"(ggraph.backend.ffi.ffi), got {_type_name(userdata)}")
    elif callable(fn):
        label = name or _function_name(fn)
        for arg, t in zip("abc", [*srcs]):
            if t.type.np_dtype is None:
                raise GGraphError(f"{op}: a Python function sees numpy views, and {arg} is a block type "
                                  f"({t.type}); use a CKernel or dequantize first")
        if out_type.np_dtype is None:
            raise GGraphError(f"{op}: a Python function cannot write block type {out_type}; use a CKernel")
        has_userdata = userdata is not None
        n_args = 1 + k + 2 + has_userdata
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None                  # builtins without a signature: trust them
        if sig is not None:
            try:
                sig.bind(*range(n_args))
            except TypeError:
                names = ["dst", *"abc"[:k], "ith", "nth"] + (["userdata"] if has_userdata else [])
                raise GGraphError(f"{op}: {label} must take {n_args} positional arguments "
                                  f"fn({', '.join(names)}), but its signature is {label}{sig}") from None
        reg = _PyCustom(fn, userdata, has_userdata, f"custom:{label}")
        params.update(fn=ffi.NULL, userdata=ffi.NULL, py_slot=reg.slot, _py=reg)
    else:
        raise GGraphError(f"{op}: fn must be a Python callable or a gg.CKernel, got {_type_name(fn)}")
    params["_label"] = f"custom:{label}"
    node = MAP_CUSTOM[k].node(out_type, out_ne, srcs, **params)
    if params.get("_py") is not None:
        params["_py"].node_ref = weakref.ref(node)
    return node


def _type_name(x) -> str:
    return type(x).__name__


def map_custom1(a: Tensor, fn, n_tasks: int = N_TASKS_ALL, userdata=None, *, type=None, ne=None,
                inplace: bool = False, name: str | None = None) -> Tensor:
    """fn(dst, a, ith, nth) computes the result (type/ne: default a's)."""
    return _map_custom(1, [a], fn, n_tasks, userdata, type, ne, inplace, name)


def map_custom2(a: Tensor, b: Tensor, fn, n_tasks: int = N_TASKS_ALL, userdata=None, *, type=None, ne=None,
                inplace: bool = False, name: str | None = None) -> Tensor:
    """fn(dst, a, b, ith, nth) computes the result (type/ne: default a's)."""
    return _map_custom(2, [a, b], fn, n_tasks, userdata, type, ne, inplace, name)


def map_custom3(a: Tensor, b: Tensor, c: Tensor, fn, n_tasks: int = N_TASKS_ALL, userdata=None, *, type=None,
                ne=None, inplace: bool = False, name: str | None = None) -> Tensor:
    """fn(dst, a, b, c, ith, nth) computes the result (type/ne: default a's)."""
    return _map_custom(3, [a, b, c], fn, n_tasks, userdata, type, ne, inplace, name)


# ---- the numpy backend: a Python function is its own reference ----

def _as_storage(x: np.ndarray, t: Tensor) -> np.ndarray:
    if t.type is BF16:
        return f32_to_bf16(np.asarray(x, dtype=np.float32))
    return np.ascontiguousarray(x).astype(t.type.np_dtype)


def _custom_ref(node: Tensor, *inputs):
    reg = node.params.get("_py")
    if reg is None:
        raise GGraphError(f"custom op {op_name(node)} is a compiled CKernel: it has no numpy reference "
                          f"(check it against your own with ggraph.testing.check_op)")
    out = np.zeros(node.ne[::-1], dtype=node.type.np_dtype)
    ins = []
    for x, s in zip(inputs, node.src):
        v = _as_storage(x, s)
        v.flags.writeable = False
        ins.append(v)
    args = [out, *ins, 0, 1] + ([reg.userdata] if reg.has_userdata else [])
    reg.fn(*args)
    return bf16_to_f32(out) if node.type is BF16 else out


def _twice_rows(dst, a, ith, nth):
    d = dst.reshape(-1, dst.shape[-1])
    x = a.reshape(-1, a.shape[-1])
    for r in range(ith, d.shape[0], nth):
        d[r] = 2 * x[r]


def _mul_add_rows(dst, a, b, c, ith, nth):
    d = dst.reshape(-1, dst.shape[-1])
    x, y, z = (t.reshape(-1, t.shape[-1]) for t in (a, b, c))
    for r in range(ith, d.shape[0], nth):
        d[r] = x[r] * y[r] + z[r]


def _row_dot(dst, a, b, ith, nth):
    d = dst.reshape(-1)
    x, y = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    for r in range(ith, d.shape[0], nth):
        d[r] = np.dot(x[r].astype(np.float64), y[r])


for _k in (1, 2, 3):
    MAP_CUSTOM[_k].reference(_custom_ref)


@MAP_CUSTOM[1].case
def _custom1_case(ctx, rng):
    return map_custom1(ctx.from_numpy(rng.standard_normal((3, 5)).astype(np.float32)), _twice_rows)


@MAP_CUSTOM[2].case
def _custom2_case(ctx, rng):
    # a declared shape unlike a's: one value per row
    a = ctx.from_numpy(rng.standard_normal((4, 6)).astype(np.float32))
    b = ctx.from_numpy(rng.standard_normal((4, 6)).astype(np.float32))
    return map_custom2(a, b, _row_dot, ne=[1, 4])


@MAP_CUSTOM[3].case
def _custom3_case(ctx, rng):
    a, b, c = (ctx.from_numpy(rng.standard_normal((2, 7)).astype(np.float32)) for _ in range(3))
    return map_custom3(a, b, c, _mul_add_rows, n_tasks=2)
