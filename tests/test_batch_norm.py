"""cnn_base.BatchNorm (the C++ kernel of csrc/batch_norm.cc) against NumPy in float64 and Gluon's BatchNorm.

The reference is the textbook's (d2l 5.10) in float64: the batch's mean and biased
variance over every axis but the channel axis in training, the running ones in
prediction; the backward of each, written out. Tolerances are relative to each
array's largest value: 1e-12 in float64, 1e-6 in float32 (rounding of sums over at
most a few thousand values). Against Gluon's own block, float32 to 1e-5.

One fault of Gluon's is pinned here: under ``autograd.record(train_mode=False)``
its BatchNorm's gradient of the data is not the gradient of what it computed
(the running statistics are constants there, so dX = gamma * dY / sqrt(var + eps)).
"""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd
from mxnet.gluon import nn

import cnn_base as cb
from cnn_base.functional._dispatch import batch_norm_applies
from reference import batch_norm_np

RTOL = {"float32": 1e-6, "float64": 1e-12}


def _case(shape, axis, seed=0):
    rng = np.random.RandomState(seed)
    C = shape[axis]
    return dict(X=rng.randn(*shape) * 3 + 1, gamma=rng.rand(C) + 0.5, beta=rng.randn(C),
                mean=rng.randn(C), var=rng.rand(C) + 0.5, dY=rng.randn(*shape))


def _run(block, case, dtype, train_mode=True, record=True):
    """What ``block`` gives for ``case``: the same six arrays as _reference."""
    X = nd.array(case["X"], dtype=dtype)
    X.attach_grad()
    block.initialize(force_reinit=True)
    block.cast(dtype)
    for name, key in (("gamma", "gamma"), ("beta", "beta"), ("running_mean", "mean"),
                      ("running_var", "var")):
        getattr(block, name).set_data(nd.array(case[key], dtype=dtype))
    with autograd.record(train_mode=train_mode):
        Y = block(X)
    Y.backward(nd.array(case["dY"], dtype=dtype))
    grads = [p.grad() if p.grad_req != "null" else nd.zeros(p.shape) for p in
             (block.gamma, block.beta)]
    return [a.asnumpy().astype(np.float64) for a in
            (Y, X.grad, *grads, block.running_mean.data(), block.running_var.data())]


def _assert_close(got, want, rtol, what=("output", "dX", "dgamma", "dbeta", "running mean",
                                         "running var")):
    for name, a, b in zip(what, got, want):
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
        assert err <= rtol, f"{name}: relative error {err:.2e} > {rtol:.0e}"


# Segments (a channel's values of one outer index) of 35, 16, 9, 1, 6 values; of 47 (a block of
# kSums = 32, a whole vector, then single values); of 2050 (the partial sums flushed into
# their double total after two segments, kFlushValues).
SHAPES = [((4, 16, 5, 7), 1), ((3, 5, 4, 4), 1), ((2, 3, 9), 1), ((6, 10), 1),
          ((2, 4, 3, 6), -1), ((2, 4, 3, 6), 2), ((1, 2, 1, 1), 1), ((2, 3, 47), 1),
          ((3, 2, 41, 50), 1)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("train", [True, False], ids=["training", "prediction"])
@pytest.mark.parametrize("shape, axis", SHAPES)
def test_batch_norm_equals_the_textbook_in_float64(shape, axis, train, dtype):
    case = _case(shape, axis)
    block = cb.BatchNorm(axis=axis)
    got = _run(block, case, dtype, train_mode=train)
    assert block._use_native
    _assert_close(got, batch_norm_np(**case, axis=axis, batch_stats=train), RTOL[dtype])


@pytest.mark.parametrize("hybridize", [None, {}, {"static_alloc": True, "static_shape": True}],
                         ids=["imperative", "hybrid", "static"])
@pytest.mark.parametrize("kwargs", [{}, {"scale": False}, {"center": False},
                                    {"use_global_stats": True}, {"momentum": 0.5, "epsilon": 1e-3}],
                         ids=["default", "no-scale", "no-center", "global-stats", "momentum-eps"])
def test_batch_norm_equals_gluons_in_every_mode(kwargs, hybridize):
    """Two training steps and a prediction, float32, against gluon.nn.BatchNorm (1e-5)."""
    ours, gluons = cb.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
    case = _case((4, 8, 6, 6), 1, seed=3)
    for block in (ours, gluons):
        if hybridize is not None:
            block.hybridize(**hybridize)
    for step in range(2):
        case["X"] = case["X"] + step
        _assert_close(_run(ours, case, "float32"), _run(gluons, case, "float32"), 1e-5)
    X = nd.array(case["X"] * 2)
    _assert_close([ours(X).asnumpy()], [gluons(X).asnumpy()], 1e-5, ("prediction",))


def test_gluons_data_gradient_in_prediction_mode_is_wrong_and_ours_is_right():
    """Pinned Gluon fault: record(train_mode=False) uses the running statistics forward,
    and Gluon's dX is then not gamma * dY / sqrt(var + eps) (relative error about 1)."""
    case = _case((4, 16, 5, 7), 1)
    want = batch_norm_np(**case, axis=1, batch_stats=False)
    got = {name: _run(block, case, "float32", train_mode=False)
           for name, block in (("ours", cb.BatchNorm()), ("gluon", nn.BatchNorm()))}
    _assert_close(got["ours"], want, RTOL["float32"])
    _assert_close([got["gluon"][0]], [want[0]], RTOL["float32"], ("gluon's output",))
    err = np.abs(got["gluon"][1] - want[1]).max() / np.abs(want[1]).max()
    assert err > 0.1, f"Gluon's prediction-mode dX now agrees (error {err:.1e}): unpin"


def test_data_gradient_equals_float64_finite_differences():
    """d(sum(Y * dY))/dX by central differences, training mode, float64."""
    case = _case((2, 3, 2, 3), 1, seed=5)
    block = cb.BatchNorm()
    got = _run(block, case, "float64")[1]

    def objective(X):
        c = dict(case, X=X)
        return (batch_norm_np(**c, axis=1, batch_stats=True)[0] * case["dY"]).sum()
    h, numeric = 1e-6, np.zeros_like(case["X"])
    for i in np.ndindex(case["X"].shape):
        step = np.zeros_like(case["X"])
        step[i] = h
        numeric[i] = (objective(case["X"] + step) - objective(case["X"] - step)) / (2 * h)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


def test_gradient_added_into_a_leaf_with_grad_req_add():
    case = _case((3, 4, 5, 5), 1, seed=7)
    block = cb.BatchNorm()
    once = _run(block, case, "float64")
    X = nd.array(case["X"], dtype="float64")
    X.attach_grad(grad_req="add")
    block.gamma.grad_req = "add"
    block.gamma.zero_grad()
    for _ in range(2):
        with autograd.record():
            Y = block(X)
        Y.backward(nd.array(case["dY"], dtype="float64"))
    np.testing.assert_allclose(X.grad.asnumpy(), 2 * once[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(block.gamma.grad().asnumpy(), 2 * once[2], rtol=1e-12)


def test_after_gluons_own_conv_whose_output_is_onednn_blocked():
    """The input straight from MXNet's Convolution (oneDNN's blocked layout) reads right."""
    conv = nn.Conv2D(16, 3, in_channels=8)
    conv.initialize(mx.init.Xavier())
    X = nd.random.normal(shape=(4, 8, 10, 10))
    outs = []
    for bn in (cb.BatchNorm(), nn.BatchNorm()):
        bn.initialize()
        with autograd.record():
            Y = bn(conv(X))
        outs.append(Y.asnumpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_float16_and_what_the_kernel_cannot_take_go_to_mxnets_batch_norm():
    block = cb.BatchNorm()
    block.initialize()
    block.cast("float16")
    Y = block(nd.ones((2, 3, 4, 4), dtype="float16"))
    assert Y.dtype == np.float16 and not block._use_native
    assert not batch_norm_applies(nd.ones((2, 3), dtype="int32"))


@pytest.mark.parametrize("shape, axis, message", [
    ((2, 5, 4, 4), 1, "batch norm of 3 channels got an input of shape (2, 5, 4, 4)"),
    ((2, 3), 2, "batch norm over axis 2 needs an input with more than 2 axes"),
])
def test_a_wrong_input_is_refused_in_one_line(shape, axis, message):
    block = cb.BatchNorm(axis=axis, in_channels=3)
    block.initialize()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        block(nd.ones(shape))


@pytest.mark.parametrize("hybridize", [None, {}, {"static_alloc": True, "static_shape": True}],
                         ids=["imperative", "hybrid", "static"])
def test_between_gluons_convs_every_run_equals_gluons(hybridize):
    """Gluon's conv before (its output oneDNN-blocked) and after (its gradient too): ten
    training steps' forward and backward, each equal to the same net with Gluon's BatchNorm.
    (A custom operator reading MXNet's arrays itself once gave wrong gradients here in a
    third of the static runs: the kernel must take its arrays from MXNet.)"""
    def net_of(bn):
        net = nn.HybridSequential()
        net.add(nn.Conv2D(16, 3, in_channels=8), bn, nn.Activation("relu"),
                nn.Conv2D(8, 3, in_channels=16))
        net.initialize(mx.init.Xavier())
        if hybridize is not None:
            net.hybridize(**hybridize)
        return net
    ours, gluons = net_of(cb.BatchNorm(in_channels=16)), net_of(nn.BatchNorm(in_channels=16))
    for mine, theirs in zip(ours.collect_params().values(), gluons.collect_params().values()):
        mine.set_data(theirs.data())
    X = nd.random.normal(shape=(4, 8, 10, 10))
    for _ in range(10):
        got = []
        for net in (ours, gluons):
            with autograd.record():
                Y = net(X)
            Y.backward(Y * Y)
            got.append([Y.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()
                                        if p.grad_req != "null" and "bias" not in p.name])
        _assert_close(got[0], got[1], 1e-4, ("output", "conv1 weight", "gamma", "beta",
                                             "conv2 weight"))


def test_a_graph_asks_the_mode_once_and_each_pass_gets_its_own():
    """Hybridized, every batch norm of a graph reads one node saying the mode (one custom
    operator run per pass, not per layer), and a training pass then a prediction pass of the
    same graph each still equal Gluon's batch norms."""
    def net_of(make):
        net = nn.HybridSequential()
        net.add(make(), nn.Activation("relu"), make(), make())
        net.initialize()
        return net
    ours, gluons = net_of(lambda: cb.BatchNorm(in_channels=3)), \
        net_of(lambda: nn.BatchNorm(in_channels=3))
    graph = json.loads(ours(mx.sym.var("data")).tojson())
    assert sum(node["op"] == "Custom" for node in graph["nodes"]) == 1
    X = nd.random.normal(shape=(4, 3, 5, 5)) * 2 + 1
    for net in (ours, gluons):
        net.hybridize(static_alloc=True)
    for train_mode in (True, False, True, False):
        outputs = []
        for net in (ours, gluons):
            with autograd.record(train_mode=train_mode):
                outputs.append(net(X))
            outputs[-1].backward()     # (Gluon's moves its running statistics in backward)
        _assert_close([outputs[0].asnumpy()], [outputs[1].asnumpy()], 1e-5, ("output",))
