"""gluon.nn's blocks and ours in one model: no process dies, and the numbers are the built-ins'.

MXNet 1.9.1's oneDNN slice divides by zero (SIGFPE) when it cuts the channel
axis of an array that a built-in oneDNN op left in its blocked layout, at a
channel count that is not a multiple of the block; our graphs once did that
to a built-in conv's output, and the process died at the first backward
(``functional._slice`` keeps every graph of ours off that slice). Each stack
below runs in its own process (tests/mixed_worker.py), so such a crash fails
one test instead of killing the run: every route of ours (the C++ kernel, the
gathered rows, im2col, the 1x1 product, both pooling paths, global pooling)
after and before built-in convs, with activations, batch norm and pools
between, imperative and hybridized, forward and backward, with our kernels
and with MXNet operators only. Each combination is compared with the same
stack of built-ins and the same parameters.
"""
import os
import subprocess
import sys

import pytest

INPUT_SHAPE = (2, 3, 12, 12)
MODES = ("imperative", "hybridize", "static")


def _conv(side, c, k, **kw):
    return (side, "Conv2D", (c, k), kw)


RELU = ("nn", "Activation", ("relu",), {})
BN = ("nn", "BatchNorm", (), {})

# name: layers; ('cb', ...) is ours in the mixed stack and the built-in in the reference.
# A conv followed by batch norm has no bias, as in real networks: that bias's gradient
# is zero up to rounding, which no relative tolerance can compare.
STACKS = {
    # built-in -> ours, every conv route (with the kernels: kernel up to 64 channels per group)
    "builtin>kernel-or-rows": [_conv("nn", 64, 3, padding=1), RELU, _conv("cb", 32, 3, padding=1)],
    "builtin>rows": [_conv("nn", 64, 3, padding=1), RELU, _conv("cb", 128, 3, padding=1)],
    "builtin>rows-k5": [_conv("nn", 16, 3, padding=1), RELU, _conv("cb", 96, 5)],
    "builtin>depthwise-im2col": [_conv("nn", 64, 3, padding=1), RELU,
                                 _conv("cb", 64, 3, padding=1, groups=64)],
    "builtin>grouped": [_conv("nn", 48, 3, padding=1, use_bias=False), BN, RELU,
                        _conv("cb", 48, 3, padding=1, groups=3)],
    "builtin>1x1": [_conv("nn", 64, 3, padding=1, use_bias=False), BN, RELU, _conv("cb", 128, 1)],
    "builtin>strided": [_conv("nn", 64, 3, padding=1, use_bias=False), BN, RELU,
                        _conv("cb", 64, 3, strides=2, padding=1)],
    "builtin>dilated": [_conv("nn", 20, 3, padding=1), RELU,
                        _conv("cb", 24, 3, padding=2, dilation=2)],
    "builtin-pool>ours": [_conv("nn", 64, 3, padding=1), ("nn", "MaxPool2D", (2,), {}),
                          _conv("cb", 128, 3, padding=1)],
    # built-in -> our pools, overlapping and not, padded, unit stride, global
    "builtin>max-k3s2p1": [_conv("nn", 64, 3, padding=1), ("cb", "MaxPool2D", (3, 2, 1), {})],
    "builtin>avg-k3s2p1": [_conv("nn", 40, 3, padding=1), RELU,
                           ("cb", "AvgPool2D", (3, 2, 1), {})],
    "builtin>max-k3s1p1": [_conv("nn", 24, 3, padding=1), RELU,
                           ("cb", "MaxPool2D", (3, 1, 1), {})],
    "builtin>max-k2": [_conv("nn", 24, 3, padding=1, use_bias=False), BN, ("cb", "MaxPool2D", (2,), {})],
    "builtin>global": [_conv("nn", 40, 3, padding=1), RELU, ("cb", "GlobalAvgPool2D", (), {}),
                       ("nn", "Flatten", (), {})],
    # ours -> built-in
    "kernel>builtin": [_conv("cb", 64, 3, padding=1), _conv("nn", 128, 3, padding=1)],
    "rows>builtin": [_conv("cb", 128, 3, padding=1), RELU, _conv("nn", 64, 3, padding=1)],
    "1x1>builtin": [_conv("nn", 16, 3, use_bias=False), _conv("cb", 96, 1, use_bias=False), BN, RELU, _conv("nn", 8, 3)],
    "pools>builtin": [_conv("nn", 24, 3, padding=1), ("cb", "MaxPool2D", (3, 2, 1), {}),
                      _conv("nn", 40, 3, padding=1), ("cb", "AvgPool2D", (2,), {}),
                      _conv("nn", 16, 1)],
    # a sandwich of both, as a partly converted model is
    "sandwich": [_conv("nn", 32, 3, padding=1, use_bias=False), BN, RELU, _conv("cb", 64, 3, padding=1, use_bias=False), BN,
                 RELU, ("nn", "MaxPool2D", (2,), {}), _conv("cb", 80, 3, padding=1),
                 _conv("nn", 96, 3, padding=1), ("cb", "MaxPool2D", (3, 2, 1), {}),
                 _conv("cb", 32, 1), ("nn", "GlobalAvgPool2D", (), {})],
}

WORKER = os.path.join(os.path.dirname(__file__), "mixed_worker.py")


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_mixed_stack_runs_and_matches_builtins(stack):
    """Every backend and mode of the stack: the process lives and ours equals the built-ins."""
    try:
        done = subprocess.run([sys.executable, WORKER, stack], capture_output=True, text=True,
                              timeout=240)
    except subprocess.TimeoutExpired as e:       # run() has killed the worker
        pytest.fail(f"{stack}: no answer in {e.timeout} s; it printed {e.stdout!r}")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, (f"{stack} exited {done.returncode} after {lines}; "
                                  f"stderr: {done.stderr[-2000:]}")
    ran = [line for line in lines if line.startswith("ok ")]
    expected = len(MODES) * (2 - any(line.startswith("skip kernel") for line in lines))
    assert len(ran) == expected, lines
