"""The op set, one module per family. Each module's __all__ is its public DSL."""
from . import registry
from .registry import OPS, OpDef, defop, get_op

from . import view as _view
from .view import *  # noqa: F401,F403

from . import attention as _attention, copy as _copy, elementwise as _elementwise, layout as _layout
from . import matmul as _matmul, norm as _norm, reduce as _reduce, rope as _rope
from . import select as _select, softmax as _softmax
from . import custom as _custom
from .attention import *  # noqa: F401,F403
from .copy import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .layout import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .rope import *  # noqa: F401,F403
from .select import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .custom import *  # noqa: F401,F403

# (module names are aliased: `norm` is also an op)
_FAMILIES = [_view, _attention, _copy, _elementwise, _layout, _matmul, _norm, _reduce, _rope,
             _select, _softmax, _custom]
__all__ = [k for m in _FAMILIES for k in m.__all__]
# each public name is defined by one family only
assert len(__all__) == len(set(__all__)), sorted(k for k in __all__ if __all__.count(k) > 1)
