"""The chapter's corr2d on NCHW or NHWC batches: the im2col reference first, then the fast paths.

``ops.corr2d`` lays every window of a 2-D ``X`` out as a column (im2col) and
multiplies all columns by the kernel read as a row. :func:`_conv2d_im2col` runs the
same two steps on a whole batch: ``F.im2col`` turns ``X`` (N, c_i, h, w) into
(N, c_i * k_h * k_w, h' * w'), one column per window position, with stride, padding
and dilation built in; one matrix multiply with the kernels read as rows
(c_o, c_i * k_h * k_w) then gives every output channel at every position, summed over
the input channels exactly as ``corr2d_multi_in_out`` does. Read it first: every other
path gives its numbers.

The fast paths, each for a measured reason (:mod:`._dispatch` decides which):
a 1x1 conv is the chapter's ``corr2d_multi_in_out_1x1``, one matrix product over the
channels (:func:`_conv2d_pointwise`); with enough channels the rows are gathered
(``take``) straight from the channel-last input instead, which spares the transpose of
im2col's columns (:func:`_conv2d_gathered`, and :func:`_conv2d_channel_last` for an
NHWC batch, which is channel-last already); :func:`conv2d_native` runs the C++ kernel
of :mod:`cnn_base.native`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mxnet import nd
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from .. import native
from ._arrays import _grid, _slice, _padded, _zero_padded
from ._checks import _conv_args
from .._checks import check_choice
from ._dispatch import conv_route, native_conv_applies
from .._types import Array, ArrayModule, Layout, Size2
from ._kernel import _kernel_input, _native_channel_last, _needs_grad

__all__ = ["conv2d", "conv2d_native"]


# --- the chapter's method: im2col, then one matrix multiply -----------------------------------

def _fully_connected(F, rows, weight, bias, c_o, flatten):
    """Every row (one window) times every kernel read as a row."""
    kernels = F.reshape(weight, (0, -1))
    if bias is None:
        return F.FullyConnected(rows, kernels, num_hidden=c_o, no_bias=True, flatten=flatten)
    return F.FullyConnected(rows, kernels, bias, num_hidden=c_o, flatten=flatten)


def _grouped(F, rows, weight, bias, c_o, groups, flatten):
    """``_fully_connected`` per group: group g's part of the rows' last axis meets its kernels.

    The rows' last axis holds the input channels (im2col: channel-major K);
    the outputs of the groups are joined along the output's last axis.
    """
    if groups == 1:
        return _fully_connected(F, rows, weight, bias, c_o, flatten)
    row_parts = F.split(rows, num_outputs=groups, axis=-1)
    weight_parts = F.split(weight, num_outputs=groups, axis=0)
    bias_parts = [None] * groups if bias is None else F.split(bias, num_outputs=groups, axis=0)
    return F.concat(*[_fully_connected(F, row_parts[g], weight_parts[g], bias_parts[g],
                                       c_o // groups, flatten) for g in range(groups)], dim=-1)


def _conv2d_im2col(F, X, weight, bias, k, s, p, d, groups, c_o):
    """The reference: im2col's columns (N, K, h' * w'), turned into rows, times the kernels.

    ``K = c_i * k_h * k_w`` (channel-major); the output's spatial shape comes from
    :func:`~._arrays._grid`, never from the input's size.
    """
    cols = F.im2col(X, kernel=k, stride=s, dilate=d, pad=p)  # (N, K, h' * w')
    rows = F.transpose(cols, axes=(0, 2, 1))                   # (N, h' * w', K)
    Y = _grouped(F, rows, weight, bias, c_o, groups, flatten=False)
    k_eff = tuple(d[a] * (k[a] - 1) + 1 for a in range(2))
    grid = _grid(F, X, k_eff, s, (p[0], p[0], p[1], p[1]))
    # (N, h' * w', c_o) -> (N, h', w', c_o)
    Y = F.reshape_like(Y, grid, lhs_begin=1, lhs_end=2, rhs_begin=2, rhs_end=None)
    return _nchw_output(F, Y)


def _nchw_output(F, Y):
    """(N, h', w', c_o) -> (N, c_o, h', w'): the conv's output, ending with a 4-D transpose.

    The output's gradient may come from a built-in oneDNN op in its blocked
    layout. A transpose is the first op of our backward that meets it: MXNet's
    oneDNN transpose reads a 4-D blocked array correctly. A reshape there
    instead (the output made 4-D from a 3-D transpose) hands its backward
    ``_backward_copy`` the 4-D blocked gradient as a 3-D array, and the
    transpose after it fails to build its oneDNN reorder (MXNetError in a
    hybridized parent; tests/test_mixed_blocks.py, "kernel>builtin").
    """
    return F.transpose(Y, axes=(0, 3, 1, 2))


# --- the fast paths ------------------------------------------------------------------------------

def _conv2d_pointwise(F, X, weight, bias, c_o, groups, layout):
    """A 1x1 conv with stride 1: the chapter's corr2d_multi_in_out_1x1, a fully connected
    layer over the channels of every pixel.

    Channel-last, every pixel is a row of its c_i channels as it stands, so
    one ``FullyConnected`` (flatten=False) gives the NHWC output; NCHW goes
    through one transpose in and one out. No window gathering: the gathered
    route measured about 1.3x slower on 64 -> 64 channels of 32 x 32.
    """
    kernels = F.reshape(weight, (0, -1))                    # (c_o, c_i / groups)
    rows = X if layout == "NHWC" else F.transpose(X, axes=(0, 2, 3, 1))
    Y = _grouped(F, rows, kernels, bias, c_o, groups, flatten=False)   # (N, h, w, c_o)
    return Y if layout == "NHWC" else F.transpose(Y, axes=(0, 3, 1, 2))


def _window_index(F, Xp, k, s, d):
    """Where the cells of every window lie in ``Xp`` (N, c, h_p, w_p), one row per window.

    Returns ``index`` (N * h' * w', k_h * k_w), the flat (n, row, column)
    positions of each window's cells in (i, j) order, and ``grid`` (N, 1, h', w'),
    the positions of the windows' first cells. Both are sliced from
    ``arange_like`` of Xp's first channel, so they follow the input's size;
    float64 keeps positions exact past 2 ** 24.
    """
    probe = F.BlockGrad(_slice(F, Xp, begin=(None, 0, None, None), end=(None, 1, None, None)))
    position = F.contrib.arange_like(F.cast(probe, "float64"))      # (N, 1, h_p, w_p)
    k_eff = tuple(d[a] * (k[a] - 1) + 1 for a in range(2))
    grid = F.slice(position, begin=(None, None, 0, 0),
                   end=(None, None) + tuple(-(k_eff[a] - 1) or None for a in range(2)),
                   step=(1, 1) + tuple(s))
    offsets = F.slice(position, begin=(0, 0, 0, 0), end=(1, 1) + k_eff, step=(1, 1) + tuple(d))
    return F.broadcast_add(F.reshape(grid, (-1, 1)), F.reshape(offsets, (1, -1))), grid


def _gathered_rows(F, X, k, s, p, d):
    """Rows (N * h' * w', k_h * k_w, c_i): every window's cells, each cell's channels last.

    The padded input is turned channel-last once, (N * h_p * w_p, c_i), so that
    every cell is a row; ``take`` copies the k_h * k_w cells of each window and
    its backward adds each copy's gradient back to its cell. This gives the
    rows FullyConnected wants without im2col's (N, K, L) layout and the
    transpose of all K * L values it would need.
    """
    Xp = _zero_padded(F, X, (p[0], p[0], p[1], p[1]))
    index, grid = _window_index(F, Xp, k, s, d)
    cells = F.reshape(F.reshape(F.transpose(Xp, axes=(0, 2, 3, 1)), (-3, 0, 0)), (-3, 0))
    return F.take(cells, index), grid


def _rows_as_grid(F, Y, grid):
    """(N * h' * w', c_o) -> (N, h', w', c_o), the sizes taken from grid (N, 1, h', w')."""
    return F.reshape_like(Y, F.reshape(grid, (0, -3, 0)), lhs_begin=0, lhs_end=1,
                          rhs_begin=0, rhs_end=None)


def _conv2d_gathered(F, X, weight, bias, k, s, p, d, groups, c_o):
    """The reference's numbers from rows gathered out of the channel-last input (no transpose
    of im2col's K * L values)."""
    rows, grid = _gathered_rows(F, X, k, s, p, d)              # (N * L, k_h * k_w, c_i)
    kernels = F.transpose(weight, axes=(0, 2, 3, 1))          # the rows' (i, j, c) order
    Y = _grouped(F, rows, kernels, bias, c_o, groups, flatten=True)   # (N * L, c_o)
    return _nchw_output(F, _rows_as_grid(F, Y, grid))


def _conv2d_channel_last(F, X, weight, bias, k, s, p, d, groups, c_o):
    """conv2d of an NHWC batch X (N, h, w, c_i) with NHWC kernels (c_o, k_h, k_w, c_i / groups).

    The input is already channel-last, so every cell of the padded input is a
    row of its c_i channels as it stands: ``take`` gathers each window's cells
    in (i, j) order, which is the kernels' own (k_h, k_w, c_i) order, and the
    product's (N * h' * w', c_o) rows are the NHWC output as they stand. No
    transpose of the data anywhere, where the NCHW route transposes the input
    in and the output back.
    """
    Xp = _padded(F, X, (p[0], p[0], p[1], p[1]), 0.0, "NHWC")       # (N, h_p, w_p, c_i)
    probe = _slice(F, Xp, begin=(None, None, None, 0), end=(None, None, None, 1),
                   channel_axis=3)
    index, grid = _window_index(F, F.transpose(probe, axes=(0, 3, 1, 2)), k, s, d)
    cells = F.reshape(F.reshape(Xp, (-3, 0, 0)), (-3, 0))          # (N * h_p * w_p, c_i)
    rows = F.take(cells, index)                                     # (N * L, k_h * k_w, c_i)
    Y = _grouped(F, rows, weight, bias, c_o, groups, flatten=True)  # (N * L, c_o)
    return _rows_as_grid(F, Y, grid)


def _conv2d_nhwc_by_im2col(F, X, weight, bias, k, s, p, d, groups, c_o):
    """One channel per group in NHWC: transposed to NCHW, the reference, and back."""
    Y = _conv2d_im2col(F, F.transpose(X, axes=(0, 3, 1, 2)),
                       F.transpose(weight, axes=(0, 3, 1, 2)), bias, k, s, p, d, groups, c_o)
    return F.transpose(Y, axes=(0, 2, 3, 1))


_ROUTES = {"im2col": _conv2d_im2col, "gather": _conv2d_gathered,
           "channel_last": _conv2d_channel_last, "nhwc_by_im2col": _conv2d_nhwc_by_im2col}


# --- the public forms ----------------------------------------------------------------------------

def conv2d(F: ArrayModule, X: Array, weight: Array, bias: Optional[Array] = None,
           kernel_size: Optional[Size2] = None, strides: Size2 = 1, padding: Size2 = 0,
           dilation: Size2 = 1, groups: int = 1, channels: Optional[int] = None,
           in_channels: Optional[int] = None, layout: Layout = "NCHW") -> Array:
    """2-D cross-correlation of an NCHW or NHWC batch: the chapter's im2col + matrix multiply.

    Parameters
    ----------
    F : module
        ``mxnet.nd`` or ``mxnet.sym``.
    X : NDArray or Symbol
        Input of shape (N, c_i, h, w), or (N, h, w, c_i) with ``layout='NHWC'``.
    weight : NDArray or Symbol
        Kernels of shape (c_o, c_i / groups, k_h, k_w), or Gluon's NHWC
        weight (c_o, k_h, k_w, c_i / groups) with ``layout='NHWC'``.
    bias : NDArray or Symbol or None, default None
        Shape (c_o,), added to every position of its output channel.
    kernel_size : int or pair of ints, default None
        (k_h, k_w); read from ``weight`` when it is an NDArray.
    strides, padding, dilation : int or pair of ints, default 1, 0, 1
        As in ``gluon.nn.Conv2D``; ``padding`` is added on each side.
    groups : int, default 1
        Channels split into ``groups`` independent convolutions.
    channels : int, default None
        c_o; read from ``weight`` when it is an NDArray.
    in_channels : int, default None
        c_i; read from ``X`` when it is an NDArray. It only picks the faster
        way to lay out the windows (see Notes); None means "many".
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
        Where the channels are, in ``X``, ``weight`` and the output.

    Returns
    -------
    NDArray or Symbol of shape (N, c_o, h', w') (NHWC: (N, h', w', c_o)) with
    ``h' = floor((h + 2 * p_h - d_h * (k_h - 1) - 1) / s_h) + 1``, ``w'`` alike.

    Notes
    -----
    Every window becomes a row of its c_i * k_h * k_w values, and
    ``F.FullyConnected`` (a plain matrix product, oneDNN's fastest on CPU)
    multiplies all rows by the kernels at once. With groups, each group's part
    of the rows meets its own kernels. The rows are made in one of two ways,
    with the same result: with at least 4 channels per group they are gathered
    from the channel-last input by ``take`` (cells in (i, j) order, channels
    innermost); with fewer, ``F.im2col`` gives the columns
    (N, c_i * k_h * k_w, h' * w') and a transpose turns them into rows.
    An NHWC batch is gathered as it stands, being channel-last already,
    except with one channel per group (then it is transposed to NCHW and back).

    Examples
    --------
    The blog's first figure, as a batch of one image with one channel:

    >>> X = nd.arange(9).reshape((1, 1, 3, 3))
    >>> K = nd.arange(4).reshape((1, 1, 2, 2))
    >>> conv2d(nd, X, K)
    <BLANKLINE>
    [[[[19. 25.]
       [37. 43.]]]]
    <NDArray 1x1x2x2 @cpu(0)>

    The same in NHWC, with the kernel as (c_o, k_h, k_w, c_i):

    >>> conv2d(nd, X.transpose((0, 2, 3, 1)), K.transpose((0, 2, 3, 1)), layout="NHWC")[0, :, :, 0]
    <BLANKLINE>
    [[19. 25.]
     [37. 43.]]
    <NDArray 2x2 @cpu(0)>
    """
    k, s, p, d, c_o, groups = _conv_args("conv2d", X, weight, kernel_size, strides, padding,
                                         dilation, groups, channels, layout)
    if isinstance(X, nd.NDArray):
        in_channels = X.shape[layout.index("C")]
    route = conv_route(k, s, p, groups, in_channels, layout)
    if route == "pointwise":
        return _conv2d_pointwise(F, X, weight, bias, c_o, groups, layout)
    return _ROUTES[route](F, X, weight, bias, k, s, p, d, groups, c_o)


def conv2d_native(F: ArrayModule, X: Array, weight: Array, bias: Optional[Array] = None,
                  kernel_size: Optional[Size2] = None, strides: Size2 = 1,
                  padding: Size2 = 0, dilation: Size2 = 1, groups: int = 1,
                  channels: Optional[int] = None, layout: Layout = "NCHW",
                  algo: str = "auto", grads_written: bool = False, relu: bool = False) -> Array:
    """:func:`conv2d` by the C++ kernel of :mod:`cnn_base.native`: the same results.

    The arguments, rules and output are :func:`conv2d`'s; the input must be
    float32 or float64 on a CPU context. The kernel (``csrc/conv2d.cc``) runs
    the chapter's corr2d loop over the windows in register tiles, and its
    backward computes the input's, kernels' and bias's gradients. It
    overwrites them instead of adding to them, so while autograd records every
    input that may have its gradient added to goes through ``identity`` first, whose
    backward honours ``grad_req='add'`` (:func:`_kernel_input`). With ``layout='NHWC'``
    (Gluon's NHWC weight layout too) see :func:`_native_channel_last`.

    ``algo`` says how the kernel multiplies: ``'auto'`` (its measured rule,
    ``use_gemm`` in ``csrc/conv2d.cc``; depthwise layers of planes up to 112 x 112
    with 8 planes side by side in the vector lanes, ``csrc/conv2d_depthwise.h``),
    ``'tiles'`` (its register tiles over the
    padded input) or ``'gemm'`` (the chapter's im2col and one matrix multiply by the
    BLAS the mxnet wheel ships, ``csrc/conv2d_gemm.h``, without the taps that read
    padding when a tile holds several images' small planes, ``csrc/conv2d_blocks.h``; the
    tiles when no BLAS was found, :func:`cnn_base.native.multiplies_with_blas`) or ``'taps'`` (im2col left
    implicit: for stride 1, one multiply per window cell over the padded planes shifted
    by it, ``use_taps`` in ``csrc/conv2d_gemm.h``; im2col where that does not fit) or
    ``'lanes'`` (float32 on AVX-512, stride 1, a batch of a multiple of 16: the images in the
    vector lanes, ``csrc/conv2d_lanes.h``, which 'auto' takes for output planes of up to 12 x 12;
    'auto''s rule where that does not fit). All give the same numbers to rounding; the tests
    and the fuzzer run each.
    ``grads_written``: the caller knows that ``weight``'s and ``bias``'s gradients, if any,
    are written, never added to (Gluon Parameters whose ``grad_req`` is not 'add', asked at
    this call; NDArrays only): they then skip ``identity`` (:func:`_kernel_input`).
    ``relu``: the output is ``relu(conv)``, as ``F.Activation(conv, act_type='relu')``, in
    the one operator (``relu_in_place`` and ``relu_masked`` in ``csrc/conv2d.cc``: MXNet cannot run an
    Activation in place after our operator, whose backward holds its output).
    An NDArray ``X`` that autograd's recording has not taken in (the data at a network's
    first layer, imperatively) gets no gradient computed: the backward skips dX, as the
    built-in does (:func:`_needs_grad`).

    Examples
    --------
    >>> X = nd.arange(9).reshape((1, 1, 3, 3))
    >>> K = nd.arange(4).reshape((1, 1, 2, 2))
    >>> conv2d_native(nd, X, K) if native.loaded() else conv2d(nd, X, K)
    <BLANKLINE>
    [[[[19. 25.]
       [37. 43.]]]]
    <NDArray 1x1x2x2 @cpu(0)>
    """
    if not native.loaded():
        raise RuntimeError(f"the C++ convolution kernel is not available: {native.status()}")
    k, s, p, d, c_o, groups = _conv_args("conv2d_native", X, weight, kernel_size, strides,
                                         padding, dilation, groups, channels, layout)
    if isinstance(X, nd.NDArray):
        if not native_conv_applies(X):
            raise ValueError(f"the C++ convolution kernel takes float32 or float64 input on a "
                             f"CPU context, got {np.dtype(X.dtype).name} on {X.context}")
    check_choice("algo", algo, ("auto", "tiles", "gemm", "taps", "lanes"))
    settings = dict(kernel=k, stride=s, pad=p, dilate=d, num_filter=c_o, num_group=groups,
                    no_bias=bias is None, algo=algo)
    if relu:
        settings["relu"] = True
    if not _needs_grad(X):
        settings["input_grad"] = False
    op = getattr(F, native.CONV_OP_NAME)
    bias = [] if bias is None else [_kernel_input(F, bias, grads_written)]
    if layout == "NHWC":    # Gluon's NHWC weight (c_o, k_h, k_w, c_i / groups) too
        return _native_channel_last(F, op, X, F.transpose(weight, axes=(0, 3, 1, 2)), *bias,
                                    **settings)
    return op(_kernel_input(F, X), _kernel_input(F, weight, grads_written), *bias, **settings)
