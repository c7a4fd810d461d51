"""The C++ convolution kernel (operator cnn_base_conv2d, functional.conv2d_native) against
Gluon's built-in Convolution, MXNet-op conv2d and finite differences; when our Conv2D uses it."""
import json
import os
import re
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import HybridBlock, nn

import cnn_base as cb
from cnn_base import native
from cnn_base.functional import NATIVE_MAX_CHANNELS, conv2d, conv2d_native
from cnn_base.functional._dispatch import NATIVE_ANY_INPUT_MAX_CHANNELS
from reference import central_difference

needs_kernel = pytest.mark.skipif(not native.loaded(),
                                  reason=f"C++ kernel not loaded: {native.status()}")
pytestmark = needs_kernel

TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-11, atol=1e-11)}

# (input shape, conv arguments as conv2d takes them): strides, padding wider than
# the kernel, dilation, groups, 1x1, depthwise, a row wider than 4 vectors, no bias.
CONV_TABLE = [
    ((2, 1, 9, 11), dict(channels=3, kernel_size=(3, 2))),
    ((2, 3, 7, 9), dict(channels=5, kernel_size=3, padding=1, use_bias=False)),
    ((1, 2, 8, 6), dict(channels=5, kernel_size=(3, 2), strides=(2, 1), padding=(1, 0))),
    ((3, 4, 9, 7), dict(channels=6, kernel_size=(2, 3), padding=(2, 1), dilation=(2, 1))),
    ((2, 6, 7, 8), dict(channels=4, kernel_size=3, padding=(1, 3), groups=2)),
    ((2, 6, 6, 9), dict(channels=6, kernel_size=(1, 3), strides=(2, 3), dilation=(1, 2),
                        groups=3, use_bias=False)),
    ((2, 5, 6, 6), dict(channels=5, kernel_size=3, padding=1, groups=5)),     # depthwise
    ((2, 4, 5, 5), dict(channels=9, kernel_size=1)),
    ((1, 2, 3, 70), dict(channels=3, kernel_size=(1, 5), padding=(0, 4), dilation=(1, 3))),
    ((2, 12, 6, 7), dict(channels=17, kernel_size=(2, 3), strides=(1, 3), padding=1)),
    ((4, 1, 6, 6), dict(channels=2, kernel_size=6, padding=5, strides=4)),
    # the input gradient by phases: dilation 2 with stride 2 (every other phase
    # sees no kernel cell), a 1x1 window with stride 3, a plane narrower than
    # its stride (wide strided layers: tests/test_fuzz_conv.py, with per-element bounds)
    ((1, 3, 7, 9), dict(channels=4, kernel_size=3, strides=2, dilation=2, padding=1)),
    ((2, 3, 7, 8), dict(channels=2, kernel_size=1, strides=3)),
    ((1, 2, 2, 3), dict(channels=3, kernel_size=2, strides=4, padding=1)),
    # one output channel per group, summed in row tiles (corr_rows): 13 rows of 7 (8 + 4 + 1
    # rows, each row stored whole but the plane's last), 9 rows of 20 (three vectors) and 30
    # (four), one output channel of three inputs; stride 2 padded by one (odd: the even
    # columns land in the second phase), by two and none, odd and even widths
    ((2, 3, 13, 7), dict(channels=3, kernel_size=3, padding=1, groups=3)),
    ((1, 2, 9, 20), dict(channels=2, kernel_size=3, padding=1, groups=2, use_bias=False)),
    ((1, 2, 5, 30), dict(channels=2, kernel_size=3, padding=1, groups=2)),
    ((2, 3, 11, 9), dict(channels=1, kernel_size=3, padding=1)),
    ((2, 3, 15, 15), dict(channels=3, kernel_size=3, strides=2, padding=1, groups=3)),
    ((1, 4, 10, 12), dict(channels=4, kernel_size=3, strides=2, padding=2, groups=4)),
    ((1, 2, 9, 9), dict(channels=2, kernel_size=5, strides=2, groups=2)),
    # the BLAS's by the rule: planes of under 8 cells (1 x 1, 2 x 3), a 1x1 conv to few
    # channels on a large plane and on several images' 3 x 3 planes, a strided layer to
    # 16 channels
    ((4, 16, 1, 1), dict(channels=10, kernel_size=1)),
    ((3, 8, 2, 3), dict(channels=5, kernel_size=1, use_bias=False)),
    ((1, 32, 20, 20), dict(channels=16, kernel_size=1)),
    ((6, 20, 3, 3), dict(channels=16, kernel_size=1)),
    ((1, 3, 40, 40), dict(channels=16, kernel_size=3, strides=2, padding=1)),
]


def _case_id(case):
    shape, kw = case
    return "x".join(map(str, shape)) + "-" + "-".join(f"{k}={v}" for k, v in kw.items()) \
        .replace(" ", "")


class _Conv(HybridBlock):
    """conv2d_native (or conv2d, or the built-in) on given weights, as a HybridBlock."""

    def __init__(self, conv, kwargs):
        super().__init__()
        self._conv, self._kw = conv, dict(kwargs)

    def hybrid_forward(self, F, x, weight, bias=None):
        kw = dict(self._kw)
        kw.pop("use_bias", None)
        if kw.pop("relu", False):       # the built-in's Activation after it; ours fused
            if self._conv != "builtin":
                return self._conv(F, x, weight, bias, relu=True, **kw)
            Y = _Conv("builtin", kw).hybrid_forward(F, x, weight, bias)
            return F.Activation(Y, act_type="relu")
        if self._conv == "builtin":
            c_o = kw.pop("channels")
            args = dict(kernel=kw.pop("kernel_size"), stride=kw.pop("strides", 1),
                        pad=kw.pop("padding", 0), dilate=kw.pop("dilation", 1),
                        num_group=kw.pop("groups", 1))
            args = {k: (v, v) if isinstance(v, int) and k != "num_group" else v
                    for k, v in args.items()}
            if bias is None:
                return F.Convolution(x, weight, num_filter=c_o, no_bias=True, **args)
            return F.Convolution(x, weight, bias, num_filter=c_o, **args)
        return self._conv(F, x, weight, bias, **kw)


def _inputs(input_shape, kw, dtype, seed=0):
    rng = np.random.RandomState(seed)
    k = kw["kernel_size"]
    k = (k, k) if isinstance(k, int) else k
    c_o, groups = kw["channels"], kw.get("groups", 1)
    X = nd.array(rng.normal(size=input_shape), dtype=dtype)
    W = nd.array(rng.normal(size=(c_o, input_shape[1] // groups) + tuple(k)), dtype=dtype)
    B = nd.array(rng.normal(size=(c_o,)), dtype=dtype) if kw.get("use_bias", True) else None
    return X, W, B


def _run(conv, kw, X, W, B, hybridize, dY=None, grad_req="write"):
    """Output and the gradients of X, W (and B) for head gradient dY."""
    block = _Conv(conv, kw)
    if hybridize:
        block.hybridize()
    arrays = [a.copy() for a in (X, W, B) if a is not None]
    for a in arrays:
        a.attach_grad(grad_req=grad_req)
    with autograd.record():
        Y = block(*arrays[:1], *arrays[1:])
    if dY is None:
        dY = nd.array(np.random.RandomState(1).normal(size=Y.shape), dtype=Y.dtype)
    Y.backward(dY)
    return [Y.asnumpy()] + [a.grad.asnumpy() for a in arrays], dY


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", CONV_TABLE, ids=[_case_id(c) for c in CONV_TABLE])
def test_kernel_output_and_gradients_equal_gluons_convolution(input_shape, kw, dtype, hybridize):
    X, W, B = _inputs(input_shape, kw, dtype)
    ours, _ = _run(conv2d_native, kw, X, W, B, hybridize)
    theirs, _ = _run("builtin", kw, X, W, B, hybridize)
    assert len(ours) == len(theirs) == (4 if B is not None else 3)
    for name, a, b in zip(["Y", "dX", "dW", "dB"], ours, theirs):
        assert a.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(a, b, err_msg=name, **TOL[dtype])


# Layers wide enough for the kernel's im2col + BLAS way under its own rule (use_gemm in
# csrc/conv2d.cc); the table above is mostly its tiles' ground. Every way (tiles, im2col,
# taps) runs every case below.
WIDE_TABLE = [
    ((2, 40, 6, 7), dict(channels=48, kernel_size=3, padding=1)),
    ((3, 16, 5, 5), dict(channels=32, kernel_size=1, use_bias=False)),
    ((2, 64, 9, 8), dict(channels=64, kernel_size=3, strides=2, padding=1, groups=2)),
    ((5, 24, 3, 3), dict(channels=40, kernel_size=(2, 3), padding=(2, 1), dilation=(1, 2))),
    ((1, 3, 23, 21), dict(channels=33, kernel_size=11, strides=4, padding=2)),
    # output rows of 18-20 cells under strides 4 and 2: im2col's vector copies (every_nth)
    ((1, 2, 40, 70), dict(channels=8, kernel_size=5, strides=4, padding=2)),
    ((2, 8, 12, 40), dict(channels=16, kernel_size=3, strides=(1, 2), padding=1)),
    # 1x1 on one image per tile: the input rows are the columns, dX written in place;
    # with groups; in bands of rows (256 taps: 1024 columns a tile, 16 of 64 rows)
    ((2, 16, 40, 40), dict(channels=32, kernel_size=1)),
    ((2, 32, 30, 30), dict(channels=32, kernel_size=1, groups=2, use_bias=False)),
    ((1, 256, 64, 64), dict(channels=32, kernel_size=1)),
    # stride 1: dX by the transposed conv, padded by d (k - 1) - p: 2 (no padding), 2 with
    # dilation and groups, and a crop (p > d (k - 1)) that keeps col2im; several images'
    # 6 x 6 planes: im2col cell by cell
    ((3, 20, 5, 6), dict(channels=24, kernel_size=3)),
    ((2, 24, 6, 5), dict(channels=20, kernel_size=3, padding=2, dilation=2, groups=4)),
    ((2, 18, 4, 4), dict(channels=24, kernel_size=1, padding=1)),
    ((6, 40, 6, 6), dict(channels=32, kernel_size=3, padding=1, use_bias=False)),
    # the taps (stride 1, >= 16 input channels per group): bands of one image's rows (256
    # channels: 1024 grid columns a tile, 24 of 40 rows), groups, a non-square window padded
    # to its reach on one side, dilation with unequal padding, 5 x 5, a window's reach wider
    # than the padded row (it reads on over two rows)
    ((1, 256, 40, 40), dict(channels=16, kernel_size=3, padding=1)),
    ((2, 64, 7, 9), dict(channels=32, kernel_size=3, padding=1, groups=2)),
    ((3, 16, 9, 8), dict(channels=20, kernel_size=(3, 2), padding=(2, 1))),
    ((2, 17, 10, 11), dict(channels=18, kernel_size=3, padding=(1, 2), dilation=2)),
    ((2, 16, 12, 12), dict(channels=24, kernel_size=5, padding=2, use_bias=False)),
    ((2, 16, 4, 1), dict(channels=16, kernel_size=(3, 5), padding=(1, 2))),
    # more than 64 output channels per group: dW = dY cols^T (fewer: dW^T = cols dY^T)
    ((2, 24, 6, 5), dict(channels=72, kernel_size=3, padding=1)),
    ((2, 16, 5, 5), dict(channels=136, kernel_size=3, strides=2, groups=2)),
    # ... unless a chunk of images has >= 8192 columns (kTurnedGradMinColumns): turned again,
    # dY laid out turned for the BLAS (turned_weight_grad), with groups; by blocks
    ((2, 8, 91, 91), dict(channels=72, kernel_size=3, padding=1)),
    ((2, 16, 91, 92), dict(channels=132, kernel_size=3, padding=1, groups=2)),
    ((460, 32, 6, 6), dict(channels=72, kernel_size=3, padding=1)),
    # im2col without the padding (csrc/conv2d_blocks.h), several images' planes a tile: by
    # the rule (64 input channels, 3 x 3 and 6 x 6 planes; dX by the transposed conv's
    # blocks), with groups; forced ('gemm'): padding past the window's reach (rows and
    # columns that read nothing), stride with dilation, a non-square window
    ((4, 64, 3, 3), dict(channels=80, kernel_size=3, padding=1)),
    ((3, 64, 6, 6), dict(channels=72, kernel_size=3, padding=1, use_bias=False)),
    ((2, 128, 5, 5), dict(channels=160, kernel_size=3, padding=1, groups=2)),
    ((2, 8, 4, 4), dict(channels=5, kernel_size=3, padding=3)),
    ((3, 8, 7, 7), dict(channels=6, kernel_size=3, strides=2, padding=2, dilation=2)),
    ((2, 6, 5, 4), dict(channels=7, kernel_size=(2, 5), padding=(1, 2))),
    # dW^T = cols dY^T over at most 160 rows by dot_rows (conv2d_loops.h): a stem (49 rows,
    # 10 output channels: edge blocks of 1 row and 2 channels), and a tile of 5220 columns
    # (chunks of 2048 and a tail of 4 past the last vector; 50 rows, 7 channels)
    ((2, 1, 70, 66), dict(channels=10, kernel_size=7, strides=2, padding=3)),
    ((1, 2, 100, 91), dict(channels=7, kernel_size=5)),
]


def _op_with(algo):
    """conv2d_native with ``algo``: its rule ('auto') or one way forced: 'tiles', 'gemm'
    (im2col + BLAS), 'taps' or 'lanes'."""
    def conv(F, *args, **kwargs):
        return conv2d_native(F, *args, algo=algo, **kwargs)
    return conv


@pytest.mark.parametrize("algo", ["auto", "tiles", "gemm", "taps"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", CONV_TABLE + WIDE_TABLE,
                         ids=[_case_id(c) for c in CONV_TABLE + WIDE_TABLE])
def test_every_way_of_multiplying_equals_gluons_convolution(input_shape, kw, dtype, algo):
    if algo in ("gemm", "taps") and not native.multiplies_with_blas():
        pytest.skip("no BLAS found in the process: the kernel multiplies in its tiles only")
    X, W, B = _inputs(input_shape, kw, dtype)
    ours, _ = _run(_op_with(algo), kw, X, W, B, hybridize=False)
    theirs, _ = _run("builtin", kw, X, W, B, hybridize=False)
    for name, a, b in zip(["Y", "dX", "dW", "dB"], ours, theirs):
        # float32 sums of thousands of terms (dW of a 40 x 40 plane): the absolute
        # tolerance follows the array's largest value, as their rounding does
        tol = dict(TOL[dtype], atol=TOL[dtype]["atol"] * max(1.0, float(np.abs(b).max())))
        np.testing.assert_allclose(a, b, err_msg=name, **tol)


# Small planes with the images in the vector lanes (csrc/conv2d_lanes.h: float32, AVX-512,
# stride 1, a batch of a multiple of 16): output channels not a multiple of its tile of 12,
# 5 x 5 and 2 x 3 windows, no padding, 48 images (two vectors and one), no bias; the input
# gradient by the same loop (the transposed conv) when there are 16 output channels or more,
# also where only the transposed conv's window (O k_h k_w: 2500, 2700) is past the forward's
# limit (kMaxWindow 2304, kMaxInputGradWindow 8192).
LANES_TABLE = [
    ((16, 16, 6, 6), dict(channels=20, kernel_size=3, padding=1)),
    ((32, 24, 5, 7), dict(channels=40, kernel_size=5, padding=2)),
    ((48, 17, 3, 3), dict(channels=16, kernel_size=3, padding=1, use_bias=False)),
    ((16, 20, 8, 6), dict(channels=33, kernel_size=(2, 3), padding=(1, 0))),
    ((32, 16, 12, 12), dict(channels=16, kernel_size=5)),
    ((16, 16, 6, 6), dict(channels=100, kernel_size=5, padding=2)),
    ((16, 32, 3, 3), dict(channels=300, kernel_size=3, padding=1)),
]


@pytest.mark.parametrize("algo", ["auto", "lanes"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", LANES_TABLE, ids=[_case_id(c) for c in LANES_TABLE])
def test_images_in_the_lanes_equal_gluons_convolution(input_shape, kw, dtype, algo):
    X, W, B = _inputs(input_shape, kw, dtype)
    ours, _ = _run(_op_with(algo), kw, X, W, B, hybridize=algo == "auto")
    theirs, _ = _run("builtin", kw, X, W, B, hybridize=algo == "auto")
    for name, a, b in zip(["Y", "dX", "dW", "dB"], ours, theirs):
        tol = dict(TOL[dtype], atol=TOL[dtype]["atol"] * max(1.0, float(np.abs(b).max())))
        np.testing.assert_allclose(a, b, err_msg=name, **tol)


# The fused ReLU (relu_in_place, relu_masked in csrc/conv2d.cc) after every way of
# multiplying: depthwise, strided, the tiles' small planes and the BLAS's wide layers.
RELU_TABLE = [c for c in CONV_TABLE if c[0] in ((2, 3, 7, 9), (2, 5, 6, 6), (1, 3, 7, 9),
                                               (2, 12, 6, 7), (6, 20, 3, 3))] + \
    WIDE_TABLE[:2] + LANES_TABLE[:1]


@pytest.mark.parametrize("algo", ["auto", "tiles", "gemm", "taps", "lanes"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", RELU_TABLE, ids=[_case_id(c) for c in RELU_TABLE])
def test_fused_relu_equals_gluons_convolution_then_activation(input_shape, kw, dtype, algo):
    if algo in ("gemm", "taps") and not native.multiplies_with_blas():
        pytest.skip("no BLAS found in the process: the kernel multiplies in its tiles only")
    kw = dict(kw, relu=True)
    X, W, B = _inputs(input_shape, kw, dtype)
    ours, _ = _run(_op_with(algo), kw, X, W, B, hybridize=algo == "auto")
    theirs, _ = _run("builtin", kw, X, W, B, hybridize=algo == "auto")
    assert 0.2 < (theirs[0] == 0).mean() < 0.8        # both sides of the ReLU are tested
    for name, a, b in zip(["Y", "dX", "dW", "dB"], ours, theirs):
        tol = dict(TOL[dtype], atol=TOL[dtype]["atol"] * max(1.0, float(np.abs(b).max())))
        np.testing.assert_allclose(a, b, err_msg=name, **tol)


def test_fused_relu_sends_nan_to_zero_as_gluons_activation_does():
    kw = dict(channels=3, kernel_size=3, padding=1, relu=True)
    X, W, B = _inputs((1, 2, 6, 6), kw, "float32")
    X[0, 0, 2, 2] = np.nan
    ours, _ = _run(_op_with("auto"), kw, X, W, B, hybridize=False)
    theirs, _ = _run("builtin", kw, X, W, B, hybridize=False)
    assert not np.isnan(theirs[0]).any()
    np.testing.assert_allclose(ours[0], theirs[0], **TOL["float32"])


# The input's gradient skipped where autograd does not ask for it (attribute input_grad; the
# data at a network's first layer, imperatively: functional._kernel._needs_grad): every way
# of multiplying, a stem-like strided window over 3 channels, the depthwise layers (which
# write dX anyway) and the lanes.
SKIP_DX_TABLE = [CONV_TABLE[1], CONV_TABLE[2], CONV_TABLE[6], WIDE_TABLE[0], LANES_TABLE[0],
                 ((4, 3, 20, 20), dict(channels=16, kernel_size=7, strides=2, padding=3))]


def _weight_grads_from_data(conv, kw, X, W, B, X_is):
    """dW (and dB) of one imperative call whose input is the data ``X`` as ``X_is`` says:
    'fresh' (outside the recording), 'attached' (a gradient attached) or 'recorded' (an
    operator's output inside the recording); and the data's gradient where it has one."""
    block = _Conv(conv, kw)
    params = [a.copy() for a in (W, B) if a is not None]
    for a in params:
        a.attach_grad()
    X = X.copy()
    if X_is != "fresh":
        X.attach_grad()
    with autograd.record():
        Y = block(X * 2 if X_is == "recorded" else X, *params)
    Y.backward(nd.array(np.random.RandomState(1).normal(size=Y.shape), dtype=Y.dtype))
    return [a.grad.asnumpy() for a in params] + ([] if X_is == "fresh" else [X.grad.asnumpy()])


@pytest.mark.parametrize("X_is", ["fresh", "attached", "recorded"])
@pytest.mark.parametrize("algo", ["auto", "tiles", "gemm", "taps", "lanes"])
@pytest.mark.parametrize("input_shape, kw", SKIP_DX_TABLE, ids=[_case_id(c) for c in SKIP_DX_TABLE])
def test_the_data_gradient_is_skipped_only_where_nobody_asks_for_it(input_shape, kw, algo, X_is):
    if algo in ("gemm", "taps") and not native.multiplies_with_blas():
        pytest.skip("no BLAS found in the process: the kernel multiplies in its tiles only")
    X, W, B = _inputs(input_shape, kw, "float32")
    ours = _weight_grads_from_data(_op_with(algo), kw, X, W, B, X_is)
    theirs = _weight_grads_from_data("builtin", kw, X, W, B, X_is)
    assert len(ours) == len(theirs) == (B is not None) + 1 + (X_is != "fresh")
    for a, b in zip(ours, theirs):
        tol = dict(TOL["float32"], atol=TOL["float32"]["atol"] * max(1.0, float(np.abs(b).max())))
        np.testing.assert_allclose(a, b, **tol)


def test_needs_grad_tells_the_data_from_what_autograd_differentiates():
    from cnn_base.functional._kernel import _needs_grad
    fresh, leaf, used = nd.ones((2, 3)), nd.ones((2, 3)), nd.ones((2, 3))
    leaf.attach_grad()
    assert _needs_grad(fresh)                        # nothing records: no decision to make
    with autograd.record():
        assert not _needs_grad(fresh) and _needs_grad(leaf)
        made = leaf * used                           # ``used`` is now a variable of the record
        assert _needs_grad(made) and not _needs_grad(used)
        assert not _needs_grad(fresh * 2)            # made from data only: not recorded
    assert _needs_grad(mx.sym.var("data"))           # a graph is built for either case


# Depthwise layers the kernel lays side by side (csrc/conv2d_depthwise.h: every plane up to
# 112 x 112): with a stride, rows of 7 and of 13 cells (the groups of 8 cells summed at once
# span rows), fewer than 8 output cells, channels past a multiple of 8 (the copies turned 8 x 8
# in registers, the rest value by value).
SIDE_BY_SIDE = [
    ((3, 19, 14, 14), dict(channels=19, kernel_size=3, strides=2, padding=1, groups=19)),
    ((2, 12, 7, 7), dict(channels=12, kernel_size=3, padding=1, groups=12)),
    ((2, 16, 12, 13), dict(channels=16, kernel_size=3, padding=1, groups=16)),
    ((3, 8, 2, 4), dict(channels=8, kernel_size=2, groups=8)),
    ((2, 9, 11, 10), dict(channels=9, kernel_size=(3, 2), strides=(2, 3), dilation=(2, 1),
                          padding=(2, 1), groups=9, use_bias=False)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_shape, kw", SIDE_BY_SIDE, ids=[_case_id(c) for c in SIDE_BY_SIDE])
def test_depthwise_side_by_side_gives_the_row_tiles_output_bit_for_bit_and_gluons_gradients(
        input_shape, kw, dtype):
    X, W, B = _inputs(input_shape, kw, dtype)
    side, _ = _run(conv2d_native, kw, X, W, B, hybridize=False)          # algo auto
    rows, _ = _run(_op_with("tiles"), kw, X, W, B, hybridize=False)
    theirs, _ = _run("builtin", kw, X, W, B, hybridize=False)
    np.testing.assert_array_equal(side[0], rows[0])      # the same sums in the same order
    for name, a, b in zip(["Y", "dX", "dW", "dB"], side, theirs):
        np.testing.assert_allclose(a, b, err_msg=name, **TOL[dtype])


@pytest.mark.parametrize("input_shape, kw", CONV_TABLE[:6], ids=[_case_id(c) for c in CONV_TABLE[:6]])
def test_kernel_equals_the_mxnet_operator_conv2d(input_shape, kw):
    X, W, B = _inputs(input_shape, kw, "float64")
    ours, _ = _run(conv2d_native, kw, X, W, B, hybridize=False)
    theirs, _ = _run(conv2d, kw, X, W, B, hybridize=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, **TOL["float64"])


def test_kernel_float64_gradients_match_central_differences():
    kw = dict(channels=2, kernel_size=(2, 3), strides=(1, 2), padding=(1, 1), dilation=(2, 1),
              groups=2)
    X, W, B = _inputs((1, 4, 4, 5), kw, "float64")
    loss = lambda x, w, b: (conv2d_native(nd, x, w, b, **{k: v for k, v in kw.items()}) ** 2) \
        .sum()
    arrays = [a.copy() for a in (X, W, B)]
    for a in arrays:
        a.attach_grad()
    with autograd.record():
        ell = loss(*arrays)
    ell.backward()
    as_nd = lambda v: nd.array(v, dtype="float64")
    numeric = [
        central_difference(lambda x: loss(as_nd(x), W, B).asscalar(), X.asnumpy()),
        central_difference(lambda w: loss(X, as_nd(w), B).asscalar(), W.asnumpy()),
        central_difference(lambda b: loss(X, W, as_nd(b)).asscalar(), B.asnumpy()),
    ]
    for a, expected in zip(arrays, numeric):
        np.testing.assert_allclose(a.grad.asnumpy(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_gradient_on_planes_enough_for_two_threads_is_numpys_sum(dtype):
    # 33 channels over 8 planes of 64 x 64: bias_grad shares the channels among two threads
    # (parallel.h's threshold) where two cores are idle; on one thread the same sums
    kw = dict(channels=33, kernel_size=3, padding=1)
    X, W, B = _inputs((8, 2, 64, 64), kw, dtype)
    B.attach_grad()
    dY = nd.array(np.random.RandomState(4).randn(8, 33, 64, 64), dtype=dtype)
    with autograd.record():
        Y = conv2d_native(nd, X, W, B, **kw)
    Y.backward(dY)
    want = dY.asnumpy().astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(B.grad.asnumpy(), want, **TOL[dtype])


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_kernel_gradients_accumulate_with_grad_req_add(hybridize):
    kw = dict(channels=3, kernel_size=3, padding=1)
    X, W, B = _inputs((2, 2, 5, 6), kw, "float64")
    once, dY = _run(conv2d_native, kw, X, W, B, hybridize)
    block = _Conv(conv2d_native, kw)
    if hybridize:
        block.hybridize()
    arrays = [a.copy() for a in (X, W, B)]
    for a in arrays:
        a.attach_grad(grad_req="add")
    for _ in range(2):
        with autograd.record():
            Y = block(*arrays)
        Y.backward(dY)
    for a, single in zip(arrays, once[1:]):
        np.testing.assert_allclose(a.grad.asnumpy(), 2 * single, **TOL["float64"])


@pytest.mark.parametrize("dtype", ["float16", "int32"])
def test_kernel_refuses_other_dtypes_naming_what_it_takes(dtype):
    X = nd.ones((1, 1, 4, 4), dtype=dtype)
    W = nd.ones((1, 1, 2, 2), dtype=dtype)
    with pytest.raises(ValueError, match=f"float32 or float64 input on a CPU context, got {dtype}"):
        conv2d_native(nd, X, W)


@pytest.mark.parametrize("attrs, message", [
    (dict(kernel=(2, 2), stride=(0, 1), pad=(0, 0), dilate=(1, 1), num_filter=1, num_group=1),
     "stride must be 2 integer"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(-1, 0), dilate=(1, 1), num_filter=1, num_group=1),
     "pad must be 2 integer"),
    # refused, not clamped or wrapped: the largest accepted is 2**31 - 1
    (dict(kernel=(2, 2), stride=(2 ** 64 + 1, 1), pad=(0, 0), dilate=(1, 1), num_filter=1,
          num_group=1), r"stride must be 2 integer\(s\) from 1 to 2147483647, got "),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), dilate=(1, 2 ** 31), num_filter=1,
          num_group=1), r"dilate must be 2 integer\(s\) from 1 to 2147483647"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), dilate=(1, 1), num_filter=3, num_group=2),
     "num_group 2 must divide num_filter 3"),
    (dict(kernel=(5, 5), stride=(1, 1), pad=(0, 0), dilate=(1, 1), num_filter=1, num_group=1),
     r"input of height and width \(4, 4\) is too small for the kernel \(5, 5\)"),
    (dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0), dilate=(1, 1), num_filter=1, num_group=1,
          algo="fast"), "algo must be 'auto', 'tiles', 'gemm', 'taps' or 'lanes', got 'fast'"),
])
def test_operator_refuses_bad_attributes_with_a_message(attrs, message):
    with pytest.raises(mx.base.MXNetError, match=message):
        getattr(nd, native.CONV_OP_NAME)(nd.ones((1, 1, 4, 4)), nd.ones((1, 1, 2, 2)),
                                         no_bias=True, **attrs).wait_to_read()


# ---------------------------------------------------------------- when our Conv2D uses it

def _exported_ops(block, X, prefix):
    block(X)
    block.export(str(prefix))
    with open(f"{prefix}-symbol.json") as f:
        return {node["op"] for node in json.load(f)["nodes"]}


@pytest.mark.parametrize("c_i, c_o, groups, strides, uses_kernel", [
    (1, 2, 1, 1, True), (NATIVE_MAX_CHANNELS, NATIVE_MAX_CHANNELS, 1, 1, True),
    (NATIVE_MAX_CHANNELS + 1, NATIVE_MAX_CHANNELS, 1, 1, False),
    (NATIVE_MAX_CHANNELS, NATIVE_MAX_CHANNELS + 1, 1, 1, False),
    # few output channels: the kernel whatever the input channels, on planes from 12 x 12
    # (DenseNet's 3x3 layers; the X below is 12 x 12 for these, 6 x 7 otherwise)
    (NATIVE_MAX_CHANNELS + 1, 2, 1, 1, True), (512, NATIVE_ANY_INPUT_MAX_CHANNELS, 1, 1, True),
    (512, NATIVE_ANY_INPUT_MAX_CHANNELS + 1, 1, 1, False),
    (NATIVE_MAX_CHANNELS + 1, 2, 1, 2, False),            # a 6 x 6 plane: the matrix multiply
    (32, 64, 32, 1, True), (2 * NATIVE_MAX_CHANNELS + 2, 2 * NATIVE_MAX_CHANNELS, 2, 1, False),
    (NATIVE_MAX_CHANNELS, NATIVE_MAX_CHANNELS, 1, 2, True),
    (NATIVE_MAX_CHANNELS + 1, NATIVE_MAX_CHANNELS, 1, 2, False),
    (64 * 3, 64 * 6, 64 * 3, 3, True)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d_block_takes_the_kernel_for_few_channels_per_group(c_i, c_o, groups, strides,
                                                                   uses_kernel, layout, blas,
                                                                   tmp_path):
    """With a BLAS the kernel takes every layer (it picks its tiles or im2col + BLAS itself);
    without one the table above: the tiles where they beat MXNet's matrix multiply."""
    uses_kernel = uses_kernel or blas
    block = cb.Conv2D(c_o, 3, strides=strides, padding=1, groups=groups, layout=layout)
    block.initialize(init.Normal(0.5))
    block.hybridize()
    h, w = (12, 12) if c_i > NATIVE_MAX_CHANNELS and c_o // groups <= 32 else (6, 7)
    X = nd.random.normal(shape=(2, c_i, h, w) if layout == "NCHW" else (2, h, w, c_i))
    assert (native.CONV_OP_NAME in _exported_ops(block, X, tmp_path / "m")) == uses_kernel


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pointwise_conv2d_is_one_fully_connected_layer_and_equals_gluon(layout, blas, tmp_path):
    """1x1, stride 1, no padding: the chapter's 1x1 conv, a Dense layer over each pixel's channels
    (the kernel's im2col + BLAS with a BLAS; MXNet's FullyConnected without).

    Compared with Gluon's NCHW block (its grouped NHWC conv does not run on the
    CPU), the NHWC input, weight and output transposed.
    """
    to_nhwc, to_nchw = (0, 2, 3, 1), (0, 3, 1, 2)
    block = cb.Conv2D(6, 1, groups=2, layout=layout, in_channels=4)
    twin = nn.Conv2D(6, 1, groups=2, in_channels=4)
    block.initialize()
    twin.initialize(init.Normal(0.5), force_reinit=True)
    twin.bias.set_data(nd.random.normal(shape=(6,)))
    W = twin.weight.data()
    block.weight.set_data(W if layout == "NCHW" else W.transpose(to_nhwc))
    block.bias.set_data(twin.bias.data())
    X = nd.random.normal(shape=(3, 4, 5, 7))
    X_ours = X if layout == "NCHW" else X.transpose(to_nhwc)
    block.hybridize()
    ops = _exported_ops(block, X_ours, tmp_path / "pw")
    if blas:
        assert native.CONV_OP_NAME in ops and "FullyConnected" not in ops
    else:
        assert "FullyConnected" in ops and native.CONV_OP_NAME not in ops and "take" not in ops

    def output_and_gradients(net, X, back):
        X.attach_grad()
        with autograd.record():
            Y = net(X)
        Y.backward(nd.ones_like(Y))
        dW = net.weight.grad()
        return [a.transpose(back).asnumpy() for a in (Y, X.grad, dW)]

    back = (0, 1, 2, 3) if layout == "NCHW" else to_nchw
    for ours, gluons in zip(output_and_gradients(block, X_ours, back),
                            output_and_gradients(twin, X, (0, 1, 2, 3))):
        np.testing.assert_allclose(ours, gluons, rtol=1e-5, atol=1e-5)


def test_hybridized_conv2d_switches_with_set_enabled_and_its_export_imports(tmp_path):
    block = cb.Conv2D(4, (3, 2), strides=(2, 1), padding=1, dilation=(1, 2))
    block.initialize(init.Normal(0.5))
    block.hybridize()
    X = nd.random.normal(shape=(2, 3, 9, 8))
    assert native.CONV_OP_NAME in _exported_ops(block, X, tmp_path / "on")
    Y_on = block(X).asnumpy()
    old = native.set_enabled(False)
    try:
        assert native.CONV_OP_NAME not in _exported_ops(block, X, tmp_path / "off")
        Y_off = block(X).asnumpy()
    finally:
        native.set_enabled(old)
    np.testing.assert_allclose(Y_on, Y_off, **TOL["float32"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        imported = gluon.SymbolBlock.imports(str(tmp_path / "on-symbol.json"), ["data"],
                                             str(tmp_path / "on-0000.params"))
    np.testing.assert_array_equal(imported(X).asnumpy(), Y_on)


def test_depthwise_conv2d_defers_in_channels_inside_a_hybridized_parent_with_the_kernel(tmp_path):
    net = nn.HybridSequential()
    net.add(cb.Conv2D(6, 3, padding=1, groups=6), nn.Dense(2))
    net.initialize()
    net.hybridize()
    X = nd.random.normal(shape=(2, 6, 5, 5))
    assert net(X).shape == (2, 2)
    assert net[0].weight.shape == (6, 1, 3, 3)
    net.export(str(tmp_path / "dw"))
    with open(tmp_path / "dw-symbol.json") as f:
        assert native.CONV_OP_NAME in {node["op"] for node in json.load(f)["nodes"]}
    twin = nn.HybridSequential()
    twin.add(nn.Conv2D(6, 3, padding=1, groups=6), nn.Dense(2))
    net.save_parameters(str(tmp_path / "dw.params"))
    twin.load_parameters(str(tmp_path / "dw.params"))
    np.testing.assert_allclose(net(X).asnumpy(), twin(X).asnumpy(), rtol=1e-5, atol=1e-6)


def test_environment_variable_turns_the_kernel_off_and_conv2d_still_works():
    code = ("import cnn_base as cb; from mxnet import nd; "
            "print(cb.native.loaded()); "
            "X = nd.arange(9).reshape((1, 1, 3, 3)); conv = cb.Conv2D(1, 2, use_bias=False); "
            "conv.initialize(); conv.weight.set_data(nd.arange(4).reshape((1, 1, 2, 2))); "
            "print(conv(X).asnumpy().ravel().tolist())")
    env = dict(os.environ, CNN_BASE_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-2:] == ["False", "[19.0, 25.0, 37.0, 43.0]"]


def test_lenet_hybridized_before_its_first_call_convolves_with_the_kernel_and_equals_gluon(
        tmp_path):
    """The parent builds its graph before deferred initialization: few output channels -> kernel."""
    net, twin = cb.lenet("custom", hybrid=True), cb.lenet("builtin", hybrid=True)
    net.initialize(init.Xavier())
    net.hybridize()
    X = nd.random.uniform(shape=(3, 1, 28, 28))
    Y = net(X)
    assert net[0].weight.shape == (6, 1, 5, 5) and net[2].weight.shape == (16, 6, 5, 5)
    net.export(str(tmp_path / "lenet"))
    with open(tmp_path / "lenet-symbol.json") as f:
        ops = [node["op"] for node in json.load(f)["nodes"]]
    assert ops.count(native.CONV_OP_NAME) == 2
    net.save_parameters(str(tmp_path / "lenet.params"))
    twin.load_parameters(str(tmp_path / "lenet.params"))
    np.testing.assert_allclose(Y.asnumpy(), twin(X).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels, strides", [(NATIVE_MAX_CHANNELS + 1, 1),
                                               (NATIVE_MAX_CHANNELS + 1, 2)])
def test_wide_conv_in_a_hybridized_parent_before_its_first_call_uses_the_matrix_multiply(
        channels, strides, blas, tmp_path):
    net = nn.HybridSequential()
    net.add(cb.Conv2D(channels, 3, strides=strides, padding=1))
    net.initialize()
    net.hybridize()
    net(nd.ones((1, 3, 5, 5)))
    net.export(str(tmp_path / "wide"))
    with open(tmp_path / "wide-symbol.json") as f:   # with a BLAS the kernel's own multiply
        assert (native.CONV_OP_NAME in {node["op"] for node in json.load(f)["nodes"]}) == blas


def test_the_kernel_multiplies_with_onednn_and_the_newer_openblas_when_they_are_installed():
    """float32 by oneDNN's sgemm (onednn-cpu-gomp, a dependency on x86-64 Linux) unless
    CNN_BASE_ONEDNN=0; otherwise and float64 by scipy-openblas32 (a dependency); without it,
    the mxnet wheel's OpenBLAS."""
    import importlib.util

    name = native.blas_library()
    if importlib.util.find_spec("scipy_openblas32") is None:
        assert name is None or "the mxnet wheel's libopenblas.so.0" in name
        return
    assert native.multiplies_with_blas()
    if native._onednn_library() is not None and os.environ.get("CNN_BASE_ONEDNN", "1") != "0":
        assert name.startswith("onednn-cpu-gomp ") and "(float32), scipy-openblas32 " in name
    else:
        assert name.startswith("scipy-openblas32 ")


def test_without_onednn_float32_multiplies_with_openblas_and_still_equals_gluon():
    """CNN_BASE_ONEDNN=0: the im2col + BLAS and taps ways' float32 cases (and the library
    check) pass with OpenBLAS's sgemm too, in a process of their own."""
    if native._onednn_library() is None:
        pytest.skip("onednn-cpu-gomp is not installed: OpenBLAS multiplies float32 already")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
         "(every_way and (gemm or taps) and float32) or multiplies_with_onednn"],
        env=dict(os.environ, CNN_BASE_ONEDNN="0"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed == 2 * len(CONV_TABLE + WIDE_TABLE) + 1, done.stdout[-1000:]
