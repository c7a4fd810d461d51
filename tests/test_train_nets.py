"""``cnn_base.train_net`` and ``cnn-base train``: d2l chapter 5's networks trained as LeNet is.

Small inputs (``--resize 32``, a few dozen images): the pipeline, the JSON, the
checkpoints and the command, not the accuracy (that is a real run's, in the docs).
"""
import json

import numpy as np
import pytest

import cnn_base as cb
from cnn_base.cli import train as train_cli
from cnn_base.cli import train_lenet as train_lenet_cli


@pytest.fixture(scope="module")
def small_data():
    return (cb.fashion_mnist_dataset(True, limit=48), cb.fashion_mnist_dataset(False, limit=16))


def test_resized_images_are_the_books_resize_of_the_stored_ones(small_data):
    from mxnet import nd
    from mxnet.gluon.data.vision import transforms

    train, _ = small_data
    image = train[0][0]
    big = cb.resized(train, 96)[0][0]
    assert big.shape == (96, 96, 1) and big.dtype == np.uint8
    np.testing.assert_array_equal(big, transforms.Resize(96)(nd.array(image, dtype="uint8"))
                                  .asnumpy())
    assert len(cb.resized(train, 96)) == len(train)


@pytest.mark.parametrize("net", ["lenet_bn", "resnet18", "densenet"])
def test_a_chapter_net_trains_with_both_blocks_from_the_same_start(net, small_data):
    train, test = small_data
    runs = {block: cb.train_net(net, block, num_epochs=1, batch_size=16, lr=1e-9, seed=1,
                                ctx="cpu", resize=None if net == "lenet_bn" else 32,
                                train_data=train, test_data=test, progress="none", log=None)
            for block in ("custom", "builtin")}
    custom, builtin = runs["custom"].final, runs["builtin"].final
    assert np.isfinite(custom.loss) and np.isfinite(builtin.loss)
    # the same start and the same batches (steps too small to move the weights): float32
    # rounding apart only. Real steps of a batch-norm net in float32 drift apart between
    # any two implementations (tests/test_chapter_nets.py compares steps in float64).
    assert abs(custom.loss - builtin.loss) < 1e-5 * builtin.loss
    d = runs["custom"].to_dict()
    assert d["net"] == net and d["resize"] == (None if net == "lenet_bn" else 32)


def test_a_killed_run_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path,
                                                                               small_data):
    train, test = small_data
    settings = dict(num_epochs=2, batch_size=16, lr=0.05, seed=2, ctx="cpu", resize=32,
                    train_data=train, test_data=test, progress="none", log=None)
    whole = cb.train_net("resnet18", "custom", **settings)
    cb.train_net("resnet18", "custom", **{**settings, "num_epochs": 1},
                 checkpoint=tmp_path / "ckpt")
    resumed = cb.train_net("resnet18", "custom", **settings, checkpoint=tmp_path / "ckpt",
                           resume=True)
    assert [e.loss for e in resumed.epochs] == pytest.approx([e.loss for e in whole.epochs],
                                                             rel=1e-6)


def test_a_checkpoint_of_another_network_or_side_is_not_resumed(tmp_path, small_data):
    train, test = small_data
    settings = dict(num_epochs=1, batch_size=16, lr=0.05, seed=2, ctx="cpu",
                    train_data=train, test_data=test, progress="none", log=None,
                    checkpoint=tmp_path / "ckpt")
    cb.train_net("resnet18", "custom", resize=32, **settings)
    with pytest.raises(ValueError, match="resize"):
        cb.train_net("resnet18", "custom", resize=40, resume=True,
                     **{**settings, "num_epochs": 2})


def test_the_train_command_takes_the_books_settings_and_writes_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert train_cli.main(["--net", "googlenet", "--resize", "32", "--limit", "32",
                           "--epochs", "1", "--block", "both", "--batch-size", "16",
                           "--progress", "none", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== custom: googlenet on 32x32 images with cnn_base's Conv2D, pools and BatchNorm" in printed
    assert "lr 0.1" in printed                                  # the book's for GoogLeNet
    report = json.loads(out.read_text())
    assert set(report) == {"custom", "builtin"}
    assert report["builtin"]["net"] == "googlenet" and report["builtin"]["lr"] == 0.1


def test_the_book_defaults_fill_only_what_was_not_given():
    args = train_cli.build_parser().parse_args(["--net", "alexnet", "--lr", "0.5"])
    train_lenet_cli._book_defaults(args)
    assert (args.lr, args.batch_size, args.resize) == (0.5, 128, 224)


@pytest.mark.parametrize("argv, message", [
    (["--net", "lenet9"], "invalid choice: 'lenet9'"),
    (["--net", "resnet18", "--resize", "0"], "--resize"),
    (["--net", "resnet18", "--perturb", "2"], "argument --perturb: '2' is not from 0 to 1"),
    (["--net", "resnet18", "--perturb", "tiny"], "argument --perturb: 'tiny' is not a number"),
])
def test_the_train_command_refuses_bad_arguments_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_train_lenet_keeps_its_options_and_has_no_net_option(capsys):
    with pytest.raises(SystemExit):
        train_lenet_cli.main(["--net", "resnet18"])
    assert "unrecognized arguments: --net" in capsys.readouterr().err


def test_perturbed_weights_move_by_their_scale_and_zero_leaves_them():
    from cnn_base.training.loop import init_net, perturb_weights
    net = init_net(cb.nets.lenet("builtin"), "cpu", 0)
    before = {name: p.data().asnumpy() for name, p in net.collect_params().items()}
    perturb_weights(net, 0.0, 0)
    for name, p in net.collect_params().items():
        np.testing.assert_array_equal(p.data().asnumpy(), before[name])
    perturb_weights(net, 1e-3, 0)
    for name, p in net.collect_params().items():
        W, W0 = p.data().asnumpy().astype(np.float64), before[name].astype(np.float64)
        moved = np.abs(W - W0)
        assert (moved <= 6e-3 * np.abs(W0) + 1e-12).all(), name       # 1e-3 N(0, 1): < 6 sigma
        nonzero = W0 != 0
        if nonzero.sum() > 10:
            relative = (W[nonzero] - W0[nonzero]) / W0[nonzero]
            assert 0.5e-3 < relative.std() < 2e-3, name                 # N(0, 1) times 1e-3
        assert (W[~nonzero] == 0).all(), name                           # zeros stay zeros


def test_a_run_with_perturbed_weights_records_it_and_refuses_a_bad_scale(small_data):
    train, test = small_data
    settings = dict(num_epochs=1, batch_size=16, lr=0.05, seed=2, ctx="cpu",
                    train_data=train, test_data=test, progress="none", log=None)
    plain = cb.train_net("lenet_bn", "builtin", **settings)
    moved = cb.train_net("lenet_bn", "builtin", perturb=1e-6, **settings)
    assert moved.to_dict()["perturb"] == 1e-6 and "perturb" not in plain.to_dict()
    assert moved.final.loss != plain.final.loss
    assert moved.final.loss == pytest.approx(plain.final.loss, rel=1e-3)
    with pytest.raises(ValueError, match="perturb must be from 0 to 1"):
        cb.train_net("lenet_bn", "builtin", perturb=-1e-6, **settings)
    with pytest.raises(TypeError, match="perturb must be a number"):
        cb.train_net("lenet_bn", "builtin", perturb="1e-6", **settings)
