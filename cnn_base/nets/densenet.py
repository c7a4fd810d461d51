"""DenseNet as d2l-zh v1 §5.12 builds it: dense blocks joined by transition blocks."""
from __future__ import annotations

from typing import Any, Sequence

from mxnet.gluon import nn
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from .._types import Array, ArrayModule, BlockChoice
from ._layers import layers

__all__ = ["conv_block", "DenseBlock", "transition_block", "densenet"]


def conv_block(num_channels: int, block: BlockChoice = "custom") -> nn.HybridSequential:
    """§5.12's pre-activation conv: BatchNorm, ReLU, 3x3 conv (padding 1)."""
    L = layers(block)
    blk = L.HybridSequential()
    blk.add(L.BatchNorm(), nn.Activation("relu"),
            L.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


class DenseBlock(nn.HybridBlock):
    """§5.12's dense block: each conv block's output joined to its input along the channels,
    so ``num_convs`` blocks add num_convs * num_channels channels."""

    def __init__(self, num_convs: int, num_channels: int, block: BlockChoice = "custom",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = nn.HybridSequential()
        for _ in range(num_convs):
            self.net.add(conv_block(num_channels, block))

    def hybrid_forward(self, F: ArrayModule, X: Array) -> Array:
        for blk in self.net:
            Y = blk(X)
            X = F.concat(X, Y, dim=1)
        return X


def transition_block(num_channels: int, block: BlockChoice = "custom") -> nn.HybridSequential:
    """§5.12's transition: BatchNorm, ReLU, a 1x1 conv to ``num_channels``, 2x2 average pool."""
    L = layers(block)
    blk = L.HybridSequential()
    blk.add(L.BatchNorm(), nn.Activation("relu"),
            L.Conv2D(num_channels, kernel_size=1),
            L.AvgPool2D(pool_size=2, strides=2))
    return blk


def densenet(block: BlockChoice = "custom",
             num_convs_in_dense_blocks: Sequence[int] = (4, 4, 4, 4),
             growth_rate: int = 32) -> nn.HybridSequential:
    """d2l-zh v1 §5.12's DenseNet: ResNet's stem, four dense blocks of four conv blocks
    (growth rate 32), a transition halving the channels between them, then BatchNorm,
    ReLU, global average pooling and Dense(10).

    Input 1 x 96 x 96 (the book's; any side from 32 up); not yet initialised.

    >>> [type(layer).__name__ for layer in densenet()][4:6]
    ['DenseBlock', 'HybridSequential']
    """
    L = layers(block)
    net = L.HybridSequential()
    net.add(L.Conv2D(64, kernel_size=7, strides=2, padding=3),
            L.BatchNorm(), nn.Activation("relu"),
            L.MaxPool2D(pool_size=3, strides=2, padding=1))
    num_channels = 64                 # the current number of channels
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        net.add(DenseBlock(num_convs, growth_rate, block))
        num_channels += num_convs * growth_rate
        if i != len(num_convs_in_dense_blocks) - 1:
            num_channels //= 2
            net.add(transition_block(num_channels, block))
    net.add(L.BatchNorm(), nn.Activation("relu"), L.GlobalAvgPool2D(), nn.Dense(10))
    return net
