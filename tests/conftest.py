import cnn_base  # noqa: F401  (first: on Python 3.12 it makes mxnet importable, numpy.bool)
import mxnet as mx
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture(params=["kernel", "ops"])
def pool_backend(request):
    """Run a pooling test twice: with the C++ kernel and with MXNet operators."""
    from cnn_base import native

    if request.param == "kernel" and not native.loaded():
        pytest.skip(f"the C++ pooling kernel is not available: {native.status()}")
    old = native.set_enabled(request.param == "kernel")
    yield request.param
    native.set_enabled(old)


@pytest.fixture(params=["kernel", "ops"])
def conv_backend(request):
    """Run a convolution test twice: with the C++ kernel (where it applies) and with MXNet operators.

    With "kernel", our Conv2D takes the kernel where
    ``functional.native_conv_fits`` says so, MXNet operators elsewhere; with
    "ops", MXNet operators always.
    """
    from cnn_base import native

    if request.param == "kernel" and not native.loaded():
        pytest.skip(f"the C++ convolution kernel is not available: {native.status()}")
    old = native.set_enabled(request.param == "kernel")
    yield request.param
    native.set_enabled(old)


@pytest.fixture(params=[True, False], ids=["blas", "no_blas"])
def blas(request, monkeypatch):
    """Run a routing test with the conv kernel's BLAS found (skipped when it is not) and as if
    it were not (``native.multiplies_with_blas`` patched to False): the blocks' two rules."""
    from cnn_base import native

    if request.param and not native.multiplies_with_blas():
        pytest.skip(f"the conv kernel found no BLAS: {native.status()}")
    if not request.param:
        monkeypatch.setattr(native, "multiplies_with_blas", lambda: False)
    return request.param
