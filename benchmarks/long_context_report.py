"""Tables and a heat-map SVG from the JSON files of benchmarks/long_context_eval.sh.

    python benchmarks/long_context_report.py /tmp/infllm-eval docs/img/passkey.svg
prints the markdown tables and writes the picture.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# (file stem, label), in the order of the table
RUNS = [
    ("smollm2_full_1k", "SmolLM2 full, 1k"),
    ("smollm2_full_16k", "SmolLM2 full, 16k"),
    ("smollm2_window_16k", "SmolLM2 window 1024, 16k"),
    ("smollm2_infllm_16k", "SmolLM2 infllm 1024, 16k"),
    ("smollm2_infllm_16k_scoreweighted", "SmolLM2 infllm 1024, 16k, score-weighted"),
    ("smollm2_infllm_32k", "SmolLM2 infllm 1024, 32k"),
    ("qwen_full_8k", "Qwen2.5-Coder-0.5B full, 8k"),
    ("qwen_infllm_8k", "Qwen2.5-Coder-0.5B infllm 1024, 8k"),
    ("qwen_infllm_16k", "Qwen2.5-Coder-0.5B infllm 1024, 16k"),
]


def _read(f: Path):
    if not f.exists() or f.stat().st_size == 0:
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def load(outdir: Path):
    """One entry per run; STEM_seedN.json files (more keys, other seeds) are merged into STEM."""
    runs = []
    for stem, label in RUNS:
        parts = [d for d in [_read(outdir / f"{stem}.json")] + [_read(f) for f in
                 sorted(outdir.glob(f"{stem}_seed*.json"))] if d is not None]
        if not parts:
            continue
        merged = {}
        for d in parts:
            for r in d["rows"]:
                m = merged.setdefault(r["depth"], {"depth": r["depth"], "correct": 0, "trials": 0, "answers": []})
                m["correct"] += r["correct"]
                m["trials"] += r["trials"]
                m["answers"] += r["answers"]
        speeds = [d["speeds"][0] for d in parts]
        sp = {k: sum(x[k] for x in speeds) / len(speeds) for k in ("decode_t_s", "prefill_t_s")}
        runs.append((label, {"rows": sorted(merged.values(), key=lambda r: r["depth"]), "speeds": [sp]}))
    return runs


def table(runs) -> str:
    depths = sorted({r["depth"] for _, d in runs for r in d["rows"]})
    lines = ["| run | " + " | ".join(f"depth {x:g}" for x in depths) + " | all | decode t/s | prefill t/s |",
             "|---|" + "---:|" * (len(depths) + 3)]
    for label, d in runs:
        by = {r["depth"]: r for r in d["rows"]}
        cells = [f"{by[x]['correct']}/{by[x]['trials']}" if x in by else "-" for x in depths]
        ok = sum(r["correct"] for r in d["rows"])
        n = sum(r["trials"] for r in d["rows"])
        sp = d["speeds"][0]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * ok / n:.0f}% | "
                     f"{sp['decode_t_s']:.1f} | {sp['prefill_t_s']:.0f} |")
    return "\n".join(lines)


def svg(runs) -> str:
    depths = sorted({r["depth"] for _, d in runs for r in d["rows"]})
    cw, ch, left, top = 70, 26, 330, 40
    w, h = left + cw * len(depths) + 20, top + ch * len(runs) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="16" font-weight="bold">passkey accuracy by depth of the key</text>']
    for j, x in enumerate(depths):
        out.append(f'<text x="{left + j * cw + cw / 2}" y="{top - 6}" text-anchor="middle">{x:g}</text>')
    for i, (label, d) in enumerate(runs):
        y = top + i * ch
        out.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">{label}</text>')
        by = {r["depth"]: r for r in d["rows"]}
        for j, x in enumerate(depths):
            if x not in by:
                continue
            a = by[x]["correct"] / by[x]["trials"]
            red, green = int(230 - 170 * a), int(80 + 120 * a)
            out.append(f'<rect x="{left + j * cw}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                       f'fill="rgb({red},{green},90)"/>')
            out.append(f'<text x="{left + j * cw + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" '
                       f'fill="white">{by[x]["correct"]}/{by[x]["trials"]}</text>')
    out.append(f'<text x="{left}" y="{h - 8}" fill="#555">cells: keys found / keys hidden; '
               f'depth 0 = start of the text, 1 = end</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    outdir = Path(argv[0] if argv else "/tmp/infllm-eval")
    runs = load(outdir)
    if not runs:
        print(f"no results in {outdir}", file=sys.stderr)
        return 1
    print(table(runs))
    for name in ("decode_smollm2.md", "decode_qwen.md"):
        f = outdir / name
        if f.exists():
            print()
            print(f.read_text().strip())
    if len(argv) > 1:
        Path(argv[1]).write_text(svg(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
