"""The portable build: without AVX2/FMA/F16C (GGRAPH_PORTABLE=1) the C runtime
compiles its scalar paths only, and every op's cases still match numpy."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import numpy as np, ggraph as gg
from ggraph.ops.registry import OPS
from ggraph.testing import check_graph
assert not gg.simd_available(), "portable build has SIMD"
n = 0
for name, od in sorted(OPS.items()):
    for case in od.cases:
        check_graph([case(gg.Context(), np.random.default_rng(3))], rtol=1e-3, atol=1e-4,
                    threads=(1, 2), simd=(True,), what=name)
        n += 1
print("cases", n)
"""


def test_portable_build_runs_every_case(tmp_path):
    for part in ("ggraph", "csrc"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("_C*.so", "__pycache__", "*.o"))
    env = dict(os.environ, GGRAPH_PORTABLE="1")
    build = subprocess.run([sys.executable, "ggraph/backend/build_ffi.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "warning:" not in build.stderr, build.stderr[-3000:]
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert int(run.stdout.split("cases")[1]) >= 40
