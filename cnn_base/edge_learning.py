"""Learning the edge kernel ``[[1, -1]]`` from data, as the blog does (D2L 5.1.4).

One training loop, shared by ``scripts/reproduce_blog.py`` (the blog's run) and
``scripts/learn_edge_kernel.py`` (our Conv2D and Gluon's side by side, on any
context): squared error, the weight updated by hand with ``lr * grad``, the bias
left alone. With ``seed=0`` the built-in layer prints exactly the blog's lines::

    batch 2, loss 4.949
    batch 4, loss 0.831
    batch 6, loss 0.140
    batch 8, loss 0.024
    batch 10, loss 0.004

Gluon draws a parameter's initial value on the CPU and copies it to the layer's
context, so the same seed gives the same start, and the same lines, on every context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from ._checks import as_int, as_positive_float
from ._choices import BLOCKS
from ._types import BlockChoice
from .blocks import Conv2D
from .context import as_ctx
from .examples import edge_image, edge_kernel
from .ops import corr2d

__all__ = ["BLOCKS", "EdgeKernelRun", "make_conv2d", "edge_data", "learn_edge_kernel",
           "loss_line"]


def make_conv2d(block: BlockChoice, *args: Any, **kwargs: Any) -> Union[nn.Conv2D, Conv2D]:
    """A Conv2D layer: ``'custom'`` is :class:`cnn_base.Conv2D`, ``'builtin'`` is ``gluon.nn.Conv2D``.

    Both take Gluon's constructor arguments.

    >>> make_conv2d('builtin', 1, kernel_size=(1, 2))
    Conv2D(None -> 1, kernel_size=(1, 2), stride=(1, 1))
    """
    if block == "custom":
        return Conv2D(*args, **kwargs)
    if block == "builtin":
        return nn.Conv2D(*args, **kwargs)
    raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")


def edge_data(ctx: Optional[Union[str, mx.Context]] = None
              ) -> Tuple[mx.nd.NDArray, mx.nd.NDArray]:
    """The blog's training pair on ``ctx``: ``X`` (1, 1, 6, 8) the edge image, ``Y`` (1, 1, 6, 7) its edges.

    ``Y = corr2d(X, [[1, -1]])``: 1 where white turns black, -1 where black turns white.

    >>> X, Y = edge_data(mx.cpu())
    >>> X.shape, Y.shape, Y[0, 0, 0].asnumpy().tolist()
    ((1, 1, 6, 8), (1, 1, 6, 7), [0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    """
    ctx = as_ctx(ctx)
    X = edge_image(ctx)
    Y = corr2d(X, edge_kernel(ctx))
    return X.reshape((1, 1) + X.shape), Y.reshape((1, 1) + Y.shape)


def loss_line(i: int, loss: float) -> str:
    """The blog's progress line for iteration ``i`` (1-based).

    >>> loss_line(2, 4.94871)
    'batch 2, loss 4.949'
    """
    return "batch %d, loss %.3f" % (i, loss)


@dataclass
class EdgeKernelRun:
    """What :func:`learn_edge_kernel` returns; every array lives on ``ctx``.

    ``losses[i]`` is the summed squared error of iteration ``i + 1`` (before its
    update); ``kernel_path`` (iters + 1, 2) holds the kernel's two weights, first
    the initial ones, then after each update; ``Y_hat`` is the trained layer's output.
    """
    block: str
    ctx: mx.Context
    lr: float
    seed: int
    net: nn.Block = field(repr=False)
    X: mx.nd.NDArray = field(repr=False)
    Y: mx.nd.NDArray = field(repr=False)
    Y_hat: mx.nd.NDArray = field(repr=False)
    losses: List[float] = field(repr=False)
    kernel_path: np.ndarray = field(repr=False)

    @property
    def iters(self) -> int:
        return len(self.losses)

    @property
    def kernel(self) -> mx.nd.NDArray:
        """The learned kernel, an NDArray (1, 2) on ``ctx``, as the blog prints it."""
        return self.net.weight.data().reshape((1, 2)).copy()

    def loss_lines(self, every: int = 2) -> List[str]:
        """The blog's ``batch i, loss ...`` lines, one per ``every`` iterations."""
        every = as_int("every", every)
        return [loss_line(i, loss) for i, loss in enumerate(self.losses, start=1) if i % every == 0]

    @property
    def diverged(self) -> bool:
        """True when the step size was too large: the loss grew, or a loss or weight became inf or nan.

        The loss is a quadratic in the kernel, so plain gradient descent either
        shrinks it or (``lr`` too large) makes it grow geometrically: the last
        loss above the first is the one rule for both ``lr=0.2`` (a loss of ~3e16
        after 10 updates) and ``lr=1000`` (inf).
        """
        if not (np.isfinite(self.losses).all() and np.isfinite(self.kernel_path).all()):
            return True
        return len(self.losses) >= 2 and self.losses[-1] > self.losses[0]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary: kernel, every iteration's loss, kernel path, context and settings.

        An inf or nan (a diverged run) becomes ``None``, so the result is standard JSON.
        """
        def finite(values):
            return [finite(v) if isinstance(v, list) else (v if math.isfinite(v) else None)
                    for v in values]
        return {"block": self.block, "ctx": str(self.ctx), "iters": self.iters, "lr": self.lr,
                "seed": self.seed, "diverged": self.diverged, "kernel": finite(self.kernel.asnumpy().tolist()),
                "losses": finite(list(self.losses)),
                "kernel_path": finite(self.kernel_path.tolist())}


def learn_edge_kernel(block: BlockChoice = "builtin",
                      ctx: Optional[Union[str, mx.Context]] = None, iters: int = 10,
                      lr: float = 0.03, seed: int = 0,
                      progress: Optional[Callable[[int, int], Any]] = None) -> EdgeKernelRun:
    """Learn the kernel ``[[1, -1]]`` from the edge image with a (1, 2) Conv2D, as the blog does.

    Parameters
    ----------
    block : {'builtin', 'custom'}, default 'builtin'
        Gluon's ``nn.Conv2D`` (the blog's) or our :class:`cnn_base.Conv2D`.
    ctx : str or mx.Context, default None
        Where every array and parameter lives; ``None`` means ``'auto'`` (see :func:`cnn_base.parse_ctx`).
    iters : int, default 10
        Number of updates (0 leaves the initial kernel).
    lr : float, default 0.03
        Step size of the hand-written update ``weight -= lr * grad``.
    seed : int, default 0
        Passed to ``mx.random.seed`` just before the layer is initialised.
    progress : callable, optional
        Called as ``progress(i, iters)`` after update ``i`` (1-based), e.g. to move a progress bar.

    Returns
    -------
    EdgeKernelRun

    >>> run = learn_edge_kernel(ctx='cpu')
    >>> for line in run.loss_lines():
    ...     print(line)
    batch 2, loss 4.949
    batch 4, loss 0.831
    batch 6, loss 0.140
    batch 8, loss 0.024
    batch 10, loss 0.004
    >>> print(run.kernel)
    <BLANKLINE>
    [[ 0.9895    -0.9873705]]
    <NDArray 1x2 @cpu(0)>
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
    ctx = as_ctx(ctx)
    iters = as_int("iters", iters, minimum=0)
    lr = as_positive_float("lr", lr)
    seed = as_int("seed", seed, minimum=0)

    X, Y = edge_data(ctx)
    mx.random.seed(seed)
    # one output channel, a (1, 2) kernel; in_channels=1 makes the weight exist before
    # the first forward pass (the draw is the same as with deferred initialisation)
    net = make_conv2d(block, 1, kernel_size=(1, 2), in_channels=1)
    net.initialize(ctx=ctx)

    kernel_path = [net.weight.data().asnumpy().reshape(2)]
    losses = []
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")
    for i in range(1, iters + 1):
        with autograd.record():
            Y_hat = net(X)
            l = (Y_hat - Y) ** 2
        l.backward()
        # the blog's update, bias ignored for simplicity
        net.weight.data()[:] -= lr * net.weight.grad()
        losses.append(float(l.sum().asscalar()))
        kernel_path.append(net.weight.data().asnumpy().reshape(2))
        if progress is not None:
            progress(i, iters)
    return EdgeKernelRun(block=block, ctx=ctx, lr=lr, seed=seed, net=net, X=X, Y=Y,
                         Y_hat=net(X), losses=losses, kernel_path=np.stack(kernel_path))
