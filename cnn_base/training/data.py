"""Fashion-MNIST for LeNet (d2l-zh v1 §5.5): the IDX files read with NumPy, batches from Gluon.

Where :func:`load_fashion_mnist` looks, in order (the first place holding the split's
two files wins):

1. ``root`` (the scripts' ``--data DIR``): when given, the ONLY place looked;
2. ``$CNN_BASE_DATA``;
3. Debian's package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``):
   ``/usr/share/datasets/fashion-mnist``;
4. MXNet's own cache, ``$MXNET_HOME/datasets/fashion-mnist`` (default ``~/.mxnet/...``);
5. Gluon's downloader (``gluon.data.vision.FashionMNIST``) into that cache, when the network allows.

The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``) or not.
Gluon's class checks the SHA-1 of the *compressed* files, and Debian compresses them
differently, so :func:`read_idx` reads the IDX format itself: a big-endian magic number
(two zero bytes, the type code 0x08 for unsigned bytes, the number of dimensions), the
dimension sizes as big-endian uint32, then the bytes. It checks the magic number, the
sizes against the file's length, and :func:`load_fashion_mnist` that images and labels agree.

Batches come from ``gluon.data.DataLoader`` over a ``gluon.data.ArrayDataset``. The order
of epoch ``e`` is :func:`epoch_order` ``(n, seed, e)``, a permutation that depends on
nothing but ``(seed, e)``: a run resumed at epoch ``e`` sees the batches an uninterrupted
run would have seen, and a distributed worker can take its share of the same permutation.
"""
from __future__ import annotations

import gzip
import os
import pathlib
import zlib
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mxnet import gluon, nd
from mxnet.ndarray import NDArray

from .._checks import as_bool, as_int
from .._types import PathLike

__all__ = ["resized", "FASHION_MNIST_FILES", "TEXT_LABELS", "DEBIAN_PACKAGE", "DEBIAN_DIR",
           "DataNotFoundError", "IDXFormatError", "read_idx", "mxnet_cache_dir", "search_dirs",
           "find_fashion_mnist", "load_fashion_mnist", "get_fashion_mnist_labels", "to_tensor",
           "epoch_order", "OrderSampler", "fashion_mnist_dataset", "train_loader",
           "test_loader"]

# (images, labels) file names without ".gz", per split
FASHION_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# the data set's class names, in label order (0 = T-shirt/top ... 9 = Ankle boot)
TEXT_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "CNN_BASE_DATA"

# IDX type codes -> NumPy dtypes (big-endian for the multi-byte ones)
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


class DataNotFoundError(FileNotFoundError):
    """Fashion-MNIST is in none of the places looked; the message lists them."""


class IDXFormatError(ValueError):
    """An IDX file that is truncated, corrupt or not what was asked for; the message names it."""


def _read_bytes(path):
    """The file's bytes, uncompressed when it starts with gzip's magic number."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        # EOFError: the compressed stream ends early (a truncated download or copy)
        raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: PathLike, ndim: Optional[int] = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a NumPy array, checking its header.

    Parameters
    ----------
    path : str or path-like
    ndim : int, optional
        The number of dimensions the file must have (1 for labels, 3 for images).

    Returns
    -------
    numpy.ndarray
        Of the file's shape; type code 0x08 gives uint8.

    Raises
    ------
    IDXFormatError
        Naming the file and what is wrong: bad magic number, unexpected number of
        dimensions, a length that does not match the sizes in the header, corrupt gzip data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'labels-idx1-ubyte'
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    >>> read_idx(path, ndim=1)
    array([7, 2, 9], dtype=uint8)
    >>> import shutil; shutil.rmtree(path.parent)
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: {len(data)} bytes, too short for the 4-byte IDX magic number")
    zero, type_code, file_ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_TYPES or file_ndim == 0:
        raise IDXFormatError(f"{path}: not an IDX file: magic number 0x{data[:4].hex()} "
                             f"(expected 0x0000TTDD: type code TT such as 08, DD dimensions)")
    if ndim is not None and file_ndim != ndim:
        raise IDXFormatError(f"{path}: has {file_ndim} dimensions (magic 0x{data[:4].hex()}), "
                             f"expected {ndim} (magic 0x{0x800 + ndim:08x})")
    header = 4 + 4 * file_ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: truncated header: {len(data)} bytes, "
                             f"the {file_ndim} dimension sizes need {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(file_ndim))
    dtype = _IDX_TYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXFormatError(f"{path}: {what}: {len(data)} bytes (uncompressed), "
                             f"but the header's shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def mxnet_cache_dir() -> pathlib.Path:
    """MXNet's data set cache for Fashion-MNIST: ``$MXNET_HOME/datasets/fashion-mnist``.

    ``$MXNET_HOME`` defaults to ``~/.mxnet``, as in ``mxnet.base.data_dir``.
    """
    home = os.environ.get("MXNET_HOME") or os.path.join(os.path.expanduser("~"), ".mxnet")
    return pathlib.Path(home) / "datasets" / "fashion-mnist"


def search_dirs(root: Optional[PathLike] = None) -> List[Tuple[str, pathlib.Path]]:
    """The places :func:`load_fashion_mnist` looks, in order, as ``(description, path)`` pairs.

    With ``root`` given, it is the only one.

    >>> search_dirs('/data/fm')
    [('--data / root', PosixPath('/data/fm'))]
    """
    if root is not None:
        return [("--data / root", pathlib.Path(root))]
    places = []
    if os.environ.get(ENV_VAR):
        places.append((f"${ENV_VAR}", pathlib.Path(os.environ[ENV_VAR])))
    places.append((f"Debian package {DEBIAN_PACKAGE}", pathlib.Path(DEBIAN_DIR)))
    places.append(("MXNet's cache ($MXNET_HOME/datasets/fashion-mnist)", mxnet_cache_dir()))
    return places


def _split_files(directory, train):
    """The split's (images, labels) paths in ``directory`` (``.gz`` preferred), None where missing."""
    found = []
    for name in FASHION_MNIST_FILES[train]:
        for candidate in (directory / (name + ".gz"), directory / name):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            found.append(None)
    return tuple(found)


def _download_with_gluon(directory, train):
    """Gluon's own downloader into ``directory`` (it checks the SHA-1 of the compressed files)."""
    gluon.data.vision.FashionMNIST(root=str(directory), train=train)


def find_fashion_mnist(train: bool = True, root: Optional[PathLike] = None,
                       download: bool = True) -> Tuple[pathlib.Path, pathlib.Path]:
    """The (images, labels) file paths of a split, from the first place in :func:`search_dirs`.

    A place holding one of the split's two files but not the other is an error (a broken
    copy is not skipped silently). Without a ``root``, when no place has the files and
    ``download`` is true, Gluon's downloader fetches them into :func:`mxnet_cache_dir`.

    Raises
    ------
    DataNotFoundError
        Listing every place looked, why the download failed, and the apt command.
    """
    train = as_bool("train", train)
    names = FASHION_MNIST_FILES[train]
    looked = []
    for where, directory in search_dirs(root):
        images, labels = _split_files(directory, train)
        if images and labels:
            return images, labels
        if images or labels:
            missing = names[1] if images else names[0]
            raise DataNotFoundError(f"{directory} ({where}) holds {(images or labels).name} "
                                    f"but not {missing}[.gz]: an incomplete copy of Fashion-MNIST")
        looked.append(f"{directory} ({where})")
    note = ""
    if root is None and download:
        cache = mxnet_cache_dir()
        try:
            _download_with_gluon(cache, train)
        except Exception as e:   # no network, a proxy, a full disk: reported, never hidden
            note = f"; Gluon's download into {cache} failed: {type(e).__name__}: {e}"
        else:
            images, labels = _split_files(cache, train)
            if images and labels:
                return images, labels
            note = f"; Gluon's download into {cache} left no {names[0]}.gz/{names[1]}.gz"
    elif root is not None:
        note = " (--data / root given: no other place looked)"
    raise DataNotFoundError(
        f"Fashion-MNIST {'training' if train else 'test'} files {names[0]}[.gz] and "
        f"{names[1]}[.gz] not found; looked in: {'; '.join(looked)}{note}. "
        f"Install them with: sudo apt-get install {DEBIAN_PACKAGE}")


def load_fashion_mnist(train: bool = True, root: Optional[PathLike] = None,
                       download: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's training (60000) or test (10000) split as NumPy arrays.

    Parameters
    ----------
    train : bool, default True
    root : str or path-like, optional
        A folder holding the IDX files; when given, the only place looked.
        Otherwise the places of :func:`search_dirs`, then Gluon's downloader.
    download : bool, default True
        Whether Gluon's downloader may be tried when the files are nowhere.

    Returns
    -------
    images : numpy.ndarray, uint8, (N, 28, 28)
    labels : numpy.ndarray, int32, (N,), values 0-9 (see :data:`TEXT_LABELS`)

    Raises
    ------
    DataNotFoundError, IDXFormatError
    """
    images_path, labels_path = find_fashion_mnist(train, root, download)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IDXFormatError(f"{images_path} / {labels_path}: Fashion-MNIST is unsigned bytes "
                             f"(type code 0x08), got {images.dtype} and {labels.dtype}")
    if images.shape[1:] != (28, 28):
        raise IDXFormatError(f"{images_path}: images must be 28x28, got {images.shape[1:]}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{images_path} holds {len(images)} images but {labels_path} "
                             f"holds {len(labels)} labels")
    if len(labels) and labels.max() >= len(TEXT_LABELS):
        raise IDXFormatError(f"{labels_path}: labels must be 0-{len(TEXT_LABELS) - 1}, "
                             f"got {int(labels.max())}")
    return images, labels.astype(np.int32)


def get_fashion_mnist_labels(labels: Union[Sequence[int], np.ndarray, NDArray]) -> List[str]:
    """The class names of numeric labels (d2l's ``get_fashion_mnist_labels``).

    >>> get_fashion_mnist_labels([0, 9, 1])
    ['T-shirt/top', 'Ankle boot', 'Trouser']
    """
    return [TEXT_LABELS[int(i)] for i in np.asarray(labels).ravel()]


def to_tensor(images: np.ndarray) -> NDArray:
    """``transforms.ToTensor`` on a whole batch: uint8 (N, H, W[, C]) -> float32 (N, C, H, W) in [0, 1].

    Speed: ``transforms.ToTensor`` is one MXNet call per image (60000 an epoch); the same
    arithmetic (``x / 255`` as float32, channels first) on each batch at once costs one.
    The tests check it equals ToTensor image by image.

    >>> to_tensor(np.full((2, 3, 3), 255, np.uint8)).shape
    (2, 1, 3, 3)
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W) or (N, H, W, C), "
                         f"got {images.dtype} {images.shape}")
    if images.ndim == 3:
        images = images[:, :, :, None]
    return nd.array(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255


def _batchify(samples):
    """DataLoader's ``batchify_fn``: stack the images and labels, then :func:`to_tensor`."""
    images, labels = zip(*samples)
    return to_tensor(np.stack(images)), nd.array(np.asarray(labels), dtype=np.int32)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` training samples in epoch ``epoch`` (0-based): a permutation.

    It depends on nothing but ``(seed, epoch)``: NumPy's legacy Mersenne Twister seeded
    with the pair (``RandomState([seed, epoch])``, a stream NumPy keeps stable across
    versions). So an epoch's order never depends on how many epochs ran before in this
    process, which makes resuming exact; and (unlike ``seed + epoch``) seed 0's second
    epoch is not seed 1's first. A distributed worker takes its share of this permutation.

    >>> epoch_order(5, seed=0, epoch=0).tolist() == epoch_order(5, seed=0, epoch=0).tolist()
    True
    >>> sorted(epoch_order(5, seed=0, epoch=1).tolist())
    [0, 1, 2, 3, 4]
    """
    n = as_int("n", n, minimum=0)
    seed = as_int("seed", seed, minimum=0)
    epoch = as_int("epoch", epoch, minimum=0)
    return np.random.RandomState([seed, epoch]).permutation(n)


class OrderSampler(gluon.data.Sampler):
    """A Gluon sampler that yields the indices of a given order (e.g. :func:`epoch_order`'s)."""

    def __init__(self, order: Union[Sequence[int], np.ndarray]) -> None:
        self._order = np.asarray(order, dtype=np.int64)

    def __iter__(self):
        return iter(self._order.tolist())

    def __len__(self):
        return len(self._order)


def fashion_mnist_dataset(train: bool = True, root: Optional[PathLike] = None,
                          limit: Optional[int] = None,
                          download: bool = True) -> gluon.data.ArrayDataset:
    """``gluon.data.ArrayDataset`` of (uint8 (28, 28, 1) image, int32 label), the first ``limit`` only.

    Pixels become float32 [0, 1] NCHW batches in the loaders (:func:`to_tensor`).
    """
    images, labels = load_fashion_mnist(train, root, download)
    if limit is not None:
        limit = as_int("limit", limit)
        images, labels = images[:limit], labels[:limit]
    return gluon.data.ArrayDataset(images[:, :, :, None], labels)


def resized(dataset: gluon.data.Dataset, size: int) -> gluon.data.Dataset:
    """``dataset`` with every image resized to ``size`` x ``size``, as d2l resizes Fashion-MNIST
    for the larger networks of chapter 5: Gluon's ``transforms.Resize`` in a transform of
    the dataset (``transform_first``), image by image as it is read, kept uint8 (H, W, 1).

    >>> ds = gluon.data.ArrayDataset(np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2))
    >>> resized(ds, 96)[0][0].shape
    (96, 96, 1)
    """
    size = as_int("size", size)
    resize = gluon.data.vision.transforms.Resize(size)
    return dataset.transform_first(lambda image: resize(nd.array(image, dtype=np.uint8))
                                   .asnumpy())


def train_loader(dataset: gluon.data.Dataset, batch_size: int, seed: int, epoch: int,
                 order: Callable[[int, int, int], Union[Sequence[int], np.ndarray]] = epoch_order
                 ) -> gluon.data.DataLoader:
    """The ``DataLoader`` of epoch ``epoch``: batches in the order ``order(len(dataset), seed, epoch)``.

    ``order`` defaults to :func:`epoch_order`; a distributed worker passes one that returns
    its share. The last batch keeps the remainder (``last_batch='keep'``, as d2l's loader).
    """
    batch_size = as_int("batch_size", batch_size)
    sampler = OrderSampler(order(len(dataset), seed, epoch))
    batches = gluon.data.BatchSampler(sampler, batch_size, last_batch="keep")
    return gluon.data.DataLoader(dataset, batch_sampler=batches, batchify_fn=_batchify)


def test_loader(dataset: gluon.data.Dataset, batch_size: int,
                indices: Optional[Sequence[int]] = None) -> gluon.data.DataLoader:
    """The ``DataLoader`` of the test set, in file order (only ``indices``, when given)."""
    batch_size = as_int("batch_size", batch_size)
    if indices is not None:
        batches = gluon.data.BatchSampler(OrderSampler(list(indices)), batch_size,
                                          last_batch="keep")
        return gluon.data.DataLoader(dataset, batch_sampler=batches, batchify_fn=_batchify)
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                 last_batch="keep", batchify_fn=_batchify)


test_loader.__test__ = False   # pytest's doctest collection: not a test despite its name
