"""Elementwise ops: binary with broadcasting, scale, clamp, unary maps, swiglu.

    add(a, b) sub(a, b) mul(a, b) div(a, b)   b is repeated over a: each a.ne[i] must be a
                                               multiple of b.ne[i] (ggml_can_repeat)
    add1(a, b)                                 b holds one value, added to every element
    scale(a, s) / scale_bias(a, s, b)          a*s (+ b)
    clamp(a, min, max)                         max(min(x, max), min); NaN becomes max, as in ggml
    sqr sqrt log sin cos exp neg abs tanh sigmoid relu gelu silu   (a)
    swiglu(a)          silu(a[:n]) * a[n:2n] per row, n = a.ne0 // 2; result ne0 = n
    swiglu_swapped(a)  silu(a[n:2n]) * a[:n]
    swiglu_split(a, b) silu(a) * b, a and b of one type and shape

Types, as ggml's CPU backend: the result has a's type and ne (swiglu: ne0
halved) and is contiguous.
    binary, add1      a F32, F16 or BF16; b F32 or a's type
    unary             F32, F16, BF16 (ggml has no BF16 silu/gelu on the CPU; here it is free)
    clamp, swiglu     F32, F16
    scale             F32 (ggml's CPU scale is F32 only)
Every input may have any layout (gapped, permuted, transposed); the kernels
work in f32 and round once to the result type.

Numerics: gelu is ggml's tanh approximation computed in f32 (ggml's CPU
backend looks F32 gelu up in an F16 table; that table's rounding, ~1e-3
relative, is not reproduced). exp, sigmoid, silu, gelu and swiglu use a
vectorised exp on the AVX2 path, within about 1 ulp of libm's expf.

ggml's clamp returns a view of a and so overwrites it; here clamp returns a
new tensor, which the allocator places over a when nothing else reads a.
"""
from __future__ import annotations

import numpy as np

from ..tensor import BF16, F16, F32, Tensor
from .registry import as_float, can_repeat, check, check_tensor, check_types, defop

__all__ = ["add", "sub", "mul", "div", "add1", "scale", "scale_bias", "clamp",
           "sqr", "sqrt", "log", "sin", "cos", "exp", "neg", "abs", "tanh", "sigmoid", "relu", "gelu", "silu",
           "swiglu", "swiglu_swapped", "swiglu_split"]

FLOAT_TYPES = (F32, F16, BF16)


def _scratch_bytes(n_floats: int) -> int:
    """Per-thread scratch (csrc/ops_elementwise.c: gg_ew_scratch)."""
    return (n_floats * 4 + 63) // 64 * 64 + 64


def _ws_binary(node: Tensor, n_threads: int) -> int:
    return n_threads * _scratch_bytes(node.src[0].ne[0] + node.src[1].ne[0])


def _ws_unary(node: Tensor, n_threads: int) -> int:
    return n_threads * _scratch_bytes(node.src[0].ne[0])


def _ws_swiglu(node: Tensor, n_threads: int) -> int:
    return n_threads * _scratch_bytes(2 * node.ne[0])


# ---- binary ----

ADD = defop("add", inplace=True, work_size=_ws_binary)
SUB = defop("sub", inplace=True, work_size=_ws_binary)
MUL = defop("mul", inplace=True, work_size=_ws_binary)
DIV = defop("div", inplace=True, work_size=_ws_binary)
ADD1 = defop("add1", inplace=True, work_size=_ws_binary)


def _check_binary_types(op: str, a: Tensor, b: Tensor) -> None:
    check_tensor(op, "a", a)
    check_tensor(op, "b", b)
    check_types(op, "a", a, FLOAT_TYPES)
    allowed = "F32" if a.type is F32 else f"F32 or {a.type} (the type of a)"
    check(b.type is F32 or b.type is a.type, op, f"b must be {allowed}", a, b)


def _binary(opdef, op: str, a: Tensor, b: Tensor) -> Tensor:
    _check_binary_types(op, a, b)
    check(can_repeat(b, a), op, "b must broadcast over a (each a.ne[i] a multiple of b.ne[i])", a, b)
    return opdef.node(a.type, a.ne, [a, b])


def add(a: Tensor, b: Tensor) -> Tensor:
    return _binary(ADD, "add", a, b)


def sub(a: Tensor, b: Tensor) -> Tensor:
    return _binary(SUB, "sub", a, b)


def mul(a: Tensor, b: Tensor) -> Tensor:
    return _binary(MUL, "mul", a, b)


def div(a: Tensor, b: Tensor) -> Tensor:
    return _binary(DIV, "div", a, b)


def add1(a: Tensor, b: Tensor) -> Tensor:
    _check_binary_types("add1", a, b)
    check(b.nelements() == 1, "add1", "b must hold a single value", a, b)
    return ADD1.node(a.type, a.ne, [a, b])


def _repeat_to(b: np.ndarray, shape) -> np.ndarray:
    """b tiled over a 4-d shape whose sizes are multiples of b's (ggml's broadcast)."""
    return np.tile(b, tuple(s // t for s, t in zip(shape, b.shape)))


def _binary_ref(fn):
    def ref(node, a, b):
        return fn(a.astype(np.float64), _repeat_to(b, a.shape).astype(np.float64))
    return ref


ADD.reference(_binary_ref(np.add))
SUB.reference(_binary_ref(np.subtract))
MUL.reference(_binary_ref(np.multiply))
DIV.reference(_binary_ref(np.divide))


@ADD1.reference
def _add1_ref(node, a, b):
    return a.astype(np.float64) + np.float64(b.reshape(-1)[0])


# ---- scale, clamp ----

SCALE = defop("scale", params="gg_scale_params", inplace=True, work_size=_ws_unary)
CLAMP = defop("clamp", params="gg_clamp_params", inplace=True, work_size=_ws_unary)


def scale(a: Tensor, s: float) -> Tensor:
    return _scale("scale", a, s, 0.0)


def scale_bias(a: Tensor, s: float, b: float) -> Tensor:
    return _scale("scale_bias", a, s, b)


def _scale(op: str, a: Tensor, s, b) -> Tensor:
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32,))
    return SCALE.node(a.type, a.ne, [a], s=as_float(op, "s", s), b=as_float(op, "b", b))


@SCALE.reference
def _scale_ref(node, a):
    # f32 params, as the kernel sees them
    s, b = np.float32(node.params["s"]), np.float32(node.params["b"])
    return a.astype(np.float64) * np.float64(s) + np.float64(b)


def clamp(a: Tensor, min: float, max: float) -> Tensor:  # noqa: A002 (ggml's names)
    check_tensor("clamp", "a", a)
    check_types("clamp", "a", a, (F32, F16))
    return CLAMP.node(a.type, a.ne, [a], min=as_float("clamp", "min", min), max=as_float("clamp", "max", max))


@CLAMP.reference
def _clamp_ref(node, a):
    lo, hi = np.float32(node.params["min"]), np.float32(node.params["max"])
    t = np.where(a < hi, a, hi)          # ggml's MIN(x, max): NaN gives max
    return np.where(t > lo, t, lo)


# ---- unary ----

def _gelu64(x):
    # 0.5*x*(1 + tanh(u)) written as x / (1 + e^(-2u)): the same function, without the
    # cancellation of 1 + tanh(u) that loses every digit, even in float64, below x ~ -6
    u = np.sqrt(2.0 / np.pi) * x * (1.0 + 0.044715 * x * x)
    return x / (1.0 + np.exp(-2.0 * u))


def _silu64(x):
    return x / (1.0 + np.exp(-x))


_UNARY_REFS = {
    "sqr": lambda x: x * x,
    "sqrt": np.sqrt,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "exp": np.exp,
    "neg": np.negative,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.where(x > 0, x, 0.0),     # NaN -> 0, as ggml's x > 0 ? x : 0
    "gelu": _gelu64,
    "silu": _silu64,
}

UNARY_OPS = {name: defop(name, inplace=True, work_size=_ws_unary) for name in _UNARY_REFS}


def _unary(op: str, a: Tensor) -> Tensor:
    check_tensor(op, "a", a)
    check_types(op, "a", a, FLOAT_TYPES)
    return UNARY_OPS[op].node(a.type, a.ne, [a])


def _register_unary_ref(name: str, fn) -> None:
    UNARY_OPS[name].reference(lambda node, a: fn(a.astype(np.float64)))


for _name, _fn in _UNARY_REFS.items():
    _register_unary_ref(_name, _fn)


def sqr(a: Tensor) -> Tensor:
    return _unary("sqr", a)


def sqrt(a: Tensor) -> Tensor:
    return _unary("sqrt", a)


def log(a: Tensor) -> Tensor:
    return _unary("log", a)


def sin(a: Tensor) -> Tensor:
    return _unary("sin", a)


def cos(a: Tensor) -> Tensor:
    return _unary("cos", a)


def exp(a: Tensor) -> Tensor:
    return _unary("exp", a)


def neg(a: Tensor) -> Tensor:
    return _unary("neg", a)


def abs(a: Tensor) -> Tensor:  # noqa: A001 (ggml's name)
    return _unary("abs", a)


def tanh(a: Tensor) -> Tensor:
    return _unary("tanh", a)


def sigmoid(a: Tensor) -> Tensor:
    return _unary("sigmoid", a)


def relu(a: Tensor) -> Tensor:
    return _unary("relu", a)


def gelu(a: Tensor) -> Tensor:
    """ggml_gelu: the tanh approximation 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))."""
    return _unary("gelu", a)


def silu(a: Tensor) -> Tensor:
    return _unary("silu", a)


# ---- swiglu ----

SWIGLU = defop("swiglu", params="gg_swiglu_params", inplace=True, work_size=_ws_swiglu)


def _swiglu(op: str, a: Tensor, b: Tensor | None, swapped: bool) -> Tensor:
    check_tensor(op, "a", a)
    check_types(op, "a", a, (F32, F16))
    if b is None:
        check(a.ne[0] >= 2, op, "a.ne[0] must be at least 2 (a row holds both halves)", a)
        ne = (a.ne[0] // 2, a.ne[1], a.ne[2], a.ne[3])
        return SWIGLU.node(a.type, ne, [a], swapped=int(swapped))
    check_tensor(op, "b", b)
    check(b.type is a.type, op, "a and b must have the same type", a, b)
    check(b.ne == a.ne, op, "a and b must have the same shape", a, b)
    return SWIGLU.node(a.type, a.ne, [a, b], swapped=0)


def swiglu(a: Tensor) -> Tensor:
    """silu of the first half of each row times the second half: result ne0 = a.ne0 // 2
    (an odd last element is ignored, as in ggml)."""
    return _swiglu("swiglu", a, None, False)


def swiglu_swapped(a: Tensor) -> Tensor:
    """silu of the second half of each row times the first half."""
    return _swiglu("swiglu_swapped", a, None, True)


def swiglu_split(a: Tensor, b: Tensor) -> Tensor:
    """silu(a) * b."""
    return _swiglu("swiglu_split", a, b, False)


@SWIGLU.reference
def _swiglu_ref(node, a, b=None):
    x = a.astype(np.float64)
    if b is not None:
        return _silu64(x) * b.astype(np.float64)
    nc = node.ne[0]
    gate, up = x[..., :nc], x[..., nc:2 * nc]
    if node.params["swapped"]:
        gate, up = up, gate
    return _silu64(gate) * up


# ---- examples ----

def _rand(ctx, rng, shape, type=F32):
    return ctx.from_numpy(rng.standard_normal(shape).astype(np.float32), type=type)


@ADD.case
def _add_case(ctx, rng):
    return add(_rand(ctx, rng, (3, 4, 8)), _rand(ctx, rng, (3, 1, 8)))


@SUB.case
def _sub_case(ctx, rng):
    return sub(_rand(ctx, rng, (5, 16), F16), _rand(ctx, rng, (1, 16)))


@MUL.case
def _mul_case(ctx, rng):
    """rms_norm's weight: a row vector times every row."""
    return mul(_rand(ctx, rng, (2, 7, 32)), _rand(ctx, rng, (32,)))


@DIV.case
def _div_case(ctx, rng):
    b = ctx.from_numpy(rng.uniform(0.5, 2.0, (4, 1)).astype(np.float32))
    return div(_rand(ctx, rng, (4, 9)), b)


@ADD1.case
def _add1_case(ctx, rng):
    return add1(_rand(ctx, rng, (3, 10)), _rand(ctx, rng, (1,)))


@SCALE.case
def _scale_case(ctx, rng):
    return scale_bias(_rand(ctx, rng, (6, 20)), 0.125, -1.5)


@CLAMP.case
def _clamp_case(ctx, rng):
    return clamp(_rand(ctx, rng, (5, 24)), -0.5, 0.75)


def _unary_case(name):
    def case(ctx, rng):
        x = rng.standard_normal((3, 37)).astype(np.float32)
        if name in ("sqrt", "log"):
            x = np.abs(x) + 0.01
        return _unary(name, ctx.from_numpy(x))
    return case


for _name in _UNARY_REFS:
    UNARY_OPS[_name].case(_unary_case(_name))


@SWIGLU.case
def _swiglu_case(ctx, rng):
    return swiglu(_rand(ctx, rng, (4, 2 * 24)))


@SWIGLU.case
def _swiglu_split_case(ctx, rng):
    return swiglu_split(_rand(ctx, rng, (4, 24), F16), _rand(ctx, rng, (4, 24), F16))
