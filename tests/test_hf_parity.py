"""Logits parity with Hugging Face transformers on the same random weights.

Tiny random LlamaForCausalLM / Qwen2ForCausalLM checkpoints (GQA: 4 query heads, 2 KV
heads; Qwen2 with its q/k/v biases and NeoX rope at freq_base 1e6; one tied, one untied
LLaMA) are converted with `ggraph convert --type f32`; HF computes the logits of a
7-token prompt (every position) and then of 4 decode steps with past_key_values.

- The numpy reference (tests/hf_reference.py: llama.cpp's semantics on the file as
  written: NORMAL rope on the converter's reordered q/k for LLaMA, NEOX for Qwen2) must
  agree to 1e-5 of the logits' scale (max |logit|): HF runs in float32, the reference in
  float64; the measured gap is ~6e-7 of the scale. A reference run in the other rope mode
  must be far off, so the check does see the q/k convention.
- ggraph's Session (loaded with ggraph.gguf_model.load_gguf) must agree to 1e-4 of the
  logits' scale with an F32 KV cache, for flash_attn True and False, for the prompt and
  each decode step; with the default F16 cache to 1e-2 (K, V and, in the kernels, Q and
  the probabilities are rounded to F16: rel. 2^-11 each; F16 rounding of q/k alone moves
  these logits by up to 8e-4 of the scale in the reference).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from ggraph.tools.convert import convert  # noqa: E402
from hf_reference import LLAMA, QWEN2, GGUFReference, hf_logits, make_checkpoint  # noqa: E402

PROMPT = [5, 17, 99, 3, 250, 42, 7]
STEPS = [11, 300, 64, 2]
CASES = [(LLAMA, False), (LLAMA, True), (QWEN2, False)]       # (arch, tied embeddings)

REF_TOL = 1e-5           # numpy float64 reference vs HF float32, relative to max |logit|
SESSION_TOL = 1e-4       # ggraph float32 (F32 KV cache) vs HF float32, relative to max |logit|
SESSION_TOL_F16 = 1e-2   # the same with the default F16 KV cache


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(arch, tied) -> (GGUF path, HF logits [prompt (n, vocab), step1 (vocab,), ...])."""
    out = {}
    for arch, tied in CASES:
        d = str(tmp_path_factory.mktemp(f"hf_{arch}_{int(tied)}"))
        model = make_checkpoint(arch, d, seed=7 + tied, tied=tied, tokenizer=True, vocab_size=320)
        path = os.path.join(d, "model-f32.gguf")
        convert(d, path, "f32", log=open(os.devnull, "w"))
        out[arch, tied] = path, hf_logits(model, PROMPT, STEPS)
    return out


def _rel_err(got, want):
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("arch,tied", CASES)
def test_numpy_reference_matches_hf(models, arch, tied):
    path, want = models[arch, tied]
    ref = GGUFReference(path)
    got = [ref.eval(PROMPT)] + [ref.eval([t])[0] for t in STEPS]
    assert got[0].shape == want[0].shape == (len(PROMPT), 320)
    for i, (g, w) in enumerate(zip(got, want)):
        assert _rel_err(g, w) < REF_TOL, f"step {i}: {_rel_err(g, w):.2e}"


@pytest.mark.parametrize("arch,tied", CASES)
def test_reference_sees_the_rope_convention(models, arch, tied):
    """Rope in the other mode on the same file is far from HF: the q/k layout matters."""
    path, want = models[arch, tied]
    ref = GGUFReference(path)
    ref.neox = not ref.neox
    got = ref.eval(PROMPT)
    assert _rel_err(got[1:], want[0][1:]) > 1e-2      # position 0 has no rotation


@pytest.mark.parametrize("flash_attn", [True, False])
@pytest.mark.parametrize("arch,tied", CASES)
def test_session_matches_hf(models, arch, tied, flash_attn):
    import ggraph as gg
    from ggraph.gguf_model import load_gguf
    from ggraph.session import Session
    path, want = models[arch, tied]
    for kv_type, tol in ((gg.F32, SESSION_TOL), (gg.F16, SESSION_TOL_F16)):
        model = load_gguf(path)
        try:
            s = Session(model, n_ctx=64, flash_attn=flash_attn, kv_type=kv_type)
            got = s.eval(PROMPT, all_logits=True)
            assert got.shape == (len(PROMPT), 320)
            assert _rel_err(got, want[0]) < tol, f"{kv_type} prompt: {_rel_err(got, want[0]):.2e}"
            for i, t in enumerate(STEPS):
                g = s.eval([t])
                assert g.shape == (320,)
                assert _rel_err(g, want[i + 1]) < tol, f"{kv_type} step {i}: {_rel_err(g, want[i + 1]):.2e}"
        finally:
            model.close()
