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
            __m256 acc = _mm256_setzero_ps();
            for (; i + 8 <= ne00; i += 8) {
                const __m256 v = _mm256_loadu_ps(xr + i);
                acc = _mm256_fmadd_ps(v, v, acc);
            }
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

def _norm_ms(g: gg.Graph) -> tuple[float, int]:
    """Milliseconds and node count of the norm work in g's last profile."""
    ms, n = 0.0, 0
    for node, ns in zip(g.nodes, g.node_ns):
        # the fused node, or the pair: rms_norm and the mul by the weight that follows it
        if node.op == "rms_norm" or gg.ops.registry.op_label(node) == "custom:rms_norm_mul" or (
                node.op == "mul" and node.src[0].op == "rms_norm"):
            ms += ns / 1e6
            n += 1
    return ms, n


def profile_smollm2(n_threads: int = 2, n_prompt: int = 64, reps: int = 30) -> dict:
    """Per-graph norm time and whole-graph time, unfused vs fused, for a decode
    step and a prefill of n_prompt tokens (best of `reps` profiled computes)."""
    from ggraph.model_files import open_model
    from ggraph.session import Session

    model = open_model("smollm2")
    results = {}
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, model.hparams.n_vocab, size=n_prompt).tolist()
    logits = {}

    def nudged(x, w, eps):
        # the unfused pair with its result moved by ~2 ulp: how much the logits
        # move for a change that small (Q8 activation rounding amplifies it)
        return gg.mul(gg.scale(gg.rms_norm(x, eps), 1 + 2**-22), w)

    s = Session(model, n_ctx=256, n_threads=n_threads, norm=nudged)
    logits["nudged"] = np.array(s.eval(prompt, all_logits=False), copy=True)
    for label, norm in (("unfused", None), ("fused", rms_norm_mul)):
        s = Session(model, n_ctx=256, n_threads=n_threads, norm=norm)
        logits[label] = np.array(s.eval(prompt, all_logits=False), copy=True)
        for step, g in (("decode", s.decode_graph()), ("prefill", s._plan(n_prompt, s.cache.n_kv(), None).graph)):
            best_total, best_norm, n_norm = float("inf"), float("inf"), 0
            for _ in range(reps):
                g.compute(n_threads, profile=True)
                total = float(g.node_ns.sum()) / 1e6
                nm, n_norm = _norm_ms(g)
                best_total, best_norm = min(best_total, total), min(best_norm, nm)
            results[(label, step)] = (best_total, best_norm, n_norm)
    results["logits"] = {
        "fused_vs_unfused": float(np.abs(logits["fused"] - logits["unfused"]).max()),
        "nudged_vs_unfused": float(np.abs(logits["nudged"] - logits["unfused"]).max()),
        "max_abs": float(np.abs(logits["unfused"]).max()),
        "same_argmax": int(np.argmax(logits["fused"])) == int(np.argmax(logits["unfused"])),
    }
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=64, help="prefill length for the profile")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    k = kernel()
    print(f"kernel: {k.path} ({'from the cache' if k.cached else 'compiled now'})")
    check()
    print("check_op: the fused kernel matches numpy (shapes, layouts, edge values, 1/2/4 threads, simd+scalar)")
    if args.check_only:
        return 0
    r = profile_smollm2(args.threads, args.prompt, args.reps)
    lg = r.pop("logits")
    print(f"SmolLM2-135M, {args.threads} threads, best of {args.reps} profiled computes:")
    print(f"  {'graph':<22s} {'norm nodes':>10s} {'norm ms':>9s} {'graph ms':>9s}")
    for (label, step), (total, nm, n) in r.items():
        print(f"  {step + ' ' + label:<22s} {n:>10d} {nm:>9.3f} {total:>9.3f}")
    print(f"  last-token logits: max |fused - unfused| = {lg['fused_vs_unfused']:.3g}, same argmax: "
          f"{lg['same_argmax']}; for scale, the unfused norm nudged by 2^-22 moves them by "
          f"{lg['nudged_vs_unfused']:.3g} (max |logit| {lg['max_abs']:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
