"""Every notebook in ``notebooks/`` runs top to bottom, headless, and is stored clean.

The notebooks explain and draw, with only the one or two checks a learner should see;
the claims behind their prose (custom versus built-in, formulas versus layers, 1x1 versus
matmul, the exercises) are checked in full by ``tests/test_notebook_claims.py``.

The kernel is started from ipykernel's native kernelspec written into a temporary
directory, so its ``argv`` names this interpreter (``sys.executable``) whatever
``python3`` kernelspecs the user or system has installed.
"""
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
TIMEOUT = 120       # per cell, seconds; a whole notebook should take well under a minute
WALL_LIMIT = 60     # per notebook, seconds (the budget on 2 CPU cores)
NEEDS_FASHION_MNIST = {"06_lenet.ipynb"}   # trains on the real data set: skipped without it


def _skip_without_fashion_mnist():
    from cnn_base.training.data import DataNotFoundError, find_fashion_mnist

    try:
        for train in (True, False):
            find_fashion_mnist(train, download=False)
    except DataNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): "
                    f"{str(e)[:120]}")


def test_there_is_a_notebook_per_part_of_the_chapter():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    kernels = tmp_path_factory.mktemp("kernels")
    kernelspec.write_kernel_spec(kernels / KERNEL_NAME)
    return KernelSpecManager(kernel_dirs=[str(kernels)])


@pytest.fixture
def isolated_jupyter(tmp_path, monkeypatch):
    """Runtime files and IPython's profile go to a temporary directory, not $HOME."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # %matplotlib inline in each notebook picks the backend; no display is needed
    monkeypatch.delenv("MPLBACKEND", raising=False)


def _outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs or execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, kernel_spec_manager, isolated_jupyter):
    if path.name in NEEDS_FASHION_MNIST:
        _skip_without_fashion_mnist()
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_spec_manager)
    assert km.kernel_spec.argv[0] == sys.executable
    client = nbclient.NotebookClient(
        nb, km=km, timeout=TIMEOUT, kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start

    outputs = _outputs(nb)
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    images = [out for out in outputs
              if out.output_type in ("display_data", "execute_result") and "image/png" in out.data]
    assert images, f"{path.name} drew no figure (no image/png output)"
    assert elapsed < WALL_LIMIT, f"{path.name} took {elapsed:.1f} s, over the {WALL_LIMIT} s budget"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_teaches_rather_than_tests(path):
    """A few checks a learner should see ("this is the blog's 19"), the rest in
    tests/test_notebook_claims.py; no library function defined again in the notebook."""
    import re

    import cnn_base

    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    checks = [line for line in code.splitlines()
              if line.strip().startswith("assert") or "np.testing.assert" in line]
    assert len(checks) <= 3, f"{path.name}: {len(checks)} checks; move them to test_notebook_claims.py"
    redefined = set(re.findall(r"^\s*(?:def|class) (\w+)", code, re.M)) & set(cnn_base.__all__)
    assert not redefined, f"{path.name} redefines library code: {sorted(redefined)}"
