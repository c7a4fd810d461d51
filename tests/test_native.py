"""The C++ pooling kernel (cnn_base.native, operator cnn_base_pool2d) against MXNet-op pooling,
NumPy, Gluon's built-ins and finite differences; how it is built, loaded, chosen and turned off."""
import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import HybridBlock, nn

import cnn_base as cb
from cnn_base import native
from cnn_base.functional import (global_pool2d, global_pool2d_native, lowest, pool2d_native,
                                 pool2d_nchw)
from reference import _pair, central_difference, pool2d_batch_np

needs_kernel = pytest.mark.skipif(not native.loaded(),
                                  reason=f"C++ pooling kernel not loaded: {native.status()}")

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-12)}
FP16 = dict(rtol=1e-2, atol=1e-3)

# (input shape, pooling arguments as pool2d_nchw takes them)
POOL_TABLE = [
    ((2, 3, 7, 9), dict(pool_size=(3, 2), strides=(2, 1), padding=(1, 0), mode="max")),
    ((2, 3, 7, 9), dict(pool_size=(3, 2), strides=(2, 1), padding=(1, 0), mode="avg")),
    ((1, 2, 8, 7), dict(pool_size=3, strides=2, padding=1, mode="avg", count_include_pad=False)),
    # stride larger than the window: cells between windows get no gradient
    ((2, 2, 7, 8), dict(pool_size=(2, 3), strides=(3, 4), mode="max")),
    ((2, 2, 7, 8), dict(pool_size=(2, 3), strides=(3, 4), padding=1, mode="avg")),
    # window as large as the input
    ((1, 3, 5, 6), dict(pool_size=(5, 6), mode="max")),
    ((1, 3, 5, 6), dict(pool_size=(5, 6), strides=(1, 2), padding=(2, 1), mode="avg",
                        count_include_pad=False)),
    ((3, 4, 6, 5), dict(pool_size=1, mode="max")),
    # ceil_mode: the last windows reach past the padded edge
    ((2, 2, 8, 8), dict(pool_size=3, strides=2, padding=1, mode="max", ceil_mode=True)),
    ((2, 2, 8, 9), dict(pool_size=(3, 2), strides=2, padding=1, mode="avg", ceil_mode=True)),
    ((2, 2, 8, 9), dict(pool_size=(3, 2), strides=2, padding=1, mode="avg", ceil_mode=True,
                        count_include_pad=False)),
    # ceil_mode with stride > window: whole windows past the padded edge (max: lowest, avg: 0)
    ((1, 2, 5, 5), dict(pool_size=2, strides=4, padding=1, mode="max", ceil_mode=True)),
    ((1, 2, 5, 5), dict(pool_size=2, strides=4, padding=1, mode="avg", ceil_mode=True,
                        count_include_pad=False)),
    # a window holding only padding cells
    ((1, 1, 4, 4), dict(pool_size=3, strides=3, padding=2, mode="max", ceil_mode=True)),
    ((1, 1, 4, 4), dict(pool_size=3, strides=3, padding=2, mode="avg", ceil_mode=True)),
    # float32 pools of planes up to 54 x 54 run 64 planes side by side (float64: max to 24 x
    # 24, average to 12 x 12): 150 planes (the last block partial), 12 x 12, 25 x 24 (the
    # lanes' transposes with edges of 1 and 0 past 8), 54 x 54; 55 x 54 the separable passes
    # again, and so does a window too large to list
    ((3, 50, 7, 5), dict(pool_size=3, strides=1, padding=1, mode="max")),
    ((2, 40, 12, 12), dict(pool_size=3, strides=2, padding=1, mode="max", ceil_mode=True)),
    ((1, 70, 25, 24), dict(pool_size=2, strides=2, mode="max")),
    ((1, 9, 54, 54), dict(pool_size=3, strides=2, mode="max")),
    ((1, 70, 55, 54), dict(pool_size=2, strides=2, mode="max")),
    ((1, 2, 24, 24), dict(pool_size=12, strides=1, padding=6, mode="max")),
    # (without ceil_mode: Gluon's float32 average is wrong there, special_values.md)
    ((1, 70, 12, 12), dict(pool_size=3, strides=2, padding=1, mode="avg")),
    ((1, 3, 25, 26), dict(pool_size=3, strides=2, padding=1, mode="avg",
                          count_include_pad=False)),
    ((1, 3, 55, 56), dict(pool_size=3, strides=2, padding=1, mode="avg",
                          count_include_pad=False)),
]


def _case_id(case):
    shape, kw = case
    return "-".join([kw["mode"], "x".join(map(str, shape))] +
                    [f"{k}={v}" for k, v in kw.items() if k != "mode"]).replace(" ", "")


def _forward_backward(f, X, dY=None, grad_req="write"):
    """f(X) and the gradient of sum(dY * f(X)) with respect to X (dY random when None)."""
    X = X.copy()
    X.attach_grad(grad_req=grad_req)
    with autograd.record():
        Y = f(X)
    if dY is None:
        dY = nd.random.normal(shape=Y.shape, dtype=Y.dtype, ctx=Y.context)
    assert dY.shape == Y.shape       # MXNet would read a wrongly shaped head gradient anyway
    Y.backward(dY)
    return Y, X.grad, dY


class _KernelPool(HybridBlock):
    """pool2d_native (or another pooling function) as a HybridBlock, for hybridized graphs."""

    def __init__(self, pool=pool2d_native, **pool_args):
        super().__init__()
        self._pool, self._args = pool, pool_args

    def hybrid_forward(self, F, x):
        return self._pool(F, x, **self._args)


def _builtin(kw, layout="NCHW"):
    """Gluon's own block for pooling arguments ``kw``, in ``layout``."""
    kw = dict(kw)
    mode = kw.pop("mode")
    if mode == "max":
        kw.pop("count_include_pad", None)
        return nn.MaxPool2D(layout=layout, **kw)
    return nn.AvgPool2D(layout=layout, **kw)


def _to(layout, A):
    """An NCHW-ordered array (NDArray or NumPy) in ``layout``'s order."""
    return A.transpose((0, 2, 3, 1)) if layout == "NHWC" else A


def _from(layout, A):
    """The inverse of ``_to``: ``layout``'s order back to NCHW's."""
    return A.transpose((0, 3, 1, 2)) if layout == "NHWC" else A


@pytest.fixture
def kernel_turned_off():
    old = native.set_enabled(False)
    yield
    native.set_enabled(old)


# ---------------------------------------------------------------- built and loaded

def test_kernel_is_built_and_loaded_where_a_compiler_exists():
    if os.environ.get("CNN_BASE_NATIVE") == "0":
        pytest.skip("CNN_BASE_NATIVE=0 is set: the kernel is turned off on purpose")
    if native.compiler() is None:
        pytest.skip("no C++ compiler on this machine: the MXNet-op fallback is expected")
    assert native.loaded(), native.status()
    assert native.enabled(), native.status()


# ---------------------------------------------------------------- numbers

@needs_kernel
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", POOL_TABLE, ids=[_case_id(c) for c in POOL_TABLE])
def test_kernel_output_and_gradient_equal_mxnet_op_pooling_and_numpy(input_shape, kw, dtype,
                                                                     layout):
    """NHWC: the same NCHW-drawn batch, transposed, through the kernel's NHWC path; the
    NumPy reference (NCHW) is transposed to NHWC."""
    X = _to(layout, nd.random.normal(shape=input_shape, dtype=dtype))
    Y, dX, dY = _forward_backward(lambda x: pool2d_native(nd, x, layout=layout, **kw), X)
    Y_ops, dX_ops, _ = _forward_backward(lambda x: pool2d_nchw(nd, x, layout=layout, **kw),
                                         X, dY)
    assert Y.dtype == dX.dtype == np.dtype(dtype)
    assert Y.shape == Y_ops.shape
    np.testing.assert_allclose(Y.asnumpy(), Y_ops.asnumpy(), **TOL[dtype])
    np.testing.assert_allclose(dX.asnumpy(), dX_ops.asnumpy(), **TOL[dtype])

    Y_ref, dX_ref = pool2d_batch_np(_from(layout, X.asnumpy()).astype(np.float64),
                                    _from(layout, dY.asnumpy()).astype(np.float64), **kw,
                                    lowest=lowest(dtype))
    np.testing.assert_allclose(Y.asnumpy(), _to(layout, Y_ref), **TOL[dtype])
    np.testing.assert_allclose(dX.asnumpy(), _to(layout, dX_ref), **TOL[dtype])


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape", [(3, 50, 6, 6), (2, 10, 55, 54)])
def test_kernel_max_pooling_of_ties_nan_and_signed_zeros_equals_numpy(input_shape, dtype):
    """Small values drawn from {-1, -0.0, 0, 1} (ties in every window) and some NaN: the value
    and the gradient go to the first maximal cell (the first NaN) in row-major order; the
    forward on the side-by-side small-plane way (6 x 6) and the separable one (55 x 54)."""
    rng = np.random.default_rng(5)
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0]), size=input_shape)
    x[rng.random(input_shape) < 0.02] = np.nan
    kw = dict(pool_size=3, strides=1, padding=1, mode="max")
    X = nd.array(x, dtype=dtype)
    Y, dX, dY = _forward_backward(lambda v: pool2d_native(nd, v, **kw), X)
    Y_ref, dX_ref = pool2d_batch_np(x, dY.asnumpy().astype(np.float64), **kw,
                                    lowest=lowest(dtype))
    np.testing.assert_array_equal(Y.asnumpy(), Y_ref.astype(dtype))
    np.testing.assert_array_equal(np.signbit(Y.asnumpy()), np.signbit(Y_ref))
    np.testing.assert_allclose(dX.asnumpy(), dX_ref, **TOL[dtype])


def _max_op(argmax, pool_size, strides=None, padding=0, ceil_mode=False, **_):
    """The operator itself, max pooling: with argmax=True (a second output, each window's
    cell, which the backward reads) or False (the backward finds the cells again in X)."""
    k, p = _pair(pool_size), _pair(padding)
    s = k if strides is None else _pair(strides)

    def pool(X):
        out = getattr(nd, native.OP_NAME)(nd.identity(X), kernel=k, stride=s, pad=p, mode="max",
                                          ceil_mode=ceil_mode, argmax=argmax)
        return out[0] if argmax else out
    return pool


MAX_CASES = [c for c in POOL_TABLE if c[1]["mode"] == "max"]


@needs_kernel
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", MAX_CASES + [
    ((3, 50, 6, 6), dict(pool_size=3, strides=1, padding=1, mode="max")),
    ((2, 3, 25, 24), dict(pool_size=3, strides=1, padding=1, mode="max")),
    ((2, 3, 25, 26), dict(pool_size=(2, 4), strides=(3, 2), padding=(1, 2), mode="max"))],
    ids=[_case_id(c) for c in MAX_CASES] + ["ties-6x6", "ties-25x24", "ties-25x26-k2x4"])
def test_both_max_backwards_equal_numpy_on_ties_nan_and_signed_zeros(input_shape, kw, dtype):
    """The operator with argmax=True (what the blocks run while recording) and False: the
    value and the gradient of every window at its first maximal cell (its first NaN) in
    row-major order, on values from {-1, -0.0, 0, 1} with some NaN (ties in every window);
    both add into dX in the same order, so they agree bit for bit, float16 too."""
    rng = np.random.default_rng(11)
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0]), size=input_shape)
    x[rng.random(input_shape) < 0.03] = np.nan
    X = nd.array(x, dtype=dtype)
    Y, dX, dY = _forward_backward(_max_op(True, **kw), X)
    Y_again, dX_again, _ = _forward_backward(_max_op(False, **kw), X, dY)
    Y_ref, dX_ref = pool2d_batch_np(x, dY.asnumpy().astype(np.float64), **kw,
                                    lowest=lowest(dtype))
    for values in (Y, Y_again):
        np.testing.assert_array_equal(values.asnumpy(), Y_ref.astype(dtype))
        np.testing.assert_array_equal(np.signbit(values.asnumpy()), np.signbit(Y_ref))
    np.testing.assert_array_equal(dX.asnumpy(), dX_again.asnumpy())
    # float16: up to 9 shares rounded into one cell, each within 2^-11 of the sum so far
    tol = dict(rtol=1e-2, atol=2e-2) if dtype == "float16" else TOL[dtype]
    np.testing.assert_allclose(dX.asnumpy(), dX_ref, **tol)


@needs_kernel
@pytest.mark.parametrize("input_shape, kw", [
    ((2, 3, 8, 9), dict(pool_size=(2, 3), padding=(1, 1))),          # windows cut by padding
    ((1, 70, 6, 4), dict(pool_size=2)),                               # the small-plane way
    ((1, 1, 4, 4), dict(pool_size=3, strides=3, padding=2, ceil_mode=True))])   # only padding
def test_argmax_output_is_each_windows_first_max_as_a_plane_offset(input_shape, kw):
    """Windows that do not overlap: dY = 1, 2, ... per window, so NumPy's gradient holds each
    window's number at the cell it chose; the kept offset must point at that cell (-1: a
    window without input cells)."""
    x = np.random.default_rng(2).integers(-2, 3, size=input_shape).astype(np.float32)
    out = getattr(nd, native.OP_NAME)(nd.array(x), argmax=True, mode="max",
                                      kernel=_pair(kw["pool_size"]),
                                      stride=_pair(kw.get("strides", kw["pool_size"])),
                                      pad=_pair(kw.get("padding", 0)),
                                      ceil_mode=kw.get("ceil_mode", False))
    A = out[1].asnumpy()
    assert out[1].dtype == np.int32 and A.shape == out[0].shape
    dY = np.arange(1, A[0, 0].size + 1, dtype=np.float64).reshape(A.shape[2:])
    _, dX_ref = pool2d_batch_np(x.astype(np.float64), np.broadcast_to(dY, A.shape).copy(),
                                mode="max", **kw)
    for n, c in np.ndindex(*A.shape[:2]):
        plane = dX_ref[n, c].ravel()
        expected = [int(np.flatnonzero(plane == v)[0]) if (plane == v).any() else -1
                    for v in dY.ravel()]
        assert A[n, c].ravel().tolist() == expected


@needs_kernel
def test_backward_refuses_an_argmax_output_changed_after_the_forward():
    x = nd.random.normal(shape=(1, 2, 4, 4))
    x.attach_grad()
    with autograd.record():
        Y, A = getattr(nd, native.OP_NAME)(x, kernel=(2, 2), stride=(2, 2), pad=(0, 0),
                                           mode="max", argmax=True)
    A[:] = 16                                   # one past the last cell of a 4 x 4 plane
    with pytest.raises(mx.base.MXNetError, match="8 argmax offsets lie outside their planes"):
        Y.backward()
        x.grad.wait_to_read()


def _gluon_compares(input_shape, kw, dtype, layout="NCHW"):
    """Whether Gluon's pooling can serve as the reference for this setting, dtype and layout.

    In float32, oneDNN behind Gluon's NCHW AvgPool2D refuses the (2, 2, 8, 9) ceil_mode rows
    ("could not create a descriptor for a pooling forward propagation primitive"; pinned
    against NumPy in test_gluon_refuses_a_float32_ceil_mode_average_that_we_compute).
    Gluon's NHWC pooling does not go to oneDNN and takes them.
    """
    return (dtype == "float64" or layout == "NHWC"
            or not (kw["mode"] == "avg" and input_shape == (2, 2, 8, 9)))


GLUON_CASES = [pytest.param(shape, kw, dtype, layout,
                            id=f"{layout}-{dtype}-{_case_id((shape, kw))}")
               for layout in ("NCHW", "NHWC") for dtype in ("float32", "float64")
               for shape, kw in POOL_TABLE if _gluon_compares(shape, kw, dtype, layout)]


@needs_kernel
@pytest.mark.parametrize("input_shape, kw, dtype, layout", GLUON_CASES)
def test_kernel_output_and_gradient_equal_gluons_builtin_pooling(input_shape, kw, dtype, layout):
    """NHWC: the kernel's NHWC path against Gluon's NHWC block on the same transposed batch,
    and against Gluon's NCHW block on the NCHW batch, transposed (where that one runs)."""
    X_nchw = nd.random.normal(shape=input_shape, dtype=dtype)
    X = _to(layout, X_nchw)
    Y, dX, dY = _forward_backward(lambda x: pool2d_native(nd, x, layout=layout, **kw), X)
    builtin = _builtin(kw, layout)
    builtin.cast(dtype)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    np.testing.assert_allclose(Y.asnumpy(), Y_ref.asnumpy(), **TOL[dtype])
    np.testing.assert_allclose(dX.asnumpy(), dX_ref.asnumpy(), **TOL[dtype])
    if layout == "NHWC" and _gluon_compares(input_shape, kw, dtype):
        builtin = _builtin(kw)
        builtin.cast(dtype)
        Y_ref, dX_ref, _ = _forward_backward(builtin, X_nchw, _from(layout, dY))
        np.testing.assert_allclose(Y.asnumpy(), _to(layout, Y_ref).asnumpy(), **TOL[dtype])
        np.testing.assert_allclose(dX.asnumpy(), _to(layout, dX_ref).asnumpy(), **TOL[dtype])


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_window_of_only_padding_gives_the_dtypes_lowest_and_no_gradient(dtype):
    X = nd.random.normal(shape=(1, 1, 4, 4)).astype(dtype)
    # pool 3, stride 3, padding 2, ceil_mode: the last row and column of windows start in
    # the bottom/right padding
    dY = nd.ones((1, 1, 3, 3), dtype=dtype)
    Y, dX, _ = _forward_backward(cb.MaxPool2D(3, 3, 2, ceil_mode=True), X, dY)
    Y = Y.asnumpy()[0, 0]
    assert Y.shape == (3, 3) and Y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(Y[2, :], lowest(dtype))
    np.testing.assert_array_equal(Y[:, 2], lowest(dtype))
    assert np.all(Y[:2, :2] > lowest(dtype))
    assert dX.asnumpy().sum() == 4.0          # only the four windows with input cells route


# (input shape, pooling arguments) for finite differences: no window without input cells,
# whose lowest-float output would swamp the differences
FD_TABLE = [
    ((1, 2, 5, 6), dict(pool_size=(3, 2), strides=(2, 1), padding=(1, 1))),
    ((2, 1, 6, 7), dict(pool_size=3, strides=2, padding=1, ceil_mode=True)),
    ((1, 2, 7, 5), dict(pool_size=(2, 3), strides=(3, 1), padding=(0, 1), ceil_mode=True,
                        count_include_pad=False)),
    ((1, 1, 4, 5), dict(pool_size=(4, 5))),
]


@needs_kernel
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("input_shape, kw", FD_TABLE)
def test_kernel_float64_gradient_matches_central_differences(input_shape, kw, mode):
    if mode == "max":
        kw = {k: v for k, v in kw.items() if k != "count_include_pad"}
        # distinct values 0.1 apart: eps = 1e-6 never changes which cell is a window's max
        X = np.random.permutation(int(np.prod(input_shape))).reshape(input_shape) * 0.1 - 1.0
    else:
        X = np.random.normal(size=input_shape)
    X = nd.array(X, dtype="float64")

    def pool(x):
        return pool2d_native(nd, x, mode=mode, **kw)

    W = nd.random.normal(shape=pool(X).shape, dtype="float64")
    _, dX, _ = _forward_backward(pool, X, W)
    numeric = central_difference(
        lambda x: (W * pool(nd.array(x, dtype="float64"))).sum().asscalar(), X.asnumpy())
    assert np.abs(numeric).max() > 0.01
    np.testing.assert_allclose(dX.asnumpy(), numeric, rtol=1e-7, atol=1e-8)


@needs_kernel
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_global_kernel_equals_numpy_for_every_plane_size_through_one_graph(mode, dtype, layout):
    block = _KernelPool(global_pool2d_native, mode=mode, layout=layout)
    block.hybridize()
    for shape in [(2, 3, 5, 7), (1, 4, 1, 9), (3, 2, 6, 6), (2, 2, 13, 1), (1, 1, 1, 1)]:
        X = np.random.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0   # no ties
        dY = np.random.normal(size=shape[:2] + (1, 1))
        Y, dX, _ = _forward_backward(block, nd.array(_to(layout, X), dtype=dtype),
                                     nd.array(_to(layout, dY), dtype=dtype))
        Y_np, dX_np = pool2d_batch_np(X, dY, shape[2:], mode=mode)     # the window: the plane
        assert Y.dtype == np.dtype(dtype)
        np.testing.assert_allclose(_from(layout, Y.asnumpy()), Y_np, **TOL[dtype])
        np.testing.assert_allclose(_from(layout, dX.asnumpy()), dX_np, **TOL[dtype])


@needs_kernel
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_global_kernel_adds_its_gradient_under_grad_req_add_and_keeps_float16(mode):
    X = nd.random.normal(shape=(2, 3, 4, 5))
    dY = nd.random.normal(shape=(2, 3, 1, 1))
    X.attach_grad(grad_req="add")
    for _ in range(2):
        with autograd.record():
            Y = global_pool2d_native(nd, X, mode)
        Y.backward(dY)
    _, dX_np = pool2d_batch_np(X.asnumpy().astype("float64"), dY.asnumpy().astype("float64"),
                               X.shape[2:], mode=mode)
    np.testing.assert_allclose(X.grad.asnumpy(), 2 * dX_np, **TOL["float32"])
    half = global_pool2d_native(nd, X.astype("float16"), mode)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.asnumpy(), global_pool2d(nd, X, mode).asnumpy(), **FP16)


@needs_kernel
def test_global_kernel_refuses_an_integer_input_naming_the_dtypes_it_takes():
    X = nd.arange(16, dtype="int32").reshape((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"float16, float32 or float64 .* got int32"):
        global_pool2d_native(nd, X)


# ---------------------------------------------------------------- gradient bookkeeping

@needs_kernel
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("kw", [dict(pool_size=2, mode="max"),
                                dict(pool_size=(3, 2), strides=(2, 1), padding=1, mode="avg"),
                                dict(pool_size=3, strides=1, padding=1, mode="max")])
def test_kernel_gradient_accumulates_with_grad_req_add(kw, hybridize):
    block = _KernelPool(**kw)
    if hybridize:
        block.hybridize()
    X = nd.random.normal(shape=(2, 3, 6, 7))
    dY = nd.random.normal(shape=block(X).shape)
    _, once, _ = _forward_backward(block, X, dY)        # grad_req='write'
    X = X.copy()
    X.attach_grad(grad_req="add")
    for passes in (1, 2):
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
        np.testing.assert_array_equal(X.grad.asnumpy(), passes * once.asnumpy())
    assert np.abs(once.asnumpy()).max() > 0


class _UsesInputThreeTimes(HybridBlock):
    """2 sum(max-pool(x)) - 1.5 sum(avg-pool(x)) + 3 sum(x): x feeds three branches."""

    def __init__(self, pool):
        super().__init__()
        self._pool = pool

    def hybrid_forward(self, F, x):
        a = self._pool(F, x, (3, 2), (2, 1), (1, 0), "max")
        b = self._pool(F, x, 3, 1, 1, "avg", count_include_pad=False)
        return F.sum(a * 2.0) + F.sum(b * -1.5) + F.sum(x * 3.0)


@needs_kernel
@pytest.mark.parametrize("grad_req", ["write", "add"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_kernel_gradient_of_an_input_used_three_times_is_the_sum(hybridize, grad_req):
    X = nd.random.normal(shape=(2, 2, 7, 6), dtype="float64")
    grads = []
    for pool in (pool2d_native, pool2d_nchw):
        net = _UsesInputThreeTimes(pool)
        if hybridize:
            net.hybridize()
        _, dX, _ = _forward_backward(net, X, nd.ones((1,), dtype="float64"), grad_req)
        grads.append(dX.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], **TOL["float64"])
    assert np.abs(grads[0] - 3.0).max() > 0.1       # the pooling branches did contribute


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("kw", [dict(pool_size=2),
                                dict(pool_size=3, strides=1, padding=1),
                                dict(pool_size=(2, 3), strides=(1, 2), padding=(1, 1),
                                     ceil_mode=True)])
def test_max_pooling_gradient_on_tied_maxima_equals_gluons_exactly(kw, hybridize):
    # values 0..2: most windows hold the max more than once; integer dY keeps sums exact
    X = nd.array(np.random.randint(0, 3, size=(2, 3, 7, 8)))
    ours, builtin = cb.MaxPool2D(**kw), nn.MaxPool2D(**kw)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    dY = nd.array(np.random.randint(1, 5, size=builtin(X).shape))
    Y, dX, _ = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    np.testing.assert_array_equal(Y.asnumpy(), Y_ref.asnumpy())
    np.testing.assert_array_equal(dX.asnumpy(), dX_ref.asnumpy())


@needs_kernel
@pytest.mark.parametrize("rows", [[[-1.0, 0.0], [-0.0, -1.0]], [[-1.0, -0.0], [0.0, -1.0]]])
def test_kernel_max_gradient_on_a_signed_zero_tie_goes_to_the_first_cell_as_in_gluon(rows):
    X = nd.array([[rows]])
    _, dX, _ = _forward_backward(lambda x: pool2d_native(nd, x, 2), X, nd.ones((1, 1, 1, 1)))
    _, dX_ref, _ = _forward_backward(nn.MaxPool2D(2), X, nd.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dX_ref.asnumpy().ravel(), [0, 1, 0, 0])
    np.testing.assert_array_equal(dX.asnumpy(), dX_ref.asnumpy())


# ---------------------------------------------------------------- which pooling the blocks use

def _exported_ops(block, X, prefix):
    block(X)
    block.export(str(prefix))
    with open(f"{prefix}-symbol.json") as f:
        return {node["op"] for node in json.load(f)["nodes"]}


@needs_kernel
@pytest.mark.parametrize("make_block", [
    lambda: cb.MaxPool2D(3, strides=2, padding=1),
    lambda: cb.AvgPool2D((3, 2), strides=2, padding=1, ceil_mode=True, count_include_pad=False),
], ids=["max", "avg"])
def test_hybridized_block_uses_the_kernel_only_while_enabled(make_block, tmp_path):
    assert native.enabled()
    block = make_block()
    block.hybridize()
    X = nd.random.normal(shape=(2, 3, 9, 8))
    assert native.OP_NAME in _exported_ops(block, X, tmp_path / "on")
    Y_on = block(X).asnumpy()
    old = native.set_enabled(False)
    try:
        assert old is True
        assert native.OP_NAME not in _exported_ops(block, X, tmp_path / "off")
        Y_off = block(X).asnumpy()
    finally:
        native.set_enabled(old)
    assert native.OP_NAME in _exported_ops(block, X, tmp_path / "again")
    np.testing.assert_allclose(Y_on, Y_off, **TOL["float32"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # "Cannot decide type" for the input
        imported = gluon.SymbolBlock.imports(str(tmp_path / "on-symbol.json"), ["data"],
                                             str(tmp_path / "on-0000.params"))
    np.testing.assert_array_equal(imported(X).asnumpy(), Y_on)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("ours_cls, builtin_cls", [(cb.MaxPool2D, nn.MaxPool2D),
                                                   (cb.AvgPool2D, nn.AvgPool2D)])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_float16_input_is_pooled_like_gluon(ours_cls, builtin_cls, hybridize):
    X = nd.random.normal(shape=(2, 3, 6, 7)).astype("float16")
    ours, builtin = ours_cls(2), builtin_cls(2)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    dY = nd.random.normal(shape=(2, 3, 3, 3)).astype("float16")
    Y, dX, _ = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    assert Y.dtype == dX.dtype == np.float16
    np.testing.assert_allclose(Y.asnumpy(), Y_ref.asnumpy(), **FP16)
    np.testing.assert_allclose(dX.asnumpy(), dX_ref.asnumpy(), **FP16)


@pytest.mark.usefixtures("pool_backend")
def test_float16_model_with_pooling_hybridizes_on_cpu_and_equals_gluons():
    X = nd.random.normal(shape=(1, 2, 8, 8)).astype("float16")
    nets = []
    for maxpool, avgpool in ((cb.MaxPool2D, cb.AvgPool2D), (nn.MaxPool2D, nn.AvgPool2D)):
        net = nn.HybridSequential()
        net.add(maxpool(2), avgpool(2))
        net.cast("float16")
        net.hybridize()
        nets.append(net(X))
    assert nets[0].dtype == np.float16
    np.testing.assert_allclose(nets[0].asnumpy(), nets[1].asnumpy(), **FP16)


@needs_kernel
def test_kernel_refuses_an_integer_input_naming_the_dtypes_it_takes():
    X = nd.arange(16, dtype="int32").reshape((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"float16, float32 or float64 .* got int32"):
        pool2d_native(nd, X, 2)


@needs_kernel
@pytest.mark.parametrize("block_cls", [cb.MaxPool2D, cb.AvgPool2D])
def test_kernel_keeps_output_and_gradient_on_cpu_1(block_cls):
    X = nd.random.normal(shape=(2, 3, 7, 6))
    block = block_cls(3, strides=2, padding=1)
    Y0, dX0, dY = _forward_backward(block, X)
    Y1, dX1, _ = _forward_backward(block, X.as_in_context(mx.cpu(1)), dY.as_in_context(mx.cpu(1)))
    assert Y1.context == dX1.context == mx.cpu(1)
    np.testing.assert_array_equal(Y1.asnumpy(), Y0.asnumpy())
    np.testing.assert_array_equal(dX1.asnumpy(), dX0.asnumpy())
    assert pool2d_native(nd, X.as_in_context(mx.cpu(1)), 2).context == mx.cpu(1)


@needs_kernel
@pytest.mark.parametrize("attrs, message", [
    (dict(kernel=(2, 2), stride=(1, 1), pad=(2, 0), mode="max"), "must be smaller than kernel"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="min"), "mode must be 'max' or 'avg'"),
    (dict(kernel=(0, 2), stride=(1, 1), pad=(0, 0), mode="avg"), "kernel must be two integers"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="max", ceil_mode="maybe"),
     "ceil_mode must be True or False"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="avg", layout="NCW"),
     "layout must be 'NCHW' or 'NHWC', got 'NCW'"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="max", layout="NHWC"),
     "layout 'NHWC' is for mode 'avg'"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="avg", argmax=True),
     "argmax is for mode 'max'"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), mode="max", argmax="yes"),
     "argmax must be True or False"),
])
def test_operator_refuses_bad_attributes_with_a_message(attrs, message):
    with pytest.raises(mx.base.MXNetError, match=message):
        getattr(nd, native.OP_NAME)(nd.ones((1, 1, 4, 4)), **attrs).wait_to_read()


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 5, 9, 8), (1, 3, 56, 55)],
                         ids=["small-planes", "separable"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_nhwc_average_pooling_runs_channel_last_in_the_kernel_with_the_nchw_bits(
        dtype, hybridize, shape, tmp_path):
    """No transposes: the kernel's NHWC loop sums in the NCHW loop's order, so the bits agree."""
    settings = dict(pool_size=(3, 2), strides=(2, 1), padding=1, ceil_mode=True,
                    count_include_pad=False)
    nchw, nhwc = cb.AvgPool2D(**settings), cb.AvgPool2D(layout="NHWC", **settings)
    X = nd.random.normal(shape=shape).astype(dtype)
    if hybridize:
        for block in (nchw, nhwc):
            block.hybridize()
        ops = _exported_ops(nhwc, X.transpose((0, 2, 3, 1)), tmp_path / "avg")
        assert native.OP_NAME in ops and "transpose" not in ops
    Y, dX, dY = _forward_backward(nchw, X)
    Y_t, dX_t, _ = _forward_backward(nhwc, X.transpose((0, 2, 3, 1)), dY.transpose((0, 2, 3, 1)))
    np.testing.assert_array_equal(Y_t.transpose((0, 3, 1, 2)).asnumpy(), Y.asnumpy())
    np.testing.assert_array_equal(dX_t.transpose((0, 3, 1, 2)).asnumpy(), dX.asnumpy())


# ---------------------------------------------------------------- switching it on and off

def test_set_enabled_refuses_a_non_bool_naming_the_value():
    before = native.enabled()
    with pytest.raises(TypeError, match="'yes'"):
        native.set_enabled("yes")
    with pytest.raises(TypeError, match="int"):
        native.set_enabled(1)
    assert native.enabled() == before


@needs_kernel
def test_status_says_c_plus_plus_kernel_when_enabled():
    assert native.enabled()
    assert native.status().startswith("C++ kernel")
    assert native.OP_NAME in native.status()


@needs_kernel
def test_status_says_turned_off_after_set_enabled_false(kernel_turned_off):
    assert native.loaded() and not native.enabled()
    assert "turned off" in native.status()
    assert "C++ kernel" not in native.status().split("(")[0]
    # the blocks now pool with MXNet ops: a float32 CPU input gives the same numbers
    X = nd.random.normal(shape=(1, 2, 5, 5))
    np.testing.assert_array_equal(cb.MaxPool2D(2)(X).asnumpy(),
                                  pool2d_nchw(nd, X, 2).asnumpy())


def test_environment_variable_turns_the_kernel_off_and_pooling_still_works():
    code = ("import cnn_base as cb; from mxnet import nd; "
            "print(cb.native.status()); print(cb.native.loaded(), cb.native.enabled()); "
            "X = nd.arange(16).reshape((1, 1, 4, 4)); "
            "print(cb.MaxPool2D(3, strides=2, padding=1)(X).asnumpy().ravel().tolist()); "
            "print(cb.AvgPool2D(2)(X).asnumpy().ravel().tolist())")
    env = dict(os.environ, CNN_BASE_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    status, flags, max_pooled, avg_pooled = done.stdout.strip().splitlines()[-4:]
    assert "CNN_BASE_NATIVE=0" in status
    assert flags == "False False"
    assert max_pooled == "[5.0, 7.0, 13.0, 15.0]"
    assert avg_pooled == "[2.5, 4.5, 10.5, 12.5]"


# ---------------------------------------------------------------- building

def test_build_reports_the_compilers_exit_code(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")
    library = tmp_path / "lib.so"
    with pytest.raises(native.NativeBuildError, match="exit code 1"):
        native.build(force=True, library=library)
    assert list(tmp_path.iterdir()) == []          # neither the library nor a partial one


def test_build_reports_a_compiler_that_cannot_run(monkeypatch, tmp_path):
    missing = tmp_path / "no-such-compiler"
    monkeypatch.setenv("CXX", str(missing))
    with pytest.raises(native.NativeBuildError, match=f"could not run.*{missing.name}"):
        native.build(force=True, library=tmp_path / "lib.so")
    assert not (tmp_path / "lib.so").exists()


def test_compiler_prefers_the_cxx_environment_variable(monkeypatch):
    monkeypatch.setenv("CXX", "/opt/some/clang++")
    assert native.compiler() == "/opt/some/clang++"


@pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler found")
def test_build_compiles_a_loadable_library_once_and_then_skips(monkeypatch, tmp_path):
    library = tmp_path / "sub" / "lib.so"
    assert native.build(library=library) == library
    assert library.read_bytes()[:4] == b"\x7fELF"
    mtime = library.stat().st_mtime_ns

    monkeypatch.setenv("CXX", "false")              # any compile attempt would now fail
    assert native.build(library=library) == library
    assert library.stat().st_mtime_ns == mtime
    with pytest.raises(native.NativeBuildError, match="exit code 1"):
        native.build(force=True, library=library)   # force compiles even when up to date
    assert library.stat().st_mtime_ns == mtime     # and a failure leaves the old one intact
    assert sorted(p.name for p in library.parent.iterdir()) == ["lib.so"]

    # the package's own library is kept out (CNN_BASE_NATIVE=0 while importing), so the
    # operator the subprocess runs comes from the freshly built one
    code = ("import os, sys; from pathlib import Path; from cnn_base import native; "
            "from mxnet import nd; "
            "print(native.loaded()); os.environ['CNN_BASE_NATIVE'] = '1'; "
            "print(native.load(Path(sys.argv[1])), native.status()); "
            "print(nd.cnn_base_pool2d(nd.arange(16).reshape((1, 1, 4, 4)), kernel=(3, 3), "
            "stride=(2, 2), pad=(1, 1), mode='max').asnumpy().ravel().tolist())")
    env = dict(os.environ, CNN_BASE_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", code, str(library)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, loaded, pooled = done.stdout.strip().splitlines()[-3:]
    assert before == "False"
    assert loaded.startswith("True ")
    assert pooled == "[5.0, 7.0, 13.0, 15.0]"


@needs_kernel
def test_kernel_float16_round_trip_keeps_every_value_bit_for_bit():
    # every float16 bit pattern except NaNs: zeros, subnormals, normals, the largest, infinities
    bits = np.arange(2 ** 16, dtype=np.uint16)
    values = bits.view(np.float16)
    values = values[~np.isnan(values)]
    X = nd.array(values.reshape(1, 1, 1, -1), dtype="float16")
    Y = pool2d_native(nd, X, 1).asnumpy()
    np.testing.assert_array_equal(Y.view(np.uint16), values.reshape(Y.shape).view(np.uint16))


@needs_kernel
def test_kernel_float16_average_rounds_to_nearest_even_like_numpy():
    rng = np.random.RandomState(7)
    x = (rng.standard_normal((3, 4, 10, 12)) * np.float32(10) ** rng.randint(-6, 4, (3, 4, 10, 12)))
    x = x.astype(np.float16)
    Y = pool2d_native(nd, nd.array(x, dtype="float16"), 2, mode="avg").asnumpy()
    x32 = x.astype(np.float32)
    # the kernel's order: down the column pairs, then along the row, then * (1/2) * (1/2)
    cols = x32[:, :, 0::2, :] + x32[:, :, 1::2, :]
    expected = ((cols[:, :, :, 0::2] + cols[:, :, :, 1::2]) * np.float32(0.5)) * np.float32(0.5)
    np.testing.assert_array_equal(Y.view(np.uint16), expected.astype(np.float16).view(np.uint16))


# ---------------------------------------------------------------- edge cases (issue 13)
# Every case of the differential fuzz's report, by name; both paths (pool_backend) where
# the case is about numbers. The seeded fuzz itself runs in test_fuzz_pool.py.

def _pool_both_ways(block, X, dY):
    """Y and dX of ``block`` on the NumPy array X with head gradient dY (NumPy)."""
    x = nd.array(X, dtype=X.dtype)
    return [a.asnumpy() for a in _forward_backward(block, x, nd.array(dY, dtype=dY.dtype))[:2]]


def test_huge_pool_size_is_refused_in_python_before_the_kernel_sees_it():
    # was: terminate called after throwing an instance of 'std::bad_alloc' (exit 134), for
    # cb.MaxPool2D(2**40, padding=2**39)(nd.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"pool_size must be at most 2147483647.*1099511627776"):
        cb.MaxPool2D(2 ** 40, padding=2 ** 39)(nd.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"padding must be at most 2147483647"):
        cb.AvgPool2D(2 ** 31 - 1, padding=2 ** 31)


@needs_kernel
@pytest.mark.parametrize("attrs, message", [
    (dict(kernel=(2 ** 40, 2 ** 40), stride=(1, 1), pad=(2 ** 39, 0)),
     "kernel must be two integers"),
    (dict(kernel=(2, 2), stride=(2 ** 64 + 1, 1), pad=(0, 0)), "stride must be two integers"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(-1, 0)), "pad must be two integers"),
    (dict(kernel=(2, 2), stride=("1e3", 1), pad=(0, 0)), "stride must be two integers"),
])
def test_operator_refuses_attributes_that_overflow_with_an_mxnet_error(attrs, message):
    with pytest.raises(mx.base.MXNetError, match=message):
        getattr(nd, native.OP_NAME)(nd.ones((1, 1, 1, 1)), mode="max", **attrs).wait_to_read()


@needs_kernel
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_kernel_pools_the_largest_accepted_window_and_padding_without_huge_buffers(mode):
    # pool 2**31 - 1 with padding 2**30 over a 1x1 input: one window; the kernel's buffers
    # are a row of the input and of the output, never the padded width
    block = cb.Pool2D(2 ** 31 - 1, padding=2 ** 30, mode=mode)
    X = np.full((1, 2, 1, 1), 3.0, dtype=np.float32)
    Y, dX = _pool_both_ways(block, X, np.ones((1, 2, 1, 1), np.float32))
    # the average divides by the whole window: it lies inside the padded input
    expected = 3.0 if mode == "max" else 3.0 / (2 ** 31 - 1) ** 2
    np.testing.assert_allclose(Y.ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(dX.ravel(), 1.0 if mode == "max" else expected / 3.0, rtol=1e-6)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("window, first_nan", [
    ([np.nan, 1, 2, 3], 0),            # was: kernel NaN with no gradient; Gluon 3
    ([1, np.nan, 2, 3], 1),            # was: kernel 2, wrong under any rule
    ([3, 2, 1, np.nan], 3),            # was: kernel 3
    ([np.nan, np.nan, np.inf, 1], 0),  # two NaNs: the gradient goes to the first
    ([-np.inf, 5, np.nan, np.inf], 2),
])
def test_maxpool_nan_window_gives_nan_and_grad_to_first_nan(window, first_nan, dtype):
    X = np.array(window, dtype=dtype).reshape(1, 1, 2, 2)
    Y, dX = _pool_both_ways(cb.MaxPool2D(2), X, np.full((1, 1, 1, 1), 2.0, dtype))
    assert np.isnan(Y).all()
    expected = np.zeros(4)
    expected[first_nan] = 2.0
    np.testing.assert_array_equal(dX.ravel(), expected)


@pytest.mark.usefixtures("pool_backend")
def test_maxpool_nan_among_infinities_sends_the_gradient_to_the_first_nan():
    # was: window 3x2 over [[2, nan], [1, inf], [inf, nan]] sent dX to the second inf
    X = np.array([[2, np.nan], [1, np.inf], [np.inf, np.nan]]).reshape(1, 1, 3, 2)
    Y, dX = _pool_both_ways(cb.MaxPool2D((3, 2)), X, np.ones((1, 1, 1, 1)))
    assert np.isnan(Y).all()
    np.testing.assert_array_equal(dX.reshape(3, 2), [[0, 1], [0, 0], [0, 0]])


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_maxpool_nan_rule_matches_numpy_on_a_random_batch_with_nans(dtype):
    X = np.random.normal(size=(2, 3, 7, 8)).astype(dtype)
    X[np.random.rand(*X.shape) < 0.15] = np.nan
    kw = dict(pool_size=3, strides=2, padding=1, ceil_mode=True)
    dY = np.random.normal(size=(2, 3, 4, 5)).astype(dtype)
    Y, dX = _pool_both_ways(cb.MaxPool2D(**kw), X, dY)
    Y_ref, dX_ref = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64), **kw,
                                    lowest=lowest(dtype))
    np.testing.assert_array_equal(Y, Y_ref.astype(dtype))          # NaN where NaN
    np.testing.assert_allclose(dX, dX_ref, **(FP16 if dtype == "float16" else TOL[dtype]))


@pytest.mark.usefixtures("pool_backend")
def test_float64_padding_never_wins_the_max_of_very_negative_inputs():
    # was: float32's lowest from the padding, -3.4e38, and no gradient, in both paths
    X = np.full((1, 1, 4, 4), -1e300)
    Y, dX = _pool_both_ways(cb.MaxPool2D(3, strides=1, padding=1), X, np.ones((1, 1, 4, 4)))
    np.testing.assert_array_equal(Y, -1e300)
    assert dX.sum() == 16.0


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_maxpool_window_of_minus_infinity_with_padding_gives_minus_inf_and_grad_to_first_cell(
        dtype):
    # was (float16): kernel -inf with dX at the first cell, MXNet-op path no gradient;
    # Gluon gives the dtype's lowest instead (see test_gluon_max_of_minus_infinity_is_lowest)
    X = np.full((1, 1, 2, 2), -np.inf, dtype=dtype)
    Y, dX = _pool_both_ways(cb.MaxPool2D(2, strides=2, padding=1), X,
                            np.ones((1, 1, 2, 2), dtype))
    np.testing.assert_array_equal(Y, -np.inf)
    np.testing.assert_array_equal(dX, np.ones((1, 1, 2, 2)))   # each window's only input cell


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("rows", [[[-0.0, 0.0], [-1.0, -1.0]], [[0.0, -0.0], [-1.0, -1.0]],
                                  [[-1.0, 0.0], [-0.0, -1.0]], [[-1.0, -0.0], [0.0, -1.0]]])
def test_maxpool_signed_zero_tie_keeps_the_first_cells_sign_as_gluon(rows, hybridize):
    # was: the MXNet-op path returned +0.0 where Gluon and the kernel give -0.0
    X = nd.array([[rows]])
    ours, builtin = cb.MaxPool2D(2), nn.MaxPool2D(2)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    Y, Y_ref = ours(X).asnumpy(), builtin(X).asnumpy()
    first_zero = [v for row in rows for v in row if v == 0][0]
    assert np.signbit(Y[0, 0, 0, 0]) == np.signbit(first_zero) == np.signbit(Y_ref[0, 0, 0, 0])


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_float16_extremes_pool_without_overflow_in_both_paths(mode):
    X = np.array([65504, 65504, -65504, 65504], dtype=np.float16).reshape(1, 1, 2, 2)
    Y, _ = _pool_both_ways(cb.Pool2D(2, mode=mode), X, np.ones((1, 1, 1, 1), np.float16))
    np.testing.assert_array_equal(Y.ravel(), [65504.0 if mode == "max" else 32752.0])


def test_float16_pooling_memory_grows_by_rows_not_by_float32_copies_of_planes():
    # was: +1.9 GiB of peak memory at one thread for a 0.5 GiB float16 plane
    if not native.loaded():
        pytest.skip(f"the C++ pooling kernel is not available: {native.status()}")
    code = ("import resource, numpy as np, cnn_base as cb; from mxnet import nd, autograd\n"
            "X = nd.ones((1, 1, 4096, 4096), dtype='float16'); X.attach_grad()\n"
            "block = cb.MaxPool2D(2); block(X).wait_to_read()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "with autograd.record():\n    Y = block(X)\n"
            "Y.backward(); X.grad.wait_to_read()\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr
    grown_mib = float(done.stdout.split()[-1])
    # X and dX are 32 MiB each, Y and dY 8 MiB, the kept argmax (int32) 16 MiB: whole-plane
    # float32 copies would add 64 + 16 MiB per thread for the forward and 160 MiB per thread
    # for the backward
    assert grown_mib < 120, f"peak memory grew by {grown_mib:.0f} MiB"


# ---------------------------------------------------------------- Gluon's own faults, pinned
# "Number for number" with Gluon cannot hold here: Gluon is wrong, NumPy (and PyTorch) agree
# with us. docs/engineering/special_values.md lists these.

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gluon_max_pooling_gradient_is_wrong_in_predict_mode_in_float32_where_ours_is_right(
        dtype, pool_backend):
    """Under ``autograd.record(train_mode=False)`` Gluon's float32 MaxPool2D sends each
    window's gradient to the wrong cells (its float64 and its training mode are right);
    ours follows NumPy in every mode. Pinned against the float64 NumPy reference."""
    X = np.random.RandomState(3).randn(2, 3, 8, 8).astype(dtype)
    dY = np.ones((2, 3, 4, 4), dtype)
    _, reference = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64),
                                   3, 2, 1, "max")

    def grad(block, values, train_mode):
        x = nd.array(values, dtype=dtype)
        x.attach_grad()
        with autograd.record(train_mode=train_mode):
            y = block(x)
        y.backward(nd.array(dY, dtype=dtype))
        return x.grad.asnumpy()

    for train_mode in (True, False):
        np.testing.assert_allclose(grad(cb.MaxPool2D(3, 2, 1), X, train_mode), reference)
        np.testing.assert_allclose(grad(nn.MaxPool2D(3, 2, 1), X, True), reference)
    # Gluon's predict mode on an input it has not seen in training mode: on the same X it can
    # pick up the correct cells its training-mode call just left in MXNet's memory pool (a
    # full `make test` run once did), which is not its rule
    X_new = np.random.RandomState(4).randn(2, 3, 8, 8).astype(dtype)
    _, reference_new = pool2d_batch_np(X_new.astype(np.float64), dY.astype(np.float64),
                                       3, 2, 1, "max")
    gluon_predict = grad(nn.MaxPool2D(3, 2, 1), X_new, False)
    if dtype == "float32":
        assert np.abs(gluon_predict - reference_new).max() >= 1      # whole gradients misplaced
    else:
        np.testing.assert_allclose(gluon_predict, reference_new)


def test_gluon_max_pooling_skips_nan_where_we_give_nan():
    X = nd.array([[[[np.nan, 1], [2, 3]]]])
    assert nn.MaxPool2D(2)(X).asscalar() == 3.0          # Gluon hides the NaN
    assert np.isnan(cb.MaxPool2D(2)(X).asscalar())
    assert np.isnan(np.max(X.asnumpy()))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_gluon_max_of_minus_infinity_is_the_dtypes_lowest_where_we_give_minus_inf(dtype):
    X = nd.full((1, 1, 3, 3), -np.inf, dtype=dtype)
    assert nn.MaxPool2D(3, padding=1)(X)[0, 0, 0, 0].asscalar() == lowest(dtype)
    assert cb.MaxPool2D(3, padding=1)(X)[0, 0, 0, 0].asscalar() == -np.inf


@pytest.mark.usefixtures("pool_backend")
def test_gluon_float32_average_backward_divisor_fault_for_the_last_ceil_mode_window():
    # (1,1,8,1), pool (5,1), strides (4,2), pad (1,0), ceil_mode, count_include_pad:
    # oneDNN gives dX[7] = 0.4; NumPy, float64 Gluon and PyTorch give 0.7
    kw = dict(pool_size=(5, 1), strides=(4, 2), padding=(1, 0), ceil_mode=True)
    X = np.arange(8, dtype=np.float32).reshape(1, 1, 8, 1)
    dY = np.ones((1, 1, 3, 1), np.float32)
    _, dX = _pool_both_ways(cb.AvgPool2D(**kw), X, dY)
    _, dX_ref = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64), mode="avg", **kw)
    np.testing.assert_allclose(dX, dX_ref, rtol=1e-6)
    assert dX.ravel()[7] == pytest.approx(0.7)
    _, dX_gluon = _pool_both_ways(nn.AvgPool2D(**kw), X, dY)
    assert dX_gluon.ravel()[7] == pytest.approx(0.4)                # Gluon's fault
    block64 = nn.AvgPool2D(**kw)
    block64.cast("float64")
    _, dX_gluon64 = _pool_both_ways(block64, X.astype(np.float64), dY.astype(np.float64))
    assert dX_gluon64.ravel()[7] == pytest.approx(0.7)


@pytest.mark.usefixtures("pool_backend")
def test_gluon_refuses_a_float32_ceil_mode_average_that_we_compute():
    kw = dict(pool_size=(3, 2), strides=2, padding=1, ceil_mode=True, count_include_pad=False)
    X = np.random.normal(size=(2, 2, 8, 9)).astype(np.float32)
    dY = np.random.normal(size=(2, 2, 5, 6)).astype(np.float32)
    Y, dX = _pool_both_ways(cb.AvgPool2D(**kw), X, dY)
    Y_ref, dX_ref = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64), mode="avg", **kw)
    np.testing.assert_allclose(Y, Y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dX, dX_ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(mx.base.MXNetError, match="could not create a descriptor"):
        _pool_both_ways(nn.AvgPool2D(**kw), X, dY)          # training: forward + backward


@pytest.mark.usefixtures("pool_backend")
def test_gluon_float32_max_with_padding_loses_the_gradient_of_cells_at_the_lowest_value():
    # found by `tests/fuzz_pool.py --seed 12 --cases 1500`: each window holds one real cell,
    # equal to float32's lowest, and padding; oneDNN sends the gradient to one cell of four
    # (float16 and float64 Gluon, NumPy and we send it to each window's real cell)
    lo = np.finfo(np.float32).min
    X = np.full((1, 1, 2, 2), lo, np.float32)
    dY = np.ones((1, 1, 2, 2), np.float32)
    Y, dX = _pool_both_ways(cb.MaxPool2D(2, strides=2, padding=1), X, dY)
    Y_ref, dX_ref = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64), mode="max",
                                    pool_size=2, strides=2, padding=1)
    np.testing.assert_array_equal(Y, Y_ref.astype(np.float32))
    np.testing.assert_array_equal(dX, dX_ref)
    np.testing.assert_array_equal(dX.ravel(), [1, 1, 1, 1])
    _, dX_gluon = _pool_both_ways(nn.MaxPool2D(2, strides=2, padding=1), X, dY)
    assert dX_gluon.sum() == 1.0                                     # Gluon's fault
    block64 = nn.MaxPool2D(2, strides=2, padding=1)
    block64.cast("float64")
    _, dX_gluon64 = _pool_both_ways(block64, X.astype(np.float64), dY.astype(np.float64))
    np.testing.assert_array_equal(dX_gluon64.ravel(), [1, 1, 1, 1])


@needs_kernel
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_kernel_inference_passes_its_input_without_a_copy(layout, monkeypatch):
    """identity (a copy of the whole input) only while autograd records (issue 13, item 3)."""
    calls = []
    real = nd.identity
    monkeypatch.setattr(nd, "identity", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    X = nd.random.uniform(shape=(2, 3, 8, 8) if layout == "NCHW" else (2, 8, 8, 3))
    Y = pool2d_native(nd, X, 2, mode="avg", layout=layout)
    assert calls == []
    X.attach_grad(grad_req="add")
    for _ in range(2):
        with autograd.record():
            Z = pool2d_native(nd, X, 2, mode="avg", layout=layout)
        Z.backward()
    assert len(calls) == 2
    np.testing.assert_allclose(Z.asnumpy(), Y.asnumpy(), rtol=0, atol=0)
    np.testing.assert_allclose(X.grad.asnumpy(), np.full(X.shape, 2 * 0.25), rtol=1e-6)
