"""Builds ggraph._C, the C runtime and kernels, through cffi (API mode).

Run by setuptools at install time (setup.py: cffi_modules), or by hand:
    python ggraph/backend/build_ffi.py      # builds ggraph/_C*.so in place

cffi reads csrc/ggraph.h and every csrc/ops_*.h (the params structs) with
preprocessor lines dropped, so those headers hold plain declarations only.

Set GGRAPH_PORTABLE=1 to build without -march=native: the kernels then take
their scalar paths, which is what a machine without AVX2/FMA/F16C runs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"


def cdef_text() -> str:
    headers = [CSRC / "ggraph.h"] + sorted(CSRC.glob("ops_*.h"))
    out = []
    for h in headers:
        text = h.read_text()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("#"):
                m = re.match(r"#define\s+(\w+)\s+(-?\d+)\s*$", s)
                if m:
                    out.append(f"#define {m.group(1)} {m.group(2)}")
                continue
            out.append(re.sub(r"//.*", "", line))
    return "\n".join(out)


def _compiler_accepts(flag: str) -> bool:
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d, "t.c")
        src.write_text("int main(void) { return 0; }\n")
        r = subprocess.run([cc, flag, str(src), "-o", str(Path(d, "t"))], capture_output=True)
        return r.returncode == 0


def compile_args() -> list[str]:
    args = ["-O3", "-std=gnu11", "-pthread", "-fno-strict-aliasing", "-Wall", "-Wextra",
            "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    if os.environ.get("GGRAPH_PORTABLE") != "1" and _compiler_accepts("-march=native"):
        args.append("-march=native")
    if os.environ.get("GGRAPH_SANITIZE") == "1":
        args += SANITIZE_FLAGS + ["-fno-omit-frame-pointer", "-g"]
    return args


# the C side of map_custom with a Python function calls back into Python here
# (ggraph/ops/custom.py defines it); "+C" makes it callable from ops_custom.c
PYTHON_CALLBACKS = 'extern "Python+C" int gg_custom_py_call(const gg_params *p, gg_tensor *dst, int32_t slot);'

# GGRAPH_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer, any finding aborts
# (ggraph/tools/sanitize.py builds this in build/asan and runs tests under it)
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def link_args() -> list[str]:
    return ["-pthread", "-lm"] + (SANITIZE_FLAGS if os.environ.get("GGRAPH_SANITIZE") == "1" else [])


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.cdef(PYTHON_CALLBACKS)
ffibuilder.set_source(
    "ggraph._C",
    '#include "ggraph.h"\n' + "".join(f'#include "{h.name}"\n' for h in sorted(CSRC.glob("ops_*.h"))),
    sources=[str(p) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC)],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
    depends=[str(p) for p in sorted(CSRC.glob("*.h")) + [CSRC / "ops.def"]],
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), target=None, verbose=True)
    # place the module next to the package sources
    built = list((ROOT / "build" / "cffi").glob("ggraph/_C*.so"))
    for stale in (ROOT / "ggraph").glob("_C*.so"):     # an older build would shadow this one
        stale.unlink()
    for so in built:
        dst = ROOT / "ggraph" / so.name
        dst.write_bytes(so.read_bytes())
        print("built", dst, file=sys.stderr)
