"""d2l-zh v1 chapter 5's networks (§5.6-5.12), built from our blocks or gluon.nn's.

Each network is built twice (``block='custom'`` and ``block='builtin'``) from
the same initialisation and trained for a few steps on small random inputs:
the layers are the ones the book lists, the outputs have its shapes, and the
two losses agree step by step to float32 rounding.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

import cnn_base as cb
from cnn_base.nets.alexnet import alexnet
from cnn_base.nets.densenet import densenet
from cnn_base.nets.googlenet import googlenet
from cnn_base.nets.lenet_bn import lenet_bn
from cnn_base.nets.nin import nin
from cnn_base.nets.resnet import resnet18
from cnn_base.nets.vgg import vgg11

# name: (constructor, a small input side it takes, the book's input side)
NETS = {
    "alexnet": (alexnet, 67, 224),
    "vgg11": (vgg11, 32, 224),
    "nin": (nin, 67, 224),
    "googlenet": (googlenet, 32, 96),
    "lenet_bn": (lenet_bn, 28, 28),
    "resnet18": (resnet18, 32, 96),
    "densenet": (densenet, 32, 96),
}
OURS = (cb.Conv2D, cb.MaxPool2D, cb.AvgPool2D, cb.GlobalAvgPool2D)
GLUONS = (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D, nn.GlobalAvgPool2D)


def _layers_of(net, classes):
    found = []
    net.apply(lambda b: found.append(type(b).__name__) if isinstance(b, classes) else None)
    return found


@pytest.mark.parametrize("name", sorted(NETS))
def test_custom_and_builtin_nets_have_the_same_layers_each_from_its_library(name):
    make = NETS[name][0]
    custom, builtin = make("custom"), make("builtin")
    assert _layers_of(custom, OURS) == _layers_of(builtin, GLUONS) != []
    assert not _layers_of(custom, GLUONS[:2]) and not _layers_of(builtin, OURS)


@pytest.mark.parametrize("name, convs, pools", [
    ("alexnet", 5, 3), ("vgg11", 8, 5), ("nin", 12, 4), ("googlenet", 3 + 9 * 6, 5 + 9),
    ("lenet_bn", 2, 2), ("resnet18", 1 + 8 * 2 + 3, 2), ("densenet", 1 + 16 + 3, 2 + 3),
])
def test_each_net_has_the_books_convs_and_pools(name, convs, pools):
    layers = _layers_of(NETS[name][0]("custom"), OURS)
    assert layers.count("Conv2D") == convs
    assert len(layers) - convs == pools


def _train(net, X, y, steps, hybridize):
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(steps):
        with autograd.record():
            L = loss(net(X), y)
        L.backward()
        trainer.step(X.shape[0])
        losses.append(float(L.mean().asscalar()))
    return losses


@pytest.mark.parametrize("dtype, steps, rtol", [("float64", 3, 1e-9), ("float32", 1, 1e-5)])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_custom_and_builtin_nets_train_alike_from_the_same_start(name, hybridize, dtype, steps,
                                                                 rtol):
    """SGD steps from the same weights: the same output shape, the same losses.

    Three steps in float64. In float32 the first step's loss: later steps of
    the nets with batch norm move apart by more than rounding between any two
    float32 implementations (measured: ResNet-18's third loss 2e-3 apart on 8
    images, Gluon against Gluon with other rounding alike), which the real
    runs of ``cnn-base train`` compare against Gluon's own spread instead.
    """
    make, side, _ = NETS[name]
    mx.random.seed(1)
    X = nd.random.uniform(shape=(8, 1, side, side))
    y = nd.array(np.arange(8) % 10)
    custom, builtin = make("custom"), make("builtin")
    builtin.initialize(init.Xavier())
    custom.initialize()
    assert builtin(X).shape == custom(X).shape == (8, 10)
    for mine, theirs in zip(custom.collect_params().values(), builtin.collect_params().values()):
        mine.set_data(theirs.data())
    custom.cast(dtype), builtin.cast(dtype)
    X, y = X.astype(dtype), y.astype(dtype)
    mx.random.seed(2)                 # the same dropout masks
    ours = _train(custom, X, y, steps, hybridize)
    mx.random.seed(2)
    gluons = _train(builtin, X, y, steps, hybridize)
    assert np.isfinite(gluons).all()
    np.testing.assert_allclose(ours, gluons, rtol=rtol)


@pytest.mark.parametrize("name", sorted(NETS))
def test_the_books_input_gives_ten_scores(name):
    make, _, side = NETS[name]
    net = make("custom")
    net.initialize()
    assert net(nd.zeros((1, 1, side, side))).shape == (1, 10)


def test_an_unknown_block_choice_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="block must be one of"):
        resnet18("torch")
