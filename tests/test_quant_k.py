"""The K block types (Q2_K..Q6_K) and the activation type Q8_K: dequantize
against gguf's numpy oracle, the reference quantizers' round-trip error and
bytes, Q8_K's quantize, and vec_dot with Q8_K on the scalar and AVX2 paths."""
import hashlib

import gguf
import gguf.quants
import numpy as np
import pytest
from hypothesis import given, strategies as st

import ggraph as gg
from ggraph.backend.ffi import ffi, lib
from ggraph.quant import vec_dot_type

K_TYPES = [gg.Q2_K, gg.Q3_K, gg.Q4_K, gg.Q5_K, gg.Q6_K]
IDS = [str(t) for t in K_TYPES]
PATHS = [True, False]          # simd, scalar

# byte offsets of the f16 super-block scales: (d, dmin or None)
F16_FIELDS = {gg.Q2_K: (80, 82), gg.Q3_K: (108, None), gg.Q4_K: (0, 2), gg.Q5_K: (0, 2), gg.Q6_K: (208, None)}

# f16 scales: zeros, subnormals, the largest finite, and ordinary values (no inf/NaN)
EXTREME_F16 = [0.0, -0.0, 2.0 ** -24, -(2.0 ** -24), 6.1e-5, 65504.0, -65504.0, 1.0, -1.0]
f16_values = st.one_of(st.sampled_from(EXTREME_F16),
                       st.floats(-65504, 65504, allow_nan=False, width=16))


def _gguf_type(t):
    return getattr(gguf.GGMLQuantizationType, str(t))


def _random_blocks(t, nblocks, seed, draw_f16):
    """Random bytes with the f16 scale fields set to drawn finite values."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (nblocks, t.type_size), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        if off is not None:
            vals = np.array([draw_f16() for _ in range(nblocks)], dtype=np.float16)
            b[:, off:off + 2] = vals.view(np.uint8).reshape(nblocks, 2)
    return b


@pytest.mark.parametrize("t", K_TYPES, ids=IDS)
@given(data=st.data(), nblocks=st.integers(1, 6), seed=st.integers(0, 2 ** 32 - 1))
def test_dequantize_matches_gguf(t, data, nblocks, seed):
    b = _random_blocks(t, nblocks, seed, lambda: data.draw(f16_values))
    ref = gguf.quants.dequantize(b, _gguf_type(t)).reshape(-1)
    assert np.isfinite(ref).all()
    for simd in PATHS:
        # exact: the same f32 products and differences as gguf's numpy code
        np.testing.assert_array_equal(gg.dequantize(b, t, nblocks * 256, simd=simd), ref)


# RMS(round-trip error) / RMS(x) over a 4 x 4096 input, measured over 1000
# seeds: Gaussian, and Student-t with 3 degrees of freedom as the heavy-tailed
# case, scaled by 10^U(-1, 3). Mean (max) on Gaussian: Q2_K 0.2965 (0.3046),
# Q3_K 0.1509 (0.1536), Q4_K 0.0713 (0.0728), Q5_K 0.0361 (0.0368),
# Q6_K 0.0177 (0.0181), Q8_K 0.0070 (0.0073); on t3: Q2_K 0.351 (0.382),
# Q3_K 0.189 (0.199), Q4_K 0.0923 (0.0980), Q5_K 0.0469 (0.0489),
# Q6_K 0.0255 (0.0288), Q8_K 0.0171 (0.0305). The bytes equal those of ggml's
# quantize_row_*_K_ref (test_quantize_matches_ggml_reference), so these are
# also the errors ggml's reference achieves. Bounds: ~5-15% above the maxima.
# (Much smaller data, max|x| below ~0.25, loses precision to f16 subnormal
# super-block scales: a property of the format, not tested here.)
RT_BOUND = {
    "gauss": {gg.Q2_K: 0.32, gg.Q3_K: 0.16, gg.Q4_K: 0.076, gg.Q5_K: 0.0385, gg.Q6_K: 0.019, gg.Q8_K: 0.0078},
    "t3": {gg.Q2_K: 0.41, gg.Q3_K: 0.215, gg.Q4_K: 0.105, gg.Q5_K: 0.053, gg.Q6_K: 0.032, gg.Q8_K: 0.036},
}


@pytest.mark.parametrize("t", K_TYPES + [gg.Q8_K], ids=IDS + ["Q8_K"])
@pytest.mark.parametrize("kind", ["gauss", "t3"])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_quantize_round_trip(t, kind, seed):
    rng = np.random.default_rng(seed)
    shape = (4, 4096)
    x = rng.standard_normal(shape) if kind == "gauss" else rng.standard_t(3, shape)
    x = (x * 10.0 ** rng.uniform(-1, 3)).astype(np.float32)
    b = gg.quantize(x, t)
    # the quantizers are scalar on both paths: identical bytes
    np.testing.assert_array_equal(gg.quantize(x, t, simd=False), b)
    y = gg.dequantize(b, t)
    assert y.shape == x.shape
    err = np.sqrt(np.mean((y.astype(np.float64) - x) ** 2) / np.mean(x.astype(np.float64) ** 2))
    assert err <= RT_BOUND[kind][t], f"{t} {kind}: relative RMS error {err:.4f}"


@pytest.mark.parametrize("t", K_TYPES + [gg.Q8_K], ids=IDS + ["Q8_K"])
def test_quantize_zeros(t):
    x = np.zeros((2, 512), np.float32)
    x[1, :256] = 0.5            # a zero block next to a non-zero one
    for simd in PATHS:
        y = gg.dequantize(gg.quantize(x, t, simd=simd), t, simd=simd)
        np.testing.assert_array_equal(y[0], 0)
        np.testing.assert_array_equal(y[1, 256:], 0)


def _golden_input():
    rng = np.random.default_rng(20240601)
    x = np.concatenate([rng.standard_normal(1024) * 3, rng.standard_t(2, 1024), np.zeros(256),
                        rng.standard_normal(512) * np.repeat(10.0 ** rng.uniform(-1, 3, 32), 16)])
    x[rng.random(x.size) < 0.1] = 0
    return x.astype(np.float32)


# sha256 (first 32 hex digits) of ggml's quantize_row_<type>_ref output for
# _golden_input(), from ggml's src/ggml-quants.c built with gcc -O3 for x86-64
GGML_REF_SHA = {
    "Q2_K": "a53e528f965fda153766c007bfdc189c",
    "Q3_K": "1f79a5f99a98cc5b6bad2f62209bad9c",
    "Q4_K": "585be1cbc9d2fae0c086186fc41e21d7",
    "Q5_K": "240a96e05706a6725fffcc0f8d7679a3",
    "Q6_K": "ec09206dff9e062e8269053f52bbdb8d",
    "Q8_K": "8e7f88a2bfc47c28aecb97fa42b81d11",
}


@pytest.mark.parametrize("name", sorted(GGML_REF_SHA))
def test_quantize_matches_ggml_reference(name):
    b = gg.quantize(_golden_input(), gg.as_type(name))
    assert hashlib.sha256(b.tobytes()).hexdigest()[:32] == GGML_REF_SHA[name]


Q8K_DTYPE = np.dtype([("d", "<f4"), ("qs", "i1", 256), ("bsums", "<i2", 16)])


@given(seed=st.integers(0, 2 ** 32 - 1), nblk=st.integers(1, 4), scale=st.floats(1e-3, 1e3))
def test_q8_K_quantize(seed, nblk, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(4, nblk * 256) * scale).astype(np.float32)
    blk = gg.quantize(x, gg.Q8_K).view(Q8K_DTYPE)
    assert gg.type_size(gg.Q8_K) == Q8K_DTYPE.itemsize
    for i, xb in enumerate(x.reshape(nblk, 256)):
        mx = xb[np.argmax(np.abs(xb))]                 # the signed value of largest magnitude
        iscale = np.float32(-127) / mx
        q = np.minimum(127, np.rint(iscale * xb))      # ties to even, as the reference
        assert blk["d"][i] == np.float32(1) / iscale   # d = max / -127
        np.testing.assert_array_equal(blk["qs"][i], q)
        np.testing.assert_array_equal(blk["bsums"][i], q.reshape(16, 16).sum(1))
    np.testing.assert_array_equal(gg.dequantize(blk.view(np.uint8), gg.Q8_K),
                                  blk["d"].repeat(256) * blk["qs"].ravel().astype(np.float32))


def _vec_dot(t, x, y, n, simd):
    out = ffi.new("float *")
    rc = lib.gg_quant_vec_dot(t.id, ffi.from_buffer(x), ffi.from_buffer(y), n, int(simd), out)
    assert rc == lib.GG_OK
    return float(out[0])


@pytest.mark.parametrize("t", K_TYPES, ids=IDS)
@given(data=st.data(), nblk=st.integers(1, 16), seed=st.integers(0, 2 ** 32 - 1), quantized=st.booleans())
def test_vec_dot(t, data, nblk, seed, quantized):
    n = nblk * 256
    rng = np.random.default_rng(seed)
    if quantized:       # weights as quantized from data
        xb = gg.quantize(rng.standard_normal(n).astype(np.float32), t)
    else:               # any bits, f16 scales of ordinary size
        xb = _random_blocks(t, nblk, seed, lambda: data.draw(st.floats(-4, 4, width=16))).ravel()
    yb = gg.quantize((rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2)).astype(np.float32), gg.Q8_K)
    xf = gg.dequantize(xb, t).astype(np.float64)
    yf = gg.dequantize(yb, gg.Q8_K).astype(np.float64)
    # x = a - b with a the d*scale*q part and b the dmin*min part: both are
    # summed separately, so errors scale with sum (|a| + |b|) |y|
    d_off, m_off = F16_FIELDS[t]
    mag = np.abs(xf)
    if m_off is not None:
        xa = xb.reshape(nblk, -1).copy()
        xa[:, m_off:m_off + 2] = 0
        a = gg.dequantize(xa, t).ravel().astype(np.float64)
        mag = np.abs(a) + np.abs(a - xf)
    M = float(mag @ np.abs(yf))
    ref = float(xf @ yf)
    # the integer block sums are exact; f32 rounds d*scales, the block term and
    # the running sum over <= 16 blocks: well under 20 ulp of M (measured < 3e-8 M)
    tol = 1e-5 * M + 1e-30
    got = {simd: _vec_dot(t, xb, yb, n, simd) for simd in PATHS}
    for simd in PATHS:
        assert abs(got[simd] - ref) <= tol, (simd, got[simd], ref, M)
    # the paths differ only in f32 summation order
    assert abs(got[True] - got[False]) <= tol


def test_vec_dot_types_and_errors():
    for t in K_TYPES:
        assert vec_dot_type(t) is gg.Q8_K
    with pytest.raises(gg.GGraphError, match="activations only"):
        vec_dot_type(gg.Q8_K)
    x = np.zeros(292, np.uint8)
    out = ffi.new("float *")
    assert lib.gg_quant_vec_dot(gg.Q8_K.id, ffi.from_buffer(x), ffi.from_buffer(x), 256, 1, out) == \
        lib.GG_ERR_UNSUPPORTED_TYPE
    assert lib.gg_quant_vec_dot(gg.Q4_K.id, ffi.from_buffer(x), ffi.from_buffer(x), 100, 1, out) == \
        lib.GG_ERR_BAD_INPUT
