"""One stack of gluon.nn blocks and ours, run in its own process by tests/test_mixed_blocks.py.

A crash of MXNet's oneDNN code (SIGFPE) kills this process, not the test run.
Usage: ``python tests/mixed_worker.py STACK [BACKENDS]`` where STACK is a key of
``test_mixed_blocks.STACKS``. For each backend (our C++ kernels, then MXNet
operators only) and each mode (imperative, ``hybridize()``, static
``hybridize``), the stack with our blocks in it and the same stack of
built-ins only, with the same parameters, run forward and backward on the
same input and upstream gradient; the output, the input's gradient and every
parameter's gradient must agree. One line per combination: ``ok BACKEND
MODE`` or ``mismatch BACKEND MODE what``; exit 1 on any mismatch.
"""
import os
import sys

import cnn_base as cb  # noqa: F401  (first: on Python 3.12 it makes mxnet importable)
import mxnet as mx
import numpy as np
from mxnet import autograd, nd
from mxnet.gluon import nn

sys.path.insert(0, os.path.dirname(__file__))
from test_mixed_blocks import INPUT_SHAPE, MODES, STACKS  # noqa: E402

# float32, two ways of summing the same products: relative to the largest value
RTOL = 1e-4


def build(layers, ours):
    """The stack as a HybridSequential: ('cb', ...) layers are ours when ``ours``."""
    net = nn.HybridSequential()
    for side, name, args, kwargs in layers:
        library = cb if side == "cb" and ours else nn
        net.add(getattr(library, name)(*args, **kwargs))
    return net


def run(net, X, dY):
    """Output, input gradient and parameter gradients of one recorded pass."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = net(X)
    Y.backward(dY)
    grads = [p.grad().asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
    return [Y.asnumpy(), X.grad.asnumpy()] + grads


def compare(stack, backend, mode):
    """Whether ours and the built-ins agree on this stack, backend and mode; None if so."""
    cb.native.set_enabled(backend == "kernel")
    mx.random.seed(0)
    builtin, mixed = build(STACKS[stack], False), build(STACKS[stack], True)
    builtin.initialize(mx.init.Xavier())
    mixed.initialize()
    X = nd.random.normal(shape=INPUT_SHAPE)
    builtin(X), mixed(X)                               # deferred shapes
    for ours, theirs in zip(mixed.collect_params().values(), builtin.collect_params().values()):
        ours.set_data(theirs.data())
    if mode != "imperative":
        for net in (builtin, mixed):
            net.hybridize(static_alloc=mode == "static", static_shape=mode == "static")
    dY = nd.random.normal(shape=builtin(X).shape)
    names = ["output", "input gradient"] + [f"{n} gradient" for n, p in
                                            builtin.collect_params().items() if p.grad_req != "null"]
    for name, a, b in zip(names, run(mixed, X, dY), run(builtin, X, dY)):
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
        if not err <= RTOL:
            return f"{name}: relative error {err:.2e} > {RTOL}"
    return None


def main(stack, backends=("kernel", "ops")):
    failed = False
    for backend in backends:
        if backend == "kernel" and not cb.native.loaded():
            print(f"skip kernel: {cb.native.status()}", flush=True)
            continue
        for mode in MODES:
            problem = compare(stack, backend, mode)
            failed |= problem is not None
            print(f"ok {backend} {mode}" if problem is None
                  else f"mismatch {backend} {mode} {problem}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], *sys.argv[2:3]))
