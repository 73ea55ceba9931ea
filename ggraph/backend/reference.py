"""The numpy backend: every node computed by its op's numpy reference.

It uses the same memory plan as the C backend, so views, in-place reuse and
writes into a source (cpy, set_rows) behave the same. Slow, and the oracle.
"""
from __future__ import annotations

import numpy as np

from ..errors import GGraphError
from ..ops.registry import get_op
from ..tensor import BF16, F16, I32, Tensor, bf16_to_f32, f32_to_bf16


def read(t: Tensor) -> np.ndarray:
    """A tensor's values as a 4-d numpy array (ne3, ne2, ne1, ne0): float32 for
    float types (block types dequantized), int32 for I32. Always a copy."""
    if t.type.np_dtype is None:
        from ..quant import dequantize_tensor
        return dequantize_tensor(t).reshape(t.ne[::-1])
    a = t._raw()
    if t.type is BF16:
        return bf16_to_f32(np.ascontiguousarray(a))
    if t.type is I32:
        return np.array(a, dtype=np.int32)
    return np.array(a, dtype=np.float32)


def write(t: Tensor, values: np.ndarray) -> None:
    """Stores values (broadcastable to t's 4-d shape) into t's memory, converted to t's type."""
    v = np.broadcast_to(np.asarray(values), t.ne[::-1]) if np.ndim(values) else np.full(t.ne[::-1], values)
    if t.type.np_dtype is None:
        from ..quant import quantize_into
        quantize_into(t, np.asarray(v, dtype=np.float32))
        return
    dst = t._raw()
    if t.type is BF16:
        dst[...] = f32_to_bf16(np.asarray(v, dtype=np.float32))
    elif t.type is F16:
        with np.errstate(over="ignore"):
            dst[...] = np.asarray(v, dtype=np.float32).astype(np.float16)
    else:
        dst[...] = v.astype(t.type.np_dtype)


def run(nodes: list[Tensor]) -> None:
    for n in nodes:
        od = get_op(n.op)
        if od.view:
            continue
        if od.ref is None:
            raise GGraphError(f"op {n.op!r} has no numpy reference")
        inputs = [None if s is None else read(s) for s in n.src]
        with np.errstate(all="ignore"):
            out = od.ref(n, *inputs)
        write(n, out)
