"""gg.CKernel: a user's C kernel, compiled once, run inside the graph's C call.

    k = gg.CKernel('''
        #include "ggraph_kernel.h"
        void twice(const gg_params *p, gg_tensor *dst) {
            const gg_tensor *a = dst->src[0];
            for (int64_t ir = p->ith; ir < gg_nrows(dst); ir += p->nth) { ... }
        }
    ''', "twice")
    y = gg.map_custom1(x, k)

The source is compiled with the compiler and flags that build ggraph's own
runtime (-O3, -march=native, ...) into a shared library under the kernel
cache (GGRAPH_KERNEL_CACHE, default ~/.cache/ggraph/kernels), named by a hash
of the source, the function name, the flags, the compiler and ggraph's kernel
headers: the same kernel is compiled once per machine, and a changed header
compiles it anew. The library is loaded through cffi and the function's
address goes into the node's params: the runtime calls it like any kernel.

ggraph_kernel.h is included before the source (including it again is
harmless), and the source is compiled as the file <name>.c: compiler
messages point at the lines of the string you wrote.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

from cffi import FFI

from .backend.ffi import ffi
from .errors import GGraphError

CSRC = Path(__file__).resolve().parents[1] / "csrc"
KERNEL_HEADERS = ("ggraph_kernel.h", "ggraph_impl.h", "ggraph.h", "ops_custom.h", "ops.def")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CHECK_FILE = "<ggraph signature check>"
_loaded: dict[str, object] = {}          # .so path -> cffi library: never unloaded while nodes may call it
_lock = threading.Lock()


def default_cache_dir() -> Path:
    env = os.environ.get("GGRAPH_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ggraph" / "kernels"


@functools.lru_cache(maxsize=1)
def _base_flags() -> tuple[str, ...]:
    from .backend.build_ffi import compile_args
    return tuple(compile_args())


def headers_version() -> str:
    """A hash of the headers a kernel compiles against: part of every cache key."""
    h = hashlib.sha256()
    for name in KERNEL_HEADERS:
        path = CSRC / name
        if not path.exists():
            raise GGraphError(f"CKernel: ggraph's kernel header {path} is missing; CKernel needs ggraph "
                              f"installed from its source tree (pip install -e)")
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class CKernel:
    """A C function `void name(const gg_params *p, gg_tensor *dst)` compiled from `source`.

    flags: extra compiler arguments (e.g. ["-DBLOCK=64"]), part of the cache
    key. cache_dir: where compiled kernels live (default: GGRAPH_KERNEL_CACHE
    or ~/.cache/ggraph/kernels). Raises GGraphError with the compiler's
    message when the source does not compile.
    """

    def __init__(self, source: str, name: str, *, flags=(), cache_dir=None):
        if not isinstance(source, str) or not source.strip():
            raise GGraphError("CKernel: source must be a non-empty string of C code")
        if not isinstance(name, str) or not _NAME.match(name):
            raise GGraphError(f"CKernel: name must be a C identifier (the kernel function), got {name!r}")
        if isinstance(flags, str):
            flags = shlex.split(flags)
        self.source = source
        self.name = name
        self.flags = tuple(str(f) for f in flags)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cc = os.environ.get("CC", "cc")
        key = hashlib.sha256("\0".join([
            source, name, self.cc, *_base_flags(), "|", *self.flags, headers_version()]).encode()).hexdigest()
        self.key = key[:24]
        self.path = self.cache_dir / f"{name}-{self.key}.so"
        self.compiler_output = ""          # warnings of the compile, also issued as a Python warning
        self.cached = self.path.exists()
        if not self.cached:
            self._compile()
        self._lib = self._load()
        addr = int(self._kffi.cast("uintptr_t", getattr(self._lib, name)))
        self.fn_ptr = ffi.cast("gg_custom_kernel", addr)

    def __repr__(self) -> str:
        return f"<CKernel {self.name} {self.path}>"

    # ---- building ----
    def _wrapper_source(self) -> str:
        # the header, the user's file as it is (so the compiler's lines and
        # carets are the user's), then a check that `name` exists with the
        # kernel signature (a compile error if not)
        return (f'#include "ggraph_kernel.h"\n#include "{self.name}.c"\n'
                f'#line 1 "{_CHECK_FILE}"\n'
                f'static gg_custom_kernel gg__check_{self.name} __attribute__((unused)) = {self.name};\n')

    def _compile(self) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GGraphError(f"CKernel {self.name}: cannot create the kernel cache {self.cache_dir}: {e}") from None
        with tempfile.TemporaryDirectory(prefix="ggraph-kernel-") as tmp:
            Path(tmp, f"{self.name}.c").write_text(self.source)
            wrapper = f"{self.name}.ggraph.c"
            Path(tmp, wrapper).write_text(self._wrapper_source())
            out = f"{self.name}.so"
            cmd = [self.cc, *_base_flags(), "-fPIC", "-shared", "-I", str(CSRC), "-I", ".",
                   "-Werror=incompatible-pointer-types", "-Werror=implicit-function-declaration",
                   *self.flags, wrapper, "-o", out, "-lm", "-Wl,-z,defs"]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            except OSError as e:
                raise GGraphError(f"CKernel {self.name}: cannot run the C compiler {self.cc!r}: {e}") from None
            msg = "\n".join(ln for ln in r.stderr.replace(tmp + "/", "").splitlines()
                            if not ln.startswith(f"In file included from {wrapper}"))
            if r.returncode != 0:
                raise GGraphError(self._explain(msg))
            self.compiler_output = msg
            if msg.strip():
                warnings.warn(f"CKernel {self.name}: the compiler warns:\n{msg.rstrip()}", stacklevel=3)
            # rename into place: a concurrent build of the same kernel writes the same bytes
            fd, part = tempfile.mkstemp(dir=self.cache_dir, suffix=".so.part")
            os.close(fd)
            Path(part).write_bytes(Path(tmp, out).read_bytes())
            os.replace(part, self.path)

    def _explain(self, msg: str) -> str:
        sig = f"void {self.name}(const gg_params *p, gg_tensor *dst)"
        if _CHECK_FILE in msg:
            lines = [ln for ln in msg.splitlines() if _CHECK_FILE not in ln or "error" in ln]
            if re.search(r"undeclared|not declared", msg):
                return (f"CKernel {self.name}: the source defines no function named {self.name!r}; "
                        f"expected {sig}")
            return (f"CKernel {self.name}: {self.name} must have the kernel signature {sig}; "
                    f"the compiler says:\n" + "\n".join(lines))
        return f"CKernel {self.name}: compile failed:\n{msg.rstrip()}"

    def _load(self):
        path = str(self.path)
        with _lock:
            lib = _loaded.get(path)
            self._kffi = _kernel_ffi(self.name)
            if lib is None:
                try:
                    lib = self._kffi.dlopen(path)
                except OSError as e:
                    raise GGraphError(f"CKernel {self.name}: cannot load {path}: {e}") from None
                _loaded[path] = lib
        try:
            getattr(lib, self.name)
        except AttributeError:
            raise GGraphError(f"CKernel {self.name}: {path} exports no symbol {self.name!r} "
                              f"(is the function static?)") from None
        return lib


@functools.lru_cache(maxsize=None)
def _kernel_ffi(name: str) -> FFI:
    k = FFI()
    k.cdef(f"void {name}(void *p, void *dst);")
    return k
