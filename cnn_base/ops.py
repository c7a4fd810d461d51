"""The chapter's operations on NDArrays: cross-correlation, channels, pooling.

Names and signatures are the blog's (D2L zh 5.1-5.4): ``corr2d(X, K)``,
``corr2d_multi_in``, ``corr2d_multi_in_out``, ``corr2d_multi_in_out_1x1``,
``pool2d(X, pool_size, mode='max')``.

The blog's ``corr2d`` fills ``Y[i, j] = ...`` in a loop. MXNet refuses in-place
writes while ``autograd.record()`` is on, which is why the book learns its edge
kernel with the built-in layer. Here the loops stay as the documented teaching
references (:func:`corr2d_loop`, :func:`pool2d_loop`), and the public functions
use the chapter's own exercise instead: *im2col* (every window laid out as a
column, ``nd.im2col``) followed by a matrix multiply or a reduction. No in-place
write happens, so gradients flow through everything here.
"""
from mxnet import nd

from ._checks import as_pair, check_ndarray, check_same_array_kind

__all__ = ["corr2d_loop", "corr2d", "corr2d_multi_in", "corr2d_multi_in_out",
           "corr2d_multi_in_out_1x1", "pool2d_loop", "pool2d", "POOL_MODES"]

POOL_MODES = ("max", "avg")


def _check_window_fits(X, window, x_name, k_name):
    h, w = X.shape[-2:]
    k_h, k_w = window
    if k_h > h or k_w > w:
        raise ValueError(f"{k_name} {(k_h, k_w)} must fit inside {x_name} {(h, w)}: "
                         f"{k_name} height and width may not exceed the input's")


def _check_corr2d_args(X, K):
    check_ndarray("X", X, 2, "(h, w)")
    check_ndarray("K", K, 2, "(k_h, k_w)")
    check_same_array_kind(X, K)
    _check_window_fits(X, K.shape, "X", "kernel K")


def _windows(X, window):
    """im2col of a 2-D ``X``: shape (k_h * k_w, h' * w'), one column per window position."""
    h, w = X.shape
    return nd.im2col(X.reshape((1, 1, h, w)), kernel=window)[0]


def corr2d_loop(X, K):
    """The blog's loop, kept as the teaching reference for :func:`corr2d`.

    It writes ``Y[i, j]`` in place, so it cannot be differentiated under
    ``autograd.record()``; use :func:`corr2d` for learning.

    >>> corr2d_loop(nd.arange(9).reshape((3, 3)), nd.arange(4).reshape((2, 2)))
    <BLANKLINE>
    [[19. 25.]
     [37. 43.]]
    <NDArray 2x2 @cpu(0)>
    """
    _check_corr2d_args(X, K)
    h, w = K.shape
    Y = nd.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), ctx=X.context, dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i: i + h, j: j + w] * K).sum()
    return Y


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (h, w) with kernel ``K`` (k_h, k_w).

    Output shape (h - k_h + 1, w - k_w + 1); differentiable under ``autograd.record()``.
    Each window of ``X`` becomes a column (im2col), and the kernel, read as a row,
    multiplies all columns at once.

    >>> X = nd.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    >>> K = nd.array([[0, 1], [2, 3]])
    >>> corr2d(X, K)
    <BLANKLINE>
    [[19. 25.]
     [37. 43.]]
    <NDArray 2x2 @cpu(0)>
    """
    _check_corr2d_args(X, K)
    k_h, k_w = K.shape
    Y = nd.dot(K.reshape((1, k_h * k_w)), _windows(X, K.shape))
    return Y.reshape((X.shape[0] - k_h + 1, X.shape[1] - k_w + 1))


def _check_channels(X, K, k_axis):
    if X.shape[0] != K.shape[k_axis]:
        raise ValueError(f"X has {X.shape[0]} input channels but K has {K.shape[k_axis]} "
                         f"(X shape {X.shape}, K shape {K.shape}); they must be equal")


def corr2d_multi_in(X, K):
    """Cross-correlate each input channel with its own kernel and add the results.

    ``X`` (c_i, h, w), ``K`` (c_i, k_h, k_w) -> (h', w'). Unlike the blog's ``zip``,
    differing channel counts are refused rather than silently dropped.

    >>> X = nd.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
    ...               [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    >>> K = nd.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
    >>> corr2d_multi_in(X, K)
    <BLANKLINE>
    [[ 56.  72.]
     [104. 120.]]
    <NDArray 2x2 @cpu(0)>
    """
    check_ndarray("X", X, 3, "(c_i, h, w)")
    check_ndarray("K", K, 3, "(c_i, k_h, k_w)")
    _check_channels(X, K, 0)
    return nd.add_n(*[corr2d(x, k) for x, k in zip(X, K)])


def corr2d_multi_in_out(X, K):
    """One :func:`corr2d_multi_in` per output channel, stacked.

    ``X`` (c_i, h, w), ``K`` (c_o, c_i, k_h, k_w) -> (c_o, h', w').
    """
    check_ndarray("X", X, 3, "(c_i, h, w)")
    check_ndarray("K", K, 4, "(c_o, c_i, k_h, k_w)")
    _check_channels(X, K, 1)
    return nd.stack(*[corr2d_multi_in(X, k) for k in K])


def corr2d_multi_in_out_1x1(X, K):
    """A 1x1 convolution as one matrix multiply: (c_o, c_i) times (c_i, h * w).

    ``X`` (c_i, h, w), ``K`` (c_o, c_i, 1, 1) -> (c_o, h, w); the pixels act as
    samples and the channels as features, as in a dense layer.
    """
    check_ndarray("X", X, 3, "(c_i, h, w)")
    check_ndarray("K", K, 4, "(c_o, c_i, 1, 1)")
    if K.shape[2:] != (1, 1):
        raise ValueError(f"K must be a 1x1 kernel of shape (c_o, c_i, 1, 1), got shape {K.shape}")
    _check_channels(X, K, 1)
    check_same_array_kind(X, K)
    c_i, h, w = X.shape
    c_o = K.shape[0]
    Y = nd.dot(K.reshape((c_o, c_i)), X.reshape((c_i, h * w)))
    return Y.reshape((c_o, h, w))


def _check_pool2d_args(X, pool_size, mode):
    check_ndarray("X", X, 2, "(h, w)")
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    window = as_pair("pool_size", pool_size)
    _check_window_fits(X, window, "X", "pool_size")
    return window


def pool2d_loop(X, pool_size, mode="max"):
    """The blog's pooling loop (in-place writes), the teaching reference for :func:`pool2d`."""
    p_h, p_w = _check_pool2d_args(X, pool_size, mode)
    Y = nd.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1), ctx=X.context, dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i: i + p_h, j: j + p_w]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


def pool2d(X, pool_size, mode="max"):
    """2-D max or average pooling of ``X`` (h, w), stride 1, no padding.

    ``pool_size`` is ``(p_h, p_w)`` or an int; ``mode`` is ``'max'`` or ``'avg'``.
    Output (h - p_h + 1, w - p_w + 1); differentiable (max sends the gradient to
    the window's largest element).

    >>> X = nd.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    >>> pool2d(X, (2, 2))
    <BLANKLINE>
    [[4. 5.]
     [7. 8.]]
    <NDArray 2x2 @cpu(0)>
    >>> pool2d(X, (2, 2), 'avg')
    <BLANKLINE>
    [[2. 3.]
     [5. 6.]]
    <NDArray 2x2 @cpu(0)>
    """
    p_h, p_w = _check_pool2d_args(X, pool_size, mode)
    cols = _windows(X, (p_h, p_w))
    Y = cols.max(axis=0) if mode == "max" else cols.mean(axis=0)
    return Y.reshape((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
