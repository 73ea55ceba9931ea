"""`ggraph quantize`: llama-quantize's per-tensor rules, GGUF round trips, error paths.

End-to-end tests run per file type; the rule tests are pure Python.
"""
import gguf
import numpy as np
import pytest

import ggraph as gg
from ggraph.cli import main
from ggraph.tensor import bf16_to_f32
from ggraph.tools import quantize as qt

E, F, V = 256, 512, 64          # rows of 256: every k-quant fits without a fallback
LLAMA = [("token_embd.weight", (V, E)), ("blk.0.attn_norm.weight", (E,)), ("blk.0.attn_q.weight", (E, E)),
         ("blk.0.attn_k.weight", (E // 2, E)), ("blk.0.attn_v.weight", (E // 2, E)),
         ("blk.0.attn_output.weight", (E, E)), ("blk.0.ffn_norm.weight", (E,)),
         ("blk.0.ffn_gate.weight", (F, E)), ("blk.0.ffn_up.weight", (F, E)), ("blk.0.ffn_down.weight", (E, F)),
         ("output_norm.weight", (E,)), ("output.weight", (V, E))]
TOKENS = ["<unk>", "<s>", "</s>", "a", "b"]


def _has_rows(tname: str) -> bool:
    t = gg.as_type(tname) if tname not in ("F32", "F16") else None
    if t is None:
        return True
    try:
        gg.quantize(np.zeros(t.blck_size, np.float32), t)
        return True
    except gg.GGraphError as e:
        assert "not supported by the C runtime" in str(e)
        return False


def _need(*tnames):
    missing = [t for t in tnames if not _has_rows(t)]
    assert not missing, f"no C rows for {', '.join(missing)} in this build"


def write_gguf(path, tensors, *, arch="llama", n_layer=1, seed=0, dtype=np.float32):
    """A small GGUF with LLaMA-style metadata; returns {name: float32 values as written}."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_block_count(n_layer)
    w.add_embedding_length(E)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(0)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([0.0, -1.0, -2.0, -3.5, -4.25])
    w.add_token_types([2, 3, 3, 1, 1])
    w.add_bos_token_id(1)
    values = {}
    for name, shape in tensors:
        x = (rng.standard_normal(shape) * 0.5).astype(np.float32)
        if len(shape) == 1:
            w.add_tensor(name, x)                       # norms stay F32 as converters write them
        elif dtype == "bf16":
            bits = (x.view(np.uint32) >> 16).astype(np.uint16)
            x = bf16_to_f32(bits)
            w.add_tensor(name, bits.view(np.uint8), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            x = x.astype(dtype).astype(np.float32)
            w.add_tensor(name, x.astype(dtype))
        values[name] = x
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return values


def run(capsys, *argv):
    rc = main(["quantize", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def tensor_values(t) -> np.ndarray:
    """A tensor read back from GGUF as float32 (rows, ne0)."""
    name = gguf.GGMLQuantizationType(int(t.tensor_type)).name
    ne0 = int(t.shape[0])
    if name in ("F32", "F16"):
        return np.asarray(t.data, np.float32).reshape(-1, ne0)
    return gg.dequantize(np.asarray(t.data).reshape(-1, t.data.shape[-1]), name)


def fields(reader):
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


# per file type: (tensor name -> expected type) for the 1-layer LLaMA file above
def expected_types(ft: str) -> dict:
    base = {"Q4_K": "Q4_K"}.get(ft, ft)
    exp = {n: ("F32" if len(s) == 1 else base) for n, s in LLAMA}
    exp["output.weight"] = "Q8_0" if ft == "Q8_0" else "Q6_K"
    if ft == "Q4_K":                                 # = Q4_K_M: one layer is "first/last eighth"
        exp["blk.0.attn_v.weight"] = exp["blk.0.ffn_down.weight"] = "Q6_K"
    return exp


FTYPE_IDS = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q8_0": 7, "Q4_K": 15, "Q6_K": 18}


@pytest.mark.parametrize("ft", list(FTYPE_IDS))
def test_quantize_llama_file(tmp_path, capsys, ft):
    exp = expected_types(ft)
    _need(*set(exp.values()))
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    vals = write_gguf(src, LLAMA)
    rc, out, err = run(capsys, src, dst, ft.lower(), "--threads", 2)
    assert rc == 0, err
    assert f"{FTYPE_IDS[ft]})" in out and "MiB" in out and "smaller" in out
    r_in, r_out = gguf.GGUFReader(src), gguf.GGUFReader(dst)
    # tensors: same order and shapes, the chosen types, values == dequantize(quantize(original))
    assert [t.name for t in r_out.tensors] == [n for n, _ in LLAMA]
    for t_in, t in zip(r_in.tensors, r_out.tensors):
        tname = gguf.GGMLQuantizationType(int(t.tensor_type)).name
        assert tname == exp[t.name], t.name
        assert list(t.shape) == list(t_in.shape)
        x = vals[t.name].reshape(-1, int(t.shape[0]))
        if tname == "F32":
            np.testing.assert_array_equal(tensor_values(t), x)
        else:
            q = gg.quantize(x, tname)
            np.testing.assert_array_equal(np.asarray(t.data).reshape(q.shape), q)   # same bytes
            np.testing.assert_array_equal(tensor_values(t), gg.dequantize(q, tname))
    # metadata: all keys and the tokenizer unchanged, in order, file type set
    f_in, f_out = fields(r_in), fields(r_out)
    assert f_out.pop("general.file_type") == FTYPE_IDS[ft]
    assert f_out.pop("general.quantization_version") == 2
    f_in.pop("general.file_type")
    assert f_out == f_in
    assert list(f_out) == list(f_in)
    assert f_out["tokenizer.ggml.tokens"] == TOKENS
    assert not (tmp_path / "out.gguf.part").exists()


@pytest.mark.parametrize("dtype", [np.float16, "bf16"], ids=["F16", "BF16"])
def test_half_precision_inputs(tmp_path, capsys, dtype):
    _need("Q8_0")
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    vals = write_gguf(src, LLAMA, dtype=dtype)
    assert run(capsys, src, dst, "Q8_0")[0] == 0
    for t in gguf.GGUFReader(dst).tensors:
        x = vals[t.name].reshape(-1, int(t.shape[0]))
        if x.shape[0] > 1:
            np.testing.assert_array_equal(np.asarray(t.data).reshape(x.shape[0], -1), gg.quantize(x, "Q8_0"))


def test_chunks_and_threads_give_the_same_bytes(tmp_path, capsys, monkeypatch):
    _need("Q8_0")
    src = tmp_path / "in.gguf"
    write_gguf(src, LLAMA)
    assert run(capsys, src, tmp_path / "a.gguf", "q8_0", "--threads", 1)[0] == 0
    monkeypatch.setattr(qt, "CHUNK_ELEMS", 700)       # 2-row chunks, a short last chunk
    assert run(capsys, src, tmp_path / "b.gguf", "q8_0", "--threads", 3)[0] == 0
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_tied_embeddings_and_f16_fallback(tmp_path, capsys):
    _need("Q8_0")
    # no output.weight: token_embd is the output (Q8_0 stays Q8_0); rows of 48 fit no block -> F16
    tensors = [(n, s) for n, s in LLAMA if n != "output.weight"] + [("blk.0.odd.weight", (3, 48))]
    src, dst = tmp_path / "in.gguf", tmp_path / "out.gguf"
    vals = write_gguf(src, tensors)
    rc, out, err = run(capsys, src, dst, "Q8_0")
    assert rc == 0, err
    assert "blk.0.odd.weight: rows of 48" in out and "using F16" in out
    got = {t.name: t for t in gguf.GGUFReader(dst).tensors}
    assert gguf.GGMLQuantizationType(int(got["token_embd.weight"].tensor_type)).name == "Q8_0"
    odd = got["blk.0.odd.weight"]
    assert odd.tensor_type == gguf.GGMLQuantizationType.F16
    np.testing.assert_array_equal(np.asarray(odd.data), vals["blk.0.odd.weight"].astype(np.float16))


def test_quantized_input(tmp_path, capsys):
    _need("Q8_0")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    q = gg.quantize(x, "Q8_0")
    src = tmp_path / "q8.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", x[0])
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    # already in the target type: copied byte for byte
    assert run(capsys, src, tmp_path / "same.gguf", "q8_0")[0] == 0
    t = gguf.GGUFReader(tmp_path / "same.gguf").tensors[0]
    np.testing.assert_array_equal(np.asarray(t.data), q)
    # another target: refused without --allow-requantize
    rc, out, err = run(capsys, src, tmp_path / "q4.gguf", "Q4_0")
    assert rc == 1 and "already quantized (Q8_0)" in err and "--allow-requantize" in err
    assert not (tmp_path / "q4.gguf").exists() and not (tmp_path / "q4.gguf.part").exists()
    if _has_rows("Q4_0"):
        assert run(capsys, src, tmp_path / "q4.gguf", "Q4_0", "--allow-requantize")[0] == 0
        t = gguf.GGUFReader(tmp_path / "q4.gguf").tensors[0]
        np.testing.assert_array_equal(np.asarray(t.data), gg.quantize(gg.dequantize(q, "Q8_0"), "Q4_0"))


def _one_line_error(rc, out, err, match):
    assert rc == 1
    assert err.startswith("ggraph: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert match in err


def test_errors(tmp_path, capsys):
    src = tmp_path / "in.gguf"
    write_gguf(src, LLAMA[:3])
    _one_line_error(*run(capsys, tmp_path / "missing.gguf", tmp_path / "o.gguf", "q8_0"), "no such file")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all, just text" * 4)
    _one_line_error(*run(capsys, junk, tmp_path / "o.gguf", "q8_0"), "not a readable GGUF file")
    _one_line_error(*run(capsys, src, tmp_path / "o.gguf", "q9_9"), "unknown quantization type 'q9_9'")
    _one_line_error(*run(capsys, src, src, "q8_0"), "must not overwrite the input")
    _one_line_error(*run(capsys, src, tmp_path / "o.gguf", "q8_0", "--threads", 0), "--threads")
    # a block type ggraph does not know (IQ4_NL) cannot be requantized
    iq = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(iq), "llama")
    w.add_tensor("blk.0.attn_q.weight", np.zeros((2, 36), np.uint8), raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    _one_line_error(*run(capsys, iq, tmp_path / "o.gguf", "q8_0"), "is IQ4_NL: cannot requantize")
    assert not (tmp_path / "o.gguf").exists()


def test_type_names():
    assert qt.parse_file_type("q4_k").name == "Q4_K_M"
    assert qt.parse_file_type("Q4_K_s").id == 14
    assert qt.parse_file_type("q8_0").id == 7 and qt.parse_file_type("7").name == "Q8_0"
    with pytest.raises(gg.GGraphError, match="unknown quantization type"):
        qt.parse_file_type("iq2_xxs")


# ---- the rules, without C rows ----

def plan(ft, tensors, **kw):
    p = qt.Planner(qt.parse_file_type(ft), **kw)
    p.n_attn_v = sum(qt._category(n) == "attn_v" for n, _ in tensors)
    p.tied = "output.weight" not in [n for n, _ in tensors]
    return {n: p.target(n, list(reversed(s)), "F32") for n, s in tensors}, p


def test_rules_plain_types():
    for ft in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q6_K"):
        got, _ = plan(ft, LLAMA, n_layer=1)
        assert got == expected_types(ft), ft
    # not quantized: 1-d, norms stored 2-d, MoE routers, names not ending in "weight"
    got, _ = plan("Q4_0", [("a_norm.weight", (4, 64)), ("blk.0.ffn_gate_inp.weight", (8, 64)),
                           ("blk.0.attn_q.bias", (4, 64)), ("x.weight", (1, 64)), ("y.weight", (2, 64))])
    assert got == {"a_norm.weight": "F32", "blk.0.ffn_gate_inp.weight": "F32", "blk.0.attn_q.bias": "F32",
                   "x.weight": "F32", "y.weight": "Q4_0"}


def test_rules_tied_output_and_fallbacks():
    # Qwen2-0.5B-like rows of 896 (= 28 * 32, not a multiple of 256), tied embeddings
    qwen = [("token_embd.weight", (64, 896)), ("blk.0.attn_q.weight", (896, 896)),
            ("blk.0.ffn_down.weight", (896, 4864))]
    got, p = plan("Q4_0", qwen, n_layer=1)
    assert got["token_embd.weight"] == "Q8_0"          # Q6_K for the output, falls back to Q8_0
    assert got["blk.0.attn_q.weight"] == "Q4_0" and p.n_fallback == 1
    got, _ = plan("Q4_K", qwen, n_layer=1)
    assert got == {"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q5_0", "blk.0.ffn_down.weight": "Q6_K"}
    got, _ = plan("Q5_K_S", qwen, n_layer=1)
    assert got["blk.0.attn_q.weight"] == "Q5_1"
    got, _ = plan("Q2_K", [("blk.0.attn_q.weight", (8, 96))], n_layer=1)
    assert got["blk.0.attn_q.weight"] == "Q4_0"
    got, _ = plan("Q4_0", [("output.weight", (8, 80))], n_layer=1)        # 80 % 32: Q8_0, then F16
    assert got["output.weight"] == "F16"
    got, _ = plan("Q4_0", [("output.weight", (8, 256))], n_layer=1, pure=True)
    assert got["output.weight"] == "Q4_0"                                # --pure: no output bump


def test_rules_k_mixes_by_layer():
    n = 24
    layers = [(f"blk.{i}.{k}.weight", (256, 256)) for i in range(n) for k in ("attn_v", "ffn_down", "attn_output")]
    more = [i for i in range(n) if i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2]
    assert more == [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]
    got, _ = plan("Q4_K_M", layers, n_layer=n)
    assert [i for i in range(n) if got[f"blk.{i}.attn_v.weight"] == "Q6_K"] == more
    assert [i for i in range(n) if got[f"blk.{i}.ffn_down.weight"] == "Q6_K"] == more
    assert {got[f"blk.{i}.attn_output.weight"] for i in range(n)} == {"Q4_K"}
    got, _ = plan("Q4_K_S", layers, n_layer=n)
    assert [i for i in range(n) if got[f"blk.{i}.attn_v.weight"] == "Q5_K"] == [0, 1, 2, 3]
    assert [i for i in range(n) if got[f"blk.{i}.ffn_down.weight"] == "Q5_K"] == [0, 1, 2]
    got, _ = plan("Q3_K_M", layers, n_layer=n)
    assert got["blk.0.attn_v.weight"] == "Q5_K" and got["blk.2.attn_v.weight"] == "Q4_K"
    assert got["blk.0.ffn_down.weight"] == "Q5_K" and got["blk.5.ffn_down.weight"] == "Q4_K"
    assert got["blk.5.attn_output.weight"] == "Q4_K"
    got, _ = plan("Q2_K", layers, n_layer=n, n_gqa=4)
    assert got["blk.3.attn_v.weight"] == "Q4_K" and got["blk.3.ffn_down.weight"] == "Q3_K"
    # 8 experts: attn_k / attn_v in Q8_0, attn_output in Q5_K
    got, _ = plan("Q4_K_M", [("blk.0.attn_k.weight", (256, 256)), ("blk.0.attn_v.weight", (256, 256)),
                             ("blk.0.attn_output.weight", (256, 256))], n_layer=1, n_expert=8)
    assert list(got.values()) == ["Q8_0", "Q8_0", "Q5_K"]
