"""300 mutated copies of a real GGUF (default SmolLM2): how many load, how many are refused.

    python benchmarks/gguf_fuzz.py                    # 300 cases, 15 of each mutation kind
    python benchmarks/gguf_fuzz.py --cases 40 --model qwen2.5-coder-0.5b --json out.json

Each case writes one mutant to a temporary file, loads it and, when it loads,
evaluates one token in a Session and round-trips a text through the tokenizer
(ggraph.tools.gguf_fuzz.run_case). Prints the counts per mutation kind and the
slowest case next to the time it takes to read the file once. Exit status 1 if
any case ends in anything but "loaded" or a GGraphError, or takes longer than
--time-bound seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-bound", type=float, default=120.0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from ggraph.model_files import resolve_model
    from ggraph.tools.gguf_fuzz import MUTATIONS, GGUFDoc, mutate, run_case
    src = resolve_model(a.model)
    doc = GGUFDoc.read(src)
    counts, per_kind, failures, slowest, times = Counter(), {}, [], (0.0, ""), {"loaded": [], "refused": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mutant.gguf")
        t0 = time.perf_counter()
        with open(src, "rb") as f:                      # the yardstick: reading the file once
            while f.read(1 << 24):
                pass
        t_read = time.perf_counter() - t0
        for i in range(a.cases):
            kind = MUTATIONS[i % len(MUTATIONS)]
            seed = a.seed * 1_000_003 + i
            data = mutate(doc, kind, random.Random(seed))
            with open(path, "wb") as f:
                f.write(data)
            t0 = time.perf_counter()
            outcome, detail = run_case(path, time_bound=a.time_bound)
            dt = time.perf_counter() - t0
            counts[outcome] += 1
            times.get(outcome, []).append(dt)
            per_kind.setdefault(kind, Counter())[outcome] += 1
            if outcome == "failed":
                failures.append({"kind": kind, "seed": seed, "detail": detail})
                print(f"FAILED {kind} seed {seed}: {detail}", flush=True)
            if outcome == "refused" and dt > slowest[0]:
                slowest = (dt, f"{kind} seed {seed}: {detail[:160]}")
            if (i + 1) % 10 == 0:
                print(f"{i + 1} cases: {dict(counts)}", flush=True)
    print(f"\n{a.model}: tried {a.cases}, loaded {counts['loaded']}, refused (GGraphError) {counts['refused']}, "
          f"crashes/hangs/other exceptions {counts['failed']}")
    for kind in MUTATIONS:
        if kind in per_kind:
            c = per_kind[kind]
            print(f"  {kind:15s} loaded {c['loaded']:3d}  refused {c['refused']:3d}  failed {c['failed']}")
    med = {k: sorted(v)[len(v) // 2] if v else 0.0 for k, v in times.items()}
    print(f"median time per case: refused {med['refused']:.2f} s, loaded (with one token evaluated) "
          f"{med['loaded']:.2f} s; slowest refusal {slowest[0]:.2f} s ({slowest[1]}); reading the file once "
          f"takes {t_read:.2f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "cases": a.cases, "counts": dict(counts),
                       "per_kind": {k: dict(v) for k, v in per_kind.items()}, "failures": failures,
                       "slowest_refusal_s": round(slowest[0], 3),
                       "median_s": {k: round(v, 3) for k, v in med.items()}, "read_file_s": round(t_read, 3)}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
