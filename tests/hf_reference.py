"""Test support for the Hugging Face conversion and parity tests.

1. `GGUFReference`: a plain numpy (float64) forward pass of a LLaMA / Qwen2 GGUF file,
   read with gguf.GGUFReader, with llama.cpp's semantics and nothing undone: the file's
   weights are used as they are, rope is NORMAL mode (adjacent pairs 2i, 2i+1) for
   llama, whose converter reordered the q/k rows, and NEOX mode (pairs i, i + n_rot/2)
   for qwen2. If the converter's conventions are right its logits equal HF's; it is
   also an oracle for the graph builders (per layer, no caching tricks beyond a
   growing K/V list).
2. `make_checkpoint`: a tiny random LlamaForCausalLM / Qwen2ForCausalLM (GQA) saved
   with save_pretrained (safetensors), optionally with a small byte-level BPE
   tokenizer and a chat template, for the conversion tests.
3. `hf_logits`: the HF model's logits for a prompt and then one token at a time
   with past_key_values.
"""
from __future__ import annotations

import json
import os

import numpy as np

LLAMA, QWEN2 = "llama", "qwen2"


# ---- the numpy reference ----

def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def gguf_tensor_f32(t) -> np.ndarray:
    """A GGUFReader tensor's values as float32 in numpy order (ne reversed)."""
    import gguf
    shape = tuple(int(x) for x in reversed(t.shape))
    typ = gguf.GGMLQuantizationType(int(t.tensor_type))
    if typ in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return np.asarray(t.data, dtype=np.float32).reshape(shape)
    return np.asarray(gguf.quants.dequantize(t.data, typ), dtype=np.float32).reshape(shape)


def rope(x: np.ndarray, pos: np.ndarray, n_rot: int, base: float, neox: bool, freq_scale: float = 1.0):
    """ggml_rope_ext without YaRN: x (n_tok, n_head, head_dim), pos (n_tok,).
    Dims past n_rot are left as they are."""
    out = x.copy()
    half = n_rot // 2
    i = np.arange(half, dtype=np.float64)
    theta = (pos.astype(np.float64)[:, None] * freq_scale) * base ** (-2.0 * i / n_rot)   # (n_tok, half)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * c - b * s
        out[..., half:n_rot] = a * s + b * c
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * c - b * s
        out[..., 1:n_rot:2] = a * s + b * c
    return out


class GGUFReference:
    """Forward pass over a GGUF file; `eval(tokens)` appends to the K/V lists and
    returns the logits (n_tokens, n_vocab) of every new token, float64."""

    def __init__(self, path: str):
        import gguf
        r = gguf.GGUFReader(path)
        self.arch = arch = _field(r, "general.architecture")
        if arch not in (LLAMA, QWEN2):
            raise ValueError(f"unsupported architecture {arch}")
        self.n_layer = int(_field(r, f"{arch}.block_count"))
        self.n_embd = int(_field(r, f"{arch}.embedding_length"))
        self.n_head = int(_field(r, f"{arch}.attention.head_count"))
        self.n_head_kv = int(_field(r, f"{arch}.attention.head_count_kv", self.n_head))
        self.head_dim = int(_field(r, f"{arch}.attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(_field(r, f"{arch}.rope.dimension_count", self.head_dim))
        self.eps = float(_field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
        self.base = float(_field(r, f"{arch}.rope.freq_base", 10000.0))
        factor = _field(r, f"{arch}.rope.scaling.factor")
        self.freq_scale = 1.0 / float(factor) if factor else 1.0
        self.neox = arch == QWEN2
        self.w = {t.name: gguf_tensor_f32(t).astype(np.float64) for t in r.tensors}
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])
        self.reset()

    def reset(self):
        self.k = [np.zeros((0, self.n_head_kv, self.head_dim)) for _ in range(self.n_layer)]
        self.v = [np.zeros((0, self.n_head_kv, self.head_dim)) for _ in range(self.n_layer)]
        self.n_past = 0

    def _norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y if b is None else y + b

    def eval(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        pos = np.arange(self.n_past, self.n_past + n)
        x = self.w["token_embd.weight"][tokens]
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv
        for il in range(self.n_layer):
            p = f"blk.{il}."
            h = self._norm(x, self.w[p + "attn_norm.weight"])
            q = self._lin(h, p + "attn_q").reshape(n, nh, hd)
            k = self._lin(h, p + "attn_k").reshape(n, nkv, hd)
            v = self._lin(h, p + "attn_v").reshape(n, nkv, hd)
            q = rope(q, pos, self.n_rot, self.base, self.neox, self.freq_scale)
            k = rope(k, pos, self.n_rot, self.base, self.neox, self.freq_scale)
            self.k[il] = K = np.concatenate([self.k[il], k])
            self.v[il] = V = np.concatenate([self.v[il], v])
            n_kv = K.shape[0]
            # causal mask: token at pos p sees cache positions 0..p
            mask = np.where(np.arange(n_kv)[None, :] <= pos[:, None], 0.0, -np.inf)
            att = np.empty((n, nh, hd))
            for hh in range(nh):
                kh = hh // group                      # consecutive q heads share a kv head
                s = q[:, hh, :] @ K[:, kh, :].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att[:, hh, :] = s @ V[:, kh, :]
            x = x + self._lin(att.reshape(n, nh * hd), p + "attn_output")
            h = self._norm(x, self.w[p + "ffn_norm.weight"])
            g = self._lin(h, p + "ffn_gate")
            ff = (g / (1.0 + np.exp(-g))) * self._lin(h, p + "ffn_up")
            x = x + self._lin(ff, p + "ffn_down")
        self.n_past += n
        return self._norm(x, self.w["output_norm.weight"]) @ self.out.T


# ---- tiny Hugging Face checkpoints ----

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, max_position_embeddings=256, rms_norm_eps=1e-5)

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_tokenizer(path: str, vocab_size: int) -> None:
    """A byte-level BPE (GPT-2 style) trained on a few sentences, with three special
    tokens, saved as tokenizer.json + tokenizer_config.json (chat template included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 8, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = ["the quick brown fox jumps over the lazy dog", "hello world, hello there",
            "def f(x):\n    return x * 2\n", "llamas and qwens convert to gguf files"] * 20
    tok.train_from_iterator(text, trainer)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "unk_token": None, "add_bos_token": False, "chat_template": CHAT_TEMPLATE,
                   "model_max_length": 256}, f)


def make_checkpoint(arch: str, path: str, *, seed: int = 0, tied: bool = False, tokenizer: bool = False,
                    vocab_size: int = 128, dtype=None, shard_size=None, **overrides):
    """Saves a random tiny LlamaForCausalLM / Qwen2ForCausalLM to `path`; returns the model
    (eval mode, float32). Weights are scaled up from the init's 0.02 so that the logits
    are O(1) and the rope/attention details matter. The model is returned in float32
    even when saved as `dtype` (e.g. torch.bfloat16): the saved values are then the
    rounded ones, and the returned model holds them too."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    kw = dict(TINY, vocab_size=vocab_size, tie_word_embeddings=tied, **overrides)
    if arch == LLAMA:
        model = LlamaForCausalLM(LlamaConfig(rope_theta=10000.0, **kw))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(rope_theta=1000000.0, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))      # norms around 1, biases O(1)
            else:
                p.copy_(torch.randn_like(p) * (1.0 / p.shape[1] ** 0.5))
    model.eval()
    os.makedirs(path, exist_ok=True)
    if dtype is not None:
        model = model.to(dtype)
    save_kw = {} if shard_size is None else {"max_shard_size": shard_size}
    model.save_pretrained(path, safe_serialization=True, **save_kw)
    model = model.to(torch.float32)
    if tokenizer:
        make_tokenizer(path, vocab_size)
    return model


def hf_logits(model, prompt, steps):
    """HF logits: (len(prompt), n_vocab) for the prompt, then one (n_vocab,) array per
    token of `steps` fed one at a time with the cache (float64 numpy)."""
    import torch
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        res = [out.logits[0].double().numpy()]
        past = out.past_key_values
        for t in steps:
            out = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            res.append(out.logits[0, -1].double().numpy())
    return res
