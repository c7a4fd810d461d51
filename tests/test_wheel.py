"""cnn_base as another project's dependency: `python -m build`, then the wheel in a fresh venv.

The wheel is installed into a new virtual environment (pip takes mxnet and the rest from its
cache or the package index), its site-packages is made read-only, and from a folder that is
not the clone a fresh process imports cnn_base, sees the C++ kernel in use (built on first use
into an empty per-user cache, where a compiler exists), trains a few steps of a small model
made of our blocks, exports it, and another process re-imports it. `cnn-base reproduce-blog`
runs from the venv's bin/. Uninstalling leaves nothing of cnn_base in site-packages.
Slow (minutes): marked `wheel`, so `pytest -m wheel` runs it alone and `-m "not wheel"` skips it.
"""
import os
import pathlib
import stat
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

from cnn_base import native

pytestmark = pytest.mark.wheel

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(argv, cwd, timeout=900, **env_vars):
    env = dict(os.environ, MPLBACKEND="Agg", **env_vars)
    for name in ("PYTHONPATH", "CNN_BASE_NATIVE", "VIRTUAL_ENV"):
        env.pop(name, None)
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel made from it by `python -m build`."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)
    (sdist,) = out.glob("cnn_base-*.tar.gz")
    (wheel,) = out.glob("cnn_base-*.whl")
    return sdist, wheel


def test_sdist_holds_the_tests_with_their_helpers_the_license_and_the_kernel_sources(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    tests = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert {"tests/conftest.py", "tests/reference.py"} <= tests <= names
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml", "Makefile",
            "cnn_base/csrc/pool2d.cc"} <= names
    assert {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")} <= names


def test_wheel_holds_sources_license_and_command_but_no_compiled_library(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    assert "cnn_base/csrc/pool2d.cc" in names and "cnn_base/cli/__init__.py" in names
    assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names)
    assert not [n for n in names if n.endswith(".so")]
    assert "cnn-base = cnn_base.cli:main" in entry_points


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _make_read_only(folder):
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


TRAIN_AND_EXPORT = """
import sys
import cnn_base as cb
import mxnet as mx
from mxnet import autograd, gluon, nd

print(cb.__file__)
print(cb.native.status())
mx.random.seed(0)
net = gluon.nn.HybridSequential()
net.add(cb.Conv2D(4, kernel_size=3, padding=1, in_channels=1), gluon.nn.Activation("relu"),
        cb.MaxPool2D(2, strides=2), cb.Conv2D(4, kernel_size=3, in_channels=4),
        cb.AvgPool2D(2), gluon.nn.Dense(3))
net.initialize(mx.init.Xavier())
net.hybridize()
X = nd.random.uniform(shape=(8, 1, 12, 12))
y = nd.array([0, 1, 2, 0, 1, 2, 0, 1])
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
losses = []
for step in range(5):
    with autograd.record():
        loss = loss_fn(net(X), y)
    loss.backward()
    trainer.step(X.shape[0])
    losses.append(loss.mean().asscalar())
print(" ".join(f"{v:.6f}" for v in losses))
net.export("model")
nd.save("X.nd", [X, net(X)])
"""

REIMPORT = """
import warnings
import cnn_base
from mxnet import gluon, nd
X, Y = nd.load("X.nd")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    net = gluon.SymbolBlock.imports("model-symbol.json", ["data"], "model-0000.params")
print(float(nd.abs(net(X) - Y).max().asscalar()))
"""


def test_wheel_in_a_fresh_read_only_venv_builds_the_kernel_trains_exports_and_runs_commands(
        dist, tmp_path):
    _, wheel = dist
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", wheel], cwd=tmp_path)
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    before = _tree(site)
    _make_read_only(site)
    work = tmp_path / "elsewhere"      # not the clone: only the installed package is seen
    work.mkdir()
    cache = tmp_path / "cache"          # empty: the kernel builds on first use
    try:
        done = run([python, "-c", TRAIN_AND_EXPORT], cwd=work, CNN_BASE_CACHE=cache)
        location, status, losses = done.stdout.splitlines()
        assert pathlib.Path(location).is_relative_to(site)
        if native.compiler() is not None:
            assert status.startswith("C++ kernel (cnn_base_pool2d, loaded from"), status
            # the first use builds the kernels and says so, in one line, and nothing else
            assert str(cache) in status
            assert done.stderr.splitlines() == [
                f"cnn_base: building cnn_base's C++ kernels once, about a minute (into {cache}); "
                f"CNN_BASE_NATIVE=0 skips them"], done.stderr
            with open(work / "model-symbol.json") as f:
                assert "cnn_base_pool2d" in f.read()
        losses = [float(v) for v in losses.split()]
        assert len(losses) == 5 and losses[-1] < losses[0]

        error = run([python, "-c", REIMPORT], cwd=work, CNN_BASE_CACHE=cache).stdout
        assert float(error) < 1e-5

        blog = run([venv / "bin" / "cnn-base", "reproduce-blog"], cwd=work,
                   CNN_BASE_CACHE=cache).stdout
        assert "batch 10, loss 0.004" in blog and "# 5 为什么是卷积神经网络" in blog
        assert _tree(site) == before          # nothing written where the package lives
    finally:
        for path in [site, *site.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)

    run([python, "-m", "pip", "uninstall", "-y", "-q", "cnn_base"], cwd=tmp_path)
    assert not [p for p in site.iterdir() if p.name.lower().startswith("cnn_base")]
    assert not (venv / "bin" / "cnn-base").exists()
