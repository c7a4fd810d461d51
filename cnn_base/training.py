"""Training a classifier on Fashion-MNIST as d2l-zh v1 §5.5 does (``train_ch5``), resumable.

:func:`train_ch5` is the book's loop: softmax cross-entropy summed over the batch,
``trainer.step(batch_size)``, and after every epoch the line
``epoch N, loss L, train acc A, test acc T, time S sec``. It also

- trains data-parallel on a list of contexts the Gluon way: each batch cut by
  ``gluon.utils.split_and_load``, the parameters on every context, one ``Trainer``
  (its kvstore, ``'device'`` by default as Gluon's) summing the gradients;
- trains data-parallel over processes, as a worker of a parameter-server job
  (``kvstore='dist_sync'``, see :mod:`cnn_base.distributed`): each worker runs its piece
  of every global batch, the servers sum the gradients, and the epoch's numbers are
  summed over the workers, so they are the global batch's -- W workers with batch B/W
  each take the steps of one process with batch B;
- takes the order of epoch ``e`` from ``order(n, seed, e)`` (default
  :func:`cnn_base.data.epoch_order`): nothing but ``(seed, e)`` decides it;
- writes a checkpoint after every epoch and resumes from the last complete one, so a
  run killed at any moment and resumed ends with the numbers of one never stopped.

Why the resume is exact: the parameters and the Trainer's states are saved as they are;
the next epoch's batches follow from ``(seed, epoch)`` alone; MXNet's generator is seeded
at the start of every epoch from ``(seed, epoch)`` (MXNet 1.x cannot read its state back,
so it is not saved but re-derived; LeNet draws nothing from it, a net with dropout would);
NumPy's and Python's global generators are saved and restored for any code that uses them.

A checkpoint is a folder ``epoch-NNNN`` holding ``params`` (``save_parameters``),
``trainer.states`` (``Trainer.save_states``) and ``state.json`` (epoch, history,
settings, generator states). It is written as ``.epoch-NNNN.partial``, every file flushed
to disk, then renamed in one step, so a crash leaves either the whole checkpoint or
none; the previous one is removed only after. Resuming checks the settings (model,
block kind, batch size, learning rate, seed, data sizes, the layers) and refuses a
checkpoint that does not match, naming what differs.
"""
import json
import math
import os
import pathlib
import random
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd

from ._checks import as_int, as_positive_float, check_choice
from .context import as_ctx
from .data import epoch_order, fashion_mnist_dataset, test_loader, train_loader
from .distributed import DIST_KVSTORES, SINGLE_PROCESS, Workers, check_shardable
from .models import LENET_BLOCKS, lenet

__all__ = ["EpochResult", "TrainResult", "CheckpointError", "as_ctx_list", "init_net",
           "evaluate_accuracy", "epoch_line", "latest_checkpoint", "train_ch5", "train_lenet",
           "PROGRESS_CHOICES", "KVSTORE_CHOICES"]

PROGRESS_CHOICES = ("auto", "bar", "plain", "none")
CHECKPOINT_FORMAT = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: another model, block kind, batch size, ..."""


@dataclass
class EpochResult:
    """One epoch of :func:`train_ch5`, what d2l prints plus the training speed.

    ``loss`` is the mean softmax cross-entropy over the epoch's training samples (each
    taken before its batch's update), ``train_acc`` the share of them classified right,
    ``test_acc`` the test accuracy after the epoch, ``seconds`` the epoch's wall time
    with the test pass (as d2l's ``time``), ``samples_per_sec`` training samples over
    the training part's seconds.
    """
    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float
    samples_per_sec: float

    def line(self):
        """d2l's line.

        >>> EpochResult(1, 2.31942, 0.1, 0.1, 11.03, 6000.0).line()
        'epoch 1, loss 2.3194, train acc 0.100, test acc 0.100, time 11.0 sec'
        """
        return epoch_line(self.epoch, self.loss, self.train_acc, self.test_acc, self.seconds)


def epoch_line(epoch, loss, train_acc, test_acc, seconds):
    """``epoch N, loss L, train acc A, test acc T, time S sec`` as d2l-zh prints it."""
    return ("epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec"
            % (epoch, loss, train_acc, test_acc, seconds))


@dataclass
class TrainResult:
    """What :func:`train_lenet` returns: the trained net, its settings and the history."""
    block: str
    ctx: list
    batch_size: int
    lr: float
    seed: int
    num_train: int
    num_test: int
    epochs: list
    net: gluon.Block = field(repr=False)
    kvstore: str = "device"
    num_workers: int = 1           # processes of a parameter-server job (1: none)
    over_all_workers: bool = True  # False: the numbers are this worker's shard (dist_async)

    @property
    def final(self):
        """The last epoch's :class:`EpochResult`."""
        return self.epochs[-1]

    def to_dict(self):
        """JSON-ready: ``epochs`` (one dict per epoch), ``ctx``, ``batch_size``, ``lr``, ``seed``, ..."""
        return {"block": self.block, "ctx": [str(c) for c in self.ctx],
                "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "num_train": self.num_train, "num_test": self.num_test,
                "kvstore": self.kvstore, "num_workers": self.num_workers,
                "over_all_workers": self.over_all_workers,
                "epochs": [asdict(e) for e in self.epochs]}


def as_ctx_list(ctx):
    """One context or several: ``'cpu(0),cpu(1)'``, a list of names or contexts -> list of ``mx.Context``.

    >>> as_ctx_list('cpu(0), cpu(1)')
    [cpu(0), cpu(1)]
    >>> as_ctx_list(mx.cpu(2))
    [cpu(2)]
    """
    if isinstance(ctx, str):
        parts = [p for p in ctx.split(",")]
        if any(not p.strip() for p in parts):
            raise ValueError(f"ctx must be one context or a comma-separated list such as "
                             f"'cpu(0),cpu(1)', got {ctx!r}")
        ctx = parts
    if ctx is None or isinstance(ctx, mx.Context):
        ctx = [ctx]
    if not isinstance(ctx, (list, tuple)) or not ctx:
        raise TypeError(f"ctx must be a context, a string or a non-empty list of them, got {ctx!r}")
    contexts = [as_ctx(c) for c in ctx]
    if len(set(contexts)) != len(contexts):
        raise ValueError(f"ctx must not name a context twice, got {', '.join(map(str, contexts))}")
    return contexts


def init_net(net, ctx, seed, input_shape=(1, 1, 28, 28)):
    """Xavier-initialise ``net`` on every context of ``ctx`` from ``mx.random.seed(seed)``.

    A forward pass on zeros of ``input_shape`` fixes the deferred shapes, so the
    parameters exist (and can be loaded or compared) before training. Gluon draws each
    value once and copies it to every context: the same seed gives the same start on
    one context or several, and for our blocks and Gluon's (same parameter order and shapes).
    """
    contexts = as_ctx_list(ctx)
    mx.random.seed(as_int("seed", seed, minimum=0))
    net.initialize(init.Xavier(), ctx=contexts, force_reinit=True)
    net(nd.zeros(input_shape, ctx=contexts[0]))
    return net


def _split(X, y, contexts):
    """``split_and_load`` of a batch; a batch smaller than the context list uses the first few."""
    contexts = contexts[:len(X)]
    return (gluon.utils.split_and_load(X, contexts, even_split=False),
            gluon.utils.split_and_load(y, contexts, even_split=False))


def evaluate_accuracy(data_iter, net, ctx):
    """The share of ``data_iter``'s samples that ``net`` classifies right (d2l's ``evaluate_accuracy``)."""
    correct, n = _count_correct(data_iter, net, ctx)
    return correct / n


def _count_correct(data_iter, net, ctx):
    """How many of ``data_iter``'s samples ``net`` classifies right, and how many there are."""
    contexts = as_ctx_list(ctx)
    correct, n = 0.0, 0
    for X, y in data_iter:
        for X_part, y_part in zip(*_split(X, y, contexts)):
            y_hat = net(X_part)
            correct += (y_hat.argmax(axis=1) == y_part.astype("float32")).sum().asscalar()
        n += y.shape[0]
    return correct, n


# --- checkpoints -----------------------------------------------------------------------------

def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def latest_checkpoint(directory):
    """The newest complete checkpoint folder ``epoch-NNNN`` in ``directory``, or None."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _EPOCH_DIR.match(p.name)) and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def _rng_state():
    keys = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"numpy": [keys[0], keys[1].tolist(), int(keys[2]), int(keys[3]), float(keys[4])],
            "python": [version, list(internal), gauss]}


def _set_rng_state(state):
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _save_checkpoint(directory, net, trainer, epoch, history, config):
    directory = pathlib.Path(directory)
    final = directory / f"epoch-{epoch:04d}"
    partial = directory / f".epoch-{epoch:04d}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    net.save_parameters(str(partial / "params"))
    trainer.save_states(str(partial / "trainer.states"))
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config,
             "history": [asdict(e) for e in history], "rng": _rng_state()}
    (partial / "state.json").write_text(json.dumps(state) + "\n", encoding="utf-8")
    for name in ("params", "trainer.states", "state.json"):
        _fsync_file(partial / name)
    _fsync_dir(partial)
    if final.exists():          # left by a run killed after its rename, before the clean-up
        shutil.rmtree(final)
    os.rename(partial, final)   # the one step that makes the checkpoint exist
    _fsync_dir(directory)
    for old in directory.iterdir():
        m = _EPOCH_DIR.match(old.name)
        if (m and int(m.group(1)) < epoch) or old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _describe(config):
    return ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "layers")


def _load_checkpoint(path, net, trainer, config):
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read state.json: {e}") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, "
                              f"this version reads {CHECKPOINT_FORMAT}")
    saved = state["config"]
    differ = [f"{k}: checkpoint {saved.get(k)!r}, this run {config.get(k)!r}"
              for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
    if differ:
        raise CheckpointError(f"the checkpoint {path} is from another run "
                              f"({'; '.join(differ)}); resume with the same settings or "
                              f"choose another checkpoint folder")
    try:
        net.load_parameters(str(path / "params"), ctx=list(net.collect_params().values())[0]
                            .list_ctx())
    except (AssertionError, ValueError, mx.MXNetError) as e:
        raise CheckpointError(f"{path}/params does not fit the network: "
                              f"{' '.join(str(e).split())[:300]}") from None
    trainer.load_states(str(path / "trainer.states"))
    _set_rng_state(state["rng"])
    return state["epoch"], [EpochResult(**e) for e in state["history"]]


def _layers(net):
    """The layer classes and parameter shapes, in order: what a checkpoint must match."""
    children = list(net._children.values()) if hasattr(net, "_children") else []
    kinds = [f"{type(c).__module__}.{type(c).__qualname__}" for c in children]
    shapes = [list(p.shape) for p in net.collect_params().values()]
    return {"classes": kinds, "shapes": shapes}


# --- progress ----------------------------------------------------------------------------------

def _progress(batches, total, epoch, mode, log):
    """Wrap the epoch's batches in a progress display: a tqdm bar or plain quarter lines."""
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "plain"
    if mode == "bar":
        from tqdm import tqdm   # imported when used: plain runs need no terminal library
        return tqdm(batches, total=total, desc=f"epoch {epoch}", unit="batch", leave=False,
                    file=sys.stdout, dynamic_ncols=True)
    if mode == "plain":
        return _plain_progress(batches, total, epoch, log)
    return batches


def _plain_progress(batches, total, epoch, log):
    marks = {max(1, math.ceil(total * q / 4)): q * 25 for q in (1, 2, 3)}
    start = time.perf_counter()
    for i, batch in enumerate(batches, start=1):
        yield batch
        if i in marks and i < total:
            log(f"  epoch {epoch}: {marks[i]}% ({i}/{total} batches, "
                f"{time.perf_counter() - start:.1f} s)")


# --- the loop ---------------------------------------------------------------------------------

def train_ch5(net, train_data, test_data, batch_size, trainer, ctx, num_epochs, seed=0,
              checkpoint=None, resume=False, config=None, order=epoch_order, progress="auto",
              log=print, workers=None):
    """d2l-zh v1's ``train_ch5``: train ``net`` with ``trainer`` and return the history.

    Parameters
    ----------
    net : gluon.Block
        Initialised on every context of ``ctx`` (see :func:`init_net`).
    train_data, test_data : gluon.data.Dataset
        Of (uint8 image, label) pairs, e.g. :func:`cnn_base.data.fashion_mnist_dataset`.
    batch_size : int
        The global batch, cut across the workers and the contexts; also ``trainer.step``'s
        normaliser, as in d2l (so the last, smaller batch takes a proportionally smaller step).
    trainer : gluon.Trainer
        Over ``net.collect_params()``; its kvstore sums the contexts' gradients.
    ctx : context, str or list
        One context or several (``'cpu(0),cpu(1)'``).
    num_epochs : int
        Epochs in all, counting those a resumed checkpoint already holds.
    seed : int, default 0
        Decides every epoch's order (``order(n, seed, epoch)``) and MXNet's generator.
    checkpoint : path-like, optional
        A folder for a checkpoint after every epoch. In a distributed run every worker
        resumes from it (so it must be a folder they all see: one machine, or a shared
        file system) and only rank 0 writes it.
    resume : bool, default False
        Continue from the newest checkpoint in ``checkpoint``; with none there, start at
        epoch 1 (saying so). Without ``resume``, a folder that already holds a checkpoint
        is refused rather than overwritten.
    config : dict, optional
        Settings a checkpoint must match (model, block kind, ...); the batch size, seed,
        learning rate, data sizes and the layers are always added.
    order : callable, default :func:`cnn_base.data.epoch_order`
        ``order(n, seed, epoch)`` -> the sample indices of the epoch (a worker's share).
    progress : {'auto', 'bar', 'plain', 'none'}, default 'auto'
        A tqdm bar per epoch on a terminal, plain quarter lines otherwise (``'auto'``).
    log : callable, default print
        Receives d2l's lines (``None`` for silence).
    workers : cnn_base.distributed.Workers, optional
        This process's place in a parameter-server job: the worker trains on its share
        of every epoch (batches of ``batch_size / num_workers``), evaluates its part of
        the test set, and the numbers are summed over the workers. Under ``dist_sync``
        the gradients are summed through the job's store before every ``trainer.step``
        (:meth:`~cnn_base.distributed.Workers.allreduce_grads`), so ``trainer`` must
        have ``kvstore=None``; under ``dist_async`` ``trainer`` uses ``workers.kv``.
        Default: one process.

    Returns
    -------
    list of EpochResult
        One per epoch, those restored from the checkpoint included.
    """
    contexts = as_ctx_list(ctx)
    batch_size = as_int("batch_size", batch_size)
    num_epochs = as_int("num_epochs", num_epochs, minimum=0)
    seed = as_int("seed", seed, minimum=0)
    check_choice("progress", progress, PROGRESS_CHOICES)
    workers = SINGLE_PROCESS if workers is None else workers
    if not isinstance(workers, Workers):
        raise TypeError(f"workers must be a cnn_base.distributed.Workers, got "
                        f"{type(workers).__name__} {workers!r}")
    log = log or (lambda *_: None)
    n_train, n_test = len(train_data), len(test_data)
    if n_train == 0 or n_test == 0:
        raise ValueError(f"train_data and test_data must not be empty, got {n_train} and "
                         f"{n_test} samples")
    check_shardable(n_train, batch_size, workers.num_workers)
    # the smallest piece of the last batch: what a worker cuts across its contexts
    last = n_train % batch_size // workers.num_workers
    if 0 < last < len(contexts):
        # its gradient would come from fewer contexts than the Trainer sums over
        raise ValueError(f"the last batch holds {last} of the {n_train} training samples "
                         f"(batch size {batch_size}"
                         f"{'' if workers.num_workers == 1 else ' per worker'}), fewer than "
                         f"the {len(contexts)} contexts; change the batch size or the number "
                         f"of samples")
    config = dict(config or {}, batch_size=batch_size, seed=seed,
                  lr=float(trainer.learning_rate), num_train=n_train, num_test=n_test,
                  layers=_layers(net))

    history, start_epoch = [], 0
    if checkpoint is not None:
        checkpoint = pathlib.Path(checkpoint)
        found = latest_checkpoint(checkpoint)
        if resume and found is not None:
            start_epoch, history = _load_checkpoint(found, net, trainer, config)
            log(f"resuming from {found} (epoch {start_epoch} of {num_epochs} done)")
        elif resume:
            log(f"no checkpoint in {checkpoint} yet: starting at epoch 1")
        elif found is not None:
            raise CheckpointError(f"{checkpoint} already holds a checkpoint ({found.name}); "
                                  f"pass resume=True (--resume) to continue it, or choose "
                                  f"another folder")
        if workers.writes_files:
            checkpoint.mkdir(parents=True, exist_ok=True)
    elif resume:
        raise ValueError("resume=True needs a checkpoint folder")
    if workers.distributed and workers.sums_over_workers:
        # a worker that does not see rank 0's checkpoint would start at another epoch
        total, squares = workers.sum([start_epoch, start_epoch ** 2])
        if total * total != squares * workers.num_workers:
            raise CheckpointError(f"the workers resume from different epochs (this one from "
                                  f"{start_epoch}, {total / workers.num_workers:g} on "
                                  f"average): the checkpoint folder {checkpoint} must be one "
                                  f"that every worker sees")

    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    where = contexts if len(contexts) > 1 else contexts[0]
    log(f"training on {where}" if not workers.distributed else
        f"training on {where} as worker rank {workers.rank} of {workers.num_workers} "
        f"({workers.kv.type}), {batch_size // workers.num_workers} samples of every batch "
        f"of {batch_size}")
    local_batch = workers.local_batch_size(batch_size)
    # under dist_sync the servers sum the gradients and the Trainer updates locally; a
    # Trainer with a kvstore of its own would sum them a second time
    grads_over_workers = workers.distributed and workers.sums_over_workers
    if grads_over_workers and trainer._kvstore_params.get("kvstore") is not None:
        raise ValueError("under dist_sync the trainer must have kvstore=None: the workers "
                         "sum the gradients through the job's store themselves")
    params = [p for _, p in sorted(net.collect_params().items())]
    order = workers.share(order, batch_size)
    test_part = workers.part(n_test)
    for epoch in range(start_epoch, num_epochs):
        # MXNet's state cannot be saved; seeding it from (seed, epoch) makes it resumable
        mx.random.seed(int(np.random.RandomState([seed, epoch, 1]).randint(2 ** 31 - 1)))
        batches = train_loader(train_data, local_batch, seed, epoch, order)
        total = len(batches)
        train_l_sum, train_acc_sum, n = 0.0, 0.0, 0
        start = time.perf_counter()
        for X, y in _progress(batches, total, epoch + 1, progress, log):
            X_parts, y_parts = _split(X, y, contexts)
            with autograd.record():
                y_hats = [net(X_part) for X_part in X_parts]
                ls = [loss(y_hat, y_part).sum() for y_hat, y_part in zip(y_hats, y_parts)]
            for l in ls:
                l.backward()
            if grads_over_workers:
                workers.allreduce_grads(params)
            trainer.step(batch_size)
            train_l_sum += sum(l.asscalar() for l in ls)
            train_acc_sum += sum((y_hat.argmax(axis=1) == y_part.astype("float32")).sum()
                                 .asscalar() for y_hat, y_part in zip(y_hats, y_parts))
            n += y.shape[0]
        train_seconds = time.perf_counter() - start
        test_correct, test_n = _count_correct(
            test_loader(test_data, batch_size, indices=range(test_part.start, test_part.stop)),
            net, contexts)
        # the global batch's numbers: summed over the workers (one process: as they are)
        train_l_sum, train_acc_sum, n, test_correct, test_n = workers.sum(
            [train_l_sum, train_acc_sum, n, test_correct, test_n])
        result = EpochResult(epoch=epoch + 1, loss=float(train_l_sum / n),
                             train_acc=float(train_acc_sum / n),
                             test_acc=float(test_correct / test_n),
                             seconds=time.perf_counter() - start,
                             samples_per_sec=float(n / train_seconds))
        history.append(result)
        log(result.line())
        if checkpoint is not None and workers.writes_files:
            _save_checkpoint(checkpoint, net, trainer, epoch + 1, history, config)
    return history


def train_lenet(block="custom", num_epochs=5, batch_size=256, lr=0.9, seed=0, ctx=None,
                activation="sigmoid", root=None, limit=None, train_data=None, test_data=None,
                checkpoint=None, resume=False, kvstore="device", progress="auto", log=print):
    """d2l's LeNet experiment: :func:`cnn_base.lenet`, Xavier from ``seed``, SGD, :func:`train_ch5`.

    Parameters
    ----------
    block : {'custom', 'builtin'}, default 'custom'
    num_epochs, batch_size, lr : d2l's 5, 256, 0.9
    seed : int, default 0
        The initial weights (``mx.random.seed``) and every epoch's order.
    ctx : context, str or list, default None (``'auto'``)
    activation : str, default 'sigmoid'
    root : path-like, optional
        Where the IDX files are (see :func:`cnn_base.data.load_fashion_mnist`).
    limit : int, optional
        Only the first ``limit`` training and ``limit`` test images.
    train_data, test_data : gluon.data.Dataset, optional
        Already loaded data (``root`` and ``limit`` then unused).
    checkpoint, resume, progress, log : as :func:`train_ch5`
    kvstore : str or cnn_base.distributed.Workers, default 'device'
        The Trainer's kvstore: ``'local'`` or ``'device'`` (Gluon's default) in one
        process; ``'dist_sync'`` or ``'dist_async'`` as a worker of a parameter-server
        job (started by ``launch-dist``), or that job's :class:`~cnn_base.distributed.Workers`
        when already created. Under ``'dist_sync'`` the servers only sum the gradients
        (:meth:`~cnn_base.distributed.Workers.allreduce_grads` pushes and pulls them
        through the store; the Trainer itself has ``kvstore=None``) and every worker
        applies the same update, so the run takes the steps of one process with the
        same global ``batch_size``. Under
        ``'dist_async'`` the servers run SGD on each push as it comes; the numbers are
        then the worker's own shard's, and there are no checkpoints (MXNet cannot save
        an optimizer that lives on the servers). One run per job: the Trainer's keys
        in the store cannot be used twice.

    Returns
    -------
    TrainResult
    """
    check_choice("block", block, LENET_BLOCKS)
    lr = as_positive_float("lr", lr)
    contexts = as_ctx_list(ctx)
    kv_type = kvstore.kv.type if isinstance(kvstore, Workers) and kvstore.distributed \
        else kvstore
    if kv_type == "dist_async" and checkpoint is not None:
        raise ValueError("checkpoints need kvstore 'dist_sync', not 'dist_async': under "
                         "dist_async the optimizer lives on the servers and MXNet cannot "
                         "save its state from a worker")
    workers = _workers_for(kvstore)
    if train_data is None:
        train_data = fashion_mnist_dataset(True, root, limit)
    if test_data is None:
        test_data = fashion_mnist_dataset(False, root, limit)
    net = init_net(lenet(block, activation), contexts, seed)
    if workers.distributed and workers.sums_over_workers:
        # dist_sync: the servers sum the gradients (Workers.allreduce_grads, in train_ch5)
        # and each worker's own Trainer applies the same update; the optimizer state stays
        # on the workers, so rank 0 can checkpoint it
        workers.claim()
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr},
                                kvstore=None)
    elif workers.distributed:
        # dist_async: the servers run SGD on each push as it comes (MXNet's only async mode)
        workers.claim()
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr},
                                kvstore=workers.kv, update_on_kvstore=True)
    else:
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr},
                                kvstore=kvstore)
    history = train_ch5(net, train_data, test_data, batch_size, trainer, contexts, num_epochs,
                        seed=seed, checkpoint=checkpoint, resume=resume, progress=progress,
                        log=log, config={"model": "lenet", "block": block,
                                         "activation": activation}, workers=workers)
    return TrainResult(block=block, ctx=contexts, batch_size=batch_size, lr=lr, seed=seed,
                       num_train=len(train_data), num_test=len(test_data), epochs=history,
                       net=net, kvstore=workers.kv.type if workers.distributed else kvstore,
                       num_workers=workers.num_workers,
                       over_all_workers=workers.sums_over_workers)


KVSTORE_CHOICES = ("local", "device") + DIST_KVSTORES


def _workers_for(kvstore):
    """``kvstore`` as a :class:`~cnn_base.distributed.Workers` (one process unless dist_*)."""
    if isinstance(kvstore, Workers):
        return kvstore
    check_choice("kvstore", kvstore, KVSTORE_CHOICES)
    return Workers.create(kvstore) if kvstore in DIST_KVSTORES else SINGLE_PROCESS
