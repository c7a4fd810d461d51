"""Choosing where arrays and parameters live: ``'auto'``, ``'cpu'``, ``'gpu'``, ``'cpu(N)'``, ``'gpu(N)'``.

MXNet builds its contexts without asking whether they can be used: ``mx.gpu(0)``
is a fine object on a CPU-only build, and the failure comes later, from deep inside
the first operator. :func:`parse_ctx` checks up front and says what is wrong.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple, Union

import mxnet as mx

__all__ = ["CONTEXT_CHOICES", "ContextUnavailableError", "default_ctx", "parse_ctx", "as_ctx"]

CONTEXT_CHOICES = ("auto", "cpu", "gpu", "cpu(N)", "gpu(N)")

_PATTERN = re.compile(r"^(cpu|gpu)(?:\((\d+)\))?$")


class ContextUnavailableError(ValueError):
    """A well-formed context that MXNet cannot use here (a GPU on a CPU-only build, or no such device)."""


def _cuda_built():
    return mx.runtime.Features().is_enabled("CUDA")


def _check_gpu(device_id):
    """Raise :class:`ContextUnavailableError` unless ``gpu(device_id)`` is usable."""
    if not _cuda_built():
        raise ContextUnavailableError(
            f"gpu({device_id}) cannot be used: this MXNet build has no CUDA support (a CPU-only build)")
    n = mx.context.num_gpus()
    if device_id >= n:
        seen = "no GPU" if n == 0 else f"{n} GPU{'s' if n > 1 else ''} (gpu(0) to gpu({n - 1}))"
        raise ContextUnavailableError(f"gpu({device_id}) cannot be used: MXNet sees {seen}")


def default_ctx() -> mx.Context:
    """A GPU when MXNet sees one, else the CPU: what ``'auto'`` means.

    >>> default_ctx() == (mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu(0))
    True
    """
    return mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu(0)


def parse_ctx(text: str) -> mx.Context:
    """The :class:`mx.Context` named by ``text``, checked to be usable.

    ``text`` is ``'auto'`` (see :func:`default_ctx`), ``'cpu'``, ``'gpu'``
    (device 0), ``'cpu(N)'`` or ``'gpu(N)'``; case and surrounding blanks are ignored.
    Raises ``ValueError`` for anything else, and its subclass
    :class:`ContextUnavailableError` for a GPU that MXNet cannot use.

    >>> parse_ctx('cpu')
    cpu(0)
    >>> parse_ctx(' CPU(1) ')
    cpu(1)
    >>> parse_ctx('tpu')
    Traceback (most recent call last):
    ...
    ValueError: ctx must be one of auto, cpu, gpu, cpu(N), gpu(N), got 'tpu'
    """
    if not isinstance(text, str):
        raise TypeError(f"ctx must be a string such as 'cpu' or 'gpu(0)', "
                        f"got {type(text).__name__} {text!r}")
    normalised = text.strip().lower()
    if normalised == "auto":
        return default_ctx()
    match = _PATTERN.match(normalised)
    if match is None:
        raise ValueError(f"ctx must be one of {', '.join(CONTEXT_CHOICES)}, got {text!r}")
    device_type, device_id = match.group(1), int(match.group(2) or 0)
    if device_type == "gpu":
        _check_gpu(device_id)
    return mx.Context(device_type, device_id)


def as_ctx(ctx: Optional[Union[str, mx.Context]]) -> mx.Context:
    """``None`` -> :func:`default_ctx`; a string -> :func:`parse_ctx`; an ``mx.Context`` is checked and kept.

    >>> as_ctx(mx.cpu(1))
    cpu(1)
    >>> as_ctx('cpu(2)')
    cpu(2)
    """
    if ctx is None:
        return default_ctx()
    if isinstance(ctx, str):
        return parse_ctx(ctx)
    if isinstance(ctx, mx.Context):
        if ctx.device_type == "gpu":
            _check_gpu(ctx.device_id)
        elif ctx.device_type != "cpu":
            raise ValueError(f"ctx must be a cpu or gpu context, got {ctx}")
        return ctx
    raise TypeError(f"ctx must be None, a string such as 'cpu(1)' or an mx.Context, "
                    f"got {type(ctx).__name__} {ctx!r}")
