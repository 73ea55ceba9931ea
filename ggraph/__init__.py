"""ggraph: ggml-style computation graphs built in Python, run by a C runtime.

    import ggraph as gg
    ctx = gg.Context()
    x = ctx.new_tensor(gg.F32, [32, 8])       # ne in ggml order: ne[0] fastest
    y = gg.soft_max_ext(gg.mul_mat(w, x), None, 0.125, 0.0)
    g = gg.Graph(); g.build_forward_expand(y); g.compute(n_threads=2)
"""
from .errors import GGraphError
from .types import BF16, F16, F32, I32, GGType, as_type, blck_size, row_size, type_size
from .tensor import (Tensor, element_size, format_name, is_contiguous, nbytes, nelements, nrows,
                     set_input, set_name, set_output)
from .context import Context
from .graph import Graph, default_threads
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all
from .backend.ffi import get_use_simd, set_use_simd, simd_available, simd_features
from .ckernel import CKernel
from . import testing
from .quant import (Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, Q8_1, Q8_K, dequantize,
                    quantize)

__version__ = "0.1.0"

__all__ = ["GGraphError", "GGType", "F32", "F16", "BF16", "I32", "as_type", "type_size", "blck_size",
           "row_size", "Tensor", "nelements", "nrows", "nbytes", "element_size", "is_contiguous",
           "set_name", "format_name", "set_input", "set_output", "Context", "Graph", "default_threads", "simd_available",
           "simd_features", "set_use_simd", "get_use_simd", "quantize", "dequantize", "CKernel", "testing",
           "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
# `from ggraph import *` leaves Python's own sum/abs alone; gg.sum and gg.abs are ggml's
__all__ += [name for name in _ops_all if name not in ("sum", "abs")]
