"""``cnn-base train-lenet`` (scripts/train_lenet.py): its ``main`` in this process, and as a
user runs the script (a fresh process) for the kill-and-resume test.

The runs read a small synthetic data set that the tests write as IDX files and pass
with ``--data``, so they need neither the real Fashion-MNIST nor the network. The
resume test kills a run with SIGKILL in the middle of an epoch and resumes it.
"""
import gzip
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

import cnn_base as cb
from cnn_base.cli import COMMANDS
from cnn_base.cli.train_lenet import main

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "train_lenet.py"
N_TRAIN, N_TEST = 320, 96


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fashion")
    rng = np.random.RandomState(7)
    for train, n in ((True, N_TRAIN), (False, N_TEST)):
        images_name, labels_name = cb.FASHION_MNIST_FILES[train]
        _write_idx(directory / (images_name + ".gz"), rng.randint(0, 256, size=(n, 28, 28)))
        _write_idx(directory / (labels_name + ".gz"), rng.randint(0, 10, size=n))
    return directory


def run(*args, **kwargs):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=300, **kwargs)


def numbers(run_dict):
    return np.array([[e["loss"], e["train_acc"], e["test_acc"]] for e in run_dict["epochs"]])


def test_train_lenet_is_a_cnn_base_command():
    assert COMMANDS["train-lenet"][0] == "train_lenet"


def test_both_blocks_run_from_the_same_start_and_write_json_and_plot(tmp_path, data_dir, capsys):
    status = main(["--data", str(data_dir), "--epochs", "2", "--batch-size", "64", "--limit", "256",
                   "--json", str(tmp_path / "lenet.json"), "--plot", str(tmp_path / "lenet.png")])
    result = capsys.readouterr()
    assert status == 0 and result.err == ""
    out = result.out.splitlines()
    assert out[0] == "Fashion-MNIST: 256 training and 96 test images"
    epoch_lines = [line for line in out if line.startswith("epoch ")]
    assert len(epoch_lines) == 4
    assert all(re.fullmatch(r"epoch [12], loss \d\.\d{4}, train acc \d\.\d{3}, test acc "
                            r"\d\.\d{3}, time \d+\.\d sec", line) for line in epoch_lines)
    assert any(line.startswith("custom vs builtin: max |loss difference| = ") for line in out)
    runs = json.loads((tmp_path / "lenet.json").read_text())
    assert list(runs) == ["custom", "builtin"]
    for r in runs.values():
        assert (r["ctx"], r["batch_size"], r["lr"], r["seed"]) == (["cpu(0)"], 64, 0.9, 0)
        assert r["num_train"] == 256 and [e["epoch"] for e in r["epochs"]] == [1, 2]
        assert set(r["epochs"][0]) == {"epoch", "loss", "train_acc", "test_acc", "seconds",
                                       "samples_per_sec"}
    np.testing.assert_allclose(numbers(runs["custom"]), numbers(runs["builtin"]), atol=1e-4)
    assert (tmp_path / "lenet.png").stat().st_size > 0


def test_a_run_killed_mid_epoch_and_resumed_ends_with_the_uninterrupted_numbers(tmp_path,
                                                                              data_dir, capsys):
    args = ["--data", data_dir, "--block", "builtin", "--epochs", 3, "--batch-size", 64,
            "--progress", "plain", "--checkpoint", tmp_path / "ckpt"]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("  epoch 2: 50%"):       # in the middle of the second epoch
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen) + proc.stderr.read()
    assert not any(line.startswith("epoch 2,") for line in seen)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch-0001"]

    # the resume runs here: the kill was of a fresh process, the rest needs no second start-up
    assert main([str(a) for a in args] + ["--resume", "--json", str(tmp_path / "resumed.json")]) == 0
    out = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'ckpt' / 'epoch-0001'} (epoch 1 of 3 done)" in out
    got = json.loads((tmp_path / "resumed.json").read_text())["builtin"]
    assert [e["epoch"] for e in got["epochs"]] == [1, 2, 3]

    train, test = (cb.fashion_mnist_dataset(t, root=data_dir) for t in (True, False))
    whole = cb.train_lenet("builtin", 3, 64, 0.9, 0, "cpu", train_data=train, test_data=test,
                           progress="none", log=None)
    expected = np.array([[e.loss, e.train_acc, e.test_acc] for e in whole.epochs])
    np.testing.assert_allclose(numbers(got), expected, rtol=1e-6, atol=1e-7)


def test_a_checkpoint_of_the_other_block_is_refused_in_one_line(tmp_path, data_dir, capsys):
    common = ["--data", str(data_dir), "--epochs", "1", "--batch-size", "64", "--limit", "64",
              "--progress", "none", "--checkpoint", str(tmp_path)]
    assert main(common + ["--block", "custom"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(common + ["--block", "builtin", "--resume"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert "is from another run" in err and "block: checkpoint 'custom', this run 'builtin'" in err


@pytest.mark.parametrize("args, message", [
    (["--block", "gluon"], "argument --block: invalid choice: 'gluon'"),
    (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["--batch-size", "x"], "argument --batch-size: must be a whole number >= 0, got 'x'"),
    (["--lr", "nan"], "argument --lr: must be a positive finite number, got 'nan'"),
    (["--ctx", "cpu(0),,cpu(1)"], "argument --ctx: ctx must be one context or a comma-separated"),
    (["--ctx", "gpu(0)"], "argument --ctx: gpu(0) cannot be used"),
    (["--resume"], "argument --resume: needs --checkpoint DIR"),
    (["--data", "/no/such/folder"], "argument --data: no folder '/no/such/folder'"),
    (["--json", "out.txt"], "argument --json: 'out.txt' must end in one of .json"),
    (["--epoch", "3"], "unrecognized arguments: --epoch 3"),
    (["--limit", "-5"], "argument --limit: must be >= 0, got -5"),
])
def test_bad_arguments_are_one_line_on_stderr_and_exit_2(args, message, capsys):
    if args[:2] == ["--ctx", "gpu(0)"] and cb.context.mx.context.num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and ": error: " in err, err
    assert message in err


def test_missing_data_is_one_line_listing_the_place_and_the_apt_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert str(tmp_path) in err and "apt-get install dataset-fashion-mnist" in err
