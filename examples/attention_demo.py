"""Builds one self-attention head as a ggraph graph, computes it, checks it
against numpy and writes its picture (attention.dot, attention.svg).

    python examples/attention_demo.py [--out DIR] [--threads N]
"""
import argparse
import os
import shutil
import sys

import numpy as np

import ggraph as gg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".", help="folder for attention.dot / attention.svg")
    ap.add_argument("--threads", type=int, default=gg.default_threads())
    args = ap.parse_args()

    d_model, d_head, n_tokens = 64, 32, 8
    rng = np.random.default_rng(0)
    ctx = gg.Context("demo")
    # weights: numpy shape (out, in) -> ne = [in, out], as ggml stores them
    wq = ctx.from_numpy(rng.standard_normal((d_head, d_model)).astype(np.float32) / 8, name="wq")
    wk = ctx.from_numpy(rng.standard_normal((d_head, d_model)).astype(np.float32) / 8, name="wk")
    wv = ctx.from_numpy(rng.standard_normal((d_head, d_model)).astype(np.float32) / 8, name="wv")
    norm_w = ctx.from_numpy(np.ones(d_model, np.float32), name="attn_norm.weight")
    x = ctx.new_tensor(gg.F32, [d_model, n_tokens], name="x").set_input()
    mask = ctx.new_tensor(gg.F32, [n_tokens, n_tokens], name="kq_mask").set_input()

    cur = gg.mul(gg.rms_norm(x, 1e-6), norm_w).set_name("attn_norm")
    q = gg.mul_mat(wq, cur).set_name("q")                  # ne = [d_head, n_tokens]
    k = gg.mul_mat(wk, cur).set_name("k")
    v = gg.mul_mat(wv, cur).set_name("v")
    kq = gg.mul_mat(k, q).set_name("kq")                   # ne = [n_kv, n_tokens]
    kq = gg.soft_max_ext(kq, mask, 1.0 / np.sqrt(d_head), 0.0).set_name("kq_soft_max")
    out = gg.mul_mat(gg.cont(gg.transpose(v)), kq).set_name("kqv")   # ne = [d_head, n_tokens]

    g = gg.Graph("attention")
    g.build_forward_expand(out)
    xs = rng.standard_normal((n_tokens, d_model)).astype(np.float32)
    causal = np.triu(np.full((n_tokens, n_tokens), -np.inf, np.float32), 1)
    x.set(xs)
    mask.set(causal)
    g.compute(n_threads=args.threads)                 # the first compute plans and starts threads
    g.compute(n_threads=args.threads, profile=True)   # the same graph again, timed node by node
    g.print()

    # the same in numpy
    h = xs / np.sqrt((xs * xs).mean(-1, keepdims=True) + 1e-6)
    qn, kn, vn = h @ wq.numpy().T, h @ wk.numpy().T, h @ wv.numpy().T
    s = qn @ kn.T / np.sqrt(d_head) + causal
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    err = float(np.abs(out.numpy() - p @ vn).max())
    print(f"max |ggraph - numpy| = {err:.2e}")

    os.makedirs(args.out, exist_ok=True)
    print("wrote", g.dump_dot(os.path.join(args.out, "attention.dot")))
    if shutil.which("dot"):
        print("wrote", g.dump_dot(os.path.join(args.out, "attention.svg")))
    else:
        print("Graphviz's dot is not installed: skipped attention.svg")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
