"""The C++ kernels (pooling, convolution): building them, loading them into MXNet, whether to use them.

``csrc/pool2d.cc`` is the chapter's ``pool2d`` loop in C++, run over every
(sample, channel) plane of a batch, registered as the MXNet operator
``cnn_base_pool2d`` through MXNet's extension-library API (``lib_api.h``, which
the mxnet wheel ships). Forward and backward take one pass each over the data,
as Gluon's built-in pooling does, where composing MXNet operators
(:func:`cnn_base.functional.pool2d_nchw`) takes one pass per window element.

``csrc/conv2d.cc`` is the chapter's ``corr2d`` loop over the windows of an
NCHW batch, in register tiles, with its two backward passes, registered as
``cnn_base_conv2d`` (float32 and float64) in the same library; our ``Conv2D``
uses it for few input channels per group (``functional.conv2d_native``).

``make`` builds the library from every ``csrc/*.cc`` (``scripts/build_native.py``), and
``import cnn_base`` loads it when it is there and up to date with its source.
Without a C++ compiler everything still works: the blocks then pool with
MXNet operators, with the same results, more slowly. The environment variable
``CNN_BASE_NATIVE=0`` (or :func:`set_enabled`) turns the kernel off.

The operator runs on CPU arrays of float16 (computed in float32), float32 or
float64; the blocks use MXNet
operators for anything else (GPU contexts, other dtypes). A model exported
with it needs ``import cnn_base`` before ``SymbolBlock.imports`` reads it.
"""
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import mxnet as mx

__all__ = ["NativeBuildError", "OP_NAME", "CONV_OP_NAME", "SOURCE", "SOURCES", "LIBRARY",
           "build", "load", "loaded",
           "enabled", "set_enabled", "status"]

OP_NAME = "cnn_base_pool2d"
CONV_OP_NAME = "cnn_base_conv2d"     # csrc/conv2d.cc, in the same library
SOURCE = Path(__file__).with_name("csrc") / "pool2d.cc"
# Every C++ file of csrc/ goes into the one library (pool2d.cc, conv2d.cc).
SOURCES = tuple(sorted(SOURCE.parent.glob("*.cc")))
LIBRARY = Path(__file__).with_name("_build") / "libcnn_base_pool2d.so"
_MXNET_DIR = Path(mx.__file__).parent
_FLAGS = ("-shared", "-fPIC", "-std=c++17", "-O3", "-fopenmp")

# CNN_BASE_NATIVE=0 keeps the library from loading (see load), so "enabled" starts True.
_state = {"loaded": False, "enabled": True, "reason": "not loaded yet"}


class NativeBuildError(RuntimeError):
    """The C++ pooling kernel could not be compiled; the message holds the compiler's output."""


def compiler():
    """The C++ compiler to use: ``$CXX``, else the first of c++, g++, clang++ on PATH, else None."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    return None


def _up_to_date(library=LIBRARY):
    newest = max(path.stat().st_mtime for path in SOURCES + tuple(SOURCE.parent.glob("*.h")))
    return library.exists() and library.stat().st_mtime >= newest


def build(force=False, library=LIBRARY):
    """Compile ``csrc/pool2d.cc`` with MXNet's ``lib_api`` into ``library``; return its path.

    Nothing is compiled when the library is newer than its source, unless
    ``force``. Raises :class:`NativeBuildError` when no compiler is found or
    the compiler fails.
    """
    library = Path(library)
    if not force and _up_to_date(library):
        return library
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (looked for $CXX, c++, g++, clang++); "
                               "pooling will use MXNet operators instead")
    library.parent.mkdir(parents=True, exist_ok=True)
    partial = library.with_name(library.name + ".tmp")
    command = [cxx, *_FLAGS, "-I", str(_MXNET_DIR / "include"), *map(str, SOURCES),
               str(_MXNET_DIR / "src" / "lib_api.cc"), "-o", str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        raise NativeBuildError(f"could not run the C++ compiler {cxx!r}: {error}") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise NativeBuildError(f"{' '.join(command)} failed with exit code {done.returncode}:\n"
                               f"{done.stderr.strip()}")
    partial.replace(library)      # atomic: a reader never sees half a library
    return library


def load(library=LIBRARY):
    """Load the kernel into MXNet once; return whether ``cnn_base_pool2d`` is now available.

    A missing or out-of-date library is not loaded (:func:`status` says why);
    loading is skipped when ``CNN_BASE_NATIVE=0``.
    """
    if _state["loaded"]:
        return True
    library = Path(library)
    if os.environ.get("CNN_BASE_NATIVE", "1") == "0":
        _state["reason"] = "turned off by CNN_BASE_NATIVE=0"
    elif not _up_to_date(library):
        state = "is older than its sources in csrc/" if library.exists() else "is not built"
        _state["reason"] = f"{library} {state} (run `make` or `python scripts/build_native.py`)"
    else:
        try:
            mx.library.load(str(library.resolve()), verbose=False)
        except mx.base.MXNetError as error:
            _state["reason"] = f"{library} failed to load: {str(error).splitlines()[0]}"
            warnings.warn(f"cnn_base: {_state['reason']}; pooling uses MXNet operators",
                          RuntimeWarning, stacklevel=2)
        else:
            _state["loaded"] = True
            _state["reason"] = f"loaded from {library}"
    return _state["loaded"]


def loaded():
    """Whether the operator is registered in this process."""
    return _state["loaded"]


def enabled():
    """Whether the blocks use the kernel when it applies (loaded and not turned off)."""
    return _state["loaded"] and _state["enabled"]


def set_enabled(flag):
    """Turn the kernel's use by the blocks on or off (for comparisons); returns the old setting.

    Our pool blocks look at every call and rebuild their graph when the choice
    changes; a pool inside a hybridized parent keeps the parent's graph, so
    set this before the parent's first hybridized call.
    """
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool, got {flag!r} of type {type(flag).__name__}")
    old, _state["enabled"] = _state["enabled"], flag
    return old


def status():
    """One line: which pooling the blocks use, and why."""
    if enabled():
        return f"C++ kernel ({OP_NAME}, {_state['reason']})"
    if _state["loaded"]:
        return "MXNet operators (the C++ kernel is loaded but turned off)"
    return f"MXNet operators (C++ kernel: {_state['reason']})"
