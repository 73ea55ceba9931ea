"""Context: makes leaf tensors and owns their memory.

Unlike ggml, op results are not placed in the context: a Graph's allocator
gives them memory when the graph is planned, reusing it by liveness.
"""
from __future__ import annotations

import numpy as np

from .errors import GGraphError
from .tensor import Tensor, aligned_bytes
from .types import as_type, from_numpy_dtype


class Context:
    def __init__(self, name: str = ""):
        self.name = name
        self.tensors: list[Tensor] = []

    def _own(self, t: Tensor) -> Tensor:
        t._buf = aligned_bytes(t.nbytes())
        t._offs = 0
        self.tensors.append(t)
        return t

    def new_tensor(self, type, ne, name: str = "") -> Tensor:
        """A zero-filled tensor of `type` with sizes `ne` (ggml order, 1 to 4 dims)."""
        return self._own(Tensor(type, ne, name=name))

    def new_tensor_1d(self, type, ne0: int, name: str = "") -> Tensor:
        return self.new_tensor(type, [ne0], name)

    def new_tensor_2d(self, type, ne0: int, ne1: int, name: str = "") -> Tensor:
        return self.new_tensor(type, [ne0, ne1], name)

    def new_tensor_3d(self, type, ne0: int, ne1: int, ne2: int, name: str = "") -> Tensor:
        return self.new_tensor(type, [ne0, ne1, ne2], name)

    def new_tensor_4d(self, type, ne0: int, ne1: int, ne2: int, ne3: int, name: str = "") -> Tensor:
        return self.new_tensor(type, [ne0, ne1, ne2, ne3], name)

    def from_numpy(self, array, type=None, name: str = "") -> Tensor:
        """A leaf holding a copy of `array`: numpy shape (a, b) becomes ne = [b, a].

        `type` defaults to the array's dtype (float32, float16, int32); float64
        arrays become F32. Pass type= to convert (F16, BF16, block types).
        """
        a = np.asarray(array)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim > 4:
            raise GGraphError(f"from_numpy: at most 4 dimensions, got shape {a.shape}")
        if a.size == 0:
            raise GGraphError(f"from_numpy: empty array of shape {a.shape}")
        if type is None:
            if a.dtype == np.float64:
                a = a.astype(np.float32)
            elif a.dtype == np.int64:
                a = a.astype(np.int32)
            type = from_numpy_dtype(a.dtype)
        t = self.new_tensor(as_type(type), list(reversed(a.shape)), name)
        return t.set(a)

    def __repr__(self) -> str:
        total = sum(t.nbytes() for t in self.tensors)
        return f"<Context {self.name!r}: {len(self.tensors)} tensors, {total} bytes>"
