"""A fused rms_norm-times-weight kernel as a gg.CKernel: written in a Python
string, checked with ggraph.testing.check_op, swapped into the LLaMA builder
and profiled against the unfused pair (rms_norm, then mul) on SmolLM2.

    python examples/custom_rms_norm.py              # check it, then profile on SmolLM2
    python examples/custom_rms_norm.py --check-only

docs/custom-ops.md walks through it.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import ggraph as gg

SOURCE = r"""
#include "ggraph_kernel.h"

/* dst = x / sqrt(mean(x^2) + eps) * w, row by row.
 * x: F32 rows with unit element stride; w: one F32 row of x's width;
 * eps: a float behind the userdata pointer. */
void rms_norm_mul(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *x = dst->src[0], *w = dst->src[1];
    GG_TENSOR_BINARY_LOCALS
    const float eps = *(const float *)gg_custom_userdata(dst);
    const float *wr = (const float *)w->data;
    const int64_t nr = ne01 * ne02 * ne03;

    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const int64_t i1 = ir % ne01, i2 = (ir / ne01) % ne02, i3 = ir / (ne01 * ne02);
        const float *xr = (const float *)((const char *)x->data + i1 * nb01 + i2 * nb02 + i3 * nb03);
        float *yr = (float *)((char *)dst->data + i1 * nb1 + i2 * nb2 + i3 * nb3);
        int64_t i = 0;
        float sum = 0.0f;
#if GG_AVX2
        if (p->use_simd) {
            /* four accumulators: one FMA chain would wait on its own latency */
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (; i + 32 <= ne00; i += 32) {
                const __m256 v0 = _mm256_loadu_ps(xr + i), v1 = _mm256_loadu_ps(xr + i + 8);
                const __m256 v2 = _mm256_loadu_ps(xr + i + 16), v3 = _mm256_loadu_ps(xr + i + 24);
                a0 = _mm256_fmadd_ps(v0, v0, a0);
                a1 = _mm256_fmadd_ps(v1, v1, a1);
                a2 = _mm256_fmadd_ps(v2, v2, a2);
                a3 = _mm256_fmadd_ps(v3, v3, a3);
            }
            for (; i + 8 <= ne00; i += 8) {
                const __m256 v = _mm256_loadu_ps(xr + i);
                a0 = _mm256_fmadd_ps(v, v, a0);
            }
            const __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            s = _mm_hadd_ps(s, s);
            s = _mm_hadd_ps(s, s);
            sum = _mm_cvtss_f32(s);
        }
#endif
        for (; i < ne00; i++) sum += xr[i] * xr[i];
        const float scale = 1.0f / sqrtf(sum / (float)ne00 + eps);

        i = 0;
#if GG_AVX2
        if (p->use_simd) {
            const __m256 vs = _mm256_set1_ps(scale);
            for (; i + 8 <= ne00; i += 8) {
                _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vs),
                                                       _mm256_loadu_ps(wr + i)));
            }
        }
#endif
        for (; i < ne00; i++) yr[i] = xr[i] * scale * wr[i];
    }
}
"""

_kernel = None


def kernel() -> gg.CKernel:
    """The compiled kernel (compiled once per machine, then loaded from the cache)."""
    global _kernel
    if _kernel is None:
        _kernel = gg.CKernel(SOURCE, "rms_norm_mul")
    return _kernel


def rms_norm_mul(x: gg.Tensor, w: gg.Tensor, eps: float) -> gg.Tensor:
    """rms_norm(x, eps) * w as one node; the same checks the kernel relies on."""
    if x.type is not gg.F32 or w.type is not gg.F32:
        raise gg.GGraphError(f"rms_norm_mul: x and w must be F32, got {x.type} and {w.type}")
    if x.nb[0] != 4 or w.nb[0] != 4:
        raise gg.GGraphError("rms_norm_mul: rows of x and w must be contiguous (nb[0] == 4)")
    if w.ne[0] != x.ne[0] or w.nrows() != 1:
        raise gg.GGraphError(f"rms_norm_mul: w must be one row of x's width {x.ne[0]}, got ne={list(w.ne)}")
    eps_box = np.array([eps], dtype=np.float32)       # the kernel reads eps through userdata
    return gg.map_custom2(x, w, kernel(), userdata=eps_box, type=gg.F32)


def reference(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w.reshape(-1)


def check(max_examples: int = 25) -> None:
    """The kernel against numpy: shapes, layouts, edge values, 1/2/4 threads, SIMD and scalar."""
    from hypothesis import settings, strategies as st
    from ggraph.testing import ROW_LAYOUTS, shapes, tensors

    @st.composite
    def inputs(draw):
        ne = draw(shapes(max_dims=3, max_side=40))
        x = draw(tensors(type=gg.F32, shape=ne, layouts=ROW_LAYOUTS))
        w = draw(tensors(type=gg.F32, shape=[ne[0]], contiguous=True))
        return x, w, draw(st.sampled_from([1e-6, 1e-5]))

    gg.testing.check_op(lambda ctx, x, w, eps: rms_norm_mul(x, w, eps), reference,
                        strategies=inputs(), rtol=2e-5, atol=1e-5,
                        settings=settings(max_examples=max_examples, deadline=None))


# ---- SmolLM2: the fused kernel in the LLaMA builder, profiled against the pair ----

NORM_GROUPS = ("norms (rms_norm + mul)", "custom:rms_norm_mul")


def profile_smollm2(n_threads: int = 2, n_prompt: int = 64, reps: int = 20) -> dict:
    """A decode step (after an n_prompt-token prompt) and a prefill micro-batch of
    n_prompt tokens, unfused vs fused, through ggraph's own profiler (the one
    behind `ggraph bench --profile`): per-graph norm time (fastest profiled run),
    unprofiled compute time (median) and node counts."""
    from ggraph.model_files import open_model
    from ggraph.session import Session
    from ggraph.tools import perf

    model = open_model("smollm2")
    results = {}
    prompt = np.random.default_rng(0).integers(0, model.hparams.n_vocab, size=n_prompt).tolist()
    logits = {}

    def nudged(x, w, eps):
        # the unfused pair with its result moved by ~2 ulp: how much the logits
        # move for a change that small (Q8 activation rounding amplifies it)
        return gg.mul(gg.scale(gg.rms_norm(x, eps), 1 + 2**-22), w)

    for label, norm in (("nudged", nudged), ("unfused", None), ("fused", rms_norm_mul)):
        s = Session(model, n_ctx=256, n_threads=n_threads, norm=norm)
        logits[label] = np.array(s.eval(prompt), copy=True)
        if label == "nudged":
            continue
        dec, _ = perf.profile_decode(s, n_prompt, 8, reps, np.random.default_rng(1))
        pre = perf.profile_prefill(s, n_prompt, reps, np.random.default_rng(2))
        for step, prof in (("decode", dec), ("prefill", pre)):
            norm_rows = [r for r in prof.rows if r.group in NORM_GROUPS]
            results[(label, step)] = {
                "norm_ms": sum(r.ms for r in norm_rows), "norm_nodes": sum(r.nodes for r in norm_rows),
                "compute_ms": prof.unprofiled_ms, "nodes": prof.n_nodes}
    results["logits"] = {
        "fused_vs_unfused": float(np.abs(logits["fused"] - logits["unfused"]).max()),
        "nudged_vs_unfused": float(np.abs(logits["nudged"] - logits["unfused"]).max()),
        "max_abs": float(np.abs(logits["unfused"]).max()),
        "same_argmax": int(np.argmax(logits["fused"])) == int(np.argmax(logits["unfused"])),
    }
    return results


def microbench(n_tokens: int, n_threads: int, reps: int = 200, n_norms: int = 61, n_embd: int = 576) -> dict:
    """The norms alone: a chain of n_norms norms over [n_embd, n_tokens] (SmolLM2's
    61 per graph), unfused (2 nodes each) vs fused (1 node); the fastest and the
    median compute of `reps`, in ms."""
    import statistics
    rng = np.random.default_rng(0)
    ctx = gg.Context()
    x0 = ctx.from_numpy(rng.standard_normal((n_tokens, n_embd)).astype(np.float32))
    w = ctx.from_numpy((1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))
    out = {}
    for label in ("unfused", "fused"):
        x = x0
        for _ in range(n_norms):
            x = gg.mul(gg.rms_norm(x, 1e-5), w) if label == "unfused" else rms_norm_mul(x, w, 1e-5)
        g = gg.Graph().build_forward_expand(x)
        g.compute(n_threads)
        times = []
        for _ in range(reps):
            g.compute(n_threads)
            times.append(g.last_compute_ns / 1e6)
        out[label] = (min(times), statistics.median(times), len(g.nodes))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=64, help="prefill length for the profile")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    k = kernel()
    print(f"kernel: {k.path} ({'from the cache' if k.cached else 'compiled now'})")
    check()
    print("check_op: the fused kernel matches numpy (shapes, layouts, edge values, 1/2/4 threads, simd+scalar)")
    if args.check_only:
        return 0
    print(f"the norms alone: a chain of 61 norms over [576, n_tokens], fastest / median of 200 computes:")
    for n_tokens in (1, args.prompt):
        for nt in sorted({1, args.threads}):
            mb = microbench(n_tokens, nt)
            print("  " + f"n_tokens={n_tokens:<3d} threads={nt}: " + ", ".join(
                f"{label} ({n} nodes) {lo:.3f} / {med:.3f} ms" for label, (lo, med, n) in mb.items()))
    r = profile_smollm2(args.threads, args.prompt, args.reps)
    lg = r.pop("logits")
    print(f"SmolLM2-135M Q4_1, {args.threads} threads, {args.prompt}-token prompt, {args.reps} reps "
          f"(norm: fastest profiled run; compute: median unprofiled):")
    print(f"  {'graph':<18s} {'nodes':>6s} {'norm nodes':>10s} {'norm ms':>9s} {'compute ms':>11s}")
    for (label, step), v in r.items():
        print(f"  {step + ' ' + label:<18s} {v['nodes']:>6d} {v['norm_nodes']:>10d} {v['norm_ms']:>9.3f} "
              f"{v['compute_ms']:>11.3f}")
    print(f"  last-token logits: max |fused - unfused| = {lg['fused_vs_unfused']:.3g}, same argmax: "
          f"{lg['same_argmax']}; for scale, the unfused norm nudged by 2^-22 moves them by "
          f"{lg['nudged_vs_unfused']:.3g} (max |logit| {lg['max_abs']:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
