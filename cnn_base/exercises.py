"""Small tools the chapter's exercises need (notebook 05), built on :mod:`cnn_base.ops`.

- :func:`corr2d_matrix`: cross-correlation as one matrix multiply, the kernel spread
  into a sparse ``(h' w', h w)`` matrix (the other way round from ``corr2d``'s im2col,
  which spreads the *input* into columns).
- :func:`fit_kernel`: learn a kernel of any shape from an input and a target by
  gradient descent straight through :func:`cnn_base.corr2d` (no layer needed), to ask
  what a kernel learns when its shape or the data change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import mxnet as mx
import numpy as np
from mxnet import autograd, nd

from ._checks import as_int, as_pair, as_positive_float, check_ndarray
from ._types import Size2
from .ops import corr2d

__all__ = ["corr2d_matrix", "KernelFit", "fit_kernel"]


def corr2d_matrix(K: nd.NDArray, input_shape: Size2) -> nd.NDArray:
    """The matrix ``W`` with ``corr2d(X, K).reshape(-1) == nd.dot(W, X.reshape(-1))``.

    D2L §5.1, exercises.

    ``K`` is (k_h, k_w), ``input_shape`` is X's (h, w); ``W`` has shape
    ``(h' * w', h * w)`` with ``h' = h - k_h + 1``, ``w' = w - k_w + 1``. Row
    ``i * w' + j`` holds the kernel's entries at the flat positions of the window
    whose top-left corner is ``X[i, j]``, zeros elsewhere. ``W`` is built as
    ``K`` times a constant 0/1 tensor, so it is differentiable in ``K``.

    >>> X = nd.arange(9).reshape((3, 3))
    >>> K = nd.array([[0, 1], [2, 3]])
    >>> W = corr2d_matrix(K, X.shape)
    >>> W
    <BLANKLINE>
    [[0. 1. 0. 2. 3. 0. 0. 0. 0.]
     [0. 0. 1. 0. 2. 3. 0. 0. 0.]
     [0. 0. 0. 0. 1. 0. 2. 3. 0.]
     [0. 0. 0. 0. 0. 1. 0. 2. 3.]]
    <NDArray 4x9 @cpu(0)>
    >>> nd.dot(W, X.reshape(-1)).reshape((2, 2))
    <BLANKLINE>
    [[19. 25.]
     [37. 43.]]
    <NDArray 2x2 @cpu(0)>
    """
    check_ndarray("K", K, 2, "(k_h, k_w)")
    h, w = as_pair("input_shape", input_shape)
    k_h, k_w = K.shape
    if k_h > h or k_w > w:
        raise ValueError(f"kernel K {(k_h, k_w)} must fit inside the input {(h, w)}: "
                         f"kernel K height and width may not exceed the input's")
    h_out, w_out = h - k_h + 1, w - k_w + 1
    # select[a * k_w + b, i * w_out + j, (i + a) * w + (j + b)] = 1
    select = np.zeros((k_h * k_w, h_out * w_out, h * w), dtype=np.float32)
    i, j = np.meshgrid(np.arange(h_out), np.arange(w_out), indexing="ij")
    rows = (i * w_out + j).ravel()
    for a in range(k_h):
        for b in range(k_w):
            select[a * k_w + b, rows, ((i + a) * w + (j + b)).ravel()] = 1
    select = nd.array(select.reshape((k_h * k_w, -1)), ctx=K.context, dtype=K.dtype)
    return nd.dot(K.reshape((1, k_h * k_w)), select).reshape((h_out * w_out, h * w))


@dataclass
class KernelFit:
    """What :func:`fit_kernel` returns.

    D2L §5.1, exercises.

    ``losses[i]`` is the summed squared error of iteration ``i + 1`` before its
    update; ``kernel_path`` (iters + 1, k_h, k_w) holds the initial kernel and the
    kernel after every update.
    """
    K: nd.NDArray
    losses: List[float] = field(repr=False)
    kernel_path: np.ndarray = field(repr=False)


def fit_kernel(X: nd.NDArray, Y: nd.NDArray, kernel_size: Size2, iters: int = 10,
               lr: float = 0.03, seed: int = 0, init_scale: float = 0.07) -> KernelFit:
    """Learn ``K`` so that ``corr2d(X, K)`` approximates ``Y``: gradient descent on the summed squared error.

    D2L §5.1, exercises.

    The blog learns its (1, 2) edge kernel with a Conv2D layer (see
    :func:`cnn_base.learn_edge_kernel`); here the kernel is a bare NDArray and the
    gradient flows through :func:`cnn_base.corr2d` itself, so any kernel shape can
    be tried on any 2-D data. No bias.

    Parameters
    ----------
    X : NDArray (h, w)
        The input.
    Y : NDArray (h - k_h + 1, w - k_w + 1)
        The target.
    kernel_size : int or (int, int)
        ``(k_h, k_w)``.
    iters : int, default 10
        Number of updates ``K -= lr * grad``.
    lr : float, default 0.03
        Step size.
    seed : int, default 0
        Seeds ``mx.random`` just before ``K`` is drawn.
    init_scale : float, default 0.07
        ``K`` starts uniform in ``[-init_scale, init_scale]``, as Gluon's default initializer.

    Returns
    -------
    KernelFit

    >>> X = nd.array([[1, 1, 0, 0, 0, 1]] * 4)
    >>> fit = fit_kernel(X, corr2d(X, nd.array([[1, -1]])), (1, 2), iters=20)
    >>> np.round(fit.K.asnumpy(), 2)
    array([[ 1., -1.]], dtype=float32)
    >>> fit.losses[-1] < 1e-3 < 1 < fit.losses[0]
    True
    """
    check_ndarray("X", X, 2, "(h, w)")
    check_ndarray("Y", Y, 2, "(h', w')")
    k_h, k_w = as_pair("kernel_size", kernel_size)
    iters = as_int("iters", iters, minimum=0)
    lr = as_positive_float("lr", lr)
    seed = as_int("seed", seed, minimum=0)
    expected = (X.shape[0] - k_h + 1, X.shape[1] - k_w + 1)
    if Y.shape != expected:
        raise ValueError(f"Y must have the shape of corr2d(X, K): {expected} for X {X.shape} "
                         f"and kernel_size {(k_h, k_w)}, got {Y.shape}")

    mx.random.seed(seed)
    K = nd.random.uniform(-init_scale, init_scale, shape=(k_h, k_w), ctx=X.context, dtype=X.dtype)
    K.attach_grad()
    path, losses = [K.asnumpy()], []
    for _ in range(iters):
        with autograd.record():
            l = ((corr2d(X, K) - Y) ** 2).sum()
        l.backward()
        K[:] -= lr * K.grad
        losses.append(float(l.asscalar()))
        path.append(K.asnumpy())
    return KernelFit(K=K.detach(), losses=losses, kernel_path=np.stack(path))
