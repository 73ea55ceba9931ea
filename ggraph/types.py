"""Tensor element types and their traits, in one table.

Type ids are ggml's (enum ggml_type), so GGUF files map onto them directly.
A block type stores `blck_size` elements in `type_size` bytes; plain types
have blck_size 1. Quantized block types join this table in their own module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GGraphError


@dataclass(frozen=True)
class GGType:
    name: str
    id: int
    blck_size: int
    type_size: int
    np_dtype: np.dtype | None     # storage dtype of one element, None for block types
    is_float: bool = True         # holds real numbers (possibly after decoding)

    def __repr__(self) -> str:
        return f"gg.{self.name}"

    def __str__(self) -> str:
        return self.name


F32 = GGType("F32", 0, 1, 4, np.dtype(np.float32))
F16 = GGType("F16", 1, 1, 2, np.dtype(np.float16))
I32 = GGType("I32", 26, 1, 4, np.dtype(np.int32), is_float=False)
BF16 = GGType("BF16", 30, 1, 2, np.dtype(np.uint16))   # numpy has no bfloat16: raw bits

TYPES: dict[int, GGType] = {t.id: t for t in (F32, F16, I32, BF16)}
_BY_NAME: dict[str, GGType] = {t.name: t for t in TYPES.values()}


def register_type(t: GGType) -> GGType:
    """Adds a type (quantized block formats register themselves)."""
    TYPES[t.id] = t
    _BY_NAME[t.name] = t
    return t


def as_type(t) -> GGType:
    """Accepts a GGType, a type name ('f16', 'Q4_0') or a ggml type id."""
    if isinstance(t, GGType):
        return t
    if isinstance(t, str) and t.upper() in _BY_NAME:
        return _BY_NAME[t.upper()]
    if isinstance(t, (int, np.integer)) and int(t) in TYPES:
        return TYPES[int(t)]
    raise GGraphError(f"unknown tensor type {t!r}; known: {', '.join(sorted(_BY_NAME))}")


def type_size(t) -> int:
    """Bytes of one block (one element for plain types)."""
    return as_type(t).type_size


def blck_size(t) -> int:
    """Elements in one block (1 for plain types)."""
    return as_type(t).blck_size


def row_size(t, ne0: int) -> int:
    """Bytes of a contiguous row of ne0 elements."""
    t = as_type(t)
    if ne0 % t.blck_size:
        raise GGraphError(f"a row of {ne0} elements is not a whole number of {t} blocks of {t.blck_size}")
    return ne0 // t.blck_size * t.type_size


def from_numpy_dtype(dtype) -> GGType:
    dtype = np.dtype(dtype)
    for t in (F32, F16, I32):
        if t.np_dtype == dtype:
            return t
    raise GGraphError(f"no ggraph type for numpy dtype {dtype}; use float32, float16 or int32, or pass type=")
