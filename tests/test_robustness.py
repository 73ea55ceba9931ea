"""Bad input outside the GGUF file: KV state files (truncated, corrupted, from another
model or version), prompts (empty, too long, not UTF-8) in the API and the CLI,
and two threads sharing one loaded model."""
import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ggraph as gg
from ggraph.cli import main
from ggraph.gguf_model import load_gguf
from ggraph.kv_cache import STATE_VERSION
from ggraph.sampling import Sampler
from ggraph.session import Session
from ggraph.tools.gguf_fuzz import STR, tiny_llama_doc


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("robust") / "tiny.gguf"
    p.write_bytes(tiny_llama_doc().to_bytes())
    return p


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_gguf(tiny_path)


@pytest.fixture(scope="module")
def state(tiny):
    s = Session(tiny, n_ctx=32, n_threads=1)
    s.eval([1, 5, 9, 12, 3])
    return s.state_save()


def _fresh(model, **kw):
    return Session(model, n_ctx=kw.pop("n_ctx", 32), n_threads=1, **kw)


# ---- KV state ----

@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_truncated_or_flipped_states_are_refused(tiny, state, data):
    kind = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if kind == "truncate":
        bad = state[:data.draw(st.integers(0, len(state) - 1))]
    elif kind == "flip":
        i = data.draw(st.integers(0, len(state) - 1))
        bad = state[:i] + bytes([state[i] ^ (1 << data.draw(st.integers(0, 7)))]) + state[i + 1:]
    else:
        bad = state + data.draw(st.binary(min_size=1, max_size=64))
    s = _fresh(tiny)
    with pytest.raises(gg.GGraphError, match="cannot load the KV state"):
        s.state_load(bad)
    assert s.cache.n_used() == 0                       # refused: nothing changed
    s.eval([1])                                        # and the session still works


def test_state_from_another_model_or_version_is_refused(tiny, state, tmp_path):
    other_doc = tiny_llama_doc(seed=1)
    other_doc.set("general.name", STR, "another llama")
    p = tmp_path / "other.gguf"
    p.write_bytes(other_doc.to_bytes())
    with pytest.raises(gg.GGraphError, match="saved from another model"):
        _fresh(load_gguf(p)).state_load(state)
    newer = bytearray(state)
    struct.pack_into("<I", newer, 4, STATE_VERSION + 1)
    with pytest.raises(gg.GGraphError, match=f"state version {STATE_VERSION + 1}, this ggraph reads version "
                                             f"{STATE_VERSION}"):
        _fresh(tiny).state_load(bytes(newer))
    with pytest.raises(gg.GGraphError, match="it holds 32 cells, this cache has 4"):
        _fresh(tiny, n_ctx=4).state_load(state)        # saved from a 32-cell cache
    with pytest.raises(gg.GGraphError, match="cannot read state file"):
        _fresh(tiny).state_load_file(tmp_path / "missing.bin")


def test_state_with_bad_cells_is_refused(tiny, state):
    """A state whose checksum is right but whose cells are nonsense (crafted, not corrupted)."""
    import zlib
    fp_len = struct.unpack_from("<I", state, 28)[0]
    off = 32 + fp_len
    body = bytearray(state[off + 12:])
    struct.pack_into("<q", body, 0, -5)                # cell 0: position -5
    crafted = state[:off] + struct.pack("<IQ", zlib.crc32(body), len(body)) + bytes(body)
    with pytest.raises(gg.GGraphError, match="cell 0 has position -5"):
        _fresh(tiny).state_load(crafted)


def test_good_state_round_trips(tiny, state):
    s = _fresh(tiny)
    s.state_load(state)
    a = s.eval([7])
    t = _fresh(tiny)
    t.eval([1, 5, 9, 12, 3])
    np.testing.assert_array_equal(a, t.eval([7]))


# ---- prompts ----

def test_api_prompt_errors(tiny):
    s = _fresh(tiny, n_ctx=8)
    with pytest.raises(gg.GGraphError, match="non-empty list of token ids"):
        s.generate([], 3, Sampler(temp=0))
    with pytest.raises(gg.GGraphError, match="context is full: 9 tokens do not fit; 0 of 8 cells"):
        s.generate([1] * 9, 3, Sampler(temp=0))
    with pytest.raises(gg.GGraphError, match="not valid UTF-8 .*'\\\\udcff'"):
        s.tokenizer.encode("a\udcffb")
    with pytest.raises(gg.GGraphError, match="text must be str, got bytes"):
        s.tokenizer.encode(b"\xff")
    assert s.tokenizer.encode("") == []
    with pytest.raises(gg.GGraphError, match="the context is full after 4 generated tokens"):
        s.generate([1] * 5, 10, Sampler(temp=0), stop_at_eog=False)


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("how,pattern", [
    ("empty", "the prompt is empty"),
    ("too long", r"the prompt has \d+ tokens; with -n 4 that exceeds the context of 16"),
    ("argv not utf-8", "the text is not valid UTF-8"),
    ("file not utf-8", r"prompt file .* is not valid UTF-8 \(byte 1\)"),
])
def test_cli_prompt_errors_are_one_line(capsys, tiny_path, tmp_path, how, pattern):
    import re
    args = ["generate", "-m", tiny_path, "-c", 16, "-n", 4, "-t", 1]
    if how == "empty":
        args += ["-p", ""]
    elif how == "too long":
        args += ["-p", "hi " * 40]
    elif how == "argv not utf-8":
        args += ["-p", b"a\xffb".decode("utf-8", "surrogateescape")]
    else:
        f = tmp_path / "p.txt"
        f.write_bytes(b"a\xffb")
        args += ["-f", f]
    rc, out, err = _cli(capsys, *args)
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("ggraph: error: ") and re.search(pattern, last), err


def test_cli_check_bad_file_is_one_line(capsys, tiny_path, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_path.read_bytes()[:300])
    rc, out, err = _cli(capsys, "check", bad)
    assert rc == 1 and err.count("\n") == 1 and err.startswith(f"ggraph: error: {bad}: truncated file")
    rc, out, err = _cli(capsys, "check", tiny_path)
    assert rc == 0 and out.startswith("ok: <ModelFile 'tiny.gguf' llama")
    for cmd in (["generate", "-p", "hi", "-m", bad], ["bench", "-m", bad, "-p", 8, "-n", 2, "-r", 1]):
        rc, out, err = _cli(capsys, *cmd)
        assert rc == 1 and err.strip().splitlines()[-1].startswith(f"ggraph: error: {bad}: truncated file"), err


# ---- threads ----

def test_two_threads_two_sessions_one_model_match_sequential():
    from ggraph.model_files import open_model
    model = open_model("smollm2")
    prompts = ["The capital of France is", "def fibonacci(n):"]

    def run(prompt, out, i):
        s = Session(model, n_ctx=64, n_threads=1)
        out[i] = s.generate(s.tokenizer.encode(prompt), 10, Sampler(temp=0), stop_at_eog=False)

    seq = [None, None]
    for i, p in enumerate(prompts):
        run(p, seq, i)
    par = [None, None]
    threads = [threading.Thread(target=run, args=(p, par, i)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert par == seq and all(len(x) == 10 for x in seq)
