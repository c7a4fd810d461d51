"""cnn_base.export (issue 22, item 8): a model of our blocks that plain MXNet loads.

The portable graph is read in a fresh interpreter that never imports cnn_base, and its
outputs are compared with the original's.
"""
import json
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest

import cnn_base as cb
from cnn_base import native

PLAIN_MXNET = textwrap.dedent("""
    import sys, warnings
    import numpy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(numpy, "bool"):
            numpy.bool = bool
    import mxnet as mx
    prefix, x_file, y_file = sys.argv[1:]
    try:
        net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                           prefix + "-0000.params")
        numpy.save(y_file, net(mx.nd.array(numpy.load(x_file))).asnumpy())
    except Exception as e:
        print(" ".join(str(e).split())[:300])
    assert not [m for m in sys.modules if m.startswith("cnn_base")]
""")


def _net(hybrid):
    net = cb.lenet("custom", "relu", hybrid=hybrid)
    net.initialize(mx.init.Xavier())
    return net


def in_plain_mxnet(prefix, X, tmp_path):
    np.save(tmp_path / "x.npy", X.asnumpy())
    done = subprocess.run([sys.executable, "-c", PLAIN_MXNET, str(prefix), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.load(tmp_path / "y.npy") if (tmp_path / "y.npy").exists() else done.stdout.strip()


@pytest.mark.parametrize("hybrid", [False, True], ids=["Sequential", "HybridSequential"])
def test_a_portable_export_loads_in_plain_mxnet_with_the_same_outputs(hybrid, tmp_path):
    net = _net(hybrid)
    X = mx.nd.random.uniform(shape=(4, 1, 28, 28))
    expected = net(X).asnumpy()
    symbol_file, params_file = cb.export(net, tmp_path / "lenet", X[:1], portable=True)
    assert (symbol_file.name, params_file.name) == ("lenet-symbol.json", "lenet-0000.params")
    ops = {node["op"] for node in json.loads(symbol_file.read_text())["nodes"]}
    assert not ops & set(cb.KERNEL_OPERATORS)
    np.testing.assert_allclose(in_plain_mxnet(tmp_path / "lenet", X, tmp_path), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not native.loaded(), reason="the C++ kernels are not loaded")
def test_the_default_export_names_our_operators_and_plain_mxnet_cannot_load_it(tmp_path):
    net = _net(True)
    X = mx.nd.random.uniform(shape=(2, 1, 28, 28))
    symbol_file, _ = cb.export(net, tmp_path / "raw", X[:1], portable=False)
    ops = {node["op"] for node in json.loads(symbol_file.read_text())["nodes"]}
    assert {native.CONV_OP_NAME, native.OP_NAME} <= ops     # LeNet has no batch norm
    said = in_plain_mxnet(tmp_path / "raw", X, tmp_path)
    assert "is not registered" in said
    np.testing.assert_allclose(cb.load_exported(tmp_path / "raw")(X).asnumpy(), net(X).asnumpy(),
                               rtol=1e-5, atol=1e-6)


def test_export_gives_back_the_kernels_setting_and_the_hybridization(tmp_path):
    net = _net(True)
    net.hybridize(static_alloc=True)
    X = mx.nd.random.uniform(shape=(2, 1, 28, 28))
    before = net(X).asnumpy()
    enabled = native.enabled()
    cb.export(net, tmp_path / "m", X[:1])
    assert native.enabled() == enabled
    assert net._active and dict(net._flags)["static_alloc"] is True
    np.testing.assert_allclose(net(X).asnumpy(), before, rtol=1e-6)


def test_loading_a_kernel_graph_without_the_kernels_says_what_to_do(tmp_path, monkeypatch):
    graph = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                       {"op": "cnn_base_conv2d", "name": "c", "inputs": [[0, 0, 0]]}]}
    (tmp_path / "m-symbol.json").write_text(json.dumps(graph))
    monkeypatch.setattr(native, "loaded", lambda: False)
    with pytest.raises(RuntimeError, match=r"uses cnn_base's C\+\+ operators \(cnn_base_conv2d\).*"
                                           r"cnn_base.export\(net, path, example, portable=True\)"):
        cb.load_exported(tmp_path / "m")


def test_an_export_into_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        cb.export(_net(True), tmp_path / "no" / "m", mx.nd.zeros((1, 1, 28, 28)))


@pytest.mark.skipif(not native.loaded(), reason="the C++ kernels are not loaded")
def test_a_net_with_our_batch_norm_exports_both_ways(tmp_path):
    """LeNet-BN (our BatchNorm: the kernel, its mode from a custom operator): the default
    export names cnn_base_batch_norm and reads back with cnn_base; the portable one reads
    in plain MXNet. Both give the prediction-mode outputs of the net after a training step."""
    from cnn_base.nets import CHAPTER_NETS
    raw, _ = _exported_both_ways(CHAPTER_NETS["lenet_bn"][0]("custom"), (4, 1, 28, 28), tmp_path)
    assert native.BATCH_NORM_OP_NAME in {n["op"] for n in raw}


def _exported_both_ways(net, shape, tmp_path):
    """``net`` (hybridized, one training step to move its running statistics) exported by
    default and portably, each read back (with cnn_base, in plain MXNet) and checked to give
    the net's prediction-mode outputs; the two graphs' nodes."""
    net.initialize(mx.init.Xavier())
    net.hybridize()
    X = mx.nd.random.uniform(shape=shape)
    with mx.autograd.record():
        net(X)                                   # moves the running statistics
    expected = net(X).asnumpy()
    symbol_file, _ = cb.export(net, tmp_path / "raw", X[:1], portable=False)
    raw = json.loads(symbol_file.read_text())["nodes"]
    np.testing.assert_allclose(cb.load_exported(tmp_path / "raw")(X).asnumpy(), expected,
                               rtol=1e-5, atol=1e-6)
    symbol_file, _ = cb.export(net, tmp_path / "portable", X[:1], portable=True)
    portable = json.loads(symbol_file.read_text())["nodes"]
    np.testing.assert_allclose(in_plain_mxnet(tmp_path / "portable", X, tmp_path), expected,
                               rtol=1e-5, atol=1e-6)
    return raw, portable


@pytest.mark.skipif(not native.loaded(), reason="the C++ kernels are not loaded")
def test_a_sequence_with_the_relu_fused_exports_both_ways(tmp_path):
    """cb.HybridSequential runs the ReLU after our conv and batch norm inside their operators:
    the default export carries it as their attribute (no Activation left), the portable one
    as MXNet's Activation after MXNet's operators; both give the net's outputs."""
    from mxnet.gluon import nn
    net = cb.HybridSequential()
    net.add(cb.Conv2D(4, 3), nn.Activation("relu"), cb.BatchNorm(), nn.Activation("relu"),
            nn.Dense(3))
    raw, portable = _exported_both_ways(net, (4, 1, 8, 8), tmp_path)
    assert "Activation" not in {n["op"] for n in raw}
    assert {(n["op"], n.get("attrs", {}).get("relu")) for n in raw} >= {
        (native.CONV_OP_NAME, "True"), (native.BATCH_NORM_OP_NAME, "1")}
    ops = [n["op"] for n in portable]
    assert ops.count("Activation") == 2 and not set(ops) & set(cb.KERNEL_OPERATORS)
