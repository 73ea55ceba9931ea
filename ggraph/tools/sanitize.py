"""`make test-asan`: the C runtime built with AddressSanitizer + UndefinedBehaviorSanitizer,
and the op, graph, model and fuzz tests run against it.

    python -m ggraph.tools.sanitize                  # build in build/asan, run the default tests
    python -m ggraph.tools.sanitize tests/test_ops_rope.py -k neox

The normal build (ggraph/_C*.so) is untouched: ggraph, models and csrc are copied
to build/asan, built there with GGRAPH_SANITIZE=1 and put first on PYTHONPATH.
Python itself is not instrumented, so libasan is preloaded (LD_PRELOAD) and leak
detection is off (the interpreter's own allocations are not leaks of ours); any
sanitizer finding aborts the test process, which fails the run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "asan"

DEFAULT_TESTS = ["tests/test_ops_elementwise.py", "tests/test_ops_matmul.py", "tests/test_ops_norm.py",
                 "tests/test_ops_rope.py", "tests/test_ops_softmax.py", "tests/test_ops_attention.py",
                 "tests/test_ops_copy.py", "tests/test_ops_layout.py", "tests/test_ops_reduce.py",
                 "tests/test_ops_select.py", "tests/test_quant_ops.py", "tests/test_quant_plain.py",
                 "tests/test_quant_k.py", "tests/test_graph.py", "tests/test_alloc.py", "tests/test_session.py",
                 "tests/test_gguf_fuzz.py", "tests/test_dsl_fuzz.py", "tests/test_robustness.py"]


def runtime_lib(name: str) -> str:
    cc = os.environ.get("CC", "cc")
    out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    if not out or not os.path.isabs(out):
        raise SystemExit(f"test-asan: the compiler {cc!r} does not know {name} (install gcc's libasan)")
    return out


def build() -> Path:
    if BUILD.exists():
        shutil.rmtree(BUILD)
    ignore = shutil.ignore_patterns("_C*.so", "_C.c", "__pycache__", "*.o")
    shutil.copytree(ROOT / "ggraph", BUILD / "ggraph", ignore=ignore)
    shutil.copytree(ROOT / "models", BUILD / "ggraph" / "models", ignore=ignore)
    shutil.copytree(ROOT / "csrc", BUILD / "csrc", ignore=ignore)
    env = dict(os.environ, GGRAPH_SANITIZE="1")
    r = subprocess.run([sys.executable, "ggraph/backend/build_ffi.py"], cwd=BUILD, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0 or "warning:" in r.stderr:
        sys.stderr.write(r.stderr[-5000:])
        raise SystemExit("test-asan: the sanitizer build failed (or warned)")
    so = next((BUILD / "ggraph").glob("_C*.so"))
    syms = subprocess.run(["nm", "-D", str(so)], capture_output=True, text=True).stdout
    if "__asan_report" not in syms or "__ubsan_handle" not in syms:
        raise SystemExit(f"test-asan: {so} is not instrumented (no __asan_report/__ubsan_handle symbols)")
    return BUILD


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    build()
    is_test = [a.split("::")[0].endswith(".py") or (ROOT / a).is_dir() for a in args]
    tests = [a for a, t in zip(args, is_test) if t] or [t for t in DEFAULT_TESTS if (ROOT / t).exists()]
    opts = [a for a, t in zip(args, is_test) if not t]
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(BUILD)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               LD_PRELOAD=runtime_lib("libasan.so"),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    # run from BUILD: the current directory comes first on sys.path, and it must not be ROOT
    check = subprocess.run([sys.executable, "-c", "import ggraph, sys; print(ggraph.__file__)"],
                           env=env, cwd=BUILD, capture_output=True, text=True)
    if not check.stdout.startswith(str(BUILD)):
        sys.stderr.write(check.stdout + check.stderr)
        raise SystemExit("test-asan: the sanitizer build is not the ggraph Python imports")
    print(f"test-asan: ggraph from {BUILD}, LD_PRELOAD={env['LD_PRELOAD']}", flush=True)
    tests = [str((ROOT / t).resolve()) if not os.path.isabs(t) else t for t in tests]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), *opts, *tests]
    return subprocess.run(cmd, env=env, cwd=BUILD).returncode


if __name__ == "__main__":
    sys.exit(main())
