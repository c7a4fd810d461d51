"""cnn_base.functional: the chapter's corr2d and pool2d on NCHW and NHWC batches, NDArray and Symbol.

NHWC results are checked against MXNet's NCHW operators with the input, weight
and output transposed (MXNet's NHWC Convolution does not run on the CPU).
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd, sym

import cnn_base as cb
from cnn_base.functional import conv2d, global_pool2d, pool2d_native, pool2d_nchw

FWD = dict(rtol=1e-5, atol=1e-5)
LAYOUT = pytest.mark.parametrize("layout", ["NCHW", "NHWC"])


def _to(layout, A):
    """An NCHW-ordered array (input, output, or NCHW weight) in ``layout``'s order."""
    return A.transpose((0, 2, 3, 1)) if layout == "NHWC" else A


def _from(layout, A):
    """``layout``'s order back to NCHW's."""
    return A.transpose((0, 3, 1, 2)) if layout == "NHWC" else A


def _pair(v):
    return tuple(np.broadcast_to(v, 2).tolist())


def _eval_symbol(fn, **arrays):
    """Build ``fn(sym, **variables)`` as a graph and evaluate it on ``arrays``."""
    out = fn(sym, **{name: sym.var(name) for name in arrays})
    return out.eval(ctx=mx.cpu(), **arrays)[0]


CONV_TABLE = [
    # (input shape, weight shape, keywords)
    ((2, 3, 6, 7), (4, 3, 3, 3), dict()),
    ((1, 2, 7, 5), (3, 2, 2, 3), dict(strides=(2, 1), padding=(1, 2))),
    ((2, 4, 8, 9), (6, 2, 3, 2), dict(dilation=(2, 3), padding=1, groups=2)),
    ((3, 6, 5, 6), (3, 2, 1, 4), dict(strides=(1, 3), groups=3)),
    ((1, 1, 4, 4), (1, 1, 4, 4), dict()),
]


@LAYOUT
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_TABLE)
def test_conv2d_equals_mxnet_convolution(x_shape, w_shape, kwargs, use_bias, layout):
    X, K = nd.random.normal(shape=x_shape), nd.random.normal(shape=w_shape)
    b = nd.random.normal(shape=w_shape[:1]) if use_bias else None
    ref = nd.Convolution(X, K, b, kernel=w_shape[2:], num_filter=w_shape[0],
                         stride=_pair(kwargs.get("strides", 1)),
                         pad=_pair(kwargs.get("padding", 0)),
                         dilate=_pair(kwargs.get("dilation", 1)), num_group=kwargs.get("groups", 1),
                         no_bias=not use_bias)
    Y = conv2d(nd, _to(layout, X), _to(layout, K), b, layout=layout, **kwargs)
    np.testing.assert_allclose(_from(layout, Y).asnumpy(), ref.asnumpy(), **FWD)


@LAYOUT
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_TABLE)
def test_conv2d_symbol_graph_equals_ndarray_result(x_shape, w_shape, kwargs, layout):
    X, K, b = (nd.random.normal(shape=s) for s in (x_shape, w_shape, w_shape[:1]))
    X, K = _to(layout, X), _to(layout, K)
    Y = _eval_symbol(lambda F, X, K, b: conv2d(F, X, K, b, w_shape[2:], channels=w_shape[0],
                                                layout=layout, **kwargs), X=X, K=K, b=b)
    np.testing.assert_allclose(Y.asnumpy(), conv2d(nd, X, K, b, layout=layout, **kwargs)
                               .asnumpy(), **FWD)


@LAYOUT
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_TABLE + [
    ((2, 8, 6, 7), (6, 4, 3, 2), dict(strides=(2, 1), padding=(1, 2), dilation=(1, 2),
                                      groups=2)),
    ((1, 4, 5, 5), (3, 4, 1, 1), dict()),
])
def test_conv2d_gathered_and_im2col_rows_give_the_same_outputs_and_gradients(x_shape, w_shape,
                                                                            kwargs, layout):
    # in_channels picks the route: None gathers the rows, 1 (fewer than 4 per group in NCHW,
    # fewer than 2 in NHWC) im2col's
    names = ("X", "K", "b")
    arrays = [nd.random.normal(shape=s) for s in (x_shape, w_shape, w_shape[:1])]
    arrays[:2] = [_to(layout, a) for a in arrays[:2]]
    dY = None
    results = []
    for in_channels in (None, 1):
        Y = conv2d(sym, *(sym.var(n) for n in names), kernel_size=w_shape[2:],
                   channels=w_shape[0], in_channels=in_channels, layout=layout, **kwargs)
        block = mx.gluon.SymbolBlock(Y, [sym.var(n) for n in names])
        inputs = [a.copy() for a in arrays]
        for a in inputs:
            a.attach_grad()
        with autograd.record():
            out = block(*inputs)
        dY = nd.random.normal(shape=out.shape) if dY is None else dY
        out.backward(dY)
        results.append([out.asnumpy()] + [a.grad.asnumpy() for a in inputs])
    for gathered, im2col in zip(*results):
        np.testing.assert_allclose(gathered, im2col, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_graph_infers_the_weights_input_channels(groups):
    Y = conv2d(sym, sym.var("X"), sym.var("K"), kernel_size=(3, 2), channels=6, groups=groups,
               padding=1)
    arg_shapes, out_shapes, _ = Y.infer_shape_partial(X=(2, 6, 5, 7), K=(6, 0, 3, 2))
    assert dict(zip(Y.list_arguments(), arg_shapes))["K"] == (6, 6 // groups, 3, 2)
    assert out_shapes == [(2, 6, 5, 8)]


@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_nhwc_graph_infers_gluons_nhwc_weight_shape(groups):
    Y = conv2d(sym, sym.var("X"), sym.var("K"), kernel_size=(3, 2), channels=6, groups=groups,
               padding=1, layout="NHWC")
    arg_shapes, out_shapes, _ = Y.infer_shape_partial(X=(2, 5, 7, 6), K=(6, 3, 2, 0))
    assert dict(zip(Y.list_arguments(), arg_shapes))["K"] == (6, 3, 2, 6 // groups)
    assert out_shapes == [(2, 5, 8, 6)]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_TABLE + [
    ((2, 8, 6, 7), (6, 4, 3, 2), dict(strides=(2, 1), padding=(1, 2), dilation=(1, 2),
                                      groups=2)),
])
def test_conv2d_nhwc_gradients_equal_the_nchw_gradients_transposed(x_shape, w_shape, kwargs):
    X, K, b = (nd.random.normal(shape=s) for s in (x_shape, w_shape, w_shape[:1]))
    results = {}
    for layout in ("NCHW", "NHWC"):
        inputs = [_to(layout, X), _to(layout, K), b.copy()]
        for a in inputs:
            a.attach_grad()
        with autograd.record():
            Y = conv2d(nd, *inputs, layout=layout, **kwargs)
        dY = nd.random.normal(shape=Y.shape) if layout == "NCHW" else _to(layout, dY)
        Y.backward(dY)
        results[layout] = [_from(layout, Y)] + [_from(layout, a.grad) for a in inputs[:2]] + [
            inputs[2].grad]
    for nchw, nhwc in zip(results["NCHW"], results["NHWC"]):
        np.testing.assert_allclose(nhwc.asnumpy(), nchw.asnumpy(), rtol=1e-4, atol=1e-5)


def test_conv2d_refuses_a_layout_gluons_2d_blocks_do_not_take():
    with pytest.raises(ValueError, match="layout must be one of 'NCHW', 'NHWC', got 'NCW'"):
        conv2d(nd, nd.ones((1, 1, 3, 3)), nd.ones((1, 1, 2, 2)), layout="NCW")


def test_conv2d_of_a_batch_equals_corr2d_multi_in_out_on_each_example():
    X, K = nd.random.normal(shape=(3, 2, 5, 6)), nd.random.normal(shape=(4, 2, 2, 3))
    Y = conv2d(nd, X, K)
    for n in range(3):
        np.testing.assert_allclose(Y[n].asnumpy(), cb.corr2d_multi_in_out(X[n], K).asnumpy(),
                                   **FWD)


def test_conv2d_with_two_groups_equals_two_half_convolutions_side_by_side():
    X, K = nd.random.normal(shape=(2, 4, 6, 6)), nd.random.normal(shape=(6, 2, 3, 3))
    halves = [conv2d(nd, X[:, 2 * g:2 * g + 2], K[3 * g:3 * g + 3]) for g in range(2)]
    np.testing.assert_allclose(conv2d(nd, X, K, groups=2).asnumpy(),
                               nd.concat(*halves, dim=1).asnumpy(), **FWD)


def test_conv2d_gradient_flows_to_input_weight_and_bias():
    X, K, b = nd.ones((1, 1, 3, 3)), nd.ones((1, 1, 2, 2)), nd.zeros((1,))
    for a in (X, K, b):
        a.attach_grad()
    with autograd.record():
        Y = conv2d(nd, X, K, b)
    Y.backward()
    # each input cell is counted once per window that covers it; each kernel cell 4 times
    np.testing.assert_array_equal(X.grad.asnumpy()[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(K.grad.asnumpy()[0, 0], [[4, 4], [4, 4]])
    np.testing.assert_array_equal(b.grad.asnumpy(), [4])


def test_conv2d_needs_kernel_size_and_channels_for_a_symbolic_weight():
    with pytest.raises(TypeError, match="conv2d needs kernel_size and channels when weight "
                                        "is a Symbol"):
        conv2d(sym, sym.var("X"), sym.var("K"))


POOL_TABLE = [
    # (input shape, keywords): overlapping windows take the strided-slice path, others im2col
    ((2, 3, 6, 6), dict(pool_size=2)),
    ((1, 2, 7, 8), dict(pool_size=(3, 2), strides=(2, 2), padding=(1, 1))),
    ((2, 2, 5, 9), dict(pool_size=(2, 3), strides=(3, 3), padding=(1, 0), ceil_mode=True)),
    ((1, 3, 6, 5), dict(pool_size=3, strides=1, padding=1, ceil_mode=True)),
    ((2, 1, 5, 5), dict(pool_size=1, strides=2)),
]


def _pool_fns():
    """pool2d_nchw, and pool2d_native when the C++ kernel is loaded."""
    yield pytest.param(pool2d_nchw, id="ops")
    yield pytest.param(pool2d_native, id="kernel", marks=pytest.mark.skipif(
        not cb.native.loaded(), reason=f"the C++ pooling kernel: {cb.native.status()}"))


@LAYOUT
@pytest.mark.parametrize("pool", _pool_fns())
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_TABLE)
def test_pool2d_nchw_equals_mxnet_pooling(x_shape, kwargs, mode, pool, layout):
    # MXNet's Pooling runs NHWC on the CPU: compared in the same layout
    X = _to(layout, nd.random.normal(shape=x_shape))
    ref = nd.Pooling(X, kernel=_pair(kwargs["pool_size"]), pad=_pair(kwargs.get("padding", 0)),
                     stride=_pair(kwargs.get("strides", kwargs["pool_size"])), pool_type=mode,
                     pooling_convention="full" if kwargs.get("ceil_mode") else "valid",
                     layout=layout)
    np.testing.assert_allclose(pool(nd, X, mode=mode, layout=layout, **kwargs).asnumpy(),
                               ref.asnumpy(), **FWD)


@LAYOUT
@pytest.mark.parametrize("pool", _pool_fns())
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_TABLE)
def test_pool2d_nchw_symbol_graph_equals_ndarray_result(x_shape, kwargs, mode, pool, layout):
    X = _to(layout, nd.random.normal(shape=x_shape))
    Y = _eval_symbol(lambda F, X: pool(F, X, mode=mode, layout=layout, **kwargs), X=X)
    np.testing.assert_allclose(Y.asnumpy(), pool(nd, X, mode=mode, layout=layout, **kwargs)
                               .asnumpy(), **FWD)


@pytest.mark.parametrize("pool", _pool_fns())
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_TABLE + [
    ((1, 2, 6, 7), dict(pool_size=(3, 3), strides=(4, 2), padding=(2, 1), ceil_mode=True,
                        count_include_pad=False)),
])
def test_pool2d_nhwc_output_and_gradient_equal_nchw_transposed(x_shape, kwargs, mode, pool):
    if mode == "max":
        kwargs = {k: v for k, v in kwargs.items() if k != "count_include_pad"}
    X = nd.random.normal(shape=x_shape)
    results = {}
    for layout in ("NCHW", "NHWC"):
        X_l = _to(layout, X)
        X_l.attach_grad()
        with autograd.record():
            Y = pool(nd, X_l, mode=mode, layout=layout, **kwargs)
        dY = nd.random.normal(shape=Y.shape) if layout == "NCHW" else _to(layout, dY)
        Y.backward(dY)
        results[layout] = (_from(layout, Y).asnumpy(), _from(layout, X_l.grad).asnumpy())
    for nchw, nhwc in zip(results["NCHW"], results["NHWC"]):
        np.testing.assert_allclose(nhwc, nchw, **FWD)


@LAYOUT
@pytest.mark.parametrize("mode, reduce_np", [("max", np.max), ("avg", np.mean)])
def test_global_pool2d_equals_numpy_and_its_symbol_graph(mode, reduce_np, layout):
    X = _to(layout, nd.random.normal(shape=(2, 3, 5, 4)))
    axes = (1, 2) if layout == "NHWC" else (2, 3)
    Y = global_pool2d(nd, X, mode, layout)
    np.testing.assert_allclose(Y.asnumpy(), reduce_np(X.asnumpy(), axis=axes, keepdims=True),
                               **FWD)
    Y_sym = _eval_symbol(lambda F, X: global_pool2d(F, X, mode, layout), X=X)
    np.testing.assert_allclose(Y_sym.asnumpy(), Y.asnumpy(), **FWD)


@LAYOUT
@pytest.mark.parametrize("by_product", [True, False], ids=["product", "sum"])
def test_global_avg_pool2d_by_product_or_by_sum_gives_the_mean_and_its_gradient(by_product,
                                                                                 layout):
    X = _to(layout, nd.random.normal(shape=(2, 3, 5, 4), dtype="float64"))
    X.attach_grad()
    with autograd.record():
        Y = global_pool2d(nd, X, "avg", layout, by_product=by_product)
    dY = nd.random.normal(shape=Y.shape, dtype="float64")
    Y.backward(dY)
    axes = (1, 2) if layout == "NHWC" else (2, 3)
    np.testing.assert_allclose(Y.asnumpy(), X.asnumpy().mean(axis=axes, keepdims=True),
                               rtol=1e-12)
    np.testing.assert_allclose(X.grad.asnumpy(), np.broadcast_to(dY.asnumpy() / 20, X.shape),
                               rtol=1e-12)


@LAYOUT
def test_global_pool2d_equals_pool2d_nchw_with_the_window_the_whole_plane(layout):
    X = _to(layout, nd.random.normal(shape=(2, 3, 5, 4)))
    for mode in ("max", "avg"):
        np.testing.assert_allclose(global_pool2d(nd, X, mode, layout).asnumpy(),
                                   pool2d_nchw(nd, X, (5, 4), mode=mode, layout=layout).asnumpy(),
                                   **FWD)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("window", [(2, 2), (3, 2), (1, 3)])
def test_pool2d_nchw_with_stride_1_equals_the_chapters_pool2d_on_each_channel(window, mode):
    X = nd.random.normal(shape=(2, 3, 5, 6))
    Y = pool2d_nchw(nd, X, window, strides=1, mode=mode)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(Y[n, c].asnumpy(), cb.pool2d(X[n, c], window, mode)
                                       .asnumpy(), **FWD)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(pool_size=2, mode="min"), ValueError, r"mode must be one of 'max', 'avg', got 'min'"),
    (dict(pool_size=2, padding=(0, 2)), ValueError,
     r"padding \(0, 2\) must be smaller than pool_size \(2, 2\) on each axis"),
    (dict(pool_size=2, ceil_mode=1), TypeError, r"ceil_mode must be True or False, got int 1"),
    (dict(pool_size=(2, 0)), ValueError, r"pool_size must be positive, got \(2, 0\)"),
    (dict(pool_size=2, layout="NCDHW"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NCDHW'"),
])
def test_pool2d_nchw_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        pool2d_nchw(nd, nd.ones((1, 1, 4, 4)), **kwargs)
