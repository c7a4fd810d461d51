"""Plain-NumPy references and float64 finite differences the tests compare against."""
import numpy as np


def corr2d_np(X, K):
    """2-D cross-correlation written directly from its definition."""
    k_h, k_w = K.shape
    h, w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    return np.array([[np.sum(X[i:i + k_h, j:j + k_w] * K) for j in range(w)] for i in range(h)])


def pool2d_np(X, p_h, p_w, mode):
    reduce = np.max if mode == "max" else np.mean
    h, w = X.shape[0] - p_h + 1, X.shape[1] - p_w + 1
    return np.array([[reduce(X[i:i + p_h, j:j + p_w]) for j in range(w)] for i in range(h)])


def central_difference(f, X, eps=1e-6):
    """Gradient of the scalar function ``f`` at the float64 array ``X``."""
    X = X.astype(np.float64).copy()
    grad = np.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        old = X[idx]
        X[idx] = old + eps
        f_plus = f(X)
        X[idx] = old - eps
        f_minus = f(X)
        X[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad
