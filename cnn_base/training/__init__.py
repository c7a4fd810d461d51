"""Training (d2l-zh v1 §5.5): the data, the book's loop, checkpoints, parameter-server workers, figures.

- :mod:`.data`: Fashion-MNIST's IDX files found and read with NumPy, DataLoaders in a seeded order
- :mod:`.distributed`: a parameter-server job (scheduler, servers, workers) launched on this
  machine, a worker's share of the data and sums over the workers (no MXNet import: the
  launcher runs without it)
- :mod:`.checkpoints`: a checkpoint written whole or not at all, and the exact resume
- :mod:`.loop`: d2l's ``train_ch5`` on one context or several, or as a worker
- :mod:`.experiment`: ``train_lenet``, d2l's LeNet run from the settings to the history
- :mod:`.figures`: a run's loss and accuracy curves, test images with their predicted labels

The public names of these modules (but ``distributed``'s) are this package's, and
``cnn_base``'s; they load on first use, so that ``cnn_base.training.distributed`` imports
without MXNet.
"""
import importlib

# The modules whose public names (their ``__all__``) this package hands on, in layer order.
MODULES = ("data", "checkpoints", "loop", "experiment", "figures")


def __getattr__(name):
    for module_name in MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
