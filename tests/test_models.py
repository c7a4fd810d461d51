"""LeNet (cnn_base.nets): d2l-zh v1's layers, and our blocks equal to Gluon's inside it."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd
from mxnet.gluon import nn

import cnn_base as cb
from cnn_base.nets import layer_shapes, lenet

# d2l-zh v1 §5.5 prints these for X of shape (1, 1, 28, 28)
D2L_SHAPES = [(1, 6, 24, 24), (1, 6, 12, 12), (1, 16, 8, 8), (1, 16, 4, 4), (1, 120), (1, 84),
              (1, 10)]


@pytest.mark.parametrize("block", ["custom", "builtin"])
def test_lenet_layer_output_shapes_are_d2ls(block):
    net = cb.init_net(lenet(block), mx.cpu(), seed=0)
    shapes = layer_shapes(net, nd.random.uniform(shape=(1, 1, 28, 28)))
    assert [shape for _, shape in shapes] == D2L_SHAPES


@pytest.mark.parametrize("block, conv, pool", [
    ("custom", cb.Conv2D, cb.MaxPool2D),
    ("builtin", mx.gluon.nn.Conv2D, mx.gluon.nn.MaxPool2D),
])
def test_lenet_block_picks_the_conv_and_pool_classes_and_nothing_else(block, conv, pool):
    net = lenet(block)
    assert [type(layer) for layer in net][:4] == [conv, pool, conv, pool]
    assert all(type(layer) is mx.gluon.nn.Dense for layer in list(net)[4:])


def _params(net):
    return [p.data().asnumpy() for p in net.collect_params().values()]


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_custom_and_builtin_lenet_from_one_seed_agree_in_weights_outputs_and_gradients(activation):
    X = nd.random.uniform(shape=(8, 1, 28, 28))
    y = nd.array([0, 1, 2, 3, 4, 5, 6, 7])
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    results = {}
    for block in ("custom", "builtin"):
        net = cb.init_net(lenet(block, activation), mx.cpu(), seed=3)
        with autograd.record():
            out = net(X)
            l = loss(out, y).sum()
        l.backward()
        results[block] = (net, out.asnumpy(),
                          [p.grad().asnumpy() for p in net.collect_params().values()])
    (custom, out_c, grads_c), (builtin, out_b, grads_b) = results["custom"], results["builtin"]
    assert [p.shape for p in custom.collect_params().values()] == \
        [p.shape for p in builtin.collect_params().values()]
    for a, b in zip(_params(custom), _params(builtin)):
        np.testing.assert_array_equal(a, b)           # the very same draws
    np.testing.assert_allclose(out_c, out_b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_c, grads_b):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_lenet_has_d2ls_parameter_count():
    net = cb.init_net(lenet("custom"), mx.cpu(), seed=0)
    count = sum(p.data().size for p in net.collect_params().values())
    # conv 6*1*25+6, conv 16*6*25+16, dense 256*120+120, 120*84+84, 84*10+10
    assert count == 156 + 2416 + 30840 + 10164 + 850


def test_custom_lenet_weights_load_into_builtin_lenet(tmp_path):
    custom = cb.init_net(lenet("custom"), mx.cpu(), seed=1)
    builtin = cb.init_net(lenet("builtin"), mx.cpu(), seed=2)
    custom.save_parameters(str(tmp_path / "lenet.params"))
    builtin.load_parameters(str(tmp_path / "lenet.params"))
    X = nd.random.uniform(shape=(2, 1, 28, 28))
    np.testing.assert_allclose(builtin(X).asnumpy(), custom(X).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", ["custom", "builtin"])
def test_hybrid_lenet_hybridizes_and_equals_the_books_sequential_one(block, tmp_path):
    book = cb.init_net(lenet(block), mx.cpu(), seed=3)
    hybrid = lenet(block, hybrid=True)
    assert isinstance(hybrid, nn.HybridSequential) and not isinstance(book, nn.HybridSequential)
    book.save_parameters(str(tmp_path / "lenet.params"))
    hybrid.load_parameters(str(tmp_path / "lenet.params"))
    hybrid.hybridize()
    X = nd.random.uniform(shape=(2, 1, 28, 28))
    np.testing.assert_allclose(hybrid(X).asnumpy(), book(X).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"block": "gluon"}, ValueError, "block must be one of 'custom', 'builtin', got 'gluon'"),
    ({"block": None}, TypeError, "block must be one of 'custom', 'builtin', got NoneType None"),
    ({"activation": "swish"}, ValueError, "activation must be one of 'sigmoid', .* got 'swish'"),
    ({"hybrid": 1}, TypeError, "hybrid must be True or False, got int 1"),
])
def test_lenet_refuses_unknown_blocks_and_activations(kwargs, error, match):
    with pytest.raises(error, match=match):
        lenet(**kwargs)
