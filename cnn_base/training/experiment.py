"""d2l-zh v1 chapter 5's experiments: :func:`train_net` builds a network (§5.5's LeNet or one of
§5.6-5.12's), the Trainer and the data (resized as the book does), then runs
:func:`~cnn_base.training.loop.train_ch5`; :func:`train_lenet` is §5.5's."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Union

import mxnet as mx
from mxnet import gluon

from .._checks import as_positive_float, check_choice
from .._choices import BOOK_SETTINGS, KVSTORE_CHOICES
from .._types import Activation, BlockChoice, PathLike, Progress
from ..nets import CHAPTER_NETS, LENET_BLOCKS, lenet
from .data import fashion_mnist_dataset, resized
from .distributed import DIST_KVSTORES, SINGLE_PROCESS, Workers
from .loop import CtxSpec, EpochResult, Log, as_ctx_list, init_net, perturb_weights, train_ch5

__all__ = ["TrainResult", "BOOK_SETTINGS", "train_net", "train_lenet", "KVSTORE_CHOICES"]

@dataclass
class TrainResult:
    """What :func:`train_lenet` returns: the trained net, its settings and the history."""
    block: str
    ctx: List[mx.Context]
    batch_size: int
    lr: float
    seed: int
    num_train: int
    num_test: int
    epochs: List[EpochResult]
    net: gluon.Block = field(repr=False)
    kvstore: str = "device"
    net_name: str = "lenet"        # which of nets.CHAPTER_NETS
    resize: Optional[int] = None   # the side images were resized to (None: 28, as stored)
    num_workers: int = 1           # processes of a parameter-server job (1: none)
    over_all_workers: bool = True  # False: the numbers are this worker's shard (dist_async)
    perturb: float = 0.0           # the initial weights times 1 + perturb N(0, 1)

    @property
    def final(self) -> EpochResult:
        """The last epoch's :class:`EpochResult`."""
        return self.epochs[-1]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: ``epochs`` (one dict per epoch), ``ctx``, ``batch_size``, ``lr``, ``seed``, ..."""
        extra = {} if self.net_name == "lenet" and self.resize is None else \
            {"net": self.net_name, "resize": self.resize}
        return {**extra, "block": self.block, "ctx": [str(c) for c in self.ctx],
                "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "num_train": self.num_train, "num_test": self.num_test,
                "kvstore": self.kvstore, "num_workers": self.num_workers,
                "over_all_workers": self.over_all_workers,
                **({"perturb": self.perturb} if self.perturb else {}),
                "epochs": [{k: _finite(v) for k, v in asdict(e).items()} for e in self.epochs]}


def _finite(value):
    """A number for JSON: NaN and infinity (not JSON) become None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def train_net(net: str = "lenet", block: BlockChoice = "custom", num_epochs: int = 5,
              batch_size: int = 256, lr: float = 0.9, seed: int = 0, ctx: CtxSpec = None,
              activation: Activation = "sigmoid", resize: Optional[int] = None,
              root: Optional[PathLike] = None, limit: Optional[int] = None,
              train_data: Optional[gluon.data.Dataset] = None,
              test_data: Optional[gluon.data.Dataset] = None,
              checkpoint: Optional[PathLike] = None, resume: bool = False,
              kvstore: Union[str, Workers] = "device", progress: Progress = "auto",
              log: Log = print, perturb: float = 0.0) -> TrainResult:
    """d2l's chapter-5 experiment: a network of ``nets.CHAPTER_NETS``, Xavier from ``seed``,
    SGD, :func:`train_ch5`, on Fashion-MNIST resized to ``resize`` as the book does.

    Parameters
    ----------
    net : str, default 'lenet'
        'lenet' (§5.5), 'alexnet', 'vgg11', 'nin', 'googlenet', 'lenet_bn', 'resnet18' or
        'densenet' (§5.6-5.12); :data:`BOOK_SETTINGS` holds the book's lr, batch and side.
    block : {'custom', 'builtin'}, default 'custom'
    num_epochs, batch_size, lr : d2l's 5, 256, 0.9 (LeNet's)
    resize : int, optional
        Every image resized to ``resize`` x ``resize`` in the data pipeline
        (:func:`cnn_base.training.data.resized`, Gluon's ``Resize``), e.g. 96 for ResNet-18.
    seed : int, default 0
        The initial weights (``mx.random.seed``) and every epoch's order.
    ctx : context, str or list, default None (``'auto'``)
    activation : str, default 'sigmoid'
        LeNet's activation (the later networks use the book's ReLU).
    root : path-like, optional
        Where the IDX files are (see :func:`cnn_base.training.data.load_fashion_mnist`).
    limit : int, optional
        Only the first ``limit`` training and ``limit`` test images.
    train_data, test_data : gluon.data.Dataset, optional
        Already loaded data (``root`` and ``limit`` then unused).
    checkpoint, resume, progress, log : as :func:`train_ch5`
    perturb : float, default 0
        Every initial weight times 1 + ``perturb`` N(0, 1) (:func:`~cnn_base.training.loop.
        perturb_weights`, drawn from ``seed``): with 1e-6, how far a run moves from itself.
    kvstore : str or cnn_base.training.distributed.Workers, default 'device'
        The Trainer's kvstore: ``'local'`` or ``'device'`` (Gluon's default) in one
        process; ``'dist_sync'`` or ``'dist_async'`` as a worker of a parameter-server
        job (started by ``launch-dist``), or that job's :class:`~cnn_base.training.distributed.Workers`
        when already created. Under ``'dist_sync'`` the servers only sum the gradients
        (:meth:`~cnn_base.training.distributed.Workers.allreduce_grads` pushes and pulls them
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
    check_choice("net", net, tuple(CHAPTER_NETS))
    check_choice("block", block, LENET_BLOCKS)
    lr = as_positive_float("lr", lr)
    perturb = _as_perturbation(perturb)
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
    if resize is not None:
        train_data, test_data = resized(train_data, resize), resized(test_data, resize)
    side = 28 if resize is None else resize
    name, net = net, (lenet(block, activation) if net == "lenet" else
                      CHAPTER_NETS[net][0](block))
    net = perturb_weights(init_net(net, contexts, seed, input_shape=(1, 1, side, side)),
                          perturb, seed)
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
                        log=log, config=_config(name, block, activation, resize),
                        workers=workers)
    return TrainResult(block=block, ctx=contexts, batch_size=batch_size, lr=lr, seed=seed,
                       num_train=len(train_data), num_test=len(test_data), epochs=history,
                       net=net, kvstore=workers.kv.type if workers.distributed else kvstore,
                       num_workers=workers.num_workers, net_name=name, resize=resize,
                       over_all_workers=workers.sums_over_workers, perturb=perturb)


def _as_perturbation(perturb):
    """``perturb`` as a float from 0 to 1 (a relative size), or a ValueError/TypeError naming it."""
    if isinstance(perturb, bool) or not isinstance(perturb, (int, float)):
        raise TypeError(f"perturb must be a number, got {type(perturb).__name__}")
    if not 0 <= perturb <= 1:
        raise ValueError(f"perturb must be from 0 to 1 (a relative size), got {perturb}")
    return float(perturb)


def _config(name, block, activation, resize):
    """What a checkpoint must match to be resumed (LeNet's keys as they always were)."""
    config = {"model": name, "block": block, "activation": activation}
    return config if resize is None else {**config, "resize": resize}


def train_lenet(block: BlockChoice = "custom", num_epochs: int = 5, batch_size: int = 256,
                lr: float = 0.9, seed: int = 0, ctx: CtxSpec = None,
                activation: Activation = "sigmoid", root: Optional[PathLike] = None,
                limit: Optional[int] = None, train_data: Optional[gluon.data.Dataset] = None,
                test_data: Optional[gluon.data.Dataset] = None,
                checkpoint: Optional[PathLike] = None, resume: bool = False,
                kvstore: Union[str, Workers] = "device", progress: Progress = "auto",
                log: Log = print) -> TrainResult:
    """d2l's LeNet experiment (§5.5): :func:`train_net` with ``net='lenet'``; the same
    parameters, d2l's 5 epochs, batch 256, lr 0.9. Returns a :class:`TrainResult`."""
    return train_net("lenet", block, num_epochs, batch_size, lr, seed, ctx, activation, None,
                     root, limit, train_data, test_data, checkpoint, resume, kvstore,
                     progress, log)




def _workers_for(kvstore):
    """``kvstore`` as a :class:`~cnn_base.training.distributed.Workers` (one process unless dist_*)."""
    if isinstance(kvstore, Workers):
        return kvstore
    check_choice("kvstore", kvstore, KVSTORE_CHOICES)
    return Workers.create(kvstore) if kvstore in DIST_KVSTORES else SINGLE_PROCESS
