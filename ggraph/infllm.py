"""Long contexts: InfLLM-style block memory (arXiv 2402.04617) and the sliding-window
baseline, as a Session's attention mode.

    s = Session(model, n_ctx=32768, attn=AttnConfig(mode="infllm", n_local=1024))

A sequence is split, oldest first, into the initial tokens (n_init, kept for good),
blocks of block_size tokens in a block memory, and a local window of the most
recent n_local (+ the current chunk) tokens. Each step's graph attends over the
initial tokens, the top-k blocks whose representative keys best match the chunk's
mean query, and the window, under one softmax (models/infllm.py builds it).

Python's part, between steps: moving whole blocks out of the window into the
memory (with their representative keys), the masks, and growing the memory in
doubling buckets (the graph is rebuilt only then). `window` mode drops the blocks
instead of keeping them: initial tokens + window, no retrieval.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import weakref
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np

from .context import Context
from .errors import GGraphError
from .graph import Graph
from .tensor import Tensor, aligned_bytes
from .types import F16, F32

MODES = ("full", "window", "infllm")
SCORES = ("sum_heads", "per_kv_head")
REPR_SELECTS = ("attn_mass", "qk")
REPR_WEIGHTINGS = ("uniform", "score")
STATE_MAGIC = b"GGIL"
STATE_VERSION = 1
MIN_BLOCK_SLOTS = 32
MAX_GRAPHS = 6


@dataclass(frozen=True)
class AttnConfig:
    """Attention over the context. `full` (default): every cached token. `window`:
    n_init initial tokens + the last n_local (+ chunk) tokens. `infllm`: that plus the
    topk best blocks of the older tokens."""
    mode: str = "full"
    n_init: int = 128
    n_local: int = 2048
    block_size: int = 128
    topk: int = 16
    repr_topk: int = 4
    chunk: int = 512                  # prefill micro-batch: one retrieval per chunk
    score: str = "sum_heads"          # block score summed over all heads, or per KV head
    repr_select: str = "attn_mass"    # representative tokens: attention received, or summed q.k
    repr_weighting: str = "uniform"   # representative key: mean of them, or weighted by score
    spill_dir: str | None = None      # block memory in memory-mapped files there
    mem_distance: int | None = None   # distance query -> memory keys; None: n_local (InfLLM)

    def __post_init__(self):
        def bad(what, got, want):
            raise GGraphError(f"attention config: {what} must be {want}, got {got!r}")
        for name, allowed in (("mode", MODES), ("score", SCORES), ("repr_select", REPR_SELECTS),
                              ("repr_weighting", REPR_WEIGHTINGS)):
            if getattr(self, name) not in allowed:
                bad(name, getattr(self, name), "one of " + ", ".join(allowed))
        for name, lo in (("n_init", 0), ("n_local", 1), ("block_size", 1), ("topk", 1), ("repr_topk", 1),
                         ("chunk", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                bad(name, v, f"an integer >= {lo}")
        if self.mem_distance is not None and (not isinstance(self.mem_distance, int) or self.mem_distance < 0):
            bad("mem_distance", self.mem_distance, "None or an integer >= 0")
        if self.n_local % self.block_size:
            bad("n_local", self.n_local, f"a multiple of block_size ({self.block_size}): the window gives "
                "up whole blocks")
        if self.repr_topk > self.block_size:
            bad("repr_topk", self.repr_topk, f"<= block_size ({self.block_size})")
        if self.spill_dir is not None and not os.path.isdir(self.spill_dir):
            bad("spill_dir", self.spill_dir, "an existing directory")

    @property
    def memory_distance(self) -> int:
        return self.n_local if self.mem_distance is None else self.mem_distance

    def key(self) -> dict:
        """What a saved state must match (the spill place may differ)."""
        d = asdict(self)
        d.pop("spill_dir")
        return d


def _leaf(buf: np.ndarray, type, ne, name: str) -> Tensor:
    """A leaf tensor over an existing byte buffer (RAM or a memory-mapped file)."""
    t = Tensor(type, ne, name=name)
    t._buf, t._offs = buf, 0
    return t


class BlockMemory:
    """Per-layer tensors of the window ring, the initial tokens and the block memory
    (layouts in models/infllm.py). The block memory grows by doubling."""

    def __init__(self, n_layer: int, head_dim: int, n_head_kv: int, cfg: AttnConfig):
        self.n_layer, self.head_dim, self.n_head_kv, self.cfg = n_layer, head_dim, n_head_kv, cfg
        self.kvd = head_dim * n_head_kv
        self.l_cap = cfg.n_local + cfg.chunk
        ctx = Context("infllm")
        self.ctx = ctx

        def per_layer(what, ne):
            return [ctx.new_tensor(F16, ne, name=f"{what}_l{il}") for il in range(n_layer)]
        n_init = max(cfg.n_init, 1)
        self.loc_k = per_layer("loc_k", [self.kvd, self.l_cap])
        self.loc_kraw = per_layer("loc_kraw", [self.kvd, self.l_cap])
        self.loc_vt = per_layer("loc_vt", [self.l_cap, self.kvd])
        self.init_k = per_layer("init_k", [self.kvd, n_init])
        self.init_vt = per_layer("init_vt", [n_init, self.kvd])
        self.cap = 0
        self.mem_k: list[Tensor] = []
        self.mem_v: list[Tensor] = []
        self.repr: list[Tensor] = []
        self._spill = None
        if cfg.spill_dir is not None:
            self._spill = tempfile.mkdtemp(prefix="ggraph-infllm-", dir=cfg.spill_dir)
            weakref.finalize(self, shutil.rmtree, self._spill, True)
        if cfg.mode == "infllm":
            self.grow(max(cfg.topk, MIN_BLOCK_SLOTS))

    # bytes per block slot of one layer
    def _block_bytes(self) -> int:
        return self.cfg.block_size * self.kvd * 2

    def _repr_bytes(self) -> int:
        return self.kvd * 4

    def _buffer(self, name: str, nbytes: int, old: np.ndarray | None) -> np.ndarray:
        if self._spill is None:
            buf = aligned_bytes(nbytes)
            if old is not None:
                buf[:old.nbytes] = old
            return buf
        path = os.path.join(self._spill, name + ".bin")
        if old is not None:
            old.flush()
        with open(path, "ab") as f:           # growing the file keeps what is in it
            f.truncate(nbytes)
        return np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,))

    def grow(self, need: int) -> None:
        """Makes room for `need` blocks per layer (new tensors: graphs must be rebuilt)."""
        cap = max(self.cap, max(self.cfg.topk, MIN_BLOCK_SLOTS))
        while cap < need:
            cap *= 2
        if cap == self.cap:
            return
        d, bs, hkv = self.head_dim, self.cfg.block_size, self.n_head_kv
        mk, mv, rp = [], [], []
        for il in range(self.n_layer):
            old = (self.mem_k[il]._buf, self.mem_v[il]._buf, self.repr[il]._buf) if self.cap else (None,) * 3
            mk.append(_leaf(self._buffer(f"k_l{il}", cap * self._block_bytes(), old[0]), F16, [d * bs, hkv, cap],
                            f"mem_k_l{il}"))
            mv.append(_leaf(self._buffer(f"v_l{il}", cap * self._block_bytes(), old[1]), F16, [d * bs, hkv, cap],
                            f"mem_v_l{il}"))
            # representative keys stay in RAM: they are read whole at every step
            rbuf = aligned_bytes(cap * self._repr_bytes())
            if old[2] is not None:
                rbuf[:old[2].nbytes] = old[2]
            rp.append(_leaf(rbuf, F32, [d, hkv, cap], f"repr_l{il}"))
        self.mem_k, self.mem_v, self.repr, self.cap = mk, mv, rp, cap

    # ---- views for the builder ----
    def block_rows(self, t: Tensor):
        """[d*bs, cap, hkv]: get_rows picks blocks per KV head."""
        import ggraph as gg
        rb = t.nb[1]
        return gg.view_3d(t, t.ne[0], self.cap, self.n_head_kv, self.n_head_kv * rb, rb, 0)

    def repr_rows(self, il: int):
        import ggraph as gg
        t = self.repr[il]
        return gg.view_3d(t, self.head_dim, self.cap, self.n_head_kv, self.n_head_kv * t.nb[1], t.nb[1], 0)

    # ---- numpy views for Python's moves ----
    def ring(self, t: Tensor) -> np.ndarray:
        """(l_cap or n_init, hkv, d) float16 view of a window/init key tensor."""
        return t.numpy().reshape(t.ne[1], self.n_head_kv, self.head_dim)

    def ring_t(self, t: Tensor) -> np.ndarray:
        """(hkv*d, l_cap or n_init) float16 view of a transposed value tensor."""
        return t.numpy().reshape(self.kvd, t.ne[0])

    def blocks(self, t: Tensor) -> np.ndarray:
        """(cap, hkv, bs, d) float16 view of a block memory tensor."""
        return t._buf.view(np.float16).reshape(self.cap, self.n_head_kv, self.cfg.block_size, self.head_dim)

    def reprs(self, il: int) -> np.ndarray:
        return self.repr[il]._buf.view(np.float32).reshape(self.cap, self.n_head_kv, self.head_dim)

    def nbytes(self) -> int:
        return self.n_layer * self.cap * (2 * self._block_bytes() + self._repr_bytes())


def representative_key(keys: np.ndarray, scores: np.ndarray, repr_topk: int, weighting: str,
                       select: str) -> np.ndarray:
    """keys (bs, hkv, d), scores (bs, hkv) -> (hkv, d): per head, the mean of the keys
    of the repr_topk best-scored tokens, uniform or weighted by their scores."""
    bs, hkv, d = keys.shape
    top = np.argsort(-scores, axis=0, kind="stable")[:repr_topk]              # (r, hkv)
    heads = np.arange(hkv)
    sel = keys[top, heads].astype(np.float32)                                 # (r, hkv, d)
    if weighting == "uniform":
        w = np.full(top.shape, 1.0 / repr_topk)
    else:
        s = scores[top, heads].astype(np.float64)
        if select == "qk":               # logit sums: softmax-like weights
            e = np.exp((s - s.max(axis=0)) / math.sqrt(d))
            w = e / e.sum(axis=0)
        else:                            # attention mass is >= 0 already
            tot = s.sum(axis=0)
            w = np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 1.0 / repr_topk)
    return (w[..., None] * sel).sum(axis=0).astype(np.float32)


def show_progress(flag: bool | None, n: int, chunk: int) -> bool:
    """A bar for prompts of several chunks: when asked, or by default on a terminal."""
    return n > chunk and (flag if flag is not None else sys.stderr.isatty())


def progress(done: int, total: int, t0: float, out=None) -> None:
    out = out or sys.stderr
    dt = time.perf_counter() - t0
    rate = done / dt if dt > 0 else 0.0
    out.write(f"\rprefill {done}/{total} tokens ({100 * done // total}%), {rate:.0f} tokens/s")
    if done == total:
        out.write("\n")
    out.flush()


class LongContext:
    """A Session's context in window/infllm mode: the ring, the memory, the graphs.
    It answers the KV-cache questions Session and the CLI ask (n_used, clear, ...)."""

    def __init__(self, session, cfg: AttnConfig, n_ctx: int, fingerprint: str):
        hp = session.hparams
        self.s, self.cfg, self.kv_size, self.fingerprint = session, cfg, n_ctx, fingerprint
        self.n_layer, self.n_head, self.n_head_kv, self.head_dim = hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim
        self.mem = BlockMemory(hp.n_layer, hp.head_dim, hp.n_head_kv, cfg)
        self.retrieval = cfg.mode == "infllm"
        self._plans: OrderedDict[tuple, object] = OrderedDict()
        # the prompt token whose logits are asked for gets a step of its own, so it retrieves
        # blocks with its own query (as a decode step) and not with its chunk's mean query,
        # which is mostly about the text before it
        self.split_last = True
        self.clear()

    # ---- the KV-cache questions ----
    def n_used(self) -> int:
        return self.n_past

    def seq_pos_max(self, seq_id: int) -> int:
        return self.n_past - 1 if seq_id == 0 else -1

    def clear(self, seq_id: int | None = None) -> None:
        self.slot_pos = np.full(self.mem.l_cap, -1, dtype=np.int64)
        self.score = np.zeros((self.n_layer, self.mem.l_cap, self.n_head_kv))
        self.n_past = self.init_count = self.n_blocks = 0

    def remove_from(self, seq_id: int, pos: int) -> None:
        """Drops positions >= pos; only the window's tokens can be taken back."""
        if pos >= self.n_past:
            return
        if pos <= 0:
            self.clear()
            return
        used = self.slot_pos >= 0
        if not used.any() or pos < self.slot_pos[used].min():
            raise GGraphError(f"{self.cfg.mode} attention: cannot drop positions >= {pos}: tokens before "
                              f"{int(self.slot_pos[used].min()) if used.any() else self.n_past} have left "
                              f"the local window; start over (reset) instead")
        gone = self.slot_pos >= pos
        self.slot_pos[gone] = -1
        self.score[:, gone] = 0
        self.n_past = pos

    def local_count(self) -> int:
        return int((self.slot_pos >= 0).sum())

    # ---- window -> memory ----
    def _evict(self) -> None:
        """Moves the oldest tokens out until the window holds at most n_local."""
        cfg = self.cfg
        while self.local_count() > cfg.n_local:
            used = np.flatnonzero(self.slot_pos >= 0)
            order = used[np.argsort(self.slot_pos[used], kind="stable")]
            if self.init_count < cfg.n_init:
                slots = order[:min(cfg.n_init - self.init_count, len(order))]
                self._to_init(slots)
            else:
                slots = order[:cfg.block_size]
                if self.retrieval:
                    self._to_block(slots)
            self.slot_pos[slots] = -1
            self.score[:, slots] = 0
        self._compact()

    def _compact(self) -> None:
        """Moves the window's tokens to the first slots, oldest first (a step reads
        only the first n_local + n_tokens slots)."""
        used = np.flatnonzero(self.slot_pos >= 0)
        order = used[np.argsort(self.slot_pos[used], kind="stable")]
        n = len(order)
        if np.array_equal(order, np.arange(n)):
            return
        m = self.mem
        for il in range(self.n_layer):
            for t in (m.loc_k[il], m.loc_kraw[il]):
                r = m.ring(t)
                r[:n] = r[order]
            vt = m.ring_t(m.loc_vt[il])
            vt[:, :n] = vt[:, order]
        self.slot_pos[:n] = self.slot_pos[order]
        self.slot_pos[n:] = -1
        self.score[:, :n] = self.score[:, order]
        self.score[:, n:] = 0

    def _to_init(self, slots) -> None:
        a, b = self.init_count, self.init_count + len(slots)
        m = self.mem
        for il in range(self.n_layer):
            m.ring(m.init_k[il])[a:b] = m.ring(m.loc_kraw[il])[slots]
            m.ring_t(m.init_vt[il])[:, a:b] = m.ring_t(m.loc_vt[il])[:, slots]
        self.init_count = b

    def _to_block(self, slots) -> None:
        b = self.n_blocks
        if b >= self.mem.cap:
            self.mem.grow(b + 1)
            self._plans.clear()                 # they point at the old tensors
        cfg, m = self.cfg, self.mem
        for il in range(self.n_layer):
            keys = m.ring(m.loc_kraw[il])[slots]                               # (bs, hkv, d)
            m.blocks(m.mem_k[il])[b] = keys.transpose(1, 0, 2)
            vals = m.ring_t(m.loc_vt[il])[:, slots].T.reshape(len(slots), self.n_head_kv, self.head_dim)
            m.blocks(m.mem_v[il])[b] = vals.transpose(1, 0, 2)
            m.reprs(il)[b] = representative_key(keys, self.score[il, slots], cfg.repr_topk,
                                                cfg.repr_weighting, cfg.repr_select)
        self.n_blocks = b + 1

    # ---- graphs ----
    def _plan(self, n_tokens: int, n_outputs: int | None):
        from .models.infllm import InfLLMInputs
        from .session import _Plan
        key = (n_tokens, n_outputs, self.mem.cap)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        inp = InfLLMInputs.new(Context("inputs"), self.cfg, self.mem, n_tokens, n_outputs, self.n_head)
        logits = self.s._build(self.s.model, self.mem, inp)
        g = Graph(f"{self.s.hparams.arch} {self.cfg.mode} n_tokens={n_tokens} blocks={self.mem.cap}")
        g.build_forward_expand(logits.set_output())
        for t in inp.extra + inp.sel_idx + inp.loc_score:
            g.build_forward_expand(t)
        g.plan()
        plan = _Plan(g, inp, logits)
        self._plans[key] = plan
        self.s.timings.n_graph_builds += 1
        while len(self._plans) > MAX_GRAPHS:
            self._plans.popitem(last=False)
        return plan

    def decode_graph(self) -> Graph:
        return self._plan(1, None).graph

    def _mask(self, pos: np.ndarray, n_sel: int, n_loc: int):
        cfg, m = self.cfg, len(pos)
        cols = [np.broadcast_to(np.arange(cfg.n_init) < self.init_count, (m, cfg.n_init))]
        if n_sel:
            n_valid = min(cfg.topk, self.n_blocks) * cfg.block_size
            cols.append(np.broadcast_to(np.arange(n_sel) < n_valid, (m, n_sel)))
        sp = self.slot_pos[:n_loc]
        cols.append((sp[None, :] >= 0) & (sp[None, :] <= pos[:, None]))
        vis = np.concatenate(cols, axis=1)
        return np.where(vis, 0.0, -np.inf).astype(np.float16), cols[-1]

    # ---- running ----
    def eval(self, toks: np.ndarray, seq_id: int, all_logits: bool) -> np.ndarray:
        from .models.infllm import value_slots
        if seq_id != 0:
            raise GGraphError(f"{self.cfg.mode} attention keeps one sequence (seq_id 0), got seq_id {seq_id}")
        n = len(toks)
        if self.n_past + n > self.kv_size:
            raise GGraphError(f"the context is full: {n} tokens do not fit; {self.n_past} of "
                              f"{self.kv_size} positions are in use (use a larger -c)")
        tm = self.s.timings
        t0 = time.perf_counter()
        t_c = 0
        outs = []
        show = show_progress(self.s.progress, n, self.cfg.chunk)
        bounds = list(range(0, n, self.cfg.chunk)) + [n]
        if self.split_last and not all_logits and n > 1 and bounds[-2] != n - 1:
            bounds.insert(-1, n - 1)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            chunk = toks[start:stop]
            m = len(chunk)
            self._evict()
            slots = np.arange(self.local_count(), self.local_count() + m)     # after _compact: the next free
            pos = np.arange(self.n_past, self.n_past + m, dtype=np.int64)
            self.slot_pos[slots] = pos
            try:
                plan = self._plan(m, None if (all_logits or m == 1) else 1)
                inp = plan.inputs
                inp.tokens.set(chunk)
                inp.pos.set(pos.astype(np.int32))
                inp.loc_idx.set(slots.astype(np.int32))
                inp.loc_vidx.set(value_slots(self.mem.kvd, self.mem.l_cap, slots))
                mask, vis = self._mask(pos, inp.n_sel, inp.n_loc)
                inp.kq_mask.set(mask)
                if inp.blk_mask is not None:
                    inp.blk_mask.set(np.where(np.arange(self.mem.cap) < self.n_blocks, 0.0, -np.inf))
                if inp.loc_vis is not None:
                    inp.loc_vis.set(vis.astype(np.float32))
                if inp.out_ids is not None:
                    inp.out_ids.set(np.array([m - 1], dtype=np.int32))
                plan.graph.compute(self.s.n_threads)
                t_c += plan.graph.last_compute_ns
            except BaseException:
                self.slot_pos[slots] = -1           # the batch did not happen
                raise
            self.n_past += m
            group = self.n_head // self.n_head_kv
            for il, t in enumerate(inp.loc_score):
                got = t.numpy().reshape(self.n_head_kv, group, inp.n_loc).sum(axis=1)
                self.score[il, :inp.n_loc] += got.T
            if all_logits:
                outs.append(np.array(plan.logits.numpy(), copy=True).reshape(m, -1))
            elif start + m == n:
                outs.append(np.array(plan.logits.numpy(), copy=True).reshape(-1))
            if show:
                progress(start + m, n, t0)
        tm.add_eval(n, time.perf_counter() - t0, t_c)
        return np.concatenate(outs) if all_logits else outs[-1]

    def selected_blocks(self) -> list[np.ndarray]:
        """Per layer, the blocks the last step retrieved ((topk, hkv) arrays, best first;
        slots past the stored blocks are padding)."""
        plan = next(reversed(self._plans.values()), None)
        return [] if plan is None else [t.numpy().reshape(self.n_head_kv, -1).T.copy()
                                        for t in plan.inputs.sel_idx]

    # ---- state ----
    def _arrays(self):
        m, nb = self.mem, self.n_blocks
        yield self.slot_pos.astype("<i8")
        yield self.score.astype("<f8")
        for il in range(self.n_layer):
            yield m.ring(m.loc_k[il])
            yield m.ring(m.loc_kraw[il])
            yield m.ring_t(m.loc_vt[il])
            yield m.ring(m.init_k[il])[:self.init_count]
            yield m.ring_t(m.init_vt[il])[:, :self.init_count]
            if self.retrieval:
                yield m.blocks(m.mem_k[il])[:nb]
                yield m.blocks(m.mem_v[il])[:nb]
                yield m.reprs(il)[:nb]

    def state_bytes(self) -> bytes:
        header = json.dumps({"fingerprint": self.fingerprint, "config": self.cfg.key(), "n_past": self.n_past,
                             "init_count": self.init_count, "n_blocks": self.n_blocks}).encode()
        body = b"".join(np.ascontiguousarray(a).tobytes() for a in self._arrays())
        return (STATE_MAGIC + struct.pack("<II", STATE_VERSION, len(header)) + header
                + struct.pack("<IQ", zlib.crc32(body), len(body)) + body)

    def load_state_bytes(self, data: bytes) -> None:
        def bad(why):
            raise GGraphError(f"cannot load the {self.cfg.mode} attention state: {why}")
        mv = memoryview(data)
        if bytes(mv[:4]) == b"GGKV":
            bad("it was saved with full attention (a KV cache state); use --attn full to load it")
        if len(mv) < 12 or bytes(mv[:4]) != STATE_MAGIC:
            bad("not a ggraph long-context state (bad magic)")
        version, hlen = struct.unpack_from("<II", mv, 4)
        if version != STATE_VERSION:
            bad(f"state version {version}, this ggraph reads version {STATE_VERSION}")
        if 12 + hlen + 12 > len(mv):
            bad("truncated header")
        try:
            h = json.loads(bytes(mv[12:12 + hlen]))
        except ValueError:
            bad("corrupted header")
        if h.get("fingerprint") != self.fingerprint:
            bad(f"it was saved from another model ({h.get('fingerprint')!r}, this session runs "
                f"{self.fingerprint!r})")
        if h.get("config") != self.cfg.key():
            theirs = h.get("config") or {}
            diff = [f"{k} {theirs.get(k)!r} (here {v!r})" for k, v in self.cfg.key().items() if theirs.get(k) != v]
            bad("it was saved with another attention config: " + ", ".join(diff))
        crc, blen = struct.unpack_from("<IQ", mv, 12 + hlen)
        body = mv[24 + hlen:]
        if len(body) != blen:
            bad(f"truncated or padded: {len(body)} bytes of data, expected {blen}")
        if zlib.crc32(body) != crc:
            bad("checksum mismatch (corrupted)")
        self.clear()
        self.init_count, self.n_blocks = int(h["init_count"]), int(h["n_blocks"])
        if self.retrieval and self.n_blocks > self.mem.cap:
            self.mem.grow(self.n_blocks)
            self._plans.clear()
        off = 0
        expect = sum(a.nbytes for a in self._arrays())
        if expect != blen:
            self.clear()
            bad(f"{blen} bytes of data, this layout needs {expect}")
        arrays = self._arrays()
        # the first two are copies (slot_pos, score): assigned directly
        for dst in (self.slot_pos, self.score):
            a = next(arrays)
            dst[...] = np.frombuffer(body, dtype=a.dtype, count=a.size, offset=off).reshape(a.shape)
            off += a.nbytes
        for a in arrays:
            a[...] = np.frombuffer(body, dtype=a.dtype, count=a.size, offset=off).reshape(a.shape)
            off += a.nbytes
        self.n_past = int(h["n_past"])
