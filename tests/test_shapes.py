import pytest
from mxnet import nd
from mxnet.gluon import nn

import cnn_base as cb

# (input (h, w), kernel, strides, padding per side, dilation)
LAYER_SETTINGS = [
    ((8, 8), 3, 1, 1, 1),               # blog: kernel 3, padding 1 -> 8x8
    ((8, 8), (5, 3), 1, (2, 1), 1),     # blog: kernel (5, 3), padding (2, 1) -> 8x8
    ((8, 8), 3, 2, 1, 1),               # blog: stride 2 -> 4x4
    ((8, 8), (3, 5), (3, 4), (0, 1), 1),  # blog: -> 2x2
    ((7, 9), (2, 4), (2, 3), (1, 0), 1),
    ((11, 6), 3, 1, 0, (2, 1)),
    ((10, 10), (3, 2), (1, 2), (2, 2), (3, 2)),
    ((5, 5), 5, 1, 0, 1),
    ((6, 13), (1, 7), (4, 5), (0, 3), 1),
]


@pytest.mark.parametrize("shape, kernel, strides, padding, dilation", LAYER_SETTINGS)
def test_output_shape_matches_gluon_conv2d(shape, kernel, strides, padding, dilation):
    layer = nn.Conv2D(2, kernel, strides, padding, dilation)
    layer.initialize()
    Y = layer(nd.zeros((1, 1) + shape))
    assert cb.output_shape(shape, kernel, strides, padding, dilation) == Y.shape[2:]


def _pad_at_most_half_window(setting):
    _, window, _, padding, _ = setting
    k = window if isinstance(window, tuple) else (window, window)
    p = padding if isinstance(padding, tuple) else (padding, padding)
    return all(p[a] <= k[a] // 2 for a in range(2))


# MXNet's pooling refuses padding larger than half the window
POOL_SETTINGS = [s[:4] for s in LAYER_SETTINGS if _pad_at_most_half_window(s)]


@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
@pytest.mark.parametrize("shape, window, strides, padding", POOL_SETTINGS)
def test_output_shape_matches_gluon_maxpool2d(shape, window, strides, padding, ceil_mode):
    Y = nn.MaxPool2D(window, strides, padding, ceil_mode=ceil_mode)(nd.zeros((1, 1) + shape))
    assert cb.output_shape(shape, window, strides, padding, ceil_mode=ceil_mode) == Y.shape[2:]


def test_blog_total_padding_is_twice_gluon_per_side_padding():
    # Gluon padding=1 on each side of a 3-tall kernel keeps an 8-row input at 8 rows;
    # in the blog's formula that is p_h = 2 (total), not 1.
    assert cb.output_shape((8, 8), 3, padding=1) == (8, 8)
    assert cb.output_size(8, 3, p=2) == 8
    assert cb.output_size(8, 3, p=1) == 7


@pytest.mark.parametrize("n, k, p, s, expected", [
    (3, 2, 0, 1, 2), (3, 2, 2, 1, 4),          # blog 1.1 and 2.1 figures
    (3, 2, 2, 3, 2), (3, 2, 2, 2, 2),          # blog 2.2 figure: stride 3 rows, 2 columns
    (8, 3, 2, 2, 4), (9, 3, 2, 2, 5),
])
def test_output_size_is_blog_formula(n, k, p, s, expected):
    assert cb.output_size(n, k, p, s) == (n - k + p + s) // s == expected


def test_blog_receptive_field_of_two_2x2_layers_is_nine_inputs():
    h, w = cb.receptive_field([2, 2])
    assert (h, w, h * w) == (3, 3, 9)
    assert cb.receptive_field([2]) == (2, 2)


def test_receptive_field_grows_with_stride_and_dilation():
    assert cb.receptive_field([cb.Layer(2, strides=2), cb.Layer(2, strides=2), 2]) == (8, 8)
    assert cb.receptive_field([cb.Layer(3, dilation=2)]) == (5, 5)
    assert cb.receptive_field([dict(kernel_size=(1, 2)), dict(kernel_size=(3, 1))]) == (3, 2)


def test_receptive_field_region_is_what_changes_the_output():
    # perturb each input element of a random two-layer net; the outputs that move
    # are exactly those whose receptive-field region holds it
    layers = [cb.Layer((2, 3), strides=(1, 2)), cb.Layer(2, padding=1)]
    net = nn.HybridSequential()
    for layer in layers:
        net.add(nn.Conv2D(1, layer.kernel_size, layer.strides, layer.padding))
    net.initialize()
    X = nd.random.uniform(shape=(1, 1, 6, 9))
    Y = net(X)[0, 0].asnumpy()
    for (r, c) in [(0, 0), (3, 4), (5, 8)]:
        X2 = X.copy()
        X2[0, 0, r, c] += 1
        changed = abs(net(X2)[0, 0].asnumpy() - Y) > 1e-6
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                rows, cols = cb.receptive_field_region(layers, i, j)
                assert changed[i, j] == (r in rows and c in cols), (r, c, i, j)


def test_dense_layer_for_blog_photo_needs_about_3_gb():
    cost = cb.dense_layer_cost(1000 * 1000 * 3, 256)
    assert cost["weight_shape"] == (3_000_000, 256)
    assert cost["params"] == 768_000_000
    assert cost["bytes"] == 3_072_000_000


def test_conv_layer_cost_counts_match_a_real_layer_and_the_doubling_exercise():
    layer = nn.Conv2D(8, 3, padding=1, use_bias=False, in_channels=4)
    layer.initialize()
    cost = cb.conv_layer_cost((4, 10, 12), 8, 3, padding=1)
    assert cost["params"] == layer.weight.data().size
    assert cost["output_shape"] == layer(nd.zeros((1, 4, 10, 12))).shape[1:]
    assert cost["madds"] == 8 * 10 * 12 * 4 * 9
    doubled = cb.conv_layer_cost((8, 10, 12), 16, 3, padding=1)
    assert doubled["madds"] == 4 * cost["madds"] and doubled["params"] == 4 * cost["params"]
    padded = cb.conv_layer_cost((4, 10, 12), 8, 3, padding=2)
    assert padded["output_shape"] == (8, 12, 14) and padded["params"] == cost["params"]


@pytest.mark.parametrize("call, error, message", [
    (lambda: cb.output_size(2, 3), ValueError, "kernel size 3 must not exceed the padded input size"),
    (lambda: cb.output_size(8, 3, s=0), ValueError, "s must be positive, got 0"),
    (lambda: cb.output_size(8, 3, p=-1), ValueError, "p must be >= 0, got -1"),
    (lambda: cb.output_size(8.0, 3), TypeError, "n must be an int, got float 8.0"),
    (lambda: cb.output_shape((8, 8), (3, 3, 3)), ValueError, "kernel_size must be an int or a pair"),
    (lambda: cb.output_shape((8, 8), 3, padding=-1), ValueError, "padding must be >= 0, got -1"),
    (lambda: cb.receptive_field([0]), ValueError, "kernel_size must be positive, got 0"),
    (lambda: cb.dense_layer_cost(0, 256), ValueError, "in_features must be positive, got 0"),
    (lambda: cb.conv_layer_cost((3, 8), 4, 3), ValueError, r"input_shape must be \(c_i, h, w\)"),
])
def test_bad_shape_arguments_are_refused_with_the_rule(call, error, message):
    with pytest.raises(error, match=message):
        call()
