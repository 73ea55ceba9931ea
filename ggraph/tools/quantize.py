"""`ggraph quantize IN.gguf OUT.gguf TYPE`: requantize a GGUF model the way llama-quantize does.

    ggraph quantize qwen2-0.5b-f32.gguf qwen2-0.5b-q8_0.gguf q8_0 --threads 2

TYPE is a llama.cpp file type name, case-insensitive: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K, the aliases
Q3_K = Q3_K_M, Q4_K = Q4_K_M, Q5_K = Q5_K_M (as in llama-quantize), or the
numeric llama_ftype value.

Which type each tensor gets (llama.cpp's src/llama-quant.cpp, same decisions):
- only tensors with 2 or more dims whose name ends in "weight" are quantized, except
  norms ("_norm.weight"), MoE routers ("ffn_gate_inp"), position/token-type embeddings
  and a few small special tensors (EXCLUDED below); everything else (1-d norms and
  biases, in practice F32) is copied unchanged;
- output.weight, and token_embd.weight when the model ties it to the output (no
  output.weight in the file), get Q6_K, or stay Q8_0 for Q8_0, or get Q8_0 when the
  row length is not a multiple of the file type's block size (or for Falcon);
- the *_K_S / *_K_M / *_K_L mixes and Q2_K give some attn_v / attn_qkv, ffn_down and
  attn_output tensors more bits by layer (use_more_bits: first and last eighth of the
  layers and every third in between), models with 8 experts get Q8_0 attn_k / attn_v;
- a row length that is not a multiple of the chosen type's block size falls back:
  Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and to F16 when even
  that does not divide it (a 32-block type that does not divide goes to F16 directly);
- general.file_type is set to the llama_ftype value, general.quantization_version to 2;
  every other key (tokenizer included) and the tensor order are copied unchanged.
Left out: importance matrices (and the rules that only apply with one), the IQ / TQ /
MXFP4 types, the 70B-only attn_v bump, --output-tensor-type / --token-embedding-type
overrides. --pure skips the mixes (every quantizable tensor gets the base type; the
fallbacks still apply), like llama-quantize --pure.

Input tensors may be F32, F16, BF16 or F64; a tensor already in its target type is
copied; one in another quantized type is an error unless --allow-requantize (then
it is dequantized first, if ggraph can decode it). Rows are converted in chunks of
about CHUNK_ELEMS floats on --threads workers (the C calls release the GIL), so memory
stays at one output tensor plus a few chunks; the input is memory-mapped.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import GGraphError
from ..tensor import bf16_to_f32
from ..types import as_type

CHUNK_ELEMS = 1 << 20          # floats converted per work item (4 MiB of f32)
QNT_VERSION = 2                # ggml's GGML_QNT_VERSION, written to general.quantization_version


@dataclass(frozen=True)
class FileType:
    name: str       # llama.cpp's name
    id: int         # enum llama_ftype, written to general.file_type
    base: str       # the default tensor type of the mix


FILE_TYPES = {f.name: f for f in (
    FileType("Q4_0", 2, "Q4_0"), FileType("Q4_1", 3, "Q4_1"), FileType("Q8_0", 7, "Q8_0"),
    FileType("Q5_0", 8, "Q5_0"), FileType("Q5_1", 9, "Q5_1"), FileType("Q2_K", 10, "Q2_K"),
    FileType("Q3_K_S", 11, "Q3_K"), FileType("Q3_K_M", 12, "Q3_K"), FileType("Q3_K_L", 13, "Q3_K"),
    FileType("Q4_K_S", 14, "Q4_K"), FileType("Q4_K_M", 15, "Q4_K"), FileType("Q5_K_S", 16, "Q5_K"),
    FileType("Q5_K_M", 17, "Q5_K"), FileType("Q6_K", 18, "Q6_K"))}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

# a type whose block does not divide the row length -> the 32-block type used instead
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# name fragments of weights that stay as they are (besides 1-d tensors and "_norm.weight")
EXCLUDED = ("ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "position_embd",
            "token_types.weight", "ssm_conv1d", "shortconv.conv.weight", "time_mix_first.weight",
            "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight",
            "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
            "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
            "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight")

FLOAT_INPUTS = ("F32", "F16", "BF16", "F64")



def _ratio(size_in: int, size_out: int) -> str:
    if size_out <= size_in:
        return f"{size_in / max(size_out, 1):.2f}x smaller"
    return f"{size_out / max(size_in, 1):.2f}x larger"

def parse_file_type(s: str) -> FileType:
    key = str(s).strip().upper()
    if key.isdigit():
        for f in FILE_TYPES.values():
            if f.id == int(key):
                return f
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        names = ", ".join(list(FILE_TYPES) + [f"{a} (= {b})" for a, b in ALIASES.items()])
        raise GGraphError(f"unknown quantization type {s!r}; known: {names}")
    return FILE_TYPES[key]


def _category(name: str) -> str:
    """The tensor's role, by the same substring tests (in the same order) as llama-quant.cpp."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for frag, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"),
                      ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                      ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"),
                      ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if frag in name:
            return cat
    return "other"


def _n_dims(ne) -> int:
    """ggml_n_dims: dims up to the last one longer than 1 (at least 1)."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


def allows_quantization(name: str, ne) -> bool:
    if _n_dims(ne) < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return False
    return not any(frag in name for frag in EXCLUDED)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class Planner:
    """llama-quantize's per-tensor type choice; call target() once per tensor, in file order."""
    ftype: FileType
    arch: str = ""
    n_layer: int = 0
    n_expert: int = 0
    n_gqa: int = 1
    tied: bool = True            # token_embd doubles as the output (no output.weight)
    n_attn_v: int = 0
    pure: bool = False
    i_attn_v: int = 0
    i_ffn_down: int = 0
    n_fallback: int = 0
    notes: list = field(default_factory=list)

    def target(self, name: str, ne, cur: str) -> str:
        if not allows_quantization(name, ne):
            return cur
        new = self.ftype.base
        if not self.pure:
            new = self._mix(name, ne, new)
        return self._fallback(name, ne[0], new)

    def _layer(self, counter: int, name: str) -> int:
        if self.n_expert > 1:                  # expert tensors are not in layer order: read the name
            m = re.match(r"blk\.(\d+)\.", name)
            if not m:
                raise GGraphError(f"cannot tell the layer of tensor {name}")
            return int(m.group(1))
        return counter

    def _mix(self, name: str, ne, new: str) -> str:
        f, cat, falcon = self.ftype.name, _category(name), self.arch == "falcon"
        if cat == "output" or (self.tied and cat == "token_embd"):
            if falcon or ne[0] % as_type(new).blck_size:
                return "Q8_0"
            return new if new == "Q8_0" else "Q6_K"
        if cat == "attn_v":
            i, n = self.i_attn_v, self.n_attn_v
            if f == "Q2_K":
                new = "Q4_K" if self.n_gqa >= 4 else "Q3_K"
            elif f == "Q3_K_M":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif f == "Q3_K_L":
                new = "Q5_K"
            elif f in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
                new = "Q6_K"
            elif f == "Q4_K_S" and i < 4:
                new = "Q5_K"
            if self.n_expert == 8:
                new = "Q8_0"
            self.i_attn_v += 1
        elif cat == "attn_k":
            if self.n_expert == 8:
                new = "Q8_0"
        elif cat == "ffn_down":
            i, n = self._layer(self.i_ffn_down, name), self.n_layer
            if f == "Q2_K":
                new = "Q3_K"
            elif f == "Q3_K_M":
                new = "Q5_K" if i < n // 16 else "Q4_K" if (not falcon or _use_more_bits(i, n)) else "Q3_K"
            elif f == "Q3_K_L":
                new = "Q4_K" if falcon else "Q5_K"
            elif f == "Q4_K_M":
                if falcon:
                    new = "Q6_K" if i < n // 16 else "Q5_K" if _use_more_bits(i, n) else "Q4_K"
                elif _use_more_bits(i, n):
                    new = "Q6_K"
            elif f == "Q5_K_M" and _use_more_bits(i, n):
                new = "Q6_K"
            elif f == "Q4_K_S" and not falcon and i < n // 8:
                new = "Q5_K"
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if falcon:
                if f == "Q3_K_L":
                    new = "Q4_K"
            elif self.n_expert == 8:
                if f in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                    new = "Q5_K"
            else:
                new = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(f, new)
        return new

    def _fallback(self, name: str, ne0: int, new: str) -> str:
        if ne0 % as_type(new).blck_size == 0:
            return new
        alt = FALLBACK.get(new, new)
        if ne0 % as_type(alt).blck_size:
            alt = "F16"
        self.n_fallback += 1
        self.notes.append(f"{name}: rows of {ne0} are not a multiple of the {new} block "
                          f"({as_type(new).blck_size}): using {alt}")
        return alt


# ---- GGUF in and out ----

def _field_value(reader, key, default=None):
    fld = reader.fields.get(key)
    if fld is None or not fld.types:
        return default
    v = fld.contents()
    if isinstance(v, list):            # per-layer arrays (head counts): the first layer's
        v = v[0] if v else default
    return v


def planner_for(reader, ftype: FileType, pure: bool = False) -> Planner:
    arch = _field_value(reader, "general.architecture", "") or ""
    n_head = int(_field_value(reader, f"{arch}.attention.head_count", 0) or 0)
    n_head_kv = int(_field_value(reader, f"{arch}.attention.head_count_kv", n_head) or 0)
    names = [t.name for t in reader.tensors]
    return Planner(ftype, arch=arch, n_layer=int(_field_value(reader, f"{arch}.block_count", 0) or 0),
                   n_expert=int(_field_value(reader, f"{arch}.expert_count", 0) or 0),
                   n_gqa=n_head // n_head_kv if n_head_kv else 0,
                   tied="output.weight" not in names,
                   n_attn_v=sum(_category(n) == "attn_v" for n in names), pure=pure)


def _check_convertible(name: str, cur: str, new: str, allow_requantize: bool) -> None:
    from ..quant import QUANT_TYPES
    if cur in FLOAT_INPUTS:
        return
    quantized = any(q.name == cur for q in QUANT_TYPES)
    if not quantized:
        raise GGraphError(f"tensor {name} is {cur}: cannot requantize it to {new}")
    if not allow_requantize:
        raise GGraphError(f"tensor {name} is already quantized ({cur}); requantizing it to {new} "
                          f"loses precision: pass --allow-requantize to do it anyway")
    _check_runtime(cur, f"cannot dequantize tensor {name} ({cur})")


def _check_runtime(tname: str, why: str) -> None:
    """Fails early (before writing) when the C runtime has no rows for a block type."""
    import ggraph as gg
    t = as_type(tname)
    if t.blck_size == 1:
        return
    try:
        gg.quantize(np.zeros(t.blck_size, np.float32), t)
    except GGraphError:
        raise GGraphError(f"{why}: the C runtime has no {tname} conversion built in") from None


def _rows_to_f32(rows: np.ndarray, cur: str, ne0: int) -> np.ndarray:
    """A chunk of input rows (as stored) as float32 (rows, ne0)."""
    import ggraph as gg
    if cur == "F32":
        return rows
    if cur in ("F16", "F64"):
        return rows.astype(np.float32)
    if cur == "BF16":
        return bf16_to_f32(np.ascontiguousarray(rows).view(np.uint16))
    return gg.dequantize(np.ascontiguousarray(rows), cur).reshape(-1, ne0)


class Progress:
    """One line on stderr, redrawn at most ~10 times a second (only on a terminal)."""

    def __init__(self, total: int, stream=None, enabled: bool | None = None):
        self.total, self.done, self.stream = max(total, 1), 0, stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.t0, self.last = "", time.perf_counter(), 0.0
        self.lock = threading.Lock()

    def update(self, n: int = 0, label: str | None = None) -> None:
        with self.lock:
            self.done += n
            if label is not None:
                self.label = label
            now = time.perf_counter()
            if self.enabled and (now - self.last > 0.1 or self.done >= self.total):
                self.last = now
                frac = min(self.done / self.total, 1.0)
                bar = "#" * int(frac * 30)
                rate = self.done / max(now - self.t0, 1e-9) / 2**20
                self.stream.write(f"\r[{bar:<30s}] {frac:6.1%} {rate:7.1f} MiB/s  {self.label[:40]:<40s}")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _mib(n: int) -> float:
    return n / 2**20


def quantize_file(inp: str, out: str, type_name: str, *, threads: int | None = None, pure: bool = False,
                  allow_requantize: bool = False, progress: bool | None = None, log=None) -> dict:
    """Requantizes GGUF file `inp` into `out`; returns the summary as a dict (and prints it to `log`)."""
    import gguf
    import ggraph as gg

    log = log or sys.stdout
    ftype = parse_file_type(type_name)
    threads = gg.default_threads() if threads is None else int(threads)
    if threads < 1:
        raise GGraphError(f"--threads must be at least 1, got {threads}")
    if not os.path.isfile(inp):
        raise GGraphError(f"{inp}: no such file")
    if os.path.exists(out) and os.path.samefile(inp, out):
        raise GGraphError(f"{out}: the output must not overwrite the input")
    try:
        reader = gguf.GGUFReader(inp, "r")
    except (ValueError, OSError, IndexError, KeyError) as e:
        raise GGraphError(f"{inp}: not a readable GGUF file ({e})") from None
    if reader.byte_order != "I":
        raise GGraphError(f"{inp}: byte-swapped (big-endian) GGUF files are not supported")

    # ---- plan: the type of every tensor, before writing anything ----
    planner = planner_for(reader, ftype, pure)
    plan = []
    for t in reader.tensors:
        ne = [int(x) for x in t.shape]
        try:
            cur = gguf.GGMLQuantizationType(int(t.tensor_type)).name
        except ValueError:
            raise GGraphError(f"tensor {t.name} has an unknown type id {int(t.tensor_type)}") from None
        new = planner.target(t.name, ne, cur)
        if new != cur:
            _check_convertible(t.name, cur, new, allow_requantize)
            _check_runtime(new, f"cannot write tensor {t.name} as {new} (chosen for {ftype.name})")
        plan.append((t, ne, cur, new))

    # ---- header: metadata copied in order, file type set, tensor infos ----
    arch = _field_value(reader, "general.architecture", "") or ""
    tmp = out + ".part"
    writer = gguf.GGUFWriter(tmp, arch)
    for fld in reader.fields.values():
        if fld.name == "general.architecture" or fld.name.startswith("GGUF."):
            continue
        if fld.name == "general.alignment":
            writer.add_custom_alignment(int(fld.contents()))
        elif fld.name == "general.file_type":
            writer.add_uint32(fld.name, ftype.id)
        elif fld.name == "general.quantization_version":
            writer.add_uint32(fld.name, QNT_VERSION)
        else:
            vtype = fld.types[0]
            sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(fld.name, fld.contents(), vtype, sub_type=sub)
    if "general.quantization_version" not in reader.fields:
        writer.add_uint32("general.quantization_version", QNT_VERSION)
    if "general.file_type" not in reader.fields:
        writer.add_uint32("general.file_type", ftype.id)

    size_in = size_out = 0
    counts: dict[str, int] = {}
    for t, ne, cur, new in plan:
        nrows = int(np.prod(ne[1:], dtype=np.int64)) if len(ne) > 1 else 1
        nbytes = t.n_bytes if new == cur else nrows * gg.row_size(new, ne[0])
        writer.add_tensor_info(t.name, list(reversed(ne)), np.dtype(np.float32), nbytes,
                               raw_dtype=gguf.GGMLQuantizationType[new])
        size_in += t.n_bytes
        size_out += nbytes
        counts[new] = counts.get(new, 0) + 1

    t0 = time.perf_counter()
    bar = Progress(sum(t.n_bytes for t, *_ in plan), enabled=progress)
    ok = False
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for k, (t, ne, cur, new) in enumerate(plan):
                bar.update(0, f"{k + 1}/{len(plan)} {t.name}")
                if new == cur:
                    writer.write_tensor_data(t.data)
                    bar.update(t.n_bytes)
                    continue
                writer.write_tensor_data(_convert(t, ne, cur, new, pool, bar))
        writer.close()
        os.replace(tmp, out)
        ok = True
    except OSError as e:
        raise GGraphError(f"{out}: {e.strerror or e}") from None
    except ValueError as e:                       # the gguf writer refusing something
        raise GGraphError(f"{out}: {e}") from None
    finally:
        bar.close()
        if not ok:
            try:
                writer.close()
            except Exception:                     # already closed or never opened
                pass
            if os.path.exists(tmp):
                os.remove(tmp)
    dt = time.perf_counter() - t0

    summary = {"file_type": ftype.name, "file_type_id": ftype.id, "counts": counts, "n_tensors": len(plan),
               "size_in": size_in, "size_out": size_out, "seconds": dt, "fallbacks": planner.notes}
    for note in planner.notes:
        print(f"note: {note}", file=log)
    types = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{out}: {ftype.name} (file_type {ftype.id}), {len(plan)} tensors: {types}", file=log)
    print(f"size {_mib(size_in):.2f} MiB -> {_mib(size_out):.2f} MiB "
          f"({_ratio(size_in, size_out)}), {dt:.2f} s with {threads} thread(s)", file=log)
    return summary


def _convert(t, ne, cur: str, new: str, pool, bar: Progress) -> np.ndarray:
    """Tensor t's rows converted to type `new` (uint8 blocks, or float16 for an F16 fallback)."""
    import ggraph as gg
    ne0 = ne[0]
    nrows = t.n_elements // ne0
    src = t.data.reshape(nrows, -1)                # rows as stored (memory-mapped)
    in_row_bytes = t.n_bytes // nrows
    if new == "F16":
        dst = np.empty((nrows, ne0), np.float16)
    else:
        dst = np.empty((nrows, gg.row_size(new, ne0)), np.uint8)
    step = max(1, CHUNK_ELEMS // ne0)

    def work(r0: int) -> None:
        r1 = min(r0 + step, nrows)
        x = _rows_to_f32(src[r0:r1], cur, ne0)
        dst[r0:r1] = x.astype(np.float16) if new == "F16" else gg.quantize(x, new)
        bar.update((r1 - r0) * in_row_bytes)

    for _ in pool.map(work, range(0, nrows, step)):
        pass
    return dst
