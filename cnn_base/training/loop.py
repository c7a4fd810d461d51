"""d2l-zh v1 §5.5's training loop, ``train_ch5``, on one context or several, or as a worker, resumable.

:func:`train_ch5` is the book's loop: softmax cross-entropy summed over the batch,
``trainer.step(batch_size)``, and after every epoch the line
``epoch N, loss L, train acc A, test acc T, time S sec``. It also

- trains data-parallel on a list of contexts the Gluon way: each batch cut by
  ``gluon.utils.split_and_load``, the parameters on every context, one ``Trainer``
  (its kvstore, ``'device'`` by default as Gluon's) summing the gradients;
- trains data-parallel over processes, as a worker of a parameter-server job
  (``kvstore='dist_sync'``, see :mod:`cnn_base.training.distributed`): each worker runs
  its piece of every global batch, the servers sum the gradients, and the epoch's numbers
  are summed over the workers, so they are the global batch's -- W workers with batch B/W
  each take the steps of one process with batch B;
- takes the order of epoch ``e`` from ``order(n, seed, e)`` (default
  :func:`cnn_base.training.data.epoch_order`): nothing but ``(seed, e)`` decides it;
- writes a checkpoint after every epoch and resumes from the last complete one
  (:mod:`cnn_base.training.checkpoints`), so a run killed at any moment and resumed ends
  with the numbers of one never stopped.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd

from .._checks import as_int, check_choice
from .._choices import PROGRESS_CHOICES
from .._types import PathLike, Progress, Shape
from .._mxnet_private import trainer_kvstore
from ..context import as_ctx
from .._files import WriteError
from .checkpoints import CheckpointError, layers, resume_or_start, save_checkpoint
from .data import epoch_order, test_loader, train_loader
from .distributed import SINGLE_PROCESS, Workers, check_shardable

# a context or several, as as_ctx_list takes them: None ('auto'), a name ('cpu(0),cpu(1)' for
# several), an mx.Context, or a list of names and contexts
CtxSpec = Union[None, str, mx.Context, Sequence[Union[str, mx.Context]]]
# where d2l's lines go (None: nowhere)
Log = Optional[Callable[[str], Any]]

__all__ = ["EpochResult", "TrainingDiverged", "TrainingInterrupted", "as_ctx_list", "init_net",
           "perturb_weights",
           "evaluate_accuracy", "epoch_line", "train_ch5", "PROGRESS_CHOICES"]


class TrainingDiverged(ArithmeticError):
    """The loss of a batch became NaN or infinite: :func:`train_ch5` stopped there.

    ``epoch`` and ``batch`` (1-based; ``batch`` is None when a distributed run found it in
    the epoch's sum over the workers) say where, ``loss`` is the batch's loss sum, ``lr``
    the learning rate, ``history`` the complete epochs before (their checkpoint, if any, is
    the last one: nothing of the diverged epoch is saved).
    """

    def __init__(self, epoch: int, batch: Optional[int], loss: float, lr: float,
                 history: List[EpochResult]) -> None:
        self.epoch, self.batch, self.loss, self.lr, self.history = epoch, batch, loss, lr, history
        where = f"epoch {epoch}" + ("" if batch is None else f", batch {batch}")
        super().__init__(f"the training diverged: the loss became {loss} at {where} "
                         f"(learning rate {lr:g}); try a smaller learning rate, e.g. "
                         f"{lr / 10:g}")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_ch5`: ``epoch`` was running, ``saved`` epochs are checkpointed.

    A ``KeyboardInterrupt``, so code that does not know it stops as before.
    """

    def __init__(self, epoch: int, saved: int) -> None:
        self.epoch, self.saved = epoch, saved
        super().__init__(f"interrupted at epoch {epoch}")


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

    def line(self) -> str:
        """d2l's line.

        >>> EpochResult(1, 2.31942, 0.1, 0.1, 11.03, 6000.0).line()
        'epoch 1, loss 2.3194, train acc 0.100, test acc 0.100, time 11.0 sec'
        """
        return epoch_line(self.epoch, self.loss, self.train_acc, self.test_acc, self.seconds)


def epoch_line(epoch: int, loss: float, train_acc: float, test_acc: float,
               seconds: float) -> str:
    """``epoch N, loss L, train acc A, test acc T, time S sec`` as d2l-zh prints it."""
    return ("epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec"
            % (epoch, loss, train_acc, test_acc, seconds))


def as_ctx_list(ctx: CtxSpec) -> List[mx.Context]:
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


def init_net(net: gluon.Block, ctx: CtxSpec, seed: int,
             input_shape: Shape = (1, 1, 28, 28)) -> gluon.Block:
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


def perturb_weights(net: gluon.Block, scale: float, seed: int) -> gluon.Block:
    """Multiply every initial weight of ``net`` by 1 + ``scale`` N(0, 1), drawn by NumPy from
    ``seed`` (MXNet's own generator is left as it was); 0 leaves ``net`` as it is.

    What it is for: how far a float32 run drifts from itself when its start moves by
    rounding's size (e.g. ``scale=1e-6``): the yardstick for how closely two implementations
    of the same network can track each other over a run.
    """
    if scale == 0:
        return net
    rng = np.random.RandomState(as_int("seed", seed, minimum=0))
    for param in net.collect_params().values():
        W = param.data()
        factor = 1 + scale * rng.standard_normal(W.shape)
        # an NDArray, not NumPy: set_data copies NumPy into the array's own (possibly
        # oneDNN) layout, which MXNet refuses; an NDArray is copied through a reorder
        param.set_data(nd.array(W.asnumpy() * factor, dtype=W.dtype, ctx=W.context))
    return net


def _split(X, y, contexts):
    """``split_and_load`` of a batch; a batch smaller than the context list uses the first few."""
    contexts = contexts[:len(X)]
    return (gluon.utils.split_and_load(X, contexts, even_split=False),
            gluon.utils.split_and_load(y, contexts, even_split=False))


def evaluate_accuracy(data_iter: Iterable[Tuple[nd.NDArray, nd.NDArray]], net: gluon.Block,
                      ctx: CtxSpec) -> float:
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

def train_ch5(net: gluon.Block, train_data: gluon.data.Dataset, test_data: gluon.data.Dataset,
              batch_size: int, trainer: gluon.Trainer, ctx: CtxSpec, num_epochs: int,
              seed: int = 0, checkpoint: Optional[PathLike] = None, resume: bool = False,
              config: Optional[dict] = None,
              order: Callable[[int, int, int], Union[Sequence[int], np.ndarray]] = epoch_order,
              progress: Progress = "auto", log: Log = print,
              workers: Optional[Workers] = None) -> List[EpochResult]:
    """d2l-zh v1's ``train_ch5``: train ``net`` with ``trainer`` and return the history.

    Parameters
    ----------
    net : gluon.Block
        Initialised on every context of ``ctx`` (see :func:`init_net`).
    train_data, test_data : gluon.data.Dataset
        Of (uint8 image, label) pairs, e.g. :func:`cnn_base.training.data.fashion_mnist_dataset`.
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
    order : callable, default :func:`cnn_base.training.data.epoch_order`
        ``order(n, seed, epoch)`` -> the sample indices of the epoch (a worker's share).
    progress : {'auto', 'bar', 'plain', 'none'}, default 'auto'
        A tqdm bar per epoch on a terminal, plain quarter lines otherwise (``'auto'``).
    log : callable, default print
        Receives d2l's lines (``None`` for silence).
    workers : cnn_base.training.distributed.Workers, optional
        This process's place in a parameter-server job: the worker trains on its share
        of every epoch (batches of ``batch_size / num_workers``), evaluates its part of
        the test set, and the numbers are summed over the workers. Under ``dist_sync``
        the gradients are summed through the job's store before every ``trainer.step``
        (:meth:`~cnn_base.training.distributed.Workers.allreduce_grads`), so ``trainer`` must
        have ``kvstore=None``; under ``dist_async`` ``trainer`` uses ``workers.kv``.
        Default: one process.

    Returns
    -------
    list of EpochResult
        One per epoch, those restored from the checkpoint included.
    """
    # Since d2l's train_ch5: the batch is cut across contexts (and workers, whose sums
    # make the numbers the global batch's), and the run resumes from checkpoints.
    contexts = as_ctx_list(ctx)
    batch_size, num_epochs, seed, workers, log = _check_args(
        train_data, test_data, batch_size, contexts, num_epochs, seed, progress, workers, log)
    config = dict(config or {}, batch_size=batch_size, seed=seed,
                  lr=float(trainer.learning_rate), num_train=len(train_data),
                  num_test=len(test_data), layers=layers(net))
    start_epoch, history = resume_or_start(checkpoint, resume, net, trainer, config,
                                           num_epochs, log, workers.writes_files)
    _check_same_start(workers, start_epoch, checkpoint)
    log(_training_on(contexts, workers, batch_size))
    _check_trainer(trainer, workers)
    history = [EpochResult(**e) for e in history]
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    order, test_part = workers.share(order, batch_size), workers.part(len(test_data))
    saved = start_epoch if checkpoint is not None else 0
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, num_epochs):
            _run_epoch(net, loss, trainer, train_data, test_data, batch_size, contexts, seed,
                       epoch, order, test_part, workers, history, progress, log)
            if checkpoint is not None and workers.writes_files:
                _save(checkpoint, net, trainer, epoch + 1, history, config, saved)
            saved = epoch + 1 if checkpoint is not None else 0
    except KeyboardInterrupt:
        raise TrainingInterrupted(epoch + 1, saved) from None
    return history


def _save(checkpoint, net, trainer, epoch, history, config, saved):
    """The checkpoint of ``epoch``; a failed write names the file, the reason and what is kept."""
    try:
        save_checkpoint(checkpoint, net, trainer, epoch, [asdict(e) for e in history], config)
    except WriteError as e:
        kept = (f"the checkpoint of epoch {saved} is intact" if saved
                else "no earlier checkpoint")
        raise WriteError(e.path, f"{e.reason} (checkpoint of epoch {epoch} not written; "
                                 f"{kept})", e.errno) from None


def _run_epoch(net, loss, trainer, train_data, test_data, batch_size, contexts, seed, epoch,
               order, test_part, workers, history, progress, log):
    """Epoch ``epoch + 1``: train, test, append its EpochResult to ``history`` and log d2l's line."""
    _seed_mxnet(seed, epoch)
    batches = train_loader(train_data, workers.local_batch_size(batch_size), seed, epoch,
                           order)
    train_l_sum, train_acc_sum, n, start = 0.0, 0.0, 0, time.perf_counter()
    for i, (X, y) in enumerate(_progress(batches, len(batches), epoch + 1, progress, log)):
        l_sum, acc_sum = _step(net, loss, trainer, X, y, contexts, batch_size, workers)
        # a worker alone must not stop (the others would wait for its sums): checked below
        if not workers.distributed and not math.isfinite(l_sum):
            raise TrainingDiverged(epoch + 1, i + 1, l_sum, float(trainer.learning_rate),
                                   list(history))
        train_l_sum, train_acc_sum, n = train_l_sum + l_sum, train_acc_sum + acc_sum, \
            n + y.shape[0]
    train_seconds = time.perf_counter() - start
    test_correct, test_n = _count_correct(test_loader(test_data, batch_size, indices=range(
        test_part.start, test_part.stop)), net, contexts)
    # the global batch's numbers: summed over the workers (one process: as they are)
    train_l_sum, train_acc_sum, n, test_correct, test_n = workers.sum(
        [train_l_sum, train_acc_sum, n, test_correct, test_n])
    if not math.isfinite(train_l_sum):      # every worker sees the same sum, so all stop
        raise TrainingDiverged(epoch + 1, None, float(train_l_sum), float(trainer.learning_rate),
                               list(history))
    history.append(EpochResult(epoch + 1, float(train_l_sum / n), float(train_acc_sum / n),
                               float(test_correct / test_n), time.perf_counter() - start,
                               float(n / train_seconds)))
    log(history[-1].line())


def _step(net, loss, trainer, X, y, contexts, batch_size, workers):
    """One batch, forward and backward on every context, then the update: (loss sum, correct)."""
    X_parts, y_parts = _split(X, y, contexts)
    with autograd.record():
        y_hats = [net(X_part) for X_part in X_parts]
        ls = [loss(y_hat, y_part).sum() for y_hat, y_part in zip(y_hats, y_parts)]
    for l in ls:
        l.backward()
    if workers.distributed and workers.sums_over_workers:
        workers.allreduce_grads([p for _, p in sorted(net.collect_params().items())])
    trainer.step(batch_size)
    return (sum(l.asscalar() for l in ls),
            sum((y_hat.argmax(axis=1) == y_part.astype("float32")).sum().asscalar()
                for y_hat, y_part in zip(y_hats, y_parts)))


def _seed_mxnet(seed, epoch):
    """MXNet's state cannot be saved; seeding it from (seed, epoch) makes it resumable."""
    mx.random.seed(int(np.random.RandomState([seed, epoch, 1]).randint(2 ** 31 - 1)))


def _check_args(train_data, test_data, batch_size, contexts, num_epochs, seed, progress,
                workers, log):
    """train_ch5's checked arguments: (batch_size, num_epochs, seed, workers, log)."""
    batch_size = as_int("batch_size", batch_size)
    num_epochs = as_int("num_epochs", num_epochs, minimum=0)
    seed = as_int("seed", seed, minimum=0)
    check_choice("progress", progress, PROGRESS_CHOICES)
    workers = SINGLE_PROCESS if workers is None else workers
    if not isinstance(workers, Workers):
        raise TypeError(f"workers must be a cnn_base.training.distributed.Workers, got "
                        f"{type(workers).__name__} {workers!r}")
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
    return batch_size, num_epochs, seed, workers, log or (lambda *_: None)


def _check_same_start(workers, start_epoch, checkpoint):
    """Every worker resumes from the same epoch (a worker that does not see rank 0's
    checkpoint would start at another)."""
    if workers.distributed and workers.sums_over_workers:
        total, squares = workers.sum([start_epoch, start_epoch ** 2])
        if total * total != squares * workers.num_workers:
            raise CheckpointError(f"the workers resume from different epochs (this one from "
                                  f"{start_epoch}, {total / workers.num_workers:g} on "
                                  f"average): the checkpoint folder {checkpoint} must be one "
                                  f"that every worker sees")


def _training_on(contexts, workers, batch_size):
    where = contexts if len(contexts) > 1 else contexts[0]
    if not workers.distributed:
        return f"training on {where}"
    return (f"training on {where} as worker rank {workers.rank} of {workers.num_workers} "
            f"({workers.kv.type}), {batch_size // workers.num_workers} samples of every batch "
            f"of {batch_size}")


def _check_trainer(trainer, workers):
    """Under dist_sync the servers sum the gradients and the Trainer updates locally; a
    Trainer with a kvstore of its own would sum them a second time."""
    if (workers.distributed and workers.sums_over_workers
            and trainer_kvstore(trainer) is not None):
        raise ValueError("under dist_sync the trainer must have kvstore=None: the workers "
                         "sum the gradients through the job's store themselves")
