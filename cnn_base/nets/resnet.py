"""ResNet-18 as d2l-zh v1 §5.11 builds it: residual blocks of two 3x3 convs."""
from __future__ import annotations

from typing import Any

from mxnet.gluon import nn
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from .._types import Array, ArrayModule, BlockChoice, Size2
from ._layers import layers

__all__ = ["Residual", "resnet_block", "resnet18"]


class Residual(nn.HybridBlock):
    """§5.11's residual block: relu(bn(conv(relu(bn(conv(X))))) + X), X through a 1x1 conv
    (with the stride) when the channels or the size change (``use_1x1conv``)."""

    def __init__(self, num_channels: int, use_1x1conv: bool = False, strides: Size2 = 1,
                 block: BlockChoice = "custom", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        L = layers(block)
        self.conv1 = L.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = L.Conv2D(num_channels, kernel_size=3, padding=1)
        self.conv3 = L.Conv2D(num_channels, kernel_size=1, strides=strides) if use_1x1conv \
            else None
        self.bn1 = L.BatchNorm()
        self.bn2 = L.BatchNorm()

    def hybrid_forward(self, F: ArrayModule, X: Array) -> Array:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(num_channels: int, num_residuals: int, first_block: bool = False,
                 block: BlockChoice = "custom") -> nn.HybridSequential:
    """``num_residuals`` residual blocks; the first halves the size and changes the channels,
    except in the first stage, after the stem's max pool (§5.11)."""
    blk = nn.HybridSequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(Residual(num_channels, use_1x1conv=True, strides=2, block=block))
        else:
            blk.add(Residual(num_channels, block=block))
    return blk


def resnet18(block: BlockChoice = "custom") -> nn.HybridSequential:
    """d2l-zh v1 §5.11's ResNet-18: GoogLeNet's stem with batch norm, four stages of two
    residual blocks (64, 128, 256, 512 channels), global average pooling, Dense(10).

    Input 1 x 96 x 96 (the book's; any side from 32 up); not yet initialised.

    >>> sum(1 for layer in resnet18() for _ in (layer if hasattr(layer, '__len__') else [0]))
    14
    """
    L = layers(block)
    net = L.HybridSequential()
    net.add(L.Conv2D(64, kernel_size=7, strides=2, padding=3),
            L.BatchNorm(), nn.Activation("relu"),
            L.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(resnet_block(64, 2, first_block=True, block=block),
            resnet_block(128, 2, block=block),
            resnet_block(256, 2, block=block),
            resnet_block(512, 2, block=block))
    net.add(L.GlobalAvgPool2D(), nn.Dense(10))
    return net
