"""LeNet with batch normalisation as d2l-zh v1 §5.10 builds it (Gluon's BatchNorm)."""
from __future__ import annotations

from mxnet.gluon import nn

from .._types import BlockChoice
from ._layers import layers

__all__ = ["lenet_bn"]


def lenet_bn(block: BlockChoice = "custom") -> nn.HybridSequential:
    """d2l-zh v1 §5.10's LeNet with a BatchNorm after every conv and hidden Dense layer,
    before its sigmoid; not yet initialised. Input 1 x 28 x 28 (the book trains it with lr 1.0).

    >>> [type(layer).__name__ for layer in lenet_bn()][:4]
    ['Conv2D', 'BatchNorm', 'Activation', 'MaxPool2D']
    """
    L = layers(block)
    net = nn.HybridSequential()
    net.add(L.Conv2D(6, kernel_size=5), L.BatchNorm(), nn.Activation("sigmoid"),
            L.MaxPool2D(pool_size=2, strides=2),
            L.Conv2D(16, kernel_size=5), L.BatchNorm(), nn.Activation("sigmoid"),
            L.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120), L.BatchNorm(), nn.Activation("sigmoid"),
            nn.Dense(84), L.BatchNorm(), nn.Activation("sigmoid"),
            nn.Dense(10))
    return net
