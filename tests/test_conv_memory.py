"""The conv kernel's memory follows the output, not the padding (windows with gaps between them).

A stride longer than the window leaves padded rows and columns that no
window reads; the kernel's buffers leave them out (csrc/conv2d.cc,
``skip_gaps``). Before, ``Conv2D(1, 3, strides=10000, padding=10000)`` on a
3x3 input padded 20003 x 20003 planes (1.6 GB) for a 3x3 output and failed
with "out of memory" under a 4 GB address-space limit, where Gluon's Conv2D
runs.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fuzz_conv
from cnn_base import native

needs_kernel = pytest.mark.skipif(not native.loaded(),
                                  reason=f"the C++ kernel is not available: {native.status()}")


@needs_kernel
@pytest.mark.parametrize("N, c_i, c_o, H, W, kernel, strides, padding, dilation", [
    (2, 3, 5, 10, 11, (1, 1), (3, 3), (2, 2), (1, 1)),        # 1x1 windows, two-cell gaps
    (1, 2, 4, 13, 9, (2, 2), (5, 4), (4, 3), (1, 1)),         # padding past the window
    (2, 1, 3, 17, 15, (3, 3), (7, 6), (6, 5), (2, 2)),        # dilated span 5 < stride
    (1, 4, 6, 12, 14, (3, 2), (1, 6), (0, 5), (1, 1)),        # gaps along one axis only
    (1, 1, 1, 3, 3, (3, 3), (1000, 1000), (1000, 1000), (1, 1)),  # one window holds the input
], ids=["k1-s3", "k2-s5x4-p4x3", "k3-d2-s7x6", "gaps-in-w-only", "s1000-p1000"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_windows_with_gaps_between_them_equal_gluons_convolution(N, c_i, c_o, H, W, kernel,
                                                                 strides, padding, dilation,
                                                                 dtype):
    case = fuzz_conv.Case(seed=3, N=N, groups=1, c_i=c_i, c_o=c_o, H=H, W=W, kernel=kernel,
                          strides=strides, padding=padding, dilation=dilation, dtype=dtype,
                          bias=True)
    report = fuzz_conv.Report()
    fuzz_conv.check_case(case, report)
    assert report.checks == fuzz_conv.checks_per_case(bias=True)
    assert not report.failures, "\n".join(report.failures)


SCRIPT = textwrap.dedent("""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import numpy as np
    import cnn_base as cb
    from mxnet import autograd, nd
    from mxnet.gluon import nn
    def peak_mb():
        # this process's own peak (VmHWM of /proc/self/status, KB): getrusage's ru_maxrss
        # keeps the parent's peak across fork and exec (3.3 GB after the suite's networks)
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmHWM:"))
        return int(line.split()[1]) // 1024

    results, peaks = [], []
    for Block in (cb.Conv2D, nn.Conv2D):      # ours first: the peak after it is ours
        conv = Block(1, 3, strides=10000, padding=10000, in_channels=1)
        conv.initialize()
        conv.weight.set_data(nd.arange(9).reshape((1, 1, 3, 3)))
        conv.bias.set_data(nd.array([0.5]))
        X = nd.arange(9).reshape((1, 1, 3, 3))
        X.attach_grad()
        with autograd.record():
            Y = conv(X)
        Y.backward(nd.arange(9).reshape((1, 1, 3, 3)))
        results.append([Y.asnumpy(), X.grad.asnumpy(), conv.weight.grad().asnumpy(),
                        conv.bias.grad().asnumpy()])
        peaks.append(peak_mb())
    for ours, gluons in zip(*results):
        np.testing.assert_allclose(ours, gluons, rtol=1e-6)
    assert cb.native.loaded(), cb.native.status()        # the kernel's memory is measured
    print("peak MB after ours, after Gluon's", *peaks)
""")


@needs_kernel
def test_stride_and_padding_of_10000_run_in_4_gb_as_gluons_conv_does():
    """The regression: the whole forward and backward under a 4 GB limit, equal to Gluon's."""
    env = dict(os.environ, CNN_BASE_NATIVE="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, gluons = map(int, done.stdout.split()[-2:])
    assert ours < 1024, f"peak resident memory {ours} MB for a 3x3 output (Gluon's: {gluons})"
