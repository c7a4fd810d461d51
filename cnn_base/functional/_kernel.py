"""Calling our C++ operators (:mod:`cnn_base.native`) from NDArray and Symbol code alike."""
from mxnet import autograd, nd

def _kernel_input(F, A):
    """``A`` as an input of one of our C++ operators, whose backward overwrites gradients.

    While autograd records, or inside a graph (where MXNet runs it in place), that
    is ``identity(A)``: its backward honours ``grad_req='add'``. An imperative call
    that records nothing has no backward, so ``A`` itself goes in. What it buys:
    inference does not copy the whole input on every call (a 0.5 GiB float16
    plane cost 0.5 GiB more than Gluon's pooling; issue 13).
    """
    if isinstance(A, nd.NDArray) and not autograd.is_recording():
        return A
    return F.identity(A)


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
