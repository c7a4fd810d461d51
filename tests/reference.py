"""Plain-NumPy references and float64 finite differences the tests compare against."""
import numpy as np

# A max window holding only padding gives its dtype's lowest finite value (Gluon's rule);
# this is float32's.
LOWEST = float(np.finfo(np.float32).min)


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


def _pair(v):
    return tuple(np.broadcast_to(v, 2).tolist())


def pool2d_batch_np(X, dY, pool_size, strides=None, padding=0, mode="max", ceil_mode=False,
                    count_include_pad=True, lowest=None):
    """cnn_base's pooling of an NCHW batch and its input gradient for head gradient ``dY``
    (None: no gradient), window by window in float64, after MXNet's src/operator/nn/pool.h.

    Max: over the window's input cells only (padding takes no part); a window holding NaN
    gives NaN and its gradient goes to the first NaN in row-major order (np.argmax's rule);
    otherwise the first maximal cell gets the gradient and gives the value (so a -0.0/+0.0
    tie keeps the first). A window of only padding gives ``lowest`` (default: the lowest
    finite value of X's dtype; pass the original dtype's when X was widened to float64).
    Average: the divisor counts the cells inside the padded input (count_include_pad) or
    inside the input.
    """
    k = _pair(pool_size)
    s = k if strides is None else _pair(strides)
    p = _pair(padding)
    H, W = X.shape[2:]
    if lowest is None:
        lowest = float(np.finfo(X.dtype).min)

    def out_len(n, a):
        span = n + 2 * p[a] - k[a]
        return (-(-span // s[a]) if ceil_mode else span // s[a]) + 1

    Y = np.zeros(X.shape[:2] + (out_len(H, 0), out_len(W, 1)))
    dX = np.zeros(X.shape)
    assert dY is None or dY.shape == Y.shape
    for i, j in np.ndindex(*Y.shape[2:]):
        top, left = i * s[0] - p[0], j * s[1] - p[1]
        bottom, right = min(top + k[0], H + p[0]), min(left + k[1], W + p[1])  # padded edge
        padded_cells = max(bottom - top, 0) * max(right - left, 0)
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, H), min(right, W)
        window = X[:, :, top:max(bottom, top), left:max(right, left)]
        if window.size == 0:
            Y[:, :, i, j] = lowest if mode == "max" else 0.0
        elif mode == "max":
            flat = window.reshape(window.shape[:2] + (-1,))
            first = flat.argmax(axis=2)               # first NaN, else first maximal cell
            Y[:, :, i, j] = np.take_along_axis(flat, first[:, :, None], axis=2)[:, :, 0]
            for n, c in np.ndindex(*X.shape[:2]):
                a, b = divmod(int(first[n, c]), window.shape[3])
                if dY is not None:
                    dX[n, c, top + a, left + b] += dY[n, c, i, j]
        else:
            count = padded_cells if count_include_pad else window.shape[2] * window.shape[3]
            Y[:, :, i, j] = window.sum(axis=(2, 3)) / count
            if dY is not None:
                dX[:, :, top:bottom, left:right] += dY[:, :, i, j, None, None] / count
    return Y, dX


def batch_norm_np(X, gamma, beta, mean, var, dY, axis, batch_stats, momentum=0.9, eps=1e-5):
    """Batch norm by the textbook (d2l 5.10), in float64: output, dX, dgamma, dbeta, and the
    running mean and variance after the step. ``batch_stats``: training (the batch's mean and
    biased variance), else prediction (``mean`` and ``var``, constants)."""
    others = tuple(a for a in range(X.ndim) if a != axis % X.ndim)
    shape = [1] * X.ndim
    shape[axis] = -1
    m, v = (X.mean(axis=others), X.var(axis=others)) if batch_stats else (mean, var)
    invstd = 1 / np.sqrt(v + eps)
    Xhat = (X - m.reshape(shape)) * invstd.reshape(shape)
    Y = Xhat * gamma.reshape(shape) + beta.reshape(shape)
    dbeta, dgamma = dY.sum(axis=others), (dY * Xhat).sum(axis=others)
    M = X.size / X.shape[axis]
    g = (gamma * invstd).reshape(shape)
    dX = g * (dY - dbeta.reshape(shape) / M - Xhat * dgamma.reshape(shape) / M) if batch_stats \
        else g * dY
    if batch_stats:
        mean, var = mean * momentum + m * (1 - momentum), var * momentum + v * (1 - momentum)
    return [Y, dX, dgamma, dbeta, mean, var]
