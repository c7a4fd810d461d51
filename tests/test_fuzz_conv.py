"""A bounded, seeded slice of the conv kernel's fuzz (tests/fuzz_conv.py); `make fuzz` runs more."""
import numpy as np
import pytest

import fuzz_conv
from cnn_base import native

needs_kernel = pytest.mark.skipif(not native.loaded(),
                                  reason=f"the C++ kernel is not available: {native.status()}")


@needs_kernel
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_slice_kernel_output_and_gradients_equal_gluons_convolution(seed):
    report = fuzz_conv.run(seed=seed, cases=40)
    assert report.cases == 40
    # output, input and kernel gradients, each way
    assert report.checks >= len(fuzz_conv.paths()) * 3 * 40
    assert not report.failures, "\n".join(report.failures[:20])


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N, groups, c_i, c_o, H, W, kernel, strides, padding", [
    (2, 1, 64, 64, 9, 37, (3, 3), (2, 2), (1, 1)),     # the benchmark's strided 64-channel row
    (1, 2, 24, 20, 11, 30, (3, 5), (3, 2), (2, 1)),    # many channels, groups, mixed strides
], ids=["64-64-k3-s2", "groups2-k3x5-s3x2"])
def test_wide_strided_layers_equal_gluons_convolution(N, groups, c_i, c_o, H, W, kernel, strides,
                                                      padding, dtype):
    """More channels than the fuzz draws: sums of hundreds of terms, checked per element."""
    case = fuzz_conv.Case(seed=5, N=N, groups=groups, c_i=c_i, c_o=c_o, H=H, W=W, kernel=kernel,
                          strides=strides, padding=padding, dilation=(1, 1), dtype=dtype,
                          bias=True)
    report = fuzz_conv.Report()
    fuzz_conv.check_case(case, report)
    assert report.checks == fuzz_conv.checks_per_case(bias=True)
    assert not report.failures, "\n".join(report.failures)


def test_fuzz_cases_cover_tiles_bands_strides_groups_and_dtypes():
    rng = np.random.RandomState(0)
    cases = [fuzz_conv.random_case(rng, seed=n) for n in range(300)]
    assert {c.dtype for c in cases} == set(fuzz_conv.DTYPES)
    assert {c.bias for c in cases} == {True, False} and {c.special for c in cases} == {True, False}
    assert {c.layout for c in cases} == {"NCHW", "NHWC"}
    assert any(max(c.strides) > 1 for c in cases) and any(max(c.dilation) > 1 for c in cases)
    assert any(c.groups > 1 for c in cases) and any(c.c_o > 12 for c in cases)
    assert any(c.H > 64 for c in cases) and any(c.W > 32 for c in cases)     # bands, wide rows
    for c in cases:                        # every input holds a window
        assert all((c.H, c.W)[a] + 2 * c.padding[a] >= c.dilation[a] * (c.kernel[a] - 1) + 1
                   for a in range(2))


@needs_kernel
def test_fuzz_reports_a_kernel_gradient_off_by_one_term(monkeypatch):
    real = fuzz_conv._kernel

    def off_by_one_term(case, X, K, b, dY):
        results = real(case, X, K, b, dY)
        results[2][0, 0, 0, 0] += 1.0       # about one product dY * X more than Gluon's
        return results
    monkeypatch.setattr(fuzz_conv, "_kernel", off_by_one_term)
    report = fuzz_conv.run(seed=3, cases=20)
    rng = np.random.RandomState(3)
    float64 = sum(fuzz_conv.random_case(rng, seed=n).dtype == "float64" for n in range(20))
    assert float64 > 0
    assert len(report.failures) >= float64
    assert all("kernel gradient differs at (0, 0, 0, 0)" in line for line in report.failures)
