"""GGUF mutation fuzzing: a GGUF file as editable parts, one mutation per case, and the verdict.

    doc = GGUFDoc.read("model.gguf")           # or tiny_llama_doc()
    data = mutate(doc, "hparam", random.Random(7))
    outcome, detail = run_case(path_written_with(data))   # "loaded" | "refused" | "crash"

Used by tests/test_gguf_fuzz.py (a tiny model the test writes) and
benchmarks/gguf_fuzz.py (300 mutants of the real SmolLM2 file). A case passes if
the loader refuses the file with a GGraphError, or loads it and a Session then
evaluates one token; any other exception, or a case that takes longer than its
time bound, is a failure.
"""
from __future__ import annotations

import math
import random
import signal
import struct
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import GGraphError
from ..gguf_check import T_ARRAY, T_STRING, VALUE_TYPES, scan_gguf

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {t: f for t, (_, f) in VALUE_TYPES.items() if f}


def encode_value(vtype: int, value) -> bytes:
    """The bytes of a GGUF value (after its type id); arrays are (elem_type, list)."""
    if vtype == STR:
        b = value if isinstance(value, bytes) else value.encode()
        return struct.pack("<Q", len(b)) + b
    if vtype == ARR:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(encode_value(etype, x) for x in items)
    return struct.pack(_FMT[vtype], value)


@dataclass
class Tensor:
    name: bytes
    dims: list
    type: int
    data: bytes


@dataclass
class GGUFDoc:
    """A GGUF file as parts: kvs are (key bytes, type id, raw value bytes)."""
    kvs: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    version: int = 3
    alignment: int = 32

    def set(self, key: str, vtype: int, value) -> None:
        raw = encode_value(vtype, value)
        kb = key.encode()
        for i, (k, _, _) in enumerate(self.kvs):
            if k == kb:
                self.kvs[i] = (kb, vtype, raw)
                return
        self.kvs.append((kb, vtype, raw))

    def drop(self, key: str) -> None:
        self.kvs = [kv for kv in self.kvs if kv[0] != key.encode()]

    def keys(self) -> list[str]:
        return [k.decode(errors="replace") for k, _, _ in self.kvs]

    def copy(self) -> GGUFDoc:
        return GGUFDoc(list(self.kvs), [Tensor(t.name, list(t.dims), t.type, t.data) for t in self.tensors],
                       self.version, self.alignment)

    @classmethod
    def read(cls, path) -> GGUFDoc:
        lay = scan_gguf(path)
        with open(path, "rb") as f:
            buf = f.read()
        doc = cls(version=lay.version, alignment=lay.alignment)
        for kv in lay.kvs:
            doc.kvs.append((kv.key.encode(), kv.type, buf[kv.value_offset:kv.end]))
        for t in lay.tensors:
            begin = lay.data_offset + t.offset
            doc.tensors.append(Tensor(t.name.encode(), list(t.dims), t.type, buf[begin:begin + t.nbytes]))
        return doc

    def to_bytes(self, *, offsets: dict | None = None) -> bytes:
        """The file; offsets overrides a tensor's data offset field by tensor index."""
        a = self.alignment
        head = [b"GGUF", struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))]
        for k, vt, raw in self.kvs:
            head += [struct.pack("<Q", len(k)), k, struct.pack("<I", vt), raw]
        pos, data = 0, []
        for i, t in enumerate(self.tensors):
            pad = -pos % a
            data.append(b"\0" * pad)
            pos += pad
            off = (offsets or {}).get(i, pos)
            head += [struct.pack("<Q", len(t.name)), t.name, struct.pack("<I", len(t.dims)),
                     struct.pack(f"<{len(t.dims)}Q", *t.dims), struct.pack("<IQ", t.type, off)]
            data.append(t.data)
            pos += len(t.data)
        h = b"".join(head)
        return h + b"\0" * (-len(h) % a) + b"".join(data)


# ---- the tiny model the tests write ----

def tiny_llama_doc(seed: int = 0, *, n_vocab=64, n_embd=32, n_layer=2, n_head=4, n_head_kv=2, n_ff=48) -> GGUFDoc:
    """A small valid llama GGUF with F32 weights and a byte-level BPE tokenizer with merges."""
    rng = np.random.default_rng(seed)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<unk>", "<s>", "</s>"] + letters + ["Ġ"]
    merges = []
    for a, b in (("h", "i"), ("t", "h"), ("th", "e"), ("Ġ", "the"), ("a", "n"), ("an", "d"), ("Ġ", "and"),
                 ("i", "n"), ("in", "g"), ("o", "n"), ("e", "r"), ("Ġ", "hi")):
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    tokens += [f"<x{i}>" for i in range(n_vocab - len(tokens))]
    assert len(tokens) == n_vocab
    d = GGUFDoc()
    d.set("general.architecture", STR, "llama")
    d.set("general.name", STR, "fuzz llama")
    d.set("general.alignment", U32, 32)
    for k, v in (("block_count", n_layer), ("context_length", 128), ("embedding_length", n_embd),
                 ("feed_forward_length", n_ff), ("attention.head_count", n_head),
                 ("attention.head_count_kv", n_head_kv), ("vocab_size", n_vocab)):
        d.set("llama." + k, U32, v)
    d.set("llama.attention.layer_norm_rms_epsilon", F32, 1e-5)
    d.set("llama.rope.freq_base", F32, 10000.0)
    d.set("tokenizer.ggml.model", STR, "gpt2")
    d.set("tokenizer.ggml.pre", STR, "default")
    d.set("tokenizer.ggml.tokens", ARR, (STR, tokens))
    d.set("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 3] + [1] * (n_vocab - 3)))
    d.set("tokenizer.ggml.scores", ARR, (F32, [0.0] * n_vocab))
    d.set("tokenizer.ggml.merges", ARR, (STR, merges))
    d.set("tokenizer.ggml.bos_token_id", U32, 1)
    d.set("tokenizer.ggml.eos_token_id", U32, 2)
    d.set("tokenizer.ggml.add_bos_token", BOOL, False)
    hd = n_embd // n_head
    shapes = {"token_embd.weight": (n_embd, n_vocab), "output_norm.weight": (n_embd,),
              "output.weight": (n_embd, n_vocab)}
    for il in range(n_layer):
        b = f"blk.{il}."
        shapes.update({b + "attn_norm.weight": (n_embd,), b + "attn_q.weight": (n_embd, n_embd),
                       b + "attn_k.weight": (n_embd, n_head_kv * hd), b + "attn_v.weight": (n_embd, n_head_kv * hd),
                       b + "attn_output.weight": (n_embd, n_embd), b + "ffn_norm.weight": (n_embd,),
                       b + "ffn_gate.weight": (n_embd, n_ff), b + "ffn_up.weight": (n_embd, n_ff),
                       b + "ffn_down.weight": (n_ff, n_embd)})
    for name, ne in shapes.items():
        x = (rng.standard_normal(int(np.prod(ne))) * 0.3).astype(np.float32)
        if len(ne) == 1:
            x = 1.0 + 0.1 * x
        d.tensors.append(Tensor(name.encode(), list(ne), 0, x.tobytes()))
    return d


# ---- mutations ----

MUTATIONS = ("truncate", "byte_flip", "header_flip", "count", "string_length", "value_type", "wrong_type",
             "hparam", "drop_key", "extra_key", "alignment", "tensor_type", "tensor_dims", "tensor_offset",
             "tensor_dup", "tensor_drop", "tokens", "merges", "special_id", "invalid_utf8")

_BAD_NUMBERS = [(U32, 0), (I32, -1), (I32, -2**31), (U32, 2**32 - 1), (U64, 2**64 - 1), (F32, math.nan),
                (F32, math.inf), (F32, -math.inf), (F32, 0.0), (F32, -1.0), (F32, 1e-45), (F64, 1e308),
                (U32, 1), (U32, 3), (U32, 7), (U32, 2**20), (F32, 0.5), (I64, 2**62)]


def _pick_kv(doc, rng, prefix=""):
    idx = [i for i, (k, _, _) in enumerate(doc.kvs) if k.decode(errors="replace").startswith(prefix)]
    return rng.choice(idx) if idx else rng.randrange(len(doc.kvs))


def mutate(doc: GGUFDoc, kind: str, rng: random.Random) -> bytes:
    """One mutation of doc (left unchanged) as file bytes."""
    d = doc.copy()
    base = d.to_bytes()
    if kind == "truncate":
        lay = scan_gguf_bytes(base)
        end = lay.header_end if rng.random() < 0.6 else len(base)
        return base[:rng.randrange(0, end)]
    if kind in ("byte_flip", "header_flip"):
        b = bytearray(base)
        end = scan_gguf_bytes(base).header_end if kind == "header_flip" else len(b)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(end)
            b[i] = rng.choice([b[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xFF])
        return bytes(b)
    if kind in ("count", "string_length", "value_type", "tensor_offset", "tensor_dims"):
        lay = scan_gguf_bytes(base)
        b = bytearray(base)
        huge = rng.choice([2**64 - 1, 2**63, 2**40, 2**32, len(b), len(b) * 2, rng.randrange(2**64)])
        if kind == "count":
            arrays = [kv for kv in lay.kvs if kv.type == T_ARRAY]
            where = rng.choice(["n_tensors", "n_kv"] + ["array"] * 4)
            if where == "n_tensors":
                struct.pack_into("<Q", b, 8, rng.choice([huge, len(lay.tensors) + 1, len(lay.tensors) - 1]))
            elif where == "n_kv":
                struct.pack_into("<Q", b, 16, rng.choice([huge, len(lay.kvs) + 1, len(lay.kvs) - 1]))
            else:
                kv = rng.choice(arrays)
                struct.pack_into("<Q", b, kv.value_offset + 4, rng.choice([huge, kv.count + 1, kv.count - 1, 0]))
        elif kind == "string_length":
            kv = lay.kvs[rng.randrange(len(lay.kvs))]
            if kv.type == T_STRING:
                at = rng.choice([kv.offset, kv.value_offset])
            elif kv.type == T_ARRAY and kv.elem_type == T_STRING and kv.count:
                at = rng.choice([kv.offset, kv.value_offset + 12])
            else:
                at = kv.offset
            old = struct.unpack_from("<Q", b, at)[0]
            struct.pack_into("<Q", b, at, rng.choice([huge, old + 1, max(old - 1, 0), 0]))
        elif kind == "value_type":
            kv = lay.kvs[rng.randrange(len(lay.kvs))]
            at = kv.value_offset - 4 if rng.random() < 0.7 or kv.type != T_ARRAY else kv.value_offset
            struct.pack_into("<I", b, at, rng.choice([rng.randrange(13), 13, 99, 2**32 - 1]))
        else:
            t = rng.choice(lay.tensors)
            name_end = t.info_offset + 8 + len(t.name.encode())
            if kind == "tensor_dims":
                at = name_end + 4 + 8 * rng.randrange(len(t.dims))
                struct.pack_into("<Q", b, at, rng.choice([0, huge, 2**62, 2**31, 3, 1]))
                if rng.random() < 0.3:
                    struct.pack_into("<I", b, name_end, rng.choice([0, 5, 2**32 - 1, 1, 3]))
            else:
                at = name_end + 4 + 8 * len(t.dims) + 4
                off = rng.choice([huge, 2**64 - lay.data_offset, len(b), t.offset + 1, t.offset + 16,
                                  len(b) - lay.data_offset - t.nbytes + 32, 0])
                struct.pack_into("<Q", b, at, off % 2**64)
        return bytes(b)
    arch = next((raw[8:].decode(errors="replace") for k, vt, raw in d.kvs
                 if k == b"general.architecture" and vt == STR), "llama")
    if kind == "wrong_type":
        i = _pick_kv(d, rng, rng.choice([arch + ".", "tokenizer.", "general."]))
        vt, val = rng.choice([(STR, "x"), (F32, 1.5), (BOOL, 1), (U8, 7), (I64, -5), (ARR, (U32, [1, 2])),
                              (ARR, (STR, ["a"])), (ARR, (ARR, [])), (F64, math.nan), (STR, "")])
        d.kvs[i] = (d.kvs[i][0], vt, encode_value(vt, val))
    elif kind == "hparam":
        keys = [k for k in d.keys() if k.startswith(arch + ".")] + [
            arch + ".rope.dimension_count", arch + ".attention.key_length", arch + ".rope.scaling.factor"]
        vt, val = rng.choice(_BAD_NUMBERS)
        d.set(rng.choice(keys), vt, val)
    elif kind == "drop_key":
        del d.kvs[_pick_kv(d, rng)]
    elif kind == "extra_key":
        key = rng.choice(["x.nested", "general.extra", "a" * rng.randint(1, 300), "ü.ключ", "llama.unused"])
        vt, val = rng.choice([(ARR, (ARR, [])), (STR, "y" * rng.randint(0, 5000)),
                              (F64, rng.random()), (ARR, (F32, [rng.random() for _ in range(rng.randint(0, 99))])),
                              (ARR, (BOOL, [1, 0])), (U64, 2**64 - 1)])
        if rng.random() < 0.5:
            vt, val = ARR, (ARR, [(U32, [1, 2, 3]), (U32, []), (U32, [4])])
        d.set(key, vt, val)
    elif kind == "alignment":
        r = rng.random()
        if r < 0.5:
            d.alignment = 2 ** rng.randint(0, 12)            # legal
            d.set("general.alignment", U32, d.alignment)
        elif r < 0.8:
            d.set("general.alignment", U32, rng.choice([0, 3, 48, 100, 2**32 - 1]))
        else:
            d.set("general.alignment", rng.choice([U64, I32, F32]), 32)
    elif kind == "tensor_type":
        t = rng.choice(d.tensors)
        t.type = rng.choice([2, 3, 8, 12, 4, 5, 31, 39, 99, 2**31, 26, 1, 30])
    elif kind == "tensor_dup":
        t = rng.choice(d.tensors)
        d.tensors.insert(rng.randrange(len(d.tensors) + 1), Tensor(t.name, list(t.dims), t.type, t.data))
    elif kind == "tensor_drop":
        del d.tensors[rng.randrange(len(d.tensors))]
    elif kind == "tokens":
        i = _pick_kv(d, rng, "tokenizer.ggml.")
        k, vt, raw = d.kvs[i]
        if vt == ARR:
            etype, count = struct.unpack_from("<IQ", raw)
            drop = rng.choice([1, count // 2, count])
            lay_items = _split_array(raw)
            d.kvs[i] = (k, vt, struct.pack("<IQ", etype, count - drop) + b"".join(lay_items[:count - drop]))
        else:
            d.set(k.decode(), *rng.choice([(U32, 2**31), (U32, 0), (STR, "")]))
    elif kind == "merges":
        bad = rng.choice(["ab", "a  b", " a", "a b c", "", "zz qq", "Ġ nothere", "a\tb"])
        merges = _strings(d, "tokenizer.ggml.merges")
        merges.insert(rng.randrange(len(merges) + 1), bad)
        d.set("tokenizer.ggml.merges", ARR, (STR, merges))
    elif kind == "special_id":
        key = rng.choice(["bos", "eos", "unknown", "padding", "eot"])
        vt, val = rng.choice([(U32, 2**32 - 1), (I32, -1), (U32, 10**6), (U64, 2**40), (STR, "1"), (F32, 1.0)])
        d.set(f"tokenizer.ggml.{key}_token_id", vt, val)
    elif kind == "invalid_utf8":
        bad = rng.choice([b"\xff", b"\xc3", b"a\x80b", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        where = rng.choice(["token", "key", "tensor", "value"])
        if where == "token":
            toks = [s.encode() for s in _strings(d, "tokenizer.ggml.tokens")]
            toks[rng.randrange(len(toks))] = bad
            d.set("tokenizer.ggml.tokens", ARR, (STR, toks))
        elif where == "key":
            i = _pick_kv(d, rng)
            d.kvs[i] = (d.kvs[i][0] + bad,) + d.kvs[i][1:]
        elif where == "tensor":
            rng.choice(d.tensors).name += bad
        else:
            d.set("general.name", STR, bad)
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return d.to_bytes()


def _split_array(raw: bytes) -> list[bytes]:
    """The encoded elements of an encoded array value."""
    etype, count = struct.unpack_from("<IQ", raw)
    off, out = 12, []
    for _ in range(count):
        if etype == STR:
            n = struct.unpack_from("<Q", raw, off)[0] + 8
        else:
            n = struct.calcsize(_FMT[etype])
        out.append(raw[off:off + n])
        off += n
    return out


def _strings(d: GGUFDoc, key: str) -> list:
    for k, vt, raw in d.kvs:
        if k == key.encode() and vt == ARR:
            return [p[8:].decode() for p in _split_array(raw)]
    return []


def scan_gguf_bytes(data: bytes):
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
        f.write(data)
        f.flush()
        return scan_gguf(f.name)


# ---- running one case ----

class CaseTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raises CaseTimeout in the main thread after seconds (SIGALRM)."""
    def on_alarm(signum, frame):
        raise CaseTimeout(f"took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_case(path, time_bound: float = 20.0, n_threads: int = 1) -> tuple[str, str]:
    """Loads path; if it loads, one token through a Session and the tokenizer on a short text.
    Returns ("loaded" | "refused" | "failed", detail)."""
    from ..gguf_model import load_gguf
    from ..session import Session
    t0 = time.perf_counter()
    try:
        with time_limit(time_bound):
            try:
                mf = load_gguf(path)
            except GGraphError as e:
                return "refused", str(e)
            s = Session(mf, n_ctx=8, n_threads=n_threads)
            logits = s.eval([min(1, mf.hparams.n_vocab - 1)])
            if logits.shape != (mf.hparams.n_vocab,):
                return "failed", f"logits of shape {logits.shape}"
            try:
                s.tokenizer.decode(s.tokenizer.encode("hi the and"))
            except GGraphError as e:
                return "loaded", f"(tokenizer refused: {e})"
            return "loaded", f"{time.perf_counter() - t0:.3f} s"
    except CaseTimeout as e:
        return "failed", f"hang: {e}"
    except Exception as e:   # the point: anything but GGraphError is a bug
        return "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
