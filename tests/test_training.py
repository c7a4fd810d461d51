"""d2l's train_ch5 (cnn_base.training.loop): contexts, checkpoints, exact resume, refusals.

Most tests train on a small synthetic data set (random 28x28 images and labels), so they
run anywhere and fast; the runs on the real Fashion-MNIST are skipped, with the reason,
when the Debian package is not installed.
"""
import json
import random

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import cnn_base as cb
from cnn_base import data
from cnn_base.training import CheckpointError, as_ctx_list, latest_checkpoint, train_lenet


def synthetic(n, seed):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, 28, 28, 1)).astype(np.uint8)
    labels = rng.randint(0, 10, size=n).astype(np.int32)
    return gluon.data.ArrayDataset(images, labels)


TRAIN, TEST = synthetic(200, 0), synthetic(64, 1)


def run(block="custom", epochs=2, ctx="cpu(0)", batch_size=64, lr=0.9, seed=0, log=None, **kw):
    return train_lenet(block, epochs, batch_size, lr, seed, ctx, train_data=TRAIN,
                       test_data=TEST, progress="none", log=log, **kw)


def numbers(result):
    return np.array([[e.loss, e.train_acc, e.test_acc] for e in result.epochs])


def params(net):
    return [p.data().asnumpy() for p in net.collect_params().values()]


# --- contexts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ctx, expected", [
    ("cpu(0),cpu(1)", [mx.cpu(0), mx.cpu(1)]),
    (" cpu(1) , cpu ", [mx.cpu(1), mx.cpu(0)]),
    (mx.cpu(3), [mx.cpu(3)]),
    (["cpu(0)", mx.cpu(2)], [mx.cpu(0), mx.cpu(2)]),
])
def test_as_ctx_list_takes_one_context_or_a_comma_separated_list(ctx, expected):
    assert as_ctx_list(ctx) == expected


@pytest.mark.parametrize("ctx, error, match", [
    ("cpu(0),,cpu(1)", ValueError, "one context or a comma-separated list"),
    ("cpu(0),cpu(0)", ValueError, "must not name a context twice, got cpu\\(0\\), cpu\\(0\\)"),
    ([], TypeError, "non-empty list"),
    ("tpu(0)", ValueError, "ctx must be one of auto, cpu, gpu"),
])
def test_as_ctx_list_refuses_bad_lists(ctx, error, match):
    with pytest.raises(error, match=match):
        as_ctx_list(ctx)


@pytest.mark.parametrize("block", ["custom", "builtin"])
def test_one_context_and_two_give_the_same_numbers(block):
    one = run(block, ctx="cpu(0)")
    two = run(block, ctx="cpu(0),cpu(1)")
    assert two.ctx == [mx.cpu(0), mx.cpu(1)]
    np.testing.assert_allclose(numbers(two), numbers(one), rtol=1e-5, atol=1e-6)
    for a, b in zip(params(two.net), params(one.net)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the parameters live, equal, on both contexts
    for p in two.net.collect_params().values():
        np.testing.assert_array_equal(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())


def test_a_last_batch_smaller_than_the_context_list_is_refused():
    with pytest.raises(ValueError, match=r"the last batch holds 1 of the 129 training samples "
                                         r"\(batch size 64\), fewer than the 2 contexts"):
        train_lenet("builtin", 1, 64, 0.9, 0, "cpu(0),cpu(1)", train_data=synthetic(129, 0),
                    test_data=TEST, progress="none", log=None)


# --- the history -------------------------------------------------------------------------------

def test_history_holds_one_epoch_result_per_epoch_and_d2ls_lines(tmp_path):
    lines = []
    result = run("builtin", epochs=2, log=lines.append)
    assert [e.epoch for e in result.epochs] == [1, 2]
    assert lines[0] == "training on cpu(0)"
    assert lines[1:] == [e.line() for e in result.epochs]
    for e in result.epochs:
        assert np.isfinite(e.loss) and 0 <= e.train_acc <= 1 and 0 <= e.test_acc <= 1
        assert e.seconds > 0 and e.samples_per_sec > 0
    first = result.epochs[0]
    assert lines[1] == (f"epoch 1, loss {first.loss:.4f}, train acc {first.train_acc:.3f}, "
                        f"test acc {first.test_acc:.3f}, time {first.seconds:.1f} sec")
    as_json = json.loads(json.dumps(result.to_dict()))
    assert set(as_json) >= {"epochs", "ctx", "batch_size", "lr", "seed"}
    assert set(as_json["epochs"][0]) == {"epoch", "loss", "train_acc", "test_acc", "seconds",
                                         "samples_per_sec"}


def test_the_loss_is_the_mean_cross_entropy_of_the_epochs_samples_before_their_update():
    # one batch holding every sample: the epoch's loss is the initial net's mean loss
    result = train_lenet("builtin", 1, 200, 0.9, 5, "cpu", train_data=TRAIN, test_data=TEST,
                         progress="none", log=None)
    net = cb.init_net(cb.lenet("builtin"), mx.cpu(), seed=5)
    X, y = next(iter(data.test_loader(TRAIN, 200)))
    expected = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y).mean().asscalar()
    assert result.epochs[0].loss == pytest.approx(expected, rel=1e-5)


def test_the_bar_progress_is_a_tqdm_bar_on_stdout(capsys):
    train_lenet("builtin", 1, 64, 0.9, 0, "cpu", train_data=TRAIN, test_data=TEST,
                progress="bar", log=None)
    out = capsys.readouterr().out
    assert "\repoch 1:   0%|" in out and "| 0/4 [" in out        # tqdm's bar, 4 batches
    assert out.endswith("\r")                                   # erased when the epoch ends


def test_plain_progress_prints_quarter_lines(capsys):
    lines = []
    train_lenet("builtin", 1, 16, 0.9, 0, "cpu", train_data=TRAIN, test_data=TEST,
                progress="plain", log=lines.append)
    assert [line.split(":")[1].split("(")[0].strip() for line in lines if "%" in line] == \
        ["25%", "50%", "75%"]
    assert lines[1].startswith("  epoch 1: 25% (4/13 batches, ")


# --- checkpoints and resume ----------------------------------------------------------------------

@pytest.mark.parametrize("ctx", ["cpu(0)", "cpu(0),cpu(1)"])
def test_a_resumed_run_ends_with_the_numbers_of_one_never_stopped(tmp_path, ctx):
    whole = run("builtin", epochs=3, ctx=ctx)
    np_after, py_after = np.random.get_state()[1].copy(), random.getstate()
    run("builtin", epochs=2, ctx=ctx, checkpoint=tmp_path)
    np.random.seed(123)      # another process, other generator states
    random.seed(456)
    lines = []
    resumed = run("builtin", epochs=3, ctx=ctx, checkpoint=tmp_path, resume=True,
                  log=lines.append)
    assert lines[0] == f"resuming from {tmp_path / 'epoch-0002'} (epoch 2 of 3 done)"
    assert [e.epoch for e in resumed.epochs] == [1, 2, 3]
    np.testing.assert_allclose(numbers(resumed), numbers(whole), rtol=1e-6, atol=1e-7)
    for a, b in zip(params(resumed.net), params(whole.net)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # NumPy's and Python's global generators are back where the uninterrupted run left them
    np.testing.assert_array_equal(np.random.get_state()[1], np_after)
    assert random.getstate() == py_after


def test_a_checkpoint_holds_only_the_newest_complete_epoch(tmp_path):
    run("builtin", epochs=2, checkpoint=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002"]
    assert sorted(p.name for p in (tmp_path / "epoch-0002").iterdir()) == \
        ["params", "state.json", "trainer.states"]
    state = json.loads((tmp_path / "epoch-0002" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["config"]["block"] == "builtin" and state["config"]["batch_size"] == 64


def test_partial_and_incomplete_checkpoint_folders_are_never_resumed(tmp_path):
    run("builtin", epochs=1, checkpoint=tmp_path)
    (tmp_path / ".epoch-0002.partial").mkdir()          # a crash while writing epoch 2
    (tmp_path / "epoch-0003").mkdir()                   # no state.json: not a checkpoint
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch-0001"
    resumed = run("builtin", epochs=2, checkpoint=tmp_path, resume=True)
    assert [e.epoch for e in resumed.epochs] == [1, 2]
    assert not (tmp_path / ".epoch-0002.partial").exists()


def test_resume_with_an_empty_folder_starts_at_epoch_one_and_says_so(tmp_path):
    lines = []
    result = run("builtin", epochs=1, checkpoint=tmp_path / "new", resume=True, log=lines.append)
    assert lines[0] == f"no checkpoint in {tmp_path / 'new'} yet: starting at epoch 1"
    np.testing.assert_allclose(numbers(result), numbers(run("builtin", epochs=1)), rtol=1e-6)


@pytest.mark.parametrize("change, match", [
    ({"block": "builtin"}, r"block: checkpoint 'custom', this run 'builtin'"),
    ({"batch_size": 32}, r"batch_size: checkpoint 64, this run 32"),
    ({"lr": 0.5}, r"lr: checkpoint 0.9, this run 0.5"),
    ({"seed": 1}, r"seed: checkpoint 0, this run 1"),
    ({"activation": "relu"}, r"activation: checkpoint 'sigmoid', this run 'relu'"),
])
def test_a_checkpoint_of_another_run_is_refused_never_a_silent_fresh_start(tmp_path, change,
                                                                         match):
    run("custom", epochs=1, checkpoint=tmp_path)
    settings = dict({"block": "custom"}, **change)
    with pytest.raises(CheckpointError, match=rf"the checkpoint .*epoch-0001 is from another "
                                              rf"run \(.*{match}"):
        run(epochs=2, checkpoint=tmp_path, resume=True, **settings)


def test_a_folder_holding_a_checkpoint_is_not_overwritten_without_resume(tmp_path):
    run("builtin", epochs=1, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match=r"already holds a checkpoint \(epoch-0001\); "
                                              r"pass resume=True"):
        run("builtin", epochs=1, checkpoint=tmp_path)


def test_resume_without_a_checkpoint_folder_is_refused():
    with pytest.raises(ValueError, match="resume=True needs a checkpoint folder"):
        run(epochs=1, resume=True)


# --- the real Fashion-MNIST ----------------------------------------------------------------------

def _real(limit):
    try:
        return (data.fashion_mnist_dataset(True, limit=limit, download=False),
                data.fashion_mnist_dataset(False, limit=limit, download=False))
    except data.DataNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): "
                    f"{str(e)[:120]}")


def test_on_real_data_a_short_relu_run_of_our_blocks_beats_chance_clearly():
    # d2l's sigmoid LeNet sits at chance for a whole epoch of 60000 images; ReLU learns in 2000
    train, test = _real(2000)
    result = train_lenet("custom", 1, 64, 0.1, 0, "cpu", activation="relu", train_data=train,
                         test_data=test, progress="none", log=None)
    assert result.final.test_acc > 0.3, result.epochs     # chance is 0.1


def test_on_real_data_our_blocks_and_gluons_give_the_same_numbers_in_d2ls_setting():
    train, test = _real(1280)
    runs = {block: train_lenet(block, 2, 256, 0.9, 0, "cpu", train_data=train, test_data=test,
                               progress="none", log=None) for block in ("custom", "builtin")}
    np.testing.assert_allclose(numbers(runs["custom"]), numbers(runs["builtin"]), atol=1e-4)
