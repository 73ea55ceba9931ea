"""GGUF mutation fuzzing: every mutated file either loads (and a Session evaluates a
token) or is refused with one GGraphError; nothing else, nothing slow.

The base file is a tiny valid llama GGUF written here (ggraph.tools.gguf_fuzz);
the slow test mutates copies of the real SmolLM2 file.
"""
import math
import random
import struct
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ggraph as gg
from ggraph.gguf_model import load_gguf
from ggraph.session import Session
from ggraph.tools.gguf_fuzz import (ARR, F32, MUTATIONS, STR, U32, U64, GGUFDoc, mutate, run_case,
                                    tiny_llama_doc)

CASE_SECONDS = 20.0          # generous on a shared machine: a tiny case takes ~10 ms


@pytest.fixture(scope="module")
def base_doc():
    return tiny_llama_doc()


def _write(tmp_path, data: bytes, name="m.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _logits(path):
    return Session(load_gguf(path), n_ctx=8, n_threads=1).eval([1, 5, 7])


def test_base_file_loads_and_runs(tmp_path, base_doc):
    outcome, detail = run_case(_write(tmp_path, base_doc.to_bytes()))
    assert outcome == "loaded", detail
    tok = Session(load_gguf(tmp_path / "m.gguf"), n_ctx=8).tokenizer
    assert tok.decode(tok.encode("hi the and")) == "hi the and"


def test_mutation_fuzz(tmp_path_factory, base_doc):
    """Hypothesis picks a mutation and its random choices; a few hundred cases in seconds."""
    tmp = tmp_path_factory.mktemp("fuzz")
    counts, failures = Counter(), []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1))
    def case(kind, seed):
        path = _write(tmp, mutate(base_doc, kind, random.Random(seed)))
        outcome, detail = run_case(path, time_bound=CASE_SECONDS)
        counts[outcome] += 1
        counts[kind, outcome] += 1
        if outcome == "failed":
            failures.append(f"mutation {kind!r} seed {seed}: {detail}")
        assert outcome != "failed", failures[-1]

    case()
    print(f"\nGGUF fuzz (tiny llama): tried {counts['loaded'] + counts['refused'] + counts['failed']}, "
          f"loaded {counts['loaded']}, refused {counts['refused']}, other {counts['failed']}")
    assert not failures
    assert counts["loaded"] > 0 and counts["refused"] > 0


# ---- the cases the issue names, one by one ----

@pytest.mark.parametrize("alignment", [1, 2, 8, 16, 64, 4096])
def test_legal_alignments_load_with_the_same_weights(tmp_path, base_doc, alignment):
    ref = _logits(_write(tmp_path, base_doc.to_bytes(), "ref.gguf"))
    d = base_doc.copy()
    d.alignment = alignment
    d.set("general.alignment", U32, alignment)
    np.testing.assert_array_equal(_logits(_write(tmp_path, d.to_bytes())), ref)


@pytest.mark.parametrize("alignment,vt,pattern", [
    (0, U32, r"'general.alignment' is 0, expected a power of two"),
    (48, U32, r"'general.alignment' is 48, expected a power of two"),
    (32, U64, r"'general.alignment' has type UINT64, expected UINT32"),
])
def test_bad_alignment(tmp_path, base_doc, alignment, vt, pattern):
    d = base_doc.copy()
    d.set("general.alignment", vt, alignment)
    p = _write(tmp_path, d.to_bytes())
    with pytest.raises(gg.GGraphError, match=pattern) as ei:
        load_gguf(p)
    assert str(p) in str(ei.value)


def test_extra_keys_and_nested_arrays_load(tmp_path, base_doc):
    d = base_doc.copy()
    d.set("x.nested", ARR, (ARR, [(U32, [1, 2, 3]), (U32, []), (STR, ["a", "ü"])]))
    d.set("x.empty", ARR, (ARR, []))
    d.set("x.long", STR, "y" * 100_000)
    md = load_gguf(_write(tmp_path, d.to_bytes())).metadata
    assert md["x.nested"] == [[1, 2, 3], [], ["a", "ü"]] and md["x.empty"] == [] and len(md["x.long"]) == 100_000


def _set(key, vt, value):
    def f(d):
        d.set(key, vt, value)
    return f


def _tensor(name, **kw):
    def f(d):
        t = next(t for t in d.tensors if t.name == name.encode())
        for k, v in kw.items():
            setattr(t, k, v)
    return f


def _tokens_short(d):
    toks = [f"t{i}" for i in range(63)]
    d.set("tokenizer.ggml.tokens", ARR, (STR, toks))


def _bad_utf8_token(d):
    d.set("tokenizer.ggml.tokens", ARR, (STR, [b"<unk>", b"\xc3"] + [f"t{i}".encode() for i in range(62)]))


REFUSED = {
    "block_count 0": (_set("llama.block_count", U32, 0), r"'llama\.block_count' is 0, expected an integer >= 1"),
    "block_count huge": (_set("llama.block_count", U64, 2**60),
                         r"'llama\.block_count' is 1152921504606846976, but the file has only 21 tensors"),
    "eps NaN": (_set("llama.attention.layer_norm_rms_epsilon", F32, math.nan), r"rms_epsilon' is nan"),
    "rope base 0": (_set("llama.rope.freq_base", F32, 0.0), r"'llama\.rope\.freq_base' is 0\.0, expected a finite"),
    "rope base NaN": (_set("llama.rope.freq_base", F32, math.nan), r"'llama\.rope\.freq_base' is nan"),
    "context 0": (_set("llama.context_length", U32, 0), r"'llama\.context_length' is 0"),
    "heads 0": (_set("llama.attention.head_count", U32, 0), r"'llama\.attention\.head_count' is 0"),
    "kv heads 3": (_set("llama.attention.head_count_kv", U32, 3), r"head_count' = 4 is not a multiple of"),
    "tokens short": (_tokens_short, r"'tokenizer\.ggml\.tokens' has 63 tokens, expected 64"),
    "token invalid utf8": (_bad_utf8_token, r"'tokenizer\.ggml\.tokens': string 1 is not valid UTF-8"),
    "bos out of range": (_set("tokenizer.ggml.bos_token_id", U32, 64),
                         r"'tokenizer\.ggml\.bos_token_id' is 64, expected a token id in 0\.\.63"),
    "merge one part": (_set("tokenizer.ggml.merges", ARR, (STR, ["h i", "hi"])),
                       r"'tokenizer\.ggml\.merges' entry 1 is 'hi', expected two tokens separated by one space"),
    "merge unknown token": (_set("tokenizer.ggml.merges", ARR, (STR, ["h q"])), r"entry 0 \('h q'\) uses 'hq'"),
    "scores NaN": (_set("tokenizer.ggml.scores", ARR, (F32, [math.nan] * 64)), r"scores' entry 0 is nan"),
    "tokenizer model not a string": (_set("tokenizer.ggml.model", U32, 1),
                                     r"'tokenizer\.ggml\.model' has type UINT32, expected a string"),
    "unknown tensor type": (_tensor("blk.0.attn_q.weight", type=99), r"'blk\.0\.attn_q\.weight' has type id 99"),
    "zero dim": (_tensor("blk.0.attn_q.weight", dims=[32, 0]), r"ne=\[32, 0\], expected every dimension >= 1"),
    "element overflow": (_tensor("blk.0.attn_q.weight", dims=[2**32, 2**32]), r"more than 4611686018427387904"),
    "five dims": (_tensor("blk.0.attn_q.weight", dims=[32, 2, 2, 2, 2]), r"has 5 dimensions, expected 1\.\.4"),
    "partial block": (_tensor("blk.0.attn_q.weight", type=8, dims=[16, 64]),
                      r"'blk\.0\.attn_q\.weight' has ne\[0\]=16, expected a multiple of the Q8_0 block size 32"),
    "duplicate tensor": (lambda d: d.tensors.append(d.tensors[3]), r"tensor 'blk\.0\.\w+\.weight' appears twice"),
    "missing tensor": (lambda d: d.tensors.pop(5), r"tensor 'blk\.0\.\w+\.weight' is missing"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_with_the_reason(tmp_path, base_doc, case):
    change, pattern = REFUSED[case]
    d = base_doc.copy()
    change(d)
    p = _write(tmp_path, d.to_bytes())
    with pytest.raises(gg.GGraphError, match=pattern) as ei:
        load_gguf(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


def _patch_tensor_offset(d: GGUFDoc, index: int, offset: int) -> bytes:
    return d.to_bytes(offsets={index: offset})


@pytest.mark.parametrize("offset,pattern", [
    (2**64 - 64, r"truncated file: tensor 'blk\.0\.attn_norm\.weight' needs bytes"),       # wraps in 64 bits
    (2**40, r"truncated file: tensor 'blk\.0\.attn_norm\.weight' needs bytes"),
    (8, r"'blk\.0\.attn_norm\.weight' has data offset 8, expected a multiple of the alignment 32"),
    (0, r"overlaps tensor"),
])
def test_bad_tensor_offsets(tmp_path, base_doc, offset, pattern):
    i = next(i for i, t in enumerate(base_doc.tensors) if t.name == b"blk.0.attn_norm.weight")
    p = _write(tmp_path, _patch_tensor_offset(base_doc, i, offset))
    with pytest.raises(gg.GGraphError, match=pattern):
        load_gguf(p)


@pytest.mark.parametrize("field", ["n_kv", "n_tensors", "array count", "string length"])
def test_huge_counts_are_refused_before_reading(tmp_path, base_doc, field):
    """A claimed count far beyond the file is refused without walking it (no long loop)."""
    from ggraph.gguf_check import scan_gguf
    data = bytearray(base_doc.to_bytes())
    lay = scan_gguf(_write(tmp_path, bytes(data), "base.gguf"))
    tokens = lay.kv("tokenizer.ggml.tokens")
    at = {"n_kv": 16, "n_tensors": 8, "array count": tokens.value_offset + 4,
          "string length": tokens.value_offset + 12}[field]
    struct.pack_into("<Q", data, at, 2**62)
    with pytest.raises(gg.GGraphError, match=r"truncated file: .*(claims|needs bytes)"):
        load_gguf(_write(tmp_path, bytes(data)))


# ---- the real model ----

@pytest.mark.slow
def test_mutation_fuzz_smollm2(tmp_path):
    """Mutated copies of the real SmolLM2 GGUF (each written to tmp): loads or GGraphError."""
    from ggraph.model_files import resolve_model
    doc = GGUFDoc.read(resolve_model("smollm2"))
    counts, failures = Counter(), []
    path = tmp_path / "mutant.gguf"
    for i in range(2 * len(MUTATIONS)):
        kind = MUTATIONS[i % len(MUTATIONS)]
        path.write_bytes(mutate(doc, kind, random.Random(1000 + i)))
        outcome, detail = run_case(path, time_bound=120.0)
        counts[outcome] += 1
        if outcome == "failed":
            failures.append(f"mutation {kind!r} seed {1000 + i}: {detail}")
    print(f"\nGGUF fuzz (SmolLM2): {dict(counts)}")
    assert not failures, "\n".join(failures)
    assert counts["refused"] > 0
