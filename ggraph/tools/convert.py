"""`ggraph convert HF_DIR OUT.gguf --type f32|f16|q8_0`: a Hugging Face checkpoint to GGUF.

    ggraph convert ./SmolLM2-135M-Instruct smollm2-f16.gguf --type f16

Reads a LlamaForCausalLM or Qwen2ForCausalLM directory (config.json, model.safetensors
or sharded model-0000x-of-0000y.safetensors with model.safetensors.index.json, and
tokenizer.json / tokenizer_config.json / chat_template.jinja when present) and writes a
GGUF file with llama.cpp's conventions (the same file convert_hf_to_gguf.py would write
for these architectures, minus the general.* descriptive keys):

- tensor names: token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
  ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (left out when the
  embeddings are tied); Qwen2's (and LLaMA's with attention_bias) q/k/v biases as
  blk.N.attn_{q,k,v}.bias;
- dims: GGUF ne is the numpy shape reversed, so a torch Linear weight [out, in] is
  written as it is and reads back as ne = [in, out];
- LLaMA's q_proj / k_proj rows (and biases) are reordered within each head so that
  rope in NORMAL mode (rotating adjacent pairs 2i, 2i+1) computes what HF's
  rotate_half (pairs i, i + head_dim/2) does: new row 2i = old row i, new row
  2i+1 = old row i + head_dim/2. The dot products q.k are unchanged because q and k
  get the same reordering, and v is untouched. Qwen2 is written unpermuted: its
  runtime uses NEOX mode, which is rotate_half itself;
- 1-d tensors (norms, biases) stay F32; 2-d weights are F32, F16, or Q8_0 (rows
  that are not a multiple of 32 fall back to F16) as --type says;
- metadata: <arch>.{block_count, context_length, embedding_length,
  feed_forward_length, attention.head_count, attention.head_count_kv,
  attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
  vocab_size}, attention.key_length / value_length when head_dim is not
  hidden/heads, linear rope scaling, general.file_type (0 F32, 1 F16, 7 Q8_0);
- tokenizer (byte-level BPE in tokenizer.json only): tokenizer.ggml.model "gpt2",
  .pre (recognised by the ids of a probe text, as llama.cpp does, else "default"),
  .tokens / .token_type (padded to vocab_size with UNUSED "[PADi]"), .merges,
  bos / eos / unknown / padding ids, add_bos_token, and tokenizer.chat_template.

Tensors are read one at a time from the safetensors files (F32, F16 and BF16, BF16
widened to F32 exactly) and written straight out, so memory stays near the largest
tensor. Errors (no directory, no config.json, an unsupported architecture or rope
scaling, a missing or unexpected tensor, a wrong shape) raise GGraphError.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys

import numpy as np

from ..errors import GGraphError
from ..tensor import bf16_to_f32

ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2"}

# llama_ftype values written to general.file_type
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}

# token types (llama.cpp's llama_token_type)
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE = 1, 2, 3, 4, 5, 6

# HF name inside a layer -> GGUF name inside blk.N
_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.bias": "attn_output.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# tensors some checkpoints carry that the GGUF does not need
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")

# The probe llama.cpp's converter encodes to recognise a BPE pre-tokenizer: the sha256
# of str(list of ids) names it. Only the pre-tokenizers of the architectures converted
# here are listed; anything else is written as "default".
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d"
    "\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 333"
    "3 33333 333333 3333333 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2"
    "\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 ?\u6211\u60f3\u5728apple"
    "\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 "
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!"
    "?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like s"
    "ome tea? We'Ve a'lL")
_PRE_BY_HASH = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",   # Llama 3
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",       # Qwen1.5 / 2 / 2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",       # Qwen3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",      # SmolLM / SmolLM2
}


# ---- reading the checkpoint ----

def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise GGraphError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise GGraphError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise GGraphError(f"{path}: {what} is not a JSON object")
    return data


class SafetensorsFile:
    """One .safetensors file: the header's tensor table, and tensors read one at a
    time as numpy arrays (BF16 widened to F32 here, since numpy has no bfloat16)."""

    _DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}

    def __init__(self, path: str):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise GGraphError(f"{path}: truncated safetensors file (no header)")
                (n,) = struct.unpack("<Q", head)
                if n > min(size - 8, 100 << 20):
                    raise GGraphError(f"{path}: not a safetensors file (header length {n})")
                meta = json.loads(f.read(n))
        except OSError as e:
            raise GGraphError(f"{path}: {e.strerror or e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise GGraphError(f"{path}: not a safetensors file ({e})") from None
        self.data_start = 8 + n
        meta.pop("__metadata__", None)
        self.entries: dict[str, tuple[str, list[int], int, int]] = {}
        for name, info in meta.items():
            try:
                dtype, shape, (b0, b1) = info["dtype"], [int(x) for x in info["shape"]], info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise GGraphError(f"{path}: bad header entry for {name}") from None
            if self.data_start + b1 > size:
                raise GGraphError(f"{path}: truncated (tensor {name} ends past the end of the file)")
            self.entries[name] = (dtype, shape, int(b0), int(b1))

    def shape(self, name: str) -> list[int]:
        return self.entries[name][1]

    def load(self, name: str) -> np.ndarray:
        """The tensor as float32 (F16 / BF16 / F64 widened or narrowed to F32)."""
        dtype, shape, b0, b1 = self.entries[name]
        if dtype not in self._DTYPES:
            raise GGraphError(f"{self.path}: tensor {name} is {dtype}; only F32, F16, BF16 and F64 "
                              f"checkpoints can be converted")
        if dtype != "BF16":
            # safetensors' own numpy loader for the types numpy knows
            from safetensors import safe_open
            with safe_open(self.path, framework="np") as f:
                a = f.get_tensor(name)
            return np.ascontiguousarray(a, dtype=np.float32)
        n = int(np.prod(shape, dtype=np.int64))
        if b1 - b0 != 2 * n:
            raise GGraphError(f"{self.path}: tensor {name}: {b1 - b0} bytes for {n} BF16 values")
        raw = np.fromfile(self.path, dtype="<u2", count=n, offset=self.data_start + b0)
        return bf16_to_f32(raw).reshape(shape)


def _open_checkpoint(hf_dir: str) -> dict[str, SafetensorsFile]:
    """HF tensor name -> the file holding it."""
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    single = os.path.join(hf_dir, "model.safetensors")
    if os.path.isfile(index):
        wm = _read_json(index, "the shard index").get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise GGraphError(f"{index}: no weight_map")
        shards = sorted(set(wm.values()))
    elif os.path.isfile(single):
        shards = ["model.safetensors"]
    else:
        shards = sorted(f for f in os.listdir(hf_dir) if f.endswith(".safetensors"))
        if not shards:
            raise GGraphError(f"{hf_dir}: no model.safetensors, no shard index and no *.safetensors files "
                              f"(PyTorch .bin checkpoints are not supported)")
    where: dict[str, SafetensorsFile] = {}
    for s in shards:
        p = os.path.join(hf_dir, s)
        if not os.path.isfile(p):
            raise GGraphError(f"{p}: shard listed in the index is missing")
        st = SafetensorsFile(p)
        for name in st.entries:
            where[name] = st
    return where


# ---- hyperparameters ----

def _arch_of(config: dict, path: str) -> str:
    archs = config.get("architectures") or []
    for a in archs:
        if a in ARCHS:
            return ARCHS[a]
    if archs:
        raise GGraphError(f"{path}: unsupported architecture {archs[0]!r} "
                          f"(supported: {', '.join(ARCHS)})")
    mt = config.get("model_type")
    if mt in MODEL_TYPES:
        return MODEL_TYPES[mt]
    raise GGraphError(f"{path}: unsupported architecture (no 'architectures', model_type {mt!r})")


def _need(config: dict, key: str, path: str):
    if config.get(key) is None:
        raise GGraphError(f"{path}: missing {key!r}")
    return config[key]


def hparams_from_config(config: dict, path: str = "config.json") -> dict:
    arch = _arch_of(config, path)
    hp = {"arch": arch}
    for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size"):
        v = _need(config, k, path)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise GGraphError(f"{path}: {k} must be a positive integer, got {v!r}")
        hp[k] = v
    hp["num_key_value_heads"] = int(config.get("num_key_value_heads") or hp["num_attention_heads"])
    hp["max_position_embeddings"] = int(config.get("max_position_embeddings") or 2048)
    hp["rms_norm_eps"] = float(config.get("rms_norm_eps", 1e-6))
    head_dim = config.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"]
    hp["head_dim"] = int(head_dim)
    if hp["num_attention_heads"] % hp["num_key_value_heads"]:
        raise GGraphError(f"{path}: {hp['num_attention_heads']} attention heads are not a multiple of "
                          f"{hp['num_key_value_heads']} key/value heads")
    if hp["head_dim"] % 2:
        raise GGraphError(f"{path}: head_dim {hp['head_dim']} is odd; rope needs pairs")
    if config.get("hidden_act", "silu") != "silu":
        raise GGraphError(f"{path}: hidden_act {config.get('hidden_act')!r} is not supported (only silu)")
    if config.get("mlp_bias"):
        raise GGraphError(f"{path}: mlp_bias is not supported")
    # rope: transformers 5 writes rope_parameters {rope_theta, rope_type, factor...},
    # older versions rope_theta and rope_scaling
    rp = config.get("rope_parameters")
    if isinstance(rp, dict) and "full_attention" in rp and isinstance(rp["full_attention"], dict):
        rp = rp["full_attention"]
    rp = dict(rp) if isinstance(rp, dict) else {}
    scaling = config.get("rope_scaling") if isinstance(config.get("rope_scaling"), dict) else {}
    theta = rp.get("rope_theta", config.get("rope_theta", 10000.0))
    rtype = rp.get("rope_type") or rp.get("type") or scaling.get("rope_type") or scaling.get("type") or "default"
    factor = rp.get("factor", scaling.get("factor"))
    hp["rope_theta"] = float(theta)
    hp["rope_scaling"] = None
    if rtype == "linear" and factor is not None:
        hp["rope_scaling"] = ("linear", float(factor))
    elif rtype not in ("default", None):
        raise GGraphError(f"{path}: rope scaling {rtype!r} is not supported (only linear)")
    hp["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    hp["attention_bias"] = arch == "qwen2" or bool(config.get("attention_bias", False))
    return hp


# ---- tensors ----

def rope_interleave(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorders the rows of each head's block from halves (0..d/2-1 | d/2..d-1) to
    pairs: row 2i <- i, row 2i+1 <- i + d/2. Works on weights [n_head*d, in] and
    biases [n_head*d]."""
    rows = w.shape[0]
    if rows % n_head or (rows // n_head) % 2:
        raise GGraphError(f"cannot split {rows} rows into {n_head} heads of an even size")
    half = rows // n_head // 2
    return np.ascontiguousarray(
        w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def rope_deinterleave(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of rope_interleave."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return np.ascontiguousarray(
        w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _expected_shapes(hp: dict) -> dict[str, tuple[int, ...]]:
    """GGUF name -> numpy shape (HF [out, in]) of every tensor the file gets, in order."""
    E, F, V, L = hp["hidden_size"], hp["intermediate_size"], hp["vocab_size"], hp["num_hidden_layers"]
    nq = hp["num_attention_heads"] * hp["head_dim"]
    nkv = hp["num_key_value_heads"] * hp["head_dim"]
    out: dict[str, tuple[int, ...]] = {"token_embd.weight": (V, E)}
    for i in range(L):
        b = f"blk.{i}."
        out[b + "attn_norm.weight"] = (E,)
        out[b + "attn_q.weight"] = (nq, E)
        out[b + "attn_k.weight"] = (nkv, E)
        out[b + "attn_v.weight"] = (nkv, E)
        if hp["attention_bias"]:
            out[b + "attn_q.bias"] = (nq,)
            out[b + "attn_k.bias"] = (nkv,)
            out[b + "attn_v.bias"] = (nkv,)
        out[b + "attn_output.weight"] = (E, nq)
        out[b + "ffn_norm.weight"] = (E,)
        out[b + "ffn_gate.weight"] = (F, E)
        out[b + "ffn_up.weight"] = (F, E)
        out[b + "ffn_down.weight"] = (E, F)
    out["output_norm.weight"] = (E,)
    if not hp["tie_word_embeddings"]:
        out["output.weight"] = (V, E)
    return out


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of an HF tensor name (None if it is not one the converter knows)."""
    if hf_name in _GLOBAL_MAP:
        return _GLOBAL_MAP[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m and m.group(2) in _LAYER_MAP:
        return f"blk.{int(m.group(1))}.{_LAYER_MAP[m.group(2)]}"
    return None


def _plan_tensors(hp: dict, where: dict) -> list[tuple[str, str, tuple[int, ...]]]:
    """[(gguf name, hf name, numpy shape)] in file order; checks names and shapes."""
    expected = _expected_shapes(hp)
    have: dict[str, str] = {}
    for hf in where:
        if _IGNORED.search(hf):
            continue
        g = gguf_name(hf)
        if g is None:
            raise GGraphError(f"unexpected tensor {hf!r} in the checkpoint (not part of a "
                              f"{hp['arch']} model this converter knows)")
        if g == "output.weight" and hp["tie_word_embeddings"]:
            continue                     # tied: the output projection is token_embd
        if g not in expected:
            if g == "attn_output.bias" or g.endswith(".bias"):
                raise GGraphError(f"unexpected tensor {hf!r}: this config has no such bias")
            raise GGraphError(f"unexpected tensor {hf!r} (layer beyond num_hidden_layers?)")
        have[g] = hf
    plan = []
    for g, shape in expected.items():
        if g not in have:
            want = [k for k, v in _GLOBAL_MAP.items() if v == g]
            if not want:
                i, rest = g.split(".", 2)[1], g.split(".", 2)[2]
                want = [f"model.layers.{i}.{k}" for k, v in _LAYER_MAP.items() if v == rest]
            hint = " (set tie_word_embeddings in config.json if the model ties them)" \
                if g == "output.weight" else ""
            raise GGraphError(f"missing tensor {want[0] if want else g}{hint}")
        hf = have[g]
        got = tuple(where[hf].shape(hf))
        if got != shape:
            raise GGraphError(f"tensor {hf} has shape {list(got)}, expected {list(shape)} from config.json")
        plan.append((g, hf, shape))
    return plan


def _out_type(shape: tuple[int, ...], ftype: str) -> str:
    if len(shape) < 2 or ftype == "f32":
        return "F32"
    if ftype == "f16":
        return "F16"
    return "Q8_0" if shape[-1] % 32 == 0 else "F16"


def _prepare(arr: np.ndarray, g: str, hp: dict) -> np.ndarray:
    """The values written for GGUF tensor g (LLaMA q/k reordered for NORMAL rope)."""
    if hp["arch"] == "llama":
        if ".attn_q." in g:
            arr = rope_interleave(arr, hp["num_attention_heads"])
        elif ".attn_k." in g:
            arr = rope_interleave(arr, hp["num_key_value_heads"])
    return arr


def _encode(arr: np.ndarray, typ: str) -> np.ndarray:
    if typ == "F32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if typ == "F16":
        return np.ascontiguousarray(arr, dtype=np.float16)
    import ggraph as gg
    return gg.quantize(arr, gg.Q8_0)


# ---- tokenizer ----

def _token_content(tok) -> str | None:
    if isinstance(tok, str):
        return tok
    if isinstance(tok, dict) and isinstance(tok.get("content"), str):
        return tok["content"]
    return None


def _pre_tokenizer_name(tok_path: str) -> str:
    try:
        from tokenizers import Tokenizer
        ids = Tokenizer.from_file(tok_path).encode(_CHKTXT).ids
    except Exception:            # an unusual tokenizer.json: fall back to the default pre-tokenizer
        return "default"
    return _PRE_BY_HASH.get(hashlib.sha256(str(ids).encode()).hexdigest(), "default")


def _chat_template(hf_dir: str, tcfg: dict) -> str | None:
    jinja = os.path.join(hf_dir, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    ct = tcfg.get("chat_template")
    if isinstance(ct, list):         # named templates: the default one
        named = {t.get("name"): t.get("template") for t in ct if isinstance(t, dict)}
        ct = named.get("default") or next(iter(named.values()), None)
    if ct is None and os.path.isfile(os.path.join(hf_dir, "chat_template.json")):
        ct = _read_json(os.path.join(hf_dir, "chat_template.json"), "chat template").get("chat_template")
    return ct if isinstance(ct, str) else None


def tokenizer_metadata(hf_dir: str, config: dict, n_vocab: int, warn=None) -> list[tuple[str, object, str]]:
    """[(key, value, kind)] of the tokenizer.* keys; kind is one of
    "str", "u32", "bool", "str[]", "i32[]". Empty when there is no usable tokenizer.json."""
    tok_path = os.path.join(hf_dir, "tokenizer.json")
    if not os.path.isfile(tok_path):
        return []
    tj = _read_json(tok_path, "tokenizer.json")
    model = tj.get("model") or {}
    tcfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    tcfg = _read_json(tcfg_path, "tokenizer_config.json") if os.path.isfile(tcfg_path) else {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or not isinstance(model.get("vocab"), dict):
        if warn:
            warn("tokenizer.json is not a byte-level BPE (gpt2) tokenizer: no tokenizer written")
        return []
    vocab: dict[str, int] = dict(model["vocab"])
    added = {}
    for t in tj.get("added_tokens") or []:
        if isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("content"), str):
            added[t["id"]] = t
            vocab.setdefault(t["content"], t["id"])
    by_id = {i: s for s, i in vocab.items()}
    if by_id and max(by_id) >= n_vocab:
        raise GGraphError(f"{tok_path}: token id {max(by_id)} is outside the model's vocab_size {n_vocab}")
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TT_UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(TT_CONTROL if added[i].get("special") else TT_USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TT_NORMAL)
    merges = []
    for m in model.get("merges") or []:
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, (list, tuple)) and len(m) == 2:
            merges.append(f"{m[0]} {m[1]}")
    kv: list[tuple[str, object, str]] = [
        ("tokenizer.ggml.model", "gpt2", "str"),
        ("tokenizer.ggml.pre", _pre_tokenizer_name(tok_path), "str"),
        ("tokenizer.ggml.tokens", tokens, "str[]"),
        ("tokenizer.ggml.token_type", types, "i32[]"),
        ("tokenizer.ggml.merges", merges, "str[]"),
    ]

    def special_id(cfg_key: str, config_key: str | None):
        name = _token_content(tcfg.get(cfg_key))
        if name is not None and name in vocab:
            return vocab[name]
        v = config.get(config_key) if config_key else None
        if isinstance(v, list):
            v = v[0] if v else None
        return v if isinstance(v, int) and 0 <= v < n_vocab else None

    for key, cfg_key, config_key in (("bos", "bos_token", "bos_token_id"), ("eos", "eos_token", "eos_token_id"),
                                     ("unknown", "unk_token", None), ("padding", "pad_token", "pad_token_id")):
        i = special_id(cfg_key, config_key)
        if i is not None:
            kv.append((f"tokenizer.ggml.{key}_token_id", int(i), "u32"))
    add_bos = tcfg.get("add_bos_token")
    if add_bos is None:            # a post-processor template that starts with a special token adds BOS
        pp = tj.get("post_processor") or {}
        procs = pp.get("processors", [pp]) if isinstance(pp, dict) else []
        add_bos = any(isinstance(p, dict) and p.get("type") == "TemplateProcessing"
                      and (p.get("single") or [{}])[0].get("SpecialToken") is not None for p in procs)
    kv.append(("tokenizer.ggml.add_bos_token", bool(add_bos), "bool"))
    if tcfg.get("add_eos_token") is not None:
        kv.append(("tokenizer.ggml.add_eos_token", bool(tcfg["add_eos_token"]), "bool"))
    ct = _chat_template(hf_dir, tcfg)
    if ct:
        kv.append(("tokenizer.chat_template", ct, "str"))
    return kv


# ---- the conversion ----

def convert(hf_dir: str, out: str, type_name: str = "f16", *, log=None) -> dict:
    """Converts the checkpoint in `hf_dir` into GGUF file `out`; returns a summary dict."""
    import gguf

    log = log or sys.stdout
    ftype = str(type_name).lower()
    if ftype not in FILE_TYPES:
        raise GGraphError(f"unknown --type {type_name!r}: use f32, f16 or q8_0")
    if not os.path.isdir(hf_dir):
        raise GGraphError(f"{hf_dir}: no such directory")
    cfg_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(cfg_path):
        raise GGraphError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
    config = _read_json(cfg_path, "config.json")
    hp = hparams_from_config(config, cfg_path)
    where = _open_checkpoint(hf_dir)
    if "lm_head.weight" not in where and not hp["tie_word_embeddings"] and "tie_word_embeddings" not in config:
        hp["tie_word_embeddings"] = True        # no lm_head and nothing said: tied
    plan = _plan_tensors(hp, where)
    tok_kv = tokenizer_metadata(hf_dir, config, hp["vocab_size"],
                                warn=lambda m: print(f"ggraph convert: warning: {m}", file=sys.stderr))

    arch = hp["arch"]
    tmp = out + ".part"
    try:
        writer = gguf.GGUFWriter(tmp, arch)
    except OSError as e:
        raise GGraphError(f"{out}: {e.strerror or e}") from None
    name = os.path.basename(os.path.normpath(hf_dir))
    writer.add_string("general.type", "model")
    writer.add_string("general.name", name)
    writer.add_uint32(f"{arch}.block_count", hp["num_hidden_layers"])
    writer.add_uint32(f"{arch}.context_length", hp["max_position_embeddings"])
    writer.add_uint32(f"{arch}.embedding_length", hp["hidden_size"])
    writer.add_uint32(f"{arch}.feed_forward_length", hp["intermediate_size"])
    writer.add_uint32(f"{arch}.attention.head_count", hp["num_attention_heads"])
    writer.add_uint32(f"{arch}.attention.head_count_kv", hp["num_key_value_heads"])
    writer.add_float32(f"{arch}.rope.freq_base", hp["rope_theta"])
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", hp["rms_norm_eps"])
    if hp["head_dim"] != hp["hidden_size"] // hp["num_attention_heads"]:
        writer.add_uint32(f"{arch}.attention.key_length", hp["head_dim"])
        writer.add_uint32(f"{arch}.attention.value_length", hp["head_dim"])
    if hp["rope_scaling"]:
        writer.add_string(f"{arch}.rope.scaling.type", hp["rope_scaling"][0])
        writer.add_float32(f"{arch}.rope.scaling.factor", hp["rope_scaling"][1])
    writer.add_uint32("general.file_type", FILE_TYPES[ftype])
    writer.add_uint32(f"{arch}.vocab_size", hp["vocab_size"])
    writer.add_uint32(f"{arch}.rope.dimension_count", hp["head_dim"])
    if ftype == "q8_0":
        writer.add_uint32("general.quantization_version", 2)
    V = gguf.GGUFValueType
    for key, value, kind in tok_kv:
        if kind == "str":
            writer.add_string(key, value)
        elif kind == "u32":
            writer.add_uint32(key, value)
        elif kind == "bool":
            writer.add_bool(key, value)
        elif kind == "str[]":
            writer.add_key_value(key, value, V.ARRAY, sub_type=V.STRING)
        else:
            writer.add_key_value(key, value, V.ARRAY, sub_type=V.INT32)

    import ggraph as gg
    counts: dict[str, int] = {}
    total = 0
    for g, hf, shape in plan:
        typ = _out_type(shape, ftype)
        nrows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
        nbytes = nrows * gg.row_size(typ, shape[-1])
        writer.add_tensor_info(g, list(shape), np.dtype(np.float32), nbytes,
                               raw_dtype=gguf.GGMLQuantizationType[typ])
        counts[typ] = counts.get(typ, 0) + 1
        total += nbytes
    ok = False
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for g, hf, shape in plan:
            arr = _prepare(where[hf].load(hf), g, hp)
            if not np.all(np.isfinite(arr)):
                raise GGraphError(f"tensor {hf} has non-finite values")
            writer.write_tensor_data(_encode(arr, _out_type(shape, ftype)))
        writer.close()
        os.replace(tmp, out)
        ok = True
    except OSError as e:
        raise GGraphError(f"{out}: {e.strerror or e}") from None
    finally:
        if not ok:
            try:
                writer.close()
            except Exception:
                pass
            if os.path.exists(tmp):
                os.remove(tmp)
    summary = {"arch": arch, "type": ftype, "tensors": len(plan), "types": counts, "bytes": total,
               "tied": hp["tie_word_embeddings"], "tokenizer": bool(tok_kv), "path": out}
    types = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    print(f"converted {hf_dir} ({arch}, {hp['num_hidden_layers']} layers) -> {out}: {len(plan)} tensors "
          f"({types}), {total / 2**20:.1f} MiB, tokenizer: {'yes' if tok_kv else 'no'}", file=log)
    return summary
