"""The chapter's pool2d on NCHW or NHWC batches: every channel pooled on its own (blog §5.4).

``ops.pool2d`` reduces each column of im2col with ``max`` or ``mean``. Here the
p_h * p_w elements of every window are gathered as p_h * p_w arrays ("taps") of the
output's shape, by im2col or, when windows overlap, by strided slices of the padded
input (:func:`_window_taps`), and combined: a max by ``where``, tap after tap, so that
NaN wins, ties keep the first cell and padding never counts (:func:`_max_of_taps`); an
average by addition, divided by the number of cells Gluon counts (:func:`_cell_counts`).
An NHWC batch is sliced on its height and width axes in place. :func:`pool2d_native`
gives the same results from the C++ kernel of :mod:`cnn_base.native`, which runs
pool2d's loop in one pass.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mxnet import autograd, nd
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from .. import native
from ._arrays import _grid, _padded, _plane, _zero_padded
from ._checks import F_AND_X_DOC, _pool_args, with_parts
from ._dispatch import native_pool_applies
from .._types import Array, ArrayModule, DType, Layout, PoolMode, Size2
from ._kernel import _kernel_input, _native_channel_last

__all__ = ["pool2d_nchw", "pool2d_native", "global_pool2d_native", "lowest"]


def pool2d_nchw(F: ArrayModule, X: Array, pool_size: Size2, strides: Optional[Size2] = None,
                padding: Size2 = 0, mode: PoolMode = "max", ceil_mode: bool = False,
                count_include_pad: bool = True, layout: Layout = "NCHW") -> Array:
    """Max or average pooling of every channel of an NCHW batch: the chapter's pool2d, batched.

    Parameters
    ----------
    {F_AND_X}
    pool_size : int or pair of ints
        (p_h, p_w), the window.
    strides : int or pair of ints or None, default None
        None means the window size, as in Gluon.
    padding : int or pair of ints, default 0
        Added on each side; must be smaller than the window.
    mode : {'max', 'avg'}, default 'max'
    ceil_mode : bool, default False
        Round the output size up: the last window may run past the padded edge.
    count_include_pad : bool, default True
        Average pooling only: whether padded cells count in the divisor.
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
        Where the channels are, in ``X`` and the output. The name
        ``pool2d_nchw`` stays for NHWC too: it is the MXNet-operator pooling.

    Returns
    -------
    NDArray or Symbol of shape (N, c, h', w') (NHWC: (N, h', w', c)) with
    ``h' = floor((h + 2 * pad_h - p_h) / s_h) + 1`` (``ceil`` with ``ceil_mode``).

    Notes
    -----
    Gluon's divisor for average pooling counts the window's cells that lie
    inside the padded input (``count_include_pad=True``) or inside the input
    itself (``False``); cells past the padded edge (``ceil_mode``) never count,
    and a window without any counted cell gives 0. A max is over the window's
    input cells only; a window holding only padding gives the dtype's lowest
    finite value, as Gluon's does. A window holding NaN gives NaN and its
    gradient goes to the first NaN in row-major order (NumPy's and PyTorch's
    rule; Gluon's built-in skips NaN); otherwise the gradient goes to the first
    maximal cell, whose value the max is (a -0.0/+0.0 tie keeps the first).

    Examples
    --------
    The blog's 4x4 input, window 3, padding 1, stride 2:

    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> pool2d_nchw(nd, X, 3, strides=2, padding=1)
    <BLANKLINE>
    [[[[ 5.  7.]
       [13. 15.]]]]
    <NDArray 1x1x2x2 @cpu(0)>
    """
    k, s, p, ceil_mode, count_include_pad = _pool_args(X, pool_size, strides, padding, mode,
                                                       ceil_mode, count_include_pad, layout)

    # ceil_mode: s - 1 more rows/columns at the far side make floor() count the
    # windows that ceil() would; those cells never count in an average.
    extra = (s[0] - 1, s[1] - 1) if ceil_mode else (0, 0)
    pad_width = (p[0], p[0] + extra[0], p[1], p[1] + extra[1])
    grid = _grid(F, X, k, s, pad_width, layout)
    if mode == "max":
        return _max_of_taps(F, X, k, s, pad_width, grid, layout)
    # Each cell is divided by p_h * p_w before the sum, so that no partial sum of
    # finite values can overflow (float16's 65504 * 4 would: the kernel sums
    # float16 in float32).
    cells = k[0] * k[1]
    taps = _window_taps(F, _zero_padded(F, X * (1.0 / cells), pad_width, layout), k, s, grid,
                        layout)
    Y = F.add_n(*taps) if len(taps) > 1 else taps[0]
    if not any(extra) and (count_include_pad or not any(p)):
        return Y                      # every window holds exactly p_h * p_w counted cells
    counts = _cell_counts(F, X, k, s, p, extra, count_include_pad, grid, layout)
    return F.broadcast_mul(Y, cells / counts)


pool2d_nchw.__doc__ = with_parts(pool2d_nchw.__doc__, F_AND_X=F_AND_X_DOC)


def _window_taps(F, Xp, k, s, grid, layout="NCHW"):
    """The p_h * p_w arrays (N, c, h', w') holding each window's element (i, j).

    Windows that overlap (a side longer than its stride) are read in place with
    one strided slice per element: im2col would copy the shared cells several
    times. Otherwise im2col lays each channel's windows out as columns, as in
    ``ops.pool2d``, and its rows are split apart. Either way the sizes come from
    negative slice ends and ``reshape_like``, never from the input's size.
    NHWC batches, (N, h, w, c), are always sliced, on their axes 1 and 2.
    """
    if layout == "NHWC":
        return [F.slice(Xp, begin=(None, i, j, None),
                        end=(None, -(k[0] - 1 - i) or None, -(k[1] - 1 - j) or None, None),
                        step=(1,) + tuple(s) + (1,))
                for i in range(k[0]) for j in range(k[1])]
    if k[0] > s[0] or k[1] > s[1]:
        return [F.slice(Xp, begin=(None, None, i, j),
                        end=(None, None, -(k[0] - 1 - i) or None, -(k[1] - 1 - j) or None),
                        step=(1, 1) + tuple(s))
                for i in range(k[0]) for j in range(k[1])]
    n_taps = k[0] * k[1]
    cols = F.im2col(Xp, kernel=k, stride=s)                    # (N, c * p_h * p_w, h' * w')
    cols = F.reshape_like(F.reshape(cols, (0, -4, -1, n_taps, -2)), grid,
                          lhs_begin=3, lhs_end=None, rhs_begin=2, rhs_end=None)
    if n_taps == 1:                                            # (N, c, 1, h', w')
        return [F.reshape(cols, (0, 0, -3, -2))]
    return list(F.split(cols, num_outputs=n_taps, axis=2, squeeze_axis=True))


def _max_of_taps(F, X, k, s, pad_width, grid, layout="NCHW"):
    """Max pooling by the kernel's rules, from the window's taps in row-major order.

    Each tap replaces the running max Y only when it is larger, or NaN where Y
    is not: so a window holding NaN gives NaN, ties keep the earlier cell
    (-0.0 before +0.0 keeps -0.0), and ``where`` sends the gradient to exactly
    that first cell. (``F.maximum`` would lose the gradient at NaN, give +0.0
    on a signed-zero tie, and let padding beat -inf.) Padding cells take no
    part: a tap of padding never replaces Y, and a Y that is still padding is
    always replaced; a window with no input cell gives the dtype's lowest
    value, as Gluon's. The padding mask is worked out on one NCHW plane and,
    for NHWC, turned to (1, h', w', 1) so that it broadcasts over the batch.
    """
    padded = any(pad_width)
    taps = _window_taps(F, _padded(F, X, pad_width, 0.0, layout), k, s, grid, layout)
    if padded:
        # 1 where a tap is an input cell, per window: (1, 1, h', w') each
        probe = _plane(F, X, layout)
        inside = _window_taps(F, _padded(F, F.ones_like(probe), pad_width, 0.0), k, s, grid)
        if layout == "NHWC":
            inside = [F.transpose(t, axes=(0, 2, 3, 1)) for t in inside]
        Y_inside = inside[0]
    Y = taps[0]
    for t in range(1, len(taps)):
        keep = (Y >= taps[t]) + (Y != Y)
        if padded:
            keep = F.broadcast_add(F.broadcast_mul(keep, Y_inside), 1.0 - inside[t])
            Y_inside = F.maximum(Y_inside, inside[t])
        Y = F.where(keep, Y, taps[t])
    if padded:
        Y = F.where(F.broadcast_like(Y_inside, Y), Y,
                    F.broadcast_like(_lowest_like(F, Y_inside), Y))
    return Y


def lowest(dtype: DType) -> float:
    """The lowest finite value of a float dtype: what a max window without input cells gives.

    >>> lowest('float16'), lowest(np.float64) == -np.finfo(np.float64).max
    (-65504.0, True)
    """
    return float(np.finfo(np.dtype(dtype)).min)


def _lowest_like(F, like):
    """An array like ``like`` (a float array) filled with its dtype's lowest finite value.

    In a symbolic graph the dtype is not known when the graph is written, and
    MXNet's legacy operators have no "lowest of this dtype"; so the dtype is
    told apart by arithmetic in it: only float64 sees 1 + 1e-10 as larger than
    1, and only float16 overflows 65504 * 2. MXNet reads scalars near 1e308
    inexactly, so float64's -(2 - 2**-52) * 2**1023 is built from exact powers
    of two.
    """
    one = F.ones_like(like)
    is_float64 = (one + 1e-10) != one
    is_float16 = (one * 131008.0) == (one * 262016.0)         # both inf only in float16
    lowest64 = one * -1.9999999999999998                       # -(2 - 2**-52)
    for _ in range(10):
        lowest64 = lowest64 * 2.0 ** 100
    lowest64 = lowest64 * 2.0 ** 23
    return F.where(is_float64, lowest64,
                   F.where(is_float16, one * lowest(np.float16), one * lowest(np.float32)))


def _cell_counts(F, X, k, s, p, extra, count_include_pad, grid, layout="NCHW"):
    """Gluon's divisor of every window, (1, 1, h', w'): its cells that count, at least 1.

    A mask of ones (1 where a cell counts) is summed over each window, exactly
    as the input is. For NHWC the counts come as (1, h', w', 1).
    """
    probe = _plane(F, X, layout)
    mask = _padded(F, F.ones_like(probe), (p[0], p[0], p[1], p[1]),
                   1.0 if count_include_pad else 0.0)
    mask = _padded(F, mask, (0, extra[0], 0, extra[1]), 0.0)
    counts = F.sum(F.im2col(mask, kernel=k, stride=s), axis=1, keepdims=True)   # (1, 1, L)
    counts = F.reshape_like(F.maximum(counts, 1.0), grid, lhs_begin=2, lhs_end=None,
                            rhs_begin=2, rhs_end=None)
    return F.transpose(counts, axes=(0, 2, 3, 1)) if layout == "NHWC" else counts


def pool2d_native(F: ArrayModule, X: Array, pool_size: Size2,
                  strides: Optional[Size2] = None, padding: Size2 = 0,
                  mode: PoolMode = "max", ceil_mode: bool = False,
                  count_include_pad: bool = True, layout: Layout = "NCHW") -> Array:
    """:func:`pool2d_nchw` by the C++ kernel of :mod:`cnn_base.native`: the same results, one pass.

    The arguments, rules and output are :func:`pool2d_nchw`'s; the input must
    be float16, float32 or float64 on a CPU context (float16 is computed in
    float32). The kernel's backward overwrites
    its output instead of adding to it, so while autograd records the input
    first goes through ``identity``, whose backward honours ``grad_req='add'``
    (:func:`_kernel_input`). An NHWC batch is averaged
    by the kernel's channel-last loop (``layout='NHWC'``, the same bits as
    NCHW); for max pooling it is transposed to NCHW and the output back (see
    :func:`_native_channel_last`). Max pooling keeps each window's argmax for the
    backward (:func:`_keeps_argmax`).
    """
    _check_kernel_ready()
    k, s, p, ceil_mode, count_include_pad = _pool_args(X, pool_size, strides, padding, mode,
                                                       ceil_mode, count_include_pad, layout)
    _check_kernel_takes(X)
    return _pool_kernel(F, X, mode, layout, kernel=k, stride=s, pad=p, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad)


def global_pool2d_native(F: ArrayModule, X: Array, mode: PoolMode = "max",
                         layout: Layout = "NCHW") -> Array:
    """:func:`global_pool2d` by the C++ kernel: the window is the whole plane, one call.

    The kernel reads the plane's size from the input at each call (``global_pool=True``), so
    a graph holds no size, as with :func:`global_pool2d`, and any input size passes through
    it; the rules are :func:`pool2d_native`'s (a plane holding NaN gives NaN, the gradient
    goes to the first NaN or else the first largest cell). What it buys, for the max: one
    operator where :func:`global_pool2d`'s argmax + pick took 3-6x Gluon's time (static
    graphs after a ReLU, forward + backward, 3 x 3 to 7 x 7 planes of 248-1280 channels; the
    kernel 0.6-1.0x). The mean by :func:`global_pool2d`'s matrix product was as fast or
    faster, so :class:`cnn_base.GlobalAvgPool2D` keeps that.
    """
    _check_kernel_ready()
    _pool_args(X, 1, None, 0, mode, False, True, layout)      # mode, layout, and X's shape
    _check_kernel_takes(X)
    return _pool_kernel(F, X, mode, layout, global_pool=True)


def _check_kernel_ready():
    """RuntimeError unless the C++ pooling kernel is loaded, saying why not."""
    if not native.loaded():
        raise RuntimeError(f"the C++ pooling kernel is not available: {native.status()}")


def _check_kernel_takes(X):
    """ValueError for an NDArray ``X`` the kernel cannot pool (:func:`native_pool_applies`)."""
    if isinstance(X, nd.NDArray) and not native_pool_applies(X):
        raise ValueError(f"the C++ pooling kernel takes float16, float32 or float64 input on a "
                         f"CPU context, got {np.dtype(X.dtype).name} on {X.context}")


def _pool_kernel(F, X, mode, layout, **settings):
    """The C++ operator on ``X`` with ``settings``: an NHWC average by its channel-last loop,
    an NHWC max through NCHW (:func:`_native_channel_last`); a max keeps each window's argmax
    when it may be trained (:func:`_keeps_argmax`)."""
    op = getattr(F, native.OP_NAME)
    if layout == "NHWC" and mode == "avg":
        return op(_kernel_input(F, X), mode=mode, layout="NHWC", **settings)
    if _keeps_argmax(X, mode):
        op = _first_output(op, argmax=True)
    if layout == "NHWC":
        return _native_channel_last(F, op, X, mode=mode, **settings)
    return op(_kernel_input(F, X), mode=mode, **settings)


def _keeps_argmax(X, mode):
    """Whether the kernel is to keep each window's argmax (``argmax=True``, a second, int32
    output): for max pooling that autograd records, or in a graph (which may be trained).

    What it buys: the backward sends dY to the kept cells instead of finding each window's
    maximum again in X (docs/engineering/speed.md, round 5); in inference it is left out.
    """
    return mode == "max" and (not isinstance(X, nd.NDArray) or autograd.is_recording())


def _first_output(op, **settings):
    """``op`` with ``settings`` added, giving only its first output."""
    return lambda *inputs, **kwargs: op(*inputs, **settings, **kwargs)[0]
