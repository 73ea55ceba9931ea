"""`ggraph bench --profile`: where the time of a decode step and of a prefill
micro-batch goes, and how close decoding runs to the memory bandwidth.

The profile runs each graph with compute(profile=True), which stores every
node's time, and groups the nodes:

  mul_mat <type>           weight products, by the weight's type
  mul_mat <type> (output)  the output projection (the largest matrix of a small model)
  attention (...)          flash_attn_ext, or kq / soft_max / kqv and their copies
  norms (rms_norm + mul)   rms_norm and the mul by its weight
  rope                     rope_ext on Q and K
  <op>                     everything else, by op name (add, swiglu, set_rows, ...;
                           custom ops as custom:<function name>)
  Python (outside C)       eval() time outside the C compute call, from
                           Session.timings over real eval() calls

Nodes that only describe memory (reshape, view, permute, transpose) run no
kernel and are not counted.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GGraphError

PYTHON = "Python (outside C)"
VIEW_OPS = {"reshape", "view", "permute", "transpose"}


# ---- grouping ----

def _through_views(t):
    while t is not None and t.op in VIEW_OPS:
        t = t.src[0]
    return t


def _is_attention_source(t) -> bool:
    """True for tensors made by the attention block: the cache writes and kq/kqv."""
    t = _through_views(t)
    return t is not None and (t.op in ("set_rows", "flash_attn_ext", "soft_max")
                              or (t.op == "mul_mat" and t.name.startswith("kq")))


def group_of(node, output) -> str | None:
    """The profile group of a graph node; None for nodes that run no kernel."""
    op = node.op
    if op in VIEW_OPS:
        return None
    if op == "mul_mat":
        w = node.src[0]
        if w.op is None:                                  # a leaf: a weight matrix
            return f"mul_mat {w.type}" + (" (output)" if node is output else "")
        if node.name.startswith("kq") or _is_attention_source(w):
            return "attention (kq/soft_max/kqv)"
        return "mul_mat (activations)"
    if op == "flash_attn_ext":
        return "attention (flash_attn_ext)"
    if op == "soft_max":
        return "attention (kq/soft_max/kqv)"
    if op in ("cont", "cpy", "cast") and _is_attention_source(node.src[0]):
        return "attention (kq/soft_max/kqv)"
    if op == "rms_norm" or (op == "mul" and node.src[0].op == "rms_norm"):
        return "norms (rms_norm + mul)"
    if op == "rope":
        return "rope"
    if op == "set_rows":
        return "set_rows (KV cache write)"
    return node.params.get("_label") or op          # custom ops by their function: custom:<name>


@dataclass
class GroupRow:
    group: str
    nodes: int
    ms: float             # mean time per compute of the profiled graph (Python: per eval)
    share_graph: float    # fraction of the summed node times (0 for Python)
    share_eval: float     # fraction of the whole eval() call: C part scaled to the unprofiled compute


@dataclass
class StepProfile:
    title: str
    n_tokens: int
    n_kv: int
    n_nodes: int              # nodes that run a kernel (and end at a barrier)
    eval_ms: float            # mean eval() time, unprofiled, from Session.timings
    compute_ms: float         # mean C compute call in those evals
    python_ms: float          # eval_ms - compute_ms
    unprofiled_ms: float      # median compute() of the graph alone, unprofiled
    profiled_ms: float        # median compute(profile=True) call
    node_sum_ms: float        # mean sum of the node times of a profiled compute
    rows: list[GroupRow] = field(default_factory=list)


def _profile_graph(g, n_threads: int, reps: int) -> tuple[np.ndarray, float, float]:
    """(per-node ns of the fastest profiled run, median profiled call ms, median
    unprofiled call ms). The fastest run, not a mean: on a loaded machine a thread
    that loses its core at a barrier stalls everyone for a time slice, and that
    lands on whichever node comes next."""
    g.compute(n_threads)                                   # warm (threads awake, caches)
    plain, prof, best = [], [], None
    for _ in range(reps):
        g.compute(n_threads)
        plain.append(g.last_compute_ns)
        g.compute(n_threads, profile=True)
        prof.append(g.last_compute_ns)
        if best is None or g.node_ns.sum() < best.sum():
            best = g.node_ns.astype(np.float64)
    return best, statistics.median(prof) / 1e6, statistics.median(plain) / 1e6


def _timed_evals(s, batches) -> tuple[float, float]:
    """Runs s.eval(b) for each batch; (median eval s, median C compute s) per call,
    read from Session.timings after each call. The Python part is the median of the
    per-call differences, so eval = compute + Python."""
    evals, computes = [], []
    for b in batches:
        before = (s.timings.t_eval, s.timings.t_compute)
        s.eval(b)
        evals.append(s.timings.t_eval - before[0])
        computes.append(s.timings.t_compute - before[1])
    c = statistics.median(computes)
    py = statistics.median(e - k for e, k in zip(evals, computes))
    return c + py, c


def _make_profile(title, g, n_tokens, n_kv, n_threads, reps, eval_s, compute_s) -> StepProfile:
    node_ns, prof_ms, plain_ms = _profile_graph(g, n_threads, reps)
    output = g.nodes[-1]
    groups: dict[str, list] = {}
    n_run = 0
    for node, ns in zip(g.nodes, node_ns):
        name = group_of(node, output)
        if name is None:
            continue
        n_run += 1
        a = groups.setdefault(name, [0, 0.0])
        a[0] += 1
        a[1] += float(ns)
    total_ns = sum(a[1] for a in groups.values())
    eval_ms, compute_ms = eval_s * 1e3, compute_s * 1e3
    python_ms = max(0.0, eval_ms - compute_ms)
    c_frac = compute_ms / eval_ms if eval_ms > 0 else 1.0
    rows = []
    for name, (count, ns) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        share = ns / total_ns if total_ns else 0.0
        rows.append(GroupRow(name, count, ns / 1e6, share, share * c_frac))
    rows.append(GroupRow(PYTHON, 0, python_ms, 0.0, 1.0 - c_frac))
    return StepProfile(title, n_tokens, n_kv, n_run, eval_ms, compute_ms, python_ms,
                       plain_ms, prof_ms, total_ns / 1e6, rows)


def profile_decode(s, n_prompt: int, n_steps: int, reps: int, rng) -> tuple[StepProfile, dict]:
    """Decode steps after an n_prompt-token prompt; returns the profile and the
    bandwidth figures of those steps."""
    hp = s.hparams
    s.reset()
    s.eval(rng.integers(0, hp.n_vocab, n_prompt).tolist())
    s.eval([int(rng.integers(0, hp.n_vocab))])             # builds the decode graph
    eval_s, compute_s = _timed_evals(s, [[t] for t in rng.integers(0, hp.n_vocab, n_steps).tolist()])
    n_used = s.cache.n_used()
    n_kv = s.cache.n_kv()
    g = s.decode_graph(n_kv)
    prof = _make_profile(f"decode step (1 token, {n_used - 1} tokens in the cache)", g, 1, n_kv,
                         s.n_threads, reps, eval_s, compute_s)
    # bytes one decode step reads: every weight matrix once, and the K/V rows attended
    w_bytes = sum(n.src[0].nbytes() for n in g.nodes if n.op == "mul_mat" and n.src[0].op is None)
    # flash_attn_ext skips the masked cells; mul_mat + soft_max reads all n_kv
    cells = n_used if s.flash_attn else n_kv
    kv_bytes = hp.n_layer * cells * (s.cache.k_row_bytes() + s.cache.v_row_bytes())
    tok_s = 1e3 / prof.eval_ms
    bw = {"weight_bytes": int(w_bytes), "kv_bytes": int(kv_bytes), "tokens_s": tok_s,
          "achieved_gb_s": (w_bytes + kv_bytes) * tok_s / 1e9,
          "achieved_gb_s_compute": (w_bytes + kv_bytes) / (prof.compute_ms / 1e3) / 1e9}
    return prof, bw


def profile_prefill(s, n_tokens: int, reps: int, rng) -> StepProfile:
    """One micro-batch of n_tokens on an empty cache (only the last token's logits)."""
    hp = s.hparams
    s.reset()
    s.eval(rng.integers(0, hp.n_vocab, n_tokens).tolist())   # builds the graph
    evals = []
    for _ in range(reps):
        s.reset()
        evals.append(_timed_evals(s, [rng.integers(0, hp.n_vocab, n_tokens).tolist()]))
    eval_s = statistics.median(e for e, _ in evals)
    compute_s = statistics.median(c for _, c in evals)
    n_kv = s.cache.n_kv()
    g = s._plan(n_tokens, n_kv, None if n_tokens == 1 else 1).graph   # the graph eval() just ran
    prof = _make_profile(f"prefill micro-batch ({n_tokens} tokens)", g, n_tokens, n_kv, s.n_threads,
                         reps, eval_s, compute_s)
    return prof


# ---- machine figures (also used by benchmarks/*.py) ----

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def median_time(fn, reps: int) -> float:
    """Median seconds of fn() over reps calls, after one warm-up call (plans, allocates)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def llc_bytes() -> int:
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            v = (d / "size").read_text().strip()
            best = max(best, int(v[:-1]) * {"K": 1 << 10, "M": 1 << 20}.get(v[-1], 1))
        except (OSError, ValueError):
            pass
    return best or 32 << 20


def read_bandwidth(n_threads: int = 1, nbytes: int | None = None, reps: int = 5) -> float:
    """Read-only DRAM bandwidth in GB/s: numpy reductions with almost no work per
    byte (int64 add, float32 max) over an array well beyond the last-level cache,
    as benchmarks/quant.py measures it; with n_threads > 1 each thread reduces
    its own slice (numpy releases the GIL in the loop). Best of reps."""
    nbytes = nbytes or max(4 * llc_bytes(), 256 << 20)
    src = np.ones(nbytes // 8, np.int64)
    parts = np.array_split(src, n_threads)

    def one_pass() -> float:
        if n_threads == 1:
            t0 = time.perf_counter()
            np.add.reduce(src)
            return time.perf_counter() - t0
        ts = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    one_pass()
    best = min(one_pass() for _ in range(reps))
    f32 = src.view(np.float32)
    if n_threads == 1:                    # a float max is sometimes the faster stream
        np.maximum.reduce(f32)
        for _ in range(reps):
            t0 = time.perf_counter()
            np.maximum.reduce(f32)
            best = min(best, time.perf_counter() - t0)
    return src.nbytes / best / 1e9


def node_overhead_us(n_threads: int, n_nodes: int = 400, reps: int = 20) -> float:
    """Fixed cost per node (dispatch + the barrier that ends it) in microseconds:
    a chain of n_nodes adds of one float, median of reps computes."""
    import ggraph as gg
    ctx = gg.Context()
    y = ctx.from_numpy(np.ones(1, np.float32))
    one = ctx.from_numpy(np.ones(1, np.float32))
    for _ in range(n_nodes):
        y = gg.add(y, one)
    y.set_output()
    g = gg.Graph("node overhead")
    g.build_forward_expand(y)
    g.compute(n_threads)
    ts = []
    for _ in range(reps):
        g.compute(n_threads)
        ts.append(g.last_compute_ns)
    return statistics.median(ts) / n_nodes / 1e3


# ---- the report ----

@dataclass
class Report:
    model: str
    threads: int
    flash_attn: bool
    load_avg: str
    decode: StepProfile
    prefill: StepProfile
    bandwidth: dict

    def to_dict(self) -> dict:
        return asdict(self)


def run_profile(s, n_prompt: int, n_steps: int, reps: int = 5, seed: int = 0) -> Report:
    if n_prompt < 1:
        raise GGraphError(f"--profile needs a prompt length >= 1 (-p), got {n_prompt}")
    if n_prompt + n_steps + 2 > s.n_ctx:
        raise GGraphError(f"--profile decodes {n_steps} tokens after a {n_prompt}-token prompt: "
                          f"that needs a context of {n_prompt + n_steps + 2}, -c is {s.n_ctx}")
    rng = np.random.default_rng(seed)
    decode, bw = profile_decode(s, n_prompt, n_steps, reps, rng)
    prefill = profile_prefill(s, min(n_prompt, s.n_batch), max(1, reps // 2 + 1), rng)
    s.reset()
    bw["read_gb_s_1"] = read_bandwidth(1)
    bw["read_gb_s_n"] = read_bandwidth(s.n_threads) if s.n_threads > 1 else bw["read_gb_s_1"]
    bw["node_overhead_us"] = node_overhead_us(s.n_threads)
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return Report(str(s.model.path).rsplit("/", 1)[-1], s.n_threads, s.flash_attn, load, decode, prefill, bw)


def format_step(p: StepProfile) -> list[str]:
    lines = [f"{p.title}: n_kv {p.n_kv}, {p.n_nodes} nodes that run a kernel",
             f"| {'group':<30} | {'nodes':>5} | {'ms':>8} | {'% of C':>6} | {'% of eval':>9} |",
             f"| {'-' * 30} | {'-' * 5}: | {'-' * 8}: | {'-' * 6}: | {'-' * 9}: |"]
    for r in p.rows:
        c = "" if r.group == PYTHON else f"{100 * r.share_graph:6.1f}"
        n = "" if r.group == PYTHON else str(r.nodes)
        lines.append(f"| {r.group:<30} | {n:>5} | {r.ms:8.3f} | {c:>6} | {100 * r.share_eval:9.1f} |")
    lines.append(f"eval() {p.eval_ms:.3f} ms = C compute {p.compute_ms:.3f} ms + Python {p.python_ms:.3f} ms "
                 f"(Session.timings, unprofiled evals)")
    lines.append(f"graph alone (median): unprofiled compute {p.unprofiled_ms:.3f} ms, profiled compute "
                 f"{p.profiled_ms:.3f} ms; sum of node times {p.node_sum_ms:.3f} ms (fastest profiled run)")
    return lines


def format_report(r: Report) -> str:
    bw = r.bandwidth
    lines = [f"profile: {r.model}, {r.threads} threads, flash attention {'on' if r.flash_attn else 'off'}, "
             f"load average {r.load_avg}",
             "node times from compute(profile=True): thread 0 reads the clock after the barrier that ends "
             "each node (every kernel node ends at a barrier, profiled or not; profiling adds the clock "
             "reads and one barrier before the first node). '% of C' splits the summed node times; "
             "'% of eval' scales them to the unprofiled compute and adds the Python share.", ""]
    lines += format_step(r.decode) + [""] + format_step(r.prefill) + [""]
    wb, kb = bw["weight_bytes"], bw["kv_bytes"]
    lines.append(f"decode bandwidth: {wb / 2**20:.1f} MiB of weights + {kb / 2**20:.2f} MiB of K/V per token "
                 f"x {bw['tokens_s']:.1f} tokens/s = {bw['achieved_gb_s']:.2f} GB/s "
                 f"({bw['achieved_gb_s_compute']:.2f} GB/s over the C compute time alone)")
    lines.append(f"machine read bandwidth (numpy reduce over {max(4 * llc_bytes(), 256 << 20) >> 20} MiB): "
                 f"{bw['read_gb_s_1']:.2f} GB/s on 1 thread"
                 + (f", {bw['read_gb_s_n']:.2f} GB/s on {r.threads}" if r.threads > 1 else ""))
    lines.append(f"fixed cost per node (dispatch + barrier, {r.threads} threads): {bw['node_overhead_us']:.2f} us "
                 f"x {r.decode.n_nodes} decode nodes = {bw['node_overhead_us'] * r.decode.n_nodes / 1e3:.3f} ms "
                 f"per decode step")
    return "\n".join(lines)

