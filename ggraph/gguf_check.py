"""Checks a GGUF file's structure before any GGUF reader walks it.

    info = scan_gguf(path)         # GGraphError on the first thing wrong
    info.alignment, info.data_offset, info.tensors[0].name

A GGUF header is a list of counts and lengths that a reader trusts: a string
length of 2**60, an array of 2**50 elements or a tensor count far beyond the
file's size make a naive reader read past the end element by element, or
allocate without bound. scan_gguf walks the header once with every count and
length checked against the bytes left in the file *before* it is used, so the
work is bounded by the file's size, and checks:

- magic, version (2 or 3), little-endian;
- each key: valid UTF-8, not a duplicate, a known value type; each string
  valid UTF-8; bools 0 or 1; arrays nested no deeper than MAX_NESTING;
- general.alignment: a UINT32 power of two (any, 1 included);
- each tensor: a unique name, 1..4 dims each >= 1 with no overflow of the
  element count, a type ggraph knows, whole blocks in a row, an offset that
  is a multiple of the alignment, data inside the file, no two tensors
  overlapping.

Hyperparameters, token arrays and the tensors each builder needs are checked
afterwards on the decoded values (gguf_model.py, check_tokenizer here).
Every failure is one GGraphError naming the file, the key or tensor, what was
found and what was expected.
"""
from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field

from .errors import GGraphError

GGUF_MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 8                 # arrays of arrays of ...: the spec allows them, nobody needs 8 levels
MAX_ELEMENTS = 2**62            # a tensor's element count (int64 arithmetic in the kernels)

# GGUF value type id -> (name, scalar struct format or None)
VALUE_TYPES = {0: ("UINT8", "<B"), 1: ("INT8", "<b"), 2: ("UINT16", "<H"), 3: ("INT16", "<h"),
               4: ("UINT32", "<I"), 5: ("INT32", "<i"), 6: ("FLOAT32", "<f"), 7: ("BOOL", "<B"),
               8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<Q"), 11: ("INT64", "<q"),
               12: ("FLOAT64", "<d")}
T_BOOL, T_STRING, T_ARRAY, T_UINT32 = 7, 8, 9, 4
_FMT_SIZE = {t: struct.calcsize(f) for t, (_, f) in VALUE_TYPES.items() if f}
# the fewest bytes one element of each type can take (an empty string: its length field)
_MIN_SIZE = {**_FMT_SIZE, T_STRING: 8, T_ARRAY: 12}
_MIN_KV = 8 + 4 + 1             # key length, value type, the smallest value
_MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8    # name length, n_dims, one dim, type, offset


@dataclass
class KVInfo:
    key: str
    type: int                   # GGUF value type id
    offset: int                 # where the key's length field is
    value_offset: int           # where the value (or an array's element type) is
    end: int
    elem_type: int | None = None    # arrays: element type id
    count: int | None = None        # arrays: element count
    value: object = None            # scalars and strings: the value


@dataclass
class TensorInfo:
    name: str
    dims: tuple[int, ...]       # ggml order, ne[0] first
    type: int                   # ggml type id
    offset: int                 # relative to data_offset
    nbytes: int
    info_offset: int            # where the tensor info (its name length) is in the file


@dataclass
class GGUFLayout:
    path: str
    size: int
    version: int
    kvs: list[KVInfo] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    header_end: int = 0         # end of the tensor infos
    data_offset: int = 0        # start of the tensor data (header_end rounded up to the alignment)

    def kv(self, key: str) -> KVInfo | None:
        for k in self.kvs:
            if k.key == key:
                return k
        return None


class _Cursor:
    """Reads little-endian fields from a buffer, each read checked against its end."""

    def __init__(self, path, buf, size):
        self.path, self.buf, self.size, self.off = path, buf, size, 0

    def fail(self, msg):
        raise GGraphError(f"{self.path}: {msg}")

    def need(self, n, what):
        if n > self.size - self.off:
            self.fail(f"truncated file: the GGUF header ({what}) needs bytes {self.off}..{self.off + n} "
                      f"but the file has {self.size} bytes")

    def scalar(self, fmt, size, what):
        self.need(size, what)
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += size
        return v

    def u32(self, what):
        return self.scalar("<I", 4, what)

    def u64(self, what):
        return self.scalar("<Q", 8, what)

    def string(self, what) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, f"{what} of {n} bytes")
        raw = self.buf[self.off:self.off + n]
        try:
            s = str(raw, "utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"{what} is not valid UTF-8 (byte {e.start} of {n}: {bytes(raw[e.start:e.start + 4])!r})")
        self.off += n
        return s

    def unique_string(self, what, seen: set, kind: str) -> str:
        """A string that must not be in `seen` (keys, tensor names); adds it."""
        s = self.string(what)
        if s in seen:
            self.fail(f"{kind} {s!r} appears twice ({kind}s must be unique)")
        seen.add(s)
        return s


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _value(cur: _Cursor, vtype: int, key: str, depth: int, what: str):
    """Reads (skips, for arrays) one value of type vtype at the cursor; returns the value or, for
    arrays, (elem_type, count)."""
    if vtype not in VALUE_TYPES:
        cur.fail(f"metadata key {key!r}: {what} has type id {vtype}, expected one of 0..12 "
                 f"(GGUF value types)")
    if vtype == T_STRING:
        return cur.string(f"the string value of key {key!r}" if what == "value" else f"{what} of key {key!r}")
    if vtype == T_ARRAY:
        if depth >= MAX_NESTING:
            cur.fail(f"metadata key {key!r}: arrays nested deeper than {MAX_NESTING} levels")
        etype = cur.u32(f"element type of array {key!r}")
        count = cur.u64(f"element count of array {key!r}")
        if etype not in VALUE_TYPES:
            cur.fail(f"metadata key {key!r}: array element type id {etype}, expected one of 0..12 "
                     f"(GGUF value types)")
        left = cur.size - cur.off
        if count * _MIN_SIZE[etype] > left:
            cur.fail(f"truncated file: metadata key {key!r} claims an array of {count} {VALUE_TYPES[etype][0]} "
                     f"elements, at least {count * _MIN_SIZE[etype]} bytes, but {left} are left in the file")
        if etype in _FMT_SIZE:
            n = count * _FMT_SIZE[etype]
            if etype == T_BOOL:
                bad = bytes(cur.buf[cur.off:cur.off + n]).translate(None, b"\x00\x01")
                if bad:
                    cur.fail(f"metadata key {key!r}: BOOL array holds byte {bad[0]}, expected 0 or 1")
            cur.off += n
        elif etype == T_STRING:
            buf, size, off = cur.buf, cur.size, cur.off
            unpack = struct.Struct("<Q").unpack_from
            for i in range(count):
                if off + 8 > size:
                    cur.off = off
                    cur.need(8, f"length of string {i} of array {key!r}")
                n = unpack(buf, off)[0]
                off += 8
                if n > size - off:
                    cur.off = off
                    cur.need(n, f"string {i} of array {key!r}, {n} bytes")
                try:
                    str(buf[off:off + n], "utf-8")
                except UnicodeDecodeError as e:
                    cur.fail(f"metadata key {key!r}: string {i} is not valid UTF-8 (byte {e.start} of {n}: "
                             f"{bytes(buf[off + e.start:off + e.start + 4])!r})")
                off += n
            cur.off = off
        else:
            for i in range(count):
                _value(cur, etype, key, depth + 1, f"element {i}")
        return etype, count
    v = cur.scalar(VALUE_TYPES[vtype][1], _FMT_SIZE[vtype], f"{what} of key {key!r}")
    if vtype == T_BOOL and v not in (0, 1):
        cur.fail(f"metadata key {key!r}: BOOL value is byte {v}, expected 0 or 1")
    return bool(v) if vtype == T_BOOL else v


def scan_gguf(path, known_types: dict | None = None) -> GGUFLayout:
    """Walks and checks the header and tensor infos of the GGUF file at path (see the module doc).

    known_types: ggml type id -> object with name, blck_size, type_size (default ggraph's TYPES).
    """
    path = os.fspath(path)
    if known_types is None:
        from . import quant  # noqa: F401  (registers the block types)
        from .types import TYPES as known_types
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size == 0:
            raise GGraphError(f"{path}: not a GGUF file (0 bytes)")
        # not closed by hand: an error's traceback may still hold slices of it; the map goes with them
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return _scan(path, memoryview(mm), size, known_types)


def _scan(path, buf, size, known_types) -> GGUFLayout:
    cur = _Cursor(path, buf, size)
    magic = bytes(buf[:4])
    if magic != GGUF_MAGIC:
        cur.fail(f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    cur.off = 4
    version = cur.u32("version")
    if version not in VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in VERSIONS:
            cur.fail("a GGUF file of the other byte order (big-endian); ggraph reads little-endian files only")
        cur.fail(f"bad GGUF header: version {version}, expected one of {', '.join(map(str, VERSIONS))}")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("key/value count")

    def fits(count, min_bytes, what):
        """A count the header claims, against the bytes left after the cursor."""
        left = size - cur.off
        if count * min_bytes > left:
            cur.fail(f"truncated file: the GGUF header claims {count} {what}, at least {count * min_bytes} "
                     f"bytes, but {left} are left in the file")

    fits(n_kv, _MIN_KV, "key/value pairs")
    fits(n_tensors, _MIN_TENSOR_INFO, "tensors (infos)")
    lay = GGUFLayout(path, size, version)
    seen = set()
    for i in range(n_kv):
        start = cur.off
        key = cur.unique_string(f"key {i}", seen, "metadata key")
        vtype = cur.u32(f"value type of key {key!r}")
        voff = cur.off
        v = _value(cur, vtype, key, 0, "value")
        kv = KVInfo(key, vtype, start, voff, cur.off)
        if vtype == T_ARRAY:
            kv.elem_type, kv.count = v
        else:
            kv.value = v
        lay.kvs.append(kv)
    al = lay.kv("general.alignment")
    if al is not None:
        if al.type != T_UINT32:
            cur.fail(f"metadata key 'general.alignment' has type {VALUE_TYPES[al.type][0]}, expected UINT32")
        if not _is_pow2(al.value):
            cur.fail(f"metadata key 'general.alignment' is {al.value}, expected a power of two")
        lay.alignment = al.value
    fits(n_tensors, _MIN_TENSOR_INFO, "tensors (infos)")
    names = set()
    for i in range(n_tensors):
        start = cur.off
        name = cur.unique_string(f"name of tensor {i}", names, "tensor")
        n_dims = cur.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            cur.fail(f"tensor {name!r} has {n_dims} dimensions, expected 1..{MAX_DIMS}")
        dims = tuple(cur.u64(f"dimensions of tensor {name!r}") for _ in range(n_dims))
        tid = cur.u32(f"type of tensor {name!r}")
        offset = cur.u64(f"data offset of tensor {name!r}")
        if any(d < 1 for d in dims):
            cur.fail(f"tensor {name!r} has ne={list(dims)}, expected every dimension >= 1")
        n_el = math.prod(dims)
        if n_el > MAX_ELEMENTS:
            cur.fail(f"tensor {name!r} has ne={list(dims)}: {n_el} elements, more than {MAX_ELEMENTS}")
        t = known_types.get(tid)
        if t is None:
            cur.fail(f"tensor {name!r} has type id {tid}, which ggraph does not know (expected one of "
                     f"{', '.join(x.name for x in known_types.values())})")
        if dims[0] % t.blck_size:
            cur.fail(f"tensor {name!r} has ne[0]={dims[0]}, expected a multiple of the {t.name} block size "
                     f"{t.blck_size}")
        nbytes = n_el // t.blck_size * t.type_size
        lay.tensors.append(TensorInfo(name, dims, tid, offset, nbytes, start))
    lay.header_end = cur.off
    a = lay.alignment
    lay.data_offset = (cur.off + a - 1) // a * a
    if lay.tensors and lay.data_offset > size:
        cur.fail(f"truncated file: the tensor data should start at byte {lay.data_offset} but the file has "
                 f"{size} bytes")
    for t in lay.tensors:
        if t.offset % a:
            cur.fail(f"tensor {t.name!r} has data offset {t.offset}, expected a multiple of the alignment {a}")
        begin = lay.data_offset + t.offset
        if begin + t.nbytes > size:
            cur.fail(f"truncated file: tensor {t.name!r} needs bytes {begin}..{begin + t.nbytes} but the file "
                     f"has {size} bytes")
    prev = None
    for t in sorted(lay.tensors, key=lambda t: (t.offset, t.nbytes)):
        if prev is not None and t.offset < prev.offset + prev.nbytes:
            cur.fail(f"tensor {t.name!r} (data bytes {t.offset}..{t.offset + t.nbytes}) overlaps tensor "
                     f"{prev.name!r} (bytes {prev.offset}..{prev.offset + prev.nbytes}), expected disjoint data")
        prev = t
    return lay


def read_value(buf, off: int, vtype: int):
    """(value, end offset) of a value scan_gguf has checked; arrays as (nested) lists."""
    if vtype == T_STRING:
        n = struct.unpack_from("<Q", buf, off)[0]
        return str(bytes(buf[off + 8:off + 8 + n]), "utf-8"), off + 8 + n
    if vtype == T_ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, off)
        off += 12
        out = []
        for _ in range(count):
            v, off = read_value(buf, off, etype)
            out.append(v)
        return out, off
    v = struct.unpack_from(VALUE_TYPES[vtype][1], buf, off)[0]
    return (bool(v) if vtype == T_BOOL else v), off + _FMT_SIZE[vtype]


# ---- the tokenizer arrays ----

_INT_KINDS = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "UINT64", "INT64")


def check_tokenizer(path: str, values: dict, kinds: dict, elem_kinds: dict, n_vocab: int) -> None:
    """The tokenizer.ggml.* keys: arrays as long as the vocabulary, special ids inside it, merges
    of two tokens of the vocabulary. kinds: key -> GGUF kind; elem_kinds: array key -> element kind."""
    def fail(key, msg):
        raise GGraphError(f"{path}: metadata key {key!r} {msg}")

    def array(key, elem_ok, what):
        if key not in values:
            return None
        if kinds[key] != "ARRAY" or (values[key] and elem_kinds.get(key) not in elem_ok):
            found = kinds[key] if kinds[key] != "ARRAY" else f"an array of {elem_kinds.get(key)}"
            fail(key, f"is {found}, expected an array of {what}")
        return values[key]

    for key, ok, what in (("tokenizer.ggml.model", ("STRING",), "a string"),
                          ("tokenizer.ggml.pre", ("STRING",), "a string"),
                          ("tokenizer.chat_template", ("STRING",), "a string"),
                          ("tokenizer.ggml.add_bos_token", ("BOOL",), "a BOOL"),
                          ("tokenizer.ggml.add_eos_token", ("BOOL",), "a BOOL")):
        if key in kinds and kinds[key] not in ok:
            fail(key, f"has type {kinds[key]}, expected {what}")
    tokens = array("tokenizer.ggml.tokens", ("STRING",), "strings")
    if tokens is not None and len(tokens) != n_vocab:
        fail("tokenizer.ggml.tokens", f"has {len(tokens)} tokens, expected {n_vocab} (the vocabulary size)")
    for key, ok, what in (("tokenizer.ggml.scores", ("FLOAT32", "FLOAT64"), "numbers"),
                          ("tokenizer.ggml.token_type", _INT_KINDS, "integers")):
        arr = array(key, ok, what)
        if arr is not None and len(arr) != n_vocab:
            fail(key, f"has {len(arr)} entries, expected {n_vocab} (one per token)")
        if key == "tokenizer.ggml.scores" and arr is not None and not all(map(math.isfinite, arr)):
            i = next(i for i, x in enumerate(arr) if not math.isfinite(x))
            fail(key, f"entry {i} is {arr[i]}, expected a finite number")
    merges = array("tokenizer.ggml.merges", ("STRING",), "strings")
    if merges:
        vocab = set(tokens) if tokens is not None else None
        for i, m in enumerate(merges):
            parts = m.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                fail("tokenizer.ggml.merges", f"entry {i} is {m[:40]!r}, expected two tokens separated by "
                     f"one space ('a b')")
            if vocab is not None and not (parts[0] in vocab and parts[1] in vocab and parts[0] + parts[1] in vocab):
                missing = next(x for x in (parts[0], parts[1], parts[0] + parts[1]) if x not in vocab)
                fail("tokenizer.ggml.merges", f"entry {i} ({m[:40]!r}) uses {missing[:40]!r}, expected tokens "
                     f"of the vocabulary (and their merge)")
    for key in values:
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if kinds[key] not in _INT_KINDS:
                fail(key, f"has type {kinds[key]}, expected an integer token id")
            v = int(values[key])
            if not 0 <= v < n_vocab:
                fail(key, f"is {v}, expected a token id in 0..{n_vocab - 1}")
