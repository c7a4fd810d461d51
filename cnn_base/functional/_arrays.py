"""Array helpers shared by the conv and the pools: slices, padding, size probes, the output grid.

A symbolic graph does not know the input's size, so no size is ever written into a
``reshape``: sizes come from probes (a slice of the input's first plane, without
gradient) and ``reshape_like``. ``_slice`` keeps channel cuts away from MXNet's oneDNN
slice, which kills the process on some blocked layouts (see its docstring).
"""

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
