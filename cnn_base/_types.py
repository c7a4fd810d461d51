"""The type aliases of the public API's annotations, defined once (PyTorch's habit for sizes).

The MXNet types are imported only under ``TYPE_CHECKING``, so importing this module costs
nothing (NumPy is imported by ``cnn_base`` already): the modules that annotate with them use
``from __future__ import annotations``, and those that import MXNet anyway import ``NDArray``
and ``Symbol`` at run time, so that ``typing.get_type_hints`` resolves ``Array`` there.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Literal, Sequence, Tuple, Union

import numpy

if TYPE_CHECKING:
    from mxnet.ndarray import NDArray
    from mxnet.symbol import Symbol

__all__ = []

# a size of a 2-d window, stride, padding or dilation: an int n is (n, n)
Size2 = Union[int, Tuple[int, int]]
# a shape: the sizes of each axis
Shape = Tuple[int, ...]
ShapeLike = Sequence[int]
# what the functional layer takes and gives: an NDArray imperatively, a Symbol in a graph
Array = Union["NDArray", "Symbol"]
# the module of an array's operators: ``mxnet.nd`` or ``mxnet.sym`` (Gluon's ``F``)
ArrayModule = ModuleType
# a NumPy dtype or its name
DType = Union[str, type, numpy.dtype]
# the layouts of a batch of images, the modes of a pool, whose blocks a network is built of
Layout = Literal["NCHW", "NHWC"]
PoolMode = Literal["max", "avg"]
BlockChoice = Literal["custom", "builtin"]
Activation = Literal["sigmoid", "relu", "tanh", "softrelu", "softsign"]
# a file's path or prefix
PathLike = Union[str, os.PathLike]
# how train_ch5 shows its progress
Progress = Literal["auto", "bar", "plain", "none"]
