"""cnn_base: the "CNN basics" chapter of Dive into Deep Learning (MXNet edition, 5.1-5.4) in Gluon.

The folders are the layers; each imports only from those above it in this list:

- ``ops``: the chapter's operations on NDArrays in its order: corr2d, padding and stride
  (pad2d, corr2d_strided), channels, 1x1, pool2d (differentiable); ``shapes``: output
  sizes, receptive fields, costs; ``examples``: the blog's arrays; ``context``
- ``native/``: the loader of the C++ kernels ``cnn_base_pool2d`` and ``cnn_base_conv2d``
  (sources in ``csrc/``, built by ``make`` or on first use)
- ``functional/``: corr2d and pool2d on NCHW/NHWC batches for NDArray and Symbol: ``conv``
  (the im2col reference, then the fast paths), ``pool``, ``global_pool``, and
  ``_dispatch``, which path and why
- ``blocks``: Gluon Conv2D, MaxPool2D, AvgPool2D, ... built on ``functional``, peers of ``gluon.nn``'s;
  ``substitution``: ``substitute()``, any ``gluon.nn`` model (the model zoo) built on them
- ``exercises``: cross-correlation as a matrix, fitting a kernel of any shape;
  ``edge_learning``: learning the edge kernel as the blog does; ``figures``: the blog's figures;
  ``animations``: the window moving over them (GIFs)
- ``nets/``: LeNet (d2l-zh v1 §5.5) and chapter 5's AlexNet, VGG-11, NiN, GoogLeNet, LeNet
  with batch norm, ResNet-18 and DenseNet (§5.6-5.12), each with our blocks or Gluon's
- ``training/``: Fashion-MNIST, d2l's ``train_ch5`` with checkpoints, parameter-server
  workers (``cnn_base.training.distributed``, not re-exported), a run's figures
- ``export``: a model written so that plain MXNet loads it (``export(..., portable=True)``)
- ``benchmark``: our blocks timed against Gluon's; ``cli/``: the ``cnn-base`` commands

``import cnn_base`` imports them all (and MXNet) and loads the C++ kernel, except in
the ``cnn-base`` command (or ``python -m cnn_base``, or a clone's ``scripts/*.py``):
there the names load on first use, so ``--help`` and a bad flag answer without
MXNet's import time, and ``build-native`` builds without a load before it.
"""
import importlib
import os
import signal
import sys
import warnings


def _interrupted_while_starting(signum, frame):
    """SIGINT's handler in a command from this module's first lines until the command runs.

    What it buys: Ctrl-C in a command's first tenth of a second (numpy's import below, the
    command's module being found) is the same one line and status 130 as later, not a
    KeyboardInterrupt traceback; ``cli._args.interruptible`` puts Python's own handler back.
    It exits at once: an exception raised inside an import done in C (numpy's of datetime)
    comes out as an ImportError; nothing has been written yet that could be left half done.
    """
    sys.stderr.write("cnn-base: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def _started_as_command():
    """Whether this process is ``cnn-base ...``, ``python -m cnn_base ...`` or a clone's
    ``scripts/<command>.py`` being started.

    While ``python -m`` looks for the module it runs, ``sys.argv[0]`` is ``"-m"``.
    """
    argv0 = (getattr(sys, "argv", None) or [""])[0]
    if argv0 == "-m" or os.path.basename(argv0) == "cnn-base":
        return True
    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    return bool(argv0) and os.path.dirname(os.path.abspath(argv0)) == scripts


if _started_as_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    try:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    except ValueError:      # imported outside the main thread: Python's handler stays
        pass

import numpy   # noqa: E402  (after the handler: its import is most of a command's first 0.1 s)

__version__ = "0.1.0"

# mxnet 1.9.1 reads numpy.bool when it is imported. numpy 1.24 removed that alias of the
# builtin bool, and numpy < 1.24 has no wheels for Python 3.12+, where numpy 1.26 is
# installed: put the alias back before any cnn_base module imports mxnet, only when it is
# missing (numpy 1.20-1.23 still have it, with a DeprecationWarning on reading it; 1.24-1.26
# warn with a FutureWarning that asking for it is an error).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    if not hasattr(numpy, "bool"):
        numpy.bool = bool

# The modules whose public names (their ``__all__``) ``cnn_base`` re-exports, in layer order.
_REEXPORTED = ("ops", "functional", "blocks", "substitution", "shapes", "examples",
               "exercises", "context", "edge_learning", "training.data", "nets", "training.checkpoints", "training.loop",
               "training.experiment", "figures", "training.figures", "export")
_SUBMODULES = ("native", "benchmark", "cli", "training", "ops", "functional", "blocks",
               "substitution", "shapes", "examples", "exercises", "context", "edge_learning",
               "nets", "figures", "animations")
# Where the modules of the flat layout went: ``cnn_base.data`` and ``from cnn_base import
# data`` still give the module (the same object, so a test's monkeypatch reaches it).
_MOVED = {"data": "training.data", "models": "nets.lenet",
          "distributed": "training.distributed", "lenet_figures": "training.figures",
          "train": "edge_learning"}
_names = None     # every re-exported name, once _import_all has run



def _import_all():
    """Import the re-exported modules (and so MXNet) once; put their public names on cnn_base.

    The C++ kernel is loaded first (``cnn_base_pool2d`` registered with MXNet, built into the
    per-user cache if it is not there yet), so a model exported with it can be read next.
    """
    global _names
    if _names is None:
        importlib.import_module(f"{__name__}.native").load()
        names = []
        for module_name in _REEXPORTED:
            module = importlib.import_module(f"{__name__}.{module_name}")
            for name in module.__all__:
                globals()[name] = getattr(module, name)
                names.append(name)
        _names = names
    return _names


def __getattr__(name):
    if name in _SUBMODULES or name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED.get(name, name)}")
    if name == "__all__":
        return list(_import_all())
    if not name.startswith("__") and name in _import_all():
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_import_all()) | set(_SUBMODULES))


# Lazy loading in commands only, for what it buys: they parse their arguments (and print
# --help) without MXNet's import time. Everyone else gets every name, and the kernel
# loaded, from `import cnn_base`, as a model exported with our pools needs.
if not _started_as_command():
    _import_all()
