"""The checks and settings of the batched functions: layouts, size limits, call-time input checks.

Every check raises ``ValueError``/``TypeError`` naming the rule and the value received
(the package's own :mod:`cnn_base._checks` does the int/pair/choice work).
"""
from mxnet import nd

from .._checks import as_bool, as_int, as_pair, check_choice, check_ndarray
from ..ops import POOL_MODES

__all__ = ["LAYOUTS", "MAX_SIZE_ARG", "MAX_POOL_ARG", "MAX_DIM", "check_size_args",
           "check_pool_padding", "check_pool_args", "check_conv2d_input", "check_pool2d_input",
           "check_batch_norm_input"]

# The layouts of Gluon's 2-D blocks: channels first or channels last.
LAYOUTS = ("NCHW", "NHWC")

# The largest window, stride, padding or dilation accepted, of the conv and the pools
# alike: the C++ kernels' attribute limit (kMaxAttr in csrc/pool2d.cc and csrc/conv2d.cc),
# so that every size the blocks accept fits the kernels' 64-bit index arithmetic.
MAX_SIZE_ARG = 2 ** 31 - 1
MAX_POOL_ARG = MAX_SIZE_ARG     # its first name, from when only the pools had a kernel

# The parameters that every pooling function documents alike (PyTorch shares its conv
# notes the same way): a docstring holds "{F_AND_X}" and with_parts fills it in.
F_AND_X_DOC = """F : module
        ``mxnet.nd`` or ``mxnet.sym``.
    X : NDArray or Symbol
        Input of shape (N, c, h, w), or (N, h, w, c) with ``layout='NHWC'``."""


def with_parts(doc, **parts):
    """``doc`` with every ``{NAME}`` of ``parts`` filled in (docstrings hold other braces)."""
    for name, text in parts.items():
        doc = doc.replace("{%s}" % name, text)
    return doc


# MXNet's dimensions are 32-bit: an input side plus its padding must fit.
MAX_DIM = 2 ** 32 - 1


def _pair_args(kernel_size, strides, padding, dilation=1, kernel_name="kernel_size"):
    return (as_pair(kernel_name, kernel_size), as_pair("strides", strides),
            as_pair("padding", padding, minimum=0), as_pair("dilation", dilation))


def check_pool_padding(pool_size, padding):
    """Gluon's rule: padding must be smaller than the window on each axis."""
    if padding[0] >= pool_size[0] or padding[1] >= pool_size[1]:
        raise ValueError(f"padding {tuple(padding)} must be smaller than pool_size "
                         f"{tuple(pool_size)} on each axis")


def check_size_args(**pairs):
    """Sizes (pairs of ints, by name) the C++ kernels can hold: each at most ``MAX_SIZE_ARG``.

    >>> check_size_args(kernel_size=(3, 3), dilation=(2 ** 62, 1))
    Traceback (most recent call last):
    ...
    ValueError: dilation must be at most 2147483647 (2**31 - 1), got (4611686018427387904, 1)
    """
    for name, pair in pairs.items():
        if max(pair) > MAX_SIZE_ARG:
            raise ValueError(f"{name} must be at most {MAX_SIZE_ARG} (2**31 - 1), "
                             f"got {tuple(pair)}")


def check_pool_args(pool_size, strides, padding):
    """Pooling settings (pairs of ints) the C++ kernel can hold, padding smaller than the window.

    Each must be at most ``MAX_SIZE_ARG`` (2**31 - 1), the kernel's own limit.

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


def check_batch_norm_input(X, axis, channels):
    """ValueError unless the NDArray ``X`` has an axis ``axis`` (negative: from the end) holding
    ``channels`` entries (0: not known yet, any)."""
    if not -X.ndim <= axis < X.ndim:
        raise ValueError(f"batch norm over axis {axis} needs an input with more than "
                         f"{axis if axis >= 0 else -axis - 1} axes, got shape {X.shape}")
    if channels and X.shape[axis] != channels:
        raise ValueError(f"batch norm of {channels} channels got an input of shape {X.shape}, "
                         f"with {X.shape[axis]} along axis {axis}")
