"""The KV cache: one K and one V tensor per layer, and the cells that say what
each slot holds.

Layout (as llama.cpp's unified cache): per layer
    k[il]: [n_embd_k_gqa, kv_size]   one row per cell, all KV heads of one token
    v[il]: [n_embd_v_gqa, kv_size]
A cell is (position, sequence id); -1 marks a free cell. A micro-batch finds
free cells, the graph writes K/V rows there with set_rows (the cell indices
are an input tensor, so the decode graph is the same graph every step), and
attention reads the first n_kv cells, n_kv padded to a multiple of PAD so it
changes (and the graph is rebuilt) only every PAD cells. The KQ mask hides
cells of other sequences, later positions and free cells.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .context import Context
from .errors import GGraphError
from .tensor import Tensor
from .types import F16, F32, GGType, as_type, row_size

PAD = 256                    # attended length granularity (graph reuse)
STATE_MAGIC = b"GGKV"
STATE_VERSION = 1


class KVCache:
    def __init__(self, n_layer: int, n_embd_k_gqa: int, n_embd_v_gqa: int, kv_size: int,
                 type=F16, fingerprint: str = ""):
        type = as_type(type)
        from .quant import Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
        if type not in (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1):
            raise GGraphError(f"KV cache type must be F32, F16 or Q8_0 (or Q4_0/Q4_1/Q5_0/Q5_1), got {type}")
        if kv_size < 1:
            raise GGraphError(f"KV cache size must be >= 1, got {kv_size}")
        for n in (n_embd_k_gqa, n_embd_v_gqa):
            if n % type.blck_size:
                raise GGraphError(f"KV rows of {n} elements are not whole {type} blocks of {type.blck_size}")
        self.type: GGType = type
        self.n_layer = n_layer
        self.n_embd_k_gqa = n_embd_k_gqa
        self.n_embd_v_gqa = n_embd_v_gqa
        self.kv_size = kv_size
        self.fingerprint = fingerprint
        self.ctx = Context("kv_cache")
        self.k: list[Tensor] = []
        self.v: list[Tensor] = []
        for il in range(n_layer):
            self.k.append(self.ctx.new_tensor(type, [n_embd_k_gqa, self.kv_size], name=f"cache_k_l{il}"))
            self.v.append(self.ctx.new_tensor(type, [n_embd_v_gqa, self.kv_size], name=f"cache_v_l{il}"))
        self.pos = np.full(self.kv_size, -1, dtype=np.int64)
        self.seq = np.full(self.kv_size, -1, dtype=np.int64)

    # ---- cells ----
    def n_used(self) -> int:
        return int((self.pos >= 0).sum())

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest position cached for seq_id, -1 if none."""
        m = self.pos[self.seq == seq_id]
        return int(m.max()) if m.size else -1

    def find_slots(self, n: int) -> np.ndarray:
        free = np.flatnonzero(self.pos < 0)
        if free.size < n:
            raise GGraphError(f"the context is full: {n} more tokens do not fit in {self.kv_size} cells "
                              f"({self.n_used()} in use); start a new session with a larger n_ctx, or clear "
                              f"a sequence")
        return free[:n]

    def occupy(self, cells: np.ndarray, pos: np.ndarray, seq: np.ndarray) -> None:
        self.pos[cells] = pos
        self.seq[cells] = seq

    def n_kv(self) -> int:
        """Cells the attention reads: up to the last used cell, padded to PAD."""
        used = np.flatnonzero(self.pos >= 0)
        top = int(used[-1]) + 1 if used.size else 1
        return min(self.kv_size, (top + PAD - 1) // PAD * PAD)

    def mask(self, n_kv: int, tok_pos: np.ndarray, tok_seq: np.ndarray, n_rows: int) -> np.ndarray:
        """KQ mask (n_rows, n_kv) as float16: 0 where token i may see cell j, -inf elsewhere.
        Rows past the batch (padding) see nothing."""
        cp, cs = self.pos[:n_kv], self.seq[:n_kv]
        m = np.full((n_rows, n_kv), -np.inf, dtype=np.float16)
        n = len(tok_pos)
        visible = (cs[None, :] == tok_seq[:, None]) & (cp[None, :] >= 0) & (cp[None, :] <= tok_pos[:, None])
        m[:n][visible] = 0
        return m

    def remove_from(self, seq_id: int, pos: int) -> None:
        """Frees the cells of seq_id at positions >= pos (llama.cpp's seq_rm)."""
        sel = (self.seq == seq_id) & (self.pos >= pos)
        self.pos[sel] = -1
        self.seq[sel] = -1

    def clear(self, seq_id: int | None = None) -> None:
        """Frees every cell, or those of one sequence."""
        sel = slice(None) if seq_id is None else (self.seq == seq_id)
        self.pos[sel] = -1
        self.seq[sel] = -1

    # ---- views for the builders ----
    def k_row_bytes(self) -> int:
        return row_size(self.type, self.n_embd_k_gqa)

    def v_row_bytes(self) -> int:
        return row_size(self.type, self.n_embd_v_gqa)

    # ---- state ----
    def state_bytes(self) -> bytes:
        """Cells and the used part of every K/V tensor, with a header that names
        the model and the layout, and a checksum."""
        n_kv = self.n_kv() if self.n_used() else 0
        parts = [self.pos[:n_kv].astype("<i8").tobytes(), self.seq[:n_kv].astype("<i8").tobytes()]
        for il in range(self.n_layer):
            for t, rb in ((self.k[il], self.k_row_bytes()), (self.v[il], self.v_row_bytes())):
                buf, offs = t.storage()
                parts.append(bytes(buf[offs:offs + rb * n_kv]))
        body = b"".join(parts)
        fp = self.fingerprint.encode()
        header = STATE_MAGIC + struct.pack("<IIIIIII", STATE_VERSION, self.type.id, self.n_layer,
                                           self.n_embd_k_gqa, self.n_embd_v_gqa, n_kv, len(fp)) + fp
        return header + struct.pack("<IQ", zlib.crc32(body), len(body)) + body

    def load_state_bytes(self, data: bytes) -> None:
        def bad(why):
            raise GGraphError(f"cannot load the KV state: {why}")
        mv = memoryview(data)
        if len(mv) < 32 or bytes(mv[:4]) != STATE_MAGIC:
            bad("not a ggraph KV state (bad magic)")
        version, type_id, n_layer, nk, nv, n_kv, fp_len = struct.unpack_from("<IIIIIII", mv, 4)
        if version != STATE_VERSION:
            bad(f"state version {version}, this ggraph reads version {STATE_VERSION}")
        off = 32
        if off + fp_len + 12 > len(mv):
            bad("truncated header")
        fp = bytes(mv[off:off + fp_len]).decode(errors="replace")
        off += fp_len
        if fp != self.fingerprint:
            bad(f"it was saved from another model ({fp!r}, this session runs {self.fingerprint!r})")
        if (type_id, n_layer, nk, nv) != (self.type.id, self.n_layer, self.n_embd_k_gqa, self.n_embd_v_gqa):
            bad(f"cache layout differs (type {type_id}, {n_layer} layers, rows {nk}/{nv}; "
                f"this cache: type {self.type.id}, {self.n_layer} layers, rows "
                f"{self.n_embd_k_gqa}/{self.n_embd_v_gqa})")
        if n_kv > self.kv_size:
            bad(f"it holds {n_kv} cells, this cache has {self.kv_size}")
        crc, body_len = struct.unpack_from("<IQ", mv, off)
        off += 12
        body = mv[off:]
        expect = 16 * n_kv + n_layer * n_kv * (self.k_row_bytes() + self.v_row_bytes())
        if len(body) != body_len or body_len != expect:
            bad(f"truncated or padded: {len(body)} bytes of data, expected {expect}")
        if zlib.crc32(body) != crc:
            bad("checksum mismatch (corrupted)")
        pos = np.frombuffer(body, "<i8", n_kv, 0)
        seq = np.frombuffer(body, "<i8", n_kv, 8 * n_kv)
        # a cell is free (-1, -1) or holds a position the graphs' I32 inputs can carry
        wrong = ((pos < -1) | (pos >= 2**31 - 1) | (seq < -1) | (seq >= 2**31 - 1) | ((pos == -1) != (seq == -1)))
        if wrong.any():
            i = int(np.argmax(wrong))
            bad(f"cell {i} has position {int(pos[i])} and sequence {int(seq[i])}, expected both -1 (free) "
                f"or both in 0..{2**31 - 2}")
        self.clear()
        self.pos[:n_kv] = pos
        self.seq[:n_kv] = seq
        o = 16 * n_kv
        for il in range(self.n_layer):
            for t, rb in ((self.k[il], self.k_row_bytes()), (self.v[il], self.v_row_bytes())):
                buf, offs = t.storage()
                buf[offs:offs + rb * n_kv] = np.frombuffer(body, np.uint8, rb * n_kv, o)
                o += rb * n_kv
