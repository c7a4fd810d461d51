"""The C++ kernels (pooling, convolution): building them, loading them into MXNet, whether to use them.

``csrc/pool2d.cc`` is the chapter's ``pool2d`` loop in C++, run over every
(sample, channel) plane of a batch, registered as the MXNet operator
``cnn_base_pool2d`` through MXNet's extension-library API (``lib_api.h``, which
the mxnet wheel ships). Forward and backward take one pass each over the data,
as Gluon's built-in pooling does, where composing MXNet operators
(:func:`cnn_base.functional.pool2d_nchw`) takes one pass per window element.

``csrc/conv2d.cc`` is the chapter's ``corr2d`` loop over the windows of an
NCHW batch, in register tiles, with its two backward passes, registered as
``cnn_base_conv2d`` (float32 and float64) in the same library (its vector
loops in ``csrc/conv2d_loops.h``); our ``Conv2D`` uses it where
``functional.native_conv_fits`` says it is the faster way
(``functional.conv2d_native``).

The library is built once per user, on first use (or by ``make``, or
``cnn-base build-native``), into a cache: ``$CNN_BASE_CACHE``, else
``$XDG_CACHE_HOME/cnn_base``, else ``~/.cache/cnn_base``; nothing is written
where the package is installed. Its file name holds a hash of every
``csrc/*.cc`` and ``csrc/*.h``, the compile flags, the compiler and the mxnet
version, so a changed source, compiler or mxnet gets a library of its own and
a stale one is never loaded. Without a C++ compiler everything still works:
the blocks then pool with MXNet operators, with the same results, more slowly
(one line on stderr says so, once). The environment variable
``CNN_BASE_NATIVE=0`` (or :func:`set_enabled`) turns the kernel off.

The operator runs on CPU arrays of float16 (computed in float32), float32 or
float64; the blocks use MXNet
operators for anything else (GPU contexts, other dtypes). A model exported
with it needs ``import cnn_base`` before ``SymbolBlock.imports`` reads it.
"""
import concurrent.futures
import contextlib
import ctypes
import hashlib
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import mxnet as mx

try:
    import fcntl
except ImportError:     # not POSIX: concurrent builds still cannot corrupt (temp file + rename)
    fcntl = None

__all__ = ["NativeBuildError", "OP_NAME", "CONV_OP_NAME", "BATCH_NORM_OP_NAME", "SOURCE_DIR", "build", "load", "loaded",
           "enabled", "set_enabled", "status", "multiplies_with_blas", "blas_library", "cache_dir", "library_path", "compiler"]

OP_NAME = "cnn_base_pool2d"
CONV_OP_NAME = "cnn_base_conv2d"     # csrc/conv2d.cc, in the same library
BATCH_NORM_OP_NAME = "cnn_base_batch_norm"     # csrc/batch_norm.cc, in the same library
SOURCE_DIR = Path(__file__).parent.parent / "csrc"     # cnn_base/csrc, beside this package
_MXNET_DIR = Path(mx.__file__).parent
_FLAGS = ("-shared", "-fPIC", "-std=c++17", "-O3", "-fopenmp")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
# a clone (or an editable install of one) has the Makefile beside the package
_IN_CLONE = (_PACKAGE_ROOT / "Makefile").exists() and (_PACKAGE_ROOT / "setup.cfg").exists()

# "tried": load() ran (it runs on the first question to loaded/enabled/status);
# "build_failed": a build on first use failed, so load() does not compile again in this process.
# CNN_BASE_NATIVE=0 keeps the library from loading (see load), so "enabled" starts True.
_state = {"loaded": False, "enabled": True, "reason": "not loaded yet", "tried": False,
          "build_failed": False, "warned": False}
_lock = threading.RLock()     # one load or build-and-load at a time in this process
_compiler_ids = {}


class NativeBuildError(RuntimeError):
    """The C++ kernels could not be built; the message says why (the compiler's output)."""


def compiler():
    """The C++ compiler to use: ``$CXX``, else the first of c++, g++, clang++ on PATH, else None."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    return None


def cache_dir():
    """Where built libraries go: ``$CNN_BASE_CACHE``, else ``$XDG_CACHE_HOME/cnn_base``, else
    ``~/.cache/cnn_base`` (a relative ``$XDG_CACHE_HOME`` is ignored, as the XDG spec says)."""
    if os.environ.get("CNN_BASE_CACHE"):
        return Path(os.environ["CNN_BASE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnn_base"


def _sources():
    """Every C++ file the library is made of (compiled) or reads (headers), sorted by name."""
    return sorted(SOURCE_DIR.glob("*.cc")), sorted(SOURCE_DIR.glob("*.h"))


def _compiler_id(cxx):
    """``cxx`` and the first line of ``cxx --version``, asked once per process and compiler."""
    if cxx not in _compiler_ids:
        try:
            done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
            first = (done.stdout.strip().splitlines() or [""])[0]
        except (OSError, subprocess.SubprocessError):
            first = "does not run"
        _compiler_ids[cxx] = f"{cxx}: {first}"
    return _compiler_ids[cxx]


def _commands(cxx, output, extra_flags=()):
    """The compiler's commands: one object file per source (``output`` + ".<n>.o"), largest
    source first, then the link of them into ``output``."""
    cc_files, _ = _sources()
    sources = sorted([*cc_files, _MXNET_DIR / "src" / "lib_api.cc"],
                     key=lambda path: -path.stat().st_size)
    compile_flags = [flag for flag in _FLAGS if flag != "-shared"]
    objects = [f"{output}.{n}.o" for n in range(len(sources))]
    compiles = [[cxx, *compile_flags, *extra_flags, "-I", str(SOURCE_DIR),
                 "-I", str(_MXNET_DIR / "include"), "-c", str(source), "-o", obj]
                for source, obj in zip(sources, objects)]
    return compiles, [cxx, *_FLAGS, *extra_flags, *objects, "-o", str(output)]


def _run_side_by_side(commands):
    """Each command run, as many at once as this process has processors (a build on first
    use waits for the compiler; conv2d.cc alone takes ~half the whole build, so two cores
    halve it). The first failed one's ``subprocess`` result, else None. On a failure or an
    exception here (Ctrl-C), the commands still running are killed (each its own process
    group, the compiler's own children with it) and none is started."""
    processors = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)
    lock, processes, stopped = threading.Lock(), [], threading.Event()

    def run(command):
        with lock:
            if stopped.is_set():
                return None
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, start_new_session=True)
            processes.append(process)
        out, err = process.communicate()
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    pool = concurrent.futures.ThreadPoolExecutor(max(1, min(len(commands), processors)))
    try:
        return next((done for done in pool.map(run, commands) if done.returncode != 0), None)
    finally:
        with lock:
            stopped.set()
            for process in processes:     # the driver and the cc1plus it started
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
        pool.shutdown(wait=True, cancel_futures=True)


def library_path(extra_flags=()):
    """The cache file of the library for today's sources, flags, compiler and mxnet version.

    Its name holds a hash of all of them (never of modification times); the file
    exists only once that exact library has been built.
    """
    digest = hashlib.sha256()
    cc_files, headers = _sources()
    for path in cc_files + headers:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    cxx = compiler()
    # paths stay out: the same sources and mxnet in another venv make the same library
    for part in (_FLAGS + tuple(extra_flags),
                 (_compiler_id(cxx) if cxx else "no compiler", f"mxnet {mx.__version__}",
                  platform.machine(), sys.platform)):
        digest.update("\0".join(part).encode() + b"\0\0")
    return cache_dir() / f"libcnn_base-{digest.hexdigest()[:20]}.so"


def _exists(library, advice=""):
    """Whether ``library`` exists; a folder that cannot be searched is a NativeBuildError."""
    try:
        return library.exists()
    except OSError as error:         # e.g. PermissionError: a parent folder the user cannot enter
        raise NativeBuildError(f"cannot use {library.parent}: {error.strerror or error}"
                               f"{advice}") from None


def build(force=False, library=None, extra_flags=()):
    """Compile every ``csrc/*.cc`` with MXNet's ``lib_api`` into one library; return its path.

    ``library``: where to put it; by default the per-user cache file of
    :func:`library_path`, which is then loaded (so :func:`status` reports it at
    once). Nothing is compiled when that file exists, unless ``force``.
    ``extra_flags``: more compiler flags (e.g. a sanitizer's), part of the cache
    file's hash; such a library is built but not loaded. The compiler writes a
    temporary file that is renamed into place, and builds of the same cache file
    take turns (a file lock, ``.build.lock`` in the cache), so processes building
    at once cannot corrupt it and the second reuses the first's library.
    Every failure (no compiler, compiler errors, a folder that cannot be
    written) raises :class:`NativeBuildError`.
    """
    extra_flags = tuple(extra_flags)
    default = library is None
    library = library_path(extra_flags) if default else Path(library)
    advice = _CACHE_ADVICE if default else ""
    if not force and _exists(library, advice):
        return _loaded_after_build(library, default, extra_flags)
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
    if not _sources()[0]:
        raise NativeBuildError(f"no kernel sources (*.cc) in {SOURCE_DIR}: the package is "
                               "incomplete; reinstall it")
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        lock = open(library.parent / ".build.lock", "w") if default else None
    except OSError as error:
        raise NativeBuildError(f"cannot write in {library.parent}: {error.strerror or error}"
                               f"{_CACHE_ADVICE if default else ''}") from None
    try:
        if lock is not None and fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)    # another process building it: wait, then reuse
        if force or not _exists(library, advice):
            _compile(cxx, library, extra_flags)
    finally:
        if lock is not None:
            lock.close()                        # closing releases the lock
    return _loaded_after_build(library, default, extra_flags)


_CACHE_ADVICE = "; set CNN_BASE_CACHE to a folder you can write"


def _compile(cxx, library, extra_flags):
    partial = library.with_name(f".{library.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    compiles, link = _commands(cxx, partial, extra_flags)
    try:
        try:
            failed = _run_side_by_side(compiles) or _run_side_by_side([link])
        except OSError as error:
            raise NativeBuildError(f"could not run the C++ compiler {cxx!r}: {error}") from None
        if failed is not None:
            raise NativeBuildError(f"{' '.join(failed.args)} failed with exit code "
                                   f"{failed.returncode}:\n{failed.stderr.strip()}")
        try:
            os.replace(partial, library)    # atomic: a reader never sees half a library
        except OSError as error:
            raise NativeBuildError(f"cannot write {library}: {error.strerror or error}") from None
    finally:
        for path in [partial, *(Path(command[-1]) for command in compiles)]:
            path.unlink(missing_ok=True)


def _loaded_after_build(library, default, extra_flags):
    """The default library, just built or found, is loaded at once (unless CNN_BASE_NATIVE=0)."""
    if default and not extra_flags:
        with _lock:
            if not _state["loaded"] and os.environ.get("CNN_BASE_NATIVE", "1") != "0":
                _state["build_failed"] = False
                _load_file(library)
    return library


def _command_name():
    """How this kind of install runs the build-native command: in a clone, from its .venv."""
    return ".venv/bin/cnn-base build-native" if _IN_CLONE else "cnn-base build-native"


def _warn_once(message):
    """One line on stderr, once per process: the kernel is not used, why, and what to do."""
    if not _state["warned"]:
        _state["warned"] = True
        sys.stderr.write(f"cnn_base: {message} (CNN_BASE_NATIVE=0 silences this)\n")


def load(library=None):
    """Load the kernels into MXNet once; return whether ``cnn_base_pool2d`` and ``cnn_base_conv2d``
    are now available.

    By default the cache file of :func:`library_path` is loaded, built first if it
    is missing (once per process: a failed build says why on stderr, in one line,
    and the blocks pool with MXNet operators). An explicit ``library`` is only
    loaded, never built. Loading is skipped when ``CNN_BASE_NATIVE=0``. The first
    question to :func:`loaded`, :func:`enabled` or :func:`status` calls this, as
    ``import cnn_base`` does.
    """
    with _lock:
        _state["tried"] = True
        if _state["loaded"]:
            return True
        if os.environ.get("CNN_BASE_NATIVE", "1") == "0":
            _state["reason"] = "turned off by CNN_BASE_NATIVE=0"
            return False
        if library is not None:
            library = Path(library)
            try:
                if not _exists(library):
                    _state["reason"] = f"{library} does not exist"
                    return False
            except NativeBuildError as error:
                _state["reason"] = str(error)
                return False
            return _load_file(library)
        if _state["build_failed"]:
            return False
        try:
            library = library_path()
            if _exists(library, _CACHE_ADVICE):
                return _load_file(library)
            announce = _announce_build(library)
            try:
                build(library=None)     # loads it
            finally:
                announce.cancel()
        except NativeBuildError as error:
            _state["build_failed"] = True
            first = str(error).splitlines()[0]
            if compiler() is None:
                _state["reason"] = "not built: no C++ compiler found"
                _warn_once("no C++ compiler ($CXX, c++, g++ or clang++), so our pools and conv use "
                           "MXNet operators (same results, slower); install one and the kernel "
                           f"builds on the next import, or now with `{_command_name()}`")
            elif first.startswith(("cannot write", "cannot use")):
                _state["reason"] = f"not built: {first}"
                _warn_once("the C++ kernels could not be built, so our pools and conv use MXNet "
                           f"operators (same results, slower): {first}")
            else:
                _state["reason"] = "not built: the compiler failed"
                _warn_once("the C++ kernels failed to compile, so our pools and conv use MXNet "
                           f"operators (same results, slower); `{_command_name()}` shows "
                           "the compiler's messages")
        return _state["loaded"]


BUILD_NOTICE_DELAY = 0.3     # seconds: a compiler that fails at once says only its failure


def _announce_build(library):
    """Say on stderr, as the first-use build starts, that it runs once and how to skip it.

    Printed from a timer a moment after the compiler starts (in a notebook, a terminal or
    a log alike), so a build that fails at once is one line (its failure), and a real
    build (about a minute) never looks like a hang. Returns the timer (``cancel()`` it).
    """
    def say():
        try:
            sys.stderr.write(f"cnn_base: building cnn_base's C++ kernels once, about a minute "
                             f"(into {library.parent}); CNN_BASE_NATIVE=0 skips them\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):     # no stderr, or closed
            pass
    timer = threading.Timer(BUILD_NOTICE_DELAY, say)
    timer.daemon = True
    timer.start()
    return timer


def _load_file(library):
    """Register the operator from ``library``; a library MXNet refuses is said once, on stderr."""
    try:
        mx.library.load(str(library.resolve()), verbose=False)
    except mx.base.MXNetError as error:
        _state["reason"] = f"{library} failed to load: {str(error).splitlines()[0]}"
        _warn_once(f"{_state['reason']}; our pools and conv use MXNet operators")
    else:
        _state["loaded"] = True
        _state["reason"] = f"loaded from {library}"
        _state["blas"] = _choose_blas(ctypes.CDLL(str(library.resolve())))
    return _state["loaded"]


def _choose_blas(lib):
    """Give the conv kernel in ``lib`` the OpenBLAS of the scipy-openblas32 wheel (a newer
    OpenBLAS than the mxnet wheel's, with AVX-512 kernels: 80-96 GFLOP/s per core on the
    conv's matrix shapes where the mxnet wheel's 0.3.13 gave 57-72, docs/engineering/speed.md);
    without that package the kernel keeps the mxnet wheel's. float32 then multiplies with
    oneDNN's ``dnnl_sgemm`` when the onednn-cpu-gomp wheel is installed (93-115 GFLOP/s per core
    on the same shapes) unless ``CNN_BASE_ONEDNN=0``. Returns whether it has a BLAS."""
    try:
        import scipy_openblas32
        path = os.path.join(scipy_openblas32.get_lib_dir(),
                            scipy_openblas32.get_library(fullname=True))
    except (ImportError, OSError, IndexError):
        path = None
    if path is not None and lib.cnn_base_use_blas(path.encode(), b"scipy_"):
        _state["blas_library"] = f"scipy-openblas32 {scipy_openblas32.__version__}"
    elif lib.cnn_base_conv_blas():
        _state["blas_library"] = "the mxnet wheel's libopenblas.so.0"
    dnnl = _onednn_library() if os.environ.get("CNN_BASE_ONEDNN", "1") != "0" else None
    if dnnl is not None and lib.cnn_base_use_dnnl(str(dnnl).encode()):
        _state["blas_library"] = (f"onednn-cpu-gomp {importlib.metadata.version('onednn-cpu-gomp')}"
                                  f" (float32), {_state['blas_library']} (float64)")
    return bool(lib.cnn_base_conv_blas())


def _onednn_library():
    """Path of the libdnnl.so.3 the onednn-cpu-gomp wheel installed, or None."""
    try:
        files = importlib.metadata.files("onednn-cpu-gomp") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f.locate() for f in files if f.name == "libdnnl.so.3"]
    return found[0] if found and Path(found[0]).is_file() else None


def _first_use():
    if not _state["tried"]:
        load()


def loaded():
    """Whether the operator is registered in this process."""
    _first_use()
    return _state["loaded"]


def multiplies_with_blas():
    """Whether the conv kernel found a BLAS to multiply wide layers with (the libopenblas.so.0
    the mxnet wheel ships; ``csrc/conv2d_gemm.h``). Without one it runs every layer in its
    register tiles, and the blocks send wide layers to MXNet's matrix multiply instead."""
    _first_use()
    return _state["loaded"] and _state.get("blas", False)


def blas_library():
    """Which BLAS the conv kernel multiplies with ("scipy-openblas32 <version>" or "the mxnet
    wheel's libopenblas.so.0"; with oneDNN, "onednn-cpu-gomp <version> (float32), <that one>
    (float64)"), or None (no BLAS: the kernel's tiles only)."""
    return _state.get("blas_library") if multiplies_with_blas() else None


def enabled():
    """Whether the blocks use the kernel when it applies (loaded and not turned off)."""
    _first_use()
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
    """One line: whether the blocks pool and convolve with the C++ kernels, and why."""
    _first_use()
    if enabled():
        return (f"C++ kernel ({OP_NAME}, {_state['reason']}), and {CONV_OP_NAME} from the "
                "same library")
    if _state["loaded"]:
        return "MXNet operators (the C++ kernels are loaded but turned off)"
    return f"MXNet operators (C++ kernel: {_state['reason']})"

