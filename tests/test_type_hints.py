"""The public API is annotated (``cnn_base/py.typed``), and the annotations resolve.

For every function and class of ``cnn_base.__all__`` (and of the public modules that are
not re-exported), ``typing.get_type_hints`` must succeed on the function, on the class's
``__init__`` and on its public methods, and must name every parameter (but ``self``,
``*args`` and ``**kwargs``) and the return. The annotations are strings (``from __future__
import annotations``), so this is where a misspelt or unimported name shows.
"""
import dataclasses
import importlib
import inspect
import typing

import mxnet as mx
import pytest
from mxnet import gluon, nd, sym
from mxnet.gluon import nn

import cnn_base as cb

# Names a module may import only under TYPE_CHECKING (``cnn_base.export`` imports MXNet
# where it is used): what a type checker would find there.
LOCALNS = {"mx": mx, "gluon": gluon, "nn": nn, "nd": nd, "sym": sym,
           "NDArray": nd.NDArray, "Symbol": sym.Symbol}

# The public modules whose public names are not all in cnn_base.__all__: their __all__.
MODULES = ("ops", "shapes", "functional", "blocks", "substitution", "export", "examples",
           "exercises", "context", "edge_learning", "figures", "training.data",
           "training.checkpoints", "training.loop", "training.experiment", "training.figures",
           "training.distributed",
           "nets", "nets.alexnet", "nets.densenet", "nets.googlenet", "nets.lenet",
           "nets.lenet_bn", "nets.nin", "nets.resnet", "nets.vgg", "nets._layers", "animations",
           "benchmark")


def _public_objects():
    """(where, name, object) of every public function and class, each once."""
    seen, found = set(), []
    sources = [("cnn_base", name, getattr(cb, name)) for name in cb.__all__]
    for module_name in MODULES:
        module = importlib.import_module(f"cnn_base.{module_name}")
        sources += [(module.__name__, name, getattr(module, name)) for name in module.__all__]
    for where, name, obj in sources:
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and id(obj) not in seen:
            seen.add(id(obj))
            found.append((where, name, obj))
    return found


PUBLIC = _public_objects()


def _hints(func):
    return typing.get_type_hints(func, localns=LOCALNS, include_extras=False)


def _missing(func, what, check_return=True):
    """What of ``func``'s parameters and return has no annotation (raises if one fails)."""
    hints = _hints(func)
    missing = [f"{what}: parameter {p.name!r}"
               for i, p in enumerate(inspect.signature(func).parameters.values())
               if not (i == 0 and p.name in ("self", "cls"))
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in hints]
    if check_return and "return" not in hints:
        missing.append(f"{what}: the return")
    return missing


def _own_from_cnn_base(cls, attr):
    """``cls.attr`` when a class of cnn_base defines it (not object, Gluon or a builtin)."""
    for klass in cls.__mro__:
        if attr in vars(klass):
            return vars(klass)[attr] if klass.__module__.startswith("cnn_base") else None
    return None


def _methods(cls):
    """(name, function) of the class's public methods, its __init__ and its properties."""
    methods = []
    for name in ["__init__"] + sorted(n for n in dir(cls) if not n.startswith("_")):
        attr = _own_from_cnn_base(cls, name)
        if isinstance(attr, property):
            attr = attr.fget
        elif isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if inspect.isfunction(attr):
            methods.append((name, attr))
    return methods


def test_there_is_a_public_api_to_check():
    names = {name for _, name, _ in PUBLIC}
    assert {"corr2d", "pool2d", "conv2d", "Conv2D", "MaxPool2D", "lenet", "export",
            "substitute", "output_shape", "train_ch5", "Layer", "KernelFit"} <= names
    assert len(PUBLIC) > 80


@pytest.mark.parametrize("where, name, obj", PUBLIC, ids=[f"{w}.{n}" for w, n, _ in PUBLIC])
def test_public_callable_is_annotated(where, name, obj):
    if inspect.isfunction(obj):
        missing = _missing(obj, name)
    elif dataclasses.is_dataclass(obj) or hasattr(obj, "_fields"):
        # a dataclass or a NamedTuple: its fields are its __init__'s parameters
        hints = _hints(obj)
        fields = ([f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj)
                  else list(obj._fields))
        missing = [f"{name}: field {f!r}" for f in fields if f not in hints]
        missing += [m for method_name, method in _methods(obj) if method_name != "__init__"
                    for m in _missing(method, f"{name}.{method_name}")]
    else:
        missing = [m for method_name, method in _methods(obj)
                   for m in _missing(method, f"{name}.{method_name}")]
    assert not missing, f"{where}.{name} lacks annotations: {', '.join(missing)}"


def test_the_aliases_name_what_the_api_takes():
    from cnn_base import _types

    assert typing.get_args(_types.Size2) == (int, typing.Tuple[int, int])
    assert typing.get_args(_types.Layout) == ("NCHW", "NHWC")
    assert typing.get_args(_types.PoolMode) == cb.POOL_MODES
    assert typing.get_args(_types.BlockChoice) == cb.LENET_BLOCKS
    assert typing.get_args(_types.Activation) == cb.LENET_ACTIVATIONS
    assert typing.get_args(_types.Progress) == cb.PROGRESS_CHOICES
    hints = typing.get_type_hints(cb.pool2d_nchw, localns=LOCALNS)
    assert typing.get_args(hints["X"]) == (nd.NDArray, sym.Symbol)
    assert hints["strides"] == typing.Optional[_types.Size2]
