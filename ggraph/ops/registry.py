"""The op registry: one OpDef per op, shared by the DSL, planner, backends and tests.

An op is defined in one block of its family module (ggraph/ops/<family>.py):

    ROPE = defop("rope", params="gg_rope_params", inplace=True)

    def rope_ext(a, b, c=None, n_dims=..., ...):      # the public DSL function
        check(...)                                    # raises GGraphError
        return ROPE.node(a.type, a.ne, [a, b, c], n_dims=n_dims, ...)

    @ROPE.reference
    def _rope_ref(node, a, b, c): ...                 # numpy: returns the result

    @ROPE.case
    def _rope_case(ctx, rng): ...                     # a small example graph

`name` is also the C side's name in csrc/ops.def: the kernel is gg_fwd_<name>
and `params` names the C struct (declared in csrc/ops_<family>.h) that the
planner fills field by field from the node's params.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from ..errors import GGraphError
from ..tensor import Tensor

N_TASKS_ALL = -1


@dataclass
class OpDef:
    name: str
    params: str | None = None            # C params struct, e.g. "gg_soft_max_params"
    inplace: bool | Callable = False     # the result may take over src0's memory (or: node -> bool)
    view: bool = False                   # the result is a view: no kernel runs
    n_tasks: int | Callable = N_TASKS_ALL   # threads the kernel can use (N_TASKS_ALL: all)
    work_size: Callable | None = None    # (node, n_threads) -> bytes of scratch
    writes_src: int | None = None        # index of a src the op writes into (cpy, set_rows)
    ref: Callable | None = None
    cases: list[Callable] = field(default_factory=list)
    family: str = ""                     # the defining module: "norm", "matmul", ... (DOT colours)

    def reference(self, fn: Callable) -> Callable:
        """Registers the numpy reference: fn(node, *src_arrays) -> array."""
        self.ref = fn
        return fn

    def case(self, fn: Callable) -> Callable:
        """Registers an example: fn(ctx, rng) -> output tensor (used by the registry test)."""
        self.cases.append(fn)
        return fn

    def node(self, type, ne, srcs, *, nb=None, view_src=None, view_offs=0, **params) -> Tensor:
        srcs = list(srcs)
        while srcs and srcs[-1] is None:
            srcs.pop()
        if len(srcs) > 6:
            raise GGraphError(f"{self.name}: at most 6 sources")
        if self.writes_src is not None and view_src is None:
            view_src = srcs[self.writes_src]
        return Tensor(type, ne, nb=nb, op=self.name, src=srcs, params=params,
                      view_src=view_src, view_offs=view_offs)

    def allows_inplace(self, node: Tensor) -> bool:
        return bool(self.inplace(node)) if callable(self.inplace) else self.inplace

    def tasks(self, node: Tensor, n_threads: int) -> int:
        if callable(self.n_tasks):
            return max(1, min(n_threads, int(self.n_tasks(node, n_threads))))
        return n_threads if self.n_tasks == N_TASKS_ALL else max(1, min(n_threads, self.n_tasks))


OPS: dict[str, OpDef] = {}


def defop(name: str, **kw) -> OpDef:
    if name in OPS:
        raise RuntimeError(f"op {name!r} defined twice")
    if "family" not in kw:
        # the module that defines the op: ggraph.ops.<family>
        kw["family"] = sys._getframe(1).f_globals.get("__name__", "").rpartition(".")[2]
    od = OpDef(name, **kw)
    OPS[name] = od
    return od


def op_label(node: Tensor) -> str:
    """The op as profiles and pictures show it: a custom op by its user function."""
    return node.params.get("_label") or node.op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise GGraphError(f"unknown op {name!r}") from None


# ---- argument checks shared by the op definitions ----

def shapes_str(*ts) -> str:
    return ", ".join(f"{t.type} ne={list(t.ne)}" if isinstance(t, Tensor) else repr(t) for t in ts)


def check_tensor(op: str, arg: str, x, optional: bool = False) -> None:
    if x is None and optional:
        return
    if not isinstance(x, Tensor):
        raise GGraphError(f"{op}: argument {arg} must be a ggraph Tensor, got {type(x).__name__}")


def check(cond: bool, op: str, msg: str, *tensors) -> None:
    """Raises GGraphError naming the op, the problem and the shapes involved."""
    if not cond:
        detail = f" (got {shapes_str(*tensors)})" if tensors else ""
        raise GGraphError(f"{op}: {msg}{detail}")


def check_types(op: str, arg: str, x: Tensor, allowed) -> None:
    if x.type not in allowed:
        names = ", ".join(str(t) for t in allowed)
        raise GGraphError(f"{op}: {arg} must be {names}, got {x.type} ne={list(x.ne)}")


def can_repeat(b: Tensor, a: Tensor) -> bool:
    """b broadcasts over a: each of a's sizes is a multiple of b's (ggml_can_repeat)."""
    return all(a.ne[i] % b.ne[i] == 0 for i in range(4))


def as_int(op: str, arg: str, v) -> int:
    try:
        iv = int(v)
    except (TypeError, ValueError, OverflowError):
        raise GGraphError(f"{op}: {arg} must be an integer, got {v!r}") from None
    if iv != v:
        raise GGraphError(f"{op}: {arg} must be an integer, got {v!r}")
    return iv


def as_float(op: str, arg: str, v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise GGraphError(f"{op}: {arg} must be a number, got {v!r}") from None
