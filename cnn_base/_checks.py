"""Argument checks shared by the ops and the blocks.

Every check raises ``TypeError`` or ``ValueError`` whose message states the rule
and the value received; none uses ``assert`` (asserts vanish under ``python -O``).
"""
import math
import numbers

__all__ = []


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def as_pair(name, value, minimum=1):
    """Return ``value`` as a pair of ints ``>= minimum``: an int ``n`` becomes ``(n, n)``.

    >>> as_pair('strides', 2)
    (2, 2)
    >>> as_pair('padding', (0, 1), minimum=0)
    (0, 1)
    """
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r} "
                             f"of length {len(value)}")
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, "
                        f"got {type(value).__name__} {value!r}")
    if min(pair) < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return pair


def as_int(name, value, minimum=1):
    """Return ``value`` as an int ``>= minimum``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return int(value)


def as_positive_float(name, value):
    """Return ``value`` as a positive finite float (a step size such as ``lr``).

    >>> as_positive_float('lr', 0.03)
    0.03
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_ndarray(name, X, ndim, what=None):
    """Check that ``X`` is an NDArray with ``ndim`` dimensions (an int or a tuple of allowed ones)."""
    from mxnet import nd   # here, not at the top: the launcher's checks run without MXNet

    if not isinstance(X, nd.NDArray):
        raise TypeError(f"{name} must be an mxnet NDArray (wrap data with nd.array(...)), "
                        f"got {type(X).__module__}.{type(X).__name__}")
    allowed = (ndim,) if _is_int(ndim) else tuple(ndim)
    if X.ndim not in allowed:
        dims = " or ".join(f"{n}-D" for n in allowed)
        what = f" {what}" if what else ""
        raise ValueError(f"{name} must be {dims}{what}, got shape {X.shape} ({X.ndim}-D)")
    if 0 in X.shape:
        raise ValueError(f"{name} must not be empty, got shape {X.shape}")


def check_same_array_kind(X, K, x_name="X", k_name="K"):
    """Both arrays on one context and of one dtype, as MXNet's operators need."""
    if X.context != K.context:
        raise ValueError(f"{x_name} and {k_name} must be on the same context, "
                         f"got {X.context} and {K.context}")
    if X.dtype != K.dtype:
        raise TypeError(f"{x_name} and {k_name} must have the same dtype, "
                        f"got {X.dtype.__name__} and {K.dtype.__name__}")


def as_bool(name, value):
    """Return ``value`` if it is a bool (``True``/``False``, not ``1``/``'yes'``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_choice(name, value, choices):
    """Check that ``value`` is one of ``choices`` (a tuple of strings).

    >>> check_choice('layout', 'NCHW', ('NCHW',))
    'NCHW'
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                        f"got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_divides(name, value, of_name, of_value):
    """Check that the int ``value`` divides ``of_value`` (e.g. groups must divide channels)."""
    if of_value % value:
        raise ValueError(f"{name}={value} must divide {of_name}={of_value} evenly")
