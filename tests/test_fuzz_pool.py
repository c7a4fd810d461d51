"""A bounded, seeded slice of the pooling fuzz (tests/fuzz_pool.py); `make fuzz` runs more."""
import pytest

import fuzz_pool


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_slice_kernel_ops_numpy_and_gluon_agree(seed):
    report = fuzz_pool.run(seed=seed, cases=60)
    assert report.cases == 60
    backends = 2 if report.kernel else 1          # kernel and MXNet-op path, or ops alone
    assert report.checks >= backends * 60         # every case compared each way to NumPy
    assert not report.failures, "\n".join(report.failures[:20])


def test_fuzz_cases_cover_every_dtype_mode_and_special_values():
    import numpy as np
    rng = np.random.RandomState(0)
    cases = [fuzz_pool.random_case(rng, seed=n) for n in range(200)]
    assert {c.dtype for c in cases} == set(fuzz_pool.DTYPES)
    assert {c.mode for c in cases} == {"max", "avg"}
    assert {c.values for c in cases} == {"normal", "ties", "special"}
    assert any(c.ceil_mode for c in cases) and any(c.hybridize for c in cases)
    assert {c.layout for c in cases} == {"NCHW", "NHWC"}
    special = next(c for c in cases if c.values == "special" and c.mode == "max")
    X = fuzz_pool.make_input(special, np.random.RandomState(special.seed))
    assert X.dtype == np.dtype(special.dtype)


def test_fuzz_slice_of_global_pooling_by_the_kernel_agrees_with_numpy():
    from cnn_base import native
    if not native.loaded():
        pytest.skip(f"the C++ pooling kernel is not available: {native.status()}")
    report = fuzz_pool.Report()
    fuzz_pool.global_calls(report, seed=4, calls=40)
    assert report.checks == 40
    assert not report.failures, "\n".join(report.failures[:20])
