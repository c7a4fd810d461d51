"""Exporting a model of our blocks so that it loads wherever MXNet runs.

A hybridized model of our blocks computes with the C++ kernels where they apply, so
the graph ``HybridBlock.export`` writes names the operators ``cnn_base_conv2d`` and
``cnn_base_pool2d``; reading it back then needs ``import cnn_base`` with its kernels
loaded first (as any MXNet extension operator does). Elsewhere -- plain MXNet, or
``CNN_BASE_NATIVE=0`` -- loading fails with ``Operator cnn_base_conv2d is not
registered``. :func:`export` with ``portable=True`` writes the graph the blocks build
from MXNet's own operators instead (the same numbers), which plain MXNet 1.9.1 loads
with ``gluon.SymbolBlock.imports`` and no cnn_base at all. :func:`load_exported` reads
either kind and says what to do when a graph needs the kernels and they are not there.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import TYPE_CHECKING, Iterable, Optional, Tuple, Union

if TYPE_CHECKING:      # MXNet is imported where it is used (annotations only name it)
    import mxnet as mx
    from mxnet import gluon
    from mxnet.ndarray import NDArray

from . import native
from ._files import WriteError, atomic_path
from ._mxnet_private import children, hybridize_state, rebuild_graph
from ._types import PathLike

__all__ = ["export", "load_exported", "KERNEL_OPERATORS"]

KERNEL_OPERATORS = (native.CONV_OP_NAME, native.OP_NAME, native.BATCH_NORM_OP_NAME)
"""The operators of our C++ kernels a default export may name: ``cnn_base_conv2d``, ``cnn_base_pool2d``,
``cnn_base_batch_norm`` (beside the latter, a ``Custom`` node of type ``cnn_base_training``)."""


def _hybrid_blocks(net):
    stack, found = [net], []
    while stack:
        block = stack.pop()
        if hasattr(block, "hybridize") and hasattr(block, "_clear_cached_op"):
            found.append(block)
        stack.extend(children(block))
    return found


def export(net: gluon.Block, path: PathLike, example: NDArray, portable: bool = True,
           epoch: int = 0) -> Tuple[pathlib.Path, pathlib.Path]:
    """Write ``net`` as ``path-symbol.json`` and ``path-NNNN.params`` (MXNet's export format).

    Parameters
    ----------
    net : gluon.HybridBlock or nn.Sequential of HybridBlocks
        Initialised; our blocks, Gluon's, or both (e.g. :func:`cnn_base.lenet`'s net, or a
        trained :class:`~cnn_base.training.experiment.TrainResult`'s ``net``).
    path : path-like
        The files' prefix (its folder must exist): ``path-symbol.json``, ``path-0000.params``.
    example : NDArray
        An input batch (e.g. one sample of the right shape); run through ``net`` to trace
        the graph that is written.
    portable : bool, default True
        ``True``: the graph uses MXNet's operators only (our blocks trace their MXNet-operator
        path, as with ``CNN_BASE_NATIVE=0``), so plain MXNet 1.9.1 loads it with
        ``gluon.SymbolBlock.imports(path + '-symbol.json', ['data'], path + '-0000.params')``
        and no cnn_base imported, and gives the same outputs. ``False``: ``net.export`` as it
        is; where the kernels apply the graph names ``cnn_base_conv2d`` / ``cnn_base_pool2d``,
        and reading it needs ``import cnn_base`` first (see :func:`load_exported`).
    epoch : int, default 0
        The number in the parameter file's name.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The symbol file and the parameter file.

    Each file is written whole or not at all (``cnn_base._files``): a failure is a
    ``WriteError`` naming the file and the reason. With ``portable=True`` the kernels'
    setting and the hybridization of ``net`` and of every block in it (on or off, and its
    keywords) are given back as they were; the next call rebuilds the graphs with the kernels.

    Examples
    --------
    >>> import tempfile, mxnet as mx, cnn_base as cb
    >>> net = cb.lenet('custom'); net.initialize()
    >>> folder = tempfile.mkdtemp()
    >>> symbol_file, params_file = cb.export(net, folder + '/lenet', mx.nd.zeros((1, 1, 28, 28)))
    >>> 'cnn_base_' in symbol_file.read_text()
    False
    """
    exported = _exportable(net)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= 9999:
        raise ValueError(f"epoch must be a whole number from 0 to 9999, got {epoch!r}")
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {path}: no folder {str(path.parent)!r}")
    blocks = _hybrid_blocks(exported)
    states = [(block, hybridize_state(block)) for block in blocks]     # parents first
    old = native.set_enabled(False) if portable else None
    try:
        if portable:
            for block in blocks:
                rebuild_graph(block)
        if portable or not states[0][1][0]:
            exported.hybridize(True, **states[0][1][1])
        exported(example)       # traces the graph (portable: MXNet operators only)
        return _write(exported, path, epoch)
    finally:
        if portable:
            native.set_enabled(old)
        for block, (active, flags) in states:
            rebuild_graph(block)    # the next call builds its graph as before (kernels included)
            block.hybridize(active, **flags)


def _exportable(net):
    """``net`` itself, or for the book's ``nn.Sequential`` of HybridBlocks (LeNet as d2l builds
    it) a ``HybridSequential`` holding the same layers (the same parameters and names)."""
    from mxnet.gluon import nn

    if hasattr(net, "export") and hasattr(net, "hybridize"):
        return net
    layers = children(net)
    if isinstance(net, nn.Sequential) and layers and all(hasattr(b, "export") for b in layers):
        hybrid = nn.HybridSequential(prefix=net.prefix)
        hybrid.add(*layers)
        return hybrid
    raise TypeError(f"net must be a gluon.HybridBlock (or an nn.Sequential of them), got "
                    f"{type(net).__name__}")


def _write(net, path, epoch):
    """``net.export`` into a temporary folder beside ``path``, then each file atomically."""
    names = (f"{path.name}-symbol.json", f"{path.name}-{epoch:04d}.params")
    try:
        staging = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.export.")
    except OSError as e:
        raise WriteError(path.parent / names[0], e.strerror or str(e), e.errno) from None
    try:
        import mxnet as mx

        try:
            net.export(os.path.join(staging, path.name), epoch=epoch)
        except mx.MXNetError as e:
            from ._files import why_write_failed

            reason, code = why_write_failed(path)
            raise WriteError(path.parent / names[0],
                             reason or " ".join(str(e).split()).rsplit("MXNetError: ", 1)[-1],
                             code) from None
        written = []
        for name in names:
            final = path.parent / name
            with atomic_path(final) as tmp:
                os.replace(os.path.join(staging, name), tmp)
            written.append(final)
        return tuple(written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_exported(path: PathLike, input_names: Union[str, Iterable[str]] = ("data",),
                  epoch: int = 0,
                  ctx: Optional[Union[mx.Context, Iterable[mx.Context]]] = None
                  ) -> gluon.SymbolBlock:
    """Read a model written by :func:`export` (or ``HybridBlock.export``) as a ``SymbolBlock``.

    ``path`` is the prefix given to the export. A graph naming ``cnn_base_conv2d`` or
    ``cnn_base_pool2d`` needs our C++ kernels loaded; without them (no compiler,
    ``CNN_BASE_NATIVE=0``, or another machine) this raises a ``RuntimeError`` saying
    what to do -- load the kernels (``cnn-base build-native``), or export the model again
    with ``cnn_base.export(net, path, example, portable=True)`` -- where MXNet would say
    only ``Operator cnn_base_conv2d is not registered``.
    """
    from mxnet import gluon

    path = pathlib.Path(path)
    symbol_file = path.parent / f"{path.name}-symbol.json"
    params_file = path.parent / f"{path.name}-{epoch:04d}.params"
    try:
        graph = json.loads(symbol_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {symbol_file}: {getattr(e, 'strerror', None) or e}") \
            from None
    used = sorted({node.get("op") for node in graph.get("nodes", [])} & set(KERNEL_OPERATORS))
    if used and not native.loaded():
        raise RuntimeError(
            f"{symbol_file} uses cnn_base's C++ operators ({', '.join(used)}), which are not "
            f"loaded here ({native.status()}); build and load them (`cnn-base build-native`, "
            f"then `import cnn_base`), or export the model again with "
            f"cnn_base.export(net, path, example, portable=True) for a graph plain MXNet reads")
    names = [input_names] if isinstance(input_names, str) else list(input_names)
    return gluon.SymbolBlock.imports(str(symbol_file), names, str(params_file), ctx=ctx)
