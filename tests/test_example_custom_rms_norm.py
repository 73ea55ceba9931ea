"""examples/custom_rms_norm.py runs: the fused kernel is right, rejects bad input,
and (slow) swaps into the LLaMA builder on SmolLM2."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import ggraph as gg

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_rms_norm.py"


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GGRAPH_KERNEL_CACHE", str(tmp_path_factory.mktemp("example-kernels")))
    spec = importlib.util.spec_from_file_location("custom_rms_norm", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.kernel()                   # compiled into the test's cache, not the user's
    yield mod
    mp.undo()


def test_example_checks_its_kernel(ex, capsys):
    assert ex.main(["--check-only"]) == 0
    assert "matches numpy" in capsys.readouterr().out


def test_fused_equals_the_unfused_pair(ex):
    rng = np.random.default_rng(3)
    ctx = gg.Context()
    x = ctx.from_numpy(rng.standard_normal((5, 67)).astype(np.float32))
    w = ctx.from_numpy(rng.standard_normal(67).astype(np.float32))
    fused, pair = ex.rms_norm_mul(x, w, 1e-5), gg.mul(gg.rms_norm(x, 1e-5), w)
    g = gg.Graph().build_forward_expand(fused.set_output()).build_forward_expand(pair.set_output())
    g.compute(2, profile=True)
    np.testing.assert_allclose(fused.numpy(), pair.numpy(), rtol=1e-5, atol=1e-6)
    assert "custom:rms_norm_mul" in [op for op, _, _ in g.profile_by_op()]


def test_example_rejects_what_its_kernel_cannot_handle(ex):
    ctx = gg.Context()
    x = ctx.new_tensor(gg.F32, [8, 2])
    with pytest.raises(gg.GGraphError, match="w must be one row of x's width 8"):
        ex.rms_norm_mul(x, ctx.new_tensor(gg.F32, [4]), 1e-5)
    with pytest.raises(gg.GGraphError, match="x and w must be F32"):
        ex.rms_norm_mul(ctx.new_tensor(gg.F16, [8, 2]), ctx.new_tensor(gg.F32, [8]), 1e-5)
    with pytest.raises(gg.GGraphError, match="rows of x and w must be contiguous"):
        ex.rms_norm_mul(gg.transpose(ctx.new_tensor(gg.F32, [2, 8])), ctx.new_tensor(gg.F32, [8]), 1e-5)


@pytest.mark.slow
def test_smollm2_with_the_fused_norm(ex):
    r = ex.profile_smollm2(n_threads=2, n_prompt=16, reps=2)
    lg = r.pop("logits")
    assert lg["same_argmax"]
    # the fused run differs from the pair by rounding only: no more than a 2-ulp nudge of the pair does
    assert lg["fused_vs_unfused"] <= 4 * lg["nudged_vs_unfused"] + 1e-3
    for step in ("decode", "prefill"):
        fused, unfused = r[("fused", step)], r[("unfused", step)]
        assert fused["norm_nodes"] * 2 == unfused["norm_nodes"]          # one node where there were two
        assert unfused["nodes"] - fused["nodes"] == fused["norm_nodes"]


@pytest.mark.slow
def test_session_norm_option_is_checked():
    from ggraph.model_files import open_model
    from ggraph.session import Session
    with pytest.raises(gg.GGraphError, match="norm must be a function norm"):
        Session(open_model("smollm2"), n_ctx=32, norm="fused")
