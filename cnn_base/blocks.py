"""Gluon blocks built on the chapter's own operations: drop-in peers of nn.Conv2D and the pools.

:class:`Conv2D` computes its cross-correlation with the C++ conv kernel of :mod:`cnn_base.native`
on CPU layers it fits (LeNet's among them), else with :func:`cnn_base.functional.conv2d`
(im2col + matrix multiply). :class:`MaxPool2D` and :class:`AvgPool2D` pool with
the C++ kernel of :mod:`cnn_base.native` (the chapter's pool2d loop, one pass
over the data) on floating-point CPU input when it is built, and otherwise
with :func:`cnn_base.functional.pool2d_nchw` (MXNet operators), which gives
the same numbers. None of them calls ``F.Convolution`` or ``F.Pooling``.
Constructors, parameter names and shapes are Gluon's, so ``save_parameters``
files move between these blocks and ``gluon.nn``'s in both directions, and
either kind composes into ``nn.HybridSequential`` models, hybridizes and exports.
:class:`GlobalMaxPool2D` and :class:`GlobalAvgPool2D` are :class:`Pool2D` with
the window = the whole plane.

Every block takes Gluon's 2-D layouts, 'NCHW' (the default) and 'NHWC'
(channels last; Conv2D's weight is then Gluon's (channels, k_h, k_w,
in_channels / groups)), and refuses any other. Arguments are checked when a
block is built (``ValueError``/``TypeError`` naming the argument and the
value), inputs when it is called (a message that names the problem instead
of MXNet's shape-inference dump).
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator, Optional, Union

import numpy as np
from mxnet import nd, sym
from mxnet.gluon import HybridBlock, Parameter, nn
from mxnet.initializer import Initializer
from mxnet.ndarray import NDArray
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from ._checks import as_bool, as_int, as_pair, check_choice, check_divides
from ._choices import ACTIVATIONS
from ._mxnet_private import (has_hooks, is_hybridized, is_relu_activation, rebuild_graph,
                             shape_seen_by_parent)
from ._types import Activation, Array, ArrayModule, Layout, PoolMode, Size2
from .functional import (LAYOUTS, check_conv2d_input, check_pool2d_input, check_pool_args,
                         check_size_args, conv2d, conv2d_native, global_pool2d,
                         global_pool2d_native, pool2d_native, pool2d_nchw)
from .functional._checks import check_batch_norm_input, with_parts
from .functional._dispatch import batch_norm_uses_kernel, conv_uses_kernel, pool_uses_kernel
from .functional.batch_norm import batch_norm
from .ops import POOL_MODES

__all__ = ["Conv2D", "Pool2D", "MaxPool2D", "AvgPool2D", "GlobalMaxPool2D", "GlobalAvgPool2D",
           "BatchNorm", "HybridSequential"]

# The pools' inputs and outputs, written once and filled into each pool's docstring.
_POOL_SHAPES = """Inputs:
        - **data**: (batch_size, channels, height, width); NHWC: channels last.

    Outputs:
        - **out**: (batch_size, channels, out_height, out_width); NHWC: channels last; with::

              out_height = floor((height+2*padding[0]-pool_size[0])/strides[0])+1
              out_width = floor((width+2*padding[1]-pool_size[1])/strides[1])+1

          and ceil instead of floor when ``ceil_mode`` is True."""
_WINDOW = """pool_size : int or tuple of 2 ints, default (2, 2)
    strides : int or tuple of 2 ints or None, default None
        None means ``pool_size``."""
_GLOBAL_POOL_ARGS = """Parameters
    ----------
    layout : {'NCHW', 'NHWC'}, default 'NCHW'

    Inputs:
        - **data**: (batch_size, channels, height, width); NHWC: channels last.

    Outputs:
        - **out**: (batch_size, channels, 1, 1); NHWC: (batch_size, 1, 1, channels)."""


class _PathChoosing(HybridBlock):
    """A block with two ways to compute the same numbers: the C++ kernel or MXNet operators.

    :mod:`cnn_base.functional._dispatch` says which for every input; a hybridized
    block's graph holds one way, so it is rebuilt when the choice changes.
    """

    _use_native = False
    _relu_after = False      # HybridSequential runs the relu after this block inside it

    def _choose_path(self, use_native):
        if use_native != self._use_native:
            self._use_native = use_native
            rebuild_graph(self)


class _ConvWeight(Parameter):
    """A Conv2D weight that says why its in_channels could not be inferred.

    Inside a hybridized parent, Gluon infers a deferred in_channels from the
    parent's whole graph; when the input that reaches the conv is smaller than
    its kernel, the graph has no windows, in_channels comes back 0, and Gluon
    would fail later with "invalid shape: (c_o, 0, k_h, k_w)" (or, when the
    gather still yields a channel count, in the forward with "Shape
    inconsistent"). Here that inference is refused at once with the
    imperative path's message.
    """

    conv = None          # weakref to the Conv2D owning this weight

    @property
    def shape(self):
        return Parameter.shape.fget(self)

    @shape.setter
    def shape(self, new_shape):
        conv = self.conv() if self.conv is not None else None
        if conv is not None and new_shape is not None and conv._symbol_input is not None:
            seen = shape_seen_by_parent(conv._symbol_input)
            if new_shape[conv._layout.index("C")] == 0 or not _holds_a_window(conv, seen):
                _refuse_small_input(conv, seen)
        Parameter.shape.fset(self, new_shape)


def _grads_written(F, *params):
    """Whether our kernel may write the gradients of ``params`` (Gluon Parameters, None
    skipped) directly, in this imperative call: none accumulates (``grad_req='add'``). A graph
    (``F`` is ``sym``) keeps the ``identity`` copies: it is built once, and a ``grad_req`` set to
    'add' after hybridizing must still add (:func:`~cnn_base.functional._kernel._kernel_input`)."""
    return F is nd and all(p is None or p.grad_req != "add" for p in params)


def _holds_a_window(conv, input_shape):
    """Whether an input of ``input_shape`` (or None: unknown) holds at least one window."""
    if input_shape is None or len(input_shape) != 4 or 0 in input_shape:
        return True
    spatial = (conv._layout.index("H"), conv._layout.index("W"))
    return all(input_shape[spatial[a]] + 2 * conv._padding[a] >=
               conv._dilation[a] * (conv._kernel_size[a] - 1) + 1 for a in range(2))


def _refuse_small_input(conv, input_shape):
    """The imperative path's ValueError for an input too small for the kernel."""
    k_eff = tuple(conv._dilation[a] * (conv._kernel_size[a] - 1) + 1 for a in range(2))
    name = "dilated kernel" if max(conv._dilation) > 1 else "kernel"
    seen = ("an input of unknown size" if input_shape is None or len(input_shape) != 4
            else "input of height and width "
            f"{tuple(input_shape[conv._layout.index(a)] for a in 'HW')}")
    raise ValueError(f"{conv.name}: {seen} is too small for the {name} {k_eff} with "
                     f"padding {conv._padding}: after padding each side must be at least "
                     f"the {name}'s, so in_channels cannot be inferred")


class Conv2D(_PathChoosing):
    r"""2-D convolution by the chapter's cross-correlation: a C++ kernel or im2col + matmul.

    The same constructor, parameters and output as ``gluon.nn.Conv2D``, in the
    NCHW or NHWC layout. If ``in_channels`` is 0, the weight's input-channel
    size is found on the first call (deferred initialization), as with the
    built-in.

    Parameters
    ----------
    channels : int
        Number of output channels c_o (kernels).
    kernel_size : int or tuple of 2 ints
        (k_h, k_w).
    strides : int or tuple of 2 ints, default (1, 1)
    padding : int or tuple of 2 ints, default (0, 0)
        Zeros added on each side of the height and width.
    dilation : int or tuple of 2 ints, default (1, 1)
        Spacing between kernel elements.
    groups : int, default 1
        Input and output channels split into ``groups`` independent
        convolutions; it must divide ``channels`` and ``in_channels``.
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
        Where the channels are in the input, the output and the weight.
    activation : str or None, default None
        One of 'sigmoid', 'relu', 'tanh', 'softrelu', 'softsign', applied to the output.
    use_bias : bool, default True
    weight_initializer : str or Initializer, default None
    bias_initializer : str or Initializer, default 'zeros'
    in_channels : int, default 0
        c_i; 0 defers it to the first call.

    Inputs:
        - **data**: (batch_size, in_channels, height, width); NHWC:
          (batch_size, height, width, in_channels).

    Outputs:
        - **out**: (batch_size, channels, out_height, out_width); NHWC:
          (batch_size, out_height, out_width, channels), with::

              out_height = floor((height+2*padding[0]-dilation[0]*(kernel_size[0]-1)-1)/stride[0])+1
              out_width = floor((width+2*padding[1]-dilation[1]*(kernel_size[1]-1)-1)/stride[1])+1

    Parameters of the block: ``weight`` (channels, in_channels / groups, k_h, k_w),
    for NHWC (channels, k_h, k_w, in_channels / groups), and ``bias``
    (channels,): named and shaped as in ``gluon.nn.Conv2D``.

    Examples
    --------
    The blog's padding and stride example: kernel 3, padding 1, stride 2 on 8x8.

    >>> conv = Conv2D(1, kernel_size=3, padding=1, strides=2)
    >>> conv.initialize()
    >>> conv(nd.ones((1, 1, 8, 8))).shape
    (1, 1, 4, 4)
    >>> conv
    Conv2D(1 -> 1, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))

    Channels last, with Gluon's NHWC weight:

    >>> conv = Conv2D(4, kernel_size=(3, 2), layout="NHWC")
    >>> conv.initialize()
    >>> conv(nd.ones((1, 8, 8, 3))).shape, conv.weight.shape
    ((1, 6, 7, 4), (4, 3, 2, 3))
    """

    def __init__(self, channels: int, kernel_size: Size2, strides: Size2 = (1, 1),
                 padding: Size2 = (0, 0), dilation: Size2 = (1, 1), groups: int = 1,
                 layout: Layout = "NCHW", activation: Optional[Activation] = None,
                 use_bias: bool = True,
                 weight_initializer: Optional[Union[str, Initializer]] = None,
                 bias_initializer: Union[str, Initializer] = "zeros", in_channels: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._channels = as_int("channels", channels)
        self._kernel_size = as_pair("kernel_size", kernel_size)
        self._strides = as_pair("strides", strides)
        self._padding = as_pair("padding", padding, minimum=0)
        self._dilation = as_pair("dilation", dilation)
        check_size_args(kernel_size=self._kernel_size, strides=self._strides,
                        padding=self._padding, dilation=self._dilation)
        self._groups = as_int("groups", groups)
        self._layout = check_choice("layout", layout, LAYOUTS)
        in_channels = as_int("in_channels", in_channels, minimum=0)
        check_divides("groups", self._groups, "channels", self._channels)
        if in_channels:
            check_divides("groups", self._groups, "in_channels", in_channels)
        use_bias = as_bool("use_bias", use_bias)
        if activation is not None:
            check_choice("activation", activation, ACTIVATIONS)
        self._activation = activation
        with self.name_scope():
            self.weight = self.params.get(
                "weight", shape=self._weight_shape(in_channels),
                init=weight_initializer, allow_deferred_init=True)
            self.weight.__class__ = _ConvWeight        # explains a failed in_channels inference
            self.weight.conv = weakref.ref(self)
            self.bias = (self.params.get("bias", shape=(self._channels,), init=bias_initializer,
                                         allow_deferred_init=True) if use_bias else None)
            self.act = (nn.Activation(activation, prefix=activation + "_")
                        if activation is not None else None)
        self._symbol_input = None

    def _alias(self):
        return "conv"

    def _weight_shape(self, in_channels):
        """Gluon's weight shape: (c_o, c_i / groups, k_h, k_w); NHWC (c_o, k_h, k_w, c_i / groups)."""
        if self._layout == "NHWC":
            return (self._channels,) + self._kernel_size + (in_channels // self._groups,)
        return (self._channels, in_channels // self._groups) + self._kernel_size

    @property
    def in_channels(self) -> int:
        """c_i, or 0 while deferred initialization has not seen an input."""
        return self.weight.shape[self._layout.index("C")] * self._groups

    def infer_shape(self, x: NDArray, *args: Any) -> None:
        """Set the weight's input-channel size from the input (deferred initialization)."""
        check_conv2d_input(x, self.in_channels, self._groups, self._kernel_size,
                           self._padding, self._dilation, self._layout)
        self.weight.shape = self._weight_shape(x.shape[self._layout.index("C")])

    def forward(self, x: Array, *args: Any) -> Array:
        # Calls with data (imperative or hybridized) are checked here, before
        # MXNet's own shape inference could fail with a C++ message. Inside a
        # hybridized parent this block only sees Symbols, and MXNet checks.
        if isinstance(x, sym.Symbol):
            self._symbol_input = x         # for _ConvWeight's message
            in_channels = self.in_channels
        else:
            check_conv2d_input(x, self.in_channels, self._groups, self._kernel_size,
                               self._padding, self._dilation, self._layout)
            in_channels = x.shape[self._layout.index("C")]
        self._choose_path(conv_uses_kernel(x, in_channels, self._channels, self._groups,
                                           self._kernel_size, self._strides, self._padding,
                                           self.weight.dtype, self._dilation, self._layout))
        return super().forward(x, *args)

    def hybrid_forward(self, F: ArrayModule, x: Array, weight: Array,
                       bias: Optional[Array] = None) -> Array:
        if self._use_native:
            relu = self._activation == "relu" or self._relu_after
            Y = conv2d_native(F, x, weight, bias, self._kernel_size, self._strides,
                              self._padding, self._dilation, self._groups,
                              channels=self._channels, layout=self._layout,
                              grads_written=_grads_written(F, self.weight, self.bias),
                              relu=relu)
            if relu:
                return Y
        else:
            Y = conv2d(F, x, weight, bias, self._kernel_size, self._strides, self._padding,
                       self._dilation, self._groups, channels=self._channels,
                       in_channels=self.in_channels or None, layout=self._layout)
        Y = self.act(Y) if self.act is not None else Y
        return F.Activation(Y, act_type="relu") if self._relu_after else Y

    def __repr__(self):
        # As Gluon's: the left of the arrow is the weight's input-channel size,
        # in_channels / groups, or None before deferred initialization. (Gluon
        # prints the weight's axis 1 for NHWC too, which is then k_h; we print
        # in_channels / groups, and the layout when it is not NCHW.)
        c_i = self.in_channels // self._groups
        s = f"{self.__class__.__name__}({c_i or None} -> {self._channels}, " \
            f"kernel_size={self._kernel_size}, stride={self._strides}"
        if self._padding != (0, 0):
            s += f", padding={self._padding}"
        if self._dilation != (1, 1):
            s += f", dilation={self._dilation}"
        if self._groups != 1:
            s += f", groups={self._groups}"
        if self.bias is None:
            s += ", bias=False"
        if self._layout != "NCHW":
            s += f", layout={self._layout}"
        if self.act is not None:
            s += f", {self.act}"
        return s + ")"


class Pool2D(_PathChoosing):
    """2-D max or average pooling computed by the chapter's pool2d, one channel at a time.

    The base of :class:`MaxPool2D` and :class:`AvgPool2D`, usable directly
    with ``mode``. Each channel is pooled on its own, so the output has as many
    channels as the input (blog section 4.3).

    Floating-point input on a CPU context is pooled by the C++ kernel of
    :mod:`cnn_base.native` when it is built and enabled, anything else by
    :func:`cnn_base.functional.pool2d_nchw`; both give Gluon's numbers. The
    choice is made when the block runs (and its graph is rebuilt when it
    changes); inside a hybridized parent, whose context a block cannot see,
    the kernel is used when MXNet has no GPU.

    Unlike Gluon's built-in, a max window holding NaN gives NaN (its gradient
    goes to the first NaN), as NumPy and PyTorch do; the table of
    special values (docs/engineering/special_values.md) lists every difference.

    Parameters
    ----------
    pool_size : int or tuple of 2 ints, default (2, 2)
        The window (p_h, p_w).
    strides : int or tuple of 2 ints or None, default None
        None means ``pool_size``.
    padding : int or tuple of 2 ints, default 0
        Added on each side; smaller than ``pool_size``. Padded cells take no
        part in a max (a window of only padding gives the dtype's lowest
        value); average pooling pads with zeros.
    mode : {'max', 'avg'}, default 'max'
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
        Where the channels are, in the input and the output.
    ceil_mode : bool, default False
        Use ceil instead of floor in the output-size formula.
    count_include_pad : bool, default True
        Average pooling: whether padded cells count in each window's divisor.

    Inputs:
        - **data**: (batch_size, channels, height, width); NHWC:
          (batch_size, height, width, channels).

    Outputs:
        - **out**: (batch_size, channels, out_height, out_width); NHWC:
          (batch_size, out_height, out_width, channels), with::

              out_height = floor((height+2*padding[0]-pool_size[0])/strides[0])+1
              out_width = floor((width+2*padding[1]-pool_size[1])/strides[1])+1

          and ceil instead of floor when ``ceil_mode`` is True.

    Examples
    --------
    The blog's two-channel input (X and X + 1) pools each channel on its own:

    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> Pool2D(3, strides=2, padding=1, mode="max")(nd.concat(X, X + 1, dim=1))
    <BLANKLINE>
    [[[[ 5.  7.]
       [13. 15.]]
    <BLANKLINE>
      [[ 6.  8.]
       [14. 16.]]]]
    <NDArray 1x2x2x2 @cpu(0)>
    """

    def __init__(self, pool_size: Size2 = (2, 2), strides: Optional[Size2] = None,
                 padding: Size2 = 0, mode: PoolMode = "max", layout: Layout = "NCHW",
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool_size = as_pair("pool_size", pool_size)
        self._strides = self._pool_size if strides is None else as_pair("strides", strides)
        self._padding = as_pair("padding", padding, minimum=0)
        check_pool_args(self._pool_size, self._strides, self._padding)
        self._mode = check_choice("mode", mode, POOL_MODES)
        self._layout = check_choice("layout", layout, LAYOUTS)
        self._ceil_mode = as_bool("ceil_mode", ceil_mode)
        self._count_include_pad = as_bool("count_include_pad", count_include_pad)

    def _alias(self):
        return "pool"

    def forward(self, x: Array, *args: Any) -> Array:
        if not isinstance(x, sym.Symbol):
            check_pool2d_input(x, self._pool_size, self._padding, self._layout)
        self._choose_path(pool_uses_kernel(x))
        return super().forward(x, *args)

    def hybrid_forward(self, F: ArrayModule, x: Array) -> Array:
        pool = pool2d_native if self._use_native else pool2d_nchw
        return pool(F, x, self._pool_size, self._strides, self._padding, self._mode,
                    self._ceil_mode, self._count_include_pad, self._layout)

    def _settings(self):
        s = (f"size={self._pool_size}, stride={self._strides}, padding={self._padding}, "
             f"ceil_mode={self._ceil_mode}")
        return s + (f", layout={self._layout}" if self._layout != "NCHW" else "")

    def __repr__(self):
        s = f"{self.__class__.__name__}({self._settings()}, mode={self._mode}"
        if self._mode == "avg":
            s += f", count_include_pad={self._count_include_pad}"
        return s + ")"


class MaxPool2D(Pool2D):
    """Max pooling, a peer of ``gluon.nn.MaxPool2D`` (same constructor, NCHW or NHWC).

    Parameters
    ----------
    {WINDOW}
    padding : int or tuple of 2 ints, default 0
        Smaller than ``pool_size``; padded cells take no part in the max.
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
    ceil_mode : bool, default False

    {POOL_SHAPES}

    Examples
    --------
    The blog's 4x4 input ``0..15``: a 3x3 window finds 10; with padding 1 and
    stride 2 the four windows give 5, 7, 13, 15.

    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> MaxPool2D(3)(X)
    <BLANKLINE>
    [[[[10.]]]]
    <NDArray 1x1x1x1 @cpu(0)>
    >>> MaxPool2D(3, padding=1, strides=2)(X)
    <BLANKLINE>
    [[[[ 5.  7.]
       [13. 15.]]]]
    <NDArray 1x1x2x2 @cpu(0)>
    """

    def __init__(self, pool_size: Size2 = (2, 2), strides: Optional[Size2] = None,
                 padding: Size2 = 0, layout: Layout = "NCHW", ceil_mode: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, "max", layout, ceil_mode, **kwargs)

    def __repr__(self):
        return f"{self.__class__.__name__}({self._settings()})"


class AvgPool2D(Pool2D):
    """Average pooling, a peer of ``gluon.nn.AvgPool2D`` (same constructor, NCHW or NHWC).

    Parameters
    ----------
    {WINDOW}
    padding : int or tuple of 2 ints, default 0
        Zeros, fewer than ``pool_size`` on each side.
    ceil_mode : bool, default False
    layout : {'NCHW', 'NHWC'}, default 'NCHW'
    count_include_pad : bool, default True
        Whether padded cells count in a window's divisor. Cells that a
        ``ceil_mode`` window reaches past the padding never count.

    {POOL_SHAPES}

    Examples
    --------
    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> AvgPool2D(2)(X)
    <BLANKLINE>
    [[[[ 2.5  4.5]
       [10.5 12.5]]]]
    <NDArray 1x1x2x2 @cpu(0)>

    A 2x2 window with padding 1 in a corner holds one input cell and three
    padded ones:

    >>> ones = nd.ones((1, 1, 2, 2))
    >>> AvgPool2D(2, padding=1)(ones)[0, 0, 0, 0].asscalar(), AvgPool2D(
    ...     2, padding=1, count_include_pad=False)(ones)[0, 0, 0, 0].asscalar()
    (0.25, 1.0)
    """

    def __init__(self, pool_size: Size2 = (2, 2), strides: Optional[Size2] = None,
                 padding: Size2 = 0, ceil_mode: bool = False, layout: Layout = "NCHW",
                 count_include_pad: bool = True, **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, "avg", layout, ceil_mode,
                         count_include_pad, **kwargs)

    def __repr__(self):
        return (f"{self.__class__.__name__}({self._settings()}, "
                f"count_include_pad={self._count_include_pad})")


for _pool in (MaxPool2D, AvgPool2D):
    _pool.__doc__ = with_parts(_pool.__doc__, WINDOW=_WINDOW, POOL_SHAPES=_POOL_SHAPES)


class _GlobalPool2D(Pool2D):
    """Pool2D with the window = the whole plane: one max or mean per sample and channel.

    The settings are Gluon's for global pooling (window and stride (1, 1),
    ``ceil_mode``, no padding), kept for ``repr``; the pooling itself is
    :func:`cnn_base.functional.global_pool2d` (MXNet's operators), or for a
    max, where :class:`Pool2D` would use the C++ kernel,
    :func:`cnn_base.functional.global_pool2d_native`. A hybridized graph, an
    exported one and a parent's graph do not know the input's height and
    width, so a window of that size cannot be written into them: the kernel
    reads the plane's size from its input at each call (``global_pool=True``),
    and the operators take one max or mean over the plane's axes; either way
    any size passes through. Why the max only (static graphs after a ReLU,
    forward + backward, 3 x 3 to 7 x 7 planes of 248-1280 channels): the
    operators' max (argmax + pick) took 3-6x Gluon's time, the kernel
    0.6-1.0x; their mean (a matrix product) took 0.6-0.9x, as fast as the
    kernel or faster.
    """

    def __init__(self, mode: PoolMode, layout: Layout = "NCHW", **kwargs: Any) -> None:
        super().__init__((1, 1), None, 0, mode, layout, ceil_mode=True, **kwargs)
        self._by_product = True

    def forward(self, x: Array, *args: Any) -> Array:
        # The fast mean (a matrix product) takes no float16 on CPU: float16 input
        # gets sum and divide, and a hybridized block rebuilds its graph for it.
        by_product = not (isinstance(x, nd.NDArray) and np.dtype(x.dtype) == np.float16)
        if by_product != self._by_product:
            self._by_product = by_product
            rebuild_graph(self)
        return super().forward(x, *args)

    def hybrid_forward(self, F: ArrayModule, x: Array) -> Array:
        if self._use_native and self._mode == "max":
            return global_pool2d_native(F, x, self._mode, self._layout)
        return global_pool2d(F, x, self._mode, self._layout, self._by_product)

    def __repr__(self):
        # Gluon's _Pooling.__repr__, word for word
        return (f"{self.__class__.__name__}(size={self._pool_size}, stride={self._strides}, "
                f"padding={self._padding}, ceil_mode={self._ceil_mode}, global_pool=True, "
                f"pool_type={self._mode}, layout={self._layout})")


class GlobalMaxPool2D(_GlobalPool2D):
    """Global max pooling, a peer of ``gluon.nn.GlobalMaxPool2D``: the max of every plane.

    {GLOBAL_POOL_ARGS}

    The gradient goes to the first largest cell of each plane (row-major), as
    with Gluon's. A plane holding NaN gives NaN, with the gradient to its first
    NaN (NumPy's rule, and :class:`MaxPool2D`'s); Gluon's skips NaN.

    Examples
    --------
    >>> X = nd.arange(16).reshape((1, 1, 4, 4))
    >>> GlobalMaxPool2D()(nd.concat(X, X + 1, dim=1)).reshape((-1,))
    <BLANKLINE>
    [15. 16.]
    <NDArray 2 @cpu(0)>
    >>> GlobalMaxPool2D(layout="NHWC")
    GlobalMaxPool2D(size=(1, 1), stride=(1, 1), padding=(0, 0), ceil_mode=True, \
global_pool=True, pool_type=max, layout=NHWC)
    """

    def __init__(self, layout: Layout = "NCHW", **kwargs: Any) -> None:
        super().__init__("max", layout, **kwargs)


class GlobalAvgPool2D(_GlobalPool2D):
    """Global average pooling, a peer of ``gluon.nn.GlobalAvgPool2D``: the mean of every plane.

    {GLOBAL_POOL_ARGS}

    Examples
    --------
    >>> X = nd.arange(16).reshape((1, 4, 4, 1))
    >>> GlobalAvgPool2D(layout="NHWC")(X)
    <BLANKLINE>
    [[[[7.5]]]]
    <NDArray 1x1x1x1 @cpu(0)>
    """

    def __init__(self, layout: Layout = "NCHW", **kwargs: Any) -> None:
        super().__init__("avg", layout, **kwargs)


for _pool in (GlobalMaxPool2D, GlobalAvgPool2D):
    _pool.__doc__ = with_parts(_pool.__doc__, GLOBAL_POOL_ARGS=_GLOBAL_POOL_ARGS)


class BatchNorm(_PathChoosing, nn.BatchNorm):
    """Batch normalization (d2l 5.10) by cnn_base's C++ kernel: ``gluon.nn.BatchNorm``'s
    constructor, parameters (gamma, beta, running_mean, running_var) and numbers.

    In training (``autograd.record()``, or ``autograd.train_mode()``) each channel is
    normalized by the batch's mean and biased variance over every other axis, and the
    running statistics move towards them: ``running = momentum * running + (1 - momentum)
    * batch``; in prediction, and with ``use_global_stats``, by the running statistics.
    Float32/64 on CPU take the kernel (:func:`cnn_base.functional.batch_norm.batch_norm`);
    anything else (a GPU context, float16) MXNet's ``BatchNorm``, as the built-in does.

    Why it exists: after our Conv2D (or any operator but MXNet's own conv) the built-in's
    oneDNN kernel gets a plain NCHW array and runs its slow reference-like form
    (docs/engineering/speed.md). One fault of MXNet's it does not share: under
    ``autograd.record(train_mode=False)`` the built-in's gradient of the data is not the
    gradient of what it computed (``tests/test_batch_norm.py`` pins it against NumPy).

    >>> from mxnet import nd
    >>> bn = BatchNorm(in_channels=2); bn.initialize()
    >>> bn(nd.array([[[[1.0]], [[2.0]]]])).shape
    (1, 2, 1, 1)
    """

    _low_precision = False
    _axis = None     # the channel axis counted from the front, once an input told the count

    def cast(self, dtype: Any) -> None:
        # Gluon keeps a float16 batch norm's parameters float32; the kernel wants one dtype.
        self._low_precision = np.dtype(dtype) == np.float16
        super().cast(dtype)

    def forward(self, x: Array, *args: Any) -> Array:
        axis = self._kwargs["axis"]
        if not isinstance(x, sym.Symbol):
            check_batch_norm_input(x, axis, self.gamma.shape[0])
            self._axis = axis % x.ndim
        elif axis >= 0:
            self._axis = axis
        self._choose_path(self._axis is not None and batch_norm_uses_kernel(
            x, self.gamma.dtype, self._axis, self._low_precision))
        return super().forward(x, *args)

    def hybrid_forward(self, F: ArrayModule, x: Array, gamma: Array, beta: Array,
                       running_mean: Array, running_var: Array) -> Array:
        if not self._use_native:
            Y = super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
            return F.Activation(Y, act_type="relu") if self._relu_after else Y
        return batch_norm(F, x, gamma, beta, running_mean, running_var, dtype=self.gamma.dtype,
                          grads_written=_grads_written(F, self.gamma, self.beta),
                          relu=self._relu_after, **dict(self._kwargs, axis=self._axis))


class HybridSequential(nn.HybridSequential):
    """``gluon.nn.HybridSequential`` that runs our BatchNorm or Conv2D followed by
    ``nn.Activation('relu')`` as one operator: the same numbers, and the ReLU in place.

    Why it exists: our operators' backward holds their output (MXNet's extension API hands
    it every output), so MXNet cannot run the Activation after them in place as it does after
    its own; in a hybridized graph that Activation writes fresh memory every step (MXNet 1.9.1
    has no CPU memory pool). ``csrc/relu.h``: the relu applied to the output in place, its
    gradient masked inside our backward. A pair is fused only when both blocks are in this
    sequence next to each other, the Activation is exactly ``nn.Activation('relu')``, neither has
    hooks, and the first is not hybridized on its own while the sequence runs imperatively (its
    own graph, built before, would not see it); otherwise each block runs as Gluon's would.

    >>> from mxnet import nd
    >>> net = HybridSequential(); net.add(BatchNorm(in_channels=1), nn.Activation("relu"))
    >>> net.initialize(); net(nd.array([[[[-1.0]]]])).asnumpy().ravel()
    array([0.], dtype=float32)
    """

    def hybrid_forward(self, F: ArrayModule, x: Array) -> Array:
        layers = [self[i] for i in range(len(self))]
        i = 0
        while i < len(layers):
            fused = i + 1 < len(layers) and _fuses_relu(F, layers[i], layers[i + 1])
            with _relu_after(layers[i], fused):
                x = layers[i](x)
            i += 2 if fused else 1
        return x


def _fuses_relu(F: ArrayModule, block: HybridBlock, after: HybridBlock) -> bool:
    """Whether ``block`` can run the ReLU of ``after`` inside it (HybridSequential)."""
    takes_it = isinstance(block, BatchNorm) or (isinstance(block, Conv2D) and
                                                block._activation is None)
    return (takes_it and is_relu_activation(after) and not has_hooks(block) and
            not has_hooks(after) and (F is sym or not is_hybridized(block)))


@contextlib.contextmanager
def _relu_after(block: HybridBlock, fused: bool) -> Iterator[None]:
    """``block`` applies the next block's ReLU itself during this call when ``fused``."""
    if not fused:
        yield
        return
    block._relu_after = True
    try:
        yield
    finally:
        block._relu_after = False
