"""cnn_base.Conv2D / MaxPool2D / AvgPool2D against gluon.nn's built-ins, number for number."""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

import cnn_base as cb
from reference import pool2d_batch_np

FWD = dict(rtol=1e-5, atol=1e-5)     # float32, sums of at most a few hundred products
GRAD = dict(rtol=1e-4, atol=1e-5)    # weight gradients sum over batch and positions too


def _random_conv_settings(n, seed=2024, channels_per_group=(1, 3)):
    """``n`` valid (input_shape, Conv2D kwargs) drawn with a fixed seed: non-square everything."""
    rng = np.random.RandomState(seed)
    table = []
    while len(table) < n:
        groups = int(rng.choice([1, 1, 2, 3]))
        c_i = groups * int(rng.randint(channels_per_group[0], channels_per_group[1] + 1))
        c_o = groups * int(rng.randint(1, 4))
        k = tuple(int(v) for v in rng.randint(1, 5, size=2))
        s = tuple(int(v) for v in rng.randint(1, 4, size=2))
        p = tuple(int(v) for v in rng.randint(0, 3, size=2))
        d = tuple(int(v) for v in rng.randint(1, 3, size=2))
        h, w = (int(v) for v in rng.randint(3, 10, size=2))
        if h + 2 * p[0] < d[0] * (k[0] - 1) + 1 or w + 2 * p[1] < d[1] * (k[1] - 1) + 1:
            continue
        kwargs = dict(channels=c_o, kernel_size=k, strides=s, padding=p, dilation=d,
                      groups=groups, use_bias=bool(rng.rand() < 0.8))
        table.append(((int(rng.randint(1, 4)), c_i, h, w), kwargs))
    return table


CONV_TABLE = [
    ((2, 3, 7, 9), dict(channels=4, kernel_size=3)),
    ((1, 2, 8, 6), dict(channels=5, kernel_size=(3, 2), strides=(2, 1), padding=(1, 0))),
    ((3, 4, 9, 7), dict(channels=6, kernel_size=(2, 3), padding=(2, 1), dilation=(2, 1))),
    ((2, 6, 7, 8), dict(channels=4, kernel_size=3, padding=1, groups=2)),
    ((2, 6, 6, 9), dict(channels=6, kernel_size=(1, 3), strides=(2, 3), dilation=(1, 2),
                        groups=3, use_bias=False)),
    ((1, 3, 5, 8), dict(channels=3, kernel_size=(5, 3), padding=(2, 1), groups=3,
                        activation="relu")),
    ((2, 4, 5, 5), dict(channels=8, kernel_size=1)),
    ((4, 1, 6, 6), dict(channels=2, kernel_size=6, activation="tanh")),
    ((2, 2, 4, 11), dict(channels=3, kernel_size=(3, 4), strides=3, padding=(0, 2),
                         dilation=(1, 2), in_channels=2)),
    # 4 or more input channels per group: conv2d gathers the rows instead of im2col
    ((2, 8, 7, 9), dict(channels=6, kernel_size=3, padding=1)),
    ((2, 8, 9, 8), dict(channels=4, kernel_size=(3, 2), strides=(2, 1), padding=(1, 2),
                        dilation=(1, 2), groups=2)),
    ((1, 12, 6, 7), dict(channels=6, kernel_size=(2, 3), strides=(1, 3), groups=3,
                         use_bias=False)),
    ((3, 4, 5, 6), dict(channels=5, kernel_size=1, strides=2)),
    ((2, 4, 4, 11), dict(channels=3, kernel_size=(3, 4), strides=3, padding=(0, 2),
                         dilation=(1, 2), activation="relu")),
] + _random_conv_settings(12) + _random_conv_settings(8, seed=7, channels_per_group=(4, 6))


def _conv_pair(kwargs, X):
    """Our Conv2D and Gluon's with the same random weight and bias (bias made non-zero)."""
    ours, builtin = cb.Conv2D(**kwargs), nn.Conv2D(**kwargs)
    ours.initialize(init.Normal(0.5))
    builtin.initialize()
    ours(X), builtin(X)                       # finish deferred initialization
    if ours.bias is not None:
        ours.bias.set_data(nd.random.normal(shape=ours.bias.shape))
    builtin.weight.set_data(ours.weight.data())
    if builtin.bias is not None:
        builtin.bias.set_data(ours.bias.data())
    return ours, builtin


def _forward_backward(block, X, dY):
    """Output, input gradient and parameter gradients (by attribute name) for head gradient dY."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = block(X)
    Y.backward(dY)
    params = {"weight": block.weight, "bias": block.bias} if hasattr(block, "weight") else {}
    grads = {name: p.grad().asnumpy() for name, p in params.items() if p is not None}
    return Y.asnumpy(), X.grad.asnumpy(), grads


@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("input_shape, kwargs", CONV_TABLE)
def test_conv2d_output_and_gradients_equal_gluon_conv2d(input_shape, kwargs, hybridize):
    X = nd.random.normal(shape=input_shape)
    ours, builtin = _conv_pair(kwargs, X)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    dY = nd.random.normal(shape=builtin(X).shape)
    Y, dX, grads = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, grads_ref = _forward_backward(builtin, X, dY)
    np.testing.assert_allclose(Y, Y_ref, **FWD)
    np.testing.assert_allclose(dX, dX_ref, **GRAD)
    assert grads.keys() == grads_ref.keys() == ({"weight", "bias"} if kwargs.get(
        "use_bias", True) else {"weight"})
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_ref[name], **GRAD)


@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("c_i", [2, 8], ids=["im2col", "gathered"])
def test_conv2d_float64_gradient_matches_central_differences(c_i):
    from reference import central_difference
    X = nd.random.normal(shape=(1, c_i, 4, 5), dtype="float64")
    conv = cb.Conv2D(2, (2, 3), strides=(1, 2), padding=(1, 1), dilation=(2, 1), groups=2)
    conv.initialize(init.Normal(0.5))
    conv.cast("float64")
    X.attach_grad()
    with autograd.record():
        loss = (conv(X) ** 2).sum()
    loss.backward()
    numeric = central_difference(lambda x: (conv(nd.array(x, dtype="float64")) ** 2)
                                 .sum().asscalar(), X.asnumpy())
    np.testing.assert_allclose(X.grad.asnumpy(), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kwargs, out_hw", [
    (dict(kernel_size=3, padding=1), (8, 8)),
    (dict(kernel_size=(5, 3), padding=(2, 1)), (8, 8)),
    (dict(kernel_size=3, padding=1, strides=2), (4, 4)),
    (dict(kernel_size=(3, 5), padding=(0, 1), strides=(3, 4)), (2, 2)),
])
def test_conv2d_gives_blog_padding_and_stride_shapes_on_8x8(kwargs, out_hw):
    conv = cb.Conv2D(1, **kwargs)
    conv.initialize()
    assert conv(nd.random.uniform(shape=(1, 1, 8, 8))).shape == (1, 1) + out_hw


@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_conv2d_defers_in_channels_to_the_first_input(hybridize):
    conv = cb.Conv2D(4, (3, 2), groups=2)
    conv.initialize()
    if hybridize:
        conv.hybridize()
    assert conv.weight.shape == (4, 0, 3, 2)
    assert repr(conv).startswith("Conv2D(None -> 4,")
    conv(nd.ones((1, 6, 5, 5)))
    assert conv.weight.shape == (4, 3, 3, 2)
    assert conv.bias.shape == (4,)
    assert repr(conv).startswith("Conv2D(3 -> 4,")      # as Gluon: in_channels / groups


@pytest.mark.usefixtures("conv_backend")
def test_conv2d_defers_in_channels_inside_a_hybridized_sequential():
    net = nn.HybridSequential()
    net.add(cb.Conv2D(3, 3, groups=1), cb.Conv2D(6, 2, groups=3), nn.Dense(2))
    net.initialize()
    net.hybridize()
    assert net(nd.ones((2, 5, 6, 6))).shape == (2, 2)
    assert net[0].weight.shape == (3, 5, 3, 3)
    assert net[1].weight.shape == (6, 1, 2, 2)


@pytest.mark.parametrize("kwargs", [
    dict(channels=1, kernel_size=3, strides=2, padding=1),
    dict(channels=4, kernel_size=(3, 2), in_channels=2),
    dict(channels=4, kernel_size=3, dilation=(2, 1), groups=2, use_bias=False,
         activation="relu"),
    dict(channels=2, kernel_size=1, strides=(1, 3), padding=(0, 2)),
])
def test_conv2d_repr_equals_gluon_repr(kwargs):
    ours, builtin = cb.Conv2D(**kwargs), nn.Conv2D(**kwargs)
    assert repr(ours) == repr(builtin)
    for block in (ours, builtin):
        block.initialize()
        block(nd.ones((1, 2, 6, 6)))
    assert repr(ours) == repr(builtin)


def test_conv2d_repr_shows_only_non_default_settings():
    conv = cb.Conv2D(1, kernel_size=3, strides=2, padding=1, in_channels=1)
    assert repr(conv) == "Conv2D(1 -> 1, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"


@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("direction", ["ours_to_gluon", "gluon_to_ours"])
def test_conv2d_parameters_load_across_ours_and_gluon(tmp_path, direction):
    kwargs = dict(channels=4, kernel_size=(3, 2), padding=1, groups=2)
    X = nd.random.normal(shape=(2, 6, 5, 7))
    source, target = cb.Conv2D(**kwargs), nn.Conv2D(**kwargs)
    if direction == "gluon_to_ours":
        source, target = target, source
    source.initialize(init.Normal(0.5))
    source.bias.initialize(init.Normal(0.5), force_reinit=True)
    source(X)
    path = str(tmp_path / "conv.params")
    source.save_parameters(path)
    target.load_parameters(path)
    np.testing.assert_allclose(target(X).asnumpy(), source(X).asnumpy(), **FWD)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("block", [
    lambda: cb.Conv2D(3, (3, 2), strides=(2, 1), padding=1, dilation=(1, 2), groups=1),
    lambda: cb.MaxPool2D(3, 2, 1, ceil_mode=True),
    lambda: cb.AvgPool2D((2, 3), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False),
], ids=["conv", "maxpool", "avgpool"])
def test_export_then_symbolblock_imports_gives_the_same_outputs(tmp_path, block):
    block = block()
    block.initialize(init.Normal(0.5))
    block.hybridize()
    X = nd.random.normal(shape=(2, 2, 7, 8))
    Y = block(X)
    block.export(str(tmp_path / "model"))
    imported = gluon.SymbolBlock.imports(str(tmp_path / "model-symbol.json"), ["data"],
                                         str(tmp_path / "model-0000.params"))
    np.testing.assert_allclose(imported(X).asnumpy(), Y.asnumpy(), **FWD)
    # the exported graph does not bake in the input size
    X2 = nd.random.normal(shape=(1, 2, 9, 6))
    np.testing.assert_allclose(imported(X2).asnumpy(), block(X2).asnumpy(), **FWD)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("make", [lambda: cb.Conv2D(2, 3, padding=1), lambda: cb.MaxPool2D(2),
                                  lambda: cb.AvgPool2D(3, 2, 1)], ids=["conv", "max", "avg"])
def test_hybridized_block_accepts_a_new_input_size(make):
    block = make()
    block.initialize()
    plain = block(nd.ones((1, 2, 8, 8))).shape, block(nd.ones((2, 2, 5, 7))).shape
    block.hybridize()
    assert (block(nd.ones((1, 2, 8, 8))).shape, block(nd.ones((2, 2, 5, 7))).shape) == plain


# --- pooling ---------------------------------------------------------------------------------

POOL_TABLE = [
    ((2, 3, 6, 6), dict(pool_size=2)),
    ((1, 2, 7, 5), dict(pool_size=(3, 2), strides=(2, 1), padding=(1, 0))),
    ((2, 1, 5, 9), dict(pool_size=3, strides=2, padding=1, ceil_mode=True)),
    ((1, 2, 5, 5), dict(pool_size=2, strides=3, padding=1, ceil_mode=True)),   # past the edge
    ((3, 2, 4, 7), dict(pool_size=(2, 4), strides=(1, 3), padding=(1, 2))),
    ((1, 1, 4, 4), dict(pool_size=4)),
    ((2, 3, 9, 8), dict(pool_size=(1, 3), strides=(3, 1), padding=(0, 1), ceil_mode=True)),
    ((1, 2, 6, 7), dict(pool_size=(3, 3), strides=(4, 2), padding=(2, 1), ceil_mode=True)),
]
AVG_OPTIONS = [dict(count_include_pad=True), dict(count_include_pad=False)]
# oneDNN, behind Gluon's AvgPool2D on CPU, refuses these two ("could not create a descriptor
# for a pooling forward propagation primitive") with count_include_pad=False; these rows
# (named by input shape) are checked against NumPy only.
GLUON_REFUSES = {(1, 2, 5, 5), (2, 3, 9, 8)}


def _pool_cases(include_refused):
    for input_shape, kwargs in POOL_TABLE:
        yield pytest.param(cb.MaxPool2D, nn.MaxPool2D, input_shape, kwargs,
                           id=f"max-{input_shape}-{kwargs}")
        for extra in AVG_OPTIONS:
            if extra["count_include_pad"] or include_refused or (
                    input_shape not in GLUON_REFUSES):
                yield pytest.param(cb.AvgPool2D, nn.AvgPool2D, input_shape,
                                   {**kwargs, **extra}, id=f"avg-{input_shape}-{kwargs}-{extra}")


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("ours_cls, builtin_cls, input_shape, kwargs",
                         list(_pool_cases(include_refused=False)))
def test_pooling_output_and_input_gradient_equal_gluon(ours_cls, builtin_cls, input_shape,
                                                       kwargs, hybridize):
    ours, builtin = ours_cls(**kwargs), builtin_cls(**kwargs)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    X = nd.random.normal(shape=input_shape)     # distinct values: one max per window
    dY = nd.random.normal(shape=builtin(X).shape)
    Y, dX, _ = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    np.testing.assert_allclose(Y, Y_ref, **FWD)
    np.testing.assert_allclose(dX, dX_ref, **GRAD)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("ours_cls, builtin_cls, input_shape, kwargs",
                         list(_pool_cases(include_refused=True)))
def test_pooling_output_and_input_gradient_equal_numpy_reference(ours_cls, builtin_cls,
                                                                 input_shape, kwargs):
    block = ours_cls(**kwargs)
    X = nd.random.normal(shape=input_shape)
    out_shape = block(X).shape
    dY = nd.random.normal(shape=out_shape)
    Y, dX, _ = _forward_backward(block, X, dY)
    mode = "max" if ours_cls is cb.MaxPool2D else "avg"
    Y_ref, dX_ref = pool2d_batch_np(X.asnumpy(), dY.asnumpy(), mode=mode, **kwargs)
    assert out_shape == Y_ref.shape
    np.testing.assert_allclose(Y, Y_ref, **FWD)
    np.testing.assert_allclose(dX, dX_ref, **GRAD)


X16 = nd.arange(16).reshape((1, 1, 4, 4))


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("block, expected", [
    (cb.MaxPool2D(3), [[10]]),
    (cb.MaxPool2D(3, padding=1, strides=2), [[5, 7], [13, 15]]),
    (cb.MaxPool2D((2, 3), padding=(1, 2), strides=(2, 3)), [[0, 3], [8, 11], [12, 15]]),
])
def test_max_pooling_gives_blog_values(block, expected):
    np.testing.assert_array_equal(block(X16).asnumpy()[0, 0], expected)


@pytest.mark.usefixtures("pool_backend")
def test_max_pooling_pools_each_of_the_blogs_two_channels_separately():
    X = nd.concat(X16, X16 + 1, dim=1)
    Y = cb.MaxPool2D(3, padding=1, strides=2)(X).asnumpy()
    np.testing.assert_array_equal(Y[0], [[[5, 7], [13, 15]], [[6, 8], [14, 16]]])


@pytest.mark.usefixtures("pool_backend")
def test_max_pooling_padding_never_wins_over_negative_inputs():
    X = -1 - nd.arange(16).reshape((1, 1, 4, 4))
    np.testing.assert_array_equal(cb.MaxPool2D(2, 2, 1)(X).asnumpy()[0, 0],
                                  [[-1, -2, -4], [-5, -6, -8], [-13, -14, -16]])


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("count_include_pad, corner", [(True, 1.25), (False, 5.0)])
def test_avg_pooling_counts_padding_only_when_asked(count_include_pad, corner):
    Y = cb.AvgPool2D(2, 2, 1, count_include_pad=count_include_pad)(nd.ones((1, 1, 4, 4)) * 5)
    assert Y[0, 0, 0, 0].asscalar() == corner


@pytest.mark.usefixtures("pool_backend")
def test_pool2d_base_with_mode_equals_the_named_classes():
    X = nd.random.normal(shape=(2, 3, 6, 7))
    for mode, cls in (("max", cb.MaxPool2D), ("avg", cb.AvgPool2D)):
        np.testing.assert_array_equal(cb.Pool2D(3, 2, 1, mode=mode)(X).asnumpy(),
                                      cls(3, 2, 1)(X).asnumpy())


@pytest.mark.parametrize("block, text", [
    (cb.MaxPool2D(), "MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False)"),
    (cb.AvgPool2D((2, 3), 1, (1, 0), ceil_mode=True, count_include_pad=False),
     "AvgPool2D(size=(2, 3), stride=(1, 1), padding=(1, 0), ceil_mode=True, "
     "count_include_pad=False)"),
    (cb.Pool2D(3, mode="avg"), "Pool2D(size=(3, 3), stride=(3, 3), padding=(0, 0), "
                               "ceil_mode=False, mode=avg, count_include_pad=True)"),
])
def test_pooling_repr_lists_its_settings(block, text):
    assert repr(block) == text


# --- composing into a network ----------------------------------------------------------------


def _lenet(conv, maxpool, avgpool):
    net = nn.HybridSequential()
    net.add(conv(4, 3, padding=1, activation="relu"), maxpool(2),
            conv(8, 3, activation="relu"), avgpool(2),
            nn.Dense(16, activation="relu"), nn.Dense(2))
    return net


def _two_class_images(n=64):
    """Noise with a bright 4x4 patch top-left (class 0) or bottom-right (class 1)."""
    y = nd.array(np.arange(n) % 2)
    X = nd.random.normal(scale=0.3, shape=(n, 1, 12, 12))
    for i in range(n):
        r = 0 if i % 2 == 0 else 8
        X[i, 0, r:r + 4, r:r + 4] += 1
    return X, y


@pytest.mark.usefixtures("pool_backend")
def test_lenet_of_our_blocks_trains_exports_and_matches_its_gluon_twin(tmp_path):
    X, y = _two_class_images()
    net = _lenet(cb.Conv2D, cb.MaxPool2D, cb.AvgPool2D)
    net.initialize(init.Xavier())
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    losses = []
    for _ in range(25):
        with autograd.record():
            loss = loss_fn(net(X), y).mean()
        loss.backward()
        trainer.step(1)
        losses.append(loss.asscalar())
    assert losses[-1] < 0.5 * losses[0]

    net.export(str(tmp_path / "lenet"))
    imported = gluon.SymbolBlock.imports(str(tmp_path / "lenet-symbol.json"), ["data"],
                                         str(tmp_path / "lenet-0000.params"))
    np.testing.assert_allclose(imported(X).asnumpy(), net(X).asnumpy(), **FWD)

    twin = _lenet(nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D)
    net.save_parameters(str(tmp_path / "lenet.params"))
    twin.load_parameters(str(tmp_path / "lenet.params"))
    np.testing.assert_allclose(twin(X).asnumpy(), net(X).asnumpy(), **FWD)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(channels=0, kernel_size=3), ValueError, r"channels must be positive, got 0"),
    (dict(channels="4", kernel_size=3), TypeError, r"channels must be an int, got str '4'"),
    (dict(channels=4, kernel_size=(3, 3, 3)), ValueError,
     r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\) of length 3"),
    (dict(channels=4, kernel_size=(3, "a")), TypeError, r"kernel_size must be .* got \(3, 'a'\)"),
    (dict(channels=4, kernel_size=-1), ValueError, r"kernel_size must be positive, got -1"),
    (dict(channels=4, kernel_size=3, strides=0), ValueError, r"strides must be positive, got 0"),
    (dict(channels=4, kernel_size=3, padding=-1), ValueError, r"padding must be >= 0, got -1"),
    (dict(channels=4, kernel_size=3, dilation=(1, 0)), ValueError,
     r"dilation must be positive, got \(1, 0\)"),
    (dict(channels=4, kernel_size=3, groups=0), ValueError, r"groups must be positive, got 0"),
    (dict(channels=4, kernel_size=3, groups=3), ValueError,
     r"groups=3 must divide channels=4 evenly"),
    (dict(channels=4, kernel_size=3, groups=2, in_channels=3), ValueError,
     r"groups=2 must divide in_channels=3 evenly"),
    (dict(channels=4, kernel_size=3, in_channels=-1), ValueError,
     r"in_channels must be >= 0, got -1"),
    (dict(channels=4, kernel_size=3, layout="NHWC"), ValueError,
     r"layout must be one of 'NCHW', got 'NHWC'"),
    (dict(channels=4, kernel_size=3, layout=None), TypeError, r"layout must be one of 'NCHW'"),
    (dict(channels=4, kernel_size=3, activation="relux"), ValueError,
     r"activation must be one of .*'relu'.*, got 'relux'"),
    (dict(channels=4, kernel_size=3, use_bias="yes"), TypeError,
     r"use_bias must be True or False, got str 'yes'"),
])
def test_conv2d_refuses_bad_arguments_when_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        cb.Conv2D(**kwargs)


@pytest.mark.parametrize("cls, kwargs, error, message", [
    (cb.MaxPool2D, dict(pool_size=0), ValueError, r"pool_size must be positive, got 0"),
    (cb.AvgPool2D, dict(pool_size=(2, 2, 2)), ValueError,
     r"pool_size must be an int or a pair of ints, got \(2, 2, 2\) of length 3"),
    (cb.MaxPool2D, dict(strides="2"), TypeError, r"strides must be an int or a pair of ints"),
    (cb.AvgPool2D, dict(padding=(1, -1)), ValueError, r"padding must be >= 0, got \(1, -1\)"),
    (cb.MaxPool2D, dict(pool_size=2, padding=2), ValueError,
     r"padding \(2, 2\) must be smaller than pool_size \(2, 2\) on each axis"),
    (cb.MaxPool2D, dict(layout="NHWC"), ValueError, r"layout must be one of 'NCHW', got 'NHWC'"),
    (cb.AvgPool2D, dict(ceil_mode="yes"), TypeError, r"ceil_mode must be True or False"),
    (cb.AvgPool2D, dict(count_include_pad=None), TypeError,
     r"count_include_pad must be True or False, got NoneType None"),
    (cb.Pool2D, dict(mode="min"), ValueError, r"mode must be one of 'max', 'avg', got 'min'"),
])
def test_pooling_refuses_bad_arguments_when_built(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def _conv_with_3_channels():
    conv = cb.Conv2D(2, 3)
    conv.initialize()
    conv(nd.ones((1, 3, 5, 5)))
    return conv


@pytest.mark.parametrize("make, X, error, message", [
    (lambda: cb.Conv2D(2, 3), nd.ones((3, 8, 8)), ValueError,
     r"input must be 4-D \(batch, channels, height, width\), got shape \(3, 8, 8\) \(3-D\)"),
    (lambda: cb.Conv2D(2, 3), np.ones((1, 3, 8, 8)), TypeError,
     r"input must be an mxnet NDArray"),
    (lambda: cb.Conv2D(2, 3, in_channels=3), nd.ones((1, 4, 8, 8)), ValueError,
     r"input has 4 channels but the layer expects in_channels=3"),
    (_conv_with_3_channels, nd.ones((1, 5, 8, 8)), ValueError,
     r"input has 5 channels but the layer expects in_channels=3"),
    (lambda: cb.Conv2D(4, 3, groups=2), nd.ones((1, 3, 8, 8)), ValueError,
     r"input has 3 channels, which groups=2 does not divide evenly"),
    (lambda: cb.Conv2D(2, 5), nd.ones((1, 1, 3, 9)), ValueError,
     r"input of height and width \(3, 9\) is too small for the kernel \(5, 5\): "
     r"after padding \(0, 0\) it is \(3, 9\)"),
    (lambda: cb.Conv2D(2, 3, dilation=2, padding=1), nd.ones((1, 1, 2, 2)), ValueError,
     r"too small for the dilated kernel \(5, 5\): after padding \(1, 1\) it is \(4, 4\)"),
    (lambda: cb.MaxPool2D(2), nd.ones((4, 4)), ValueError, r"input must be 4-D"),
    (lambda: cb.AvgPool2D(3, padding=(0, 1)), nd.ones((1, 1, 2, 5)), ValueError,
     r"input of height and width \(2, 5\) is too small for the pooling window \(3, 3\): "
     r"after padding \(0, 1\) it is \(2, 7\)"),
])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_bad_input_at_call_time_names_the_problem(make, X, error, message, hybridize):
    block = make()
    block.initialize()
    if hybridize:
        block.hybridize()
    with pytest.raises(error, match=message):
        block(X)
