"""The model commands of the CLI: generate, chat, perplexity, bench, dump-graph.

They follow llama.cpp's tools (llama-cli, llama-perplexity, llama-bench):
generated text goes to stdout as it is produced, logs and timings to stderr.
"""
from __future__ import annotations

import argparse
import codecs
import copy
import dataclasses
import json
import math
import sys
import time

import numpy as np

from ..errors import GGraphError

DEFAULT_MODEL = "smollm2"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def add_common(p: argparse.ArgumentParser, ctx_default: int = 4096) -> None:
    p.add_argument("-m", "--model", default=DEFAULT_MODEL,
                   help="GGUF path or installed model name (smollm2, qwen2.5-coder-0.5b); default smollm2")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("-c", "--ctx-size", type=int, default=ctx_default, help="context size in tokens")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt micro-batch size")
    p.add_argument("-fa", "--flash-attn", choices=("on", "off"), default="on",
                   help="flash_attn_ext (on) or mul_mat + soft_max_ext (off)")
    p.add_argument("--kv-type", default="f16", help="KV cache type: f16 (default), f32, q8_0")
    add_attn(p)


def add_attn(p: argparse.ArgumentParser) -> None:
    """The long-context flags (docs/long-context.md)."""
    from ..infllm import AttnConfig, REPR_SELECTS, REPR_WEIGHTINGS, SCORES
    d = AttnConfig()
    g = p.add_argument_group("long context (window / infllm attention)")
    g.add_argument("--attn", choices=("full", "window", "infllm"), default="full",
                   help="full attention (default); window: initial tokens + local window; "
                        "infllm: that plus the top-k retrieved memory blocks")
    g.add_argument("--n-init", type=int, default=d.n_init, help=f"initial tokens kept (default {d.n_init})")
    g.add_argument("--n-local", type=int, default=d.n_local, help=f"local window (default {d.n_local})")
    g.add_argument("--block-size", type=int, default=d.block_size, help=f"tokens per block (default {d.block_size})")
    g.add_argument("--topk", type=int, default=d.topk, help=f"blocks retrieved per chunk (default {d.topk})")
    g.add_argument("--repr-topk", type=int, default=d.repr_topk,
                   help=f"representative tokens per block (default {d.repr_topk})")
    g.add_argument("--chunk", type=int, default=d.chunk, help=f"prefill chunk, one retrieval each (default {d.chunk})")
    g.add_argument("--infllm-score", choices=SCORES, default=d.score, help="block score over all heads or per KV head")
    g.add_argument("--repr-select", choices=REPR_SELECTS, default=d.repr_select,
                   help="representative tokens by the attention they receive or by summed q.k")
    g.add_argument("--repr-weighting", choices=REPR_WEIGHTINGS, default=d.repr_weighting,
                   help="representative key: plain mean or weighted by the tokens' scores")
    g.add_argument("--mem-distance", type=int, default=None, metavar="N",
                   help="distance between a query and the memory keys (default: --n-local, as InfLLM)")
    g.add_argument("--infllm-spill", default=None, metavar="DIR",
                   help="keep the block memory in memory-mapped files in DIR")
    g.add_argument("--progress", action="store_true", help="prefill progress bar even when stderr is not a terminal")


def attn_config(args):
    from ..infllm import AttnConfig
    return AttnConfig(mode=args.attn, n_init=args.n_init, n_local=args.n_local, block_size=args.block_size,
                      topk=args.topk, repr_topk=args.repr_topk, chunk=args.chunk, score=args.infllm_score,
                      repr_select=args.repr_select, repr_weighting=args.repr_weighting,
                      spill_dir=args.infllm_spill, mem_distance=args.mem_distance)


def add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--repeat-last-n", type=int, default=64)
    p.add_argument("-s", "--seed", type=int, default=None, help="RNG seed (default: random)")


def open_session(args):
    from ..model_files import open_model
    from ..session import Session
    from ..types import as_type
    if args.threads is not None and args.threads < 1:
        raise GGraphError(f"-t must be >= 1, got {args.threads}")
    attn = attn_config(args)
    model = open_model(args.model)
    s = Session(model, n_ctx=args.ctx_size, n_threads=args.threads, n_batch=args.batch_size,
                flash_attn=args.flash_attn == "on", kv_type=as_type(args.kv_type), attn=attn)
    if args.progress:
        s.progress = True
    hp = model.hparams
    log(f"model: {model.path} ({hp.arch}, {hp.n_layer} layers, n_embd {hp.n_embd}, "
        f"{hp.n_head}/{hp.n_head_kv} heads, vocab {hp.n_vocab})")
    return s


def make_sampler(args):
    from ..sampling import Sampler
    return Sampler(temp=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                   repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n, seed=args.seed)


def read_prompt(args) -> str:
    if args.prompt is not None:
        text = args.prompt
    else:
        try:
            with open(args.file, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise GGraphError(f"cannot read prompt file {args.file}: {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGraphError(f"prompt file {args.file} is not valid UTF-8 (byte {e.start})") from None
    if not text:
        raise GGraphError("the prompt is empty")
    return text


class TextStream:
    """Writes token pieces to stdout as they come, joining UTF-8 split across tokens."""

    def __init__(self, tokenizer, out=None):
        self.tok = tokenizer
        self.out = out or sys.stdout
        self.dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token_id: int) -> None:
        if token_id in self.tok.eog_ids:
            return
        self.out.write(self.dec.decode(self.tok.token_to_piece(token_id)))
        self.out.flush()

    def close(self) -> None:
        self.out.write(self.dec.decode(b"", final=True))
        self.out.flush()


def print_timings(s) -> None:
    tm = s.timings
    if tm.n_prompt:
        log(f"prompt eval: {tm.n_prompt} tokens in {tm.t_prompt * 1e3:.1f} ms "
            f"({tm.n_prompt / tm.t_prompt:.2f} tokens/s)")
    if tm.n_gen:
        log(f"generation:  {tm.n_gen} tokens in {tm.t_gen * 1e3:.1f} ms ({tm.n_gen / tm.t_gen:.2f} tokens/s)")
    log(f"time outside the C compute call: {100 * tm.python_share():.1f}% of eval; "
        f"{tm.n_graph_builds} graphs built")


# ---- generate ----

def cmd_generate(args) -> int:
    text = read_prompt(args)
    if args.n_predict < 0:
        raise GGraphError(f"-n must be >= 0, got {args.n_predict}")
    s = open_session(args)
    ids = s.tokenizer.encode(text)
    if len(ids) == 0:
        raise GGraphError("the prompt tokenizes to nothing")
    if len(ids) + args.n_predict > s.n_ctx:
        raise GGraphError(f"the prompt has {len(ids)} tokens; with -n {args.n_predict} that exceeds the "
                          f"context of {s.n_ctx} (use a larger -c)")
    log(f"prompt: {len(ids)} tokens")
    stream = TextStream(s.tokenizer)
    if args.echo:
        sys.stdout.write(text)
    s.generate(ids, args.n_predict, make_sampler(args), on_token=stream)
    stream.close()
    sys.stdout.write("\n")
    sys.stdout.flush()
    print_timings(s)
    return 0


# ---- chat ----

def cmd_chat(args) -> int:
    s = open_session(args)
    tmpl = s.chat_template
    if tmpl is None:
        raise GGraphError(f"{args.model} has no chat template (tokenizer.chat_template)")
    sampler = make_sampler(args)
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    cached: list[int] = []                  # tokens of the conversation in the KV cache
    interactive = sys.stdin.isatty()
    log("chat: type a message, an empty line or Ctrl-D ends" if interactive else "chat: reading messages from stdin")
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line or not line.strip():
            break
        messages.append({"role": "user", "content": line.rstrip("\n")})
        ids = s.tokenizer.encode(tmpl.render(messages, add_generation_prompt=True), add_special=False)
        # reuse what the cache already holds of this conversation
        keep = 0
        while keep < min(len(ids), len(cached)) and ids[keep] == cached[keep]:
            keep += 1
        keep = min(keep, len(ids) - 1)
        s.cache.remove_from(0, keep)
        if len(ids) + args.n_predict > s.n_ctx:
            raise GGraphError(f"the conversation ({len(ids)} tokens) no longer fits the context of {s.n_ctx}")
        stream = TextStream(s.tokenizer)
        reply = s.generate(ids[keep:], args.n_predict, sampler, on_token=stream, history=ids[:keep])
        stream.close()
        sys.stdout.write("\n")
        sys.stdout.flush()
        cached = ids + reply
        text = s.tokenizer.decode([t for t in reply if t not in s.tokenizer.eog_ids])
        messages.append({"role": "assistant", "content": text})
    print_timings(s)
    return 0


# ---- perplexity ----

def cmd_perplexity(args) -> int:
    try:
        with open(args.file, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
    except OSError as e:
        raise GGraphError(f"cannot read {args.file}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise GGraphError(f"{args.file} is not valid UTF-8 (byte {e.start})") from None
    s = open_session(args)
    n_ctx = args.ctx_size
    tokens = s.tokenizer.encode(text, add_special=False)
    n_chunk = len(tokens) // n_ctx
    if args.chunks is not None:
        n_chunk = min(n_chunk, args.chunks)
    if n_chunk < 1:
        raise GGraphError(f"{args.file} has {len(tokens)} tokens: need at least {n_ctx} (one chunk of -c)")
    first = n_ctx // 2
    nll = []
    log(f"perplexity: {n_chunk} chunks of {n_ctx} tokens, scoring the second half of each")
    t0 = time.perf_counter()
    bos = s.tokenizer.bos_id if s.tokenizer.add_bos else None
    for c in range(n_chunk):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos                     # as llama-perplexity: each chunk starts a document
        s.reset()
        logits = s.eval(chunk, all_logits=True).astype(np.float64)
        lg = logits[first:n_ctx - 1]
        lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
        target = np.asarray(chunk[first + 1:n_ctx])
        nll.extend((lse - lg[np.arange(len(target)), target]).tolist())
        ppl = math.exp(float(np.mean(nll)))
        eta = (time.perf_counter() - t0) / (c + 1) * (n_chunk - c - 1)
        sys.stdout.write(f"[{c + 1}]{ppl:.4f},")
        sys.stdout.flush()
        log(f"  chunk {c + 1}/{n_chunk}: PPL {ppl:.4f}, {eta:.0f} s left")
    sys.stdout.write("\n")
    v = np.asarray(nll)
    mean = float(v.mean())
    ppl = math.exp(mean)
    err = ppl * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    print(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}")
    return 0


# ---- bench ----

def cmd_bench(args) -> int:
    if args.repetitions < 1:
        raise GGraphError(f"-r must be >= 1, got {args.repetitions}")
    if args.profile and args.attn != "full":
        raise GGraphError(f"--profile reads the full-attention KV cache; it does not run with --attn {args.attn}")
    s = open_session(args)
    hp = s.hparams
    rng = np.random.default_rng(0)
    rows = []
    tests = []
    if args.n_prompt > 0:
        tests.append(("pp", args.n_prompt))
    if args.n_gen > 0:
        tests.append(("tg", args.n_gen))
    for kind, n in tests:
        if n > s.n_ctx:
            raise GGraphError(f"{kind}{n} needs a context of {n}, -c is {s.n_ctx}")
        # warm-up: builds the graphs and starts the threads
        s.reset()
        if kind == "pp":
            s.eval(rng.integers(0, hp.n_vocab, n).tolist())
        else:
            s.eval([1])
        samples = []
        py_share = []
        for _ in range(args.repetitions):
            s.reset()
            s.timings = type(s.timings)()
            toks = rng.integers(0, hp.n_vocab, n).tolist()
            t0 = time.perf_counter()
            if kind == "pp":
                s.eval(toks)
            else:
                for t in toks:
                    s.eval([t])
            samples.append(n / (time.perf_counter() - t0))
            py_share.append(s.timings.python_share())
        a = np.asarray(samples)
        rows.append({"model": str(s.model.path).rsplit("/", 1)[-1], "size_mib": _model_mib(s.model),
                     "threads": s.n_threads, "test": f"{kind}{n}", "t_s": float(a.mean()),
                     "t_s_std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                     "python_share": float(np.mean(py_share)), "samples": a.tolist()})
    report = None
    if args.profile:
        from . import perf
        report = perf.run_profile(s, args.n_prompt or 512, args.n_gen or 32)
    if args.json:
        print(json.dumps(rows if report is None else {"rows": rows, "profile": report.to_dict()}, indent=2))
        return 0
    print(f"| {'model':<40} | {'size':>9} | {'threads':>7} | {'test':>6} | {'t/s':>16} | {'py %':>5} |")
    print(f"| {'-' * 40} | {'-' * 9}: | {'-' * 7}: | {'-' * 6}: | {'-' * 16}: | {'-' * 5}: |")
    for r in rows:
        ts = f"{r['t_s']:.2f} ± {r['t_s_std']:.2f}"
        print(f"| {r['model'][:40]:<40} | {r['size_mib']:>5.1f} MiB | {r['threads']:>7} | {r['test']:>6} | "
              f"{ts:>16} | {100 * r['python_share']:>5.1f} |")
    if report is not None:
        print()
        print(perf.format_report(report))
    return 0


def _model_mib(model) -> float:
    return sum(t.nbytes() for t in model.tensors.values()) / 2**20


# ---- dump-graph ----

def cmd_dump_graph(args) -> int:
    from ..session import Session
    from ..model_files import open_model
    model = open_model(args.model)
    if args.layers is not None:
        if args.layers < 1:
            raise GGraphError(f"--layers must be >= 1, got {args.layers}")
        model = copy.copy(model)
        model.hparams = dataclasses.replace(model.hparams, n_layer=min(args.layers, model.hparams.n_layer))
    s = Session(model, n_ctx=args.ctx_size, n_threads=args.threads, flash_attn=args.flash_attn == "on",
                attn=attn_config(args))
    s.eval([1])
    g = s.decode_graph()
    if args.profile:
        g.compute(s.n_threads)
        g.compute(s.n_threads, profile=True)
    path = g.dump_dot(args.output, color_by="time" if args.profile else "op")
    log(f"wrote {path}: decode graph with {len(g.nodes)} nodes, {len(g.leafs)} leafs, "
        f"{g.mem_size() / 2**20:.2f} MiB of intermediates")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("generate", help="complete a prompt, streaming the text")
    add_common(p)
    add_sampling(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-p", "--prompt", help="prompt text")
    src.add_argument("-f", "--file", help="file with the prompt (UTF-8)")
    p.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate")
    p.add_argument("--echo", action="store_true", help="print the prompt before the completion")
    p.set_defaults(fn=cmd_generate)

    p = sub.add_parser("chat", help="interactive chat with the model's template")
    add_common(p)
    add_sampling(p)
    p.add_argument("-n", "--n-predict", type=int, default=512, help="max tokens per reply")
    p.add_argument("--system", default=None, help="system message")
    p.set_defaults(fn=cmd_chat)

    p = sub.add_parser("perplexity", help="llama-perplexity's measure on a text file")
    add_common(p, ctx_default=512)
    p.add_argument("-f", "--file", required=True, help="UTF-8 text")
    p.add_argument("--chunks", type=int, default=None, help="score at most this many chunks")
    p.set_defaults(fn=cmd_perplexity)

    p = sub.add_parser("bench", help="llama-bench's pp and tg tests")
    add_common(p)
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (pp test), 0 to skip")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (tg test), 0 to skip")
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--profile", action="store_true",
                   help="then profile a decode step after a -p token prompt and a prefill micro-batch: "
                        "time per op group, Python share, decode bandwidth")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("dump-graph", help="the model's decode graph as a picture")
    add_common(p, ctx_default=512)
    p.add_argument("-o", "--output", required=True, help="graph.svg, .png, .pdf or .dot")
    p.add_argument("--layers", type=int, default=None, help="draw only the first N layers")
    p.add_argument("--profile", action="store_true", help="colour nodes by their share of the time")
    p.set_defaults(fn=cmd_dump_graph)

    from . import passkey
    passkey.add_command(sub)
