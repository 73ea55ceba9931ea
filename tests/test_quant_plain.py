"""Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1 rows (csrc/quants_plain.c) against
gguf.quants (the numpy oracle of the file formats) and float64 dot products,
on the AVX2 and the scalar paths."""
import gguf
import gguf.quants as gq
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ggraph as gg
from ggraph.backend.ffi import ffi, lib
from ggraph.quant import vec_dot_type

GT = gguf.GGMLQuantizationType
FILE_TYPES = {gg.Q4_0: GT.Q4_0, gg.Q4_1: GT.Q4_1, gg.Q5_0: GT.Q5_0, gg.Q5_1: GT.Q5_1, gg.Q8_0: GT.Q8_0}
ALL_TYPES = list(FILE_TYPES) + [gg.Q8_1]
# (weight type, activation type): ggml-cpu.c's type_traits_cpu vec_dot_type
PAIRS = [(gg.Q4_0, gg.Q8_0), (gg.Q4_1, gg.Q8_1), (gg.Q5_0, gg.Q8_0), (gg.Q5_1, gg.Q8_1), (gg.Q8_0, gg.Q8_0)]
HAS_MIN = {gg.Q4_1, gg.Q5_1}          # blocks with an f16 min m after d
SIMD = [True, False]

# f16 bit patterns that are finite: zeros, subnormals, normals up to +-65504
finite_halves = st.one_of(
    st.sampled_from([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00]),
    st.integers(0, 0xFFFF).filter(lambda h: (h >> 10) & 0x1F != 0x1F))


def _blocks(t, nb: int, seed: int, halves: list[int]) -> np.ndarray:
    """nb random blocks of t (uint8, (nb, type_size)) whose f16 fields (d, and m
    or s where the type has them) cycle through `halves`."""
    b = np.random.default_rng(seed).integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    n_half = 2 if t in HAS_MIN or t is gg.Q8_1 else 1
    h = np.resize(np.array(halves, dtype=np.uint16), nb * n_half).reshape(nb, n_half)
    b[:, :2 * n_half] = h.view(np.uint8)
    return b


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _q8_1_dequantize(b: np.ndarray) -> np.ndarray:
    """Q8_1: x = d * q (s is a by-product for vec_dot); gguf has no decoder for it."""
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    return (b[:, 4:].view(np.int8).astype(np.float32) * d).reshape(-1)


def _q8_1_quantize(x: np.ndarray) -> np.ndarray:
    """ggml's quantize_row_q8_1_ref in numpy: d = amax/127, q = roundf(x/d),
    s = f16(d * sum(q)) with the float (not the f16-rounded) d."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = gq.np_roundf(blocks * idv).astype(np.int8)          # half away from zero, like roundf
    s = (q.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float16)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), s.view(np.uint8), q.view(np.uint8)], axis=1)
    return out.reshape(x.shape[:-1] + (-1,))


# ---------------------------------------------------------------- dequantize

@pytest.mark.parametrize("simd", SIMD, ids=["simd", "scalar"])
@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
@given(nb=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), halves=st.lists(finite_halves, min_size=1, max_size=16))
def test_dequantize_matches_gguf(t, simd, nb, seed, halves):
    b = _blocks(t, nb, seed, halves)
    got = gg.dequantize(b.reshape(-1), t, nb * 32, simd=simd)
    want = _q8_1_dequantize(b) if t is gg.Q8_1 else gq.dequantize(b, FILE_TYPES[t]).reshape(-1)
    # the same IEEE products (and, with a min, sums) in the same order: bit for bit
    np.testing.assert_array_equal(_bits(got), _bits(want))


# ---------------------------------------------------------------- quantize

KINDS = ["normal", "zero", "const", "neg_max", "tiny", "huge", "ties", "wide", "onehot"]


def _block_values(kind: str, rng) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(32) * 10.0 ** rng.uniform(-3, 3)
    if kind == "zero":
        return np.zeros(32)                          # +0.0 (see the -0.0 note below)
    if kind == "const":
        return np.full(32, rng.choice([-1, 1]) * 10.0 ** rng.uniform(-4, 4))
    if kind == "neg_max":                            # the value of largest magnitude is negative
        v = rng.uniform(-1, 1, 32) * 10.0 ** rng.uniform(-2, 2)
        v[rng.integers(32)] = -2 * np.abs(v).max() - 1e-3
        return v
    if kind == "tiny":                               # 1/d stays finite (|max| > ~2.4e-38 * 16)
        return rng.standard_normal(32) * 10.0 ** rng.uniform(-30, -20)
    if kind == "huge":                               # max - min stays finite; f16 d may overflow
        return rng.standard_normal(32) * 10.0 ** rng.uniform(20, 37)
    if kind == "ties":                               # d = 1 for Q8: x*id lands on halves (roundf vs even)
        v = rng.integers(-254, 255, 32) / 2.0
        v[rng.integers(32)] = 127.0
        return v
    if kind == "wide":                               # mixed magnitudes within a block
        return rng.standard_normal(32) * 10.0 ** rng.uniform(-6, 6, 32)
    v = np.zeros(32)                                 # one non-zero element
    v[rng.integers(32)] = rng.standard_normal() * 100
    return v


@pytest.mark.parametrize("simd", SIMD, ids=["simd", "scalar"])
@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=24), nrows=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_quantize_matches_reference(t, simd, kinds, nrows, seed):
    rng = np.random.default_rng(seed)
    x = np.stack([np.concatenate([_block_values(k, rng) for k in kinds]) for _ in range(nrows)]).astype(np.float32)
    got = gg.quantize(x, t, simd=simd)
    want = _q8_1_quantize(x) if t is gg.Q8_1 else gq.quantize(x, FILE_TYPES[t])
    np.testing.assert_array_equal(got, want)


def test_quantize_q4_0_negative_zero_block_follows_ggml():
    """The one place gguf's numpy quantizer and ggml's C reference differ: a
    block of zeros starting with -0.0. ggml's max starts at +0.0, so d = -0.0
    (0x8000); numpy takes x[argmax] = -0.0 and gets +0.0. We follow ggml."""
    x = np.zeros(32, np.float32)
    x[0] = -0.0
    for t in (gg.Q4_0, gg.Q5_0):
        for simd in SIMD:
            assert gg.quantize(x, t, simd=simd)[:2].tolist() == [0x00, 0x80]


@pytest.mark.parametrize("t", [gg.Q8_0, gg.Q8_1], ids=str)
def test_q8_avx2_quantizer_is_the_reference_on_many_ties(t):
    # d = 1 exactly, every value a half-integer: roundf's ties away from zero everywhere
    rng = np.random.default_rng(7)
    x = (rng.integers(-254, 255, (64, 4096)) / 2.0).astype(np.float32)
    x[:, ::32] = 127.0
    a, b = gg.quantize(x, t, simd=True), gg.quantize(x, t, simd=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _q8_1_quantize(x) if t is gg.Q8_1 else gq.quantize(x, GT.Q8_0))


def test_q8_1_s_uses_the_rounded_quants_and_the_float_d():
    x = np.linspace(-3, 5, 32, dtype=np.float32)
    b = gg.quantize(x, gg.Q8_1)
    d = np.float32(np.abs(x).max()) / np.float32(127)
    q = b[4:].view(np.int8).astype(np.int32)
    assert b[2:4].view(np.float16)[0] == np.float16(np.float32(q.sum()) * d)


# ---------------------------------------------------------------- vec_dot

def _vec_dot(t, x: np.ndarray, y: np.ndarray, n: int, simd: bool) -> float:
    out = ffi.new("float *")
    rc = lib.gg_quant_vec_dot(t.id, ffi.from_buffer(x), ffi.from_buffer(y), n, int(simd), out)
    assert rc == 0
    return out[0]


def _halves(b: np.ndarray, off: int) -> np.ndarray:
    return b[:, off:off + 2].copy().view(np.float16).astype(np.float64)[:, 0]


def _ints(t, b: np.ndarray) -> np.ndarray:
    """the integer quants of each block as int64, (nb, 32), offsets included (q - 8, q - 16)"""
    if t in (gg.Q8_0, gg.Q8_1):
        return b[:, -32:].view(np.int8).astype(np.int64)
    qs = b[:, -16:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int64)
    if t in (gg.Q5_0, gg.Q5_1):
        off = 2 if t is gg.Q5_0 else 4
        qh = b[:, off:off + 4].copy().view(np.uint32)[:, 0].astype(np.int64)
        q |= ((qh[:, None] >> np.arange(32)) & 1) << 4
    return q - {gg.Q4_0: 8, gg.Q5_0: 16}.get(t, 0)


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}x{b}" for a, b in PAIRS])
@given(nb=st.one_of(st.integers(1, 20), st.integers(1, 128)), seed=st.integers(0, 2**32 - 1),
       hx=st.lists(finite_halves, min_size=1, max_size=8), hy=st.lists(finite_halves, min_size=1, max_size=8),
       y_from_floats=st.booleans())
def test_vec_dot(pair, nb, seed, hx, hy, y_from_floats):
    t, vt = pair
    n = 32 * nb
    x = _blocks(t, nb, seed, hx)                     # weights: any bytes, any finite scales
    if y_from_floats:                                # activations as mul_mat makes them
        rng = np.random.default_rng(seed + 1)
        y = gg.quantize(rng.standard_normal(n).astype(np.float32) * 10.0 ** rng.uniform(-3, 3), vt).reshape(nb, -1)
    else:                                            # any scales (and Q8_1 s), any quants, except that
        y = _blocks(vt, nb, seed + 1, hy)            # Q8_0 x Q8_0 needs y in [-127, 127] (quants_plain.c)
        if t is gg.Q8_0:
            y[:, -32:] = np.clip(y[:, -32:].view(np.int8), -127, 127).view(np.uint8)

    got = {s: _vec_dot(t, x, y, n, s) for s in SIMD}
    # the AVX2 path rounds exactly like the scalar one (same per-block fma into lane b % 8, same lane sum)
    assert _bits(np.float32(got[True])) == _bits(np.float32(got[False]))
    r = got[True]

    # exact per-block terms: dx*dy*isum (dx*dy of two halves is exact, times an
    # int < 2^19: exact in float64) plus mx*sy for the types with a min
    dx, dy = _halves(x, 0), _halves(y, 0)
    isum = (_ints(t, x) * _ints(vt, y)).sum(axis=1)
    terms = dx * dy * isum
    sy_dev = np.zeros(nb)
    if t in HAS_MIN:
        mx, sy = _halves(x, 2), _halves(y, 2)
        terms = terms + mx * sy
        # Q8_1's s stands for dy * sum(qy) but is rounded to f16 (and made from the unrounded d)
        sy_dev = np.abs(mx) * np.abs(sy - dy * _ints(vt, y).sum(axis=1))
    # float32 accumulation: each lane gets at most 2 fmas per block (nb/8 blocks
    # per lane), then 3 adds in the lane tree: k roundings, |err| <= gamma_k * sum|terms|
    k = 2 * (-(-nb // 8)) + 3
    u = 2.0 ** -24
    bound = k * u / (1 - k * u) * np.abs(terms).sum()
    assert abs(r - terms.sum()) <= bound * 1.0000001 + 1e-300

    # against the float64 dot of the dequantized rows: the same, plus s's rounding,
    # plus the f32 rounding of the dequantized d*q + m (d*q alone is exact: 11 x 8 bits)
    xd = gg.dequantize(x.reshape(-1), t, n).astype(np.float64)
    yd = gg.dequantize(y.reshape(-1), vt, n).astype(np.float64)
    dot64 = float(np.dot(xd, yd))
    x_round = 0.0
    if t in HAS_MIN:
        x_round = 2 * u * float((np.abs(dx[:, None] * _ints(t, x)) + np.abs(mx)[:, None]).reshape(-1) @ np.abs(yd))
    assert abs(r - dot64) <= bound + sy_dev.sum() + x_round + 1e-12 * float(np.abs(xd * yd).sum()) + 1e-300


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}x{b}" for a, b in PAIRS])
def test_vec_dot_long_rows_simd_equals_scalar(pair):
    t, vt = pair
    rng = np.random.default_rng(3)
    for n in (32, 224, 256, 288, 4096):
        x = gg.quantize(rng.standard_normal(n).astype(np.float32), t)
        y = gg.quantize(rng.standard_normal(n).astype(np.float32), vt)
        a, b = _vec_dot(t, x, y, n, True), _vec_dot(t, x, y, n, False)
        assert a == b
        ref = float(np.dot(gg.dequantize(x, t).astype(np.float64), gg.dequantize(y, vt).astype(np.float64)))
        assert abs(a - ref) <= 1e-2 * (1 + abs(ref))    # loose sanity (the tight bound is in test_vec_dot)


def test_vec_dot_types():
    for t, vt in PAIRS:
        assert vec_dot_type(t) is vt
    # ggml's Q8_1 row has no vec_dot: it only holds activations
    with pytest.raises(gg.GGraphError, match="activations only"):
        vec_dot_type(gg.Q8_1)
    y = gg.quantize(np.ones(32, np.float32), gg.Q8_1)
    out = ffi.new("float *")
    assert lib.gg_quant_vec_dot(gg.Q8_1.id, ffi.from_buffer(y), ffi.from_buffer(y), 32, 1, out) \
        == lib.GG_ERR_UNSUPPORTED_TYPE
    assert lib.gg_quant_vec_dot(gg.Q4_0.id, ffi.from_buffer(y), ffi.from_buffer(y), 33, 1, out) \
        == lib.GG_ERR_BAD_INPUT
