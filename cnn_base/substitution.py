"""Any model written for ``gluon.nn`` built on cnn_base's blocks, in one line.

>>> from mxnet.gluon.model_zoo import vision
>>> with substitute():
...     net = vision.resnet18_v1()
>>> type(net.features[0]).__module__
'cnn_base.blocks'

Inside ``with substitute():`` the names ``Conv2D``, ``MaxPool2D``,
``AvgPool2D``, ``GlobalMaxPool2D``, ``GlobalAvgPool2D``, ``BatchNorm`` and
``HybridSequential`` of ``mxnet.gluon.nn`` (and the first five of
``mxnet.gluon.nn.conv_layers``, where Gluon defines them) are cnn_base's blocks, so
any code that builds its layers as ``nn.Conv2D(...)`` (the model zoo, d2l's
networks, a user's own) builds them with ours. Our ``HybridSequential`` is Gluon's
that runs a batch norm or conv of ours followed by ``nn.Activation('relu')`` as one
operator (:class:`cnn_base.blocks.HybridSequential`). Constructors, parameter names and shapes are Gluon's, so the net
loads the same parameter files. On leaving the block every name is Gluon's
again, whatever happened inside. Blocks bound to a name before the block
(``from mxnet.gluon.nn import Conv2D``) are not reached: build those with
``cnn_base.Conv2D`` directly.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from mxnet.gluon import nn
from mxnet.gluon.nn import conv_layers

from . import blocks

__all__ = ["SUBSTITUTES", "substitute"]

# gluon.nn's name -> cnn_base's block of the same constructor
SUBSTITUTES = {name: getattr(blocks, name) for name in
               ("Conv2D", "MaxPool2D", "AvgPool2D", "GlobalMaxPool2D", "GlobalAvgPool2D",
                "BatchNorm", "HybridSequential")}
# the modules whose name is replaced: gluon.nn, and conv_layers where Gluon defines the conv and
# pools; not basic_layers, whose BatchNorm.__init__ and HybridSequential.__init__ call
# super(BatchNorm, self) by that global name (ours there would make Gluon's constructor call
# itself through ours, a subclass of it)
_MODULES = {name: (nn,) if name in ("BatchNorm", "HybridSequential") else (nn, conv_layers)
            for name in SUBSTITUTES}


@contextlib.contextmanager
def substitute(names: Iterable[str] = tuple(SUBSTITUTES)) -> Iterator[None]:
    """Within the ``with`` block, ``gluon.nn``'s 2-D conv, pooling and batch norm blocks are cnn_base's.

    Parameters
    ----------
    names : iterable of str, default all of ``SUBSTITUTES``
        Which of gluon.nn's blocks to replace, e.g. ``("Conv2D",)`` for the
        convolutions only.

    Raises
    ------
    ValueError
        For a name cnn_base has no block for (e.g. 'Conv2DTranspose' or
        'Conv1D'), before anything is replaced.
    TypeError
        When ``names`` is not an iterable of strings.
    """
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be an iterable of gluon.nn block names, got {names!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in SUBSTITUTES]
    if unknown:
        raise ValueError(f"cnn_base has no block to substitute for gluon.nn.{unknown[0]}; "
                         f"it substitutes {', '.join(SUBSTITUTES)}")
    saved = [(module, name, getattr(module, name)) for name in names
             for module in _MODULES[name]]
    try:
        for module, name, _ in saved:
            setattr(module, name, SUBSTITUTES[name])
        yield
    finally:
        for module, name, builtin in saved:
            setattr(module, name, builtin)
