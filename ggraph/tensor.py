"""Tensor: a typed n-d array description in ggml's vocabulary.

ne[i] is the number of elements in dimension i and nb[i] the stride of that
dimension in BYTES; dimension 0 is the innermost (fastest varying), so a
row-major numpy array of shape (d3, d2, d1, d0) has ne = [d0, d1, d2, d3].
`t.shape` is ne reversed without ne's trailing 1s: the numpy shape.

A tensor is either a leaf that owns memory (made by a Context), an op node
(made by an op function; the graph allocator gives it memory) or a view
(`view_src` + `view_offs`: the same bytes as another tensor, never copied).
Nothing is computed when a node is made: constructors only describe.
"""
from __future__ import annotations

import itertools
from types import MappingProxyType

import numpy as np

from .errors import GGraphError
from .types import BF16, F16, F32, I32, GGType, as_type

GG_MAX_DIMS = 4
GG_MAX_SRC = 6
ALIGNMENT = 64            # every buffer start, for aligned SIMD loads

FLAG_INPUT = 1
FLAG_OUTPUT = 2
FLAG_PARAM = 4

_ids = itertools.count()


def aligned_bytes(nbytes: int, align: int = ALIGNMENT) -> np.ndarray:
    """A zeroed uint8 buffer whose first byte is `align`-aligned."""
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes]


def contiguous_strides(type: GGType, ne) -> tuple[int, int, int, int]:
    nb0 = type.type_size
    nb1 = nb0 * (ne[0] // type.blck_size)
    nb2 = nb1 * ne[1]
    nb3 = nb2 * ne[2]
    return (nb0, nb1, nb2, nb3)


def normalize_ne(ne, what: str = "ne") -> tuple[int, int, int, int]:
    """Pads a 1..4 element shape to 4 and checks every size is a positive int."""
    try:
        given = list(ne)
        ints = [int(x) for x in given]
        if ints != given:             # 2.5 is not a size
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise GGraphError(f"{what} must be a list of 1 to 4 integers, got {ne!r}") from None
    ne = ints
    if not 1 <= len(ne) <= GG_MAX_DIMS:
        raise GGraphError(f"{what} must have 1 to 4 dimensions, got {len(ne)}: {ne}")
    if any(x <= 0 for x in ne):
        raise GGraphError(f"{what} sizes must be >= 1, got {ne}")
    ne = ne + [1] * (GG_MAX_DIMS - len(ne))
    if ne[0] * ne[1] * ne[2] * ne[3] >= 2**62:
        raise GGraphError(f"{what} {ne} has too many elements")
    return tuple(ne)


class Tensor:
    # what describes a tensor is read-only after construction: kernels trust it
    __slots__ = ("id", "_type", "_ne", "_nb", "_op", "_src", "_params", "_view_src", "_view_offs",
                 "name", "flags", "_buf", "_offs", "_alloc_owner", "_clobbered_by", "__weakref__")

    def __init__(self, type, ne, *, nb=None, op=None, src=(), params=None,
                 view_src=None, view_offs=0, name=""):
        self.id = next(_ids)
        self._type: GGType = as_type(type)
        self._ne: tuple[int, int, int, int] = normalize_ne(ne)
        if self._ne[0] % self._type.blck_size:
            raise GGraphError(f"ne[0]={self._ne[0]} is not a multiple of the {self._type} block size "
                              f"{self._type.blck_size}")
        self._nb: tuple[int, int, int, int] = (tuple(int(x) for x in nb) if nb is not None
                                               else contiguous_strides(self._type, self._ne))
        self._op: str | None = op
        self._src: tuple[Tensor | None, ...] = tuple(src)
        self._params = MappingProxyType(dict(params or {}))
        self._view_src: Tensor | None = view_src
        self._view_offs: int = int(view_offs)
        self.name: str = name
        self.flags = 0
        self._buf: np.ndarray | None = None      # base memory (views: None, see storage())
        self._offs = 0
        self._alloc_owner = None                 # the graph plan that placed this tensor
        self._clobbered_by: str | None = None    # node whose result reused this memory

    type = property(lambda self: self._type, doc="element type (gg.F32, ...)")
    ne = property(lambda self: self._ne, doc="elements per dimension, ne[0] innermost")
    nb = property(lambda self: self._nb, doc="stride of each dimension in bytes")
    op = property(lambda self: self._op, doc="op name, None for a leaf")
    src = property(lambda self: self._src, doc="source tensors (None where an optional one is absent)")
    params = property(lambda self: self._params, doc="op params (read-only)")
    view_src = property(lambda self: self._view_src, doc="the tensor whose bytes this view reads")
    view_offs = property(lambda self: self._view_offs, doc="byte offset into view_src")

    def set_py_param(self, key: str, value) -> None:
        """Sets a Python-only param (key starts with "_"): metadata no kernel reads."""
        if not key.startswith("_"):
            raise GGraphError(f"only Python-only params (names starting with '_') can be set after "
                              f"construction, not {key!r}")
        self._params = MappingProxyType({**self._params, key: value})

    # ---- shape ----
    @property
    def n_dims(self) -> int:
        n = GG_MAX_DIMS
        while n > 1 and self.ne[n - 1] == 1:
            n -= 1
        return n

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(reversed(self.ne[:self.n_dims]))

    def nelements(self) -> int:
        return self.ne[0] * self.ne[1] * self.ne[2] * self.ne[3]

    def nrows(self) -> int:
        return self.ne[1] * self.ne[2] * self.ne[3]

    def nbytes(self) -> int:
        """Bytes from the first to one past the last element (ggml_nbytes)."""
        t = self.type
        if t.blck_size == 1:
            n = t.type_size
            for i in range(GG_MAX_DIMS):
                n += (self.ne[i] - 1) * self.nb[i]
            return n
        n = self.ne[0] * self.nb[0] // t.blck_size
        for i in range(1, GG_MAX_DIMS):
            n += (self.ne[i] - 1) * self.nb[i]
        return n

    def is_contiguous(self) -> bool:
        """Rows packed without gaps, dims of size 1 ignored (ggml_is_contiguous)."""
        next_nb = self.type.type_size
        if self.ne[0] != self.type.blck_size and self.nb[0] != next_nb:
            return False
        next_nb *= self.ne[0] // self.type.blck_size
        for i in range(1, GG_MAX_DIMS):
            if self.ne[i] != 1:
                if self.nb[i] != next_nb:
                    return False
                next_nb *= self.ne[i]
        return True

    def is_transposed(self) -> bool:
        return self.nb[0] > self.nb[1]

    def is_permuted(self) -> bool:
        return self.nb[0] > self.nb[1] or self.nb[1] > self.nb[2] or self.nb[2] > self.nb[3]

    # ---- flags ----
    def set_input(self) -> Tensor:
        self.flags |= FLAG_INPUT
        return self

    def set_output(self) -> Tensor:
        """Keeps this tensor's memory from being reused, so numpy() works after compute."""
        self.flags |= FLAG_OUTPUT
        return self

    def set_param(self) -> Tensor:
        self.flags |= FLAG_PARAM
        return self

    def set_name(self, name: str) -> Tensor:
        self.name = str(name)
        return self

    @property
    def is_input(self) -> bool:
        return bool(self.flags & FLAG_INPUT)

    @property
    def is_output(self) -> bool:
        return bool(self.flags & FLAG_OUTPUT)

    @property
    def is_param(self) -> bool:
        return bool(self.flags & FLAG_PARAM)

    # ---- memory ----
    def base(self) -> Tensor:
        """The tensor that owns the bytes this one (a view, maybe of a view) reads."""
        t = self
        while t.view_src is not None:
            t = t.view_src
        return t

    def storage(self) -> tuple[np.ndarray, int] | None:
        """(buffer, byte offset) of element 0, or None before allocation."""
        offs = 0
        t = self
        while t.view_src is not None:
            offs += t.view_offs
            t = t.view_src
        if t._buf is None:
            return None
        return t._buf, t._offs + offs

    @property
    def has_data(self) -> bool:
        return self.storage() is not None

    def _strided(self) -> np.ndarray:
        """The storage as a 4-d numpy array in (ne3, ne2, ne1, ne0) order, no copy;
        refuses memory that a later node has reused."""
        c = self.base()._clobbered_by
        if c is not None and not self.is_output:
            raise GGraphError(f"the memory of {self.label()} was reused by node {c!r} after it was last read; "
                              f"call .set_output() on it before building the graph to keep it")
        return self._raw()

    def _raw(self) -> np.ndarray:
        st = self.storage()
        if st is None:
            raise GGraphError(f"tensor {self.label()} has no memory yet: add it to a Graph and compute it first")
        buf, offs = st
        if self.type.np_dtype is None:
            raise GGraphError(f"{self.type} is a block type: use gg.dequantize or read through an op")
        return np.ndarray(self.ne[::-1], dtype=self.type.np_dtype, buffer=buf, offset=offs,
                          strides=self.nb[::-1])

    def numpy(self) -> np.ndarray:
        """The values in numpy order (`self.shape`).

        A zero-copy view for contiguous F32/F16/I32 data; a copy otherwise
        (BF16 is widened to float32, non-contiguous data is gathered).
        """
        if self.type.np_dtype is None:
            from .quant import dequantize_tensor          # block types decode through the quant module
            return dequantize_tensor(self).reshape(self.shape)
        a = self._strided()
        if self.type is BF16:
            return bf16_to_f32(np.ascontiguousarray(a)).reshape(self.shape)
        if self.is_contiguous():
            return a.reshape(self.shape)
        return np.ascontiguousarray(a).reshape(self.shape)

    def set(self, array) -> Tensor:
        """Writes values into this tensor's memory (any layout, views included).

        `array` must have this tensor's shape (or its full 4-d shape, or the same
        number of elements when the tensor is 1-d). Values are converted to the
        tensor's type: F16 rounds to nearest even, as F16C does.
        """
        a = np.asarray(array)
        full = (1,) * (4 - a.ndim) + a.shape if a.ndim <= 4 else a.shape
        if full != self.ne[::-1]:
            if not (a.size == self.nelements() and (a.ndim == 1 or self.n_dims == 1)):
                raise GGraphError(f"set: array of shape {a.shape} does not fit tensor {self.label()} "
                                  f"of shape {self.shape}")
        if self.type.np_dtype is None:
            from .quant import quantize_into
            quantize_into(self, a)
            return self
        if self.type is I32:
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise GGraphError(f"set: non-finite values for I32 tensor {self.label()}")
            a = a.astype(np.int32)
        elif self.type is BF16:
            a = f32_to_bf16(np.asarray(a, dtype=np.float32))
        else:
            a = a.astype(self.type.np_dtype)
        dst = self._strided()
        dst[...] = a.reshape(self.ne[::-1])
        self.base()._clobbered_by = None
        return self

    # ---- printing ----
    def label(self) -> str:
        nm = self.name or (f"{self.op}#{self.id}" if self.op else f"leaf#{self.id}")
        return f"'{nm}' ({self.type}, ne={list(self.ne)})"

    def __repr__(self) -> str:
        kind = self.op or "leaf"
        return f"<Tensor {self.name or '#%d' % self.id} {kind} {self.type} ne={list(self.ne)}>"


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even, NaN kept a (quiet) NaN: ggml's fp32_to_bf16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 64).astype(np.uint16), rounded)


def bf16_to_f32(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)




# ggml's free functions on tensors, so graph code ports line by line
def nelements(t: Tensor) -> int:
    return t.nelements()


def nrows(t: Tensor) -> int:
    return t.nrows()


def nbytes(t: Tensor) -> int:
    return t.nbytes()


def element_size(t: Tensor) -> int:
    """Bytes of one element (of one block for block types), ggml_element_size."""
    return t.type.type_size


def is_contiguous(t: Tensor) -> bool:
    return t.is_contiguous()


def set_name(t: Tensor, name: str) -> Tensor:
    return t.set_name(name)


def format_name(t: Tensor, fmt: str, *args) -> Tensor:
    """ggml_format_name: printf-style naming, e.g. format_name(t, "attn_norm-%d", il)."""
    return t.set_name(fmt % args if args else fmt)


def set_input(t: Tensor) -> Tensor:
    return t.set_input()


def set_output(t: Tensor) -> Tensor:
    return t.set_output()
