"""GoogLeNet as d2l-zh v1 §5.9 builds it: Inception blocks of four parallel paths."""
from __future__ import annotations

from typing import Any, Tuple

from mxnet.gluon import nn
from mxnet.ndarray import NDArray  # noqa: F401 (what the Array alias names)
from mxnet.symbol import Symbol  # noqa: F401 (what the Array alias names)

from .._types import Array, ArrayModule, BlockChoice
from ._layers import layers

__all__ = ["Inception", "googlenet"]


class Inception(nn.HybridBlock):
    """§5.9's Inception block: 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1,
    joined along the channels (c1 + c2[1] + c3[1] + c4 of them).

    Parameters
    ----------
    c1 : int
        Channels of the 1x1 path.
    c2, c3 : pair of ints
        Channels of the 1x1 conv and of the 3x3 (c2) or 5x5 (c3) conv after it.
    c4 : int
        Channels of the 1x1 conv after the pool.
    block : {'custom', 'builtin'}, default 'custom'
    """

    def __init__(self, c1: int, c2: Tuple[int, int], c3: Tuple[int, int], c4: int,
                 block: BlockChoice = "custom", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        L = layers(block)
        self.p1_1 = L.Conv2D(c1, kernel_size=1, activation="relu")
        self.p2_1 = L.Conv2D(c2[0], kernel_size=1, activation="relu")
        self.p2_2 = L.Conv2D(c2[1], kernel_size=3, padding=1, activation="relu")
        self.p3_1 = L.Conv2D(c3[0], kernel_size=1, activation="relu")
        self.p3_2 = L.Conv2D(c3[1], kernel_size=5, padding=2, activation="relu")
        self.p4_1 = L.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = L.Conv2D(c4, kernel_size=1, activation="relu")

    def hybrid_forward(self, F: ArrayModule, x: Array) -> Array:
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        return F.concat(p1, p2, p3, p4, dim=1)


def googlenet(block: BlockChoice = "custom") -> nn.HybridSequential:
    """d2l-zh v1 §5.9's GoogLeNet: a 7x7 stem, 1x1 and 3x3 convs, nine Inception blocks in
    three stages with 3x3 stride-2 max pools between, global average pooling, Dense(10).

    Input 1 x 96 x 96 (the book's; any side from 32 up); not yet initialised.

    >>> sum(isinstance(b, Inception) for stage in googlenet() if hasattr(stage, '__len__')
    ...     for b in stage)
    9
    """
    L = layers(block)
    b1 = nn.HybridSequential()
    b1.add(L.Conv2D(64, kernel_size=7, strides=2, padding=3, activation="relu"),
           L.MaxPool2D(pool_size=3, strides=2, padding=1))
    b2 = nn.HybridSequential()
    b2.add(L.Conv2D(64, kernel_size=1, activation="relu"),
           L.Conv2D(192, kernel_size=3, padding=1, activation="relu"),
           L.MaxPool2D(pool_size=3, strides=2, padding=1))
    b3 = nn.HybridSequential()
    b3.add(Inception(64, (96, 128), (16, 32), 32, block),
           Inception(128, (128, 192), (32, 96), 64, block),
           L.MaxPool2D(pool_size=3, strides=2, padding=1))
    b4 = nn.HybridSequential()
    b4.add(Inception(192, (96, 208), (16, 48), 64, block),
           Inception(160, (112, 224), (24, 64), 64, block),
           Inception(128, (128, 256), (24, 64), 64, block),
           Inception(112, (144, 288), (32, 64), 64, block),
           Inception(256, (160, 320), (32, 128), 128, block),
           L.MaxPool2D(pool_size=3, strides=2, padding=1))
    b5 = nn.HybridSequential()
    b5.add(Inception(256, (160, 320), (32, 128), 128, block),
           Inception(384, (192, 384), (48, 128), 128, block),
           L.GlobalAvgPool2D())
    net = nn.HybridSequential()
    net.add(b1, b2, b3, b4, b5, nn.Dense(10))
    return net
