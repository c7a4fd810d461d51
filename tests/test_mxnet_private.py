"""cnn_base._mxnet_private: every private name of MXNet that cnn_base uses, pinned to MXNet 1.9.1.

If MXNet changes under us, the test of the function that broke says which one.
"""
import inspect

import mxnet as mx
import pytest
from mxnet import gluon, nd
from mxnet.gluon import HybridBlock, nn

import cnn_base as cb
from cnn_base import _mxnet_private as private


def test_the_pinned_mxnet_is_1_9_1():
    assert mx.__version__ == "1.9.1"


def test_rebuild_graph_drops_a_hybridized_blocks_cached_graph():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.hybridize()
    net(nd.ones((1, 3)))
    assert net._cached_op is not None
    private.rebuild_graph(net)
    assert net._cached_op is None
    assert net(nd.ones((1, 3))).shape == (1, 2)      # built again, same flags


def test_shape_seen_by_parent_reads_the_locals_of_infer_attrs():
    # the names it reads off the stack are HybridBlock._infer_attrs's own
    assert {"inputs", "args_without_none"} <= set(HybridBlock._infer_attrs.__code__.co_varnames)
    assert private.shape_seen_by_parent(mx.sym.var("x")) is None    # no parent inference running


def test_shape_seen_by_parent_gives_the_parents_input_shape_to_conv2d():
    net = nn.HybridSequential()
    net.add(cb.Conv2D(2, kernel_size=5))
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match=r"input of height and width \(3, 3\) is too small"):
        net(nd.ones((1, 1, 3, 3)))


def test_trainer_kvstore_is_the_constructor_argument():
    params = nn.Dense(1, in_units=1).collect_params()
    params.initialize()
    assert private.trainer_kvstore(gluon.Trainer(params, "sgd", kvstore=None)) is None
    assert private.trainer_kvstore(gluon.Trainer(params, "sgd")) == "device"


def test_children_lists_a_blocks_children_in_order():
    net = nn.HybridSequential()
    net.add(nn.Dense(1), cb.MaxPool2D())
    assert [type(c) for c in private.children(net)] == [nn.Dense, cb.MaxPool2D]
    assert private.children(object()) == []


def test_kvstore_barrier_is_a_method_of_mxnets_kvstore():
    assert "_barrier" in dict(inspect.getmembers(mx.kv.KVStore))


def test_is_relu_activation_reads_the_activations_type_and_refuses_subclasses():
    class Relu(nn.Activation):
        pass
    assert private.is_relu_activation(nn.Activation("relu"))
    assert not private.is_relu_activation(nn.Activation("tanh"))
    assert not private.is_relu_activation(Relu("relu"))
    assert not private.is_relu_activation(nn.Dense(2))


def test_has_hooks_sees_forward_hooks_and_pre_hooks():
    plain, hooked, pre_hooked = nn.Activation("relu"), nn.Activation("relu"), nn.Dense(2)
    hooked.register_forward_hook(lambda block, inputs, out: None)
    pre_hooked.register_forward_pre_hook(lambda block, inputs: None)
    assert not private.has_hooks(plain)
    assert private.has_hooks(hooked) and private.has_hooks(pre_hooked)


def test_is_hybridized_follows_hybridize():
    net = nn.Dense(2, in_units=3)
    assert not private.is_hybridized(net)
    net.hybridize()
    assert private.is_hybridized(net)
    net.hybridize(False)
    assert not private.is_hybridized(net)
