"""Python and C agree on the op set; every op has a kernel, a reference and a case."""
import numpy as np
import pytest

import ggraph as gg
from ggraph.backend.ffi import OP_IDS, ffi, has_kernel
from ggraph.ops.registry import OPS
from ggraph.testing import check_graph


def test_every_python_op_is_in_ops_def():
    missing = sorted(set(OPS) - set(OP_IDS))
    assert not missing, f"ops defined in Python but not in csrc/ops.def: {missing}"


def test_every_c_op_is_defined_in_python():
    missing = sorted(set(OP_IDS) - set(OPS) - {"none"})
    assert not missing, f"ops in csrc/ops.def without a Python definition: {missing}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_has_kernel_reference_and_case(name):
    od = OPS[name]
    assert has_kernel(name), f"{name}: no gg_fwd_{name} linked"
    if not od.view:
        assert od.ref is not None, f"{name}: no numpy reference"
    assert od.cases or od.view, f"{name}: no example case"


@pytest.mark.parametrize("name", sorted(n for n, od in OPS.items() if od.params))
def test_params_struct_fits_and_matches(name):
    od = OPS[name]
    assert ffi.sizeof(od.params) <= 64, f"{od.params} is larger than op_params (64 bytes)"
    fields = {f for f, _ in ffi.typeof(od.params).fields}
    for case in od.cases:
        out = case(gg.Context(), np.random.default_rng(0))
        keys = {k for k in out.params if not k.startswith("_")}
        assert keys == fields, f"{name}: node params {sorted(keys)} != {od.params} fields {sorted(fields)}"


@pytest.mark.parametrize("name", sorted(n for n, od in OPS.items() if od.cases))
def test_cases_match_reference(name):
    for case in OPS[name].cases:
        out = case(gg.Context(), np.random.default_rng(1))
        check_graph([out], rtol=1e-3, atol=1e-4, threads=(1, 2), what=f"{name} case")
