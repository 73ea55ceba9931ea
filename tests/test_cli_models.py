"""The model commands on the real SmolLM2 file: output where a user expects it,
and one clear line with a non-zero exit code for every kind of bad input."""
import json
import math
import re
from pathlib import Path

import pytest

from ggraph.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_streams_text_to_stdout_and_timings_to_stderr(capsys):
    rc, out, err = run(capsys, "generate", "-p", "The capital of France is", "-n", "8", "--temp", "0", "-t", "2")
    assert rc == 0
    assert "Paris" in out
    assert "tokens/s" in err and "tokens/s" not in out
    rc2, out2, _ = run(capsys, "generate", "-p", "The capital of France is", "-n", "8", "--temp", "0", "-t", "1")
    assert out2 == out                                   # greedy: same text at any thread count


def test_generate_with_sampling_is_seeded(capsys):
    args = ("generate", "-p", "Once upon a time", "-n", "12", "--temp", "0.9", "--seed", "7")
    assert run(capsys, *args)[1] == run(capsys, *args)[1]


def test_perplexity_prints_final_estimate(capsys, tmp_path):
    text = "\n\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))
    f = tmp_path / "docs.txt"
    f.write_text(text)
    rc, out, err = run(capsys, "perplexity", "-f", str(f), "-c", "128", "--chunks", "3", "-t", "2")
    assert rc == 0
    m = re.search(r"^Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)$", out, re.M)
    assert m, out
    ppl = float(m.group(1))
    assert math.isfinite(ppl) and 1.5 < ppl < 200, ppl      # technical English for a 135M model


def test_bench_json(capsys):
    rc, out, _ = run(capsys, "bench", "-p", "32", "-n", "4", "-r", "2", "-t", "2", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert [r["test"] for r in rows] == ["pp32", "tg4"]
    assert all(r["t_s"] > 0 for r in rows)


def test_dump_graph(capsys, tmp_path):
    p = tmp_path / "decode.dot"
    rc, _, err = run(capsys, "dump-graph", "-o", str(p), "--layers", "1")
    assert rc == 0 and "decode graph" in err
    text = p.read_text()
    assert "FLASH_ATTN_EXT" in text and "SET_ROWS" in text and "attn_norm-0" in text


@pytest.mark.parametrize("argv,message", [
    (("generate", "-m", "/no/such/model.gguf", "-p", "hi"), "no/such/model.gguf"),
    (("generate", "-m", "no-such-model", "-p", "hi"), "no-such-model"),
    (("generate", "-p", "", "-n", "4"), "prompt is empty"),
    (("generate", "-p", "word " * 200, "-c", "64", "-n", "4"), "exceeds the context"),
    (("generate", "-p", "hi", "-t", "0"), "-t must be >= 1"),
    (("bench", "-r", "0"), "-r must be >= 1"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("ggraph: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_invalid_utf8_prompt_file(capsys, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"hello \xff\xfe world")
    rc, _, err = run(capsys, "generate", "-f", str(f), "-n", "2")
    assert rc == 1 and "not valid UTF-8" in err


def test_corrupted_gguf(capsys, tmp_path):
    from ggraph.model_files import resolve_model
    src = Path(resolve_model("smollm2"))
    bad = tmp_path / "truncated.gguf"
    with open(src, "rb") as f:
        bad.write_bytes(f.read(3_000_000))
    rc, _, err = run(capsys, "generate", "-m", str(bad), "-p", "hi", "-n", "2")
    assert rc == 1 and "Traceback" not in err and "ggraph: error:" in err


def test_unsupported_architecture(capsys, tmp_path):
    import gguf
    p = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(p), "mamba")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rc, _, err = run(capsys, "generate", "-m", str(p), "-p", "hi", "-n", "2")
    assert rc == 1 and "mamba" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("ggraph: error:")]) == 1
