"""A bounded, seeded slice of the batch norm kernel's fuzz (tests/fuzz_batch_norm.py); `make fuzz` runs more."""
import pytest

import fuzz_batch_norm
from cnn_base import native


@pytest.mark.skipif(not native.loaded(), reason=f"the C++ kernels are not available: {native.status()}")
@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_slice_batch_norm_equals_numpy_and_gluon(seed):
    report = fuzz_batch_norm.run(seed=seed, cases=60)
    assert report.cases == 60
    assert report.checks >= 6 * 60      # six results against NumPy, more against Gluon
    assert not report.failures, "\n".join(report.failures[:20])


def test_fuzz_cases_cover_modes_axes_dtypes_and_special_values():
    import numpy as np
    rng = np.random.RandomState(0)
    cases = [fuzz_batch_norm.random_case(rng, seed=n) for n in range(200)]
    assert {c.mode for c in cases} == {"training", "prediction", "global-stats"}
    assert {c.hybridize for c in cases} == {"imperative", "hybrid", "static"}
    assert {c.dtype for c in cases} == {"float32", "float64"}
    assert any(c.axis < 0 for c in cases) and any(c.special for c in cases)
    assert any(c.shape[0] == 1 for c in cases) and not all(c.scale for c in cases)
