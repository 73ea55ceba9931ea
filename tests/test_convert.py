"""`ggraph convert`: tiny random Hugging Face LLaMA / Qwen2 checkpoints to GGUF, read back
with gguf.GGUFReader: tensor names, ne, types, metadata and values."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import gguf  # noqa: E402

import ggraph as gg  # noqa: E402
from ggraph.cli import main  # noqa: E402
from ggraph.tools import convert as cv  # noqa: E402
from hf_reference import LLAMA, QWEN2, TINY, gguf_tensor_f32, make_checkpoint  # noqa: E402

N_LAYER, N_EMBD, N_HEAD, N_KV = (TINY[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                                    "num_key_value_heads"))
N_FF, HEAD_DIM = TINY["intermediate_size"], TINY["hidden_size"] // TINY["num_attention_heads"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(arch, tied) -> (dir, HF state dict as float32 numpy)."""
    out = {}
    for arch in (LLAMA, QWEN2):
        for tied in (False, True):
            d = str(tmp_path_factory.mktemp(f"{arch}_{int(tied)}"))
            m = make_checkpoint(arch, d, seed=1 + tied, tied=tied, tokenizer=(not tied), vocab_size=320)
            out[arch, tied] = d, {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()}
    return out


def _fields(r):
    return {k: f.contents() for k, f in r.fields.items()}


def expected_tensors(arch, tied):
    names = ["token_embd.weight"]
    for i in range(N_LAYER):
        b = f"blk.{i}."
        names += [b + n for n in ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight")]
        if arch == QWEN2:
            names += [b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias"]
        names += [b + n for n in ("attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
                                  "ffn_down.weight")]
    names.append("output_norm.weight")
    if not tied:
        names.append("output.weight")
    return names


HF_OF = {v: k for k, v in cv._GLOBAL_MAP.items()}


def hf_name(g):
    if g in HF_OF:
        return HF_OF[g]
    _, i, rest = g.split(".", 2)
    return f"model.layers.{i}." + {v: k for k, v in cv._LAYER_MAP.items()}[rest]


def source_values(arch, g, sd):
    """What the file should hold for GGUF tensor g: the HF tensor, q/k interleaved for llama."""
    a = sd[hf_name(g)]
    if arch == LLAMA and ".attn_q." in g:
        a = cv.rope_interleave(a, N_HEAD)
    elif arch == LLAMA and ".attn_k." in g:
        a = cv.rope_interleave(a, N_KV)
    return a


@pytest.mark.parametrize("arch", [LLAMA, QWEN2])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("ftype", ["f32", "f16", "q8_0"])
def test_convert_roundtrip(checkpoints, tmp_path, capsys, arch, tied, ftype):
    d, sd = checkpoints[arch, tied]
    out = str(tmp_path / "m.gguf")
    assert main(["convert", d, out, "--type", ftype]) == 0
    assert "converted" in capsys.readouterr().out
    r = gguf.GGUFReader(out)
    f = _fields(r)
    # metadata
    assert f["general.architecture"] == arch
    assert f["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[ftype]
    expect = {"block_count": N_LAYER, "context_length": 256, "embedding_length": N_EMBD,
              "feed_forward_length": N_FF, "attention.head_count": N_HEAD, "attention.head_count_kv": N_KV,
              "rope.dimension_count": HEAD_DIM, "vocab_size": 320}
    for k, v in expect.items():
        assert f[f"{arch}.{k}"] == v, k
    assert f[f"{arch}.rope.freq_base"] == (10000.0 if arch == LLAMA else 1e6)
    assert f[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5, rel=1e-6)
    assert f"{arch}.attention.key_length" not in f           # head_dim is hidden / heads
    # names (in order), ne, types, values
    names = [t.name for t in r.tensors]
    assert names == expected_tensors(arch, tied)
    for t in r.tensors:
        src = source_values(arch, t.name, sd)
        assert [int(x) for x in t.shape] == list(reversed(src.shape)), t.name     # ne = numpy shape reversed
        typ = t.tensor_type.name
        got = gguf_tensor_f32(t)
        if src.ndim == 1 or ftype == "f32":
            assert typ == "F32", t.name
            np.testing.assert_array_equal(got, src, err_msg=t.name)
        elif ftype == "f16":
            assert typ == "F16", t.name
            np.testing.assert_array_equal(got, src.astype(np.float16).astype(np.float32), err_msg=t.name)
        else:
            assert typ == "Q8_0", t.name             # all rows here are multiples of 32
            # the blocks are exactly what gg.quantize makes of the (interleaved) source ...
            np.testing.assert_array_equal(np.asarray(t.data).reshape(-1), gg.quantize(src, gg.Q8_0).reshape(-1))
            # ... and decode to it within half a step of each 32-block's scale d = absmax / 127,
            # plus the scale's own F16 rounding (|q| <= 127 times a relative 2^-11: 0.062 d)
            blocks = src.reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127
            err = np.abs(got.reshape(-1, 32) - blocks)
            assert np.all(err <= (0.5 + 127 * 2.0**-11) * step * (1 + 1e-3)), t.name


def test_llama_qk_permutation_is_within_heads(checkpoints, tmp_path):
    """The llama q/k rows in the file are each head's rows reordered (halves -> pairs);
    undoing it gives HF's rows back, and q/k only are touched."""
    d, sd = checkpoints[LLAMA, False]
    out = str(tmp_path / "m.gguf")
    cv.convert(d, out, "f32", log=open(os.devnull, "w"))
    w = {t.name: gguf_tensor_f32(t) for t in gguf.GGUFReader(out).tensors}
    q_hf = sd["model.layers.0.self_attn.q_proj.weight"]
    k_hf = sd["model.layers.0.self_attn.k_proj.weight"]
    np.testing.assert_array_equal(cv.rope_deinterleave(w["blk.0.attn_q.weight"], N_HEAD), q_hf)
    np.testing.assert_array_equal(cv.rope_deinterleave(w["blk.0.attn_k.weight"], N_KV), k_hf)
    assert not np.array_equal(w["blk.0.attn_q.weight"], q_hf)
    half = HEAD_DIM // 2
    for h in range(N_HEAD):          # row 2i of head h is HF row i, row 2i+1 is HF row i + d/2
        base = h * HEAD_DIM
        for i in range(half):
            np.testing.assert_array_equal(w["blk.0.attn_q.weight"][base + 2 * i], q_hf[base + i])
            np.testing.assert_array_equal(w["blk.0.attn_q.weight"][base + 2 * i + 1], q_hf[base + half + i])
    np.testing.assert_array_equal(w["blk.0.attn_v.weight"], sd["model.layers.0.self_attn.v_proj.weight"])


def test_rope_interleave_inverse():
    x = np.arange(4 * 8 * 3, dtype=np.float32).reshape(32, 3)
    y = cv.rope_interleave(x, 4)
    np.testing.assert_array_equal(y[:8, 0], x[[0, 4, 1, 5, 2, 6, 3, 7], 0])
    np.testing.assert_array_equal(cv.rope_deinterleave(y, 4), x)
    b = np.arange(16.0)
    np.testing.assert_array_equal(cv.rope_deinterleave(cv.rope_interleave(b, 2), 2), b)


def test_tokenizer_metadata(checkpoints, tmp_path):
    d, _ = checkpoints[QWEN2, False]
    out = str(tmp_path / "m.gguf")
    cv.convert(d, out, "f16", log=open(os.devnull, "w"))
    f = _fields(gguf.GGUFReader(out))
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    vocab = tj["model"]["vocab"]
    assert f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.pre"] == "default"          # a home-made tokenizer: not one llama.cpp knows
    toks, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(toks) == len(types) == 320
    for s, i in vocab.items():
        assert toks[i] == s
    assert types[:3] == [3, 3, 3]                        # the special tokens are CONTROL
    assert types[3] == 1
    n = len(vocab)
    assert toks[n:] == [f"[PAD{i}]" for i in range(n, 320)] and set(types[n:]) == {5}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert f["tokenizer.ggml.merges"] == merges
    assert f["tokenizer.ggml.bos_token_id"] == vocab["<|im_start|>"]
    assert f["tokenizer.ggml.eos_token_id"] == vocab["<|im_end|>"]
    assert f["tokenizer.ggml.padding_token_id"] == vocab["<|endoftext|>"]
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.chat_template"].startswith("{% for m in messages %}")
    # no tokenizer files: no tokenizer keys
    d2, _ = checkpoints[QWEN2, True]
    out2 = str(tmp_path / "m2.gguf")
    cv.convert(d2, out2, "f16", log=open(os.devnull, "w"))
    assert not any(k.startswith("tokenizer.") for k in _fields(gguf.GGUFReader(out2)))


def test_pre_tokenizer_recognised_by_hash(checkpoints, monkeypatch):
    """The pre-tokenizer name comes from the probe text's ids, as in llama.cpp."""
    import hashlib

    from tokenizers import Tokenizer
    d, _ = checkpoints[LLAMA, False]
    p = os.path.join(d, "tokenizer.json")
    h = hashlib.sha256(str(Tokenizer.from_file(p).encode(cv._CHKTXT).ids).encode()).hexdigest()
    assert cv._pre_tokenizer_name(p) == "default"
    monkeypatch.setitem(cv._PRE_BY_HASH, h, "smollm")
    assert cv._pre_tokenizer_name(p) == "smollm"


def test_q8_0_falls_back_to_f16_for_odd_rows(tmp_path):
    d = str(tmp_path / "hf")
    make_checkpoint(LLAMA, d, intermediate_size=80)        # ffn_down rows: 80, not a multiple of 32
    out = str(tmp_path / "m.gguf")
    cv.convert(d, out, "q8_0", log=open(os.devnull, "w"))
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_down.weight"] == "F16"
    assert types["blk.0.ffn_up.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"


def test_bf16_and_sharded_checkpoints(tmp_path):
    import torch
    d1, d2 = str(tmp_path / "bf16"), str(tmp_path / "sharded")
    m = make_checkpoint(QWEN2, d1, dtype=torch.bfloat16)
    make_checkpoint(QWEN2, d2, dtype=torch.bfloat16, shard_size="40KB")
    assert os.path.isfile(os.path.join(d2, "model.safetensors.index.json"))
    assert len([f for f in os.listdir(d2) if f.endswith(".safetensors")]) > 1
    outs = []
    for d in (d1, d2):
        outs.append(str(tmp_path / (os.path.basename(d) + ".gguf")))
        cv.convert(d, outs[-1], "f32", log=open(os.devnull, "w"))
    w1 = {t.name: gguf_tensor_f32(t) for t in gguf.GGUFReader(outs[0]).tensors}
    w2 = {t.name: gguf_tensor_f32(t) for t in gguf.GGUFReader(outs[1]).tensors}
    assert list(w1) == list(w2)
    sd = m.state_dict()
    for g in w1:
        np.testing.assert_array_equal(w1[g], w2[g])
        np.testing.assert_array_equal(w1[g], sd[hf_name(g)].numpy())     # bf16 -> f32 is exact


# ---- errors: one line on stderr, exit code 1 ----

def _cli_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("ggraph: error: ") and err.count("\n") == 1, err
    return err


def test_errors(checkpoints, tmp_path, capsys):
    d, _ = checkpoints[LLAMA, True]
    out = str(tmp_path / "o.gguf")
    assert "no such directory" in _cli_error(capsys, ["convert", str(tmp_path / "nope"), out])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json" in _cli_error(capsys, ["convert", str(empty), out])
    # unsupported architecture
    bad = tmp_path / "gpt2"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    assert "unsupported architecture 'GPT2LMHeadModel'" in _cli_error(capsys, ["convert", str(bad), out])
    # broken config.json
    (bad / "config.json").write_text("{not json")
    assert "not valid JSON" in _cli_error(capsys, ["convert", str(bad), out])
    # config but no weights
    (bad / "config.json").write_text(open(os.path.join(d, "config.json")).read())
    assert "no model.safetensors" in _cli_error(capsys, ["convert", str(bad), out])
    # a missing tensor
    from safetensors.numpy import load_file, save_file
    t = load_file(os.path.join(d, "model.safetensors"))
    del t["model.layers.1.mlp.up_proj.weight"]
    save_file(t, str(bad / "model.safetensors"))
    assert "missing tensor model.layers.1.mlp.up_proj.weight" in _cli_error(capsys, ["convert", str(bad), out])
    # an unexpected one, a wrong shape
    t["model.layers.1.mlp.up_proj.weight"] = np.zeros((N_FF, N_EMBD), np.float32)
    t["model.layers.0.self_attn.foo.weight"] = np.zeros(3, np.float32)
    save_file(t, str(bad / "model.safetensors"))
    assert "unexpected tensor 'model.layers.0.self_attn.foo.weight'" in _cli_error(capsys, ["convert", str(bad), out])
    del t["model.layers.0.self_attn.foo.weight"]
    t["model.layers.1.mlp.up_proj.weight"] = np.zeros((N_FF, N_EMBD + 1), np.float32)
    save_file(t, str(bad / "model.safetensors"))
    assert "has shape [96, 65], expected [96, 64]" in _cli_error(capsys, ["convert", str(bad), out])
    # a truncated safetensors file
    raw = open(os.path.join(d, "model.safetensors"), "rb").read()
    (bad / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    assert "truncated" in _cli_error(capsys, ["convert", str(bad), out])
    # unsupported rope scaling
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
    (bad / "config.json").write_text(json.dumps(cfg))
    assert "rope scaling 'yarn' is not supported" in _cli_error(capsys, ["convert", str(bad), out])
    assert not os.path.exists(out) and not os.path.exists(out + ".part")
    # an unknown --type is argparse's error (exit 2)
    with pytest.raises(SystemExit) as e:
        main(["convert", d, out, "--type", "q4_0"])
    assert e.value.code == 2
