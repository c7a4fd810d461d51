"""Checkpoints of :func:`~cnn_base.training.loop.train_ch5`: written whole or not at all, resumed exactly.

A checkpoint is a folder ``epoch-NNNN`` holding ``params`` (``save_parameters``),
``trainer.states`` (``Trainer.save_states``) and ``state.json`` (epoch, history,
settings, generator states). It is written as ``.epoch-NNNN.partial``, every file flushed
to disk, then renamed in one step, so a crash leaves either the whole checkpoint or
none; the previous one is removed only after. Each file is written through
``cnn_base._files.atomic_path``, so a full disk or the file-size limit is a
:class:`~cnn_base._files.WriteError` (one line: the file and the reason), the partial folder
is removed and the previous checkpoint stays whole.

Resuming validates the whole checkpoint before anything is restored: ``state.json`` a
regular file holding an object with the right fields and types, ``params`` and
``trainer.states`` readable, and the settings (model, block kind, batch size, learning
rate, seed, data sizes, the layers) those of this run. Anything else is a
:class:`CheckpointError` naming the file and what is wrong; a checkpoint is never
silently skipped (an ``epoch-NNNN`` folder whose ``state.json`` is a folder is damaged,
not absent).

Why the resume is exact: the parameters and the Trainer's states are saved as they are;
the next epoch's batches follow from ``(seed, epoch)`` alone; MXNet's generator is seeded
at the start of every epoch from ``(seed, epoch)`` (MXNet 1.x cannot read its state back,
so it is not saved but re-derived; LeNet draws nothing from it, a net with dropout would);
NumPy's and Python's global generators are saved and restored for any code that uses them.
"""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import random
import re
import shutil
from typing import Optional

import mxnet as mx
import numpy as np

from .._files import WriteError, atomic_path, fsync_dir, why_write_failed, write_text
from .._mxnet_private import children
from .._types import PathLike

__all__ = ["CheckpointError", "latest_checkpoint"]

CHECKPOINT_FORMAT = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: another model, block kind, batch size, ..."""


def latest_checkpoint(directory: PathLike) -> Optional[pathlib.Path]:
    """The newest checkpoint folder ``epoch-NNNN`` in ``directory`` holding a ``state.json``, or None.

    A ``state.json`` that is not a regular file (a folder, say) still counts: resuming
    then refuses the checkpoint as damaged rather than silently starting over.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _EPOCH_DIR.match(p.name)) and os.path.lexists(p / "state.json")]
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
    """Write the checkpoint of ``epoch`` in ``directory`` (``history``: a dict per epoch).

    A file that cannot be written raises :class:`~cnn_base._files.WriteError` naming it
    and the reason (disk full, file-size limit, ...); the partial folder is removed and
    the previous checkpoint stays whole.
    """
    directory = pathlib.Path(directory)
    final = directory / f"epoch-{epoch:04d}"
    partial = directory / f".epoch-{epoch:04d}.partial"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
    except OSError as e:
        raise WriteError(partial, e.strerror or str(e), e.errno) from None
    try:
        _save_with_mxnet(partial / "params", net.save_parameters)
        _save_with_mxnet(partial / "trainer.states", trainer.save_states)
        state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config,
                 "history": list(history), "rng": _rng_state()}
        write_text(partial / "state.json", json.dumps(state, allow_nan=False) + "\n")
        fsync_dir(partial)
        if final.exists():          # left by a run killed after its rename, before the clean-up
            shutil.rmtree(final)
        os.rename(partial, final)   # the one step that makes the checkpoint exist
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, WriteError):
            raise
        raise WriteError(final, e.strerror or str(e), e.errno) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_dir(directory)
    for old in directory.iterdir():
        m = _EPOCH_DIR.match(old.name)
        if (m and int(m.group(1)) < epoch) or old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _save_with_mxnet(path, save):
    """``save(filename)`` (MXNet's writer) through ``atomic_path``; its failure as a WriteError."""
    with atomic_path(path) as tmp:
        try:
            save(tmp)
        except mx.MXNetError as e:
            reason, code = why_write_failed(path, tmp)
            raise WriteError(path, reason or f"MXNet: {_mxnet_reason(e)}", code) from None


def _mxnet_reason(error):
    """The useful end of an MXNetError's message (it carries a C++ stack), on one line."""
    text = " ".join(str(error).split())
    return text.rsplit("MXNetError: ", 1)[-1][:160] or type(error).__name__


def _damaged(path, what):
    return CheckpointError(f"damaged checkpoint {path}: {what}; remove that folder to resume "
                           f"from an earlier one or to start over")


def _read_state(path):
    """``path/state.json`` checked field by field: the dict, or a CheckpointError saying what is wrong."""
    file = path / "state.json"
    if not file.is_file():
        kind = "a folder" if file.is_dir() else "not a regular file"
        raise _damaged(path, f"state.json is {kind}")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "state.json is not text") from None
    except OSError as e:
        raise _damaged(path, f"cannot read state.json: {e.strerror or e}") from None
    except ValueError as e:
        raise _damaged(path, f"state.json is not JSON ({e})") from None
    if not isinstance(state, dict):
        raise _damaged(path, f"state.json holds a {type(state).__name__}, not an object")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, "
                              f"this version reads {CHECKPOINT_FORMAT}")
    fields = {"epoch": int, "config": dict, "history": list, "rng": dict}
    for name, kind in fields.items():
        if name not in state:
            raise _damaged(path, f"state.json has no {name!r}")
        value = state[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _damaged(path, f"state.json's {name!r} is {value!r:.60}, not "
                                 f"{'an' if kind is int else 'a'} {kind.__name__}")
    epoch = state["epoch"]
    m = _EPOCH_DIR.match(path.name)
    if epoch < 1 or (m and int(m.group(1)) != epoch):
        raise _damaged(path, f"state.json's epoch is {epoch}, the folder's name says "
                             f"{int(m.group(1)) if m else 'otherwise'}")
    history = state["history"]
    if len(history) != epoch or not all(isinstance(h, dict) for h in history):
        raise _damaged(path, f"state.json's history must be {epoch} epoch records, got "
                             f"{len(history)} items")
    try:
        rng = state["rng"]
        name, keys, pos, has_gauss, cached = rng["numpy"]
        version, internal, gauss = rng["python"]
        np.random.RandomState().set_state((name, np.array(keys, dtype=np.uint32), pos,
                                           has_gauss, cached))
        random.Random().setstate((version, tuple(internal), gauss))
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"state.json's generator states are not readable ({e})") from None
    return state


def _read_params(path):
    file = path / "params"
    if not file.is_file():
        raise _damaged(path, "params is missing" if not os.path.lexists(file)
                       else "params is not a regular file")
    try:
        return mx.nd.load(str(file))
    except mx.MXNetError as e:
        raise _damaged(path, f"params is not an MXNet parameter file "
                             f"({_mxnet_reason(e)})") from None


def _check_trainer_states(path):
    file = path / "trainer.states"
    if not file.is_file():
        raise _damaged(path, "trainer.states is missing" if not os.path.lexists(file)
                       else "trainer.states is not a regular file")
    try:
        # what Trainer.load_states does with it (Updater.set_states), done first here
        states = pickle.loads(file.read_bytes())
    except Exception as e:      # pickle raises many kinds on a damaged file
        raise _damaged(path, f"trainer.states is not readable ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:80]})") from None
    if isinstance(states, tuple):
        states = states[0] if states else None
    if not isinstance(states, dict):
        raise _damaged(path, "trainer.states does not hold the optimizer's states")


def load_checkpoint(path, net, trainer, config):
    """Restore ``net``, ``trainer`` and the generators from ``path``: (epoch, history as dicts).

    The whole checkpoint is validated first (:class:`CheckpointError` naming the file and
    what is wrong); nothing is restored from a damaged one.
    """
    path = pathlib.Path(path)
    state = _read_state(path)
    saved = state["config"]
    differ = [f"{k}: checkpoint {saved.get(k)!r}, this run {config.get(k)!r}"
              for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
    if differ:
        raise CheckpointError(f"the checkpoint {path} is from another run "
                              f"({'; '.join(differ)}); resume with the same settings or "
                              f"choose another checkpoint folder")
    _read_params(path)
    _check_trainer_states(path)
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
        if start_epoch > num_epochs:
            raise CheckpointError(f"the checkpoint {found} holds {start_epoch} epochs, more "
                                  f"than the {num_epochs} asked for; ask for "
                                  f"{start_epoch} or more epochs to continue it")
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
