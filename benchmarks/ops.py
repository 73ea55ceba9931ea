#!/usr/bin/env python3
"""Op benchmarks: ggraph's C kernels against numpy doing the same work, same run.

    python benchmarks/ops.py                 # 1 and 2 threads, all rows (~1-2 min)
    python benchmarks/ops.py --quick         # fewer sizes and repetitions
    python benchmarks/ops.py --threads 2     # one thread count

Every row gives the median wall time of one ggraph graph compute (the op
alone, inputs already in place) and of the numpy equivalent, their ratio
(numpy time / ggraph time: above 1 means ggraph is faster), and ggraph's
GFLOP/s (2*M*N*K for mul_mat) and GB/s (bytes of the inputs read plus the
output written, once each: against the machine's memory bandwidth for the
memory-bound matrix-vector rows).

numpy runs with the same number of threads: through threadpoolctl when it is
installed, else by OPENBLAS_NUM_THREADS, which OpenBLAS reads once when numpy
is imported; the script then runs itself once per thread count with that
variable set. Elementwise numpy (softmax, norms, rope) is single-threaded.
With F16 weights numpy multiplies the float32 copy of the same values (it has
no f16 GEMM), so those rows compare against numpy's F32 time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# ---- arguments first: OPENBLAS_NUM_THREADS must be set before numpy loads ----
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (~30 s)")
ap.add_argument("--reps", type=int, default=0, help="timed repetitions per row (default 15, quick 5)")
ap.add_argument("--only", default="", help="run only rows whose op name contains this")
ap.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)   # child runs
args = ap.parse_args()
THREADS = [int(x) for x in args.threads.split(",") if x.strip()]
REPS = args.reps or (5 if args.quick else 15)
SETTLE_S = 0.0 if max(THREADS) == 1 else 0.3

try:
    import threadpoolctl  # noqa: F401  (only probing: it must not load numpy here)
    HAVE_TPC = True
except ImportError:
    HAVE_TPC = False

if not HAVE_TPC and len(THREADS) == 1:
    os.environ["OPENBLAS_NUM_THREADS"] = str(THREADS[0])
    os.environ["OMP_NUM_THREADS"] = str(THREADS[0])

import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import ggraph as gg  # noqa: E402
from ggraph.tools import perf  # noqa: E402
from ggraph.tools.perf import cpu_model, load_average  # noqa: E402

COLS = f"{'op':<13} {'type':<5} {'thr':>3} {'shape':<24} {'ggraph ms':>10} {'numpy ms':>10} " \
       f"{'np/gg':>6} {'GFLOP/s':>8} {'GB/s':>7}"


def blas_line() -> str:
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        conf = " ".join(str(cfg.get("openblas configuration", "")).split())
        return f"{cfg.get('name')} {cfg.get('version')} ({conf})"
    except Exception as e:  # pragma: no cover - older numpy
        return f"unknown ({e})"


def print_header() -> None:
    print(f"# ggraph op benchmarks: {cpu_model()}, {os.cpu_count()} cpus, load average {load_average()}")
    print(f"# numpy {np.__version__}, BLAS: {blas_line()}")
    print(f"# OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"ggraph SIMD={'AVX2/FMA/F16C' if gg.simd_available() else 'off (scalar build)'}")
    if HAVE_TPC:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            print(f"# threadpoolctl: {info.get('internal_api')} {info.get('version')} "
                  f"{info.get('architecture')} threading={info.get('threading_layer')}")
        print("# numpy threads set per row with threadpoolctl")
    else:
        print("# numpy threads: OPENBLAS_NUM_THREADS set per thread count (threadpoolctl not installed)")
    print("# F16 rows: ggraph reads F16 weights; numpy multiplies the float32 copy of the same values")
    print(f"# median of {REPS} runs; np/gg = numpy time / ggraph time (>1: ggraph faster)")
    print(COLS)


def median_time(fn, reps: int) -> float:
    # worker threads of the other library (OpenBLAS's, or ggraph's pool) spin for a
    # while after their last job; on 2 cores they would steal time from this one
    time.sleep(SETTLE_S)
    return perf.median_time(fn, reps)


def numpy_threads(n: int):
    if HAVE_TPC:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=n)
    import contextlib
    return contextlib.nullcontext()


def row(op, type_name, nt, shape, t_gg, t_np, flops, nbytes) -> None:
    gf = f"{flops / t_gg / 1e9:8.1f}" if flops else f"{'':>8}"
    print(f"{op:<13} {type_name:<5} {nt:>3} {shape:<24} {t_gg * 1e3:10.3f} {t_np * 1e3:10.3f} "
          f"{t_np / t_gg:6.2f} {gf} {nbytes / t_gg / 1e9:7.1f}", flush=True)


def graph_of(y) -> gg.Graph:
    y.set_output()
    g = gg.Graph()
    g.build_forward_expand(y)
    return g


# ---- mul_mat ----

_weights: dict = {}


def weights(K: int, M: int, rng) -> np.ndarray:
    if (K, M) not in _weights:
        _weights[(K, M)] = (rng.standard_normal((M, K), dtype=np.float32) * 0.05)
    return _weights[(K, M)]


def bench_mul_mat(nt: int) -> None:
    rng = np.random.default_rng(0)
    sizes = [(4096, 4096), (896, 4864), (4864, 896)]
    ns = [1, 64] if args.quick else [1, 128]
    for type_name in ("F32", "F16"):
        for K, M in sizes:
            w32 = weights(K, M, rng)
            ctx = gg.Context()
            a = ctx.from_numpy(w32.astype(np.float16) if type_name == "F16" else w32)
            w_np = a.numpy().astype(np.float32)          # the values ggraph sees
            for N in ns:
                x = rng.standard_normal((N, K), dtype=np.float32)
                b = ctx.from_numpy(x)
                g = graph_of(gg.mul_mat(a, b))
                t_gg = median_time(lambda: g.compute(nt), REPS)
                if N == 1:
                    xv = x[0]
                    np_fn = lambda: w_np @ xv               # noqa: E731  gemv
                else:
                    np_fn = lambda: x @ w_np.T              # noqa: E731  gemm, (N, K) x (K, M)
                with numpy_threads(nt):
                    t_np = median_time(np_fn, REPS)
                nbytes = a.nbytes() + b.nbytes() + 4 * M * N
                row("mul_mat", type_name, nt, f"K={K} M={M} N={N}", t_gg, t_np, 2.0 * K * M * N, nbytes)


# ---- other ops (written in parallel by other families: skipped until merged) ----

def skip(op: str, why: str) -> None:
    print(f"{op:<13} skipped: {why}", flush=True)


def bench_soft_max(nt: int) -> None:
    if not hasattr(gg, "soft_max_ext"):
        return skip("soft_max_ext", "gg.soft_max_ext is not in this build yet")
    rng = np.random.default_rng(1)
    kv, nq, nh = 512, 128, 32                          # attention scores: kv x tokens x heads
    x = rng.standard_normal((nh, nq, kv), dtype=np.float32)
    m = np.where(np.arange(kv)[None, :] <= np.arange(nq)[:, None] + kv - nq, 0.0, -np.inf).astype(np.float32)
    scale = 0.125
    try:
        ctx = gg.Context()
        g = graph_of(gg.soft_max_ext(ctx.from_numpy(x), ctx.from_numpy(m), scale, 0.0))
        t_gg = median_time(lambda: g.compute(nt), REPS)
    except (gg.GGraphError, TypeError, ValueError) as e:   # API still moving: report, don't stop
        return skip("soft_max_ext", f"{e}")

    def np_fn():
        z = x * scale + m
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    t_np = median_time(np_fn, REPS)
    row("soft_max_ext", "F32", nt, f"{kv}x{nq}x{nh} +mask", t_gg, t_np, 0, 2 * x.nbytes + m.nbytes)


def bench_rms_norm(nt: int) -> None:
    if not hasattr(gg, "rms_norm"):
        return skip("rms_norm", "gg.rms_norm is not in this build yet")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 4096), dtype=np.float32)
    ctx = gg.Context()
    g = graph_of(gg.rms_norm(ctx.from_numpy(x), 1e-5))
    t_gg = median_time(lambda: g.compute(nt), REPS)
    t_np = median_time(lambda: x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-5), REPS)
    row("rms_norm", "F32", nt, "4096x128", t_gg, t_np, 0, 2 * x.nbytes)


def bench_rope(nt: int) -> None:
    if not hasattr(gg, "rope_ext"):
        return skip("rope_ext", "gg.rope_ext is not in this build yet")
    rng = np.random.default_rng(3)
    hd, nh, nt_tok = 128, 32, 128
    base = 10000.0
    x = rng.standard_normal((nt_tok, nh, hd), dtype=np.float32)
    pos = np.arange(nt_tok, dtype=np.int32)
    mode = 2                                            # NEOX: pairs (i, i + n_dims/2), as Qwen2
    try:
        ctx = gg.Context()
        y = gg.rope_ext(ctx.from_numpy(x), ctx.from_numpy(pos), None, hd, mode, 0, base, 1.0, 0.0, 1.0, 32.0, 1.0)
        g = graph_of(y)
        t_gg = median_time(lambda: g.compute(nt), REPS)
    except (gg.GGraphError, TypeError, ValueError) as e:   # API still moving: report, don't stop
        return skip("rope_ext", f"{e}")

    def np_fn():
        inv = base ** (-np.arange(0, hd, 2, dtype=np.float32) / hd)
        th = pos[:, None].astype(np.float32) * inv[None, :]           # (tokens, hd/2)
        c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        x0, x1 = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    t_np = median_time(np_fn, REPS)
    row("rope_ext", "F32", nt, f"{hd}x{nh}x{nt_tok} neox", t_gg, t_np, 0, 2 * x.nbytes)


BENCHES = [("mul_mat", bench_mul_mat), ("soft_max_ext", bench_soft_max), ("rms_norm", bench_rms_norm),
           ("rope_ext", bench_rope)]


def run(nt: int) -> None:
    for name, fn in BENCHES:
        if args.only and args.only not in name:
            continue
        fn(nt)


def main() -> None:
    t0 = time.perf_counter()
    if not args.no_header:
        print_header()
    if HAVE_TPC or len(THREADS) == 1:
        for nt in THREADS:
            run(nt)
    else:
        # one child per thread count, each with OpenBLAS's thread count fixed at import
        for nt in THREADS:
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(nt), OMP_NUM_THREADS=str(nt))
            cmd = [sys.executable, __file__, "--threads", str(nt), "--reps", str(REPS), "--no-header"]
            if args.quick:
                cmd.append("--quick")
            if args.only:
                cmd += ["--only", args.only]
            subprocess.run(cmd, env=env, check=True)
    if not args.no_header:
        print(f"# total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
