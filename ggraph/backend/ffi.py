"""The only module that imports the compiled C runtime (ggraph._C)."""
from __future__ import annotations

try:
    from .._C import ffi, lib
except ImportError as e:  # pragma: no cover - a broken install
    raise ImportError(
        "ggraph's C runtime (ggraph._C) is not built. Install the package with "
        "`pip install -e .` (or run `python ggraph/backend/build_ffi.py`)") from e

# op name -> C op id, read from the dispatch table generated from csrc/ops.def
OP_IDS: dict[str, int] = {ffi.string(lib.gg_op_name(i)).decode(): i for i in range(lib.gg_op_count())}

ERRORS = {
    lib.GG_ERR_NO_KERNEL: "no C kernel for this op",
    lib.GG_ERR_UNSUPPORTED_TYPE: "the kernel does not support these types",
    lib.GG_ERR_BAD_INPUT: "the kernel refused its input",
    lib.GG_ERR_THREADS: "could not start worker threads",
    lib.GG_ERR_PYTHON: "a custom op's Python function failed",
}


def has_kernel(op: str) -> bool:
    return op in OP_IDS and bool(lib.gg_op_has_kernel(OP_IDS[op]))


def simd_available() -> bool:
    return bool(lib.gg_simd_available())


def set_use_simd(on: bool) -> None:
    """False forces every kernel onto its scalar path (tests compare both)."""
    lib.gg_set_use_simd(1 if on else 0)


def get_use_simd() -> bool:
    return bool(lib.gg_get_use_simd())
