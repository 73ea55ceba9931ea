"""gg.CKernel: C source compiled once, run by the runtime as a map_custom node."""
import numpy as np
import pytest
from hypothesis import settings, strategies as st

import ggraph as gg
from ggraph.testing import check_op, tensors

# every row of a copied to dst, then the sum of column 0 of all rows added:
# reading rows other threads wrote needs gg_barrier, which a kernel in its
# own .so reaches through the runtime's service table
BARRIER_SOURCE = r"""
#include "ggraph_kernel.h"

static float *row_of(const gg_tensor *t, int64_t ir) {
    const int64_t i1 = ir % t->ne[1], i2 = (ir / t->ne[1]) % t->ne[2], i3 = ir / (t->ne[1] * t->ne[2]);
    return (float *)((char *)t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]);
}

void add_col0_sum(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *a = dst->src[0];
    const int64_t nr = gg_nrows(dst), n0 = dst->ne[0];
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        const float *x = row_of(a, ir);
        float *y = row_of(dst, ir);
        for (int64_t i = 0; i < n0; i++) y[i] = *(const float *)((const char *)x + i * a->nb[0]);
    }
    gg_barrier(p);
    float total = 0.0f;
    for (int64_t ir = 0; ir < nr; ir++) total += row_of(dst, ir)[0];
    gg_barrier(p);          /* everyone has read column 0 before anyone changes it */
    for (int64_t ir = p->ith; ir < nr; ir += p->nth) {
        float *y = row_of(dst, ir);
        for (int64_t i = 0; i < n0; i++) y[i] += total;
    }
}
"""

SCALE_SOURCE = r"""
#ifndef SCALE
#define SCALE 2
#endif
void scale_rows(const gg_params *p, gg_tensor *dst) {
    const gg_tensor *a = dst->src[0];
    for (int64_t ir = p->ith; ir < gg_nrows(dst); ir += p->nth) {
        const float *x = (const float *)((const char *)a->data + ir * a->nb[1]);
        float *y = (float *)((char *)dst->data + ir * dst->nb[1]);
        for (int64_t i = 0; i < dst->ne[0]; i++) y[i] = SCALE * x[i];
    }
}
"""

NTH_SOURCE = r"""
void write_nth(const gg_params *p, gg_tensor *dst) {
    float *y = (float *)dst->data;
    for (int64_t i = p->ith; i < gg_nelements(dst); i += p->nth) y[i] = (float)p->nth;
}
"""

F32_ONLY_SOURCE = r"""
void f32_only(const gg_params *p, gg_tensor *dst) {
    if (dst->src[0]->type != GG_TYPE_F32) {
        gg_fail(p, GG_ERR_UNSUPPORTED_TYPE);
        return;
    }
    /* rows read through the runtime's converters, scaled by the userdata float */
    const float k = *(const float *)gg_custom_userdata(dst);
    float buf[64];
    for (int64_t ir = p->ith; ir < gg_nrows(dst); ir += p->nth) {
        gg_row_to_f32(p, GG_TYPE_F32, (const char *)dst->src[0]->data + ir * dst->src[0]->nb[1],
                      dst->src[0]->nb[0], buf, dst->ne[0]);
        for (int64_t i = 0; i < dst->ne[0]; i++) buf[i] *= k;
        gg_row_from_f32(p, dst->type, buf, (char *)dst->data + ir * dst->nb[1], dst->nb[0], dst->ne[0]);
    }
}
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


def test_barrier_kernel_matches_numpy_over_layouts_and_threads(cache):
    k = gg.CKernel(BARRIER_SOURCE, "add_col0_sum", cache_dir=cache)
    check_op(lambda ctx, a: gg.map_custom1(a, k, type=gg.F32),
             lambda a: a + a.reshape(-1, a.shape[-1])[:, 0].astype(np.float64).sum(),
             strategies=[tensors(type=gg.F32, large=100.0)], rtol=1e-5, atol=1e-3, threads=(1, 2, 3, 4))


def test_compiled_once_then_loaded_from_the_cache(cache):
    k1 = gg.CKernel(SCALE_SOURCE, "scale_rows", cache_dir=cache)
    k2 = gg.CKernel(SCALE_SOURCE, "scale_rows", cache_dir=cache)
    assert k2.cached and k2.path == k1.path and k2.path.exists()
    k3 = gg.CKernel(SCALE_SOURCE, "scale_rows", flags=["-DSCALE=3"], cache_dir=cache)
    assert k3.path != k1.path and not k3.cached
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))
    y2, y3 = gg.map_custom1(a, k1), gg.map_custom1(a, k3)
    g = gg.Graph().build_forward_expand(y2).build_forward_expand(y3)
    g.compute(2)
    np.testing.assert_array_equal(y2.numpy(), 2 * a.numpy())
    np.testing.assert_array_equal(y3.numpy(), 3 * a.numpy())


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GGRAPH_KERNEL_CACHE", str(tmp_path / "env-cache"))
    k = gg.CKernel(NTH_SOURCE, "write_nth")
    assert k.path.parent == tmp_path / "env-cache" and k.path.exists()


def test_n_tasks_is_the_nth_the_kernel_sees(cache):
    k = gg.CKernel(NTH_SOURCE, "write_nth", cache_dir=cache)
    ctx = gg.Context()
    a = ctx.new_tensor(gg.F32, [16, 4])
    y_all, y_one, y_two = gg.map_custom1(a, k), gg.map_custom1(a, k, 1), gg.map_custom1(a, k, 2)
    g = gg.Graph()
    for y in (y_all, y_one, y_two):
        g.build_forward_expand(y.set_output())
    g.compute(4)
    assert set(y_all.numpy().ravel()) == {4.0}
    assert set(y_one.numpy().ravel()) == {1.0}
    assert set(y_two.numpy().ravel()) == {2.0}


def test_userdata_converters_and_gg_fail(cache):
    k = gg.CKernel(F32_ONLY_SOURCE, "f32_only", cache_dir=cache)
    ctx = gg.Context()
    a = ctx.from_numpy(np.arange(8, dtype=np.float32).reshape(2, 4))
    factor = np.array([0.5], np.float32)
    y = gg.map_custom1(a, k, userdata=factor, type=gg.F16)
    g = gg.Graph().build_forward_expand(y)
    g.compute(2)
    np.testing.assert_array_equal(y.numpy(), (0.5 * a.numpy()).astype(np.float16))

    bad = gg.map_custom1(ctx.from_numpy(np.ones((2, 4), np.float16)), k, userdata=factor)
    g2 = gg.Graph().build_forward_expand(bad)
    for n in (1, 3):
        with pytest.raises(gg.GGraphError, match="custom:f32_only.*does not support these types"):
            g2.compute(n)
    factor[0] = 4.0                     # userdata is read at compute time, through the pointer
    g.compute(3)
    np.testing.assert_array_equal(y.numpy(), 4 * a.numpy())


def test_ckernel_in_profile_dot_and_errors_on_reference_backend(cache, tmp_path):
    k = gg.CKernel(SCALE_SOURCE, "scale_rows", cache_dir=cache)
    ctx = gg.Context()
    y = gg.map_custom1(ctx.from_numpy(np.ones((3, 4), np.float32)), k)
    g = gg.Graph().build_forward_expand(y)
    g.compute(2, profile=True)
    assert [op for op, _, _ in g.profile_by_op()] == ["custom:scale_rows"]
    assert "CUSTOM:SCALE_ROWS" in open(g.dump_dot(tmp_path / "k.dot")).read()
    with pytest.raises(gg.GGraphError, match="CKernel: it has no numpy reference"):
        g.compute(backend="reference")
    with pytest.raises(gg.GGraphError, match=r"userdata must be a numpy array or a cffi pointer \(ggraph.backend.ffi.ffi\), got str"):
        gg.map_custom1(ctx.new_tensor(gg.F32, [4]), k, userdata="eps")


def test_compile_error_names_the_line_of_the_users_source(cache):
    src = "void broken(const gg_params *p, gg_tensor *dst) {\n    int ok = 1;\n    int bad = ;\n}\n"
    with pytest.raises(gg.GGraphError) as ei:
        gg.CKernel(src, "broken", cache_dir=cache)
    msg = str(ei.value)
    assert msg.startswith("CKernel broken: compile failed:")
    assert "broken.c:3:" in msg and "error" in msg and "int bad = ;" in msg


@pytest.mark.parametrize("source, name, match", [
    ("void other(const gg_params *p, gg_tensor *dst) {}", "kern",
     r"the source defines no function named 'kern'; expected void kern\(const gg_params \*p, gg_tensor \*dst\)"),
    ("void kern(float *x) { *x = 0; }", "kern", r"kern must have the kernel signature void kern\(const gg_params"),
    ("static void kern(const gg_params *p, gg_tensor *dst) {}", "kern", r"exports no symbol 'kern' \(is the function static\?\)"),
    ("void helper(void);\nvoid kern(const gg_params *p, gg_tensor *dst) { helper(); }", "kern",
     "undefined reference to `helper'"),
    ("void kern(const gg_params *p, gg_tensor *dst) {}", "not a name", "name must be a C identifier"),
    ("   ", "kern", "source must be a non-empty string of C code"),
])
def test_bad_kernels_are_clear_errors(cache, source, name, match):
    with pytest.raises(gg.GGraphError, match=match):
        gg.CKernel(source, name, cache_dir=cache)


def test_unusable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(gg.GGraphError, match="cannot create the kernel cache"):
        gg.CKernel(NTH_SOURCE, "write_nth", cache_dir=blocker / "sub")


@st.composite
def _tensor_pair(draw):
    return draw(tensors(type=gg.F32, shape=[8, 3], contiguous=True)),


def test_check_op_catches_a_kernel_that_ignores_threads(cache):
    # each thread writes every row: right at 1 thread, wrong nth as soon as there are more
    k = gg.CKernel(NTH_SOURCE, "write_nth", cache_dir=cache)
    with pytest.raises(AssertionError) as ei:
        check_op(lambda ctx, a: gg.map_custom1(a, k), lambda a: np.ones_like(a),
                 strategies=_tensor_pair(), threads=(1, 2), settings=settings(max_examples=10, database=None))
    msg = str(ei.value)
    assert "n_threads=2" in msg and "custom:write_nth" in msg and "worst at index" in msg


def test_compiler_warnings_reach_the_user(cache):
    with pytest.warns(UserWarning, match=r"(?s)CKernel warns_once: the compiler warns:\n.*warns_once.c:2:.*unused variable"):
        k = gg.CKernel("void warns_once(const gg_params *p, gg_tensor *dst) {\n    int unused;\n}\n", "warns_once",
                       cache_dir=cache)
    assert "unused variable" in k.compiler_output
