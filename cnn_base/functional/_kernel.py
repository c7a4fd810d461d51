"""Calling our C++ operators (:mod:`cnn_base.native`) from NDArray and Symbol code alike."""
import os

from mxnet import autograd, nd
from mxnet.base import MXNetError

def _kernel_input(F, A, grads_written=False):
    """``A`` as an input of one of our C++ operators, whose backward overwrites gradients.

    A gradient that may be *added to* needs ``identity(A)`` in front, whose backward
    honours ``grad_req='add'``: that of a leaf (an NDArray with a gradient attached, a
    Symbol variable: the data, the parameters). An intermediate array's gradient is a
    fresh buffer that MXNet sums over its consumers itself, so ``A`` goes in as it is
    (:func:`_is_intermediate`); so does anything when nothing records (inference). What
    it buys: one copy of the input forward and one of its gradient backward per layer,
    about a third of a max pool's time on a 48 x 48 plane (issue 13 for inference).

    ``grads_written``: the caller knows that the NDArray ``A``'s gradient, if it has one, is
    written, never added to (a Gluon Parameter whose ``grad_req`` is not 'add', asked at this
    call), so ``A`` goes in as it is. Only for an NDArray: a graph is built once and must stay
    right if ``grad_req`` changes after. What it buys: no copy of the weights and of their
    gradients each imperative step, ~10 ms of a 450-760 ms ResNet-18 step (MXNet's profiler).
    """
    if isinstance(A, nd.NDArray) and (not autograd.is_recording() or
                                      (grads_written and not _adds_in_place())):
        return A
    return A if _is_intermediate(A) else F.identity(A)


def _needs_grad(A):
    """Whether autograd may ask for the NDArray ``A``'s gradient in the recording going on:
    it has one attached, or a recorded operator made it. False for an array the recording
    has not taken in (the data at a network's first layer): MXNet then tells an operator's
    backward that the gradient is not wanted (req null), which our C++ operators are not
    told; they get ``input_grad=False`` instead and skip it. True for a Symbol (a graph is
    built once, for inputs with and without gradients) and when nothing records.
    """
    if not isinstance(A, nd.NDArray) or not autograd.is_recording() or A.grad is not None:
        return True
    try:
        history = autograd.get_symbol(A)      # raises for an array outside the recording
    except MXNetError:
        return False
    return history.get_children() is not None    # an operator's output, not a variable


def _adds_in_place():
    """Whether MXNet may sum a variable's gradients in place by adding into its buffer
    (``MXNET_EXEC_ENABLE_ADDTO``), whatever its ``grad_req``."""
    return os.environ.get("MXNET_EXEC_ENABLE_ADDTO", "0") not in ("", "0")


def _is_intermediate(A):
    """Whether ``A`` is an operator's output whose gradient MXNet sums from its consumers,
    never adds into (an NDArray without an attached gradient, a Symbol that is no variable).

    With ``MXNET_EXEC_ENABLE_ADDTO`` MXNet may sum gradients in place by adding: nothing
    counts as intermediate then.
    """
    if _adds_in_place():
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
