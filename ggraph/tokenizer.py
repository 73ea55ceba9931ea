"""Tokenizer built from a GGUF file's metadata, on the Hugging Face `tokenizers` library.

Only byte-level BPE vocabularies (tokenizer.ggml.model == "gpt2", the kind LLaMA-3, SmolLM2 and
Qwen2 use) are supported. The `tokenizers` library does the BPE merges; this module only
assembles its parts the way llama.cpp reads the same metadata:

- vocabulary and merges from tokenizer.ggml.tokens / tokenizer.ggml.merges;
- tokens typed CONTROL (3) become special added tokens and USER_DEFINED (4) plain added tokens,
  so both are matched whole in the text instead of being cut into pieces;
- the pre-tokenizer (how text is split before the merges) is chosen by tokenizer.ggml.pre with
  the split rules llama.cpp gives each name (see PRE_TOKENIZERS);
- BOS/EOS/UNK/PAD ids, add_bos_token/add_eos_token, and the end-of-generation ids llama.cpp
  derives from the token texts (eos, <|im_end|>, <|endoftext|>, <|eot_id|>, ..., and the
  fill-in-the-middle pad/repo/file-separator tokens).

metadata is a dict: GGUF key -> python value (str, int, float, bool, or a list for arrays).
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import GGraphError

__all__ = ["Tokenizer", "PRE_TOKENIZERS"]

# GGUF token types (llama.cpp's llama_token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# split rules, written as the regexes of the models' own tokenizer.json files
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer.ggml.pre name -> (kind, ignore_merges). Kinds:
#   "gpt2":   GPT-2's split (numbers kept whole, " ?\p{N}+")
#   "digits": every digit on its own first, then GPT-2's split (SmolLM2, StarCoder)
#   "llama3": LLaMA-3's split, numbers in groups of up to 3 digits
#   "qwen2":  LLaMA-3's split but every digit on its own
#   "default": llama.cpp's fallback for a missing/"default" name: punctuation runs isolated,
#              GPT-2's split, numbers, then numbers cut into groups of 3
PRE_TOKENIZERS = {
    "default": ("default", False),
    "gpt2": ("gpt2", False), "gpt-2": ("gpt2", False), "phi-2": ("gpt2", False), "mpt": ("gpt2", False),
    "olmo": ("gpt2", False), "roberta-bpe": ("gpt2", False),
    "smollm": ("digits", False), "starcoder": ("digits", False), "refact": ("digits", False),
    "codeshell": ("digits", False), "command-r": ("digits", False), "exaone": ("digits", False),
    "llama3": ("llama3", True), "llama-v3": ("llama3", True), "llama-bpe": ("llama3", True),
    "dbrx": ("llama3", False), "smaug-bpe": ("llama3", False),
    "qwen2": ("qwen2", False), "deepseek-r1-qwen": ("qwen2", False), "stablelm2": ("qwen2", False),
    "megrez": ("qwen2", False),
}

# token texts llama.cpp treats as end of generation whatever their id
_EOG_TEXTS = frozenset([
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
])
# fill-in-the-middle pad / repo / file-separator tokens, found by text when the file gives no id;
# llama.cpp ends generation on them too
_FIM_EOG_TEXTS = {
    "fim_pad_token_id": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep_token_id": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep_token_id": ("<|file_sep|>",),
}


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable unicode stand-in for each byte, reversed: char -> byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return {c: b for b, c in chars.items()}


def _pre_tokenizer(kind: str):
    from tokenizers import Regex, pre_tokenizers as pt

    bytelevel_raw = pt.ByteLevel(add_prefix_space=False, use_regex=False)
    if kind == "gpt2":
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "digits":
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if kind in ("llama3", "qwen2"):
        split = _LLAMA3_SPLIT if kind == "llama3" else _QWEN2_SPLIT
        return pt.Sequence([pt.Split(Regex(split), behavior="isolated"), bytelevel_raw])
    # "default": each rule splits the pieces the previous one left
    rules = [r"[\p{P}\$\+<=>\^~\|]+", _GPT2_SPLIT, r"\p{N}+", r"[0-9][0-9][0-9]"]
    return pt.Sequence([pt.Split(Regex(r), behavior="isolated") for r in rules] + [bytelevel_raw])


def _get(metadata: dict, key: str, kind, default=None, required=False):
    if key not in metadata:
        if required:
            raise GGraphError(f"tokenizer: GGUF metadata has no {key!r}")
        return default
    v = metadata[key]
    if kind is list:
        if hasattr(v, "tolist"):
            v = v.tolist()
        if not isinstance(v, (list, tuple)):
            raise GGraphError(f"tokenizer: {key!r} should be an array, got {type(v).__name__}")
        return list(v)
    if kind is int and isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if kind is bool and isinstance(v, (bool, np.bool_)):
        return bool(v)
    if kind is str and isinstance(v, str):
        return v
    raise GGraphError(f"tokenizer: {key!r} should be {kind.__name__}, got {type(v).__name__} {v!r}")


class Tokenizer:
    """Text <-> token ids for a GGUF byte-level BPE vocabulary (see the module docstring)."""

    def __init__(self, tokens, merges, token_types=None, *, pre="default", bos_id=None, eos_id=None,
                 unk_id=None, pad_id=None, add_bos=False, add_eos=False, extra_eog_ids=()):
        from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models

        if pre not in PRE_TOKENIZERS:
            raise GGraphError(f"tokenizer: unknown pre-tokenizer {pre!r} (tokenizer.ggml.pre); "
                              f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
        tokens = [str(t) for t in tokens]
        n = len(tokens)
        if n == 0:
            raise GGraphError("tokenizer: empty vocabulary (tokenizer.ggml.tokens)")
        token_types = [TOKEN_NORMAL] * n if token_types is None else [int(t) for t in token_types]
        if len(token_types) != n:
            raise GGraphError(f"tokenizer: {len(token_types)} token types for {n} tokens")
        for name, v in (("bos", bos_id), ("eos", eos_id), ("unk", unk_id), ("pad", pad_id)):
            if v is not None and not 0 <= v < n:
                raise GGraphError(f"tokenizer: {name} token id {v} outside the vocabulary [0, {n})")

        vocab: dict[str, int] = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)      # a duplicated text keeps its first id, as llama.cpp does
        pairs = []
        for m in merges:
            a, sep, b = str(m).partition(" ")
            if not sep or not a or not b:
                raise GGraphError(f"tokenizer: bad merge {m!r} (expected 'left right')")
            pairs.append((a, b))
        kind, ignore_merges = PRE_TOKENIZERS[pre]

        hf = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges, fuse_unk=False,
                                    byte_fallback=False))
        hf.pre_tokenizer = _pre_tokenizer(kind)
        hf.decoder = decoders.ByteLevel()
        control = [AddedToken(t, special=True, normalized=False) for i, (t, ty) in enumerate(zip(tokens, token_types))
                   if ty == TOKEN_CONTROL and vocab[t] == i]
        user = [AddedToken(t, special=False, normalized=False) for i, (t, ty) in enumerate(zip(tokens, token_types))
                if ty == TOKEN_USER_DEFINED and vocab[t] == i]
        if control:
            hf.add_special_tokens(control)
        if user:
            hf.add_tokens(user)
        self._hf = hf
        self._hf_plain = None             # copy that reads special-token text as ordinary text

        self.tokens = tokens
        self.token_types = token_types
        self.pre = pre
        self.n_vocab = n
        self.bos_id, self.eos_id, self.unk_id, self.pad_id = bos_id, eos_id, unk_id, pad_id
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.eog_ids = {i for i, t in enumerate(tokens) if t in _EOG_TEXTS}
        self.eog_ids.update(i for i in extra_eog_ids if i is not None and 0 <= i < n)
        if eos_id is not None:
            self.eog_ids.add(eos_id)
        self._special = frozenset(i for i, ty in enumerate(token_types) if ty in (TOKEN_CONTROL, TOKEN_UNKNOWN))
        self._pieces: list[bytes | None] = [None] * n
        self._bdec = _byte_decoder()

    @classmethod
    def from_gguf(cls, metadata: dict) -> "Tokenizer":
        model = _get(metadata, "tokenizer.ggml.model", str, required=True)
        if model != "gpt2":
            raise GGraphError(f"tokenizer: unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                              "only byte-level BPE ('gpt2') is supported")
        tokens = _get(metadata, "tokenizer.ggml.tokens", list, required=True)
        merges = _get(metadata, "tokenizer.ggml.merges", list, required=True)
        types = _get(metadata, "tokenizer.ggml.token_type", list)
        pre = _get(metadata, "tokenizer.ggml.pre", str, "default") or "default"

        def tid(name):
            return _get(metadata, f"tokenizer.ggml.{name}", int)

        extra_eog = [tid(k) for k in ("eot_token_id", "eom_token_id")]
        index = {}
        for i, t in enumerate(tokens):
            index.setdefault(t, i)
        for key, texts in _FIM_EOG_TEXTS.items():
            found = tid(key)
            if found is None:
                found = min((index[t] for t in texts if t in index), default=None)
            extra_eog.append(found)
        return cls(tokens, merges, types, pre=pre, bos_id=tid("bos_token_id"), eos_id=tid("eos_token_id"),
                   unk_id=tid("unknown_token_id"), pad_id=tid("padding_token_id"),
                   # llama.cpp adds BOS by default for the LLaMA-3 split when the file does not say
                   add_bos=_get(metadata, "tokenizer.ggml.add_bos_token", bool,
                                PRE_TOKENIZERS.get(pre, ("", False))[0] == "llama3"),
                   add_eos=_get(metadata, "tokenizer.ggml.add_eos_token", bool, False),
                   extra_eog_ids=extra_eog)

    # ---- encoding

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of text. add_special: BOS first if the vocabulary says add_bos (EOS last if add_eos).
        parse_special: control-token text such as "<|im_start|>" becomes that token; otherwise it is
        tokenized as ordinary text (user-defined tokens are always matched whole, as in llama.cpp)."""
        if not isinstance(text, str):
            raise GGraphError(f"tokenizer.encode: text must be str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:   # lone surrogates: bytes that were not UTF-8 (argv, surrogateescape)
            raise GGraphError(f"tokenizer.encode: the text is not valid UTF-8 (character {e.start}: "
                              f"{text[e.start]!r}, e.g. bytes that were not UTF-8 on the command line)") from None
        hf = self._hf
        if not parse_special:
            if self._hf_plain is None:
                from tokenizers import Tokenizer as HFTokenizer
                plain = HFTokenizer.from_str(self._hf.to_str())
                plain.encode_special_tokens = True
                self._hf_plain = plain
            hf = self._hf_plain
        ids = hf.encode(text, add_special_tokens=False).ids if text else []
        if add_special:
            if self.add_bos and self.bos_id is not None:
                ids.insert(0, self.bos_id)
            if self.add_eos and self.eos_id is not None:
                ids.append(self.eos_id)
        return ids

    # ---- decoding

    def _check_id(self, i) -> int:
        try:
            j = int(i)
        except (TypeError, ValueError):
            raise GGraphError(f"tokenizer: token id must be an int, got {i!r}") from None
        if not 0 <= j < self.n_vocab:
            raise GGraphError(f"tokenizer: token id {j} outside the vocabulary [0, {self.n_vocab})")
        return j

    def token_to_piece(self, id: int) -> bytes:
        """The raw bytes of one token. A piece may end in the middle of a UTF-8 character: join
        streamed pieces with an incremental UTF-8 decoder (codecs.getincrementaldecoder)."""
        i = self._check_id(id)
        piece = self._pieces[i]
        if piece is None:
            text = self.tokens[i]
            if self.token_types[i] in (TOKEN_NORMAL, TOKEN_UNUSED):
                dec = self._bdec
                # a normal token spells its bytes in GPT-2's alphabet; anything else is kept as UTF-8
                piece = b"".join(bytes([dec[c]]) if c in dec else c.encode("utf-8") for c in text)
            else:
                piece = text.encode("utf-8")
            self._pieces[i] = piece
        return piece

    def is_special(self, id: int) -> bool:
        """True for control (and unknown) tokens: rendered by decode only when skip_special is False."""
        return self._check_id(id) in self._special

    def decode(self, ids, skip_special: bool = False) -> str:
        """Text of ids. Bytes that are not valid UTF-8 become U+FFFD. skip_special drops control tokens."""
        parts = []
        for i in ids:
            j = self._check_id(i)
            if skip_special and j in self._special:
                continue
            parts.append(self.token_to_piece(j))
        return b"".join(parts).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return (f"Tokenizer(n_vocab={self.n_vocab}, pre={self.pre!r}, bos={self.bos_id}, eos={self.eos_id}, "
                f"add_bos={self.add_bos}, eog={sorted(self.eog_ids)})")
