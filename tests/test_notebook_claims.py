"""What the notebooks show, checked in full against the library.

The notebooks (``notebooks/*.ipynb``) explain and draw; each keeps only the one or two checks a
learner should see. The comparisons behind their prose live here, one test per claim, in the
notebooks' order: custom blocks against Gluon's built-ins, formulas against real layers, the
chapter's exercises. ``tests/test_notebooks.py`` still runs every notebook top to bottom.
"""
import itertools
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd
from mxnet.gluon import nn

import cnn_base as cb


def _same_start(ours, theirs, bias=True):
    """Give our block the built-in's (initialised) parameters."""
    theirs.initialize(mx.init.Normal(1.0))
    ours.initialize()
    ours.weight.set_data(theirs.weight.data())
    if bias:
        ours.bias.set_data(nd.random.normal(shape=ours.bias.shape))
        theirs.bias.set_data(ours.bias.data())


# --- 01 cross-correlation ---------------------------------------------------------------------

def test_01_corr2d_and_the_blogs_loop_give_the_blogs_numbers():
    X, K = cb.corr2d_example()
    np.testing.assert_array_equal(cb.corr2d_loop(X, K).asnumpy(), [[19, 25], [37, 43]])
    np.testing.assert_allclose(cb.corr2d(X, K).asnumpy(), cb.corr2d_loop(X, K).asnumpy(),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=(1, 2)), dict(kernel_size=3, padding=1),
                                    dict(kernel_size=(3, 5), strides=(3, 4), padding=(0, 1)),
                                    dict(kernel_size=2, strides=2)])
def test_01_our_conv2d_equals_gluons_output_and_gradients(kwargs):
    X = nd.random.uniform(shape=(2, 3, 8, 9))
    ours, theirs = cb.Conv2D(4, in_channels=3, **kwargs), nn.Conv2D(4, in_channels=3, **kwargs)
    _same_start(ours, theirs)
    grads = []
    for layer in (ours, theirs):
        with autograd.record():
            Y = layer(X)
            loss = (Y ** 2).sum()
        loss.backward()
        grads.append((Y, layer.weight.grad().copy(), layer.bias.grad().copy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-4)


def test_01_the_edge_kernel_marks_both_edges():
    Y = cb.corr2d(cb.edge_image(), cb.edge_kernel())
    expected = np.zeros((6, 7))
    expected[:, 1], expected[:, 5] = 1, -1
    np.testing.assert_array_equal(Y.asnumpy(), expected)


def test_01_both_blocks_learn_the_edge_kernel_on_the_same_path_and_fit_kernel_too():
    runs = {block: cb.learn_edge_kernel(block=block, ctx='cpu', iters=10, lr=0.03, seed=0)
            for block in cb.BLOCKS}
    custom, builtin = runs['custom'], runs['builtin']
    np.testing.assert_allclose(custom.losses, builtin.losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(custom.kernel_path, builtin.kernel_path, rtol=0, atol=1e-6)
    np.testing.assert_allclose(builtin.kernel.asnumpy(), [[1, -1]], rtol=0, atol=0.02)
    fit = cb.fit_kernel(builtin.X[0, 0], builtin.Y[0, 0], (1, 2), iters=10, lr=0.03, seed=0)
    np.testing.assert_allclose(fit.kernel_path.reshape(-1, 2), builtin.kernel_path,
                               rtol=0, atol=1e-6)


def test_01_autograd_shows_the_receptive_field_of_two_stacked_layers():
    X, K = cb.corr2d_example()
    X.attach_grad()
    with autograd.record():
        z = cb.corr2d(cb.corr2d(X, K + 1), nd.ones((2, 2)))
    z.backward()
    assert cb.receptive_field([2, 2]) == (3, 3)
    assert (X.grad.asnumpy() != 0).sum() == 9
    with autograd.record():
        y00 = cb.corr2d(X, K + 1)[0, 0]
    y00.backward()
    assert {tuple(ij) for ij in np.argwhere(X.grad.asnumpy())} == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("i, j", [(3, 4), (0, 7)])
def test_01_the_predicted_receptive_field_is_where_the_gradient_is_nonzero(i, j):
    layers = [cb.Layer(3, strides=1, padding=1), cb.Layer(3, strides=2, padding=1),
              cb.Layer(3, strides=1, padding=1)]
    net = nn.HybridSequential()
    for layer in layers:
        net.add(cb.Conv2D(1, layer.kernel_size, layer.strides, layer.padding, in_channels=1,
                          use_bias=False, weight_initializer=mx.init.One()))
    net.initialize()
    X = nd.ones((1, 1, 16, 16))
    X.attach_grad()
    with autograd.record():
        y = net(X)[0, 0, i, j]
    y.backward()
    grad = X.grad[0, 0].asnumpy()
    rows, cols = cb.receptive_field_region(layers, i, j)
    inside = np.zeros_like(grad, dtype=bool)
    inside[max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop] = True
    np.testing.assert_array_equal(grad != 0, inside)
    assert cb.receptive_field(layers) == (9, 9)


# --- 02 padding and stride ----------------------------------------------------------------------

def test_02_hand_padding_equals_gluons_padding_and_the_formulas():
    X, K = cb.corr2d_example()
    Y = cb.corr2d(cb.pad2d(X, 1), K)
    assert Y.shape == (4, 4) and Y[0, 0].asscalar() == 0
    conv2d = nn.Conv2D(1, kernel_size=2, padding=1, in_channels=1, use_bias=False)
    conv2d.initialize()
    conv2d.weight.set_data(K.reshape((1, 1, 2, 2)))
    Y_gluon = conv2d(X.reshape((1, 1, 3, 3)))[0, 0]
    np.testing.assert_allclose(Y_gluon.asnumpy(), Y.asnumpy(), rtol=0, atol=1e-6)
    assert (cb.output_size(3, 2, p=2), cb.output_size(3, 2, p=2)) == Y_gluon.shape
    assert cb.output_shape((3, 3), 2, padding=1) == Y_gluon.shape


def test_02_the_formulas_match_real_layers_and_the_per_side_mistake_shows_twice():
    n_h = n_w = 8
    X = nd.random.uniform(shape=(1, 1, n_h, n_w))
    settings = [((3, 3), (1, 1), (1, 1)), ((5, 3), (1, 1), (2, 1)),
                ((3, 3), (2, 2), (1, 1)), ((3, 5), (3, 4), (0, 1))]
    mistakes = 0
    for (k_h, k_w), (s_h, s_w), (pad_h, pad_w) in settings:
        builtin = nn.Conv2D(1, (k_h, k_w), (s_h, s_w), (pad_h, pad_w), in_channels=1)
        custom = cb.Conv2D(1, (k_h, k_w), (s_h, s_w), (pad_h, pad_w), in_channels=1)
        builtin.initialize()
        custom.initialize()
        custom.weight.set_data(builtin.weight.data())
        Y = builtin(X)
        np.testing.assert_allclose(custom(X).asnumpy(), Y.asnumpy(), rtol=1e-5, atol=1e-6)
        layer = Y.shape[2:]
        blog = (cb.output_size(n_h, k_h, 2 * pad_h, s_h), cb.output_size(n_w, k_w, 2 * pad_w, s_w))
        mistaken = (cb.output_size(n_h, k_h, pad_h, s_h), cb.output_size(n_w, k_w, pad_w, s_w))
        assert layer == cb.output_shape((n_h, n_w), (k_h, k_w), (s_h, s_w), (pad_h, pad_w)) == blog
        mistakes += mistaken != layer
    assert mistakes == 2


@pytest.mark.parametrize("s", [1, 2, 3])
def test_02_output_shape_matches_layers_over_padding(s):
    X = nd.random.uniform(shape=(1, 1, 8, 8))
    for pad in range(5):
        conv2d = nn.Conv2D(1, 3, s, pad)
        conv2d.initialize()
        assert cb.output_shape((8, 8), 3, s, pad)[0] == conv2d(X).shape[2]


def test_02_padding_k_minus_1_keeps_the_shape_and_centres_odd_windows():
    X = nd.random.uniform(shape=(6, 8))
    K = nd.random.uniform(shape=(2, 3))
    p_h, p_w = 1, 2
    X_pad = nd.pad(X.reshape((1, 1) + X.shape), mode='constant',
                   pad_width=(0, 0, 0, 0, math.ceil(p_h / 2), p_h // 2,
                              math.ceil(p_w / 2), p_w // 2))[0, 0]
    assert cb.corr2d(X_pad, K).shape == X.shape
    K = nd.random.uniform(shape=(3, 3))
    conv2d = nn.Conv2D(1, 3, padding=1, in_channels=1, use_bias=False)
    conv2d.initialize()
    conv2d.weight.set_data(K.reshape((1, 1, 3, 3)))
    Y = conv2d(X.reshape((1, 1) + X.shape))[0, 0]
    i, j = 2, 3
    np.testing.assert_allclose(Y[i, j].asscalar(),
                               (X[i - 1:i + 2, j - 1:j + 2] * K).sum().asscalar(), rtol=1e-6)


def test_02_stride_gives_the_blogs_8_and_6_and_is_the_sampled_stride_1_output():
    X, K = cb.corr2d_example()
    conv2d = nn.Conv2D(1, kernel_size=2, strides=(3, 2), padding=1, in_channels=1, use_bias=False)
    conv2d.initialize()
    conv2d.weight.set_data(K.reshape((1, 1, 2, 2)))
    Y = conv2d(X.reshape((1, 1, 3, 3)))[0, 0]
    np.testing.assert_array_equal(Y.asnumpy(), [[0, 8], [6, 8]])
    np.testing.assert_allclose(cb.corr2d_strided(X, K, padding=1, strides=(3, 2)).asnumpy(),
                               Y.asnumpy(), rtol=0, atol=1e-6)
    assert cb.output_size(3, 2, p=2, s=3) == 2 and cb.output_size(3, 2, p=2, s=2) == 2


def test_02_with_p_k_minus_1_the_output_is_ceil_n_over_s():
    for n in range(1, 25):
        for k in range(1, n + 1):
            for s in range(1, 6):
                assert cb.output_size(n, k, p=k - 1, s=s) == (n + s - 1) // s
                if n % s == 0:
                    assert cb.output_size(n, k, p=k - 1, s=s) == n // s


# --- 03 channels --------------------------------------------------------------------------------

def test_03_multi_in_is_the_sum_of_the_channels_and_equals_both_conv2ds():
    X, K = cb.multi_in_example()
    Y = cb.corr2d_multi_in(X, K)
    np.testing.assert_array_equal(Y.asnumpy(), [[56, 72], [104, 120]])
    per_channel = [cb.corr2d(x, k) for x, k in zip(X, K)]
    np.testing.assert_array_equal((per_channel[0] + per_channel[1]).asnumpy(), Y.asnumpy())
    for Conv2D in (nn.Conv2D, cb.Conv2D):
        conv2d = Conv2D(1, kernel_size=2, in_channels=2, use_bias=False)
        conv2d.initialize()
        conv2d.weight.set_data(K.expand_dims(0))
        np.testing.assert_allclose(conv2d(X.expand_dims(0))[0, 0].asnumpy(), Y.asnumpy(),
                                   rtol=1e-6, atol=0)


def test_03_multi_out_gives_the_books_three_channels_and_equals_both_conv2ds():
    X, K = cb.multi_in_example()
    K = nd.stack(K, K + 1, K + 2)
    Y = cb.corr2d_multi_in_out(X, K)
    np.testing.assert_array_equal(Y.asnumpy(), [[[56, 72], [104, 120]], [[76, 100], [148, 172]],
                                                [[96, 128], [192, 224]]])
    for Conv2D in (nn.Conv2D, cb.Conv2D):
        conv2d = Conv2D(3, kernel_size=2, in_channels=2, use_bias=False)
        conv2d.initialize()
        conv2d.weight.set_data(K)
        np.testing.assert_allclose(conv2d(X.expand_dims(0))[0].asnumpy(), Y.asnumpy(),
                                   rtol=1e-6, atol=0)


def test_03_a_1x1_conv_is_a_matmul_a_dense_layer_and_both_conv2ds():
    c_i, h, w, c_o = 3, 3, 3, 2
    X = nd.random.uniform(shape=(c_i, h, w))
    K = nd.random.uniform(shape=(c_o, c_i, 1, 1))
    Y1 = cb.corr2d_multi_in_out_1x1(X, K)
    np.testing.assert_allclose(Y1.asnumpy(), cb.corr2d_multi_in_out(X, K).asnumpy(),
                               rtol=1e-6, atol=1e-6)
    dense = nn.Dense(c_o, in_units=c_i, use_bias=False)
    dense.initialize()
    dense.weight.set_data(K.reshape((c_o, c_i)))
    Y_dense = dense(X.reshape((c_i, h * w)).T).T.reshape((c_o, h, w))
    np.testing.assert_allclose(Y_dense.asnumpy(), Y1.asnumpy(), rtol=1e-6, atol=1e-6)
    for Conv2D in (nn.Conv2D, cb.Conv2D):
        conv1x1 = Conv2D(c_o, kernel_size=1, in_channels=c_i, use_bias=False)
        conv1x1.initialize()
        conv1x1.weight.set_data(K)
        np.testing.assert_allclose(conv1x1(X.expand_dims(0))[0].asnumpy(), Y1.asnumpy(),
                                   rtol=1e-6, atol=1e-6)


# --- 04 pooling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, blog", [('max', [[4, 5], [7, 8]]), ('avg', [[2, 3], [5, 6]])])
def test_04_pool2d_and_the_blogs_loop_give_the_blogs_numbers(mode, blog):
    X, _ = cb.corr2d_example()
    Y_loop = cb.pool2d_loop(X, (2, 2), mode)
    np.testing.assert_array_equal(Y_loop.asnumpy(), blog)
    np.testing.assert_allclose(cb.pool2d(X, (2, 2), mode).asnumpy(), Y_loop.asnumpy(),
                               rtol=0, atol=1e-6)


def test_04_max_pooling_keeps_an_edge_that_moved_by_one_pixel():
    X = cb.edge_image()
    X_shifted = nd.concat(X[:, :1], X[:, :-1], dim=1)
    K = cb.edge_kernel()
    Y, Y_shifted = cb.corr2d(X, K), cb.corr2d(X_shifted, K)
    P, P_shifted = cb.pool2d(Y, (2, 2)), cb.pool2d(Y_shifted, (2, 2))
    edges = {name: set(np.flatnonzero(A[0].asnumpy() == 1)) for name, A in
             [('Y', Y), ('Y_shifted', Y_shifted), ('P', P), ('P_shifted', P_shifted)]}
    assert edges['Y'].isdisjoint(edges['Y_shifted'])
    assert edges['P'] & edges['P_shifted']


@pytest.mark.parametrize("pool_size, strides, padding, expected", [
    ((3, 3), (3, 3), (0, 0), [[10]]),
    ((3, 3), (2, 2), (1, 1), [[5, 7], [13, 15]]),
    ((2, 3), (2, 3), (0, 1), [[5, 7], [13, 15]])])
def test_04_pooling_with_padding_and_stride_gives_the_books_outputs_and_shapes(
        pool_size, strides, padding, expected):
    X = nd.arange(16).reshape((1, 1, 4, 4))
    Y = nn.MaxPool2D(pool_size, strides, padding)(X)[0, 0]
    np.testing.assert_array_equal(Y.asnumpy(), expected)
    assert cb.output_shape((4, 4), pool_size, strides, padding) == Y.shape
    (k_h, k_w), (s_h, s_w), (pad_h, pad_w) = pool_size, strides, padding
    assert (cb.output_size(4, k_h, 2 * pad_h, s_h), cb.output_size(4, k_w, 2 * pad_w, s_w)) == Y.shape


def test_04_pooling_keeps_the_channels_apart():
    X = nd.arange(16).reshape((1, 1, 4, 4))
    X = nd.concat(X, X + 1, dim=1)
    Y = nn.MaxPool2D(3, padding=1, strides=2)(X)
    assert Y.shape[1] == X.shape[1]
    np.testing.assert_array_equal(Y[0, 1].asnumpy(), Y[0, 0].asnumpy() + 1)


@pytest.mark.parametrize("pool_size, strides, padding", [
    (2, None, 0), (3, 1, 1), ((2, 3), (2, 3), (0, 1)), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
@pytest.mark.parametrize("ours, theirs", [(cb.MaxPool2D, nn.MaxPool2D), (cb.AvgPool2D, nn.AvgPool2D)])
def test_04_our_pools_equal_gluons_output_and_input_gradient(pool_size, strides, padding, ours,
                                                             theirs):
    X = nd.random.uniform(shape=(2, 3, 7, 8))
    results = []
    for Pool in (ours, theirs):
        x = X.copy()
        x.attach_grad()
        with autograd.record():
            Y = Pool(pool_size, strides, padding)(x)
            loss = (Y * nd.arange(Y.size).reshape(Y.shape)).sum()
        loss.backward()
        results.append((Y, x.grad))
    (Y_ours, grad_ours), (Y_theirs, grad_theirs) = results
    np.testing.assert_allclose(Y_ours.asnumpy(), Y_theirs.asnumpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_ours.asnumpy(), grad_theirs.asnumpy(), rtol=1e-5, atol=1e-4)
    assert Y_ours.shape[2:] == cb.output_shape(X.shape[2:], pool_size, strides or pool_size, padding)


def test_04_our_pools_give_the_same_numbers_with_and_without_the_kernel():
    X = nd.random.normal(shape=(2, 3, 9, 8))
    results = {}
    for use_kernel in (True, False):
        old = cb.native.set_enabled(use_kernel)
        try:
            x = X.copy()
            x.attach_grad()
            with autograd.record():
                Y = cb.MaxPool2D(3, strides=2, padding=1)(x) + cb.AvgPool2D(3, strides=2, padding=1)(x)
            Y.backward(nd.arange(Y.size).reshape(Y.shape))
            results[use_kernel] = (Y.asnumpy(), x.grad.asnumpy())
        finally:
            cb.native.set_enabled(old)
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-5, atol=1e-4)


# --- 05 why CNNs and the exercises --------------------------------------------------------------

def test_05_flattening_puts_vertical_neighbours_w_places_apart():
    h, w = 3, 4
    X = nd.arange(h * w).reshape((h, w))
    x = X.reshape(-1)
    i, j = 1, 2
    assert x[i * w + j].asscalar() == X[i, j].asscalar()
    assert x[(i + 1) * w + j].asscalar() == X[i + 1, j].asscalar()


def test_05_the_dense_layer_costs_3_gb_and_the_conv_6912_weights():
    dense = cb.dense_layer_cost(3 * 1000 * 1000, 256)
    conv = cb.conv_layer_cost((3, 1000, 1000), 256, 3, padding=1)
    assert dense['params'] == 3_000_000 * 256 and round(dense['bytes'] / 1e9, 2) == 3.07
    assert conv['params'] == 256 * 3 * 3 * 3


def test_05_ex1_transposed_kernels_find_horizontal_edges():
    X, K = cb.edge_image(), cb.edge_kernel()
    assert (cb.corr2d(X.T, K) == 0).asnumpy().all()
    np.testing.assert_array_equal(cb.corr2d(X.T, K.T).asnumpy(), cb.corr2d(X, K).T.asnumpy())


def test_05_ex1_diagonal_edges_are_seen_across_not_along():
    X_diag = nd.array(np.triu(np.ones((6, 8))))
    K = cb.edge_kernel()
    where = {name: {tuple(ij) for ij in np.argwhere(cb.corr2d(X_diag, k).asnumpy())}
             for name, k in [('K', K), ('K.T', K.T), ('across', nd.array([[0, 1], [-1, 0]])),
                             ('along', nd.array([[1, 0], [0, -1]]))]}
    assert where['K'] == {(i, i - 1) for i in range(1, 6)}
    assert where['K.T'] == {(i, i) for i in range(5)}
    assert where['across'] == {(i, i - 1) for i in range(1, 5)} | {(i, i) for i in range(5)}
    assert where['along'] == set()


def test_05_ex2_the_blogs_loop_is_refused_under_autograd_and_corr2d_is_not():
    X, K = cb.corr2d_example()
    K.attach_grad()
    with pytest.raises(mx.base.MXNetError, match='Inplace operations'):
        with autograd.record():
            cb.corr2d_loop(X, K)
    with autograd.record():
        Y = cb.corr2d(X, K)
    Y.backward()
    np.testing.assert_array_equal(K.grad.asnumpy(), [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5],
                                                     [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])


def _windows(X, kernel_size):
    return nd.im2col(X.reshape((1, 1) + X.shape), kernel=kernel_size)[0].asnumpy().T


def test_05_ex3_a_2x2_kernel_raises_the_curvature_so_lr_003_diverges():
    X = cb.edge_image()
    Y = cb.corr2d(X, cb.edge_kernel())[:-1]
    lam_max = [2 * np.linalg.eigvalsh(A.T @ A).max()
               for A in (_windows(X, (1, 2)), _windows(X, (2, 2)))]
    np.testing.assert_allclose(lam_max, [60, 100], rtol=1e-5)
    fits = {lr: cb.fit_kernel(X, Y, (2, 2), iters=20, lr=lr) for lr in (0.01, 0.03)}
    assert fits[0.03].losses[-1] > 1e3 * fits[0.03].losses[0]
    assert fits[0.01].losses[-1] < 1e-2
    # only the column sums are fixed by the data; the rows' difference never changes
    fit = fits[0.01]
    np.testing.assert_allclose(fit.K.sum(axis=0).asnumpy(), [1, -1], rtol=0, atol=0.05)
    row_difference = fit.kernel_path[:, 0] - fit.kernel_path[:, 1]
    np.testing.assert_allclose(row_difference, np.broadcast_to(row_difference[0], row_difference.shape),
                               rtol=0, atol=1e-6)


def test_05_ex3_a_rich_image_recovers_the_2x2_kernel():
    X_rich = nd.random.uniform(-1, 1, shape=(8, 8))
    K_true = nd.array([[1, -1], [0, 0]])
    A = _windows(X_rich, (2, 2))
    lr = 1 / (2 * np.linalg.eigvalsh(A.T @ A).max())
    fit = cb.fit_kernel(X_rich, cb.corr2d(X_rich, K_true), (2, 2), iters=40, lr=lr)
    np.testing.assert_allclose(fit.K.asnumpy(), K_true.asnumpy(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("d", range(1, 6))
def test_05_ex4_the_d_th_difference_gives_d_factorial_on_j_to_the_d(d):
    K_d = nd.array([[(-1) ** (d - k) * math.comb(d, k) for k in range(d + 1)]])
    X_power = nd.array(np.arange(12.) ** d).reshape((1, 12))
    np.testing.assert_allclose(cb.corr2d(X_power, K_d).asnumpy(), math.factorial(d),
                               rtol=0, atol=1e-3)


def test_05_ex4_the_second_difference_marks_each_edge_with_a_pair():
    K2 = nd.array([[1, -2, 1]])
    X_square = nd.array(np.tile(np.arange(10.) ** 2, (2, 1)))
    np.testing.assert_array_equal(cb.corr2d(X_square, K2).asnumpy(), 2)
    np.testing.assert_array_equal(cb.corr2d(cb.edge_image(), K2)[0].asnumpy(),
                                  [-1, 1, 0, 0, 1, -1])


def test_05_ex5_corr2d_is_a_matrix_multiply_both_ways():
    X = nd.random.uniform(shape=(4, 5))
    K = nd.random.uniform(shape=(2, 3))
    Y = cb.corr2d(X, K)
    W = cb.corr2d_matrix(K, X.shape)
    np.testing.assert_allclose(nd.dot(W, X.reshape(-1)).reshape(Y.shape).asnumpy(), Y.asnumpy(),
                               rtol=1e-6, atol=1e-6)
    c_i, c_o = 3, 2
    X = nd.random.uniform(shape=(c_i, 5, 6))
    K = nd.random.uniform(shape=(c_o, c_i, 2, 3))
    columns = nd.im2col(X.expand_dims(0), kernel=K.shape[2:])[0]
    Y = nd.dot(K.reshape((c_o, -1)), columns).reshape((c_o, 4, 4))
    np.testing.assert_allclose(Y.asnumpy(), cb.corr2d_multi_in_out(X, K).asnumpy(),
                               rtol=1e-5, atol=1e-6)


def test_05_ex6_two_kernels_in_a_row_are_one_of_the_receptive_fields_size():
    X = nd.random.uniform(shape=(7, 8))
    K1, K2 = nd.random.uniform(shape=(2, 3)), nd.random.uniform(shape=(3, 2))
    (k1_h, k1_w), (k2_h, k2_w) = K1.shape, K2.shape
    K = cb.corr2d(cb.pad2d(K1, (k2_h - 1, k2_w - 1)), K2.flip(axis=0).flip(axis=1))
    assert K.shape == cb.receptive_field([K1.shape, K2.shape]) == (k1_h + k2_h - 1, k1_w + k2_w - 1)
    np.testing.assert_allclose(cb.corr2d(cb.corr2d(X, K1), K2).asnumpy(),
                               cb.corr2d(X, K).asnumpy(), rtol=1e-5, atol=1e-6)


def test_05_ex7_doubling_channels_costs_4x_and_padding_only_grows_the_output():
    c_i, h, w, c_o, k = 16, 32, 32, 32, 3
    base = cb.conv_layer_cost((c_i, h, w), c_o, k, padding=1)
    doubled = cb.conv_layer_cost((2 * c_i, h, w), 2 * c_o, k, padding=1)
    padded = cb.conv_layer_cost((c_i, h, w), c_o, k, padding=2)
    assert doubled['madds'] == 4 * base['madds'] and doubled['params'] == 4 * base['params']
    h_out, h_out_padded = base['output_shape'][1], padded['output_shape'][1]
    assert (h_out, h_out_padded) == (32, 34)
    assert padded['madds'] * h_out ** 2 == base['madds'] * h_out_padded ** 2
    assert cb.conv_layer_cost((c_i, h, w), c_o, 1)['madds'] == c_o * c_i * h * w


def test_05_ex8_y1_and_y2_differ_only_by_summation_order():
    X = nd.random.uniform(shape=(3, 3, 3))
    K = nd.random.uniform(shape=(2, 3, 1, 1))
    Y1, Y2 = cb.corr2d_multi_in_out_1x1(X, K), cb.corr2d_multi_in_out(X, K)
    np.testing.assert_allclose(Y1.asnumpy(), Y2.asnumpy(), rtol=1e-6, atol=1e-6)
    a, b, c = np.float32(1e8), np.float32(1), np.float32(-1e8)
    assert (a + b) + c != (a + c) + b
    x, k = X.asnumpy(), K.asnumpy()[:, :, 0, 0]
    products = [[k[o, c] * x[c] for c in range(3)] for o in range(2)]
    orders = [np.stack([(P[p] + P[q]) + P[r] for P in products])
              for p, q, r in itertools.permutations(range(3))]
    assert any(np.array_equal(S, Y2.asnumpy()) for S in orders)


@pytest.mark.parametrize("c", [3, 8, 32, 128, 512])
def test_05_ex8_the_gap_stays_within_the_float32_bound(c):
    X = nd.random.uniform(shape=(c, 8, 8))
    K = nd.random.uniform(shape=(4, c, 1, 1))
    for dtype, bound in [('float32', 2 * c * 2.0 ** -24), ('float64', 1e-12)]:
        Xd, Kd = X.astype(dtype), K.astype(dtype)
        Y1, Y2 = cb.corr2d_multi_in_out_1x1(Xd, Kd), cb.corr2d_multi_in_out(Xd, Kd)
        assert (Y1 - Y2).abs().max().asscalar() / Y1.abs().max().asscalar() <= bound


def test_05_ex9_min_pooling_is_minus_max_pooling_of_minus_x():
    X = nd.random.normal(shape=(5, 6))
    Y_min = -cb.pool2d(-X, (2, 2))
    windows = np.lib.stride_tricks.sliding_window_view(X.asnumpy(), (2, 2))
    np.testing.assert_array_equal(Y_min.asnumpy(), windows.min(axis=(2, 3)))
    Y_min_gluon = -nn.MaxPool2D(2, strides=1)(-X.reshape((1, 1, 5, 6)))[0, 0]
    np.testing.assert_array_equal(Y_min_gluon.asnumpy(), Y_min.asnumpy())


def test_05_ex9_average_pooling_is_a_convolution_and_max_pooling_is_not_linear():
    X = nd.random.uniform(shape=(5, 6))
    np.testing.assert_allclose(cb.corr2d(X, nd.ones((2, 3)) / 6).asnumpy(),
                               cb.pool2d(X, (2, 3), 'avg').asnumpy(), rtol=1e-6, atol=1e-6)
    X1, X2 = nd.array([[1, 0], [0, 0]]), nd.array([[0, 1], [0, 0]])
    assert cb.pool2d(X1 + X2, 2).asnumpy().item() == 1
    assert (cb.pool2d(X1, 2) + cb.pool2d(X2, 2)).asnumpy().item() == 2


# --- 06 LeNet -------------------------------------------------------------------------------------

def test_06_the_same_seed_gives_both_lenets_the_same_weights_and_outputs():
    X = nd.random.uniform(shape=(1, 1, 28, 28))
    nets = {block: cb.init_net(cb.lenet(block), mx.cpu(), seed=0) for block in ("custom", "builtin")}
    for a, b in zip(nets["custom"].collect_params().values(),
                    nets["builtin"].collect_params().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())
    np.testing.assert_allclose(nets["custom"](X).asnumpy(), nets["builtin"](X).asnumpy(),
                               rtol=1e-5, atol=1e-6)


def _fashion_mnist_or_skip():
    from cnn_base.training.data import DataNotFoundError, find_fashion_mnist

    try:
        for train in (True, False):
            find_fashion_mnist(train, download=False)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def test_06_the_short_run_learns_and_both_blocks_agree():
    _fashion_mnist_or_skip()
    train_data = cb.fashion_mnist_dataset(train=True, limit=1000, download=False)
    test_data = cb.fashion_mnist_dataset(train=False, limit=500, download=False)
    runs = {block: cb.train_lenet(block, num_epochs=3, batch_size=64, lr=0.1, seed=0, ctx="cpu",
                                  activation="relu", train_data=train_data, test_data=test_data,
                                  progress="none")
            for block in ("custom", "builtin")}
    for run in runs.values():
        assert run.final.test_acc > 0.3, run.epochs     # chance is 0.1
    for c, b in zip(runs["custom"].epochs, runs["builtin"].epochs):
        for name in ("loss", "train_acc", "test_acc"):
            assert abs(getattr(c, name) - getattr(b, name)) < 0.05
