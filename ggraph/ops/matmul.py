"""Matrix products, with ggml's conventions (the contracted dim is dim 0 of both).

    mul_mat(a, b)    a: ne [K, M, ne02, ne03]  (weights: one row of K per output feature)
                     b: ne [K, N, ne12, ne13]  (activations: one column of K per token)
                     -> F32 ne [M, N, ne12, ne13],  dst[m, n] = sum_k a[k, m] * b[k, n]
                     i.e. dst = a^T b per plane, in numpy terms dst = b @ a.T.
                     a broadcasts over dims 2 and 3: ne12 % ne02 == 0, ne13 % ne03 == 0, and
                     plane (i12, i13) of b meets plane (i12 // (ne12/ne02), i13 // (ne13/ne03))
                     of a (grouped-query attention: several query heads share one K/V head).
                     a: F32, F16 or BF16, rows contiguous (nb[0] == type size), not transposed;
                     b: F32 or F16, any layout (views, permutes, transposes).
                     b is converted once per node to a's "vec_dot type" (F32 for F32, F16 for
                     F16, BF16 for BF16) exactly as ggml does: with F16 weights the activations
                     are rounded to f16 before the products; dot products accumulate in f32.
                     Quantized a (block types Q4_0 .. Q6_K, whichever have C rows built in):
                     b is quantized once per node to the type's vec_dot type (Q8_0 for Q4_0,
                     Q5_0, Q8_0; Q8_1 for Q4_1, Q5_1; Q8_K for the K types) and each output is
                     the type's vec_dot of a row of a with a column of converted b. a's rows
                     are whole blocks (nb[0] == bytes per block); b must not be quantized.
                     With 16 or more columns (prefill) and AVX-512 VNNI built in, the same
                     quantized b is multiplied by unpacked tiles of a instead (csrc/qgemm.c):
                     the same products, summed in another order.

    out_prod(a, b)   a: ne [n, m, ne02, ne03], b: ne [p, m, ne12, ne13]
                     -> F32 ne [n, p, ne12, ne13],  dst[i, j] = sum_k a[i, k] * b[j, k]
                     (per plane, with a and b as numpy (m, n) and (m, p) arrays: dst = b.T @ a)
                     a broadcasts over dims 2 and 3 like mul_mat; a: F32 or F16 with contiguous
                     rows, not transposed; b: F32, any layout.
"""
from __future__ import annotations

import numpy as np

from .. import quant
from ..tensor import BF16, F16, F32, Tensor, bf16_to_f32, f32_to_bf16
from ..types import GGType, row_size
from .registry import check, check_tensor, check_types, defop

CACHE_LINE = 64

__all__ = ["mul_mat", "out_prod"]



# src0 type -> the type src1 is converted to before the dot products (ggml's
# vec_dot_type): Q8_0, Q8_1 or Q8_K for the block types (csrc/quants_*.c)
VEC_DOT_TYPE = {F32: F32, F16: F16, BF16: BF16}
VEC_DOT_TYPE.update({t: quant.vec_dot_type(t) for t in quant.WEIGHT_TYPES})
MUL_MAT_B_TYPES = (F32, F16)
PLAIN_A_TYPES = (F32, F16, BF16)


def _mul_mat_converts_b(a: Tensor, b: Tensor) -> bool:
    """True when the kernel copies b into the work buffer (other type or rows not packed)."""
    vdt = VEC_DOT_TYPE[a.type]
    return b.type is not vdt or b.nb[0] != b.type.type_size


def _mul_mat_work_size(node: Tensor, n_threads: int) -> int:
    a, b = node.src[0], node.src[1]
    size = CACHE_LINE                      # the shared chunk counter
    if _mul_mat_converts_b(a, b):
        ncols = b.ne[1] * b.ne[2] * b.ne[3]
        size += ncols * row_size(VEC_DOT_TYPE[a.type], b.ne[0]) + CACHE_LINE
    if a.type.blck_size > 1:
        # many columns of a block type may take the unpacked-tile path (csrc/qgemm.c),
        # which needs room for 8-bit columns and a tile per thread (0 when not built in)
        from ..backend.ffi import lib
        qgemm = lib.gg_qgemm_work_bytes(a.type.id, b.ne[0], b.ne[1] * b.ne[2] * b.ne[3], n_threads)
        size = max(size, CACHE_LINE + qgemm)
    return size


MUL_MAT = defop("mul_mat", work_size=_mul_mat_work_size)
OUT_PROD = defop("out_prod")


def mul_mat(a: Tensor, b: Tensor) -> Tensor:
    op = "mul_mat"
    check_tensor(op, "a", a)
    check_tensor(op, "b", b)
    if a.type.blck_size > 1:
        quants = ", ".join(str(t) for t in VEC_DOT_TYPE if t.blck_size > 1) or "none"
        check(a.type in VEC_DOT_TYPE, op, f"a: {a.type} has no vec_dot in this build (quantized types "
              f"mul_mat can use: {quants})", a)
    else:
        check_types(op, "a", a, PLAIN_A_TYPES)
    check_types(op, "b", b, MUL_MAT_B_TYPES)
    check(a.ne[0] == b.ne[0], op, f"a.ne[0] (K={a.ne[0]}) must equal b.ne[0] (K={b.ne[0]})", a, b)
    check(b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0, op,
          "a must broadcast over b in dims 2 and 3 (b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0)", a, b)
    check(not a.is_transposed(), op, f"a must not be transposed (nb[0] <= nb[1]), got nb={list(a.nb)}", a)
    what = "bytes per block" if a.type.blck_size > 1 else "type size"
    check(a.nb[0] == a.type.type_size, op, f"rows of a must be contiguous (nb[0] == {a.type.type_size}, "
          f"the {what}), got nb={list(a.nb)}", a)
    vdt = VEC_DOT_TYPE[a.type]
    check(b.ne[0] % vdt.blck_size == 0, op, f"K={b.ne[0]} must be a multiple of the {vdt} block size "
          f"{vdt.blck_size} (b is converted to {vdt})", a, b)
    return MUL_MAT.node(F32, [a.ne[1], b.ne[1], b.ne[2], b.ne[3]], [a, b])


def out_prod(a: Tensor, b: Tensor) -> Tensor:
    op = "out_prod"
    check_tensor(op, "a", a)
    check_tensor(op, "b", b)
    check_types(op, "a", a, (F32, F16))
    check_types(op, "b", b, (F32,))
    check(a.ne[1] == b.ne[1], op, f"a.ne[1] ({a.ne[1]}) must equal b.ne[1] ({b.ne[1]})", a, b)
    check(b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0, op,
          "a must broadcast over b in dims 2 and 3 (b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0)", a, b)
    check(not a.is_transposed(), op, f"a must not be transposed (nb[0] <= nb[1]), got nb={list(a.nb)}", a)
    check(a.nb[0] == a.type.type_size, op, f"rows of a must be contiguous (nb[0] == {a.type.type_size}), "
          f"got nb={list(a.nb)}", a)
    return OUT_PROD.node(F32, [a.ne[0], b.ne[0], b.ne[2], b.ne[3]], [a, b])


# ---- numpy references (arrays arrive in (ne3, ne2, ne1, ne0) order) ----

def _decode_q8(blocks: np.ndarray, t: GGType) -> np.ndarray:
    """Values of the activation types (uint8 (..., nblocks * type_size) -> float32):
    each is a scale d times int8 quants, so numpy decodes them exactly even when the
    C runtime has no to_float for them (ggml has none for Q8_1)."""
    nb = blocks.shape[-1] // t.type_size
    bl = blocks.reshape(blocks.shape[:-1] + (nb, t.type_size))
    if t is quant.Q8_K:            # f32 d, 256 int8, 16 int16 bsums
        d = bl[..., :4].copy().view(np.float32)
        q = bl[..., 4:4 + t.blck_size].view(np.int8)
    else:                          # Q8_0: f16 d, 32 int8; Q8_1: f16 d, f16 s, 32 int8
        d = bl[..., :2].copy().view(np.float16).astype(np.float32)
        q = bl[..., t.type_size - t.blck_size:].view(np.int8)
    return (d * q.astype(np.float32)).reshape(blocks.shape[:-1] + (nb * t.blck_size,))


def _round_to(x: np.ndarray, t) -> np.ndarray:
    """x rounded to type t's precision, as the kernel's conversion of b does."""
    if t.blck_size > 1:            # quantized along k (the last axis) and decoded back
        blocks = quant.quantize(np.asarray(x, dtype=np.float32), t)
        if t in (quant.Q8_0, quant.Q8_1, quant.Q8_K):
            return _decode_q8(blocks, t)
        return quant.dequantize(blocks, t)
    if t is F16:
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float32)
    if t is BF16:
        return bf16_to_f32(f32_to_bf16(x))
    return x


def _broadcast_planes(a: np.ndarray, ne2: int, ne3: int) -> np.ndarray:
    """Repeats a's planes so plane (i2, i3) is a's plane (i2 // r2, i3 // r3), as ggml broadcasts."""
    a = np.repeat(a, ne3 // a.shape[0], axis=0)
    return np.repeat(a, ne2 // a.shape[1], axis=1)


@MUL_MAT.reference
def _mul_mat_ref(node, a, b):
    vdt = VEC_DOT_TYPE[node.src[0].type]
    x = _broadcast_planes(a, b.shape[1], b.shape[0]).astype(np.float64)
    y = _round_to(b, vdt).astype(np.float64)
    return y @ np.swapaxes(x, -1, -2)          # (ne13, ne12, N, K) @ (.., K, M) -> (.., N, M)


@OUT_PROD.reference
def _out_prod_ref(node, a, b):
    x = _broadcast_planes(a, b.shape[1], b.shape[0]).astype(np.float64)   # (.., m, n)
    y = b.astype(np.float64)                                              # (.., m, p)
    return np.swapaxes(y, -1, -2) @ x                                     # (.., p, n)


@MUL_MAT.case
def _mul_mat_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 7, 37)).astype(np.float32))
    b = ctx.from_numpy(rng.standard_normal((6, 5, 37)).astype(np.float32))
    return mul_mat(a, b)


@MUL_MAT.case
def _mul_mat_case_f16(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((13, 40)).astype(np.float16))
    b = ctx.from_numpy(rng.standard_normal((3, 40)).astype(np.float32))
    return mul_mat(a, b)


@MUL_MAT.case
def _mul_mat_case_q8_0(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 9, 64)).astype(np.float32), type=quant.Q8_0)
    b = ctx.from_numpy(rng.standard_normal((4, 5, 64)).astype(np.float32))
    return mul_mat(a, b)


@OUT_PROD.case
def _out_prod_case(ctx, rng):
    a = ctx.from_numpy(rng.standard_normal((2, 9, 19)).astype(np.float32))
    b = ctx.from_numpy(rng.standard_normal((4, 9, 5)).astype(np.float32))
    return out_prod(a, b)
