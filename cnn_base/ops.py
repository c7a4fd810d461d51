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
from __future__ import annotations

from typing import Tuple

from mxnet import nd
from mxnet.ndarray import NDArray

from ._checks import as_pair, check_ndarray, check_same_array_kind
from ._types import PoolMode, Size2

__all__ = ["corr2d_loop", "corr2d", "pad2d", "corr2d_strided", "corr2d_multi_in",
           "corr2d_multi_in_out", "corr2d_multi_in_out_1x1", "pool2d_loop", "pool2d", "POOL_MODES"]

POOL_MODES: Tuple[PoolMode, ...] = ("max", "avg")


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


# --- §5.1 cross-correlation -----------------------------------------------------------------

def corr2d_loop(X: NDArray, K: NDArray) -> NDArray:
    """The blog's loop, kept as the teaching reference for :func:`corr2d`.

    D2L §5.1.

    It writes ``Y[i, j]`` in place, so it cannot be differentiated under
    ``autograd.record()``; use :func:`corr2d` for learning.

    >>> X, K = nd.arange(9).reshape((3, 3)), nd.arange(4).reshape((2, 2))
    >>> corr2d_loop(X, K).asnumpy().tolist() == corr2d(X, K).asnumpy().tolist() == [[19, 25], [37, 43]]
    True
    """
    _check_corr2d_args(X, K)
    h, w = K.shape
    Y = nd.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), ctx=X.context, dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i: i + h, j: j + w] * K).sum()
    return Y


def corr2d(X: NDArray, K: NDArray) -> NDArray:
    """2-D cross-correlation of ``X`` (h, w) with kernel ``K`` (k_h, k_w).

    D2L §5.1.

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


# --- §5.2 padding and stride ---------------------------------------------------------------

def pad2d(X: NDArray, padding: Size2) -> NDArray:
    """§5.2: ``X`` (h, w) with ``padding`` zeros on each side (an int or ``(p_h, p_w)``, Gluon's per-side count).

    >>> pad2d(nd.ones((1, 2)), (1, 0))
    <BLANKLINE>
    [[0. 0.]
     [1. 1.]
     [0. 0.]]
    <NDArray 3x2 @cpu(0)>
    """
    check_ndarray("X", X, 2, "(h, w)")
    return _pad_with(X, as_pair("padding", padding, minimum=0), 0.0)


def _pad_with(X, padding, value):
    """``X`` (h, w) with ``padding`` = (p_h, p_w) cells of ``value`` on each side."""
    p_h, p_w = padding
    if (p_h, p_w) == (0, 0):
        return X
    h, w = X.shape
    padded = nd.pad(X.reshape((1, 1, h, w)), mode="constant", constant_value=value,
                    pad_width=(0, 0, 0, 0, p_h, p_h, p_w, p_w))
    return padded.reshape((h + 2 * p_h, w + 2 * p_w))


def corr2d_strided(X: NDArray, K: NDArray, padding: Size2 = 0, strides: Size2 = 1) -> NDArray:
    """§5.2: :func:`corr2d` of the padded ``X``, keeping every ``s_h``-th row and ``s_w``-th column.

    A window that would not fit is not computed, as in the blog's stride figure.

    >>> X, K = nd.arange(9).reshape((3, 3)), nd.arange(4).reshape((2, 2))
    >>> corr2d_strided(X, K, padding=1, strides=(3, 2))
    <BLANKLINE>
    [[0. 8.]
     [6. 8.]]
    <NDArray 2x2 @cpu(0)>
    """
    s_h, s_w = as_pair("strides", strides)
    return corr2d(pad2d(X, padding), K)[::s_h, ::s_w]


# --- §5.3 multiple input and output channels -----------------------------------------------

def _check_channels(X, K, k_axis):
    if X.shape[0] != K.shape[k_axis]:
        raise ValueError(f"X has {X.shape[0]} input channels but K has {K.shape[k_axis]} "
                         f"(X shape {X.shape}, K shape {K.shape}); they must be equal")


def corr2d_multi_in(X: NDArray, K: NDArray) -> NDArray:
    """Cross-correlate each input channel with its own kernel and add the results.

    D2L §5.3.

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


def corr2d_multi_in_out(X: NDArray, K: NDArray) -> NDArray:
    """One :func:`corr2d_multi_in` per output channel, stacked.

    D2L §5.3.

    ``X`` (c_i, h, w), ``K`` (c_o, c_i, k_h, k_w) -> (c_o, h', w').
    """
    check_ndarray("X", X, 3, "(c_i, h, w)")
    check_ndarray("K", K, 4, "(c_o, c_i, k_h, k_w)")
    _check_channels(X, K, 1)
    return nd.stack(*[corr2d_multi_in(X, k) for k in K])


def corr2d_multi_in_out_1x1(X: NDArray, K: NDArray) -> NDArray:
    """A 1x1 convolution as one matrix multiply: (c_o, c_i) times (c_i, h * w).

    D2L §5.3.

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


# --- §5.4 pooling ----------------------------------------------------------------------------

def _check_mode(mode):
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")


def _check_pool2d_args(X, pool_size, mode):
    check_ndarray("X", X, 2, "(h, w)")
    _check_mode(mode)
    window = as_pair("pool_size", pool_size)
    _check_window_fits(X, window, "X", "pool_size")
    return window


def pool2d_loop(X: NDArray, pool_size: Size2, mode: PoolMode = "max") -> NDArray:
    """The blog's pooling loop (in-place writes), the teaching reference for :func:`pool2d`. (D2L §5.4)"""
    p_h, p_w = _check_pool2d_args(X, pool_size, mode)
    Y = nd.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1), ctx=X.context, dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i: i + p_h, j: j + p_w]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


def pool2d(X: NDArray, pool_size: Size2, mode: PoolMode = "max", padding: Size2 = 0,
           strides: Size2 = 1) -> NDArray:
    """2-D max or average pooling of ``X`` (h, w), with padding and stride (§5.4).

    ``pool_size`` is ``(p_h, p_w)`` or an int; ``mode`` is ``'max'`` or ``'avg'``;
    ``padding`` (per side, smaller than the window) and ``strides`` as in §5.2, stride 1
    and no padding by default, as the chapter's first pool2d. Output
    ((h + 2 * pad_h - p_h) // s_h + 1, (w + 2 * pad_w - p_w) // s_w + 1); differentiable
    (max sends the gradient to the window's largest element). Padded cells never win a
    max, and an average divides by p_h * p_w, padding included, as Gluon's pooling does.

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

    The blog's 4x4 input with a 3x3 window, padding 1 and stride 2:

    >>> pool2d(nd.arange(16).reshape((4, 4)), 3, padding=1, strides=2)
    <BLANKLINE>
    [[ 5.  7.]
     [13. 15.]]
    <NDArray 2x2 @cpu(0)>
    """
    if padding == 0 and strides == 1:       # the chapter's first pool2d
        p_h, p_w = _check_pool2d_args(X, pool_size, mode)
        cols = _windows(X, (p_h, p_w))
        Y = cols.max(axis=0) if mode == "max" else cols.mean(axis=0)
        return Y.reshape((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    check_ndarray("X", X, 2, "(h, w)")
    _check_mode(mode)
    p_h, p_w = as_pair("pool_size", pool_size)
    pad = as_pair("padding", padding, minimum=0)
    if pad[0] >= p_h or pad[1] >= p_w:
        raise ValueError(f"padding {pad} must be smaller than pool_size {(p_h, p_w)} on each axis")
    s_h, s_w = as_pair("strides", strides)
    # padding: -inf for a max (it never wins), zeros for an average
    Xp = _pad_with(X, pad, float("-inf") if mode == "max" else 0.0)
    _check_window_fits(Xp, (p_h, p_w), "padded X", "pool_size")
    h, w = Xp.shape
    cols = nd.im2col(Xp.reshape((1, 1, h, w)), kernel=(p_h, p_w), stride=(s_h, s_w))[0]
    Y = cols.max(axis=0) if mode == "max" else cols.mean(axis=0)
    return Y.reshape(((h - p_h) // s_h + 1, (w - p_w) // s_w + 1))
