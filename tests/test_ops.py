import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

import cnn_base as cb
from reference import central_difference, corr2d_np, pool2d_np

# --- the blog's printed values -------------------------------------------------------------


def test_corr2d_gives_blog_first_figure_values():
    X, K = cb.corr2d_example()
    np.testing.assert_array_equal(cb.corr2d(X, K).asnumpy(), [[19, 25], [37, 43]])


def test_corr2d_on_edge_image_marks_white_to_black_and_black_to_white():
    Y = cb.corr2d(cb.edge_image(), cb.edge_kernel()).asnumpy()
    assert Y.shape == (6, 7)
    expected = np.zeros((6, 7))
    expected[:, 1] = 1
    expected[:, 5] = -1
    np.testing.assert_array_equal(Y, expected)


def test_corr2d_on_transposed_edge_image_sees_no_vertical_change():
    Y = cb.corr2d(cb.edge_image().T, cb.edge_kernel()).asnumpy()
    assert Y.shape == (8, 5)
    np.testing.assert_array_equal(Y, np.zeros((8, 5)))


def test_corr2d_multi_in_gives_blog_values():
    X, K = cb.multi_in_example()
    np.testing.assert_array_equal(cb.corr2d_multi_in(X, K).asnumpy(), [[56, 72], [104, 120]])


def test_corr2d_multi_in_out_gives_blog_three_output_channels():
    X, K = cb.multi_in_example()
    Y = cb.corr2d_multi_in_out(X, nd.stack(K, K + 1, K + 2)).asnumpy()
    assert Y.shape == (3, 2, 2)
    np.testing.assert_array_equal(Y, [[[56, 72], [104, 120]],
                                      [[76, 100], [148, 172]],
                                      [[96, 128], [192, 224]]])


def test_1x1_matmul_equals_corr2d_multi_in_out_within_1e6():
    X = nd.random.uniform(shape=(3, 3, 3))
    K = nd.random.uniform(shape=(2, 3, 1, 1))
    Y1 = cb.corr2d_multi_in_out_1x1(X, K)
    Y2 = cb.corr2d_multi_in_out(X, K)
    assert Y1.shape == (2, 3, 3)
    assert (Y1 - Y2).norm().asscalar() < 1e-6


@pytest.mark.parametrize("mode, expected", [("max", [[4, 5], [7, 8]]), ("avg", [[2, 3], [5, 6]])])
def test_pool2d_gives_blog_values(mode, expected):
    X, _ = cb.corr2d_example()
    np.testing.assert_array_equal(cb.pool2d(X, (2, 2), mode).asnumpy(), expected)


# --- vectorised == loop == NumPy -----------------------------------------------------------

SHAPES = [((3, 3), (2, 2)), ((6, 8), (1, 2)), ((7, 5), (3, 1)), ((5, 9), (5, 4)),
          ((4, 4), (4, 4)), ((1, 6), (1, 3)), ((10, 12), (3, 3))]


@pytest.mark.parametrize("x_shape, k_shape", SHAPES)
def test_corr2d_equals_blog_loop_and_numpy_on_random_inputs(x_shape, k_shape):
    X = nd.random.normal(shape=x_shape)
    K = nd.random.normal(shape=k_shape)
    Y = cb.corr2d(X, K).asnumpy()
    np.testing.assert_allclose(Y, cb.corr2d_loop(X, K).asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Y, corr2d_np(X.asnumpy(), K.asnumpy()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", cb.POOL_MODES)
@pytest.mark.parametrize("x_shape, window", SHAPES)
def test_pool2d_equals_blog_loop_and_numpy_on_random_inputs(x_shape, window, mode):
    X = nd.random.normal(shape=x_shape)
    Y = cb.pool2d(X, window, mode).asnumpy()
    np.testing.assert_allclose(Y, cb.pool2d_loop(X, window, mode).asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Y, pool2d_np(X.asnumpy(), *window, mode), rtol=1e-5, atol=1e-6)


def test_pool2d_accepts_an_int_pool_size_as_a_square_window():
    X = nd.random.normal(shape=(5, 6))
    np.testing.assert_array_equal(cb.pool2d(X, 3).asnumpy(), cb.pool2d(X, (3, 3)).asnumpy())


def test_corr2d_multi_in_out_equals_numpy_channel_sums():
    X = nd.random.normal(shape=(3, 6, 5))
    K = nd.random.normal(shape=(4, 3, 2, 3))
    X_np, K_np = X.asnumpy(), K.asnumpy()
    expected = np.stack([sum(corr2d_np(X_np[c], K_np[o, c]) for c in range(3)) for o in range(4)])
    np.testing.assert_allclose(cb.corr2d_multi_in_out(X, K).asnumpy(), expected, rtol=1e-5, atol=1e-5)


# --- gradients against central finite differences in float64 -------------------------------

def _autograd_and_numeric(op, args, wrt, G):
    """Gradient of sum(op(*args) * G) w.r.t. args[wrt]: autograd and finite differences."""
    args = [nd.array(a, dtype="float64") for a in args]
    args[wrt].attach_grad()
    with autograd.record():
        loss = (op(*args) * nd.array(G, dtype="float64")).sum()
    loss.backward()

    def f(value):
        trial = list(args)
        trial[wrt] = nd.array(value, dtype="float64")
        return (op(*trial).asnumpy() * G).sum()

    return args[wrt].grad.asnumpy(), central_difference(f, args[wrt].asnumpy())


@pytest.mark.parametrize("x_shape, k_shape", [((3, 3), (2, 2)), ((5, 7), (3, 2)), ((4, 6), (1, 2))])
@pytest.mark.parametrize("wrt", [0, 1], ids=["dX", "dK"])
def test_corr2d_gradient_matches_central_differences(x_shape, k_shape, wrt):
    X, K = np.random.normal(size=x_shape), np.random.normal(size=k_shape)
    G = np.random.normal(size=(x_shape[0] - k_shape[0] + 1, x_shape[1] - k_shape[1] + 1))
    analytic, numeric = _autograd_and_numeric(cb.corr2d, [X, K], wrt, G)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", cb.POOL_MODES)
@pytest.mark.parametrize("x_shape, window", [((3, 3), (2, 2)), ((5, 6), (3, 2))])
def test_pool2d_gradient_matches_central_differences(x_shape, window, mode):
    # distinct random values: no ties, so the max is differentiable at X
    X = np.random.permutation(np.prod(x_shape)).reshape(x_shape) + np.random.uniform(0, 0.5, x_shape)
    G = np.random.normal(size=(x_shape[0] - window[0] + 1, x_shape[1] - window[1] + 1))
    analytic, numeric = _autograd_and_numeric(lambda X: cb.pool2d(X, window, mode), [X], 0, G)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_corr2d_multi_in_out_gradient_matches_central_differences():
    X, K = np.random.normal(size=(2, 4, 4)), np.random.normal(size=(3, 2, 2, 2))
    G = np.random.normal(size=(3, 3, 3))
    for wrt in (0, 1):
        analytic, numeric = _autograd_and_numeric(cb.corr2d_multi_in_out, [X, K], wrt, G)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_blog_loop_cannot_be_recorded_but_corr2d_can():
    X, K = cb.edge_image(), cb.edge_kernel()
    K.attach_grad()
    with pytest.raises(mx.base.MXNetError, match="Inplace operations"):
        with autograd.record():
            cb.corr2d_loop(X, K)
    with autograd.record():
        loss = cb.corr2d(X, K).sum()
    loss.backward()
    # d/dK sum(corr2d(X, K)) = sum of the windows: column sums of X[:, :7] and X[:, 1:]
    np.testing.assert_array_equal(K.grad.asnumpy(), [[18, 18]])


# --- contexts ------------------------------------------------------------------------------

@pytest.mark.parametrize("op, x, k", [
    (cb.corr2d, (6, 8), (1, 2)), (cb.corr2d_multi_in, (2, 3, 3), (2, 2, 2)),
    (cb.corr2d_multi_in_out, (2, 3, 3), (3, 2, 2, 2)), (cb.corr2d_multi_in_out_1x1, (3, 3, 3), (2, 3, 1, 1)),
])
def test_ops_keep_results_on_the_inputs_context(op, x, k):
    ctx = mx.cpu(1)
    Y = op(nd.ones(x, ctx=ctx), nd.ones(k, ctx=ctx))
    assert Y.context == ctx


def test_pool2d_keeps_result_on_the_inputs_context():
    assert cb.pool2d(nd.ones((4, 4), ctx=mx.cpu(1)), 2, "avg").context == mx.cpu(1)


# --- bad input -----------------------------------------------------------------------------

BAD_INPUTS = [
    (cb.corr2d, (nd.ones((2, 2)), nd.ones((3, 1))), ValueError,
     r"kernel K \(3, 1\) must fit inside X \(2, 2\)"),
    (cb.corr2d, (nd.ones((1, 3, 3)), nd.ones((2, 2))), ValueError, r"X must be 2-D .*got shape \(1, 3, 3\)"),
    (cb.corr2d, (nd.ones((3, 3)), nd.ones((2,))), ValueError, r"K must be 2-D .*got shape \(2,\)"),
    (cb.corr2d, (np.ones((3, 3)), nd.ones((2, 2))), TypeError, r"X must be an mxnet NDArray.*numpy.ndarray"),
    (cb.corr2d, (nd.ones((3, 3)), nd.ones((2, 2), dtype="float64")), TypeError,
     "X and K must have the same dtype, got float32 and float64"),
    (cb.corr2d, (nd.ones((3, 3)), nd.ones((2, 2), ctx=mx.cpu(1))), ValueError,
     r"X and K must be on the same context, got cpu\(0\) and cpu\(1\)"),
    (cb.corr2d, (nd.array(np.zeros((3, 0))), nd.ones((1, 1))), ValueError,
     r"X must not be empty, got shape \(3, 0\)"),
    (cb.corr2d_multi_in, (nd.ones((3, 3, 3)), nd.ones((2, 2, 2))), ValueError,
     "X has 3 input channels but K has 2"),
    (cb.corr2d_multi_in, (nd.ones((3, 3)), nd.ones((2, 2))), ValueError, r"X must be 3-D \(c_i, h, w\)"),
    (cb.corr2d_multi_in_out, (nd.ones((2, 3, 3)), nd.ones((2, 2, 2))), ValueError,
     r"K must be 4-D \(c_o, c_i, k_h, k_w\)"),
    (cb.corr2d_multi_in_out, (nd.ones((2, 3, 3)), nd.ones((1, 3, 2, 2))), ValueError,
     "X has 2 input channels but K has 3"),
    (cb.corr2d_multi_in_out_1x1, (nd.ones((2, 3, 3)), nd.ones((1, 2, 2, 2))), ValueError,
     r"K must be a 1x1 kernel .*got shape \(1, 2, 2, 2\)"),
    (cb.corr2d_multi_in_out_1x1, (nd.ones((2, 3, 3)), nd.ones((1, 3, 1, 1))), ValueError,
     "X has 2 input channels but K has 3"),
    (cb.pool2d, (nd.ones((3, 3)), (2, 2), "median"), ValueError, "mode must be 'max' or 'avg', got 'median'"),
    (cb.pool2d, (nd.ones((3, 3)), (4, 2)), ValueError, r"pool_size \(4, 2\) must fit inside X \(3, 3\)"),
    (cb.pool2d, (nd.ones((3, 3)), (0, 2)), ValueError, r"pool_size must be positive, got \(0, 2\)"),
    (cb.pool2d, (nd.ones((3, 3)), -1), ValueError, "pool_size must be positive, got -1"),
    (cb.pool2d, (nd.ones((3, 3)), (2, 2, 2)), ValueError, "pool_size must be an int or a pair of ints"),
    (cb.pool2d, (nd.ones((3, 3)), "2"), TypeError, "pool_size must be an int or a pair of ints, got str '2'"),
    (cb.pool2d, (nd.ones((3, 3)), (2.0, 2)), TypeError, r"pool_size must be an int or a pair of ints, got \(2.0, 2\)"),
    (cb.pool2d, (nd.ones((2, 3, 3)), (2, 2)), ValueError, r"X must be 2-D \(h, w\), got shape \(2, 3, 3\)"),
]


@pytest.mark.parametrize("op, args, error, message", BAD_INPUTS,
                         ids=[f"{op.__name__}-{i}" for i, (op, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_with_the_rule_and_the_value(op, args, error, message):
    with pytest.raises(error, match=message):
        op(*args)
