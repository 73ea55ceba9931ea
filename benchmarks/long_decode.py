"""Decode speed at a context depth, full attention against window/infllm, without
paying for the prefill: the context's cells are marked used with placeholder
values (zeros), so a decode step does exactly the work it would do at that depth
(the values do not change the cost). Speed only: the answers mean nothing.

    python benchmarks/long_decode.py -m smollm2 --ctx 4096,16384,32768 --n-local 1024
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ggraph.infllm import AttnConfig
from ggraph.model_files import open_model
from ggraph.session import Session


def fill(s: Session, n: int) -> None:
    """Pretends n tokens were evaluated."""
    if s._long is None:
        s.cache.occupy(np.arange(n), np.arange(n), np.zeros(n, dtype=np.int64))
        return
    lc, cfg = s._long, s.attn
    lc.clear()
    lc.init_count = min(cfg.n_init, n)
    local = min(cfg.n_local, n - lc.init_count)
    lc.slot_pos[:local] = np.arange(n - local, n)
    if cfg.mode == "infllm":
        lc.n_blocks = (n - lc.init_count - local) // cfg.block_size
        lc.mem.grow(lc.n_blocks)
        lc._plans.clear()
    lc.n_past = n


def decode_speed(s: Session, n_ctx: int, n_steps: int) -> float:
    fill(s, n_ctx - n_steps - 2)
    s.eval([1])
    s.eval([1])                 # graphs built, threads warm
    t0 = time.perf_counter()
    for _ in range(n_steps):
        s.eval([1])
    return n_steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default="smollm2")
    ap.add_argument("--ctx", default="4096,16384,32768")
    ap.add_argument("--modes", default="full,infllm")
    ap.add_argument("--n-local", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    model = open_model(args.model)
    rows = []
    for ctx in [int(x) for x in args.ctx.split(",")]:
        for mode in args.modes.split(","):
            attn = AttnConfig(mode=mode, n_local=args.n_local)
            s = Session(model, n_ctx=ctx, n_threads=args.threads, attn=attn)
            ts = decode_speed(s, ctx, args.steps)
            rows.append({"model": args.model, "ctx": ctx, "mode": mode, "n_local": args.n_local, "decode_t_s": ts})
            print(f"{args.model} ctx {ctx:6d} {mode:7s} {ts:7.2f} tokens/s", file=sys.stderr, flush=True)
            del s
    print("| model | context | " + " | ".join(args.modes.split(",")) + " |")
    print("|---|---:|" + "---:|" * len(args.modes.split(",")))
    for ctx in sorted({r["ctx"] for r in rows}):
        cells = [f"{r['decode_t_s']:.1f}" for r in rows if r["ctx"] == ctx]
        print(f"| {args.model} | {ctx} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
