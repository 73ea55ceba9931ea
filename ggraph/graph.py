"""Graph: the ordered nodes that produce some tensors, planned once, run many times.

    g = gg.Graph()
    g.build_forward_expand(y)     # y and everything it depends on, in execution order
    x.set(...)                    # refill inputs
    g.compute(n_threads=2)        # one C call
    y.numpy()

The first compute plans the graph: the allocator places every intermediate in
one arena (alloc.py), and the C backend mirrors the tensors as C structs
(backend/cpu.py). Later computes reuse the plan; building more into the graph
invalidates it.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

from .alloc import Allocation, allocate
from .errors import GGraphError
from .ops.registry import get_op, op_label
from .tensor import Tensor, aligned_bytes


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class Graph:
    def __init__(self, name: str = ""):
        self.name = name
        self.nodes: list[Tensor] = []
        self.leafs: list[Tensor] = []
        self._seen: set[int] = set()
        self._plan = None
        self._alloc: Allocation | None = None
        self._arena: np.ndarray | None = None
        self.node_ns: np.ndarray | None = None     # per-node time of the last profiled compute
        self.last_compute_ns: int = 0              # wall time of the last compute call (C part)

    # ---- building ----
    def build_forward_expand(self, tensor: Tensor) -> Graph:
        """Adds `tensor` and everything it depends on, sources before users, each once."""
        if not isinstance(tensor, Tensor):
            raise GGraphError(f"build_forward_expand: expected a Tensor, got {type(tensor).__name__}")
        added = False
        # iterative post-order DFS over src in order: deterministic, no recursion limit
        stack: list[tuple[Tensor, int]] = [(tensor, 0)]
        on_path: set[int] = set()
        while stack:
            t, k = stack.pop()
            if k == 0:
                if t.id in self._seen:
                    continue
                on_path.add(t.id)
            srcs = [s for s in t.src if s is not None]
            if k < len(srcs):
                stack.append((t, k + 1))
                s = srcs[k]
                if s.id in on_path:
                    raise GGraphError(f"cycle in the graph through {s.label()}")
                if s.id not in self._seen:
                    stack.append((s, 0))
                continue
            on_path.discard(t.id)
            self._seen.add(t.id)
            added = True
            if t.op is None:
                self.leafs.append(t)
            else:
                if not t.name:
                    t.name = f"node_{len(self.nodes)}"
                self.nodes.append(t)
        if added:
            self._invalidate()
        return self

    def _invalidate(self) -> None:
        self._plan = None
        self._alloc = None
        self.node_ns = None             # a profile of fewer nodes no longer lines up

    # ---- planning ----
    def _needs_memory(self, t: Tensor) -> bool:
        return t.op is not None and t.view_src is None and (t._buf is None or t._alloc_owner is self)

    def _allocate(self) -> None:
        alloc = allocate(self.nodes, self._needs_memory, lambda n: get_op(n.op).allows_inplace(n))
        arena = aligned_bytes(max(alloc.size, 64))
        for n in self.nodes:
            if n.id in alloc.offsets:
                n._buf = arena
                n._offs = alloc.offsets[n.id]
                n._alloc_owner = self
                n._clobbered_by = alloc.clobbered.get(n.id)
        self._alloc = alloc
        self._arena = arena

    def plan(self):
        """Allocates intermediates and builds the C plan (done by the first compute)."""
        if self._plan is None:
            from .backend.cpu import CPlan
            if self._alloc is None:
                self._allocate()
            self._plan = CPlan(self.nodes, self.leafs)
        return self._plan

    def mem_size(self) -> int:
        """Bytes of the arena that holds every intermediate and result of this graph."""
        if self._alloc is None:
            self._allocate()
        return self._alloc.size

    def naive_mem_size(self) -> int:
        """Bytes the intermediates would take with no reuse (for comparison)."""
        if self._alloc is None:
            self._allocate()
        return self._alloc.naive_size

    @property
    def alloc_log(self) -> list[str]:
        if self._alloc is None:
            self._allocate()
        return list(self._alloc.log)

    # ---- running ----
    def compute(self, n_threads: int | None = None, profile: bool = False, backend: str = "cpu") -> Graph:
        """Runs every node. backend="cpu" is one C call; "reference" runs the numpy references."""
        if n_threads is None:
            n_threads = default_threads()
        if not isinstance(n_threads, int) or isinstance(n_threads, bool) or not 1 <= n_threads <= 64:
            raise GGraphError(f"compute: n_threads must be an integer from 1 to 64, got {n_threads!r}")
        if backend == "cpu":
            plan = self.plan()
            t0 = time.perf_counter_ns()
            ns = plan.run(n_threads, profile)
            self.last_compute_ns = time.perf_counter_ns() - t0
            if profile:
                self.node_ns = ns
        elif backend == "reference":
            from .backend import reference
            if self._alloc is None:
                self._allocate()
            reference.run(self.nodes)
        else:
            raise GGraphError(f"compute: unknown backend {backend!r} (use 'cpu' or 'reference')")
        return self

    # ---- looking at it ----
    def profile_by_op(self) -> list[tuple[str, int, float]]:
        """[(op, count, total ms)] of the last profiled compute, slowest first
        (custom ops count per user function: "custom:<function name>")."""
        if self.node_ns is None:
            raise GGraphError("no profile yet: run compute(profile=True) first")
        acc: dict[str, list] = defaultdict(lambda: [0, 0])
        for n, ns in zip(self.nodes, self.node_ns):
            a = acc[op_label(n)]
            a[0] += 1
            a[1] += int(ns)
        return sorted(((op, c, t / 1e6) for op, (c, t) in acc.items()), key=lambda r: -r[2])

    def format(self) -> str:
        """The graph as a table, like ggml_graph_print, with times when profiled."""
        lines = [f"=== GRAPH {self.name} ===".rstrip(), f"n_nodes = {len(self.nodes)}"]
        total = float(self.node_ns.sum()) if self.node_ns is not None else 0.0
        for i, n in enumerate(self.nodes):
            ne = ", ".join(f"{x:5d}" for x in n.ne[:3])
            row = f" - {i:3d}: [ {ne}] {op_label(n).upper():>16s} {str(n.type):>5s} {n.name:<24s}"
            if n.is_output:
                row += " (output)"
            if self.node_ns is not None:
                ms = self.node_ns[i] / 1e6
                row += f"  {ms:8.3f} ms {100 * self.node_ns[i] / total if total else 0:5.1f}%"
            lines.append(row)
        lines.append(f"n_leafs = {len(self.leafs)}")
        for i, t in enumerate(self.leafs):
            ne = ", ".join(f"{x:5d}" for x in t.ne[:2])
            flags = "".join(f" ({f})" for f, on in (("input", t.is_input), ("param", t.is_param)) if on)
            lines.append(f" - {i:3d}: [ {ne}] {'NONE':>8s} {str(t.type):>8s} {t.name or '#%d' % t.id}{flags}")
        if self.node_ns is not None:
            lines.append("per op:")
            for op, count, ms in self.profile_by_op():
                lines.append(f"  {op.upper():>16s} {count:5d} nodes {ms:9.3f} ms {100 * ms * 1e6 / total if total else 0:5.1f}%")
            lines.append(f"  {'TOTAL':>16s} {len(self.nodes):5d} nodes {total / 1e6:9.3f} ms")
        if self._alloc is not None:
            lines.append(f"memory: {self._alloc.size} bytes for intermediates "
                         f"({self._alloc.naive_size} without reuse)")
        lines.append("=" * 14)
        return "\n".join(lines)

    def print(self) -> None:
        print(self.format())

    def dump_dot(self, path, color_by: str = "op", max_label: int = 24) -> str:
        """Writes the graph as DOT; a .svg/.png/.pdf path is rendered through graphviz.

        color_by="op" colours nodes by op, "time" by their share of the last
        profiled compute. Returns the path written.
        """
        from .dot import dump_dot
        return dump_dot(self, path, color_by=color_by, max_label=max_label)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self.leafs)} leafs>"
