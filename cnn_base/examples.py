"""The blog's worked-example arrays, so scripts, notebooks and tests share one copy."""
from __future__ import annotations

from typing import Optional, Tuple

import mxnet as mx
from mxnet import nd
from mxnet.ndarray import NDArray

__all__ = ["corr2d_example", "multi_in_example", "edge_image", "edge_kernel"]


def corr2d_example(ctx: Optional[mx.Context] = None) -> Tuple[NDArray, NDArray]:
    """The first figure's input ``X`` (3x3, 0..8) and kernel ``K`` (2x2, 0..3)."""
    X = nd.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], ctx=ctx)
    K = nd.array([[0, 1], [2, 3]], ctx=ctx)
    return X, K


def multi_in_example(ctx: Optional[mx.Context] = None) -> Tuple[NDArray, NDArray]:
    """The two-input-channel ``X`` (2, 3, 3) and ``K`` (2, 2, 2) of blog section 3.1."""
    X = nd.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                  [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], ctx=ctx)
    K = nd.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]], ctx=ctx)
    return X, K


def edge_image(ctx: Optional[mx.Context] = None) -> NDArray:
    """The blog's 6x8 image: white (1) with its middle four columns black (0).

    >>> edge_image()
    <BLANKLINE>
    [[1. 1. 0. 0. 0. 0. 1. 1.]
     [1. 1. 0. 0. 0. 0. 1. 1.]
     [1. 1. 0. 0. 0. 0. 1. 1.]
     [1. 1. 0. 0. 0. 0. 1. 1.]
     [1. 1. 0. 0. 0. 0. 1. 1.]
     [1. 1. 0. 0. 0. 0. 1. 1.]]
    <NDArray 6x8 @cpu(0)>
    """
    X = nd.ones((6, 8), ctx=ctx)
    X[:, 2:6] = 0
    return X


def edge_kernel(ctx: Optional[mx.Context] = None) -> NDArray:
    """The 1x2 kernel ``[[1, -1]]`` that marks a change between horizontal neighbours."""
    return nd.array([[1, -1]], ctx=ctx)
