"""Fashion-MNIST's IDX reader, where it looks, and the DataLoaders (cnn_base.training.data).

Every test but the last works on small IDX files it writes itself, with the Debian
folder, MXNet's cache and ``$CNN_BASE_DATA`` pointed at temporary folders, and
Gluon's downloader replaced: nothing depends on this machine or the network.
"""
import gzip
import pathlib
import struct

import numpy as np
import pytest
from mxnet.gluon.data.vision import transforms

from cnn_base.training import data
from cnn_base.training.data import (DataNotFoundError, IDXFormatError, epoch_order, load_fashion_mnist,
                           read_idx, to_tensor)

TRAIN_IMAGES, TRAIN_LABELS = data.FASHION_MNIST_FILES[True]
TEST_IMAGES, TEST_LABELS = data.FASHION_MNIST_FILES[False]


def idx_bytes(array, type_code=0x08):
    """An IDX file's bytes: magic 0x0000TTDD, big-endian uint32 sizes, then the data."""
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(">" + "I" * array.ndim,
                                                                 *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, payload, gz):
    path = pathlib.Path(str(path) + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_split(directory, n=3, train=True, gz=True, seed=0):
    """Write n random images and labels as the split's two files; return them."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=n).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    names = data.FASHION_MNIST_FILES[train]
    write(directory / names[0], idx_bytes(images), gz)
    write(directory / names[1], idx_bytes(labels), gz)
    return images, labels


@pytest.fixture
def places(tmp_path, monkeypatch):
    """The Debian folder, MXNet's home and $CNN_BASE_DATA in tmp_path; downloads recorded, not made."""
    debian, mxnet_home = tmp_path / "debian", tmp_path / "mxnet_home"
    monkeypatch.setattr(data, "DEBIAN_DIR", debian)
    monkeypatch.setenv("MXNET_HOME", str(mxnet_home))
    monkeypatch.delenv("CNN_BASE_DATA", raising=False)
    downloads = []

    def no_network(directory, train):
        downloads.append((pathlib.Path(directory), train))
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_download_with_gluon", no_network)
    return {"debian": debian, "cache": mxnet_home / "datasets" / "fashion-mnist",
            "env": tmp_path / "env", "tmp": tmp_path, "downloads": downloads}


# --- the IDX reader ----------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("shape", [(5,), (4, 28, 28), (2, 3, 7)])
def test_read_idx_gives_the_written_array_plain_or_gzipped(tmp_path, gz, shape):
    A = np.random.RandomState(1).randint(0, 256, size=shape).astype(np.uint8)
    path = write(tmp_path / "a-idx", idx_bytes(A), gz)
    got = read_idx(path, ndim=len(shape))
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, A)


def test_read_idx_knows_gzip_by_its_magic_bytes_not_the_file_name(tmp_path):
    A = np.arange(6, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"          # no .gz, gzipped content
    path.write_bytes(gzip.compress(idx_bytes(A)))
    np.testing.assert_array_equal(read_idx(path), A)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_read_idx_refuses_a_truncated_file_naming_it(tmp_path, gz):
    payload = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100]
    path = write(tmp_path / "images-idx3-ubyte", payload, gz)
    with pytest.raises(IDXFormatError, match=r"images-idx3-ubyte.*truncated.*\(4, 28, 28\) needs 3152"):
        read_idx(path)


def test_read_idx_refuses_a_cut_gzip_stream(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((9, 28, 28), np.uint8)))[:-30])
    with pytest.raises(IDXFormatError, match=r"images-idx3-ubyte\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_read_idx_refuses_trailing_bytes(tmp_path):
    path = write(tmp_path / "l-idx1", idx_bytes(np.arange(3)) + b"\0", gz=False)
    with pytest.raises(IDXFormatError, match=r"l-idx1: has trailing bytes: 12 bytes"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x12\x34\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00",
                                   b"PK\x03\x04"])
def test_read_idx_refuses_a_wrong_magic_number(tmp_path, magic):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(magic + struct.pack(">I", 1) + b"\x05")
    with pytest.raises(IDXFormatError, match=rf"x-idx1-ubyte: not an IDX file: magic number 0x{magic.hex()}"):
        read_idx(path)


def test_read_idx_refuses_another_number_of_dimensions(tmp_path):
    path = write(tmp_path / "images", idx_bytes(np.zeros((2, 28, 28))), gz=False)
    with pytest.raises(IDXFormatError, match=r"images: has 3 dimensions \(magic 0x00000803\), "
                                             r"expected 1 \(magic 0x00000801\)"):
        read_idx(path, ndim=1)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x08\x03\x00\x00\x00\x02"])
def test_read_idx_refuses_a_file_shorter_than_its_header(tmp_path, payload):
    path = tmp_path / "short"
    path.write_bytes(payload)
    with pytest.raises(IDXFormatError, match=r"short: .*(too short|truncated header)"):
        read_idx(path)


# --- loading a split: the checks across the two files ------------------------------------------

def test_load_fashion_mnist_returns_uint8_images_and_int32_labels(places):
    images, labels = fake_split(places["env"], n=4, train=False)
    got_images, got_labels = load_fashion_mnist(train=False, root=places["env"])
    assert got_images.dtype == np.uint8 and got_images.shape == (4, 28, 28)
    assert got_labels.dtype == np.int32 and got_labels.shape == (4,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_load_fashion_mnist_refuses_image_and_label_counts_that_differ(places, gz):
    directory = places["tmp"] / "d"
    fake_split(directory, n=3, gz=gz)
    write(directory / TRAIN_LABELS, idx_bytes(np.arange(2)), gz)
    with pytest.raises(IDXFormatError, match=r"holds 3 images but .*train-labels-idx1-ubyte.* "
                                             r"holds 2 labels"):
        load_fashion_mnist(root=directory)


def test_load_fashion_mnist_refuses_images_that_are_not_28_by_28(places):
    directory = places["tmp"] / "d"
    fake_split(directory, n=2)
    write(directory / TRAIN_IMAGES, idx_bytes(np.zeros((2, 32, 32))), gz=True)
    with pytest.raises(IDXFormatError, match=r"images must be 28x28, got \(32, 32\)"):
        load_fashion_mnist(root=directory)


def test_load_fashion_mnist_refuses_a_label_outside_0_to_9(places):
    directory = places["tmp"] / "d"
    fake_split(directory, n=2)
    write(directory / TRAIN_LABELS, idx_bytes(np.array([3, 10])), gz=True)
    with pytest.raises(IDXFormatError, match=r"labels must be 0-9, got 10"):
        load_fashion_mnist(root=directory)


# --- where it looks ----------------------------------------------------------------------------

def test_an_explicit_root_is_the_only_place_looked(places, monkeypatch):
    fake_split(places["debian"])
    monkeypatch.setenv("CNN_BASE_DATA", str(places["env"]))
    fake_split(places["env"])
    empty = places["tmp"] / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(root=empty)
    message = str(info.value)
    assert str(empty) in message and "no other place looked" in message
    assert str(places["debian"]) not in message and str(places["env"]) not in message
    assert places["downloads"] == []


def test_the_environment_variable_comes_before_the_debian_folder(places, monkeypatch):
    fake_split(places["debian"], seed=1)
    env_images, _ = fake_split(places["env"], seed=2)
    monkeypatch.setenv("CNN_BASE_DATA", str(places["env"]))
    np.testing.assert_array_equal(load_fashion_mnist()[0], env_images)


def test_the_debian_folder_comes_before_mxnets_cache(places):
    debian_images, _ = fake_split(places["debian"], seed=1)
    fake_split(places["cache"], seed=2)
    np.testing.assert_array_equal(load_fashion_mnist()[0], debian_images)


def test_mxnets_cache_under_mxnet_home_is_used_last_and_may_be_uncompressed(places):
    cache_images, _ = fake_split(places["cache"], gz=False, seed=3)
    np.testing.assert_array_equal(load_fashion_mnist()[0], cache_images)
    assert places["downloads"] == []


def test_each_split_is_looked_up_on_its_own(places):
    fake_split(places["debian"], n=3, train=True)
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte"):
        load_fashion_mnist(train=False, download=False)
    assert len(load_fashion_mnist(train=True, download=False)[0]) == 3


def test_nothing_found_lists_every_place_the_failed_download_and_the_apt_command(places,
                                                                               monkeypatch):
    monkeypatch.setenv("CNN_BASE_DATA", str(places["env"]))
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist()
    message = str(info.value)
    for place in (places["env"], places["debian"], places["cache"]):
        assert str(place) in message
    assert message.index(str(places["env"])) < message.index(str(places["debian"])) \
        < message.index(str(places["cache"]))
    assert "OSError: network is unreachable" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert places["downloads"] == [(places["cache"], True)]


def test_download_false_never_calls_gluons_downloader(places):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(download=False)
    assert places["downloads"] == []


def test_gluons_downloader_fills_mxnets_cache_when_nothing_else_has_the_files(places,
                                                                            monkeypatch):
    written = {}

    def fake_download(directory, train):
        written["images"], _ = fake_split(pathlib.Path(directory), n=5, train=train)

    monkeypatch.setattr(data, "_download_with_gluon", fake_download)
    images, labels = load_fashion_mnist(train=False)
    np.testing.assert_array_equal(images, written["images"])
    assert (places["cache"] / (TEST_IMAGES + ".gz")).is_file()


def test_a_copy_with_images_but_no_labels_is_an_error_not_skipped(places, monkeypatch):
    fake_split(places["debian"])
    monkeypatch.setenv("CNN_BASE_DATA", str(places["env"]))
    fake_split(places["env"])
    (places["env"] / (TRAIN_LABELS + ".gz")).unlink()
    with pytest.raises(DataNotFoundError, match=r"holds train-images-idx3-ubyte\.gz but not "
                                                r"train-labels-idx1-ubyte\[\.gz\]"):
        load_fashion_mnist()


# --- tensors, order, loaders -------------------------------------------------------------------

def test_to_tensor_equals_gluons_totensor_image_by_image():
    images = np.random.RandomState(0).randint(0, 256, size=(5, 28, 28, 1)).astype(np.uint8)
    got = to_tensor(images).asnumpy()
    from mxnet import nd
    expected = np.stack([transforms.ToTensor()(nd.array(im, dtype=np.uint8)).asnumpy()
                         for im in images])
    assert got.dtype == np.float32 and got.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(got, expected)


def test_to_tensor_refuses_float_images():
    with pytest.raises(ValueError, match=r"images must be uint8 .* got float64 \(2, 3, 3\)"):
        to_tensor(np.zeros((2, 3, 3)))


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch_alone():
    a = epoch_order(1000, seed=0, epoch=3)
    assert sorted(a.tolist()) == list(range(1000))
    epoch_order(1000, seed=0, epoch=2)                   # drawing other orders in between
    np.testing.assert_array_equal(epoch_order(1000, seed=0, epoch=3), a)
    others = [epoch_order(1000, 0, 2), epoch_order(1000, 1, 3), epoch_order(1000, 1, 2)]
    assert all((o != a).any() for o in others)
    # (seed, epoch) pairs, not seed + epoch: seed 0's epoch 1 is not seed 1's epoch 0
    assert (epoch_order(1000, 0, 1) != epoch_order(1000, 1, 0)).any()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n": -1, "seed": 0, "epoch": 0}, ValueError, "n must be >= 0, got -1"),
    ({"n": 5, "seed": -2, "epoch": 0}, ValueError, "seed must be >= 0, got -2"),
    ({"n": 5, "seed": 0, "epoch": 1.5}, TypeError, "epoch must be an int, got float 1.5"),
])
def test_epoch_order_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        epoch_order(**kwargs)


def test_train_loader_batches_follow_the_epochs_order_and_keep_the_remainder(places):
    images, labels = fake_split(places["env"], n=10)
    dataset = data.fashion_mnist_dataset(root=places["env"])
    order = epoch_order(10, seed=4, epoch=2)
    batches = list(data.train_loader(dataset, 4, seed=4, epoch=2))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    X = np.concatenate([X.asnumpy() for X, _ in batches])
    y = np.concatenate([y.asnumpy() for _, y in batches])
    assert X.dtype == np.float32 and X.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(X[:, 0], images[order] / np.float32(255))
    np.testing.assert_array_equal(y, labels[order])


def test_fashion_mnist_dataset_limit_keeps_the_first_images(places):
    images, _ = fake_split(places["env"], n=6, train=False)
    dataset = data.fashion_mnist_dataset(train=False, root=places["env"], limit=4)
    assert len(dataset) == 4
    X, _ = next(iter(data.test_loader(dataset, 10)))
    np.testing.assert_array_equal(X.asnumpy()[:, 0] * 255, images[:4])


# --- the real data set, when installed ---------------------------------------------------------

@pytest.mark.skipif(not data.DEBIAN_DIR.is_dir(),
                    reason=f"the Debian package dataset-fashion-mnist is not installed "
                           f"({data.DEBIAN_DIR} missing)")
@pytest.mark.parametrize("train, n", [(True, 60000), (False, 10000)])
def test_the_debian_copy_reads_as_the_real_fashion_mnist(train, n):
    images, labels = load_fashion_mnist(train=train, root=data.DEBIAN_DIR)
    assert images.shape == (n, 28, 28) and labels.shape == (n,)
    assert np.bincount(labels).tolist() == [n // 10] * 10     # balanced: n/10 of each class
