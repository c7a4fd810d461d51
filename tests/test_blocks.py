"""cnn_base.Conv2D / MaxPool2D / AvgPool2D / the global pools against gluon.nn's, number for number.

Every parity table runs in both of Gluon's 2-D layouts. Gluon's NHWC Conv2D
does not run on the CPU in mxnet 1.9.1 (oneDNN: "could not create a descriptor
for a dilated convolution forward propagation primitive"; without oneDNN:
"Only support NCW, NCHW and NCDHW layout"), so our NHWC Conv2D is compared
with Gluon's NCHW Conv2D on the transposed input and weight, its output and
gradients transposed back. Gluon's NHWC pooling does run on the CPU and is
compared directly.
"""
import json

import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd, sym
from mxnet.gluon import nn

import cnn_base as cb
from reference import pool2d_batch_np

FWD = dict(rtol=1e-5, atol=1e-5)     # float32, sums of at most a few hundred products
GRAD = dict(rtol=1e-4, atol=1e-5)    # weight gradients sum over batch and positions too
LAYOUT = pytest.mark.parametrize("layout", ["NCHW", "NHWC"])


def _to(layout, A):
    """An NCHW-ordered array (input, output, or Gluon's NCHW weight) in ``layout``'s order."""
    return A.transpose((0, 2, 3, 1)) if layout == "NHWC" else A


def _shape_to(layout, shape):
    """An NCHW-ordered shape in ``layout``'s order."""
    return tuple(shape[a] for a in (0, 2, 3, 1)) if layout == "NHWC" else tuple(shape)


def _from(layout, A):
    """The inverse of ``_to``: ``layout``'s order back to NCHW's (NDArray or NumPy array)."""
    return A.transpose((0, 3, 1, 2)) if layout == "NHWC" else A


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


def _conv_pair(kwargs, X, layout="NCHW"):
    """Our Conv2D in ``layout`` and Gluon's NCHW one with the same random weight and bias.

    ``X`` is NCHW; the bias is made non-zero. Our NHWC weight (c_o, k_h, k_w, c_i)
    is Gluon's NCHW weight transposed.
    """
    ours, builtin = cb.Conv2D(layout=layout, **kwargs), nn.Conv2D(**kwargs)
    ours.initialize(init.Normal(0.5))
    builtin.initialize()
    ours(_to(layout, X)), builtin(X)          # finish deferred initialization
    if ours.bias is not None:
        ours.bias.set_data(nd.random.normal(shape=ours.bias.shape))
    builtin.weight.set_data(_from(layout, ours.weight.data()))
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


@LAYOUT
@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("input_shape, kwargs", CONV_TABLE)
def test_conv2d_output_and_gradients_equal_gluon_conv2d(input_shape, kwargs, hybridize, layout):
    # NHWC: against Gluon's NCHW Conv2D, everything transposed (see the module docstring)
    X = nd.random.normal(shape=input_shape)
    ours, builtin = _conv_pair(kwargs, X, layout)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    dY = nd.random.normal(shape=builtin(X).shape)
    Y, dX, grads = _forward_backward(ours, _to(layout, X), _to(layout, dY))
    Y_ref, dX_ref, grads_ref = _forward_backward(builtin, X, dY)
    np.testing.assert_allclose(_from(layout, Y), Y_ref, **FWD)
    np.testing.assert_allclose(_from(layout, dX), dX_ref, **GRAD)
    assert grads.keys() == grads_ref.keys() == ({"weight", "bias"} if kwargs.get(
        "use_bias", True) else {"weight"})
    np.testing.assert_allclose(_from(layout, grads["weight"]), grads_ref["weight"], **GRAD)
    if "bias" in grads:
        np.testing.assert_allclose(grads["bias"], grads_ref["bias"], **GRAD)


@LAYOUT
@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("c_i", [2, 8], ids=["im2col", "gathered"])
def test_conv2d_float64_gradient_matches_central_differences(c_i, layout):
    from reference import central_difference
    X = _to(layout, nd.random.normal(shape=(1, c_i, 4, 5), dtype="float64"))
    conv = cb.Conv2D(2, (2, 3), strides=(1, 2), padding=(1, 1), dilation=(2, 1), groups=2,
                     layout=layout)
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


@LAYOUT
@pytest.mark.usefixtures("conv_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_conv2d_defers_in_channels_to_the_first_input(hybridize, layout):
    conv = cb.Conv2D(4, (3, 2), groups=2, layout=layout)
    conv.initialize()
    if hybridize:
        conv.hybridize()
    assert conv.weight.shape == _shape_to(layout, (4, 0, 3, 2))
    assert repr(conv).startswith("Conv2D(None -> 4,")
    conv(_to(layout, nd.ones((1, 6, 5, 5))))
    assert conv.weight.shape == _shape_to(layout, (4, 3, 3, 2))
    assert conv.weight.shape == nn.Conv2D(4, (3, 2), groups=2, layout=layout,
                                          in_channels=6).weight.shape
    assert conv.bias.shape == (4,)
    assert repr(conv).startswith("Conv2D(3 -> 4,")      # as Gluon: in_channels / groups


@LAYOUT
@pytest.mark.usefixtures("conv_backend")
def test_conv2d_defers_in_channels_inside_a_hybridized_sequential(layout):
    net = nn.HybridSequential()
    net.add(cb.Conv2D(3, 3, groups=1, layout=layout), cb.Conv2D(6, 2, groups=3, layout=layout),
            nn.Dense(2))
    net.initialize()
    net.hybridize()
    assert net(_to(layout, nd.ones((2, 5, 6, 6)))).shape == (2, 2)
    assert net[0].weight.shape == _shape_to(layout, (3, 5, 3, 3))
    assert net[1].weight.shape == _shape_to(layout, (6, 1, 2, 2))


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


def test_conv2d_repr_in_nhwc_shows_in_channels_and_the_layout():
    # Gluon's NHWC repr prints the weight's axis 1, which is then k_h: "5 -> 4" here
    kwargs = dict(channels=4, kernel_size=(5, 3), groups=2, in_channels=6, layout="NHWC")
    assert repr(nn.Conv2D(**kwargs)).startswith("Conv2D(5 -> 4,")
    assert repr(cb.Conv2D(**kwargs)) == ("Conv2D(3 -> 4, kernel_size=(5, 3), stride=(1, 1), "
                                         "groups=2, layout=NHWC)")
    assert repr(cb.Conv2D(2, 1, layout="NHWC", activation="relu")) == (
        "Conv2D(None -> 2, kernel_size=(1, 1), stride=(1, 1), layout=NHWC, Activation(relu))")


@pytest.mark.parametrize("direction", ["ours_to_gluon", "gluon_to_ours"])
def test_conv2d_nhwc_parameters_load_across_ours_and_gluons_nhwc_conv2d(tmp_path, direction):
    # Gluon's NHWC Conv2D cannot run on the CPU, so the loaded values are compared, and
    # our NHWC output with Gluon's NCHW output from the same file's weight transposed.
    kwargs = dict(channels=4, kernel_size=(3, 2), padding=1, groups=2, in_channels=6)
    source = cb.Conv2D(layout="NHWC", **kwargs)
    target = nn.Conv2D(layout="NHWC", **kwargs)
    if direction == "gluon_to_ours":
        source, target = target, source
    source.initialize(init.Normal(0.5))
    source.bias.initialize(init.Normal(0.5), force_reinit=True)
    path = str(tmp_path / "conv.params")
    source.save_parameters(path)
    target.load_parameters(path)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(getattr(target, name).data().asnumpy(),
                                      getattr(source, name).data().asnumpy())
    ours = target if isinstance(target, cb.Conv2D) else source
    nchw = nn.Conv2D(**kwargs)
    nchw.initialize()
    nchw.weight.set_data(_from("NHWC", ours.weight.data()))
    nchw.bias.set_data(ours.bias.data())
    X = nd.random.normal(shape=(2, 6, 5, 7))
    np.testing.assert_allclose(_from("NHWC", ours(_to("NHWC", X))).asnumpy(),
                               nchw(X).asnumpy(), **FWD)


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


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("block", [
    lambda layout: cb.Conv2D(3, (3, 2), strides=(2, 1), padding=1, dilation=(1, 2), groups=1,
                             layout=layout),
    lambda layout: cb.MaxPool2D(3, 2, 1, ceil_mode=True, layout=layout),
    lambda layout: cb.AvgPool2D((2, 3), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False,
                                layout=layout),
    lambda layout: cb.GlobalMaxPool2D(layout),
    lambda layout: cb.GlobalAvgPool2D(layout),
], ids=["conv", "maxpool", "avgpool", "globalmax", "globalavg"])
def test_export_then_symbolblock_imports_gives_the_same_outputs(tmp_path, block, layout):
    block = block(layout)
    block.initialize(init.Normal(0.5))
    block.hybridize()
    X = _to(layout, nd.random.normal(shape=(2, 2, 7, 8)))
    Y = block(X)
    block.export(str(tmp_path / "model"))
    imported = gluon.SymbolBlock.imports(str(tmp_path / "model-symbol.json"), ["data"],
                                         str(tmp_path / "model-0000.params"))
    np.testing.assert_allclose(imported(X).asnumpy(), Y.asnumpy(), **FWD)
    # the exported graph does not bake in the input size
    X2 = _to(layout, nd.random.normal(shape=(1, 2, 9, 6)))
    np.testing.assert_allclose(imported(X2).asnumpy(), block(X2).asnumpy(), **FWD)


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("make", [
    lambda layout: cb.Conv2D(2, 3, padding=1, layout=layout),
    lambda layout: cb.MaxPool2D(2, layout=layout),
    lambda layout: cb.AvgPool2D(3, 2, 1, layout=layout),
    lambda layout: cb.GlobalMaxPool2D(layout),
    lambda layout: cb.GlobalAvgPool2D(layout),
], ids=["conv", "max", "avg", "globalmax", "globalavg"])
def test_hybridized_block_accepts_a_new_input_size(make, layout):
    block = make(layout)
    block.initialize()
    shapes = [_shape_to(layout, s) for s in ((1, 2, 8, 8), (2, 2, 5, 7))]
    plain = [block(nd.ones(s)).shape for s in shapes]
    block.hybridize()
    assert [block(nd.ones(s)).shape for s in shapes] == plain


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


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("ours_cls, builtin_cls, input_shape, kwargs",
                         list(_pool_cases(include_refused=False)))
def test_pooling_output_and_input_gradient_equal_gluon(ours_cls, builtin_cls, input_shape,
                                                       kwargs, hybridize, layout):
    # Gluon's pools run NHWC on the CPU: compared in the same layout
    ours, builtin = ours_cls(layout=layout, **kwargs), builtin_cls(layout=layout, **kwargs)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    X = nd.random.normal(shape=_shape_to(layout, input_shape))   # distinct: one max per window
    dY = nd.random.normal(shape=builtin(X).shape)
    Y, dX, _ = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    np.testing.assert_allclose(Y, Y_ref, **FWD)
    np.testing.assert_allclose(dX, dX_ref, **GRAD)


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("ours_cls, builtin_cls, input_shape, kwargs",
                         list(_pool_cases(include_refused=True)))
def test_pooling_output_and_input_gradient_equal_numpy_reference(ours_cls, builtin_cls,
                                                                 input_shape, kwargs, layout):
    # the reference pools NCHW; NHWC input, output and gradients are transposed to meet it
    block = ours_cls(layout=layout, **kwargs)
    X = nd.random.normal(shape=input_shape)
    out_shape = block(_to(layout, X)).shape
    dY = nd.random.normal(shape=out_shape)
    Y, dX, _ = _forward_backward(block, _to(layout, X), dY)
    mode = "max" if ours_cls is cb.MaxPool2D else "avg"
    Y_ref, dX_ref = pool2d_batch_np(X.asnumpy(), _from(layout, dY).asnumpy(), mode=mode,
                                    **kwargs)
    assert _from(layout, nd.zeros(out_shape)).shape == Y_ref.shape
    np.testing.assert_allclose(_from(layout, Y), Y_ref, **FWD)
    np.testing.assert_allclose(_from(layout, dX), dX_ref, **GRAD)


@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("make", [
    lambda layout: cb.Conv2D(4, (3, 2), strides=(2, 1), padding=(1, 2), dilation=(1, 2),
                             groups=2, in_channels=6, layout=layout),
    lambda layout: cb.Conv2D(3, 2, in_channels=2, activation="relu", layout=layout),
    lambda layout: cb.MaxPool2D(3, 2, 1, ceil_mode=True, layout=layout),
    lambda layout: cb.AvgPool2D((2, 3), (1, 2), (1, 1), count_include_pad=False, layout=layout),
    lambda layout: cb.GlobalMaxPool2D(layout),
    lambda layout: cb.GlobalAvgPool2D(layout),
], ids=["conv-gathered", "conv-2-channels", "maxpool", "avgpool", "globalmax", "globalavg"])
def test_nhwc_block_equals_its_nchw_twin_with_everything_transposed(make, hybridize):
    nchw, nhwc = make("NCHW"), make("NHWC")
    for block in (nchw, nhwc):
        block.initialize(init.Normal(0.5))
        if hybridize:
            block.hybridize()
    if isinstance(nchw, cb.Conv2D):
        nhwc.weight.set_data(_to("NHWC", nchw.weight.data()))
        nchw.bias.set_data(nd.random.normal(shape=nchw.bias.shape))
        nhwc.bias.set_data(nchw.bias.data())
    X = nd.random.normal(shape=(2, nchw.in_channels if isinstance(nchw, cb.Conv2D) else 3, 7, 8))
    dY = nd.random.normal(shape=nchw(X).shape)
    Y, dX, grads = _forward_backward(nchw, X, dY)
    Y_t, dX_t, grads_t = _forward_backward(nhwc, _to("NHWC", X), _to("NHWC", dY))
    np.testing.assert_allclose(_from("NHWC", Y_t), Y, **FWD)
    np.testing.assert_allclose(_from("NHWC", dX_t), dX, **GRAD)
    if grads:
        np.testing.assert_allclose(_from("NHWC", grads_t["weight"]), grads["weight"], **GRAD)
        np.testing.assert_allclose(grads_t["bias"], grads["bias"], **GRAD)


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


@pytest.mark.parametrize("block, text", [
    (cb.MaxPool2D(layout="NHWC"),
     "MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False, layout=NHWC)"),
    (cb.AvgPool2D(3, layout="NHWC"),
     "AvgPool2D(size=(3, 3), stride=(3, 3), padding=(0, 0), ceil_mode=False, layout=NHWC, "
     "count_include_pad=True)"),
])
def test_pooling_repr_names_a_layout_other_than_nchw(block, text):
    assert repr(block) == text


# --- global pooling --------------------------------------------------------------------------

GLOBAL_PAIRS = [pytest.param(cb.GlobalMaxPool2D, nn.GlobalMaxPool2D, np.max, id="max"),
                pytest.param(cb.GlobalAvgPool2D, nn.GlobalAvgPool2D, np.mean, id="avg")]


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("ours_cls, builtin_cls, reduce_np", GLOBAL_PAIRS)
def test_global_pooling_equals_gluon_and_numpy_for_changing_input_sizes(
        ours_cls, builtin_cls, reduce_np, hybridize, layout):
    ours, builtin = ours_cls(layout=layout), builtin_cls(layout=layout)
    if hybridize:
        ours.hybridize()
        builtin.hybridize()
    plane_axes = (1, 2) if layout == "NHWC" else (2, 3)
    for shape in [(2, 3, 5, 7), (1, 4, 1, 9), (3, 2, 6, 6)]:    # one graph, three sizes
        X = nd.random.normal(shape=_shape_to(layout, shape))
        dY = nd.random.normal(shape=builtin(X).shape)
        Y, dX, _ = _forward_backward(ours, X, dY)
        Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
        assert Y.shape == _shape_to(layout, shape[:2] + (1, 1))
        np.testing.assert_allclose(Y, Y_ref, **FWD)
        np.testing.assert_allclose(dX, dX_ref, **GRAD)
        np.testing.assert_allclose(Y, reduce_np(X.asnumpy(), axis=plane_axes, keepdims=True),
                                   **FWD)


@LAYOUT
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_global_max_pooling_sends_the_gradient_to_the_first_tie_as_gluon(hybridize, layout):
    # planes: all ties; the max 3 twice; -inf everywhere
    X = _to(layout, nd.array([[[[1, 1], [1, 1]], [[2, 3], [3, 2]],
                               [[-np.inf, -np.inf], [-np.inf, -np.inf]]]]))
    ours, builtin = cb.GlobalMaxPool2D(layout), nn.GlobalMaxPool2D(layout)
    if hybridize:
        ours.hybridize()
    dY = nd.ones(builtin(X).shape)
    Y, dX, _ = _forward_backward(ours, X, dY)
    Y_ref, dX_ref, _ = _forward_backward(builtin, X, dY)
    np.testing.assert_array_equal(_from(layout, Y).ravel(), [1, 3, -np.inf])
    np.testing.assert_array_equal(_from(layout, dX)[0], [[[1, 0], [0, 0]], [[0, 1], [0, 0]],
                                                         [[1, 0], [0, 0]]])
    # the first two planes as Gluon's; on the -inf plane Gluon's max starts from the
    # lowest float32 and gives -3.4e38, which no cell holds (NumPy: -inf, as ours)
    np.testing.assert_array_equal(_from(layout, Y)[0, :2], _from(layout, Y_ref)[0, :2])
    np.testing.assert_array_equal(_from(layout, dX)[0, :2], _from(layout, dX_ref)[0, :2])
    assert _from(layout, Y_ref)[0, 2] == np.finfo(np.float32).min


@LAYOUT
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_global_max_pooling_of_a_plane_with_nan_gives_nan_and_the_gradient_to_the_first_nan(
        hybridize, layout):
    # NumPy's (and MaxPool2D's) rule, even after a +inf; Gluon's global max skips NaN
    X = _to(layout, nd.array([[[[1, np.nan], [3, np.nan]], [[np.inf, 2], [np.nan, 5]],
                               [[np.nan, np.nan], [np.nan, np.nan]]]]))
    block = cb.GlobalMaxPool2D(layout)
    if hybridize:
        block.hybridize()
    Y, dX, _ = _forward_backward(block, X, nd.ones(_shape_to(layout, (1, 3, 1, 1))))
    np.testing.assert_array_equal(_from(layout, Y).ravel(), np.max(
        _from(layout, X).asnumpy(), axis=(2, 3)).ravel())
    np.testing.assert_array_equal(_from(layout, dX)[0], [[[0, 1], [0, 0]], [[0, 0], [1, 0]],
                                                         [[1, 0], [0, 0]]])
    assert np.isnan(_from(layout, Y).ravel()).all()
    assert not np.isnan(nn.GlobalMaxPool2D(layout)(X).asnumpy()).any()


@LAYOUT
@pytest.mark.parametrize("dtype, tol", [("float16", dict(rtol=2e-3, atol=2e-3)),
                                        ("float64", dict(rtol=1e-12, atol=1e-12))])
@pytest.mark.parametrize("ours_cls, builtin_cls, reduce_np", GLOBAL_PAIRS)
def test_global_pooling_keeps_float16_and_float64_and_equals_numpy(ours_cls, builtin_cls,
                                                                   reduce_np, dtype, tol, layout):
    # float16 means go by sum and divide (no float16 matrix product on CPU), and a
    # hybridized block switches its graph between float32 and float16 input
    block = ours_cls(layout)
    block.hybridize()
    for dt in ("float32", dtype):
        X = nd.random.normal(shape=_shape_to(layout, (2, 3, 5, 4))).astype(dt)
        Y = block(X)
        assert Y.dtype == np.dtype(dt)
        axes = (1, 2) if layout == "NHWC" else (2, 3)
        np.testing.assert_allclose(Y.asnumpy().astype("float64"), reduce_np(
            X.asnumpy().astype("float64"), axis=axes, keepdims=True),
            **(tol if dt == dtype else FWD))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("ours_cls, builtin_cls", [(cb.GlobalMaxPool2D, nn.GlobalMaxPool2D),
                                                   (cb.GlobalAvgPool2D, nn.GlobalAvgPool2D)])
def test_global_pooling_repr_equals_gluon_repr(ours_cls, builtin_cls, layout):
    assert repr(ours_cls(layout)) == repr(builtin_cls(layout))
    assert repr(ours_cls(layout=layout)) == repr(builtin_cls(layout=layout))


def test_global_pools_are_pool2d_with_gluons_alias_and_prefix():
    block = cb.GlobalAvgPool2D(prefix="head_")
    assert isinstance(block, cb.Pool2D)
    assert block.prefix == "head_"
    assert cb.GlobalMaxPool2D().name.startswith("pool")


@LAYOUT
@pytest.mark.usefixtures("pool_backend")
@pytest.mark.parametrize("make", [
    lambda layout: cb.Conv2D(3, (2, 3), padding=1, groups=1, in_channels=2, layout=layout),
    lambda layout: cb.MaxPool2D(3, 2, 1, layout=layout),
    lambda layout: cb.AvgPool2D(2, 1, 1, count_include_pad=False, layout=layout),
    lambda layout: cb.GlobalMaxPool2D(layout),
    lambda layout: cb.GlobalAvgPool2D(layout),
], ids=["conv", "maxpool", "avgpool", "globalmax", "globalavg"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_input_gradient_accumulates_with_grad_req_add(make, layout, hybridize):
    block = make(layout)
    block.initialize(init.Normal(0.5))
    if hybridize:
        block.hybridize()
    X = nd.random.normal(shape=_shape_to(layout, (2, 2, 5, 6)))
    dY = nd.random.normal(shape=block(X).shape)
    _, once, _ = _forward_backward(block, X, dY)
    X.attach_grad(grad_req="add")
    for _ in range(2):
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
    np.testing.assert_allclose(X.grad.asnumpy(), 2 * once, **GRAD)


@pytest.mark.parametrize("make", [lambda: cb.Conv2D(3, 3, padding=1, in_channels=2),
                                  lambda: cb.BatchNorm(in_channels=2)], ids=["conv", "batchnorm"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_parameter_gradients_follow_a_grad_req_changed_after_the_first_call(make, hybridize):
    # imperatively the kernel writes the parameters' gradients straight in unless grad_req is
    # 'add' at that call; a graph keeps the identity copies, so 'add' set after it is built adds
    block = make()
    block.initialize(init.Normal(0.5))
    if hybridize:
        block.hybridize()
    X = nd.random.normal(shape=(2, 2, 5, 6))
    dY = nd.random.normal(shape=block(X).shape)
    learnt = [p for p in block.collect_params().values() if p.grad_req != "null"]

    def step():
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
        return [p.grad().asnumpy().copy() for p in learnt]

    once = step()
    for p in learnt:
        p.grad_req = "add"
    step()
    for got, single in zip(step(), once):
        np.testing.assert_allclose(got, 2 * single, **GRAD)
    for p in learnt:
        p.grad_req = "write"
    step()
    for got, single in zip(step(), once):
        np.testing.assert_allclose(got, single, **GRAD)


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
    (dict(channels=4, kernel_size=3, layout="NCW"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NCW'"),
    (dict(channels=4, kernel_size=3, layout="NCDHW"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NCDHW'"),
    (dict(channels=4, kernel_size=3, layout="nhwc"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'nhwc'"),
    (dict(channels=4, kernel_size=3, layout=None), TypeError,
     r"layout must be one of 'NCHW', 'NHWC'"),
    (dict(channels=4, kernel_size=3, activation="relux"), ValueError,
     r"activation must be one of .*'relu'.*, got 'relux'"),
    (dict(channels=4, kernel_size=3, use_bias="yes"), TypeError,
     r"use_bias must be True or False, got str 'yes'"),
    # sizes past the C++ kernels' attribute limit (they overflowed silently, issue 13)
    (dict(channels=4, kernel_size=3, strides=2 ** 64 + 1), ValueError,
     r"strides must be at most 2147483647 \(2\*\*31 - 1\), got \(18446744073709551617, "),
    (dict(channels=4, kernel_size=3, padding=2 ** 63), ValueError,
     r"padding must be at most 2147483647 \(2\*\*31 - 1\), got \(9223372036854775808, "),
    (dict(channels=4, kernel_size=(3, 2 ** 31)), ValueError,
     r"kernel_size must be at most 2147483647 \(2\*\*31 - 1\), got \(3, 2147483648\)"),
    (dict(channels=4, kernel_size=3, dilation=2 ** 62), ValueError,
     r"dilation must be at most 2147483647"),
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
    (cb.MaxPool2D, dict(layout="NCW"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NCW'"),
    (cb.AvgPool2D, dict(layout="NDHWC"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NDHWC'"),
    (cb.GlobalMaxPool2D, dict(layout="NWC"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NWC'"),
    (cb.GlobalAvgPool2D, dict(layout="NCDHW"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC', got 'NCDHW'"),
    (cb.AvgPool2D, dict(ceil_mode="yes"), TypeError, r"ceil_mode must be True or False"),
    (cb.AvgPool2D, dict(count_include_pad=None), TypeError,
     r"count_include_pad must be True or False, got NoneType None"),
    (cb.Pool2D, dict(mode="min"), ValueError, r"mode must be one of 'max', 'avg', got 'min'"),
    # issue 13, item 4: ran with stride 1 (the kernel's integer overflowed)
    (cb.MaxPool2D, dict(pool_size=2, strides=2 ** 64 + 1), ValueError,
     r"strides must be at most 2147483647 \(2\*\*31 - 1\), got \(18446744073709551617, "),
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
    (lambda: cb.GlobalMaxPool2D(), np.ones((1, 3, 4, 4)), TypeError,
     r"input must be an mxnet NDArray"),
    (lambda: cb.GlobalAvgPool2D(), nd.ones((2, 3, 4)), ValueError,
     r"input must be 4-D \(batch, channels, height, width\), got shape \(2, 3, 4\)"),
    # NHWC: the channels are the last axis, height and width the middle ones
    (lambda: cb.Conv2D(2, 3, layout="NHWC"), nd.ones((3, 8, 8)), ValueError,
     r"input must be 4-D \(batch, height, width, channels\), got shape \(3, 8, 8\)"),
    (lambda: cb.Conv2D(2, 3, in_channels=3, layout="NHWC"), nd.ones((1, 8, 8, 4)), ValueError,
     r"input has 4 channels but the layer expects in_channels=3"),
    (lambda: cb.Conv2D(4, 3, groups=2, layout="NHWC"), nd.ones((1, 8, 8, 3)), ValueError,
     r"input has 3 channels, which groups=2 does not divide evenly"),
    (lambda: cb.Conv2D(2, 5, layout="NHWC"), nd.ones((1, 3, 9, 1)), ValueError,
     r"input of height and width \(3, 9\) is too small for the kernel \(5, 5\)"),
    (lambda: cb.MaxPool2D(3, layout="NHWC"), nd.ones((1, 2, 5, 3)), ValueError,
     r"input of height and width \(2, 5\) is too small for the pooling window \(3, 3\)"),
    (lambda: cb.GlobalMaxPool2D("NHWC"), nd.ones((4, 4)), ValueError,
     r"input must be 4-D \(batch, height, width, channels\)"),
])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_bad_input_at_call_time_names_the_problem(make, X, error, message, hybridize):
    block = make()
    block.initialize()
    if hybridize:
        block.hybridize()
    with pytest.raises(error, match=message):
        block(X)


def test_conv2d_in_hybridized_parent_with_input_smaller_than_kernel_names_both_sizes(conv_backend):
    # was: AssertionError "Cannot initialize Parameter ... invalid shape: (2, 0, 7, 7)"
    net = nn.HybridSequential()
    net.add(cb.Conv2D(2, 7))
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match=r"input of height and width \(5, 5\) is too small "
                                         r"for the kernel \(7, 7\)"):
        net(nd.ones((1, 1, 5, 5)))


@pytest.mark.parametrize("native_env", ["1", "0"], ids=["kernel", "ops"])
def test_conv2d_in_hybridized_parent_says_the_same_under_python_dash_o(native_env):
    # was (python -O): "Operator _zeros inferring shapes failed"
    import os
    import subprocess
    import sys
    code = ("import cnn_base as cb; from mxnet import nd; from mxnet.gluon import nn\n"
            "net = nn.HybridSequential(); net.add(cb.Conv2D(2, 7)); net.initialize()\n"
            "net.hybridize()\n"
            "try:\n    net(nd.ones((1, 1, 5, 5)))\n"
            "except ValueError as e:\n    print('ValueError', e)\n")
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, CNN_BASE_NATIVE=native_env))
    assert done.returncode == 0, done.stderr
    assert "ValueError" in done.stdout
    assert "input of height and width (5, 5) is too small for the kernel (7, 7)" in done.stdout


def test_conv2d_deep_in_hybridized_parent_names_the_size_that_reaches_it(conv_backend):
    net = nn.HybridSequential()
    net.add(cb.Conv2D(2, 3), cb.Conv2D(2, (5, 2), padding=(0, 1)))
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match=r"height and width \(3, 3\) is too small for the "
                                         r"kernel \(5, 2\) with padding \(0, 1\)"):
        net(nd.ones((1, 1, 5, 5)))


# HybridSequential: our BatchNorm or Conv2D and the nn.Activation('relu') after it as one
# operator (the relu attribute, csrc/relu.h), against Gluon's sequence of Gluon's blocks.
def _relu_sequence(ours, dtype="float32"):
    seq = cb.HybridSequential() if ours else nn.HybridSequential()
    conv, bn = (cb.Conv2D, cb.BatchNorm) if ours else (nn.Conv2D, nn.BatchNorm)
    seq.add(conv(6, 3, padding=1), nn.Activation("relu"), bn(), nn.Activation("relu"),
            conv(4, 3), bn(), nn.Activation("sigmoid"))
    seq.initialize(init.Xavier())
    seq.cast(dtype)
    return seq


def _same_parameters(ours, theirs, X):
    ours(X), theirs(X)            # deferred initialization
    for a, b in zip(ours.collect_params().values(), theirs.collect_params().values()):
        b.set_data(a.data())


def _output_and_grads(seq, X, mode):
    if mode != "imperative":
        seq.hybridize(static_alloc=mode == "static", static_shape=mode == "static")
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = seq(X)
    Y.backward(nd.array(np.random.RandomState(3).normal(size=Y.shape), dtype=Y.dtype))
    return [Y.asnumpy(), X.grad.asnumpy()] + [p.grad().asnumpy()
                                              for p in seq.collect_params().values()
                                              if p.grad_req != "null"]


def _graph_ops(seq):
    nodes = json.loads(seq(sym.var("data")).tojson())["nodes"]
    return [(n["op"], n.get("attrs", {}).get("relu")) for n in nodes if n["op"] != "null"]


@pytest.mark.parametrize("mode", ["imperative", "hybrid", "static"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hybrid_sequential_fuses_the_relu_and_gives_gluons_numbers(mode, dtype):
    X = nd.array(np.random.RandomState(0).normal(size=(4, 3, 9, 9)), dtype=dtype)
    ours, theirs = _relu_sequence(True, dtype), _relu_sequence(False, dtype)
    _same_parameters(ours, theirs, X)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    got, want = _output_and_grads(ours, X, mode), _output_and_grads(theirs, X, mode)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **tol)
    ops = _graph_ops(ours)
    # the conv and the batch norm carry the relu; the only Activation left is the sigmoid
    assert [op for op, _ in ops if op == "Activation"] == ["Activation"]
    assert ("cnn_base_conv2d", "True") in ops and ("cnn_base_batch_norm", "1") in ops


def test_hybrid_sequential_leaves_what_it_cannot_fuse_as_gluon_runs_it():
    class Relu(nn.Activation):           # a subclass may compute something else
        def hybrid_forward(self, F, x):
            return F.relu(x) * 2
    seen = []
    hooked = nn.Activation("relu")
    hooked.register_forward_hook(
        lambda block, inputs, out: seen.append(out.asnumpy()) if isinstance(out, nd.NDArray)
        else None)
    seq = cb.HybridSequential()
    seq.add(cb.BatchNorm(), Relu("relu"), cb.BatchNorm(), hooked, cb.BatchNorm(),
            nn.Activation("tanh"), cb.BatchNorm(), nn.Activation("relu"))
    seq.initialize()
    X = nd.array(np.random.RandomState(1).normal(size=(2, 3, 4, 4)))

    def one_by_one(blocks):               # each block called alone: nothing fused
        Y = X
        for block in blocks:
            Y = block(Y)
        return Y.asnumpy()
    with autograd.train_mode():           # batch statistics: values on both sides of 0
        Y, head = seq(X).asnumpy(), seq[:7](X).asnumpy()   # the slice ends with a batch norm
        assert len(seen) == 2 and (seen[0] >= 0).all()     # the hook ran, on the relu's output
        np.testing.assert_allclose(Y, one_by_one(seq), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(head, one_by_one(list(seq)[:7]), rtol=1e-5, atol=1e-6)
    assert (head < 0).any() and (Y >= 0).all()
    ops = _graph_ops(seq)
    assert [a for op, a in ops if op == "cnn_base_batch_norm"] == [None, None, None, "1"]


def test_a_block_hybridized_alone_is_not_fused_by_an_imperative_sequence():
    bn = cb.BatchNorm()
    seq = cb.HybridSequential()
    seq.add(bn, nn.Activation("relu"))
    seq.initialize()
    X = nd.array(np.random.RandomState(2).normal(size=(2, 3, 4, 4)))
    bn.hybridize()
    alone = bn(X).asnumpy()                   # its own graph, built without the relu
    assert (alone < 0).any()
    np.testing.assert_allclose(seq(X).asnumpy(), np.maximum(alone, 0), rtol=1e-6, atol=1e-6)
