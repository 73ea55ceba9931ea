#!/usr/bin/env python3
"""Matrix-vector throughput over quantized weights, next to the machine's memory bandwidth.

    python benchmarks/quant.py              # every weight type, 1 and 2 threads (~1-2 min)
    python benchmarks/quant.py --quick      # fewer repetitions, smaller working sets
    python benchmarks/quant.py --threads 1 --types Q4_0,Q8_0
    python benchmarks/quant.py --no-qgemv   # without the AVX-512 matrix-vector rows (csrc/qgemv.c)

Decoding one token is a chain of mul_mat(W, x) with one activation column: every
weight byte is read once and used for 2 flops per element, so the speed limit is
how fast the weights stream in. Each row gives, for mul_mat with a: W (K x M, the
weight type) and b: x (K x 1, F32), the weight bytes read per second (GB/s =
W.nbytes / time / 1e9), median of repeated computes:

  hot   one W, computed again and again: W stays in the caches when it fits
        (Q4_0 at 896 x 4864 is 2.5 MB, F32 is 17 MB: the L3 is 32 MB here);
  cold  a graph of n mul_mats over n copies of W, together at least 4x the L3
        (as in a model, where the other layers evict W): W streams from DRAM.
        This is the number to hold against the memory bandwidth.

The bandwidth rows, 1 thread, median of repeats over an array well beyond the L3:
  read  a read-only stream: the faster of np.add.reduce over the array viewed as int64
        (integer adds, no pairwise float summation) and np.maximum.reduce over it as
        float32; both are SIMD loops with almost no work per byte, so they run at the
        speed one core can pull data from DRAM (a float32 np.sum is slower: it is not);
  copy  np.copyto between two float32 arrays: (bytes read + bytes written) per second
        (the write also costs a read-for-ownership, not counted).
"cold/read" is the cold GB/s over the read bandwidth: near or above 1 means mul_mat runs
at memory speed (2 threads can beat one numpy thread's read stream).

Types whose C rows (quantize, vec_dot) are not in this build, or that mul_mat does not
yet accept, are skipped with a note.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import ggraph as gg  # noqa: E402
from ggraph.backend.ffi import lib, set_kernel_path  # noqa: E402
from ggraph.tools.perf import cpu_model, llc_bytes, median_time  # noqa: E402

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "F32"]
SIZES = [(896, 4864), (4096, 4096)]          # (K, M): Qwen2-0.5B's ffn_up, a 7B-class square matrix


def bandwidth(nbytes: int, reps: int) -> tuple[float, float]:
    """(read GB/s, copy GB/s), one thread."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    as_i64 = src.view(np.int64)
    t_read = min(median_time(lambda: np.add.reduce(as_i64), reps), median_time(lambda: np.maximum.reduce(src), reps))
    t_copy = median_time(lambda: np.copyto(dst, src), reps)
    return src.nbytes / t_read / 1e9, 2 * src.nbytes / t_copy / 1e9


def build(type_name: str, w: np.ndarray, x: np.ndarray, copies: int):
    """A graph of `copies` mul_mats, one per copy of w in type_name; returns (graph, weight bytes each)."""
    ctx = gg.Context()
    b = ctx.from_numpy(x)
    outs, nbytes = [], 0
    for _ in range(copies):
        a = ctx.from_numpy(w, type=type_name)
        nbytes = a.nbytes()
        outs.append(gg.mul_mat(a, b))
    g = gg.Graph()
    for y in outs:
        y.set_output()
        g.build_forward_expand(y)
    return g, nbytes


def why_not(type_name: str) -> str | None:
    """None when ggraph can run mul_mat over type_name weights, else the reason."""
    try:
        ctx = gg.Context()
        t = gg.as_type(type_name)
        n = max(t.blck_size, 32)
        a = ctx.from_numpy(np.ones((2, n), np.float32), type=t)
        g = gg.Graph()
        y = gg.mul_mat(a, ctx.from_numpy(np.ones((1, n), np.float32)))
        y.set_output()
        g.build_forward_expand(y)
        g.compute(1)
        return None
    except gg.GGraphError as e:
        return str(e).splitlines()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and smaller working sets (~20 s)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated weight types")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions (default 15, quick 5)")
    ap.add_argument("--no-qgemv", action="store_true",
                    help="switch off the AVX-512 matrix-vector rows (csrc/qgemv.c): one vec_dot per row")
    args = ap.parse_args()
    if args.no_qgemv:
        set_kernel_path("qgemv", False)
    threads = [int(s) for s in args.threads.split(",") if s.strip()]
    types = [s.strip().upper() for s in args.types.split(",") if s.strip()]
    reps = args.reps or (5 if args.quick else 15)
    llc = llc_bytes()
    cold_target = (2 if args.quick else 4) * llc

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"# ggraph quantized mul_mat: {cpu_model()}, {os.cpu_count()} cpus, L3 {llc >> 20} MiB, "
          f"load average {' '.join(load)}")
    qgemv = "off (--no-qgemv)" if args.no_qgemv else "on" if lib.gg_qgemv_built() else "not built"
    print(f"# ggraph SIMD={'AVX2/FMA/F16C' if gg.simd_available() else 'off (scalar build)'}, qgemv {qgemv}, "
          f"numpy {np.__version__}; median of {reps} runs")
    bw_bytes = max(4 * llc, 256 << 20) if not args.quick else max(2 * llc, 128 << 20)
    bw_read, bw_copy = bandwidth(bw_bytes, reps)
    print(f"# memory bandwidth, 1 thread, {bw_bytes >> 20} MiB arrays: read (int64 sum / f32 max) {bw_read:.1f} GB/s, "
          f"copy (np.copyto, read+write) {bw_copy:.1f} GB/s")
    print(f"# GB/s = weight bytes / time; hot: one matrix (cached when it fits); cold: copies totalling "
          f">= {cold_target >> 20} MiB; cold/read = cold GB/s over the read bandwidth")
    if len(threads) > 1 and float(load[0]) > 0.5:
        print(f"# note: load average {load[0]}: other work shares the cores, multi-thread rows suffer first")
    print(f"{'type':<5} {'K':>5} {'M':>5} {'MiB':>6} {'thr':>3} {'hot ms':>8} {'hot GB/s':>8} "
          f"{'cold ms':>8} {'cold GB/s':>9} {'cold/read':>9}")

    rng = np.random.default_rng(0)
    for type_name in types:
        reason = why_not(type_name)
        if reason:
            print(f"{type_name:<5} skipped: {reason}", flush=True)
            continue
        for K, M in SIZES:
            if K % gg.blck_size(type_name):
                # rows of 896 are not whole 256-blocks: the K types meet this matrix as
                # ffn_down (K=4864), which is what a Qwen2.5 Q4_K_M file does too
                K, M = M, K
            w = (rng.standard_normal((M, K), dtype=np.float32) * 0.05)
            x = rng.standard_normal((1, K), dtype=np.float32)
            g_hot, nbytes = build(type_name, w, x, 1)
            copies = int(min(64, max(2, -(-cold_target // nbytes))))
            g_cold, _ = build(type_name, w, x, copies)
            for nt in threads:
                t_hot = median_time(lambda: g_hot.compute(nt), reps)
                t_cold = median_time(lambda: g_cold.compute(nt), max(3, reps // 3)) / copies
                cold = nbytes / t_cold / 1e9
                print(f"{type_name:<5} {K:>5} {M:>5} {nbytes / 2**20:6.2f} {nt:>3} {t_hot * 1e3:8.3f} "
                      f"{nbytes / t_hot / 1e9:8.1f} {t_cold * 1e3:8.3f} {cold:9.1f} {cold / bw_read:9.2f}",
                      flush=True)
            del g_hot, g_cold
    return 0


if __name__ == "__main__":
    sys.exit(main())
