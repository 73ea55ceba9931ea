#!/usr/bin/env python3
"""ggraph next to llama.cpp on the same GGUF file, in the same run (issue 5's comparison).

    python benchmarks/vs_llamacpp.py                    # both installed models, 2 threads, 5 repetitions
    python benchmarks/vs_llamacpp.py -m smollm2 -r 9    # one model (a name or a .gguf path), more repetitions
    python benchmarks/vs_llamacpp.py --quick            # pp128 / tg32, 2 repetitions: a smoke run

llama.cpp is the PyPI package llama-cpp-python (`pip install '.[bench]'`; it compiles
llama.cpp, several minutes). It is driven through its low-level C API (llama_decode on a
llama_batch), so both engines get the same token ids and no tokenization is timed.

The figures are llama-bench's:
  pp512  512 token ids evaluated in one batch (n_batch = n_ubatch = 512) from an empty
         KV cache, logits of the last token only; tokens/s = 512 / time of that eval;
  tg128  128 one-token decode steps from an empty KV cache (as llama-bench's tg: no
         prompt before them); tokens/s = 128 / time of the 128 evals.
The ids are random (fixed seed; the first is BOS when the model adds one, as in
llama-bench), the same list for both engines. Both use the same threads (n_threads and
llama.cpp's n_threads_batch), the same context size, F16 K and V, flash attention on
(llama.cpp's default "auto" resolves to on for the CPU backend; it is set explicitly).
Each repetition runs ggraph then llama.cpp (A B A B ...) after one untimed warm-up of
each; the engines' thread pools are given 50 ms to go idle before each timed run.
Times are wall-clock around the eval calls (llama_decode, Session.eval), logits copied
out in both.

Then, per model:
  decode bandwidth  (weight bytes + KV bytes read per token) x tg tokens/s, next to the
                    machine's read bandwidth (numpy, 1 and 2 threads, measured here);
  peak RSS          each engine in a fresh subprocess (this script, hidden flag) loading the
                    model with the same context and doing pp then tg; VmHWM of that process;
  greedy agreement  N greedy tokens from the same prompt ids (a chat prompt) with each
                    engine: where they first differ and both engines' logit margin between
                    the two candidates there (a near-zero margin is a float tie-break); and a
                    teacher-forced check: both engines evaluate the same sequence in one
                    batch and their argmax is compared at each generated position.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("smollm2", "qwen2.5-coder-0.5b")
# issue 5's targets: tokens/s ratio ggraph / llama.cpp, by model name (file names match too)
TARGETS = {
    "smollm2": {"pp": 1.7, "tg": 1.5},
    "qwen2.5-coder-0.5b": {"pp": 1.1, "tg": 1.2},
}
FILE_KEYS = {"smollm2": "smollm2", "qwen2.5-coder": "qwen2.5-coder-0.5b"}
RSS_TARGET = 1.1                     # peak RSS ggraph / llama.cpp at most this
BUSY_CORES = 0.25                    # other processes' CPU use that spoils a repetition
IDLE_S = 0.05                        # both engines' workers spin ~0.5 ms after a compute, then sleep
PROMPT = "Write a Python function that returns the n-th Fibonacci number, with a docstring."
INSTALL_HINT = "pip install '.[bench]'  (llama-cpp-python: compiles llama.cpp, several minutes)"


# ---------------------------------------------------------------- engines

def import_llama_cpp():
    """llama_cpp, or None with the reason printed (a missing package is not a traceback)."""
    try:
        import llama_cpp
        return llama_cpp
    except ImportError as e:
        print(f"vs_llamacpp: llama.cpp's Python package is not importable ({e}); install it with: "
              f"{INSTALL_HINT}", file=sys.stderr)
    except OSError as e:
        print(f"vs_llamacpp: llama_cpp is installed but its library does not load ({e}); reinstall it with: "
              f"{INSTALL_HINT}", file=sys.stderr)
    return None


class LlamaEngine:
    """llama.cpp through llama_cpp's C API: one context, one sequence, a reusable batch."""

    name = "llama.cpp"

    def __init__(self, path: str, n_ctx: int, n_threads: int, n_batch: int = 512):
        import llama_cpp as L
        self.L = L
        self._log_tail: list[str] = []

        def _log(level, text, user_data):          # keep llama.cpp quiet; the tail explains failures
            self._log_tail = (self._log_tail + [text.decode(errors="replace")])[-20:]
        self._log_cb = L.llama_log_callback(_log)      # referenced: ctypes must not free it
        L.llama_log_set(self._log_cb, ctypes.c_void_p())
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(os.fsencode(path), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}: {''.join(self._log_tail).strip()}")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.type_k = L.GGML_TYPE_F16
        cp.type_v = L.GGML_TYPE_F16
        cp.no_perf = False
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context: {''.join(self._log_tail).strip()}")
        self.n_ctx = L.llama_n_ctx(self.ctx)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.n_batch = n_batch
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        b = self.batch
        # numpy views over the batch's arrays: filling them costs nothing next to a decode
        self.tok = np.ctypeslib.as_array(b.token, shape=(n_batch,))
        self.pos = np.ctypeslib.as_array(b.pos, shape=(n_batch,))
        self.out = np.ctypeslib.as_array(b.logits, shape=(n_batch,))
        n_seq = np.ctypeslib.as_array(b.n_seq_id, shape=(n_batch,))
        n_seq[:] = 1
        for i in range(n_batch):
            b.seq_id[i][0] = 0
        self.n_past = 0

    def reset(self):
        self.L.llama_memory_clear(self.mem, False)     # cells freed, buffers kept (as llama-bench)
        self.n_past = 0

    def eval(self, tokens, all_logits: bool = False) -> np.ndarray:
        L, toks = self.L, np.asarray(tokens, dtype=np.int32)
        n, outs = len(toks), []
        for start in range(0, n, self.n_batch):
            m = min(self.n_batch, n - start)
            self.tok[:m] = toks[start:start + m]
            self.pos[:m] = np.arange(self.n_past, self.n_past + m, dtype=np.int32)
            self.out[:m] = 1 if all_logits else 0
            self.out[m - 1] = 1
            self.batch.n_tokens = m
            rc = L.llama_decode(self.ctx, self.batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}: {''.join(self._log_tail).strip()}")
            self.n_past += m
            if all_logits:
                outs.append(np.ctypeslib.as_array(L.llama_get_logits(self.ctx),
                                                  shape=(m, self.n_vocab)).copy())
        if all_logits:
            return np.concatenate(outs)
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def close(self):
        L = self.L
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)


class GgraphEngine:
    name = "ggraph"

    def __init__(self, path: str, n_ctx: int, n_threads: int, n_batch: int = 512, model=None):
        from ggraph.gguf_model import load_gguf
        from ggraph.session import Session
        self.mf = model if model is not None else load_gguf(path)
        self.s = Session(self.mf, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, flash_attn=True)
        self.n_ctx = self.s.n_ctx
        self.n_vocab = self.mf.hparams.n_vocab

    def reset(self):
        self.s.reset()

    def eval(self, tokens, all_logits: bool = False) -> np.ndarray:
        return self.s.eval(tokens, all_logits=all_logits)

    def close(self):
        pass


ENGINES = {"ggraph": GgraphEngine, "llama.cpp": LlamaEngine}


def run_pp(e, ids) -> float:
    e.reset()
    time.sleep(IDLE_S)
    t0 = time.perf_counter()
    e.eval(ids)
    return time.perf_counter() - t0


def run_tg(e, ids) -> float:
    e.reset()
    time.sleep(IDLE_S)
    t0 = time.perf_counter()
    for t in ids:
        e.eval([int(t)])
    return time.perf_counter() - t0


# ---------------------------------------------------------------- the child process (peak RSS)

def proc_status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def child_main(spec: str) -> int:
    """One engine in this fresh process: load, pp then tg with the same ids; print VmHWM as JSON."""
    a = json.loads(spec)
    base = proc_status_kb("VmRSS")
    e = ENGINES[a["engine"]](a["path"], a["n_ctx"], a["threads"], a["n_batch"])
    loaded = proc_status_kb("VmRSS")
    e.eval(a["pp_ids"])
    e.reset()
    for t in a["tg_ids"]:
        e.eval([t])
    print(json.dumps({"hwm_kb": proc_status_kb("VmHWM"), "base_kb": base, "loaded_kb": loaded}))
    return 0


def peak_rss(engine: str, path: str, n_ctx: int, threads: int, n_batch: int, pp_ids, tg_ids) -> dict:
    spec = json.dumps({"engine": engine, "path": path, "n_ctx": n_ctx, "threads": threads, "n_batch": n_batch,
                       "pp_ids": [int(t) for t in pp_ids], "tg_ids": [int(t) for t in tg_ids]})
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", spec],
                       capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode != 0 or not r.stdout.strip():
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {r.returncode}: {tail}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- measurements

def decode_bytes_per_token(mf, n_ctx: int, n_gen: int) -> tuple[int, float]:
    """(weight bytes, mean KV bytes) read by one decode step of ggraph over the tg run: every
    matrix once, one row of token_embd (all of it when it is also the output matrix), and the
    attended K and V cells (ggraph attends over n_kv cells padded to kv_cache.PAD)."""
    from ggraph.kv_cache import PAD
    hp = mf.hparams
    w = 0
    for name, t in mf.tensors.items():
        nb = t.nbytes()
        if name == "token_embd.weight":
            nb = nb // hp.n_vocab + (nb if hp.tied_embeddings else 0)
        w += nb
    kv_row = hp.n_layer * 2 * hp.n_head_kv * hp.head_dim * 2        # K and V, F16, one cell
    n_kv = [min(n_ctx, -(-(i + 1) // PAD) * PAD) for i in range(n_gen)]
    return w, kv_row * float(np.mean(n_kv))


def greedy(e, prompt, n: int):
    """n greedy tokens after prompt (never stopping at end-of-generation); returns (ids, logits of each step)."""
    e.reset()
    logits = e.eval(prompt)
    ids, steps = [], []
    for i in range(n):
        steps.append(logits)
        t = int(np.argmax(logits))
        ids.append(t)
        if i + 1 < n:
            logits = e.eval([t])
    return ids, steps


def stats(ts_tokens: list[float]) -> tuple[float, float, float]:
    return statistics.median(ts_tokens), min(ts_tokens), max(ts_tokens)


def cpu_busy_s() -> float:
    """Seconds of CPU time all processes have used since boot (/proc/stat: all but idle and iowait)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


class OtherLoad:
    """How much of the cores other processes used while this one ran (from /proc/stat and os.times)."""

    def __enter__(self):
        self.t0, self.b0, self.own0 = time.perf_counter(), cpu_busy_s(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        other = (cpu_busy_s() - self.b0) - (sum(os.times()[:2]) - self.own0)
        self.cores = max(0.0, other / wall) if wall > 0 else float("nan")    # mean cores busy with other work
        return False


def target_key(name: str, path: str) -> str | None:
    if name in TARGETS:
        return name
    base = os.path.basename(path).lower()
    for k, v in FILE_KEYS.items():
        if k in base:
            return v
    return None


# ---------------------------------------------------------------- one model

def bench_model(name: str, args, bw: dict) -> list[tuple]:
    from ggraph.tools.perf import load_average
    from ggraph.gguf_model import load_gguf
    from ggraph.model_files import resolve_model
    path = resolve_model(name)
    mf = load_gguf(path)
    hp = mf.hparams
    tkey = target_key(name, path)
    targets = TARGETS.get(tkey, {})
    size = os.path.getsize(path)
    print(f"\n## {name}: {mf.metadata.get('general.name', '?')} {mf.file_type}, {hp.arch}, "
          f"{hp.n_layer} layers, n_embd {hp.n_embd}, n_vocab {hp.n_vocab}; {size / 1e6:.1f} MB: {path}")
    print(f"# load average at start: {load_average()}", flush=True)

    g = GgraphEngine(path, args.ctx, args.threads, 512, model=mf)
    lc = LlamaEngine(path, args.ctx, args.threads, 512)
    if lc.n_vocab != g.n_vocab:
        print(f"# note: n_vocab differs: ggraph {g.n_vocab}, llama.cpp {lc.n_vocab}")
    n_vocab = min(g.n_vocab, lc.n_vocab)
    rng = np.random.default_rng(args.seed)
    pp_ids = rng.integers(0, n_vocab, size=args.pp).astype(np.int32)
    tg_ids = rng.integers(0, n_vocab, size=args.tg).astype(np.int32)
    bos = mf.metadata.get("tokenizer.ggml.bos_token_id")
    if bos is not None and mf.metadata.get("tokenizer.ggml.add_bos_token", False):
        pp_ids[0] = tg_ids[0] = int(bos)
    engines = [g, lc]
    if g.n_ctx != lc.n_ctx:
        print(f"# note: context sizes differ: ggraph {g.n_ctx}, llama.cpp {lc.n_ctx}")

    # warm-up: graphs built, weights paged in, thread pools started
    for e in engines:
        run_pp(e, pp_ids)
        run_tg(e, tg_ids[:min(len(tg_ids), 16)])
    res = {(e.name, k): [] for e in engines for k in ("pp", "tg")}
    busy = []
    for r in range(args.reps):
        with OtherLoad() as ol:
            for k, fn, ids in (("pp", run_pp, pp_ids), ("tg", run_tg, tg_ids)):
                for e in engines:
                    res[(e.name, k)].append(len(ids) / fn(e, ids))
        print(f"#   repetition {r + 1}/{args.reps}: " + ", ".join(
            f"{e.name} {k} {res[(e.name, k)][-1]:.1f}" for k in ("pp", "tg") for e in engines)
            + f"; other processes used {ol.cores:.2f} cores meanwhile", flush=True)
        busy.append(ol.cores)

    rows = []
    print(f"{'test':<7} {'ggraph t/s':>11} {'(min..max)':>15} {'llama.cpp t/s':>14} {'(min..max)':>15} "
          f"{'ratio':>6} {'target':>7}  result")
    for k, label in (("pp", f"pp{args.pp}"), ("tg", f"tg{args.tg}")):
        gm, glo, ghi = stats(res[("ggraph", k)])
        lm, llo, lhi = stats(res[("llama.cpp", k)])
        ratio = gm / lm
        tgt = targets.get(k)
        std = (k == "pp" and args.pp == 512) or (k == "tg" and args.tg == 128)
        verdict = "-" if tgt is None else ("met" if ratio >= tgt else "MISSED")
        if tgt is not None and not std:
            verdict += " (not the issue's size)"
        print(f"{label:<7} {gm:11.1f} {f'({glo:.1f}..{ghi:.1f})':>15} {lm:14.1f} {f'({llo:.1f}..{lhi:.1f})':>15} "
              f"{ratio:6.2f} {'>= ' + format(tgt, '.1f') if tgt else '-':>7}  {verdict}")
        rows.append((name, label, ratio, tgt, verdict))

    n_busy = sum(b >= BUSY_CORES for b in busy)
    if n_busy:
        print(f"# WARNING: {n_busy} of {args.reps} repetitions ran while other processes used >= {BUSY_CORES} cores: "
              f"with 2 threads on 2 cores both engines' spinning barriers stall (decode can drop 10x); "
              f"rerun on a quiet machine")

    # decode bandwidth
    w_bytes, kv_bytes = decode_bytes_per_token(mf, g.n_ctx, args.tg)
    per_tok = w_bytes + kv_bytes
    g_tg = stats(res[("ggraph", "tg")])[0]
    l_tg = stats(res[("llama.cpp", "tg")])[0]
    bw_t = bw.get(args.threads) or max(bw.values())
    print(f"decode bandwidth: {w_bytes / 1e6:.1f} MB weights + {kv_bytes / 1e6:.1f} MB KV (mean over the tg run) "
          f"read per token; ggraph {per_tok * g_tg / 1e9:.1f} GB/s = {per_tok * g_tg / 1e9 / bw_t:.0%} of the "
          f"{args.threads}-thread read bandwidth {bw_t:.1f} GB/s (llama.cpp, same bytes: "
          f"{per_tok * l_tg / 1e9:.1f} GB/s = {per_tok * l_tg / 1e9 / bw_t:.0%}); weight-streaming limit "
          f"{bw_t * 1e9 / per_tok:.0f} tokens/s")

    # greedy agreement
    tok = g.s.tokenizer
    chat = g.s.chat_template
    text = chat.render([{"role": "user", "content": PROMPT}]) if chat is not None else PROMPT
    prompt = tok.encode(text)
    g_ids, g_steps = greedy(g, prompt, args.greedy)
    l_ids, l_steps = greedy(lc, prompt, args.greedy)
    # teacher-forced: the same sequence (prompt + ggraph's tokens) in one batch through both engines
    seq = list(prompt) + g_ids[:-1]
    lg = [e.reset() or e.eval(seq, all_logits=True)[len(prompt) - 1:] for e in (g, lc)]
    agree = int(np.sum(np.argmax(lg[0], axis=1) == np.argmax(lg[1], axis=1)))
    diff = np.abs(lg[0] - lg[1])
    noise = float(diff.max())
    first = next((i for i, (a, b) in enumerate(zip(g_ids, l_ids)) if a != b), None)
    if first is None:
        gap = min(float(np.sort(st)[-1] - np.sort(st)[-2]) for st in g_steps)
        print(f"greedy: {args.greedy}/{args.greedy} tokens agree ({len(prompt)}-token chat prompt; smallest top-2 "
              f"logit margin on the way {gap:.3f}): {tok.decode(g_ids)!r}")
    else:
        a, b = g_ids[first], l_ids[first]
        gm_ = float(g_steps[first][a] - g_steps[first][b])
        lm_ = float(l_steps[first][a] - l_steps[first][b])
        tie = max(abs(gm_), abs(lm_)) <= 2 * noise
        print(f"greedy: the first {first}/{args.greedy} tokens agree ({len(prompt)}-token chat prompt); at step "
              f"{first} ggraph picks {a} {tok.decode([a])!r}, llama.cpp {b} {tok.decode([b])!r}; logit[{a}] - "
              f"logit[{b}]: ggraph {gm_:+.4f}, llama.cpp {lm_:+.4f}: "
              + ("within twice the engines' largest logit difference below: a float tie-break" if tie
                 else "LARGER than the engines' logit differences: not a tie-break"))
        print(f"greedy: ggraph    {tok.decode(g_ids)!r}")
        print(f"greedy: llama.cpp {tok.decode(l_ids)!r}")
    print(f"teacher-forced ({len(seq)} tokens in one batch through both): argmax agrees at {agree}/{len(g_ids)} "
          f"generated positions; |logit difference| max {noise:.4f}, mean {float(diff.mean()):.4f} "
          f"(logits up to {float(np.max(np.abs(lg[1]))):.1f})")
    lc.close()
    del g, lc, engines

    # peak RSS, each engine alone in a fresh process
    rss = {e: peak_rss(e, path, args.ctx, args.threads, 512, pp_ids, tg_ids) for e in ("ggraph", "llama.cpp")}
    if any("error" in v for v in rss.values()):
        print("peak RSS: " + "; ".join(f"{k}: {v.get('error', 'ok')}" for k, v in rss.items()))
    else:
        gk, lk = rss["ggraph"]["hwm_kb"], rss["llama.cpp"]["hwm_kb"]
        ratio = gk / lk
        verdict = "met" if ratio <= RSS_TARGET else "MISSED"
        print(f"peak RSS (fresh process: load, pp{args.pp}, tg{args.tg}; n_ctx {args.ctx}): ggraph {gk / 1024:.1f} MiB, "
              f"llama.cpp {lk / 1024:.1f} MiB, ratio {ratio:.2f} (target <= {RSS_TARGET})  {verdict}")
        print(f"peak RSS: interpreter + imports before loading: ggraph {rss['ggraph']['base_kb'] / 1024:.1f} MiB, "
              f"llama.cpp {rss['llama.cpp']['base_kb'] / 1024:.1f} MiB; after loading: ggraph "
              f"{rss['ggraph']['loaded_kb'] / 1024:.1f} MiB, llama.cpp {rss['llama.cpp']['loaded_kb'] / 1024:.1f} MiB")
        rows.append((name, "peak RSS", ratio, RSS_TARGET, verdict))
    print(f"# load average at end: {load_average()}", flush=True)
    return rows


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    # imported here, not at the top: the llama.cpp child process must not load ggraph
    from ggraph.tools.perf import cpu_model, llc_bytes, load_average, read_bandwidth
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append",
                    help=f"model name or .gguf path, repeatable (default: {', '.join(DEFAULT_MODELS)})")
    ap.add_argument("-t", "--threads", type=int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("-c", "--ctx", type=int, default=1024, help="context size for both engines (default 1024)")
    ap.add_argument("-r", "--reps", type=int, default=0, help="timed repetitions of each test (default 5, quick 2)")
    ap.add_argument("-p", "--pp", type=int, default=0, help="prompt tokens (default 512, quick 128)")
    ap.add_argument("-n", "--tg", type=int, default=0, help="decode steps (default 128, quick 32)")
    ap.add_argument("--greedy", type=int, default=0, help="greedy tokens compared (default 32, quick 8)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random token ids (default 0)")
    ap.add_argument("--quick", action="store_true", help="pp128, tg32, 2 repetitions, 8 greedy tokens")
    ap.add_argument("--llama-lib", metavar="DIR",
                    help="load llama.cpp's shared libraries from DIR (llama_cpp's LLAMA_CPP_LIB_PATH), e.g. "
                         "another build of the same llama-cpp-python version")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.llama_lib:
        if not os.path.isdir(args.llama_lib):
            ap.error(f"--llama-lib {args.llama_lib}: not a directory")
        os.environ["LLAMA_CPP_LIB_PATH"] = os.path.abspath(args.llama_lib)     # the children inherit it
    if args._child:
        return child_main(args._child)

    if import_llama_cpp() is None:
        return 2
    import llama_cpp

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ggraph as gg
    from ggraph.errors import GGraphError

    args.reps = args.reps or (2 if args.quick else 5)
    args.pp = args.pp or (128 if args.quick else 512)
    args.tg = args.tg or (32 if args.quick else 128)
    args.greedy = args.greedy or (8 if args.quick else 32)
    for k in ("threads", "ctx", "reps", "pp", "tg", "greedy"):
        if getattr(args, k) < 1:
            ap.error(f"--{k} must be positive")
    if args.pp + 1 > args.ctx or args.tg > args.ctx:
        ap.error(f"the context ({args.ctx}) must hold the prompt ({args.pp}) and the decode steps ({args.tg})")
    if args.pp > 512:
        ap.error("-p above 512 would be more than one micro-batch (n_batch = n_ubatch = 512)")
    models = args.model or list(DEFAULT_MODELS)

    sysinfo = llama_cpp.llama_print_system_info().decode(errors="replace")
    print(f"# ggraph {gg.__version__} vs llama.cpp (llama-cpp-python {llama_cpp.__version__}); {cpu_model()}, "
          f"{os.cpu_count()} cpus; load average {load_average()}")
    lib = getattr(getattr(llama_cpp.llama_cpp, "_lib", None), "_name", "?")
    print(f"# llama.cpp library {lib}: {sysinfo.strip()[:200]}")
    print(f"# ggraph SIMD {gg.simd_features()}; both: "
          f"{args.threads} threads, n_ctx {args.ctx}, n_batch = n_ubatch = 512, K/V F16, flash attention on, "
          f"logits of the last token only")
    print(f"# pp{args.pp}: {args.pp} random ids (seed {args.seed}) in one batch from an empty cache; tg{args.tg}: "
          f"{args.tg} one-token steps from an empty cache; median of {args.reps} alternating repetitions "
          f"(ggraph, llama.cpp, ...) after a warm-up; tokens/s")
    llc = llc_bytes()
    bw_bytes = max(4 * llc, 256 << 20) if not args.quick else max(2 * llc, 128 << 20)
    bw = {t: read_bandwidth(t, bw_bytes, 5 if args.quick else 9) for t in sorted({1, args.threads})}
    print(f"# memory read bandwidth (numpy int64 add.reduce over {bw_bytes >> 20} MiB, split over threads): "
          + ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} GB/s" for t, v in bw.items()), flush=True)
    if float(load_average().split()[0]) > 0.5:
        print(f"# note: load average {load_average().split()[0]} at start: other work may share the cores")

    rows = []
    for name in models:
        try:
            rows += bench_model(name, args, bw)
        except (GGraphError, RuntimeError) as e:
            print(f"\n## {name}: skipped: {e}", flush=True)

    if rows:
        print("\n## summary: ratio ggraph / llama.cpp (tokens/s; peak RSS: memory)")
        for name, label, ratio, tgt, verdict in rows:
            cmp_ = "<=" if label == "peak RSS" else ">="
            t = f"{cmp_} {tgt}" if tgt is not None else "-"
            print(f"{name:<20} {label:<9} {ratio:6.2f}  target {t:<7} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
