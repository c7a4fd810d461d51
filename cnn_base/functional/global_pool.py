"""Global pooling: the window = the whole plane, so that a graph holds no input size."""
from __future__ import annotations

from typing import Optional

import numpy as np
from mxnet import nd
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from ..ops import POOL_MODES
from .._checks import check_choice
from .._types import Array, ArrayModule, Layout, PoolMode
from ._arrays import _plane
from ._checks import F_AND_X_DOC, LAYOUTS, check_pool2d_input, with_parts

__all__ = ["global_pool2d"]


def global_pool2d(F: ArrayModule, X: Array, mode: PoolMode = "max", layout: Layout = "NCHW",
                  by_product: Optional[bool] = None) -> Array:
    """Pooling with the window = the whole plane: one max or mean per sample and channel.

    Parameters
    ----------
    {F_AND_X}
    mode : {'max', 'avg'}, default 'max'
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
    by_product : bool or None, default None
        Average pooling: take every plane's mean by a matrix product (fast;
        float32 and float64 only on CPU) or by sum and divide (any dtype).
        None means the product, except for float16 NDArray input.

    Returns
    -------
    NDArray or Symbol of shape (N, c, 1, 1) (NHWC: (N, 1, 1, c)), as Gluon's
    global pooling.

    Notes
    -----
    This is :func:`pool2d_nchw` with ``pool_size`` = (h, w), written so
    that the window needs no size. A symbolic graph does not know h and w,
    and pool2d's p_h * p_w taps (or the C++ kernel's window attribute) would
    bake one size into it; with the window covering the plane there is
    exactly one window, so its max or mean is one reduction over the plane,
    which any input size passes through (the mean as a matrix product, see
    ``_plane_mean``). Max pooling follows NumPy's and PyTorch's rule: a plane
    holding NaN gives NaN, with the gradient to its first NaN, any other plane
    its largest value, with the gradient to the first largest cell in
    row-major order (``argmax`` + ``pick``; ``F.max``'s backward would give it
    to every tie). Gluon's global max pooling skips NaN instead. ``argmax``
    returns float32 positions, exact for planes of up to 2 ** 24 cells.

    Examples
    --------
    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> global_pool2d(nd, nd.concat(X, X + 1, dim=1), "max").reshape((-1,))
    <BLANKLINE>
    [15. 16.]
    <NDArray 2 @cpu(0)>
    >>> global_pool2d(nd, X.transpose((0, 2, 3, 1)), "avg", layout="NHWC").shape
    (1, 1, 1, 1)
    """
    check_choice("mode", mode, POOL_MODES)
    check_choice("layout", layout, LAYOUTS)
    if isinstance(X, nd.NDArray):
        check_pool2d_input(X, (1, 1), (0, 0), layout)
    if mode == "avg":
        if by_product is None:
            by_product = not isinstance(X, nd.NDArray) or np.dtype(X.dtype) != np.float16
        return (_plane_mean if by_product else _plane_mean_by_sum)(F, X, layout)
    # the plane as one axis: (N, h * w, c) or (N, c, h * w)
    axis = 1 if layout == "NHWC" else 2
    cells = F.reshape(X, (0, -3, 0) if layout == "NHWC" else (0, 0, -3))
    # argmax is the first largest cell, but NaN must win: where a plane holds
    # NaN, take argmax of the NaN mask (its first NaN) instead
    is_nan = F.BlockGrad(cells != cells)
    first_nan = F.argmax(is_nan, axis=axis)
    has_nan = F.pick(is_nan, first_nan, axis=axis)
    first_max = F.argmax(F.BlockGrad(cells), axis=axis)
    Y = F.pick(cells, F.where(has_nan, first_nan, first_max), axis=axis, keepdims=True)
    return F.expand_dims(Y, axis=axis)


global_pool2d.__doc__ = with_parts(global_pool2d.__doc__, F_AND_X=F_AND_X_DOC)


def _plane_mean(F, X, layout):
    """Every plane's mean as a matrix product: its h * w cells times a row of 1 / (h * w).

    The chapter's im2col + matrix multiply with the plane as the one window.
    What it buys (measured on CPU, forward + backward): MXNet's ``sum``/``mean``
    over two axes is 2-5x slower than Gluon's global pooling; the product is
    about as fast (NHWC) or faster (NCHW). It also sidesteps ``F.mean``,
    whose backward divides what is already in the gradient by h * w again
    under ``grad_req='add'`` (mxnet 1.9.1). MXNet's CPU matrix products take
    float32 and float64 only; see :func:`_plane_mean_by_sum`.
    """
    if layout == "NHWC":
        cells = F.reshape(X, (0, -3, 0))                                    # (N, h * w, c)
        probe = F.BlockGrad(F.slice_axis(cells, axis=2, begin=0, end=1))   # (N, h * w, 1)
        ones = F.ones_like(F.reshape(probe, (0, 1, -1)))                   # (N, 1, h * w)
        row = F.broadcast_div(ones, F.sum(ones, axis=2, keepdims=True))
        return F.expand_dims(F.batch_dot(row, cells), axis=1)              # (N, 1, 1, c)
    cells = F.reshape(X, (-3, -3))                                          # (N * c, h * w)
    ones = F.ones_like(F.BlockGrad(F.slice_axis(cells, axis=0, begin=0, end=1)))   # (1, h * w)
    row = F.broadcast_div(ones, F.sum(ones))
    Y = F.FullyConnected(cells, row, num_hidden=1, no_bias=True)            # (N * c, 1)
    Y = F.reshape_like(Y, X, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)   # (N, c, 1)
    return F.expand_dims(Y, axis=3)


def _plane_mean_by_sum(F, X, layout):
    """Every plane's mean as its sum / (h * w): any dtype (float16 too), slower than the product."""
    plane_axes = (1, 2) if layout == "NHWC" else (2, 3)
    cells = F.sum(F.ones_like(_plane(F, X, layout)), axis=(2, 3), keepdims=True)
    return F.broadcast_div(F.sum(X, axis=plane_axes, keepdims=True), cells)
