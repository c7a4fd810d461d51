"""Checkpoints of :func:`~cnn_base.training.loop.train_ch5`: written whole or not at all, resumed exactly.

A checkpoint is a folder ``epoch-NNNN`` holding ``params`` (``save_parameters``),
``trainer.states`` (``Trainer.save_states``) and ``state.json`` (epoch, history,
settings, generator states). It is written as ``.epoch-NNNN.partial``, every file flushed
to disk, then renamed in one step, so a crash leaves either the whole checkpoint or
none; the previous one is removed only after. Resuming checks the settings (model,
block kind, batch size, learning rate, seed, data sizes, the layers) and refuses a
checkpoint that does not match, naming what differs.

Why the resume is exact: the parameters and the Trainer's states are saved as they are;
the next epoch's batches follow from ``(seed, epoch)`` alone; MXNet's generator is seeded
at the start of every epoch from ``(seed, epoch)`` (MXNet 1.x cannot read its state back,
so it is not saved but re-derived; LeNet draws nothing from it, a net with dropout would);
NumPy's and Python's global generators are saved and restored for any code that uses them.
"""
import json
import os
import pathlib
import random
import re
import shutil

import mxnet as mx
import numpy as np

from .._mxnet_private import children

__all__ = ["CheckpointError", "latest_checkpoint"]

CHECKPOINT_FORMAT = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: another model, block kind, batch size, ..."""


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


def save_checkpoint(directory, net, trainer, epoch, history, config):
    """Write the checkpoint of ``epoch`` in ``directory`` (``history``: a dict per epoch)."""
    directory = pathlib.Path(directory)
    final = directory / f"epoch-{epoch:04d}"
    partial = directory / f".epoch-{epoch:04d}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    net.save_parameters(str(partial / "params"))
    trainer.save_states(str(partial / "trainer.states"))
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config,
             "history": list(history), "rng": _rng_state()}
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


def load_checkpoint(path, net, trainer, config):
    """Restore ``net``, ``trainer`` and the generators from ``path``: (epoch, history as dicts)."""
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
    return state["epoch"], state["history"]


def layers(net):
    """The layer classes and parameter shapes, in order: what a checkpoint must match."""
    kinds = [f"{type(c).__module__}.{type(c).__qualname__}" for c in children(net)]
    shapes = [list(p.shape) for p in net.collect_params().values()]
    return {"classes": kinds, "shapes": shapes}


def resume_or_start(checkpoint, resume, net, trainer, config, num_epochs, log, writes_files):
    """Where a run starts: (epoch done, history as dicts), from ``checkpoint`` if ``resume``.

    Without ``resume``, a folder that already holds a checkpoint is refused rather than
    overwritten; ``writes_files`` (rank 0, or one process) creates the folder.
    """
    if checkpoint is None:
        if resume:
            raise ValueError("resume=True needs a checkpoint folder")
        return 0, []
    checkpoint = pathlib.Path(checkpoint)
    found = latest_checkpoint(checkpoint)
    start_epoch, history = 0, []
    if resume and found is not None:
        start_epoch, history = load_checkpoint(found, net, trainer, config)
        log(f"resuming from {found} (epoch {start_epoch} of {num_epochs} done)")
    elif resume:
        log(f"no checkpoint in {checkpoint} yet: starting at epoch 1")
    elif found is not None:
        raise CheckpointError(f"{checkpoint} already holds a checkpoint ({found.name}); "
                              f"pass resume=True (--resume) to continue it, or choose "
                              f"another folder")
    if writes_files:
        checkpoint.mkdir(parents=True, exist_ok=True)
    return start_epoch, history
