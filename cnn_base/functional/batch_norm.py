"""Batch normalization (d2l 5.10) by the C++ kernel of ``csrc/batch_norm.cc``, for NDArray and Symbol.

:func:`batch_norm` takes MXNet's ``BatchNorm`` arguments and gives its numbers: the
batch's mean and (biased) variance over every axis but ``axis`` in training, the
running ones in prediction, the running statistics moved by ``momentum`` in
training (the operator updates them in place, as MXNet's own does).

Which mode a call runs in is the one thing an extension operator is not told: MXNet
tells its operators, not a library's. So the kernel takes it as an input, a
one-number array: imperatively Python knows it (``autograd.is_training()``); inside a
graph (hybridized) a custom operator reads it from MXNet (``mx.operator.CustomOp``,
whose ``forward`` receives ``is_train``), some 0.1 ms a layer.

What it buys: MXNet's ``BatchNorm`` after any operator but its own conv gets plain
NCHW arrays, on which oneDNN runs its reference-like kernel (``ncsp_bnorm``);
docs/engineering/speed.md has the measurements.
"""
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd

from .._types import Array, ArrayModule

from .. import native
from ._kernel import _kernel_input

__all__ = ["OP_NAME", "MODE_OP_TYPE", "batch_norm"]

OP_NAME = native.BATCH_NORM_OP_NAME  # the extension operator (csrc/batch_norm.cc)
MODE_OP_TYPE = "cnn_base_training"  # the custom operator saying the mode inside a graph


class _Training(mx.operator.CustomOp):
    """Writes 1 into its one-number output when MXNet runs the graph for training, else 0."""

    def forward(self, is_train, req, in_data, out_data, aux):
        out_data[0][:] = float(is_train)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        pass     # no inputs, nothing to differentiate


@mx.operator.register(MODE_OP_TYPE)
class _TrainingProp(mx.operator.CustomOpProp):
    def __init__(self, dtype="float32"):
        super().__init__(need_top_grad=False)
        self.dtype = np.dtype(dtype).type

    def list_arguments(self):
        return []

    def infer_shape(self, in_shape):
        return [], [[1]], []

    def infer_type(self, in_type):
        return [], [self.dtype], []

    def create_operator(self, ctx, in_shapes, in_dtypes):
        return _Training()


def _mode(F, X, dtype):
    """The kernel's mode input: 1 in training, 0 in prediction (see the module's docstring)."""
    if isinstance(X, mx.nd.NDArray):
        return mx.nd.full((1,), float(autograd.is_training()), ctx=X.context, dtype=dtype)
    return _mode_node(np.dtype(dtype).name)


_MODE_NODES = {}


def _mode_node(dtype):
    """One graph node per dtype saying the mode, shared by every batch norm of every graph
    (a Symbol is an immutable description: a graph that uses it twice holds it once). What it
    buys: the custom operator runs once per pass, not once per layer; DenseNet's 21 batch
    norms, static, one thread, spent ~68 ms a step in it (Python, the GIL, a thread of its
    own) against a step of ~480 ms."""
    if dtype not in _MODE_NODES:
        _MODE_NODES[dtype] = mx.sym.BlockGrad(mx.sym.Custom(
            op_type=MODE_OP_TYPE, dtype=dtype, name=f"{MODE_OP_TYPE}_{dtype}"),
            name=f"{MODE_OP_TYPE}_{dtype}_nograd")
    return _MODE_NODES[dtype]


def batch_norm(F: ArrayModule, X: Array, gamma: Array, beta: Array, running_mean: Array,
               running_var: Array, eps: float = 1e-5, momentum: float = 0.9,
               fix_gamma: bool = False, use_global_stats: bool = False, axis: int = 1,
               dtype: Any = np.float32, grads_written: bool = False,
               relu: bool = False) -> Array:
    """MXNet's ``BatchNorm(X, gamma, beta, running_mean, running_var, ...)``'s output, by the
    C++ kernel. ``axis``: non-negative for a Symbol, negative counts from the end for an NDArray;
    ``dtype``: the parameters' (a Symbol's own is unknown); ``grads_written``: ``gamma``'s and
    ``beta``'s gradients are written, never added to (as :func:`~cnn_base.conv2d_native`'s);
    ``relu``: the output is ``relu(batch norm)`` in the one operator (``csrc/relu.h``: MXNet
    cannot run an Activation in place after our operator, whose backward holds its output).
    Call it where :func:`~cnn_base.functional._dispatch.batch_norm_uses_kernel` says so."""
    if isinstance(X, mx.nd.NDArray):
        axis, dtype = axis % X.ndim, X.dtype
    settings = dict(eps=eps, momentum=momentum, fix_gamma=int(fix_gamma),
                    use_global_stats=int(use_global_stats), axis=axis)
    if relu:
        settings["relu"] = 1
    Y = getattr(F, OP_NAME)(
        _kernel_input(F, X), _kernel_input(F, gamma, grads_written),
        _kernel_input(F, beta, grads_written), running_mean,
        running_var, _mode(F, X, dtype), **settings)
    return Y[0]
