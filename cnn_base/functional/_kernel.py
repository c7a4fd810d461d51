"""Calling our C++ operators (:mod:`cnn_base.native`) from NDArray and Symbol code alike."""
import os

from mxnet import autograd, nd

def _kernel_input(F, A):
    """``A`` as an input of one of our C++ operators, whose backward overwrites gradients.

    A gradient that may be *added to* needs ``identity(A)`` in front, whose backward
    honours ``grad_req='add'``: that of a leaf (an NDArray with a gradient attached, a
    Symbol variable: the data, the parameters). An intermediate array's gradient is a
    fresh buffer that MXNet sums over its consumers itself, so ``A`` goes in as it is
    (:func:`_is_intermediate`); so does anything when nothing records (inference). What
    it buys: one copy of the input forward and one of its gradient backward per layer,
    about a third of a max pool's time on a 48 x 48 plane (issue 13 for inference).
    """
    if isinstance(A, nd.NDArray) and not autograd.is_recording():
        return A
    return A if _is_intermediate(A) else F.identity(A)


def _is_intermediate(A):
    """Whether ``A`` is an operator's output whose gradient MXNet sums from its consumers,
    never adds into (an NDArray without an attached gradient, a Symbol that is no variable).

    With ``MXNET_EXEC_ENABLE_ADDTO`` MXNet may sum gradients in place by adding: nothing
    counts as intermediate then.
    """
    if os.environ.get("MXNET_EXEC_ENABLE_ADDTO", "0") not in ("", "0"):
        return False
    if isinstance(A, nd.NDArray):
        return A.grad is None
    return A.get_children() is not None


def _native_channel_last(F, op, X, *inputs, **settings):
    """An NCHW kernel ``op`` on an NHWC batch: ``X`` transposed in, ``op`` run, the output back.

    ``inputs``: the operator's other inputs (the conv's weight, already
    transposed, and bias). For max pooling and for Conv2D. The transposes add a
    pass over the input and one over the output, forward and backward; that is
    still faster than the MXNet-operator pooling of NHWC and than Gluon's NHWC
    max pooling, and the channel-last gather of :func:`conv2d` measured
    1.5-20x slower than that on the layers the conv kernel takes (depthwise
    56 x 56: 518 ms against 28 ms; docs/engineering/speed.md). A transpose's backward
    honours ``grad_req='add'``, so ``X`` needs no ``identity``.
    """
    Y = op(F.transpose(X, axes=(0, 3, 1, 2)), *inputs, **settings)
    return F.transpose(Y, axes=(0, 2, 3, 1))
