"""The chapter's corr2d and pool2d on NCHW or NHWC batches, written once for NDArray and Symbol.

``ops.corr2d`` lays every window of a 2-D ``X`` out as a column (im2col) and
multiplies all columns by the kernel read as a row. Here the same two steps run
on a whole batch: ``F.im2col`` turns ``X`` (N, c_i, h, w) into
(N, c_i * k_h * k_w, h' * w'), one column per window position, with stride,
padding and dilation built in; one matrix multiply with the kernels read as
rows (c_o, c_i * k_h * k_w) then gives every output channel at every position,
summed over the input channels exactly as ``corr2d_multi_in_out`` does. When
there are enough channels, the same rows are gathered (``take``) straight from
the channel-last input instead, which spares the transpose of im2col's columns.

``ops.pool2d`` reduces each column of im2col with ``max`` or ``mean``. Here each
channel is pooled on its own (blog section 4.3). The p_h * p_w elements of every
window are gathered as p_h * p_w arrays ("taps") of the output's shape, by
im2col or, when windows overlap, by strided slices of the padded input, and
combined: a max by ``where``, tap after tap, so that NaN wins, ties keep the
first cell and padding never counts; an average by addition, divided by the
number of cells Gluon counts. ``pool2d_native`` gives the same results from the C++
kernel of :mod:`cnn_base.native`, which runs pool2d's loop in one pass.

Every function also takes Gluon's ``layout``: 'NCHW' (channels first, the
default) or 'NHWC' (channels last). An NHWC batch is already the channel-last
layout that conv2d gathers its rows from, so its convolution needs no
transpose at all; its pooling slices the height and width axes in place (the
C++ kernel, which pools NCHW planes, gets the batch transposed).
:func:`global_pool2d` pools with the window = the whole plane.

Every function takes ``F`` first (``mxnet.nd`` or ``mxnet.sym``), as a
``HybridBlock.hybrid_forward`` does, so the blocks of :mod:`cnn_base.blocks`
run the same code imperatively, hybridized and exported. None of them calls
``F.Convolution`` or ``F.Pooling``. Output sizes follow
:func:`cnn_base.shapes.output_shape`; the graphs never bake in an input size,
so a hybridized block accepts any height and width, as the built-ins do.
"""
import numpy as np
from mxnet import autograd, nd

from ._checks import as_bool, as_int, as_pair, check_choice, check_ndarray
from . import native
from .ops import POOL_MODES

__all__ = ["LAYOUTS", "conv2d", "conv2d_native", "pool2d_nchw", "pool2d_native", "global_pool2d"]

# The layouts of Gluon's 2-D blocks: channels first or channels last.
LAYOUTS = ("NCHW", "NHWC")

# The largest window, stride, padding or dilation accepted: the C++ kernels'
# attribute limit (kMaxAttr in csrc/pool2d.cc and csrc/conv2d.cc), so that every
# size the blocks accept fits the kernels' 64-bit index arithmetic.
MAX_POOL_ARG = 2 ** 31 - 1
# MXNet's dimensions are 32-bit: an input side plus its padding must fit.
MAX_DIM = 2 ** 32 - 1


def _pair_args(kernel_size, strides, padding, dilation=1, kernel_name="kernel_size"):
    return (as_pair(kernel_name, kernel_size), as_pair("strides", strides),
            as_pair("padding", padding, minimum=0), as_pair("dilation", dilation))


def _slice(F, X, begin, end, step=None, channel_axis=1):
    """``F.slice(X, begin, end, step)``, never a cut of the channels by MXNet's oneDNN slice.

    MXNet 1.9.1 sends a slice whose steps are all 1 to oneDNN, which divides
    by zero (SIGFPE: the process dies) when it cuts the channel axis of an
    array that a built-in oneDNN op (Conv2D, Activation, ...) left in its
    blocked layout at a size that is not a multiple of the block, e.g. our
    one-channel size probes of a built-in conv's output while autograd
    records (tests/test_mixed_blocks.py). Cuts of the other axes measured safe
    in every layout. So a unit-step cut of the channels is made by
    ``slice_axis``, which has no oneDNN path, and the rest by ``slice``.
    """
    if step is None or all(t in (None, 1) for t in step):
        b, e = begin[channel_axis], end[channel_axis]
        if b is not None or e is not None:
            X = F.slice_axis(X, axis=channel_axis, begin=b or 0, end=e)
            begin, end = (tuple(None if a == channel_axis else v for a, v in enumerate(t))
                          for t in (begin, end))
        if all(v is None for v in begin + end):
            return X
    return F.slice(X, begin=begin, end=end, step=step)


def _padded(F, X, pad_width, value, layout="NCHW"):
    """Pad the height and width by ``pad_width`` = (top, bottom, left, right) with ``value``.

    MXNet's ``pad`` leaves the first two axes alone, so an NHWC batch is
    padded as (N, 1, h, w, c) and turned back.
    """
    if not any(pad_width):
        return X
    if layout == "NHWC":
        Xp = F.pad(F.expand_dims(X, axis=1), mode="constant",
                   pad_width=(0, 0, 0, 0) + tuple(pad_width) + (0, 0), constant_value=value)
        return F.reshape(Xp, (0, -3, 0, 0))
    return F.pad(X, mode="constant", pad_width=(0, 0, 0, 0) + tuple(pad_width),
                 constant_value=value)


def _plane(F, X, layout="NCHW"):
    """The first sample's first channel, (1, 1, h, w), without gradient: a size probe."""
    if layout == "NHWC":
        probe = _slice(F, X, begin=(0, None, None, 0), end=(1, None, None, 1), channel_axis=3)
        return F.transpose(F.BlockGrad(probe), axes=(0, 3, 1, 2))
    return F.BlockGrad(_slice(F, X, begin=(0, 0, None, None), end=(1, 1, None, None)))


def _zero_padded(F, X, pad_width, layout="NCHW"):
    """Zero padding; symmetric padding of NCHW goes through im2col with a 1x1 window.

    im2col of a 1x1 window is the zero-padded input itself, laid out flat, and
    MXNet's im2col (forward and backward) is faster than its ``pad`` on CPU.
    """
    top, bottom, left, right = pad_width
    if (top, left) != (bottom, right) or not any(pad_width) or layout == "NHWC":
        return _padded(F, X, pad_width, 0.0, layout)
    flat = F.im2col(X, kernel=(1, 1), pad=(top, left))           # (N, c, h_p * w_p)
    probe = F.BlockGrad(_slice(F, X, begin=(0, 0, None, None), end=(1, 1, None, None)))
    return F.reshape_like(flat, _padded(F, probe, pad_width, 0.0), lhs_begin=2, lhs_end=None,
                          rhs_begin=2, rhs_end=None)


def _grid(F, X, window, strides, pad_width, layout="NCHW"):
    """A (1, 1, h', w') array with the output's spatial shape, for ``reshape_like``.

    In a symbolic graph the input size is unknown, so h' and w' cannot be
    written into a ``reshape``. The strided slice of the padded first channel
    with a negative end has exactly ``floor((h_padded - k) / s) + 1`` rows,
    the output height, whatever the input size. It carries no gradient.
    """
    probe = _padded(F, _plane(F, X, layout), pad_width, 0.0)
    end = tuple(-(k - 1) or None for k in window)
    return F.slice(probe, begin=(None, None, 0, 0), end=(None, None) + end,
                   step=(1, 1) + tuple(strides))


# Below this many input channels per group, conv2d takes the im2col route: the
# gather copies one row of c_i / groups floats per window cell, and shorter rows
# make it slower than im2col with its transpose (measured on CPU, 4 is about even).
_GATHER_MIN_CHANNELS = 4


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


# With one input channel per group, an NHWC conv2d goes through the NCHW route
# (im2col) and transposes: gathering rows of one float each is slower than the
# transposes (measured on CPU: about 1.5x slower at c_i = 1, even at 2, faster from 3).
_NHWC_GATHER_MIN_CHANNELS = 2


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
    # (N * h' * w', c_o) -> (N, h', w', c_o), the sizes taken from grid (N, 1, h', w')
    return F.reshape_like(Y, F.reshape(grid, (0, -3, 0)), lhs_begin=0, lhs_end=1,
                          rhs_begin=0, rhs_end=None)


def _conv_args(name, X, weight, kernel_size, strides, padding, dilation, groups, channels,
               layout):
    """The checked settings of :func:`conv2d` and :func:`conv2d_native`: (k, s, p, d, c_o, groups).

    kernel_size and channels are read from an NDArray ``weight`` when not
    given; an NDArray ``X`` is checked against them (``check_conv2d_input``).
    """
    check_choice("layout", layout, LAYOUTS)
    c_axis = layout.index("C")                  # of X and of the weight alike
    if isinstance(weight, nd.NDArray):
        if kernel_size is None:
            kernel_size = weight.shape[1:3] if layout == "NHWC" else weight.shape[2:]
        channels = weight.shape[0] if channels is None else channels
    if kernel_size is None or channels is None:
        raise TypeError(f"{name} needs kernel_size and channels when weight is a Symbol")
    k, s, p, d = _pair_args(kernel_size, strides, padding, dilation)
    check_size_args(kernel_size=k, strides=s, padding=p, dilation=d)
    c_o, groups = as_int("channels", channels), as_int("groups", groups)
    if isinstance(X, nd.NDArray):
        check_conv2d_input(X, weight.shape[c_axis] * groups if isinstance(weight, nd.NDArray)
                           else 0, groups, k, p, d, layout)
    return k, s, p, d, c_o, groups


def _is_pointwise(k, s, p):
    """A 1x1 window with stride 1 and no padding: every output cell sees one input cell."""
    return k == (1, 1) and s == (1, 1) and p == (0, 0)


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


def conv2d(F, X, weight, bias=None, kernel_size=None, strides=1, padding=0, dilation=1,
           groups=1, channels=None, in_channels=None, layout="NCHW"):
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
    if _is_pointwise(k, s, p):
        return _conv2d_pointwise(F, X, weight, bias, c_o, groups, layout)
    if layout == "NHWC":
        if in_channels is None or in_channels // groups >= _NHWC_GATHER_MIN_CHANNELS:
            return _conv2d_channel_last(F, X, weight, bias, k, s, p, d, groups, c_o)
        Y = conv2d(F, F.transpose(X, axes=(0, 3, 1, 2)), F.transpose(weight, axes=(0, 3, 1, 2)),
                   bias, k, s, p, d, groups, c_o, in_channels)
        return F.transpose(Y, axes=(0, 2, 3, 1))

    if in_channels is None or in_channels // groups >= _GATHER_MIN_CHANNELS:
        rows, grid = _gathered_rows(F, X, k, s, p, d)              # (N * L, k_h * k_w, c_i)
        kernels = F.transpose(weight, axes=(0, 2, 3, 1))          # the rows' (i, j, c) order
        Y = _grouped(F, rows, kernels, bias, c_o, groups, flatten=True)   # (N * L, c_o)
        # (N * h' * w', c_o) -> (N, h', w', c_o), the sizes taken from grid (N, 1, h', w')
        Y = F.reshape_like(Y, F.reshape(grid, (0, -3, 0)), lhs_begin=0, lhs_end=1,
                           rhs_begin=0, rhs_end=None)
    else:
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


# Which layers the blocks convolve with the C++ kernel (conv2d_native) and which
# with the matrix multiply of conv2d (oneDNN's GEMM inside FullyConnected), as
# measured on CPU, forward + backward against Gluon's built-in (README, "Speed"):
# the kernel's register tiles win up to 64 input and output channels per group,
# with any stride (16 -> 32 channels on 64 x 64: 1.0x the built-in, the GEMM
# 2-3x; 64 -> 64 on 32 x 32 with stride 2: 1.4x against 2.7x; depthwise:
# 1.7x against 70-90x) and lose above (256 -> 256 on 14 x 14: 1.6x against
# 1.1x; 128 -> 128 on 16 x 16 with stride 2: 1.8x against 1.2x). Not knowing
# the input's channels (a hybridized parent builds its graph before deferred
# initialization), the output channels decide.
NATIVE_MAX_CHANNELS = 64


def native_conv_fits(in_channels, channels, groups, kernel_size, strides, padding):
    """Whether the C++ kernel is the faster way for this layer (``in_channels`` 0: unknown).

    A 1x1 conv with stride 1 and no padding is the chapter's fully connected
    layer over the channels (:func:`conv2d` makes it one matrix product), and
    anything else follows the measured limit above.
    """
    k, s, p, _ = _pair_args(kernel_size, strides, padding)
    if _is_pointwise(k, s, p):
        return False
    c_i, c_o = in_channels // groups, channels // groups
    return c_o <= NATIVE_MAX_CHANNELS and c_i <= NATIVE_MAX_CHANNELS


def conv2d_native(F, X, weight, bias=None, kernel_size=None, strides=1, padding=0, dilation=1,
                  groups=1, channels=None, layout="NCHW"):
    """:func:`conv2d` by the C++ kernel of :mod:`cnn_base.native`: the same results.

    The arguments, rules and output are :func:`conv2d`'s; the input must be
    float32 or float64 on a CPU context. The kernel (``csrc/conv2d.cc``) runs
    the chapter's corr2d loop over the windows in register tiles, and its
    backward computes the input's, kernels' and bias's gradients. It
    overwrites them instead of adding to them, so while autograd records every
    input goes through ``identity`` first, whose backward honours
    ``grad_req='add'`` (:func:`_kernel_input`). With ``layout='NHWC'`` (Gluon's
    NHWC weight layout too) see :func:`_native_channel_last`.

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
    settings = dict(kernel=k, stride=s, pad=p, dilate=d, num_filter=c_o, num_group=groups,
                    no_bias=bias is None)
    op = getattr(F, native.CONV_OP_NAME)
    bias = [] if bias is None else [_kernel_input(F, bias)]
    if layout == "NHWC":    # Gluon's NHWC weight (c_o, k_h, k_w, c_i / groups) too
        return _native_channel_last(F, op, X, F.transpose(weight, axes=(0, 3, 1, 2)), *bias,
                                    **settings)
    return op(_kernel_input(F, X), _kernel_input(F, weight), *bias, **settings)


def native_conv_applies(X):
    """Whether the C++ kernel can convolve the NDArray ``X``: float32/64 on a CPU context."""
    return X.context.device_type == "cpu" and np.dtype(X.dtype) in (np.float32, np.float64)


def _pool_args(X, pool_size, strides, padding, mode, ceil_mode, count_include_pad,
               layout="NCHW"):
    """Checked pooling settings (k, s, p as pairs; the two flags as bools); checks an NDArray X."""
    k, s, p, _ = _pair_args(pool_size, pool_size if strides is None else strides, padding,
                            kernel_name="pool_size")
    check_choice("mode", mode, POOL_MODES)
    ceil_mode = as_bool("ceil_mode", ceil_mode)
    count_include_pad = as_bool("count_include_pad", count_include_pad)
    check_pool_args(k, s, p)
    check_choice("layout", layout, LAYOUTS)
    if isinstance(X, nd.NDArray):
        check_pool2d_input(X, k, p, layout)
    return k, s, p, ceil_mode, count_include_pad


def pool2d_nchw(F, X, pool_size, strides=None, padding=0, mode="max", ceil_mode=False,
                count_include_pad=True, layout="NCHW"):
    """Max or average pooling of every channel of an NCHW batch: the chapter's pool2d, batched.

    Parameters
    ----------
    F : module
        ``mxnet.nd`` or ``mxnet.sym``.
    X : NDArray or Symbol
        Input of shape (N, c, h, w), or (N, h, w, c) with ``layout='NHWC'``.
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


def _kernel_input(F, A):
    """``A`` as an input of one of our C++ operators, whose backward overwrites gradients.

    While autograd records, or inside a graph (where MXNet runs it in place), that
    is ``identity(A)``: its backward honours ``grad_req='add'``. An imperative call
    that records nothing has no backward, so ``A`` itself goes in. What it buys:
    inference does not copy the whole input on every call (a 0.5 GiB float16
    plane cost 0.5 GiB more than Gluon's pooling; issue 13).
    """
    if isinstance(A, nd.NDArray) and not autograd.is_recording():
        return A
    return F.identity(A)


def pool2d_native(F, X, pool_size, strides=None, padding=0, mode="max", ceil_mode=False,
                  count_include_pad=True, layout="NCHW"):
    """:func:`pool2d_nchw` by the C++ kernel of :mod:`cnn_base.native`: the same results, one pass.

    The arguments, rules and output are :func:`pool2d_nchw`'s; the input must
    be float16, float32 or float64 on a CPU context (float16 is computed in
    float32). The kernel's backward overwrites
    its output instead of adding to it, so while autograd records the input
    first goes through ``identity``, whose backward honours ``grad_req='add'``
    (:func:`_kernel_input`). An NHWC batch is averaged
    by the kernel's channel-last loop (``layout='NHWC'``, the same bits as
    NCHW); for max pooling it is transposed to NCHW and the output back (see
    :func:`_native_channel_last`).
    """
    if not native.loaded():
        raise RuntimeError(f"the C++ pooling kernel is not available: {native.status()}")
    k, s, p, ceil_mode, count_include_pad = _pool_args(X, pool_size, strides, padding, mode,
                                                       ceil_mode, count_include_pad, layout)
    if isinstance(X, nd.NDArray) and not native_applies(X):
        raise ValueError(f"the C++ pooling kernel takes float16, float32 or float64 input on a "
                         f"CPU context, got {np.dtype(X.dtype).name} on {X.context}")
    op = getattr(F, native.OP_NAME)
    if layout == "NHWC" and mode == "avg":
        return op(_kernel_input(F, X), kernel=k, stride=s, pad=p, mode=mode,
                  ceil_mode=ceil_mode, count_include_pad=count_include_pad, layout="NHWC")
    if layout == "NHWC":
        return _native_channel_last(F, op, X, kernel=k, stride=s, pad=p, mode=mode,
                                    ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    return op(_kernel_input(F, X), kernel=k, stride=s, pad=p, mode=mode, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad)


def _native_channel_last(F, op, X, *inputs, **settings):
    """An NCHW kernel ``op`` on an NHWC batch: ``X`` transposed in, ``op`` run, the output back.

    ``inputs``: the operator's other inputs (the conv's weight, already
    transposed, and bias). For max pooling and for Conv2D. The transposes add a
    pass over the input and one over the output, forward and backward; that is
    still faster than the MXNet-operator pooling of NHWC and than Gluon's NHWC
    max pooling, and the channel-last gather of :func:`conv2d` measured
    1.5-20x slower than that on the layers the conv kernel takes (depthwise
    56 x 56: 518 ms against 28 ms; README, "Speed"). A transpose's backward
    honours ``grad_req='add'``, so ``X`` needs no ``identity``.
    """
    Y = op(F.transpose(X, axes=(0, 3, 1, 2)), *inputs, **settings)
    return F.transpose(Y, axes=(0, 2, 3, 1))


def global_pool2d(F, X, mode="max", layout="NCHW", by_product=None):
    """Pooling with the window = the whole plane: one max or mean per sample and channel.

    Parameters
    ----------
    F : module
        ``mxnet.nd`` or ``mxnet.sym``.
    X : NDArray or Symbol
        Input of shape (N, c, h, w), or (N, h, w, c) with ``layout='NHWC'``.
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


def native_applies(X):
    """Whether the C++ kernel can pool the NDArray ``X``: float16/32/64 on a CPU context."""
    return X.context.device_type == "cpu" and np.dtype(X.dtype) in (np.float16, np.float32,
                                                                     np.float64)


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


def lowest(dtype):
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


def check_pool_padding(pool_size, padding):
    """Gluon's rule: padding must be smaller than the window on each axis."""
    if padding[0] >= pool_size[0] or padding[1] >= pool_size[1]:
        raise ValueError(f"padding {tuple(padding)} must be smaller than pool_size "
                         f"{tuple(pool_size)} on each axis")


def check_size_args(**pairs):
    """Sizes (pairs of ints, by name) the C++ kernels can hold: each at most ``MAX_POOL_ARG``.

    >>> check_size_args(kernel_size=(3, 3), dilation=(2 ** 62, 1))
    Traceback (most recent call last):
    ...
    ValueError: dilation must be at most 2147483647 (2**31 - 1), got (4611686018427387904, 1)
    """
    for name, pair in pairs.items():
        if max(pair) > MAX_POOL_ARG:
            raise ValueError(f"{name} must be at most {MAX_POOL_ARG} (2**31 - 1), "
                             f"got {tuple(pair)}")


def check_pool_args(pool_size, strides, padding):
    """Pooling settings (pairs of ints) the C++ kernel can hold, padding smaller than the window.

    Each must be at most ``MAX_POOL_ARG`` (2**31 - 1), the kernel's own limit.

    >>> check_pool_args((2, 2), (2 ** 64 + 1, 1), (0, 0))
    Traceback (most recent call last):
    ...
    ValueError: strides must be at most 2147483647 (2**31 - 1), got (18446744073709551617, 1)
    """
    check_size_args(pool_size=pool_size, strides=strides, padding=padding)
    check_pool_padding(pool_size, padding)


# How each layout names the axes of a 4-D input, for the messages of the checks.
_AXES = {"NCHW": "(batch, channels, height, width)", "NHWC": "(batch, height, width, channels)"}


def _check_fits(X, window, padding, dilation, window_name, layout="NCHW"):
    h, w = (X.shape[1:3] if layout == "NHWC" else X.shape[2:])
    k_eff = tuple(dilation[a] * (window[a] - 1) + 1 for a in range(2))
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    if padded[0] < k_eff[0] or padded[1] < k_eff[1]:
        raise ValueError(f"input of height and width {(h, w)} is too small for the "
                         f"{window_name} {k_eff}: after padding {tuple(padding)} it is "
                         f"{padded}, and each side must be at least the {window_name}'s")


def check_conv2d_input(X, in_channels, groups, kernel_size, padding, dilation, layout="NCHW"):
    """Call-time checks of a conv input, with messages that name the problem.

    ``in_channels`` 0 means not yet known (deferred initialization); then the
    channel count only has to be divisible by ``groups``. ``layout`` says
    which axis holds the channels.
    """
    check_ndarray("input", X, 4, _AXES[layout])
    c = X.shape[layout.index("C")]
    if in_channels and c != in_channels:
        raise ValueError(f"input has {c} channels but the layer expects in_channels="
                         f"{in_channels} (input shape {X.shape}); the weight was created "
                         f"for {in_channels} input channels")
    if c % groups:
        raise ValueError(f"input has {c} channels, which groups={groups} does not divide "
                         f"evenly (input shape {X.shape})")
    _check_fits(X, kernel_size, padding, dilation, "dilated kernel"
                if max(dilation) > 1 else "kernel", layout)


def check_pool2d_input(X, pool_size, padding, layout="NCHW"):
    """Call-time checks of a pooling input."""
    check_ndarray("input", X, 4, _AXES[layout])
    h, w = (X.shape[1:3] if layout == "NHWC" else X.shape[2:])
    if max(h + 2 * padding[0], w + 2 * padding[1]) > MAX_DIM:
        raise ValueError(f"input of height and width {(h, w)} with padding {tuple(padding)} "
                         f"on each side is larger than MXNet's largest dimension {MAX_DIM}")
    _check_fits(X, pool_size, padding, (1, 1), "pooling window", layout)
