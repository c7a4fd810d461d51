"""Our Conv2D's float32 error against float64, layer by layer, with a real network's gradients.

Random upstream gradients can hide an error that a network's own gradient
shows (sparse after ReLU and max pooling, with large and small values side
by side). So every conv of model zoo ``vgg11`` and ``resnet18_v1`` and of the
chapter's AlexNet is run as in a training step in float64, each conv adding a
zero leaf to its output, so that one backward pass leaves the real upstream
gradient dY on that leaf. Each layer is then run alone on that
input and dY in float32, once as Gluon's built-in Conv2D and once as ours
(with our C++ kernel and with MXNet operators only), and each gradient (dX,
dW, db) and the output are compared with float64. Ours must be no further
from float64 than the built-in is (within 2x), or below 1e-5.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

import cnn_base as cb
from cnn_base import native

# float32 against float64, relative to the largest value: ours may be 2x the built-in's
# error (two correct ways of summing differ by such factors) or below 1e-5
FACTOR, FLOOR = 2.0, 1e-5


# name: (constructor, input shape); inputs kept small for make test, every conv shape kind kept
NETWORKS = {
    "vgg11": (lambda: vision.vgg11(), (2, 3, 64, 64)),
    "resnet18_v1": (lambda: vision.resnet18_v1(), (2, 3, 64, 64)),
    "alexnet": (lambda: cb.alexnet("builtin"), (2, 1, 96, 96)),      # d2l-zh v1 §5.6
}


def conv_settings(conv):
    """A built-in Conv2D's settings as keyword arguments for ours (Gluon keeps them in _kwargs)."""
    kw = conv._kwargs
    return dict(channels=kw["num_filter"], kernel_size=kw["kernel"], strides=kw["stride"],
                padding=kw["pad"], dilation=kw["dilate"], groups=kw["num_group"],
                use_bias=not kw["no_bias"], in_channels=conv.weight.shape[1] * kw["num_group"],
                activation=None if conv.act is None else conv.act._act_type)


def tap_outputs(convs, seen):
    """Make every conv add a zero leaf T to its output: after backward, T.grad is dL/dY.

    (Marking Y itself would make it a leaf and stop the gradient at the next conv.)
    """
    for conv in convs:
        def tapped(F, x, *args, _forward=conv.hybrid_forward, _conv=conv, **kwargs):
            Y = _forward(F, x, *args, **kwargs)
            T = nd.zeros_like(Y)
            T.attach_grad()
            seen.append((_conv, x, T))
            return Y + T
        conv.hybrid_forward = tapped


def real_layer_cases(name):
    """(settings, X, W, b, dY) in float64 for every conv of the network, from one training step."""
    make, shape = NETWORKS[name]
    mx.random.seed(0)
    net = make()
    net.initialize(mx.init.Xavier(magnitude=2.0))
    net.cast("float64")
    X = nd.random.normal(shape=shape, dtype="float64")
    label = nd.array(np.arange(shape[0]) % 10, dtype="float64")
    net(X)                                    # deferred shapes, before the taps
    convs, seen = [], []
    net.apply(lambda block: convs.append(block) if isinstance(block, nn.Conv2D) else None)
    tap_outputs(convs, seen)
    with autograd.record():
        L = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), label)
    L.backward()
    return [(conv_settings(conv), x, conv.weight.data(),
             conv.bias.data() if conv.bias is not None else None, T.grad)
            for conv, x, T in seen]


def layer_grads(block_class, settings, X, W, b, dY, dtype):
    """Output, dX, dW (and db) of one conv layer, as float64 NumPy arrays."""
    conv = block_class(**settings)
    conv.initialize()
    conv.cast(dtype)
    conv.weight.set_data(W.astype(dtype))
    if b is not None:
        conv.bias.set_data(b.astype(dtype))
    X = X.astype(dtype)
    X.attach_grad()
    with autograd.record():
        Y = conv(X)
    Y.backward(dY.astype(dtype))
    out = [Y, X.grad, conv.weight.grad()] + ([conv.bias.grad()] if b is not None else [])
    return [a.asnumpy().astype(np.float64) for a in out]


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-300))


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def network_layers(request):
    return request.param, real_layer_cases(request.param)


def test_every_conv_of_real_networks_is_as_accurate_as_the_builtin(network_layers, conv_backend):
    name, cases = network_layers
    assert len(cases) >= 5
    worse = []
    for i, (settings, X, W, b, dY) in enumerate(cases):
        assert float(nd.abs(dY).max().asscalar()) > 0, f"{name} conv {i}: no gradient reached it"
        ref = layer_grads(nn.Conv2D, settings, X, W, b, dY, "float64")
        builtin = layer_grads(nn.Conv2D, settings, X, W, b, dY, "float32")
        ours = layer_grads(cb.Conv2D, settings, X, W, b, dY, "float32")
        for what, o, g, r in zip(("Y", "dX", "dW", "db"), ours, builtin, ref):
            e_ours, e_builtin = rel_err(o, r), rel_err(g, r)
            if e_ours > max(FACTOR * e_builtin, FLOOR):
                worse.append(f"conv {i} {settings} {what}: ours {e_ours:.1e}, "
                             f"built-in {e_builtin:.1e}")
    assert not worse, f"{name} ({conv_backend}):\n" + "\n".join(worse)
