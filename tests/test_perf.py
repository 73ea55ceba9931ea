"""`ggraph bench --profile` on the real SmolLM2 (tiny prompt and generation):
every group is reported, the shares add up, every number is finite."""
import json
import math

import numpy as np

import ggraph as gg
from ggraph.cli import main
from ggraph.model_files import open_model
from ggraph.session import Session
from ggraph.tools import perf


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _check_step(step, flash):
    groups = {r["group"] for r in step["rows"]}
    attn = "attention (flash_attn_ext)" if flash else "attention (kq/soft_max/kqv)"
    for g in ("mul_mat Q4_1", "mul_mat Q8_0 (output)", attn, "norms (rms_norm + mul)", "rope",
              "set_rows (KV cache write)", "add", "swiglu", "get_rows", perf.PYTHON):
        assert g in groups, (g, groups)
    # shares: of the summed node times, and of the whole eval() with the Python part
    assert math.isclose(sum(r["share_graph"] for r in step["rows"]), 1.0, abs_tol=1e-6)
    assert math.isclose(sum(r["share_eval"] for r in step["rows"]), 1.0, abs_tol=1e-6)
    for r in step["rows"]:
        assert math.isfinite(r["ms"]) and r["ms"] >= 0 and 0 <= r["share_eval"] <= 1, r
    for k in ("eval_ms", "compute_ms", "python_ms", "unprofiled_ms", "profiled_ms", "node_sum_ms"):
        assert math.isfinite(step[k]) and step[k] > 0, (k, step[k])
    assert math.isclose(step["eval_ms"], step["compute_ms"] + step["python_ms"], rel_tol=1e-6)
    # every kernel node is in exactly one group
    assert sum(r["nodes"] for r in step["rows"]) == step["n_nodes"]


def test_bench_profile_json(capsys):
    rc, out, _ = run(capsys, "bench", "-p", "16", "-n", "4", "-r", "1", "-t", "2", "--profile", "--json")
    assert rc == 0
    data = json.loads(out)
    assert [r["test"] for r in data["rows"]] == ["pp16", "tg4"]
    prof = data["profile"]
    _check_step(prof["decode"], True)
    _check_step(prof["prefill"], True)
    assert prof["decode"]["n_tokens"] == 1 and prof["prefill"]["n_tokens"] == 16
    bw = prof["bandwidth"]
    for k in ("tokens_s", "achieved_gb_s", "achieved_gb_s_compute", "read_gb_s_1", "read_gb_s_n",
              "node_overhead_us"):
        assert math.isfinite(bw[k]) and bw[k] > 0, (k, bw[k])
    # SmolLM2-135M Q4_1 with a Q8_0 tied output: ~92 MiB of weights per token
    assert 85 << 20 < bw["weight_bytes"] < 100 << 20
    # 21 cells (16 prompt + 1 warm-up + 4 timed steps) x 30 layers x (K + V rows of 3 heads x 64, F16)
    assert bw["kv_bytes"] == 30 * 21 * 2 * 3 * 64 * 2


def test_bench_profile_text(capsys):
    rc, out, _ = run(capsys, "bench", "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--profile", "-fa", "off")
    assert rc == 0
    assert "decode step" in out and "prefill micro-batch (8 tokens)" in out
    assert "attention (kq/soft_max/kqv)" in out and "Python (outside C)" in out
    assert "decode bandwidth" in out and "machine read bandwidth" in out and "barrier" in out


def test_profile_without_flash_attention_groups_every_node():
    s = Session(open_model("smollm2"), n_ctx=256, n_threads=2, flash_attn=False)
    r = perf.run_profile(s, 8, 3, reps=1).to_dict()
    _check_step(r["decode"], False)
    _check_step(r["prefill"], False)
    # mul_mat + soft_max reads every one of the n_kv cells
    assert r["bandwidth"]["kv_bytes"] == 30 * r["decode"]["n_kv"] * 2 * 3 * 64 * 2


def test_profile_needs_room_in_the_context(capsys):
    rc, _, err = run(capsys, "bench", "-p", "100", "-n", "50", "-c", "128", "-r", "1", "--profile")
    assert rc != 0 and "context" in err and len(err.strip().splitlines()) >= 1


def test_group_of_simple_graph():
    ctx = gg.Context()
    w = ctx.from_numpy(np.ones((8, 32), np.float32), type="Q8_0")
    x = ctx.from_numpy(np.ones((1, 32), np.float32))
    y = gg.mul_mat(w, gg.rms_norm(x, 1e-5))
    y2 = gg.mul(gg.rms_norm(y, 1e-5), ctx.from_numpy(np.ones(8, np.float32)))
    z = gg.add(y2, y2)
    assert perf.group_of(y, z) == "mul_mat Q8_0"
    assert perf.group_of(y, y) == "mul_mat Q8_0 (output)"
    assert perf.group_of(y2, z) == "norms (rms_norm + mul)"
    assert perf.group_of(z, z) == "add"
    assert perf.group_of(gg.reshape_1d(z, 8), z) is None


def test_read_bandwidth_and_node_overhead_are_positive():
    assert perf.read_bandwidth(1, nbytes=16 << 20, reps=1) > 0
    assert perf.read_bandwidth(2, nbytes=16 << 20, reps=1) > 0
    assert 0 < perf.node_overhead_us(2, n_nodes=50, reps=3) < 1e4
