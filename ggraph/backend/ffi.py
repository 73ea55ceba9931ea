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


def simd_features() -> str:
    """The SIMD paths compiled into this build, for banners and benchmark headers."""
    if not simd_available():
        return "scalar only"
    parts = ["AVX2/FMA/F16C"]
    if lib.gg_qgemm_built():
        parts.append("AVX-512 VNNI quantized tiles")
    if lib.gg_qgemv_built():
        parts.append("AVX-512 VNNI matrix-vector")
    if lib.gg_fa_tiled_built():
        parts.append("AVX-512 tiled attention")
    return " + ".join(parts)


def set_kernel_path(name: str, on: bool) -> bool:
    """Turns one of the SIMD kernels' fast paths on or off, to measure what it buys
    ("qgemm": quantized matrix-matrix tiles, "qgemv": quantized matrix-vector rows,
    "fa_tiled": flash attention's AVX-512 block kernels, tiled and decode).
    Results stay correct either way. Returns the previous setting."""
    switches = {"qgemm": lib.gg_qgemm_enable, "qgemv": lib.gg_qgemv_enable, "fa_tiled": lib.gg_fa_tiled_enable}
    if name not in switches:
        from ..errors import GGraphError
        raise GGraphError(f"set_kernel_path: unknown path {name!r}; known: {', '.join(switches)}")
    return bool(switches[name](1 if on else 0))


def set_use_simd(on: bool) -> None:
    """False forces every kernel onto its scalar path (tests compare both)."""
    lib.gg_set_use_simd(1 if on else 0)


def get_use_simd() -> bool:
    return bool(lib.gg_get_use_simd())
