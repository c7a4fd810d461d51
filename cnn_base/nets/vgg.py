"""VGG as d2l-zh v1 §5.7 builds it: VGG-11, with its channels divided by ``ratio``."""
from __future__ import annotations

from typing import Sequence, Tuple

from mxnet.gluon import nn

from .._checks import as_int
from .._types import BlockChoice
from ._layers import layers

__all__ = ["CONV_ARCH", "vgg_block", "vgg", "vgg11"]

# (number of convs, output channels) of VGG-11's five blocks
CONV_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, num_channels: int,
              block: BlockChoice = "custom") -> nn.HybridSequential:
    """``num_convs`` 3x3 convs (padding 1) with ReLU, then a 2x2 stride-2 max pool (§5.7)."""
    L = layers(block)
    blk = nn.HybridSequential()
    for _ in range(num_convs):
        blk.add(L.Conv2D(num_channels, kernel_size=3, padding=1, activation="relu"))
    blk.add(L.MaxPool2D(pool_size=2, strides=2))
    return blk


def vgg(conv_arch: Sequence[Tuple[int, int]],
        block: BlockChoice = "custom") -> nn.HybridSequential:
    """The VGG of ``conv_arch`` ((num_convs, num_channels) per block), then AlexNet's head (§5.7)."""
    net = nn.HybridSequential()
    for num_convs, num_channels in conv_arch:
        net.add(vgg_block(num_convs, num_channels, block))
    net.add(nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(4096, activation="relu"), nn.Dropout(0.5),
            nn.Dense(10))
    return net


def vgg11(block: BlockChoice = "custom", ratio: int = 4) -> nn.HybridSequential:
    """d2l-zh v1 §5.7's VGG-11 with every block's channels divided by ``ratio`` (the book: 4).

    Input 1 x 224 x 224 (any side from 32 up); not yet initialised.

    >>> [len(blk) for blk in list(vgg11())[:5]]
    [2, 2, 3, 3, 3]
    """
    ratio = as_int("ratio", ratio, minimum=1)
    return vgg([(n, max(1, c // ratio)) for n, c in CONV_ARCH], block)
