"""Session: a loaded model, its KV cache and its graphs; tokens in, logits out.

    model = load_gguf(path)                # or ggraph.model_files.open_model("smollm2")
    s = Session(model, n_ctx=4096)
    logits = s.eval(s.tokenizer.encode("Hello"))      # last token's logits
    ids = s.generate(prompt_ids, 32, Sampler(temp=0))

A micro-batch of n tokens attending over n_kv cells has one graph, built once
and kept: a decode step refills five small input tensors (tokens, positions,
cache cells, KQ mask, output rows) and runs the same graph in one C call. A
new graph is built only when n_kv crosses a multiple of kv_cache.PAD or the
batch size changes.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .context import Context
from .errors import GGraphError
from .graph import Graph, default_threads
from .kv_cache import KVCache
from .types import F16, as_type

MAX_GRAPHS = 6             # graphs kept (prefill sizes, decode, a few n_kv buckets)


@dataclass
class Timings:
    n_prompt: int = 0
    t_prompt: float = 0.0          # seconds of eval() for prompt batches
    n_gen: int = 0
    t_gen: float = 0.0             # seconds of eval() for single-token steps
    t_compute: float = 0.0         # seconds inside the C compute call (all evals)
    t_eval: float = 0.0            # seconds of all evals
    n_graph_builds: int = 0

    def add_eval(self, n_tokens: int, seconds: float, compute_ns: int) -> None:
        """Books one eval() of n_tokens (one token: a generation step)."""
        self.t_eval += seconds
        self.t_compute += compute_ns / 1e9
        if n_tokens == 1:
            self.n_gen += 1
            self.t_gen += seconds
        else:
            self.n_prompt += n_tokens
            self.t_prompt += seconds

    def python_share(self) -> float:
        """Fraction of eval time spent outside the C compute call."""
        return 0.0 if self.t_eval == 0 else max(0.0, 1.0 - self.t_compute / self.t_eval)


@dataclass
class _Plan:
    graph: Graph
    inputs: object
    logits: object
    extra: dict = field(default_factory=dict)


def _builder(arch: str):
    from .models import llama, qwen2
    builders = {"llama": llama.build_graph, "qwen2": qwen2.build_graph}
    if arch not in builders:
        raise GGraphError(f"no graph builder for architecture {arch!r}; supported: {', '.join(builders)}")
    return builders[arch]


class Session:
    def __init__(self, model, n_ctx: int = 4096, n_threads: int | None = None, n_batch: int = 512,
                 flash_attn: bool = True, kv_type=F16, norm=None, attn=None):
        hp = model.hparams
        if not isinstance(n_ctx, int) or n_ctx < 1:
            raise GGraphError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if not isinstance(n_batch, int) or n_batch < 1:
            raise GGraphError(f"n_batch must be a positive integer, got {n_batch!r}")
        self.model = model
        self.hparams = hp
        self.n_threads = n_threads or default_threads()
        self.n_batch = n_batch
        self.flash_attn = bool(flash_attn)
        if norm is not None and not callable(norm):
            raise GGraphError(f"norm must be a function norm(x, w, eps) -> Tensor, got {type(norm).__name__}")
        self.norm = norm            # replaces rms_norm times weight in the builders (opt-in)
        self._build = _builder(hp.arch)
        fingerprint = f"{hp.arch}/{hp.n_layer}x{hp.n_embd}/{hp.n_vocab}/{model.metadata.get('general.name', '')}"
        from .infllm import AttnConfig, LongContext
        self.attn = attn if attn is not None else AttnConfig()
        if not isinstance(self.attn, AttnConfig):
            raise GGraphError(f"attn must be a ggraph.infllm.AttnConfig, got {type(attn).__name__}")
        self._long = None
        if self.attn.mode == "full":
            self.cache = KVCache(hp.n_layer, hp.n_head_kv * hp.head_dim, hp.n_head_kv * hp.head_dim, n_ctx,
                                 type=as_type(kv_type), fingerprint=fingerprint)
        else:
            # window / infllm: no full KV cache; the long context answers its questions
            self.cache = self._long = LongContext(self, self.attn, n_ctx, fingerprint)
        self.n_ctx = self.cache.kv_size
        self.progress: bool | None = None       # prefill progress bar on stderr; None: only on a terminal
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self.timings = Timings()
        self._tokenizer = None
        self._chat = None

    # ---- text ----
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            self._tokenizer = Tokenizer.from_gguf(self.model.metadata)
        return self._tokenizer

    @property
    def chat_template(self):
        if self._chat is None:
            from .chat import ChatTemplate
            self._chat = ChatTemplate.from_gguf(self.model.metadata)
        return self._chat

    # ---- graphs ----
    def _plan(self, n_tokens: int, n_kv: int, n_outputs: int | None) -> _Plan:
        key = (n_tokens, n_kv, n_outputs, self.flash_attn)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        from .models.common import GraphInputs
        ctx = Context("inputs")
        inputs = GraphInputs.new(ctx, n_tokens, n_kv, n_outputs)
        logits = self._build(self.model, self.cache, inputs, flash_attn=self.flash_attn, norm=self.norm)
        g = Graph(f"{self.hparams.arch} n_tokens={n_tokens} n_kv={n_kv}")
        g.build_forward_expand(logits.set_output())
        g.plan()
        plan = _Plan(g, inputs, logits)
        self._plans[key] = plan
        self.timings.n_graph_builds += 1
        while len(self._plans) > MAX_GRAPHS:
            self._plans.popitem(last=False)
        return plan

    def decode_graph(self, n_kv: int | None = None) -> Graph:
        """The graph of one decode step (for pictures and profiles)."""
        if self._long is not None:
            return self._long.decode_graph()
        return self._plan(1, n_kv or self.cache.n_kv(), None).graph

    # ---- running ----
    def _check_tokens(self, tokens) -> np.ndarray:
        toks = np.asarray(tokens)
        if toks.ndim != 1 or toks.size == 0:
            raise GGraphError("eval: need a non-empty list of token ids")
        if not np.issubdtype(toks.dtype, np.integer):
            raise GGraphError(f"eval: token ids must be integers, got {toks.dtype}")
        bad = (toks < 0) | (toks >= self.hparams.n_vocab)
        if bad.any():
            raise GGraphError(f"eval: token id {int(toks[bad][0])} is outside the vocabulary "
                              f"(0..{self.hparams.n_vocab - 1})")
        return toks.astype(np.int32)

    def eval(self, tokens, seq_id: int = 0, all_logits: bool = False) -> np.ndarray:
        """Runs tokens (appended to sequence seq_id) through the model.

        Returns the last token's logits (n_vocab,), or every token's (n, n_vocab).
        """
        toks = self._check_tokens(tokens)
        if self._long is not None:
            return self._long.eval(toks, seq_id, all_logits)
        n = len(toks)
        if n > self.n_ctx - self.cache.n_used():
            raise GGraphError(f"the context is full: {n} tokens do not fit; {self.cache.n_used()} of "
                              f"{self.n_ctx} cells are in use")
        t0 = time.perf_counter()
        t_c = 0
        outs = []
        n_past = self.cache.seq_pos_max(seq_id) + 1
        from .infllm import progress, show_progress
        show = show_progress(self.progress, n, self.n_batch)
        for start in range(0, n, self.n_batch):
            chunk = toks[start:start + self.n_batch]
            m = len(chunk)
            last_chunk = start + m == n
            cells = self.cache.find_slots(m)
            pos = np.arange(n_past + start, n_past + start + m, dtype=np.int64)
            seqs = np.full(m, seq_id, dtype=np.int64)
            self.cache.occupy(cells, pos, seqs)
            try:
                n_kv = self.cache.n_kv()
                # out_ids picks the last row; a one-token batch has nothing to pick
                plan = self._plan(m, n_kv, None if (all_logits or m == 1) else 1)
                inp = plan.inputs
                inp.tokens.set(chunk)
                inp.pos.set(pos.astype(np.int32))
                inp.kv_idx.set(cells.astype(np.int32))
                inp.kq_mask.set(self.cache.mask(n_kv, pos, seqs, m))
                if inp.out_ids is not None:
                    inp.out_ids.set(np.array([m - 1], dtype=np.int32))
                plan.graph.compute(self.n_threads)
                t_c += plan.graph.last_compute_ns
            except BaseException:
                self.cache.pos[cells] = -1            # the batch did not happen
                self.cache.seq[cells] = -1
                raise
            if all_logits:
                outs.append(np.array(plan.logits.numpy(), copy=True).reshape(m, -1))
            elif last_chunk:
                outs.append(np.array(plan.logits.numpy(), copy=True).reshape(-1))
            if show:
                progress(start + m, n, t0)
        self.timings.add_eval(n, time.perf_counter() - t0, t_c)
        return np.concatenate(outs) if all_logits else outs[-1]

    def generate(self, prompt_tokens, n_predict: int, sampler, on_token=None, seq_id: int = 0,
                 stop_at_eog: bool = True, history=()) -> list[int]:
        """Evaluates the prompt, then samples up to n_predict tokens one step at a
        time; on_token(id) is called for each as it is produced. `history`: tokens
        already in the cache before the prompt (for the repetition penalty)."""
        if n_predict < 0:
            raise GGraphError(f"n_predict must be >= 0, got {n_predict}")
        prompt = [int(t) for t in prompt_tokens]
        history = [int(t) for t in history] + prompt
        logits = self.eval(prompt, seq_id=seq_id)
        eog = self.tokenizer.eog_ids if stop_at_eog else set()
        out: list[int] = []
        for _ in range(n_predict):
            tok = int(sampler.sample(logits, history))
            out.append(tok)
            history.append(tok)
            if on_token is not None:
                on_token(tok)
            if tok in eog or len(out) == n_predict:
                break
            if self.cache.n_used() >= self.n_ctx:
                raise GGraphError(f"the context is full after {len(out)} generated tokens "
                                  f"(n_ctx = {self.n_ctx}); use a larger -c")
            logits = self.eval([tok], seq_id=seq_id)
        return out

    def reset(self) -> None:
        self.cache.clear()

    # ---- state ----
    def state_save(self) -> bytes:
        return self.cache.state_bytes()

    def state_load(self, data: bytes) -> None:
        from .infllm import STATE_MAGIC
        if self._long is None and bytes(data[:4]) == STATE_MAGIC:
            raise GGraphError("cannot load the KV state: it was saved with window/infllm attention; "
                              "load it into a session with the same attention config")
        self.cache.load_state_bytes(bytes(data))

    def state_save_file(self, path) -> None:
        with open(path, "wb") as f:
            f.write(self.state_save())

    def state_load_file(self, path) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise GGraphError(f"cannot read state file {path}: {e.strerror}") from None
        self.state_load(data)
