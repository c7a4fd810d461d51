"""Networks built from our blocks or Gluon's: LeNet as d2l-zh v1 §5.5 writes it.

``block='custom'`` uses :class:`cnn_base.Conv2D` and :class:`cnn_base.MaxPool2D`,
``block='builtin'`` uses ``gluon.nn``'s; nothing else differs, and the parameters
have the same names and shapes, so one's weights load into the other.
"""
from __future__ import annotations

from typing import List, Tuple, Union

from mxnet.gluon import nn
from mxnet.ndarray import NDArray

from .._checks import as_bool, check_choice
from .._choices import ACTIVATIONS, BLOCKS
from .._types import Activation, BlockChoice, Shape
from ..blocks import Conv2D, MaxPool2D

__all__ = ["LENET_BLOCKS", "LENET_ACTIVATIONS", "lenet", "layer_shapes"]

LENET_BLOCKS = BLOCKS
LENET_ACTIVATIONS = ACTIVATIONS


def lenet(block: BlockChoice = "custom", activation: Activation = "sigmoid",
          hybrid: bool = False) -> Union[nn.Sequential, nn.HybridSequential]:
    """d2l-zh v1's LeNet for 1x28x28 images and 10 classes, not yet initialised.

    Conv2D(6, 5) -> MaxPool2D(2, 2) -> Conv2D(16, 5) -> MaxPool2D(2, 2) -> Dense(120)
    -> Dense(84) -> Dense(10), the activation after every convolution and hidden Dense
    layer, in an ``nn.Sequential`` as the book has it (``hybrid=True``: an
    ``nn.HybridSequential``, which ``hybridize()`` compiles). The book initialises
    it with ``init.Xavier()`` (see :func:`cnn_base.init_net`).

    Parameters
    ----------
    block : {'custom', 'builtin'}, default 'custom'
        Our Conv2D and MaxPool2D, or ``gluon.nn``'s.
    activation : str, default 'sigmoid'
        The book's sigmoid, or another of Gluon's activations (``'relu'``, ...).
    hybrid : bool, default False
        An ``nn.HybridSequential`` instead of the book's ``nn.Sequential``.

    Returns
    -------
    mxnet.gluon.nn.Sequential or mxnet.gluon.nn.HybridSequential

    >>> [type(layer).__module__.split('.')[0] for layer in lenet('custom')][:2]
    ['cnn_base', 'cnn_base']
    >>> [type(layer).__name__ for layer in lenet('builtin')]
    ['Conv2D', 'MaxPool2D', 'Conv2D', 'MaxPool2D', 'Dense', 'Dense', 'Dense']
    """
    check_choice("block", block, LENET_BLOCKS)
    check_choice("activation", activation, LENET_ACTIVATIONS)
    hybrid = as_bool("hybrid", hybrid)
    conv, pool = (Conv2D, MaxPool2D) if block == "custom" else (nn.Conv2D, nn.MaxPool2D)
    net = nn.HybridSequential() if hybrid else nn.Sequential()
    net.add(conv(channels=6, kernel_size=5, activation=activation),
            pool(pool_size=2, strides=2),
            conv(channels=16, kernel_size=5, activation=activation),
            pool(pool_size=2, strides=2),
            # Dense flattens its (batch, 16, 4, 4) input to (batch, 256)
            nn.Dense(120, activation=activation),
            nn.Dense(84, activation=activation),
            nn.Dense(10))
    return net


def layer_shapes(net: Union[nn.Sequential, nn.HybridSequential],
                 X: NDArray) -> List[Tuple[str, Shape]]:
    """Run ``X`` through the layers of ``net`` one by one: ``[(layer name, output shape), ...]``.

    What d2l prints as ``conv0 output shape: (1, 6, 24, 24)``; ``net`` must be initialised.
    """
    shapes = []
    for layer in net:
        X = layer(X)
        shapes.append((layer.name, X.shape))
    return shapes
