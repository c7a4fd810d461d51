"""Batch normalization (d2l 5.10) with the C++ kernel of ``csrc/batch_norm.cc``, for NDArray and Symbol.

:func:`batch_norm` takes MXNet's ``BatchNorm`` arguments and gives its numbers: the
batch's mean and (biased) variance over every axis but ``axis`` in training, the
running ones in prediction, the running statistics moved by ``momentum`` in
training. Only MXNet's operators are told whether a graph runs for training or for
prediction, so the kernel runs inside a custom operator (``mx.operator.CustomOp``,
whose ``forward`` receives ``is_train``; the running statistics are its auxiliary
states, updated in place as MXNet's own operator does). It hands the kernel the
arrays' memory through MXNet's C API (``MXNDArrayGetData``, as public as the rest of
``c_api.h``): the custom operator runs when its inputs are ready, so nothing waits.

What it buys: MXNet's ``BatchNorm`` after any operator but its own conv gets plain
NCHW arrays, on which oneDNN runs its slow reference-like kernel (``ncsp_bnorm``);
one thread, (32, 160, 24, 24), forward and backward: docs/engineering/speed.md.
What it costs: a custom operator's call, some 0.2 ms per layer forward and backward
hybridized, 0.6 ms imperatively (the Python call and a thread hand-over).
"""
import ctypes

import mxnet as mx
import numpy as np

from .. import native

__all__ = ["OP_TYPE", "batch_norm", "batch_norm_applies", "check_batch_norm_input"]

OP_TYPE = "cnn_base_batch_norm"
_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
_REQ_CODES = {"null": 0, "write": 1, "inplace": 1, "add": 2}
_MXNET = ctypes.CDLL(mx.libinfo.find_lib_path()[0])


def _address(A):
    """Where the NDArray ``A``'s values are (``MXNDArrayGetData``)."""
    pointer = ctypes.c_void_p()
    if _MXNET.MXNDArrayGetData(A.handle, ctypes.byref(pointer)) != 0:
        raise mx.base.MXNetError("MXNDArrayGetData failed for an array of the batch norm")
    return pointer


def _outer_c_inner(shape, axis):
    """``shape`` as (outer, C, inner) around ``axis``."""
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(shape[axis]),
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


def check_batch_norm_input(X, axis, channels):
    """ValueError unless the NDArray ``X`` has an axis ``axis`` (negative: from the end) holding
    ``channels`` entries (0: not known yet, any)."""
    if not -X.ndim <= axis < X.ndim:
        raise ValueError(f"batch norm over axis {axis} needs an input with more than "
                         f"{axis if axis >= 0 else -axis - 1} axes, got shape {X.shape}")
    if channels and X.shape[axis] != channels:
        raise ValueError(f"batch norm of {channels} channels got an input of shape {X.shape}, "
                         f"with {X.shape[axis]} along axis {axis}")


def batch_norm_applies(X):
    """Whether the kernel can normalize the NDArray ``X``: float32/64 on a CPU context, the kernels loaded."""
    return (native.c_functions() is not None and X.context.device_type == "cpu"
            and np.dtype(X.dtype) in _DTYPE_CODES)


class _BatchNorm(mx.operator.CustomOp):
    """One batch norm layer: forward and backward by the kernel, the mode from MXNet."""

    def __init__(self, eps, momentum, fix_gamma, use_global_stats, axis):
        super().__init__()
        self.eps, self.momentum, self.axis = eps, momentum, axis
        self.fix_gamma, self.use_global_stats = fix_gamma, use_global_stats
        self.batch_stats = False     # how the last forward normalized, for its backward
        self.ones = None             # gamma when it is fixed (fix_gamma), as numpy owns it

    def _gamma(self, gamma):
        """Where gamma's values are, or those of ones in its place when it is fixed."""
        if not self.fix_gamma:
            return _address(gamma)
        if self.ones is None or self.ones.shape != gamma.shape:
            self.ones = np.ones(gamma.shape, dtype=gamma.dtype)
        return ctypes.c_void_p(self.ones.ctypes.data)

    def forward(self, is_train, req, in_data, out_data, aux):
        X, gamma, beta = in_data
        Y, mean, invstd = out_data
        self.batch_stats = bool(is_train) and not self.use_global_stats
        code = _DTYPE_CODES[np.dtype(X.dtype)]
        status = native.c_functions().cnn_base_batch_norm_forward(
            code, *map(ctypes.c_int64, _outer_c_inner(X.shape, self.axis)),
            _address(X), self._gamma(gamma), *map(_address, (beta, aux[0], aux[1])),
            int(self.batch_stats),
            ctypes.c_double(self.eps), ctypes.c_double(self.momentum),
            *map(_address, (Y, mean, invstd)))
        assert status == 0, "the batch norm kernel refused a dtype the operator accepted"

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        X, gamma, _ = in_data
        reqs = (ctypes.c_int * 3)(*(_REQ_CODES[r] for r in req))
        if self.fix_gamma and reqs[1]:       # MXNet's gradient of a fixed gamma: zero
            if reqs[1] == _REQ_CODES["write"]:
                ctypes.memset(_address(in_grad[1]), 0, in_grad[1].size * np.dtype(X.dtype).itemsize)
            reqs[1] = 0
        status = native.c_functions().cnn_base_batch_norm_backward(
            _DTYPE_CODES[np.dtype(X.dtype)],
            *map(ctypes.c_int64, _outer_c_inner(X.shape, self.axis)),
            _address(out_grad[0]), _address(X), self._gamma(gamma),
            *map(_address, (out_data[1], out_data[2])),
            int(self.batch_stats), reqs, *map(_address, in_grad))
        assert status == 0, "the batch norm kernel refused a dtype the operator accepted"


@mx.operator.register(OP_TYPE)
class _BatchNormProp(mx.operator.CustomOpProp):
    """Inputs data, gamma, beta; auxiliary states the running mean and variance; outputs
    the normalized data and the mean and 1 / sqrt(var + eps) it used (for the backward)."""

    def __init__(self, eps="1e-5", momentum="0.9", fix_gamma="False", use_global_stats="False",
                 axis="1"):
        super().__init__(need_top_grad=True)
        self.eps, self.momentum, self.axis = float(eps), float(momentum), int(axis)   # may be < 0
        self.fix_gamma, self.use_global_stats = fix_gamma == "True", use_global_stats == "True"

    def list_arguments(self):
        return ["data", "gamma", "beta"]

    def list_outputs(self):
        return ["output", "mean", "invstd"]

    def list_auxiliary_states(self):
        return ["moving_mean", "moving_var"]

    def infer_shape(self, in_shape):
        X = in_shape[0]
        C = [X[self.axis % len(X)]]
        return [X, C, C], [X, C, C], [C, C]

    def infer_type(self, in_type):
        t = in_type[0]
        return [t] * 3, [t] * 3, [t] * 2

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        return [out_grad[0], in_data[0], in_data[1], out_data[1], out_data[2]]

    def create_operator(self, ctx, in_shapes, in_dtypes):
        return _BatchNorm(self.eps, self.momentum, self.fix_gamma, self.use_global_stats,
                          self.axis % len(in_shapes[0]))


def batch_norm(F, X, gamma, beta, running_mean, running_var, eps=1e-5, momentum=0.9,
               fix_gamma=False, use_global_stats=False, axis=1):
    """MXNet's ``BatchNorm(X, gamma, beta, running_mean, running_var, ...)``'s output, by the
    C++ kernel (``axis`` negative counts from the end). Call it where
    :func:`batch_norm_applies` (NDArray) or with the kernel loaded and no GPU (Symbol)."""
    Y = F.Custom(_plain(F, X), gamma, beta, running_mean, running_var, op_type=OP_TYPE, eps=eps,
                 momentum=momentum, fix_gamma=fix_gamma, use_global_stats=use_global_stats,
                 axis=axis)
    return _plain(F, Y[0])


def _plain(F, A):
    """``A`` in MXNet's plain row-major layout, which the kernel reads and writes.

    MXNet's own conv hands its output to the next operator in oneDNN's blocked layout,
    and to a custom operator as it is (and its backward may hand a gradient so):
    MXNet's reshape writes it out plain. On a plain array it is a view in a graph,
    a copy imperatively (1.4 ms for 12 MB)."""
    return F.reshape(A, shape=(-2,))
