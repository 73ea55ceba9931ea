"""What the SIMD fast paths buy: prefill and decode with each path on and off, in the same run.

    python benchmarks/kernel_paths.py                  # SmolLM2 (and Qwen2.5 if installed), 1 thread
    python benchmarks/kernel_paths.py -t 2 -r 5        # 2 threads, 5 alternating repetitions
    python benchmarks/kernel_paths.py --depth 2048     # decode after a longer prompt

Paths (ggraph.backend.ffi.set_kernel_path; results are correct either way):
  qgemm     mul_mat of a block type with 4+ columns by unpacked 16-row weight tiles and
            AVX-512 VNNI (csrc/qgemm.c); off: one vec_dot per output
  qgemv     mul_mat of a block type with one column: two blocks (a quarter of a K
            super-block) per AVX-512 VNNI instruction, bit-identical to vec_dot for the
            32-value types (csrc/qgemv.c); off: one vec_dot per row
  fa_tiled  flash_attn_ext's AVX-512 block kernels (csrc/ops_attention.c): with 8+ q rows,
            blocks of 64 K/V rows against 64 query vectors; with fewer (decode), 8 K rows
            at a time for all heads of a group; off: the AVX2 row-at-a-time loop

Two measurements per model:
  pp    N prompt tokens in one batch from an empty cache (configurations: qgemm, fa_tiled)
  tg    G one-token steps after a prompt of --depth tokens (configurations: qgemv, fa_tiled);
        the depth makes attention's share realistic: with an empty cache it is near zero.
Each repetition runs every configuration once, so they share the machine's conditions; the
tables print medians and the speed-up of "all on" over each. 1 thread by default: on a shared
machine, 2 spinning threads stall at every barrier when another process takes a core, which
swamps what the kernels change.
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

PP_CONFIGS = {"all on": {}, "qgemm off": {"qgemm": False}, "fa_tiled off": {"fa_tiled": False},
              "both off": {"qgemm": False, "fa_tiled": False}}
TG_CONFIGS = {"all on": {}, "qgemv off": {"qgemv": False}, "fa_tiled off": {"fa_tiled": False},
              "both off": {"qgemv": False, "fa_tiled": False}}


def pp_tokens_per_s(s: Session, ids: np.ndarray) -> float:
    s.reset()
    t0 = time.perf_counter()
    s.eval(ids)
    return len(ids) / (time.perf_counter() - t0)


def tg_tokens_per_s(s: Session, prompt: np.ndarray, gen: np.ndarray) -> float:
    """G single-token evals after the prompt (the prompt's prefill is not timed)."""
    s.reset()
    s.eval(prompt)
    t0 = time.perf_counter()
    for t in gen:
        s.eval([int(t)])
    return len(gen) / (time.perf_counter() - t0)


def run_configs(configs: dict, measure) -> dict:
    results = {}
    for cfg, switches in configs.items():
        for path, on in switches.items():
            set_kernel_path(path, on)
        try:
            results[cfg] = measure()
        finally:
            for path in switches:
                set_kernel_path(path, True)
    return results


def table(title: str, results: dict) -> None:
    base = statistics.median(results["all on"])
    print(f"| configuration | {title} t/s | all on is faster by |")
    print("| --- | ---: | ---: |")
    for cfg, vals in results.items():
        med = statistics.median(vals)
        print(f"| {cfg} | {med:.1f} | {base / med:.2f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", help="model name or .gguf path (repeatable)")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=512, help="pp test tokens (0: skip)")
    ap.add_argument("-n", "--n-gen", type=int, default=64, help="tg test steps (0: skip)")
    ap.add_argument("--depth", type=int, default=512, help="prompt tokens before the tg steps")
    a = ap.parse_args()
    if not gg.simd_available():
        ap.error("this build has no SIMD paths to compare")
    installed = [m.name for m in list_models() if m.status != "not installed"]
    models = a.model or installed
    print(f"# {cpu_model()}; ggraph SIMD {gg.simd_features()}; {a.threads} thread(s); "
          f"pp{a.n_prompt}, tg{a.n_gen} at depth {a.depth}; median of {a.reps} repetitions; "
          f"load average {load_average()}")
    for name in models:
        model = open_model(name)
        n_ctx = max(1024, a.n_prompt, a.depth + a.n_gen + 1)
        s = Session(model, n_ctx=n_ctx, n_threads=a.threads, n_batch=max(a.n_prompt, 512))
        rng = np.random.default_rng(0)
        vocab = model.hparams.n_vocab
        ids = rng.integers(0, vocab, a.n_prompt).astype(np.int32)
        prompt = rng.integers(0, vocab, a.depth).astype(np.int32)
        gen = rng.integers(0, vocab, a.n_gen).astype(np.int32)
        pp = {c: [] for c in PP_CONFIGS}
        tg = {c: [] for c in TG_CONFIGS}
        if a.n_prompt:
            pp_tokens_per_s(s, ids)                      # warm-up: graphs built, pages in
        if a.n_gen:
            tg_tokens_per_s(s, prompt, gen[:4])
        for _ in range(a.reps):
            if a.n_prompt:
                for cfg, v in run_configs(PP_CONFIGS, lambda: pp_tokens_per_s(s, ids)).items():
                    pp[cfg].append(v)
            if a.n_gen:
                for cfg, v in run_configs(TG_CONFIGS, lambda: tg_tokens_per_s(s, prompt, gen)).items():
                    tg[cfg].append(v)
        print(f"\n## {name}: {model.metadata.get('general.name', '')} ({model.file_type})")
        if a.n_prompt:
            table(f"pp{a.n_prompt}", pp)
        if a.n_gen:
            print()
            table(f"tg{a.n_gen} at depth {a.depth}", tg)
        model.close()
    print(f"# load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
