"""Loading a LLaMA or Qwen2 GGUF file: hyperparameters, metadata and weights in place.

    mf = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    mf.hparams.n_layer, mf.hparams.n_head_kv        # 30, 3
    w = mf.tensors["blk.0.attn_q.weight"]           # a gg.Tensor leaf (Q4_1, ne=[576, 576])
    mf.metadata["tokenizer.ggml.tokens"][:3]        # every key/value as plain Python values

The file is memory-mapped (copy-on-write) by gguf's GGUFReader and every tensor is
a ggraph leaf whose memory IS the mapped bytes: nothing is copied, pages are read
from the file when a kernel first touches them, so resident memory stays near the
size of what is used. GGUF stores shapes in ggml's order already (ne[0] first).
The ModelFile keeps the mapping alive; writes into a weight (tensor.set) change
only this process's private copy of the page, never the file.

Everything a graph builder relies on is checked here, before any weight is read:
the architecture, each hyperparameter key (present, of the right kind and range),
each tensor (present, exact ne, a type the ops accept) and each tensor's data
range (inside the file: a truncated download is caught). Every failure is a
GGraphError naming the file and the key or tensor, what was found and what was
expected.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .errors import GGraphError
from .gguf_check import VALUE_TYPES, check_tokenizer, read_value, scan_gguf
from .ops.rope import ROPE_TYPE_NEOX, ROPE_TYPE_NORMAL
from .ops.select import GET_ROWS_QUANT_TYPES
from .quant import WEIGHT_TYPES
from .tensor import Tensor
from .types import BF16, F16, F32, TYPES, GGType

ARCHS = ("llama", "qwen2")
ROPE_TYPES = {"llama": ROPE_TYPE_NORMAL, "qwen2": ROPE_TYPE_NEOX}
HAS_QKV_BIAS = {"llama": False, "qwen2": True}

# which types each kind of tensor may have: what the builders' ops accept
MATRIX_TYPES = (F32, F16, BF16) + tuple(WEIGHT_TYPES)                 # mul_mat's src0
EMBD_TYPES = (F32, F16, BF16) + tuple(t for t in WEIGHT_TYPES if t in GET_ROWS_QUANT_TYPES)  # get_rows + mul_mat
VECTOR_TYPES = (F32,)                                                  # norms and biases

# general.file_type values (llama.cpp's enum llama_ftype) -> names
FILE_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
                   11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
                   17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}

_INT_KINDS = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "UINT64", "INT64")
_FLOAT_KINDS = ("FLOAT32", "FLOAT64")


@dataclass(frozen=True)
class HParams:
    arch: str                 # "llama" | "qwen2"
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int             # n_embd_head_k (= n_embd // n_head unless the file says otherwise)
    rms_eps: float
    rope_freq_base: float
    rope_freq_scale: float    # 1 / rope scaling factor (1.0 if none)
    rope_dim: int             # rope.dimension_count, default head_dim
    rope_type: int            # gg.ROPE_TYPE_NORMAL for llama, gg.ROPE_TYPE_NEOX for qwen2
    tied_embeddings: bool     # no output.weight: logits use token_embd.weight

    @property
    def n_gqa(self) -> int:
        """Query heads per KV head."""
        return self.n_head // self.n_head_kv


class ModelFile:
    """A loaded GGUF model: hparams, metadata and the weights as ggraph leaf tensors.

    tensors maps GGUF names ("blk.0.attn_q.weight") to leaves over the file's
    memory map. Use as a context manager or call close() to drop the mapping
    (tensors already captured by a compiled graph keep their pages alive).
    """

    def __init__(self, path: str, hparams: HParams, metadata: dict, tensors: dict, file_type: str,
                 mmap: np.ndarray | None = None):
        self.path = path
        self.hparams = hparams
        self.metadata = metadata
        self.tensors = tensors
        self.file_type = file_type
        self._mmap = mmap              # the file's np.memmap: every tensor's _buf is a view of it

    @property
    def arch(self) -> str:
        return self.hparams.arch

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return os.path.getsize(self.path)

    def n_params(self) -> int:
        return sum(t.nelements() for t in self.tensors.values())

    def close(self) -> None:
        """Forgets the tensors and the map; the mapping goes when nothing else holds it."""
        for t in self.tensors.values():
            t._buf = None
        self.tensors = {}
        self._mmap = None

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        h = self.hparams
        return (f"<ModelFile {os.path.basename(self.path)!r} {h.arch} {self.file_type}: {h.n_layer} layers, "
                f"n_embd {h.n_embd}, {h.n_head}/{h.n_head_kv} heads, n_vocab {h.n_vocab}, "
                f"{len(self.tensors)} tensors>")


# ---- reading ----

def _make_reader_class():
    import gguf
    VT = gguf.GGUFValueType

    class _CheckedReader(gguf.GGUFReader):
        """GGUFReader that checks every read of the header, and each tensor's data range,
        against the file size before the base class slices the map (slicing past the end
        quietly gives a short array, which fails later with an unrelated numpy error)."""

        def _get(self, offset, dtype, count=1, *args, **kwargs):
            size = _ITEMSIZE.get(dtype)
            if size is None:
                size = _ITEMSIZE[dtype] = np.dtype(dtype).itemsize
            end = int(offset) + size * int(count)
            if end > len(self.data):
                raise _Truncated(None, int(offset), end, len(self.data))
            return super()._get(offset, dtype, count, *args, **kwargs)

        def _get_field_parts(self, orig_offs, raw_type, *args, **kwargs):
            # arrays (the vocabulary: 150k strings, scores, types) in one piece instead of the base
            # class's two numpy views per element, which makes loading several times slower
            if int(raw_type) != VT.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type, *args, **kwargs)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            itype, n = int(raw_itype[0]), int(alen[0])
            offs = orig_offs + 12
            if itype == VT.STRING:
                strings = _read_strings(self.data, offs, n)
                end = strings.pop()
                parts = [raw_itype, alen, _StringArray(strings)]
                return end - orig_offs, parts, [2], [VT.ARRAY, VT.STRING]
            nptype = self.gguf_scalar_to_np.get(VT(itype)) if itype in VT._value2member_map_ else None
            if nptype is None:          # nested arrays and the unknown: the base class's way
                return super()._get_field_parts(orig_offs, raw_type, *args, **kwargs)
            values = self._get(offs, nptype, n)
            return 12 + int(values.nbytes), [raw_itype, alen, values], [2], [VT.ARRAY, VT(itype)]

        def _build_tensors(self, start_offs, fields, *args, **kwargs):
            size = len(self.data)
            for field in fields:
                try:
                    _nl, name_data, _nd, dims, raw_dtype, offset_tensor = field.parts
                    name = bytes(name_data).decode("utf-8", errors="replace")
                    tid = int(raw_dtype[0])
                    begin = int(start_offs) + int(offset_tensor[0])
                    n_elems = int(np.prod(dims.astype(np.uint64), dtype=np.uint64)) if len(dims) else 1
                    block, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(tid)]
                except Exception:       # layout unknown to us: let the base class decide
                    continue
                end = begin + n_elems // block * tsize
                if end > size:
                    raise _Truncated(name, begin, end, size)
            return super()._build_tensors(start_offs, fields, *args, **kwargs)

    return _CheckedReader


_ITEMSIZE: dict = {}


class _StringArray(list):
    """The decoded strings of a GGUF string array, as one reader field part."""
    nbytes = 0


def _read_strings(data: np.ndarray, offs: int, n: int) -> list:
    """n GGUF strings (u64 length + UTF-8 bytes) from offs; the end offset is appended last."""
    size = len(data)
    mv = memoryview(data)
    out = []
    for _ in range(n):
        if offs + 8 > size:
            raise _Truncated(None, offs, offs + 8, size)
        ln = int.from_bytes(mv[offs:offs + 8], "little")
        offs += 8
        if offs + ln > size:
            raise _Truncated(None, offs, offs + ln, size)
        out.append(str(mv[offs:offs + ln], "utf-8", "replace"))
        offs += ln
    out.append(offs)
    return out


class _Truncated(Exception):
    def __init__(self, name, begin, end, size):
        super().__init__(name)
        self.name, self.begin, self.end, self.size = name, begin, end, size


_reader_class = None


def _open_reader(path: str):
    global _reader_class
    if _reader_class is None:
        _reader_class = _make_reader_class()
    if not os.path.exists(path):
        raise GGraphError(f"{path}: no such file")
    if os.path.isdir(path):
        raise GGraphError(f"{path}: is a directory, not a GGUF file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if size == 0:
        raise GGraphError(f"{path}: not a GGUF file (0 bytes)")
    if magic != b"GGUF":
        raise GGraphError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    if size < 24:
        raise GGraphError(f"{path}: truncated file: {size} bytes, less than a GGUF header's first 24")
    # every count, length, type and offset checked against the file before gguf's reader trusts them
    layout = scan_gguf(path)
    try:
        # 'c': copy-on-write, so a stray write can't crash a kernel on a read-only page or touch the file
        return _reader_class(path, "c"), layout
    except _Truncated as e:
        what = f"tensor {e.name!r}" if e.name else "the GGUF header (metadata and tensor list)"
        raise GGraphError(f"{path}: truncated file: {what} needs bytes {e.begin}..{e.end} "
                          f"but the file has {e.size} bytes") from None
    except MemoryError:
        raise
    except Exception as e:  # gguf raises ValueError/KeyError/IndexError/... on corrupt headers
        raise GGraphError(f"{path}: corrupt or unreadable GGUF header ({type(e).__name__}: {e})") from None


def _field_value(field):
    kind = field.types[0].name
    if kind == "ARRAY":
        if len(field.types) < 2:        # empty array: no element type recorded
            return []
        sub = field.types[-1].name
        if len(field.data) == 1 and isinstance(field.parts[field.data[0]], _StringArray):
            return list(field.parts[field.data[0]])
        if sub == "STRING":
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        if not field.data:
            return []
        return np.concatenate([field.parts[i] for i in field.data]).tolist()
    if kind == "STRING":
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    return field.parts[field.data[0]][0].item()


def _metadata(path: str, reader, layout) -> tuple[dict, dict]:
    """(key -> value, key -> GGUF kind name) for every KV pair (the reader's GGUF.* header fields left out)."""
    values, kinds = {}, {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            if len(field.types) > 2 and field.types[0].name == "ARRAY":
                # arrays of arrays: decoded as nested lists from the (already checked) bytes
                kv = layout.kv(key)
                values[key] = read_value(reader.data, kv.value_offset, kv.type)[0]
            else:
                values[key] = _field_value(field)
        except Exception as e:
            raise GGraphError(f"{path}: metadata key {key!r} cannot be decoded ({type(e).__name__}: {e})") from None
        kinds[key] = "ARRAY" if field.types[0].name == "ARRAY" else field.types[0].name
    return values, kinds


# ---- hyperparameters ----

class _Keys:
    """Typed, range-checked access to the metadata, errors naming the file and key."""

    def __init__(self, path, values, kinds):
        self.path, self.values, self.kinds = path, values, kinds

    def _fail(self, key, msg):
        raise GGraphError(f"{self.path}: metadata key {key!r} {msg}")

    def _get(self, key, default, ok_kinds, what):
        if key not in self.values:
            if default is _REQUIRED:
                self._fail(key, f"is missing (expected {what})")
            return default
        if self.kinds[key] not in ok_kinds:
            self._fail(key, f"has type {self.kinds[key]} (value {_short(self.values[key])}), expected {what}")
        return self.values[key]

    def int(self, key, default=None, min_value=1):
        v = self._get(key, default if default is not None else _REQUIRED, _INT_KINDS, "an integer")
        if v is None:
            return None
        v = int(v)
        if v < min_value:
            self._fail(key, f"is {v}, expected an integer >= {min_value}")
        return v

    def float(self, key, default=None, positive=True):
        v = self._get(key, default if default is not None else _REQUIRED, _FLOAT_KINDS + _INT_KINDS, "a number")
        v = float(v)
        if not math.isfinite(v) or (positive and v <= 0):
            self._fail(key, f"is {v}, expected a finite number > 0")
        return v

    def str(self, key, default=None):
        return self._get(key, default if default is not None else _REQUIRED, ("STRING",), "a string")


_REQUIRED = object()


def _short(v, n=60):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def _hparams(path: str, values: dict, kinds: dict, tensor_infos: dict) -> HParams:
    keys = _Keys(path, values, kinds)
    arch = keys.str("general.architecture")
    if arch not in ARCHS:
        raise GGraphError(f"{path}: unsupported architecture {arch!r} (general.architecture); "
                          f"ggraph runs: {', '.join(ARCHS)}")
    p = arch + "."
    n_layer = keys.int(p + "block_count")
    if n_layer * 9 > len(tensor_infos):        # each block has at least 9 tensors; never loop on a wild count
        keys._fail(p + "block_count", f"is {n_layer}, but the file has only {len(tensor_infos)} tensors "
                                      f"(expected at least 9 per block)")
    n_ctx_train = keys.int(p + "context_length")
    n_embd = keys.int(p + "embedding_length")
    n_ff = keys.int(p + "feed_forward_length")
    n_head = keys.int(p + "attention.head_count")
    n_head_kv = keys.int(p + "attention.head_count_kv", default=n_head)
    if n_head % n_head_kv:
        raise GGraphError(f"{path}: metadata key {p + 'attention.head_count'!r} = {n_head} is not a multiple of "
                          f"{p + 'attention.head_count_kv'!r} = {n_head_kv} (grouped-query attention needs "
                          f"whole groups)")
    if p + "attention.key_length" in values:
        head_dim = keys.int(p + "attention.key_length")
    else:
        if n_embd % n_head:
            raise GGraphError(f"{path}: metadata key {p + 'embedding_length'!r} = {n_embd} is not a multiple of "
                              f"{p + 'attention.head_count'!r} = {n_head}, and {p + 'attention.key_length'!r} "
                              f"is not given")
        head_dim = n_embd // n_head
    v_len = keys.int(p + "attention.value_length", default=head_dim)
    if v_len != head_dim:
        raise GGraphError(f"{path}: metadata key {p + 'attention.value_length'!r} is {v_len}, expected the key "
                          f"length {head_dim} (different K and V head sizes are not supported)")
    rms_eps = keys.float(p + "attention.layer_norm_rms_epsilon")
    freq_base = keys.float(p + "rope.freq_base", default=10000.0)
    rope_dim = keys.int(p + "rope.dimension_count", default=head_dim)
    if rope_dim > head_dim or rope_dim % 2:
        raise GGraphError(f"{path}: metadata key {p + 'rope.dimension_count'!r} is {rope_dim}, expected an even "
                          f"number <= the head size {head_dim}")
    freq_scale = _rope_freq_scale(keys, p)
    if p + "vocab_size" in values:
        n_vocab = keys.int(p + "vocab_size")
    elif "tokenizer.ggml.tokens" in values and kinds["tokenizer.ggml.tokens"] == "ARRAY" \
            and values["tokenizer.ggml.tokens"]:
        n_vocab = len(values["tokenizer.ggml.tokens"])
    else:
        raise GGraphError(f"{path}: metadata key {p + 'vocab_size'!r} is missing and there is no "
                          f"'tokenizer.ggml.tokens' list to count (expected one of them)")
    return HParams(arch=arch, n_vocab=n_vocab, n_ctx_train=n_ctx_train, n_embd=n_embd, n_layer=n_layer,
                   n_head=n_head, n_head_kv=n_head_kv, n_ff=n_ff, head_dim=head_dim, rms_eps=rms_eps,
                   rope_freq_base=freq_base, rope_freq_scale=freq_scale, rope_dim=rope_dim,
                   rope_type=ROPE_TYPES[arch], tied_embeddings="output.weight" not in tensor_infos)


def _rope_freq_scale(keys: _Keys, p: str) -> float:
    kind = keys.str(p + "rope.scaling.type", default="none")
    if p + "rope.scaling.factor" in keys.values:
        factor = keys.float(p + "rope.scaling.factor", positive=False)
    elif p + "rope.scale_linear" in keys.values:        # older files
        factor = keys.float(p + "rope.scale_linear", positive=False)
        kind = "linear" if kind == "none" else kind
    else:
        factor = 0.0
    if factor < 0:
        keys._fail(p + "rope.scaling.factor", f"is {factor}, expected a number > 0 (or 0 for none)")
    if kind == "none" or factor in (0.0, 1.0):
        return 1.0
    if kind != "linear":
        keys._fail(p + "rope.scaling.type", f"is {kind!r}: only 'none' and 'linear' RoPE scaling are supported")
    return 1.0 / factor


# ---- tensors ----

def expected_tensors(h: HParams) -> dict[str, tuple[tuple[int, ...], tuple[GGType, ...]]]:
    """Every tensor the builder of h.arch reads: name -> (ne, allowed types)."""
    q, kv = h.n_head * h.head_dim, h.n_head_kv * h.head_dim
    exp = {"token_embd.weight": ((h.n_embd, h.n_vocab), EMBD_TYPES),
           "output_norm.weight": ((h.n_embd,), VECTOR_TYPES)}
    if not h.tied_embeddings:
        exp["output.weight"] = ((h.n_embd, h.n_vocab), MATRIX_TYPES)
    for il in range(h.n_layer):
        b = f"blk.{il}."
        exp[b + "attn_norm.weight"] = ((h.n_embd,), VECTOR_TYPES)
        exp[b + "attn_q.weight"] = ((h.n_embd, q), MATRIX_TYPES)
        exp[b + "attn_k.weight"] = ((h.n_embd, kv), MATRIX_TYPES)
        exp[b + "attn_v.weight"] = ((h.n_embd, kv), MATRIX_TYPES)
        exp[b + "attn_output.weight"] = ((q, h.n_embd), MATRIX_TYPES)
        if HAS_QKV_BIAS[h.arch]:
            exp[b + "attn_q.bias"] = ((q,), VECTOR_TYPES)
            exp[b + "attn_k.bias"] = ((kv,), VECTOR_TYPES)
            exp[b + "attn_v.bias"] = ((kv,), VECTOR_TYPES)
        exp[b + "ffn_norm.weight"] = ((h.n_embd,), VECTOR_TYPES)
        exp[b + "ffn_gate.weight"] = ((h.n_embd, h.n_ff), MATRIX_TYPES)
        exp[b + "ffn_up.weight"] = ((h.n_embd, h.n_ff), MATRIX_TYPES)
        exp[b + "ffn_down.weight"] = ((h.n_ff, h.n_embd), MATRIX_TYPES)
    return exp


def _pad4(ne) -> tuple[int, int, int, int]:
    ne = [int(x) for x in ne]
    return tuple(ne + [1] * (4 - len(ne)))


def _check_tensors(path: str, h: HParams, infos: dict) -> None:
    for name, (ne, allowed) in expected_tensors(h).items():
        rt = infos.get(name)
        if rt is None:
            raise GGraphError(f"{path}: tensor {name!r} is missing (the {h.arch} graph needs it, "
                              f"with ne={list(ne)})")
        got = [int(x) for x in rt.shape]
        if len(got) > 4 or _pad4(got) != _pad4(ne):
            raise GGraphError(f"{path}: tensor {name!r} has ne={got}, expected ne={list(ne)} "
                              f"(from the {h.arch} hyperparameters)")
        tid = int(rt.tensor_type)
        gt = TYPES.get(tid)
        if gt not in allowed:
            found = gt.name if gt is not None else f"{rt.tensor_type.name} (type id {tid})"
            raise GGraphError(f"{path}: tensor {name!r} has type {found}, expected one of {_type_names(allowed)}")


def _type_names(types) -> str:
    return ", ".join(t.name for t in types)


def _leaf(path: str, rt, base: np.ndarray) -> Tensor | None:
    """A leaf over the reader's bytes for tensor rt, or None for a type ggraph has no use for."""
    gt = TYPES.get(int(rt.tensor_type))
    shape = [int(x) for x in rt.shape]
    if gt is None or not 1 <= len(shape) <= 4 or any(x <= 0 for x in shape) or shape[0] % gt.blck_size:
        return None
    t = Tensor(gt, shape, name=rt.name)
    n = t.nbytes()
    begin = int(rt.data_offset)
    if begin + n > len(base):        # also checked by the reader subclass; never make an out-of-range view
        raise GGraphError(f"{path}: truncated file: tensor {rt.name!r} needs bytes {begin}..{begin + n} "
                          f"but the file has {len(base)} bytes")
    t._buf = base[begin:begin + n]
    t._offs = 0
    return t


def _file_type(values: dict, infos: dict) -> str:
    ft = values.get("general.file_type")
    if isinstance(ft, int) and not isinstance(ft, bool):
        return FILE_TYPE_NAMES.get(ft, f"file type {ft}")
    counts = Counter(TYPES[int(rt.tensor_type)].name for rt in infos.values()
                     if len(rt.shape) >= 2 and int(rt.tensor_type) in TYPES)
    return f"{counts.most_common(1)[0][0]} (guessed)" if counts else "unknown"


def load_gguf(path) -> ModelFile:
    """Opens a LLaMA or Qwen2 GGUF file: checks it, maps it, makes a leaf per tensor (no copy)."""
    path = os.fspath(path)
    reader, layout = _open_reader(path)
    if getattr(reader, "byte_order", "I") != "I":
        raise GGraphError(f"{path}: a GGUF file of the other byte order (big-endian); ggraph reads "
                          f"little-endian files only")
    if int(reader.alignment) != layout.alignment or len(reader.tensors) != len(layout.tensors):
        raise GGraphError(f"{path}: the GGUF reader and ggraph's check disagree about the layout (alignment "
                          f"{reader.alignment} vs {layout.alignment}, {len(reader.tensors)} vs "
                          f"{len(layout.tensors)} tensors)")
    values, kinds = _metadata(path, reader, layout)
    infos = {rt.name: rt for rt in reader.tensors}
    h = _hparams(path, values, kinds, infos)
    _check_tensors(path, h, infos)
    elem_kinds = {kv.key: VALUE_TYPES[kv.elem_type][0] for kv in layout.kvs if kv.elem_type is not None}
    check_tokenizer(path, values, kinds, elem_kinds, h.n_vocab)
    base = reader.data
    if base.dtype != np.uint8:
        base = base.view(np.uint8)
    tensors = {}
    for rt in reader.tensors:
        t = _leaf(path, rt, base)
        if t is not None:
            tensors[rt.name] = t
    # keep only the map: the reader's per-field numpy parts (hundreds of thousands for a vocabulary) go
    return ModelFile(path, h, values, tensors, _file_type(values, infos), mmap=reader.data)
