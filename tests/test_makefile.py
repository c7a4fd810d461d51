"""The Makefile's interpreter check and its rebuild of a .venv made by another Python (dry runs)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args):
    # as a user types it, also when the tests themselves run under `make test`
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "-n", "--no-print-directory", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def _fake_python(folder, version):
    """An executable that answers the Makefile's question as Python ``version`` would."""
    path = folder / f"python{version}"
    path.write_text(f"#!/bin/sh\necho '{version} {path}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("version", ["3.13.0", "3.9.18"])
def test_an_unsupported_python_is_refused_in_one_line_before_anything_is_installed(tmp_path,
                                                                                   version):
    done = _make("demo", f"PYTHON={_fake_python(tmp_path, version)}", f"VENV={tmp_path / 'v'}")
    assert done.returncode != 0
    (line,) = [l for l in done.stderr.splitlines() if l.strip()]
    assert "cnn_base needs Python 3.10, 3.11 or 3.12" in line and f"is Python {version}" in line
    assert "make demo PYTHON=python3.11" in line
    assert done.stdout == ""                                  # nothing would have run
    assert not (tmp_path / "v").exists()


def test_a_python_that_does_not_run_is_named_as_such(tmp_path):
    done = _make("test", f"PYTHON={tmp_path / 'nothing'}")
    assert done.returncode != 0
    assert "is not a Python that runs" in done.stderr


def test_make_clean_needs_no_supported_python(tmp_path):
    assert _make("clean", f"PYTHON={_fake_python(tmp_path, '3.13.0')}").returncode == 0


def _venv_with_stamp(tmp_path, stamp):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed").write_text(stamp + "\n")
    os.utime(venv / ".installed", None)        # newer than setup.cfg and pyproject.toml
    return venv


def test_a_venv_made_by_another_python_is_made_anew(tmp_path):
    want = f"{sys.version.split()[0]} {sys.executable}"
    venv = _venv_with_stamp(tmp_path, "3.10.13 /somewhere/else/python3.10")
    done = _make("venv", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert done.returncode == 0, done.stderr
    assert f"rm -rf {venv}" in done.stdout and "-m venv" in done.stdout
    assert f'echo "{want}" > {venv}/.installed' in done.stdout


def test_a_venv_made_by_the_same_python_is_reused(tmp_path):
    venv = _venv_with_stamp(tmp_path, f"{sys.version.split()[0]} {sys.executable}")
    done = _make("venv", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert done.returncode == 0, done.stderr
    assert "-m venv" not in done.stdout and "pip install" not in done.stdout


def test_demo_installs_the_package_alone_and_test_adds_the_test_extra(tmp_path):
    venv = _venv_with_stamp(tmp_path, "3.10.13 /somewhere/else/python3.10")   # made anew
    demo = _make("demo", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert demo.returncode == 0, demo.stderr
    assert "pip install -q -e .\n" in demo.stdout and ".[test]" not in demo.stdout
    assert "draw-figures --out out --animate" in demo.stdout
    test = _make("test", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert test.returncode == 0, test.stderr
    assert "pip install -q -e .\n" in test.stdout and "pip install -q -e '.[test]'" in test.stdout


def test_make_help_lists_every_target_and_is_what_make_alone_runs(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()[1:]
    targets = [t for t in phony if t != "FORCE"]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    for args in (["help"], []):     # make alone needs no Python and installs nothing
        done = subprocess.run(["make", "--no-print-directory", *args,
                               f"PYTHON={_fake_python(tmp_path, '3.13.0')}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        listed = [line.split()[0] for line in done.stdout.splitlines()[1:]]
        assert sorted(listed) == sorted(targets)
        assert all(len(line.split()) > 2 for line in done.stdout.splitlines()[1:])
