"""The block types' traits and the Python quantize/dequantize API."""
import numpy as np
import pytest

import ggraph as gg
from ggraph.quant import QUANT_TYPES

# (type, block elements, bytes per block): ggml-common.h's layouts
LAYOUTS = [(gg.Q4_0, 32, 18), (gg.Q4_1, 32, 20), (gg.Q5_0, 32, 22), (gg.Q5_1, 32, 24), (gg.Q8_0, 32, 34),
           (gg.Q8_1, 32, 36), (gg.Q2_K, 256, 84), (gg.Q3_K, 256, 110), (gg.Q4_K, 256, 144),
           (gg.Q5_K, 256, 176), (gg.Q6_K, 256, 210), (gg.Q8_K, 256, 292)]


@pytest.mark.parametrize("t,blck,size", LAYOUTS, ids=[str(t) for t, _, _ in LAYOUTS])
def test_block_layouts(t, blck, size):
    assert (gg.blck_size(t), gg.type_size(t)) == (blck, size)
    assert gg.row_size(t, 4 * blck) == 4 * size
    ctx = gg.Context()
    x = ctx.new_tensor(t, [2 * blck, 3, 2])
    assert x.nb == (size, 2 * size, 6 * size, 12 * size) and x.nbytes() == 12 * size
    with pytest.raises(gg.GGraphError, match="not a multiple of the .* block size"):
        ctx.new_tensor(t, [blck + 1, 2])


def test_types_by_name_and_id():
    assert gg.as_type("q4_k") is gg.Q4_K and gg.as_type(8) is gg.Q8_0
    assert len(QUANT_TYPES) == 12


def test_quantize_errors():
    with pytest.raises(gg.GGraphError, match="not a whole number of Q8_0 blocks"):
        gg.quantize(np.zeros(40, np.float32), gg.Q8_0)
    with pytest.raises(gg.GGraphError, match="not a block type"):
        gg.quantize(np.zeros(32, np.float32), gg.F16)
    with pytest.raises(gg.GGraphError, match="unknown tensor type"):
        gg.quantize(np.zeros(32, np.float32), "Q9_9")
    b = gg.quantize(np.ones((2, 64), np.float32), gg.Q8_0)
    with pytest.raises(gg.GGraphError, match="truncated"):
        gg.dequantize(b.ravel()[:-5], gg.Q8_0, 128)
    with pytest.raises(gg.GGraphError, match="truncated"):
        gg.dequantize(b[:, :-3], gg.Q8_0)
    with pytest.raises(gg.GGraphError, match="positive multiple"):
        gg.dequantize(b, gg.Q8_0, 33)


def test_q8_0_round_trip_and_tensor_io():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 64)).astype(np.float32)
    b = gg.quantize(x, gg.Q8_0)
    assert b.shape == (3, 4, 68) and b.dtype == np.uint8
    y = gg.dequantize(b, gg.Q8_0)
    assert y.shape == (3, 4, 64)
    # |error| <= d/2 = max|x| / 254 per block
    bound = np.abs(x).reshape(3, 4, 2, 32).max(-1, keepdims=True) / 254 * (1 + 1e-3)
    assert (np.abs(y - x).reshape(3, 4, 2, 32) <= bound).all()
    t = gg.Context().from_numpy(x, type=gg.Q8_0)
    assert t.type is gg.Q8_0 and t.ne == (64, 4, 3, 1)
    np.testing.assert_array_equal(t.numpy(), y)
