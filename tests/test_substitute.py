"""``cnn_base.substitute``: every model zoo vision network built on our blocks computes Gluon's numbers.

Each network of ``mxnet.gluon.model_zoo.vision`` is built twice from the
same code, once as it is and once inside ``substitute()``, given the same
parameters, and run forward and backward (one training step's gradients,
imperatively and hybridized) on the same input: the output, the input's
gradient and every parameter's gradient agree. Inputs are the smallest each
network takes.

In float64 every network agrees to 1e-8 of each array's largest value. In
float32 only the networks without batch norm are compared (to 1e-5): with
batch norm over a batch of one or two, these networks turn float32 rounding
into differences of 1e-2 to 1 between any two implementations. Measured:
Gluon's own resnet50_v1 moves by 2e-2 when its input is multiplied by
(1 + 1e-7 noise), densenet121 by 1e-2, inceptionv3 by 5e-2; ours against
Gluon's, in float64, is at most 6e-9 on every network.
The gradient of a conv bias that batch norm follows is zero up to rounding;
so each array's error is taken relative to its largest value or to 1e-6 of
the largest gradient of the network, whichever is larger.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

import cnn_base as cb
from cnn_base.substitution import SUBSTITUTES, substitute

RTOL = {"float64": 1e-8, "float32": 1e-5}

# the input each network takes: a global pool lets most take 64 x 64; densenet and
# squeezenet end in a fixed 7x7 / 13x13 average pool (224), inception v3 in an 8x8 one (299)
SIZES = {"densenet": 224, "squeezenet": 224, "inceptionv3": 299, "alexnet": 64}
NETWORKS = ["alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "inceptionv3",
            "mobilenet0.25", "mobilenet0.5", "mobilenet0.75", "mobilenet1.0",
            "mobilenetv2_0.25", "mobilenetv2_0.5", "mobilenetv2_0.75", "mobilenetv2_1.0",
            "squeezenet1.0", "squeezenet1.1"] + \
           [f"resnet{d}_v{v}" for v in (1, 2) for d in (18, 34, 50, 101, 152)] + \
           [f"vgg{d}{bn}" for bn in ("", "_bn") for d in (11, 13, 16, 19)]
# the networks without batch norm, where float32 rounding stays at rounding's size
FLOAT32_NETWORKS = ["alexnet", "squeezenet1.1", "vgg11", "vgg13", "vgg16", "vgg19"]
# make test runs the smallest network of each family; `make zoo` (CI) runs them all
FAMILIES = ["alexnet", "densenet121", "inceptionv3", "mobilenet0.25", "mobilenetv2_0.25",
            "resnet18_v1", "resnet18_v2", "squeezenet1.0", "squeezenet1.1", "vgg11", "vgg11_bn"]


def _zoo(names):
    """The names as pytest parameters, those outside FAMILIES marked ``zoo``."""
    return [pytest.param(n, marks=() if n in FAMILIES else pytest.mark.zoo) for n in names]


def _size(name):
    return next((s for prefix, s in SIZES.items() if name.startswith(prefix)), 64)


def _step(net, X, label, seed):
    """Output, input gradient and parameter gradients of one training step's forward and backward."""
    X = X.copy()
    X.attach_grad()
    mx.random.seed(seed)                       # the same dropout masks for both nets
    with autograd.record():
        Y = net(X)
        L = gluon.loss.SoftmaxCrossEntropyLoss()(Y, label)
    L.backward()
    grads = [p.grad() for p in net.collect_params().values() if p.grad_req != "null"]
    return [Y, X.grad] + grads


def _blocks_of(net, classes):
    found = []
    net.apply(lambda b: found.append(b) if isinstance(b, classes) else None)
    return found


def test_model_zoo_list_is_every_network_get_model_knows():
    """NETWORKS covers the whole model zoo, so a new network cannot go untested."""
    with pytest.raises(ValueError) as refused:
        vision.get_model("not-a-network")
    # Gluon's message lists every name it knows, one per line
    known = set(str(refused.value).split("Available options are")[-1].split())
    assert set(NETWORKS) == known
    assert set(FAMILIES) <= set(NETWORKS) and set(FLOAT32_NETWORKS) <= set(NETWORKS)


def _compare(name, hybridize, dtype):
    mx.random.seed(0)
    builtin = vision.get_model(name, classes=10)
    with substitute():
        ours = vision.get_model(name, classes=10)
    builtin_layers = _blocks_of(builtin, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D,
                                          nn.GlobalAvgPool2D, nn.GlobalMaxPool2D, nn.BatchNorm))
    # sequences built as nn.HybridSequential(); not its subclasses (HybridConcurrent)
    builtin_layers += [b for b in _blocks_of(builtin, nn.HybridSequential)
                       if type(b) is nn.HybridSequential]
    our_layers = _blocks_of(ours, tuple(SUBSTITUTES.values()))
    assert len(our_layers) == len(builtin_layers) > 0
    assert not _blocks_of(ours, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D))
    # ours subclass Gluon's BatchNorm and HybridSequential (isinstance checks of users' code
    # still hold)
    for gluons in (nn.BatchNorm, nn.HybridSequential):
        assert not [b for b in _blocks_of(ours, gluons) if type(b) is gluons]
    shape = (1 if _size(name) > 64 else 2, 3, _size(name), _size(name))
    X = nd.random.normal(shape=shape)
    label = nd.array(np.arange(shape[0]) % 10)
    builtin.initialize(mx.init.Xavier())
    ours.initialize()
    builtin(X), ours(X)                                          # deferred shapes
    for mine, theirs in zip(ours.collect_params().values(), builtin.collect_params().values()):
        assert mine.shape == theirs.shape
        mine.set_data(theirs.data())
    for net in (builtin, ours):
        net.cast(dtype)
        if hybridize:
            net.hybridize()
    X, label = X.astype(dtype), label.astype(dtype)
    names = ["output", "input gradient"] + [n for n, p in builtin.collect_params().items()
                                            if p.grad_req != "null"]
    A = [a.asnumpy() for a in _step(ours, X, label, 1)]
    B = [b.asnumpy() for b in _step(builtin, X, label, 1)]
    floor = 1e-6 * max(np.abs(b).max() for b in B[1:])
    for what, a, b in zip(names, A, B):
        err = np.abs(a - b).max() / max(np.abs(b).max(), floor)
        assert err <= RTOL[dtype], f"{name} {dtype} {what}: relative error {err:.2e}"


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("name", _zoo(NETWORKS))
def test_model_zoo_network_on_our_blocks_equals_the_builtin_in_float64(name, hybridize):
    _compare(name, hybridize, "float64")


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("name", _zoo(FLOAT32_NETWORKS))
def test_model_zoo_network_without_batch_norm_equals_the_builtin_in_float32(name, hybridize):
    _compare(name, hybridize, "float32")


def test_every_name_is_gluons_again_after_the_block_even_after_an_error():
    builtins = {name: getattr(nn, name) for name in SUBSTITUTES}
    with pytest.raises(RuntimeError, match="inside"):
        with substitute():
            assert nn.Conv2D is cb.Conv2D and nn.conv_layers.MaxPool2D is cb.MaxPool2D
            with substitute(["Conv2D"]):              # nested: the outer block's names come back
                assert nn.Conv2D is cb.Conv2D
            assert nn.AvgPool2D is cb.AvgPool2D
            raise RuntimeError("inside")
    assert {name: getattr(nn, name) for name in SUBSTITUTES} == builtins
    assert nn.conv_layers.Conv2D is builtins["Conv2D"]


def test_substituting_only_the_convolutions_leaves_gluons_pools():
    with substitute(["Conv2D"]):
        net = vision.get_model("resnet18_v1")
    assert isinstance(net.features[0], cb.Conv2D)
    assert isinstance(net.features[3], nn.MaxPool2D) and not isinstance(net.features[3],
                                                                          cb.MaxPool2D)


@pytest.mark.parametrize("names, error, message", [
    (["Conv2DTranspose"], ValueError, "no block to substitute for gluon.nn.Conv2DTranspose"),
    (["Conv2D", "Conv1D"], ValueError, "gluon.nn.Conv1D; it substitutes Conv2D, MaxPool2D"),
    ("Conv2D", TypeError, "iterable of gluon.nn block names, got 'Conv2D'"),
    ([2], TypeError, "iterable of gluon.nn block names"),
])
def test_what_cannot_be_substituted_is_refused_before_anything_changes(names, error, message):
    builtin = nn.Conv2D
    with pytest.raises(error, match=message):
        with substitute(names):
            pass
    assert nn.Conv2D is builtin


def test_a_layer_setting_ours_refuses_names_the_argument():
    with pytest.raises(ValueError, match="layout"):
        with substitute():
            nn.Conv2D(8, 3, layout="NCW")
    assert nn.Conv2D is not cb.Conv2D


def test_batch_norm_is_ours_and_gluons_own_module_keeps_its_class():
    """Gluon's BatchNorm.__init__ calls super(BatchNorm, self) through its module's global:
    replacing that global with ours (a subclass) made the constructor recurse."""
    with substitute():
        bn = nn.BatchNorm(scale=False)
        assert type(bn) is cb.BatchNorm and nn.basic_layers.BatchNorm is not cb.BatchNorm
    assert bn._kwargs["fix_gamma"] and isinstance(bn, nn.BatchNorm)
