"""AlexNet as d2l-zh v1 §5.6 builds it for 1-channel Fashion-MNIST resized to 224 x 224."""
from __future__ import annotations

from mxnet.gluon import nn

from .._types import BlockChoice
from ._layers import layers

__all__ = ["alexnet"]


def alexnet(block: BlockChoice = "custom") -> nn.HybridSequential:
    """d2l-zh v1 §5.6's AlexNet: five convs (11x11 stride 4, 5x5, three 3x3), three 3x3 stride-2
    max pools, two Dense(4096) with dropout, and Dense(10); not yet initialised.

    The book's input is 1 x 224 x 224 (Fashion-MNIST resized); any side from 63
    up works. ``block`` picks our blocks or gluon.nn's (:func:`layers`).

    >>> [type(layer).__name__ for layer in alexnet()][:3]
    ['Conv2D', 'MaxPool2D', 'Conv2D']
    """
    L = layers(block)
    net = nn.HybridSequential()
    net.add(L.Conv2D(96, kernel_size=11, strides=4, activation="relu"),
            L.MaxPool2D(pool_size=3, strides=2),
            # a smaller window, padding 2 keeps the size, more output channels
            L.Conv2D(256, kernel_size=5, padding=2, activation="relu"),
            L.MaxPool2D(pool_size=3, strides=2),
            # three 3x3 convs, more channels still; no pooling between them
            L.Conv2D(384, kernel_size=3, padding=1, activation="relu"),
            L.Conv2D(384, kernel_size=3, padding=1, activation="relu"),
            L.Conv2D(256, kernel_size=3, padding=1, activation="relu"),
            L.MaxPool2D(pool_size=3, strides=2),
            # wide fully connected layers, dropout against overfitting
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(10))
    return net
