"""The ``cnn-base`` command and ``python -m cnn_base``: dispatch, help without MXNet, one-line errors."""
import os
import pathlib
import subprocess
import sys

import pytest

from cnn_base.cli import COMMANDS

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"
CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "cnn-base"


def run(*argv, **kwargs):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(list(argv), capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=120, **kwargs)


def test_console_script_is_installed_next_to_the_interpreter():
    assert CONSOLE_SCRIPT.exists(), "pip install should create the cnn-base console script"


def test_help_lists_every_command_once():
    result = run(str(CONSOLE_SCRIPT), "--help")
    assert result.returncode == 0 and result.stderr == ""
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


def test_every_command_has_a_module_and_a_script_of_the_same_name():
    for name, (module_name, _) in COMMANDS.items():
        assert name == module_name.replace("_", "-")
        assert (SCRIPTS / f"{module_name}.py").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help_does_not_import_mxnet(command):
    result = run(sys.executable, "-X", "importtime", "-m", "cnn_base", command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: cnn-base {command} ")
    assert "``" not in result.stdout      # no raw reStructuredText markup in the help
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "cnn_base" in imported
    assert not [m for m in imported if m == "mxnet" or m.startswith("mxnet.")]
    assert "matplotlib" not in imported


@pytest.mark.parametrize("argv, message", [
    ([], "a command is required"),
    (["trian"], "unknown command 'trian'"),
    (["learn-edge-kernel", "--ite", "3"], "unrecognized arguments: --ite 3"),
    (["reproduce-blog", "--se", "3"], "unrecognized arguments: --se 3"),
    (["benchmark", "--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    # output paths are checked before the work starts: /dev/null is not a folder
    (["benchmark", "--json", "/dev/null/bench.json"], "argument --json: '/dev/null' is a file"),
    (["draw-figures", "--out", "/dev/null/figures"], "argument --out: cannot create directory"),
])
def test_bad_command_line_is_one_line_on_stderr_and_exit_2(argv, message):
    result = run(str(CONSOLE_SCRIPT), *argv)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("cnn-base") and message in line
    assert result.stdout == ""


def test_version_prints_the_package_version():
    import cnn_base
    result = run(sys.executable, "-m", "cnn_base", "--version")
    assert (result.returncode, result.stdout) == (0, f"cnn-base {cnn_base.__version__}\n")


def test_console_script_module_and_script_print_the_same_run(tmp_path):
    argv = ["--block", "custom", "--ctx", "cpu", "--iters", "2"]
    outputs = [run(str(CONSOLE_SCRIPT), "learn-edge-kernel", *argv, cwd=tmp_path),
               run(sys.executable, "-m", "cnn_base", "learn-edge-kernel", *argv, cwd=tmp_path),
               run(sys.executable, str(SCRIPTS / "learn_edge_kernel.py"), *argv, cwd=tmp_path)]
    for result in outputs:
        assert result.returncode == 0, result.stderr
    assert outputs[0].stdout == outputs[1].stdout == outputs[2].stdout
    assert "== custom: cnn_base.Conv2D on cpu(0)" in outputs[0].stdout


def test_import_cnn_base_outside_a_command_loads_every_name_and_registers_the_kernel():
    from cnn_base import native
    code = ("import sys, cnn_base, mxnet; print('Conv2D' in vars(cnn_base), "
            "hasattr(mxnet.nd, 'cnn_base_pool2d'))")
    result = run(sys.executable, "-c", code)
    assert result.stdout == f"True {native.loaded()}\n", result.stderr
