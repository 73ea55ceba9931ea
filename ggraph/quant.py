"""Block (quantized) types: the GGUF block formats, byte for byte.

    blocks = gg.quantize(x, gg.Q4_0)          # float array (..., n) -> uint8 (..., n/32*18)
    x2 = gg.dequantize(blocks, gg.Q4_0, n)    # -> float32 array of n elements
    w = ctx.from_numpy(x, type=gg.Q4_0)       # a quantized leaf

A row of a block-type tensor is ne[0]/blck_size blocks of type_size bytes
(nb[0] is the block size in bytes). The conversions run in C (csrc/quants_*.c)
with ggml's reference rounding, so a file quantized by llama.cpp and one
quantized here hold the same bytes for the same input.
"""
from __future__ import annotations

import numpy as np

from .backend.ffi import ffi, lib
from .errors import GGraphError
from .tensor import Tensor
from .types import GGType, as_type, register_type

# ggml's type ids, block sizes and bytes per block (ggml-common.h)
Q4_0 = register_type(GGType("Q4_0", 2, 32, 18, None))
Q4_1 = register_type(GGType("Q4_1", 3, 32, 20, None))
Q5_0 = register_type(GGType("Q5_0", 6, 32, 22, None))
Q5_1 = register_type(GGType("Q5_1", 7, 32, 24, None))
Q8_0 = register_type(GGType("Q8_0", 8, 32, 34, None))
Q8_1 = register_type(GGType("Q8_1", 9, 32, 36, None))
Q2_K = register_type(GGType("Q2_K", 10, 256, 84, None))
Q3_K = register_type(GGType("Q3_K", 11, 256, 110, None))
Q4_K = register_type(GGType("Q4_K", 12, 256, 144, None))
Q5_K = register_type(GGType("Q5_K", 13, 256, 176, None))
Q6_K = register_type(GGType("Q6_K", 14, 256, 210, None))
Q8_K = register_type(GGType("Q8_K", 15, 256, 292, None))

QUANT_TYPES = (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)
# types weights are stored in; Q8_1 and Q8_K only hold activations inside mul_mat
WEIGHT_TYPES = (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)

_RC = {lib.GG_ERR_UNSUPPORTED_TYPE: "no conversion for this type is built in",
       lib.GG_ERR_BAD_INPUT: "the row length is not a multiple of the block size"}


def _block_type(t, what: str) -> GGType:
    t = as_type(t)
    if t.blck_size == 1:
        raise GGraphError(f"{what}: {t} is not a block type")
    if lib.gg_quant_blck_size(t.id) != t.blck_size or lib.gg_quant_type_size(t.id) != t.type_size:
        raise GGraphError(f"{what}: {t} is not supported by the C runtime")
    return t


def vec_dot_type(t) -> GGType:
    """The type mul_mat converts activations to for weights of type t."""
    t = _block_type(t, "vec_dot_type")
    vdt = lib.gg_quant_vec_dot_type(t.id)
    if vdt < 0:
        raise GGraphError(f"{t} holds activations only; it has no vec_dot")
    return as_type(vdt)


def quantize(array, type, *, simd: bool = True) -> np.ndarray:
    """Quantizes the last axis of `array` into blocks of `type`: uint8 array of
    shape (..., n / blck_size * type_size)."""
    t = _block_type(type, "quantize")
    x = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    if x.ndim == 0 or x.shape[-1] == 0:
        raise GGraphError(f"quantize: need at least one element per row, got shape {x.shape}")
    n = x.shape[-1]
    if n % t.blck_size:
        raise GGraphError(f"quantize: rows of {n} elements are not a whole number of {t} blocks "
                          f"of {t.blck_size}")
    nrows = x.size // n
    out = np.empty(x.shape[:-1] + (n // t.blck_size * t.type_size,), dtype=np.uint8)
    rc = lib.gg_quantize_rows(t.id, ffi.from_buffer("float[]", x), ffi.from_buffer(out), nrows, n, int(simd))
    if rc:
        raise GGraphError(f"quantize {t}: {_RC.get(rc, rc)}")
    return out


def dequantize(blocks, type, n: int | None = None, *, simd: bool = True) -> np.ndarray:
    """Decodes blocks of `type` into float32. `n` is the number of elements
    (default: everything in `blocks`); the result has shape (n,), or
    (..., row elements) when `blocks` is 2-d or more and n is None."""
    t = _block_type(type, "dequantize")
    b = np.ascontiguousarray(np.asarray(blocks))
    if b.dtype != np.uint8:
        b = b.view(np.uint8) if b.dtype.itemsize == 1 else np.frombuffer(b.tobytes(), np.uint8)
    if n is None:
        if b.ndim == 0 or b.shape[-1] % t.type_size:
            raise GGraphError(f"dequantize: {b.shape[-1] if b.ndim else 0} bytes is not a whole number of "
                              f"{t} blocks of {t.type_size} bytes (truncated?)")
        row = b.shape[-1] // t.type_size * t.blck_size
        shape = b.shape[:-1] + (row,)
        n_total, n_row = int(np.prod(shape)), row
    else:
        n_total = int(n)
        if n_total <= 0 or n_total % t.blck_size:
            raise GGraphError(f"dequantize: n={n} is not a positive multiple of the {t} block size {t.blck_size}")
        need = n_total // t.blck_size * t.type_size
        if b.size < need:
            raise GGraphError(f"dequantize: {n_total} {t} elements need {need} bytes, got {b.size} (truncated)")
        if b.size > need:
            raise GGraphError(f"dequantize: {n_total} {t} elements need {need} bytes, got {b.size}")
        shape, n_row = (n_total,), n_total
    out = np.empty(shape, dtype=np.float32)
    rc = lib.gg_dequantize_rows(t.id, ffi.from_buffer(b), ffi.from_buffer("float[]", out),
                                n_total // n_row, n_row, int(simd))
    if rc:
        raise GGraphError(f"dequantize {t}: {_RC.get(rc, rc)}")
    return out


def _row_views(t: Tensor):
    """Yields (i3, i2, i1, uint8 view of that row's blocks) over t's memory."""
    st = t.storage()
    if st is None:
        raise GGraphError(f"tensor {t.label()} has no memory yet")
    buf, offs = st
    row_bytes = t.ne[0] // t.type.blck_size * t.type.type_size
    for i3 in range(t.ne[3]):
        for i2 in range(t.ne[2]):
            for i1 in range(t.ne[1]):
                o = offs + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3]
                yield i3, i2, i1, buf[o:o + row_bytes]


def dequantize_tensor(t: Tensor) -> np.ndarray:
    """A block-type tensor's values as float32 in (ne3, ne2, ne1, ne0) order."""
    if t.nb[0] != t.type.type_size:
        raise GGraphError(f"{t.label()}: blocks must be packed along dim 0")
    out = np.empty(t.ne[::-1], dtype=np.float32)
    if t.is_contiguous():
        buf, offs = t.storage()
        return dequantize(buf[offs:offs + t.nbytes()], t.type, t.nelements()).reshape(t.ne[::-1])
    for i3, i2, i1, row in _row_views(t):
        out[i3, i2, i1] = dequantize(row, t.type, t.ne[0])
    return out


def quantize_into(t: Tensor, values) -> None:
    """Quantizes `values` (t's shape) into t's memory, row by row."""
    a = np.asarray(values, dtype=np.float32).reshape(t.ne[::-1])
    for i3, i2, i1, row in _row_views(t):
        row[...] = quantize(a[i3, i2, i1], t.type)
