"""The C backend: a graph planned once into C structs, then run in one call.

CPlan mirrors every tensor the graph touches as a gg_tensor (csrc/ggraph.h),
with src pointers between them, data pointers into numpy-owned memory and
op params filled from each node's params through the op's C struct. Running
the plan is a single gg_graph_compute() call: cffi releases the GIL, the C
thread pool walks the nodes, no Python runs per op.
"""
from __future__ import annotations

import numpy as np

from ..errors import GGraphError
from ..ops import custom
from ..ops.registry import get_op
from ..tensor import Tensor, aligned_bytes
from .ffi import ERRORS, OP_IDS, ffi, lib


def _param_fields(struct: str) -> set[str]:
    return {name for name, _ in ffi.typeof(struct).fields}


class CPlan:
    def __init__(self, nodes: list[Tensor], leafs: list[Tensor]):
        self.nodes = nodes
        tensors: list[Tensor] = []
        index: dict[int, int] = {}

        def add(t: Tensor):
            if t.id not in index:
                index[t.id] = len(tensors)
                tensors.append(t)

        for t in leafs:
            add(t)
        for n in nodes:
            for s in n.src:
                if s is not None:
                    add(s)
            add(n)
        self.tensors = tensors
        self._buffers = {}        # every buffer a data pointer points into stays alive with the plan
        self.ct = ffi.new("gg_tensor[]", max(1, len(tensors)))
        for i, t in enumerate(tensors):
            self._fill(self.ct[i], t, index)
        self.c_nodes = ffi.new("gg_tensor *[]", max(1, len(nodes)))
        for i, n in enumerate(nodes):
            self.c_nodes[i] = ffi.addressof(self.ct, index[n.id])
        self.n_tasks = ffi.new("int32_t[]", max(1, len(nodes)))
        self.node_ns = ffi.new("int64_t[]", max(1, len(nodes)))
        self.cg = ffi.new("gg_cgraph *")
        self.cg.n_nodes = len(nodes)
        self.cg.nodes = self.c_nodes
        self.cg.n_tasks = self.n_tasks
        self._threads_planned = None
        self._work = None

    def _fill(self, c, t: Tensor, index: dict[int, int]) -> None:
        c.type = t.type.id
        if t.op is None:
            c.op = OP_IDS["none"]
        else:
            if t.op not in OP_IDS:
                raise GGraphError(f"op {t.op!r} of {t.label()} has no C kernel (not in csrc/ops.def)")
            c.op = OP_IDS[t.op]
        for d in range(4):
            c.ne[d] = t.ne[d]
            c.nb[d] = t.nb[d]
        st = t.storage()
        if st is None:
            raise GGraphError(f"tensor {t.label()} has no memory: it is neither a leaf of a Context nor a graph node")
        buf, offs = st
        if offs < 0 or offs + t.nbytes() > buf.nbytes:
            raise GGraphError(f"tensor {t.label()} lies outside its buffer")
        c.data = ffi.cast("void *", buf.ctypes.data + offs)
        self._buffers[id(buf)] = buf
        for k, s in enumerate(t.src):
            c.src[k] = ffi.NULL if s is None else ffi.addressof(self.ct, index[s.id])
        if t.op is not None:
            od = get_op(t.op)
            if od.params:
                fields = _param_fields(od.params)
                p = ffi.cast(od.params + " *", c.op_params)
                for key, value in t.params.items():
                    if key.startswith("_"):
                        continue
                    if key not in fields:
                        raise GGraphError(f"{t.op}: param {key!r} is not a field of C struct {od.params}")
                    setattr(p, key, value)

    def _plan_threads(self, n_threads: int) -> None:
        wsize = 0
        for i, n in enumerate(self.nodes):
            od = get_op(n.op)
            self.n_tasks[i] = 1 if od.view else od.tasks(n, n_threads)
            if od.work_size is not None:
                wsize = max(wsize, int(od.work_size(n, n_threads)))
        if self._work is None or self._work.nbytes < wsize:
            self._work = aligned_bytes(max(wsize, 64))
        self.cg.wsize = self._work.nbytes
        self.cg.wdata = ffi.cast("void *", self._work.ctypes.data)
        self._threads_planned = n_threads

    def poison_work(self, n_threads: int) -> None:
        """Fills the work buffer with 0xFF bytes (NaN floats), so a kernel that reads
        scratch it did not write this time fails its test instead of passing on
        values left by an earlier compute."""
        if self._threads_planned != n_threads:
            self._plan_threads(n_threads)
        self._work[...] = 0xFF

    def work_size(self) -> int:
        return 0 if self._work is None else self._work.nbytes

    def run(self, n_threads: int, profile: bool = False) -> np.ndarray | None:
        if custom.in_callback():
            # the executor is busy running this very callback: a nested compute would wait forever
            raise GGraphError("compute called from inside a custom op's Python function: "
                              "a custom op cannot run a graph")
        if self._threads_planned != n_threads:
            self._plan_threads(n_threads)
        self.cg.node_ns = self.node_ns if profile else ffi.NULL
        rc = lib.gg_graph_compute(self.cg, n_threads)
        if rc != 0:
            i = self.cg.failed_node
            if rc == lib.GG_ERR_PYTHON and 0 <= i < len(self.nodes):
                custom.raise_failure(i, self.nodes[i])
            where = self.nodes[i].label() if 0 <= i < len(self.nodes) else "?"
            if 0 <= i < len(self.nodes) and "_label" in self.nodes[i].params:
                where += f" of {self.nodes[i].params['_label']}"      # a custom op: its function
            raise GGraphError(f"compute failed at node {i} {where}: {ERRORS.get(rc, rc)}")
        if profile:
            return np.frombuffer(ffi.buffer(self.node_ns, 8 * len(self.nodes)), dtype=np.int64).copy()
        return None
