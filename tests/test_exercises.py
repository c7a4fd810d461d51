import numpy as np
import pytest
from mxnet import autograd, nd

import cnn_base as cb
from reference import corr2d_np

# (input (h, w), kernel (k_h, k_w))
SHAPES = [((3, 3), (2, 2)), ((6, 8), (1, 2)), ((5, 7), (3, 2)), ((4, 4), (4, 4)), ((1, 6), (1, 3)),
          ((7, 1), (2, 1))]


@pytest.mark.parametrize("input_shape, kernel_size", SHAPES)
def test_corr2d_matrix_times_flat_input_is_corr2d(input_shape, kernel_size):
    X = nd.random.normal(shape=input_shape)
    K = nd.random.normal(shape=kernel_size)
    W = cb.corr2d_matrix(K, input_shape)
    h_out, w_out = input_shape[0] - kernel_size[0] + 1, input_shape[1] - kernel_size[1] + 1
    assert W.shape == (h_out * w_out, input_shape[0] * input_shape[1])
    Y = nd.dot(W, X.reshape(-1)).reshape((h_out, w_out))
    np.testing.assert_allclose(Y.asnumpy(), corr2d_np(X.asnumpy(), K.asnumpy()), rtol=1e-5, atol=1e-5)


def test_corr2d_matrix_holds_each_kernel_entry_once_per_row():
    K = nd.random.normal(shape=(2, 3))
    W = cb.corr2d_matrix(K, (5, 6)).asnumpy()
    np.testing.assert_allclose(np.sort(W[W != 0]), np.sort(np.tile(K.asnumpy().ravel(), W.shape[0])),
                               rtol=0, atol=0)
    assert ((W != 0).sum(axis=1) == K.size).all()


def test_corr2d_matrix_is_differentiable_in_the_kernel():
    X = nd.random.normal(shape=(4, 5), dtype="float64")
    K = nd.random.normal(shape=(2, 2), dtype="float64")
    K.attach_grad()
    with autograd.record():
        l = nd.dot(cb.corr2d_matrix(K, X.shape), X.reshape(-1)).sum()
    l.backward()
    K2 = K.copy()
    K2.attach_grad()
    with autograd.record():
        l2 = cb.corr2d(X, K2).sum()
    l2.backward()
    np.testing.assert_allclose(K.grad.asnumpy(), K2.grad.asnumpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K, input_shape, error, match", [
    (nd.ones((3,)), (4, 4), ValueError, r"K must be 2-D"),
    (nd.ones((3, 3)), (2, 4), ValueError, r"must fit inside the input \(2, 4\)"),
    (nd.ones((2, 2)), (4, 0), ValueError, r"input_shape must be positive"),
    ([[1, 2]], (4, 4), TypeError, r"K must be an mxnet NDArray"),
])
def test_corr2d_matrix_refuses_bad_input(K, input_shape, error, match):
    with pytest.raises(error, match=match):
        cb.corr2d_matrix(K, input_shape)


def test_fit_kernel_recovers_a_kernel_from_rich_data():
    X = nd.random.uniform(-1, 1, shape=(8, 8))
    K_true = nd.array([[1, -1], [0.5, 2]])
    fit = cb.fit_kernel(X, cb.corr2d(X, K_true), (2, 2), iters=50, lr=0.01)
    np.testing.assert_allclose(fit.K.asnumpy(), K_true.asnumpy(), rtol=0, atol=1e-3)
    assert fit.losses[-1] < 1e-5 * fit.losses[0]
    assert fit.kernel_path.shape == (51, 2, 2)
    np.testing.assert_allclose(fit.kernel_path[-1], fit.K.asnumpy(), rtol=0, atol=0)


def test_fit_kernel_learns_the_blog_edge_kernel():
    X = cb.edge_image()
    fit = cb.fit_kernel(X, cb.corr2d(X, cb.edge_kernel()), (1, 2), iters=10, lr=0.03)
    np.testing.assert_allclose(fit.K.asnumpy(), [[1, -1]], rtol=0, atol=0.05)
    assert fit.losses == sorted(fit.losses, reverse=True)


def test_fit_kernel_is_repeatable_with_a_seed_and_starts_in_the_init_range():
    X = nd.random.normal(shape=(5, 5))
    Y = nd.random.normal(shape=(4, 3))
    a = cb.fit_kernel(X, Y, (2, 3), iters=3, seed=7, init_scale=0.5)
    b = cb.fit_kernel(X, Y, (2, 3), iters=3, seed=7, init_scale=0.5)
    np.testing.assert_array_equal(a.kernel_path, b.kernel_path)
    assert np.abs(a.kernel_path[0]).max() <= 0.5
    assert cb.fit_kernel(X, Y, (2, 3), iters=0).losses == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kernel_size=(2, 2)), ValueError, r"Y must have the shape of corr2d\(X, K\): \(4, 4\)"),
    (dict(kernel_size=(2, 3), lr=0), ValueError, r"lr must be a positive finite number, got 0"),
    (dict(kernel_size=(2, 3), lr="0.1"), TypeError, r"lr must be a number"),
    (dict(kernel_size=(2, 3), iters=-1), ValueError, r"iters must be >= 0"),
    (dict(kernel_size=0), ValueError, r"kernel_size must be positive"),
])
def test_fit_kernel_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        cb.fit_kernel(nd.ones((5, 5)), nd.ones((4, 3)), **kwargs)
