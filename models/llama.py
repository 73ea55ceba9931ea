"""LLaMA (and SmolLM2): pre-norm decoder blocks, GQA attention with RoPE in
normal mode, SwiGLU FFN, RMS norms, optionally tied output embeddings."""
from __future__ import annotations

import ggraph as gg

from .common import GraphInputs, build_attn, build_ffn, build_linear, build_norm, cb
from .infllm import build_attn_infllm


def build_graph(model, cache, inp: GraphInputs, *, flash_attn: bool = True,
                biases: bool = False, norm=None) -> gg.Tensor:
    """Logits [n_vocab, n_outputs] for one micro-batch (n_outputs = n_tokens when
    inp.out_ids is None). `biases`: Q/K/V have bias vectors (Qwen2). `norm`:
    norm(x, w, eps) in place of rms_norm times w (default: the two ops)."""
    hp, w = model.hparams, model.tensors
    n_tokens, hd = inp.n_tokens, hp.head_dim

    def bias(name):
        return w[name] if biases else None

    inpL = cb(gg.get_rows(w["token_embd.weight"], inp.tokens), "inp_embd")     # [n_embd, n_tokens]
    for il in range(hp.n_layer):
        p = f"blk.{il}."
        cur = cb(build_norm(inpL, w[p + "attn_norm.weight"], hp.rms_eps, norm), "attn_norm", il)
        q = cb(build_linear(w[p + "attn_q.weight"], cur, bias(p + "attn_q.bias")), "Qcur", il)
        k = cb(build_linear(w[p + "attn_k.weight"], cur, bias(p + "attn_k.bias")), "Kcur", il)
        v = cb(build_linear(w[p + "attn_v.weight"], cur, bias(p + "attn_v.bias")), "Vcur", il)
        q = gg.reshape_3d(q, hd, hp.n_head, n_tokens)
        k = gg.reshape_3d(k, hd, hp.n_head_kv, n_tokens)
        v = gg.reshape_3d(v, hd, hp.n_head_kv, n_tokens)
        rope = dict(n_dims=hp.rope_dim, mode=hp.rope_type, n_ctx_orig=hp.n_ctx_train,
                    freq_base=hp.rope_freq_base, freq_scale=hp.rope_freq_scale,
                    ext_factor=0.0, attn_factor=1.0, beta_fast=32.0, beta_slow=1.0)
        if getattr(inp, "infllm", False):
            # window / infllm: keys kept before RoPE, rotated inside (models/infllm.py)
            cur = cb(build_attn_infllm(cache, il, inp, q, k, v, hd, rope), "kqv_out", il)
        else:
            q = cb(gg.rope_ext(q, inp.pos, None, **rope), "Qcur_rope", il)
            k = cb(gg.rope_ext(k, inp.pos, None, **rope), "Kcur_rope", il)
            cur = cb(build_attn(cache, il, inp, q, k, v, hd, flash_attn), "kqv_out", il)
        cur = gg.mul_mat(w[p + "attn_output.weight"], cur)
        if il == hp.n_layer - 1 and inp.out_ids is not None:
            # only the rows whose logits are wanted go on (llama.cpp's inp_out_ids)
            cur = gg.get_rows(cur, inp.out_ids)
            inpL = gg.get_rows(inpL, inp.out_ids)
        ffn_inp = cb(gg.add(cur, inpL), "ffn_inp", il)
        cur = cb(build_norm(ffn_inp, w[p + "ffn_norm.weight"], hp.rms_eps, norm), "ffn_norm", il)
        cur = build_ffn(cur, w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"], w[p + "ffn_down.weight"], il)
        inpL = cb(gg.add(cur, ffn_inp), "l_out", il)
    cur = cb(build_norm(inpL, w["output_norm.weight"], hp.rms_eps, norm), "result_norm")
    out_w = w["token_embd.weight"] if hp.tied_embeddings else w["output.weight"]
    return cb(gg.mul_mat(out_w, cur), "result_output")
