"""DOT pictures of graphs, in the spirit of ggml_graph_dump_dot.

Op nodes are boxes coloured by op (or by their share of the profiled time),
with name, op, type and ne on each; leafs are ellipses, inputs and params
marked; edges name the source slot. Rendering to SVG/PNG/PDF goes through
the `graphviz` package, which needs the system `dot` program.
"""
from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

from .errors import GGraphError
from .ops.registry import op_label
from .tensor import Tensor

RENDERED = {".svg", ".png", ".pdf"}


# one colour per op family, so a picture reads at a glance (ops of other families: hashed)
FAMILY_COLORS = {
    "matmul": "#a8c8f0", "norm": "#f5e08c", "softmax": "#f7b883", "rope": "#c9b3e6",
    "attention": "#f29b9b", "elementwise": "#b8e0b0", "copy": "#a9ddd6", "select": "#f2b6d9",
    "layout": "#d9d2b0", "reduce": "#c2d69b", "view": "#e4e4e4", "custom": "#ffc7a1",
}


def _op_color(op: str) -> str:
    from .ops.registry import OPS
    fam = OPS[op].family if op in OPS else ""
    if fam in FAMILY_COLORS:
        return FAMILY_COLORS[fam]
    h = int(hashlib.md5(op.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hls_to_rgb(h, 0.82, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _heat_color(frac: float) -> str:
    # white (no time) to red (all of it)
    frac = max(0.0, min(1.0, frac))
    g = int(255 * (1 - frac) ** 0.7)
    return f"#ff{g:02x}{g:02x}"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("{", "\\{").replace("}", "\\}") \
            .replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def _ne(t: Tensor) -> str:
    return "[" + ", ".join(str(x) for x in t.ne[:t.n_dims]) + "]"


def to_dot(graph, color_by: str = "op", max_label: int = 24) -> str:
    if color_by not in ("op", "time"):
        raise GGraphError(f"dump_dot: color_by must be 'op' or 'time', got {color_by!r}")
    if color_by == "time" and graph.node_ns is None:
        raise GGraphError("dump_dot: color_by='time' needs a profile: run compute(profile=True) first")
    total = float(graph.node_ns.sum()) if graph.node_ns is not None else 0.0
    out = ["digraph G {", "  newrank = true;", "  rankdir = TB;",
           '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
    ids = {}
    read = {s.id for n in graph.nodes for s in n.src if s is not None}
    for i, t in enumerate(graph.leafs):
        ids[t.id] = f"l{i}"
        name = _esc((t.name or f"#{t.id}")[:max_label])
        kind = "param" if t.is_param else "input" if t.is_input else "leaf"
        style = "filled,bold" if (t.is_param or t.is_input) else "filled"
        fill = "#fff2b3" if t.is_param else "#d8f0d8" if t.is_input else "#eeeeee"
        label = f"{name} | {kind} | {t.type} {_ne(t)}"
        out.append(f'  l{i} [shape=record, style="{style}", fillcolor="{fill}", label="{label}"];')
    for i, n in enumerate(graph.nodes):
        ids[n.id] = f"n{i}"
        name = _esc((n.name or f"node_{i}")[:max_label])
        op = _esc(op_label(n).upper())
        extra = ""
        if color_by == "time":
            frac = graph.node_ns[i] / total if total else 0.0
            fill = _heat_color(frac)
            extra = f" | {graph.node_ns[i] / 1e6:.3f} ms ({100 * frac:.1f}%)"
        else:
            fill = _op_color(n.op)
        shape = "record"
        # results (flagged, or read by no other node) are drawn bold
        style = "filled,bold" if (n.is_output or n.id not in read) else "filled"
        if n.view_src is not None and n.op in ("view", "reshape", "permute", "transpose"):
            style += ",dashed"
        label = f"{{{name} | {{{op} | {n.type} {_ne(n)}}}{extra}}}"
        out.append(f'  n{i} [shape={shape}, style="{style}", fillcolor="{fill}", label="{label}"];')
    for n in graph.nodes:
        for k, s in enumerate(n.src):
            if s is None or s.id not in ids:
                continue
            out.append(f'  {ids[s.id]} -> {ids[n.id]} [label="src{k}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def dump_dot(graph, path, color_by: str = "op", max_label: int = 24) -> str:
    path = Path(path)
    text = to_dot(graph, color_by=color_by, max_label=max_label)
    suffix = path.suffix.lower()
    if suffix in RENDERED:
        try:
            import graphviz
        except ImportError:
            raise GGraphError("rendering needs the `graphviz` Python package: pip install graphviz") from None
        try:
            data = graphviz.Source(text).pipe(format=suffix[1:])
        except graphviz.ExecutableNotFound:
            raise GGraphError("rendering needs Graphviz's `dot` program: apt-get install graphviz "
                              "(or dump to a .dot file)") from None
        except graphviz.CalledProcessError as e:
            raise GGraphError(f"graphviz failed to render {path}: {e}") from None
        path.write_bytes(data)
    else:
        path.write_text(text)
    return str(path)
