"""Soak: greedy generation of 100,000 tokens in one context, resident memory every 10,000.

    python benchmarks/soak.py                          # SmolLM2, 100k tokens, n_ctx 512
    python benchmarks/soak.py --tokens 20000 --check   # a second run must give the same tokens
    python benchmarks/soak.py --json soak.json --svg docs/img/soak_rss.svg

Context shift: ggraph's KV cache stores K already rotated by RoPE at its position
and has no K-shift (re-rotation) op, so cells cannot be moved to new positions.
When the context is full the soak keeps the first n_keep tokens and the newest
half of the rest, clears the cache and evaluates those tokens again (a prefill
batch) at positions 0..n-1. That is exactly what the model would compute for
that shortened text: correct with our cache, at the price of one prefill per
n_ctx/2 generated tokens.

Prints one line per 10,000 tokens: tokens, RSS (MiB), tokens/s, running hash
of the generated ids. Exit status 1 if RSS grows by more than --max-growth MiB
after the first report (warm-up) or if --check finds a difference.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_parts() -> str:
    """Anonymous and file-backed resident memory: mapped weights are file pages the kernel may drop."""
    parts = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0][3:].lower()] = int(line.split()[1]) / 1024
    return ", ".join(f"{k} {v:.1f}" for k, v in parts.items())


def soak(session, prompt_ids, n_tokens, n_keep, every, log=print):
    """Generates n_tokens greedily with context shifts; returns (ids, [(tokens, rss, tok/s, hash)])."""
    n_ctx = session.n_ctx
    if len(prompt_ids) >= n_ctx // 2:
        raise SystemExit(f"prompt of {len(prompt_ids)} tokens is too long for n_ctx {n_ctx}")
    n_keep = min(n_keep, len(prompt_ids))
    session.reset()
    window = list(prompt_ids)             # the tokens the cache holds, in order
    logits = session.eval(window)
    out = np.empty(n_tokens, dtype=np.int32)
    h = hashlib.sha256()
    reports, n_shifts = [], 0
    t0 = time.perf_counter()
    for i in range(n_tokens):
        tok = int(np.argmax(logits))
        out[i] = tok
        window.append(tok)
        if (i + 1) % every == 0:
            h.update(out[i + 1 - every:i + 1].tobytes())
            dt = time.perf_counter() - t0
            rep = (i + 1, round(rss_mib(), 1), round(every / dt, 1), h.hexdigest()[:16])
            reports.append(rep)
            log(f"{rep[0]:>7} tokens  RSS {rep[1]:8.1f} MiB  {rep[2]:6.1f} tok/s  shifts {n_shifts}  "
                f"hash {rep[3]}  ({rss_parts()} MiB)", flush=True)
            t0 = time.perf_counter()
        if i + 1 == n_tokens:
            break
        if session.cache.n_used() >= n_ctx:
            # keep the first n_keep tokens and the newest half of the rest, then re-evaluate them
            rest = window[n_keep:]
            window = window[:n_keep] + rest[len(rest) - (n_ctx - n_keep) // 2:]
            session.reset()
            logits = session.eval(window)
            n_shifts += 1
        else:
            logits = session.eval([tok])
    return out, reports


def svg_plot(reports, path, title):
    """A small hand-written SVG line chart of RSS against tokens."""
    w, h, ml, mr, mt, mb = 480, 240, 60, 20, 30, 40
    xs = [r[0] for r in reports]
    ys = [r[1] for r in reports]
    lo, hi = min(ys), max(ys)
    pad = max(5.0, (hi - lo) * 0.5)
    lo, hi = lo - pad, hi + pad
    X = lambda x: ml + (w - ml - mr) * x / max(xs)                 # noqa: E731
    Y = lambda y: mt + (h - mt - mb) * (1 - (y - lo) / (hi - lo))  # noqa: E731
    pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(xs, ys))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
             f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
             f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>']
    for x, y in zip(xs, ys):
        parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="#1f77b4"/>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{ml - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for x in xs[1::2] if len(xs) > 6 else xs:
        parts.append(f'<text x="{X(x):.1f}" y="{h - mb + 15}" text-anchor="middle">{x // 1000}k</text>')
    parts.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 6}" text-anchor="middle">generated tokens</text>')
    parts.append(f'<text x="14" y="{(mt + h - mb) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(mt + h - mb) / 2})">RSS (MiB)</text>')
    parts.append("</svg>\n")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=10_000)
    ap.add_argument("-c", "--n-ctx", type=int, default=512)
    ap.add_argument("--n-keep", type=int, default=32, help="prompt tokens kept at every context shift")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--prompt", default="Tell me a very long story about a lighthouse keeper.")
    ap.add_argument("--check", action="store_true", help="run twice and compare the tokens")
    ap.add_argument("--max-growth", type=float, default=16.0, help="allowed RSS growth after warm-up, MiB")
    ap.add_argument("--json")
    ap.add_argument("--svg")
    ap.add_argument("--plot-log", metavar="LOG", help="only draw --svg from the report lines of an earlier run's output")
    a = ap.parse_args(argv)
    if a.plot_log:
        import re
        with open(a.plot_log) as f:
            reports = [(int(m[1]), float(m[2]), float(m[3]), m[4]) for m in
                       re.finditer(r"^\s*(\d+) tokens\s+RSS\s+([\d.]+) MiB\s+([\d.]+) tok/s.*hash (\w+)", f.read(), re.M)]
        svg_plot(reports, a.svg, f"ggraph soak: {a.model}, n_ctx {a.n_ctx}, RSS every {a.every} tokens")
        return 0
    from ggraph.model_files import open_model
    from ggraph.session import Session
    model = open_model(a.model)
    s = Session(model, n_ctx=a.n_ctx, n_threads=a.threads)
    tok = s.tokenizer
    tmpl = s.chat_template
    text = tmpl.render([{"role": "user", "content": a.prompt}]) if tmpl is not None else a.prompt
    prompt = tok.encode(text)
    print(f"soak: {a.model}, {a.tokens} tokens, n_ctx {s.n_ctx}, n_keep {a.n_keep}, prompt {len(prompt)} tokens, "
          f"threads {s.n_threads}; RSS at start {rss_mib():.1f} MiB", flush=True)
    t0 = time.perf_counter()
    ids, reports = soak(s, prompt, a.tokens, a.n_keep, a.every)
    total = time.perf_counter() - t0
    growth = reports[-1][1] - reports[0][1] if reports else 0.0
    print(f"done in {total:.0f} s; RSS after warm-up {reports[0][1]:.1f} MiB, at the end {reports[-1][1]:.1f} MiB "
          f"(growth {growth:+.1f} MiB)")
    ok = growth <= a.max_growth
    same = None
    if a.check:
        ids2, _ = soak(s, prompt, a.tokens, a.n_keep, a.every, log=lambda *x, **k: None)
        same = bool(np.array_equal(ids, ids2))
        print("second run:", "identical tokens" if same else
              f"DIFFERENT from token {int(np.argmax(ids != ids2))}")
        ok = ok and same
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "tokens": a.tokens, "n_ctx": s.n_ctx, "n_keep": a.n_keep,
                       "threads": s.n_threads, "seconds": round(total, 1),
                       "reports": [dict(zip(("tokens", "rss_mib", "tok_per_s", "hash"), r)) for r in reports],
                       "rss_growth_mib": round(growth, 1), "deterministic": same}, f, indent=1)
    if a.svg:
        svg_plot(reports, a.svg, f"ggraph soak: {a.model}, n_ctx {s.n_ctx}, RSS every {a.every} tokens")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
