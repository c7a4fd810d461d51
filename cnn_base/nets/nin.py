"""Network in network as d2l-zh v1 §5.8 builds it."""
from __future__ import annotations

from mxnet.gluon import nn

from .._types import BlockChoice, Size2
from ._layers import layers

__all__ = ["nin_block", "nin"]


def nin_block(num_channels: int, kernel_size: Size2, strides: Size2, padding: Size2,
              block: BlockChoice = "custom") -> nn.HybridSequential:
    """A conv, then two 1x1 convs (a fully connected layer per pixel), each with ReLU (§5.8)."""
    L = layers(block)
    blk = nn.HybridSequential()
    blk.add(L.Conv2D(num_channels, kernel_size, strides, padding, activation="relu"),
            L.Conv2D(num_channels, kernel_size=1, activation="relu"),
            L.Conv2D(num_channels, kernel_size=1, activation="relu"))
    return blk


def nin(block: BlockChoice = "custom") -> nn.HybridSequential:
    """d2l-zh v1 §5.8's NiN: AlexNet's conv sizes as NiN blocks, the last with 10 channels,
    then global average pooling in place of the Dense layers; not yet initialised.

    Input 1 x 224 x 224 (any side from 63 up).

    >>> [type(layer).__name__ for layer in nin()][-2:]
    ['GlobalAvgPool2D', 'Flatten']
    """
    L = layers(block)
    net = nn.HybridSequential()
    net.add(nin_block(96, kernel_size=11, strides=4, padding=0, block=block),
            L.MaxPool2D(pool_size=3, strides=2),
            nin_block(256, kernel_size=5, strides=1, padding=2, block=block),
            L.MaxPool2D(pool_size=3, strides=2),
            nin_block(384, kernel_size=3, strides=1, padding=1, block=block),
            L.MaxPool2D(pool_size=3, strides=2), nn.Dropout(0.5),
            # 10 channels, one per class
            nin_block(10, kernel_size=3, strides=1, padding=1, block=block),
            # the window is the whole plane: (batch, 10, 1, 1), then (batch, 10)
            L.GlobalAvgPool2D(),
            nn.Flatten())
    return net
