"""The switch every network of this package has: our blocks or gluon.nn's."""
from __future__ import annotations

import types

from mxnet.gluon import nn

from .. import blocks
from .._checks import check_choice
from .._choices import BLOCKS
from .._types import BlockChoice

__all__ = ["layers"]


def layers(block: BlockChoice) -> types.SimpleNamespace:
    """The 2-D conv, pooling and batch norm blocks to build a network from: ours or ``gluon.nn``'s.

    Parameters
    ----------
    block : {'custom', 'builtin'}
        cnn_base's blocks, or Gluon's built-ins; the two have the same
        constructors and parameter names, so nothing else in a network differs.

    Returns
    -------
    types.SimpleNamespace
        With ``Conv2D``, ``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D``, ``BatchNorm`` and
        ``HybridSequential`` (ours runs a batch norm or conv of ours and the
        ``nn.Activation('relu')`` after it as one operator: the same numbers).

    >>> layers("custom").Conv2D.__module__, layers("builtin").Conv2D.__module__
    ('cnn_base.blocks', 'mxnet.gluon.nn.conv_layers')
    """
    check_choice("block", block, BLOCKS)
    source = blocks if block == "custom" else nn
    return types.SimpleNamespace(**{name: getattr(source, name) for name in
                                    ("Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
                                     "BatchNorm", "HybridSequential")})
