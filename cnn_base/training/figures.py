"""Pictures of a LeNet run: the loss and accuracy curves, and test images with their labels.

Built without ``pyplot`` like :mod:`cnn_base.figures`; write one with
:func:`cnn_base.save_figure`.
"""
from __future__ import annotations

from typing import List, Mapping, Sequence, Union

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._checks import as_int
from .data import get_fashion_mnist_labels
from .experiment import TrainResult
from .loop import EpochResult

__all__ = ["history_figure", "predictions_figure"]


def history_figure(runs: Mapping[str, Union[TrainResult, List[EpochResult]]]) -> Figure:
    """Loss (left) and train/test accuracy (right) per epoch, one line style per run.

    ``runs``: a dict ``{name: TrainResult or list of EpochResult}``, e.g.
    ``{'custom': ..., 'builtin': ...}``.
    """
    if not runs:
        raise ValueError("runs must hold at least one run")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for n, (name, run) in enumerate(runs.items()):
        epochs = getattr(run, "epochs", run)
        x = [e.epoch for e in epochs]
        ls = styles[n % len(styles)]
        ax_loss.plot(x, [e.loss for e in epochs], ls, marker="o", label=name)
        ax_acc.plot(x, [e.train_acc for e in epochs], ls, marker="o", color="tab:blue",
                    label=f"train ({name})")
        ax_acc.plot(x, [e.test_acc for e in epochs], ls, marker="s", color="tab:orange",
                    label=f"test ({name})")
    ax_acc.axhline(0.1, color="gray", linewidth=0.8, linestyle=":", label="chance (0.1)")
    ax_loss.set(title="Training loss (softmax cross-entropy)", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # whole epochs
    return fig


def predictions_figure(images: Union[np.ndarray, Sequence[np.ndarray]],
                       labels: Sequence[int], predicted: Sequence[int],
                       ncols: int = 9) -> Figure:
    """A grid of images titled ``true`` over ``predicted`` class names (d2l's ``show_fashion_mnist``).

    ``images``: (N, 28, 28) (or (N, 1, 28, 28)) arrays; ``labels``, ``predicted``: N class
    numbers. A wrong prediction's title is red.
    """
    images = np.asarray(images)
    images = images.reshape(images.shape[0], *images.shape[-2:])
    labels, predicted = np.asarray(labels).ravel(), np.asarray(predicted).ravel()
    if not len(images) == len(labels) == len(predicted) or not len(images):
        raise ValueError(f"images, labels and predicted must be as many and not none, got "
                         f"{len(images)}, {len(labels)} and {len(predicted)}")
    ncols = min(as_int("ncols", ncols), len(images))
    nrows = -(-len(images) // ncols)
    fig = Figure(figsize=(1.4 * ncols, 1.7 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes:
        ax.axis("off")
    true_names = get_fashion_mnist_labels(labels)
    pred_names = get_fashion_mnist_labels(predicted)
    for ax, image, t, p in zip(axes, images, true_names, pred_names):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"{t}\n{p}", fontsize=7, color="black" if t == p else "tab:red")
    return fig
