"""Which path computes a layer, and why: the routing rules of the conv and the pools in one place.

Three questions, each answered by measurements on CPU (docs/engineering/speed.md):

- how :func:`~cnn_base.functional.conv2d` lays out its windows (:func:`conv_route`):
  a 1x1 conv is one matrix product; otherwise the rows are gathered from the
  channel-last input when there are enough channels per group, else im2col;
- whether the C++ conv kernel is the faster way for a layer (:func:`native_conv_fits`): with
  a BLAS for the kernel (:func:`cnn_base.native.blas_library`) every layer, the kernel
  itself choosing between its register tiles and im2col + the BLAS (``use_gemm`` in
  ``csrc/conv2d.cc``); without one, the measured channel limits below;
- whether the C++ kernels can take an input at all (:func:`native_pool_applies`,
  :func:`native_conv_applies`), and so which path a block uses for the input it is
  given (:func:`conv_uses_kernel`, :func:`pool_uses_kernel`).
"""
import functools

import mxnet as mx
import numpy as np

from .. import native
from ._checks import _pair_args

__all__ = ["NATIVE_MAX_CHANNELS", "conv_route", "native_conv_fits", "native_pool_applies",
           "native_applies", "native_conv_applies", "conv_uses_kernel", "pool_uses_kernel",
           "batch_norm_applies", "batch_norm_uses_kernel"]

# Below this many input channels per group, conv2d takes the im2col route: the
# gather copies one row of c_i / groups floats per window cell, and shorter rows
# make it slower than im2col with its transpose (measured on CPU, 4 is about even).
_GATHER_MIN_CHANNELS = 4


# With one input channel per group, an NHWC conv2d goes through the NCHW route
# (im2col) and transposes: gathering rows of one float each is slower than the
# transposes (measured on CPU: about 1.5x slower at c_i = 1, even at 2, faster from 3).
_NHWC_GATHER_MIN_CHANNELS = 2


def _is_pointwise(k, s, p):
    """A 1x1 window with stride 1 and no padding: every output cell sees one input cell."""
    return k == (1, 1) and s == (1, 1) and p == (0, 0)


def conv_route(k, s, p, groups, in_channels, layout):
    """Which of :func:`~cnn_base.functional.conv2d`'s ways makes the rows (``in_channels`` None: many).

    ``'pointwise'`` (a 1x1 conv: one matrix product over the channels), ``'gather'``
    (rows gathered from the channel-last input), ``'im2col'`` (the chapter's columns,
    transposed), and for NHWC ``'channel_last'`` (gathered as the batch stands) or
    ``'nhwc_by_im2col'`` (one channel per group: transposed to NCHW and back).

    >>> conv_route((3, 3), (1, 1), (1, 1), 1, 3, "NCHW"), conv_route((1, 1), (1, 1), (0, 0), 1, 3, "NCHW")
    ('im2col', 'pointwise')
    """
    if _is_pointwise(k, s, p):
        return "pointwise"
    per_group = None if in_channels is None else in_channels // groups
    if layout == "NHWC":
        many = per_group is None or per_group >= _NHWC_GATHER_MIN_CHANNELS
        return "channel_last" if many else "nhwc_by_im2col"
    return "gather" if per_group is None or per_group >= _GATHER_MIN_CHANNELS else "im2col"


# Without a BLAS for the kernel (native.multiplies_with_blas() False): which layers the
# blocks convolve with the C++ kernel's tiles (conv2d_native) and which with the matrix
# multiply of conv2d (oneDNN's GEMM inside FullyConnected), as
# measured on CPU, forward + backward against Gluon's built-in (docs/engineering/speed.md):
# the kernel's register tiles win up to 64 input and output channels per group,
# with any stride (16 -> 32 channels on 64 x 64: 1.0x the built-in, the GEMM
# 2-3x; 64 -> 64 on 32 x 32 with stride 2: 1.4x against 2.7x; depthwise:
# 1.7x against 70-90x) and lose above (256 -> 256 on 14 x 14: 1.6x against
# 1.1x; 128 -> 128 on 16 x 16 with stride 2: 1.8x against 1.2x). With few
# output channels the kernel wins whatever the input channels on large planes:
# DenseNet's 3x3 layers to 32 channels (growth rate 32), measured on an AMD EPYC
# (AVX-512, 2 cores, idle; static hybridize, batch 32 unless said, interleaved medians):
# 96 -> 32 on 24 x 24 1.36x against the GEMM's 2.00x, 192 -> 32 1.28x against 1.86x;
# at 64 output channels the GEMM wins from 128 input channels (batch 8, 128 -> 64 on
# 28 x 28: 1.60x against 1.42x). Not knowing the input's channels (a hybridized parent
# builds its graph before deferred initialization), the output channels decide.
NATIVE_MAX_CHANNELS = 64
# Up to this many output channels per group the kernel takes any input channels, on
# output planes of at least NATIVE_MIN_PLANE cells: on small planes its tiles run short
# rows and the GEMM wins (measured as above, to 32 channels: 160 -> 32 on 12 x 12 1.92x
# against 1.93x; 120 -> 32 on 6 x 6 2.67x against 1.60x, on 3 x 3 4.43x against 1.36x).
# Inside a hybridized parent the plane is unknown and the kernel is taken: a network's
# large planes cost the most (d2l's DenseNet, static: 1.47x the built-in so, 1.87x with the
# matrix multiply there).
NATIVE_ANY_INPUT_MAX_CHANNELS = 32
NATIVE_MIN_PLANE = 12 * 12


def native_conv_fits(in_channels, channels, groups, kernel_size, strides, padding, plane=None):
    """Whether the C++ kernel is the faster way for this layer (``in_channels`` 0: unknown;
    ``plane``: the output's h' * w', None when unknown).

    With a BLAS the kernel takes every layer and picks its own way per layer
    (im2col + the BLAS measured 0.8-1.0x the built-in on the wide layers where
    MXNet's FullyConnected took 1.2-2x; docs/engineering/speed.md). Without one:
    a 1x1 conv with stride 1 and no padding is the chapter's fully connected
    layer over the channels (:func:`conv2d` makes it one matrix product), and
    anything else follows the measured limits above.
    """
    if native.multiplies_with_blas():
        return True     # the kernel itself picks its tiles or im2col + BLAS (csrc/conv2d.cc, use_gemm)
    k, s, p, _ = _pair_args(kernel_size, strides, padding)
    if _is_pointwise(k, s, p):
        return False
    c_i, c_o = in_channels // groups, channels // groups
    if c_o <= NATIVE_MAX_CHANNELS and c_i <= NATIVE_MAX_CHANNELS:
        return True
    return c_o <= NATIVE_ANY_INPUT_MAX_CHANNELS and (plane is None or plane >= NATIVE_MIN_PLANE)


_KERNEL_DTYPES = {"pool": (np.float16, np.float32, np.float64), "conv": (np.float32, np.float64)}


def native_pool_applies(X):
    """Whether the C++ kernel can pool the NDArray ``X``: float16/32/64 on a CPU context."""
    return X.context.device_type == "cpu" and np.dtype(X.dtype) in _KERNEL_DTYPES["pool"]


native_applies = native_pool_applies     # its first name, from when only the pools had a kernel


def native_conv_applies(X):
    """Whether the C++ kernel can convolve the NDArray ``X``: float32/64 on a CPU context."""
    return X.context.device_type == "cpu" and np.dtype(X.dtype) in _KERNEL_DTYPES["conv"]


@functools.lru_cache(maxsize=None)
def _num_gpus():
    """MXNet's GPU count, asked once."""
    return mx.context.num_gpus()


def pool_uses_kernel(x):
    """Whether a pooling block computes the input ``x`` (NDArray or Symbol) with the C++ kernel.

    An NDArray says where it lives and its dtype; a Symbol (inside a hybridized
    parent) does not, so the kernel is used when MXNet has no GPU.
    """
    if not native.enabled():
        return False
    return _num_gpus() == 0 if isinstance(x, mx.sym.Symbol) else native_pool_applies(x)


def conv_uses_kernel(x, in_channels, channels, groups, kernel_size, strides, padding,
                     weight_dtype, dilation=1, layout="NCHW"):
    """Whether a conv block computes the input ``x`` with the C++ kernel (``in_channels`` 0: unknown).

    As :func:`pool_uses_kernel`, and only for layers the kernel is the faster way
    for (:func:`native_conv_fits`); a Symbol's dtype is the weight's.
    """
    if not native.enabled():
        return False
    if isinstance(x, mx.sym.Symbol):
        applies = _num_gpus() == 0 and np.dtype(weight_dtype) in _KERNEL_DTYPES["conv"]
    else:
        applies = native_conv_applies(x)
    plane = None
    if not isinstance(x, mx.sym.Symbol):
        from ..shapes import output_shape
        H, W = x.shape[1:3] if layout == "NHWC" else x.shape[2:]
        h, w = output_shape((H, W), kernel_size, strides, padding, dilation)
        plane = h * w
    return applies and native_conv_fits(in_channels, channels, groups, kernel_size, strides,
                                        padding, plane)


def batch_norm_applies(X):
    """Whether the C++ kernel can normalize the NDArray ``X``: float32/64 on a CPU context."""
    return X.context.device_type == "cpu" and np.dtype(X.dtype) in _KERNEL_DTYPES["conv"]


def batch_norm_uses_kernel(x, param_dtype, axis, low_precision=False):
    """Whether a batch norm block computes ``x`` (NDArray or Symbol) with the C++ kernel
    (:mod:`.batch_norm`): float32/64 on CPU. A Symbol's dtype is its parameters'; a Symbol
    with a negative ``axis`` (its number of axes unknown), and a block cast to float16
    (``low_precision``: its data float16, its parameters float32), never take it."""
    if not native.enabled() or low_precision:
        return False
    if isinstance(x, mx.sym.Symbol):
        return (_num_gpus() == 0 and axis >= 0
                and np.dtype(param_dtype) in _KERNEL_DTYPES["conv"])
    return batch_norm_applies(x)
