"""What the prefill kernels buy: pp512 with each fast path on and off, in the same run.

    python benchmarks/prefill_paths.py                 # SmolLM2 (and Qwen2.5 if installed), 1 thread
    python benchmarks/prefill_paths.py -t 2 -r 5       # 2 threads, 5 alternating repetitions

Paths (ggraph.backend.ffi.set_kernel_path; results are correct either way):
  qgemm     mul_mat of a block type with 4+ columns by unpacked 16-row weight tiles and
            AVX-512 VNNI (csrc/qgemm.c); off: one vec_dot per output
  fa_tiled  flash_attn_ext with 8+ q rows by blocks of 64 K/V rows against 64 query
            vectors (csrc/ops_attention.c); off: the row-at-a-time path

Each repetition runs every configuration once (all on, qgemm off, fa_tiled off, both off),
so they share the machine's conditions; the table prints medians and the speed-up of "all
on" over each. 1 thread by default: on a shared machine, 2 spinning threads stall at every
barrier when another process takes a core, which swamps what the kernels change.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import ggraph as gg
from ggraph.backend.ffi import set_kernel_path
from ggraph.model_files import list_models, open_model
from ggraph.session import Session
from ggraph.tools.perf import cpu_model, load_average

CONFIGS = {"all on": {}, "qgemm off": {"qgemm": False}, "fa_tiled off": {"fa_tiled": False},
           "both off": {"qgemm": False, "fa_tiled": False}}


def pp_tokens_per_s(s: Session, ids: np.ndarray) -> float:
    s.reset()
    t0 = time.perf_counter()
    s.eval(ids)
    return len(ids) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", help="model name or .gguf path (repeatable)")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    a = ap.parse_args()
    if not gg.simd_available():
        ap.error("this build has no SIMD paths to compare")
    installed = [m.name for m in list_models() if m.status != "not installed"]
    models = a.model or installed
    print(f"# {cpu_model()}; ggraph SIMD {gg.simd_features()}; {a.threads} thread(s); "
          f"pp{a.n_prompt}; median of {a.reps} repetitions; load average {load_average()}")
    for name in models:
        model = open_model(name)
        s = Session(model, n_ctx=max(1024, a.n_prompt), n_threads=a.threads, n_batch=a.n_prompt)
        rng = np.random.default_rng(0)
        ids = rng.integers(0, model.hparams.n_vocab, a.n_prompt).astype(np.int32)
        results = {c: [] for c in CONFIGS}
        pp_tokens_per_s(s, ids)                          # warm-up: graphs built, pages in
        for _ in range(a.reps):
            for cfg, switches in CONFIGS.items():
                for path, on in switches.items():
                    set_kernel_path(path, on)
                try:
                    results[cfg].append(pp_tokens_per_s(s, ids))
                finally:
                    for path in switches:
                        set_kernel_path(path, True)
        base = statistics.median(results["all on"])
        print(f"\n## {name}: {model.metadata.get('general.name', '')} ({model.file_type})")
        print(f"| configuration | pp{a.n_prompt} t/s | all on is faster by |")
        print("| --- | ---: | ---: |")
        for cfg, vals in results.items():
            med = statistics.median(vals)
            print(f"| {cfg} | {med:.1f} | {base / med:.2f}x |")
        model.close()
    print(f"# load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
