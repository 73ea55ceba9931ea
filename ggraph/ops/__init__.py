"""The op set, one module per family. Each module's __all__ is its public DSL."""
from . import registry
from .registry import OPS, OpDef, defop, get_op

from . import view as _view
from .view import *  # noqa: F401,F403

_FAMILIES = [_view]

# families that may not exist yet while ops are being added are skipped here,
# and tests/test_registry.py reports any op without a kernel or reference
import importlib

for _name in ("copy", "elementwise", "layout", "reduce", "norm", "softmax", "rope",
              "matmul", "select", "attention"):
    try:
        _mod = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_name}":
            raise
        continue
    _FAMILIES.append(_mod)
    globals().update({k: getattr(_mod, k) for k in _mod.__all__})

__all__ = [k for m in _FAMILIES for k in m.__all__]
