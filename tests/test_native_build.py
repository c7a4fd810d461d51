"""Where and when cnn_base.native builds its kernel: the per-user cache, its hash key, failures.

The kernel builds on first use into a cache whose file name is a hash of every csrc/*.cc and
csrc/*.h, the flags, the compiler and the mxnet version, so a stale library is never loaded.
Processes that need a real compile (a few seconds each) share one fresh cache per module.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest

from cnn_base import native

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler found")


def python(code, **env_vars):
    """Run ``code`` in a fresh interpreter with extra environment variables."""
    env = dict(os.environ, **env_vars)
    env.pop("CNN_BASE_NATIVE", None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out, err


# ---------------------------------------------------------------- the cache folder

@pytest.mark.parametrize("env, expected", [
    ({"CNN_BASE_CACHE": "{tmp}/mine", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/mine"),
    ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/cnn_base"),
    ({"XDG_CACHE_HOME": "relative/xdg"}, "{home}/.cache/cnn_base"),
    ({}, "{home}/.cache/cnn_base"),
])
def test_cache_dir_is_cnn_base_cache_else_xdg_cache_home_else_home_cache(env, expected,
                                                                         monkeypatch, tmp_path):
    monkeypatch.delenv("CNN_BASE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert native.cache_dir() == type(tmp_path)(expected.format(tmp=tmp_path,
                                                                home=tmp_path / "home"))


def test_library_lives_in_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_BASE_CACHE", str(tmp_path))
    path = native.library_path()
    assert path.parent == tmp_path and path.suffix == ".so"
    assert path.name.startswith("libcnn_base-")


# ---------------------------------------------------------------- the key

@pytest.fixture
def own_sources(monkeypatch, tmp_path):
    """A copy of csrc/ that the test may change; library_path() reads it instead."""
    sources = tmp_path / "csrc"
    shutil.copytree(native.SOURCE_DIR, sources)
    monkeypatch.setattr(native, "SOURCE_DIR", sources)
    return sources


def _change_a_byte(sources, monkeypatch):
    path = sorted(sources.glob("*.cc"))[0]
    path.write_text(path.read_text() + "\n// changed\n")


def _add_a_header(sources, monkeypatch):
    (sources / "extra.h").write_text("#pragma once\n")


def _add_a_cc_file(sources, monkeypatch):
    (sources / "conv2d.cc").write_text("// a second kernel\n")


def _other_compiler(sources, monkeypatch):
    monkeypatch.setenv("CXX", "clang++-that-is-not-c++")


def _other_mxnet(sources, monkeypatch):
    monkeypatch.setattr(mx, "__version__", "1.9.2")


@pytest.mark.parametrize("change", [_change_a_byte, _add_a_header, _add_a_cc_file,
                                    _other_compiler, _other_mxnet])
def test_library_file_name_changes_with_sources_headers_compiler_and_mxnet(change, own_sources,
                                                                           monkeypatch):
    before = native.library_path()
    assert native.library_path() == before           # the same inputs, the same file
    change(own_sources, monkeypatch)
    assert native.library_path() != before


def test_library_file_name_changes_with_extra_flags():
    assert native.library_path(("-fsanitize=address",)) != native.library_path()
    assert native.library_path(("-g",)) != native.library_path(("-fsanitize=address",))


def test_library_file_name_ignores_modification_times(own_sources):
    before = native.library_path()
    for path in own_sources.iterdir():
        os.utime(path, (1, 1))
    assert native.library_path() == before


# ---------------------------------------------------------------- failures of build()

def test_build_into_a_folder_that_cannot_be_made_is_native_build_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("CNN_BASE_CACHE", str(blocker / "cache"))
    with pytest.raises(native.NativeBuildError, match="cannot write in .*a_file.*CNN_BASE_CACHE"):
        native.build(force=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_build_into_a_read_only_folder_is_native_build_error(monkeypatch, tmp_path):
    tmp_path.chmod(0o500)
    monkeypatch.setenv("CNN_BASE_CACHE", str(tmp_path))
    try:
        with pytest.raises(native.NativeBuildError, match="cannot write"):
            native.build(force=True)
    finally:
        tmp_path.chmod(0o700)


def test_a_cache_folder_that_cannot_be_searched_is_native_build_error(monkeypatch, tmp_path):
    """A parent folder the user cannot enter: Path.exists raises PermissionError (not as root)."""
    locked = tmp_path / "locked"
    monkeypatch.setenv("CNN_BASE_CACHE", str(locked / "cache"))
    real = pathlib.Path.exists

    def exists(self):
        if str(self).startswith(str(locked)):
            raise PermissionError(13, "Permission denied")
        return real(self)
    monkeypatch.setattr(pathlib.Path, "exists", exists)
    with pytest.raises(native.NativeBuildError,
                       match="cannot use .*locked.*Permission denied.*CNN_BASE_CACHE"):
        native.build()


@pytest.mark.skipif(os.geteuid() == 0, reason="root enters any folder")
def test_build_under_a_folder_that_cannot_be_entered_is_native_build_error(monkeypatch,
                                                                            tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    monkeypatch.setenv("CNN_BASE_CACHE", str(locked / "cache"))
    try:
        with pytest.raises(native.NativeBuildError, match="cannot"):
            native.build()
    finally:
        locked.chmod(0o700)


def test_build_without_any_compiler_is_native_build_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "")
    monkeypatch.setenv("PATH", str(tmp_path))        # no c++, g++ or clang++ there
    monkeypatch.setenv("CNN_BASE_CACHE", str(tmp_path))
    with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler found"):
        native.build(force=True)


def test_build_without_kernel_sources_is_native_build_error(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "SOURCE_DIR", tmp_path)
    monkeypatch.setenv("CNN_BASE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(native.NativeBuildError, match="no kernel sources"):
        native.build(force=True)


# ---------------------------------------------------------------- first use, in fresh processes

@pytest.mark.parametrize("env, says", [
    ({"CXX": "false"}, "failed to compile"),
    ({"CXX": "", "PATH": "{tmp}"}, "no C++ compiler"),
    ({"CNN_BASE_CACHE": "{tmp}/a_file/cache"}, "could not be built"),
])
def test_import_without_a_buildable_kernel_warns_once_in_one_line_and_pools(env, says, tmp_path):
    (tmp_path / "a_file").write_text("")
    env = {"CNN_BASE_CACHE": str(tmp_path / "cache"),
           **{k: v.format(tmp=tmp_path) for k, v in env.items()}}
    out, err = finish(python("""
        import cnn_base as cb
        from mxnet import nd
        X = nd.arange(16).reshape((1, 1, 4, 4))
        print(cb.MaxPool2D(3, strides=2, padding=1)(X).asnumpy().ravel().tolist())
        print(cb.native.loaded(), cb.native.status())
        cb.native.load()
        print(cb.AvgPool2D(2)(X).asnumpy().ravel().tolist())
    """, **env))
    (line,) = err.splitlines()
    assert line.startswith("cnn_base: ") and says in line and "MXNet operators" in line
    assert "CNN_BASE_NATIVE=0" in line
    pooled, status, averaged = out.splitlines()
    assert pooled == "[5.0, 7.0, 13.0, 15.0]" and averaged == "[2.5, 4.5, 10.5, 12.5]"
    assert status.startswith("False MXNet operators (C++ kernel: not built")
    assert not list((tmp_path / "cache").glob("*.so")) if (tmp_path / "cache").is_dir() else True


def test_turned_off_by_environment_the_kernel_is_neither_built_nor_warned_about(tmp_path):
    env = dict(os.environ, CNN_BASE_NATIVE="0", CNN_BASE_CACHE=str(tmp_path), CXX="false")
    done = subprocess.run([sys.executable, "-c", "import cnn_base as cb; print(cb.native.status())"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == ""
    assert "CNN_BASE_NATIVE=0" in done.stdout
    assert list(tmp_path.iterdir()) == []


@needs_compiler
def test_concurrent_first_uses_build_one_library_that_both_load(tmp_path):
    """Two processes start on an empty cache at once: one compiles, the other waits and reuses it.

    The first calls build() itself and sees status() say "C++ kernel" right after it.
    """
    cache = tmp_path / "cache"
    builder = python("""
        from cnn_base import native
        path = native.build()
        print(path)
        print(native.status())
    """, CNN_BASE_CACHE=str(cache))
    importer = python("""
        import cnn_base as cb
        from mxnet import nd
        print(cb.native.status())
        X = nd.arange(16).reshape((1, 1, 4, 4))
        print(cb.functional.pool2d_native(nd, X, 3, 2, 1).asnumpy().ravel().tolist())
    """, CNN_BASE_CACHE=str(cache))
    (built, built_status), (importer_status, pooled) = (
        finish(builder)[0].splitlines(), finish(importer)[0].splitlines())
    assert built_status.startswith("C++ kernel (cnn_base_pool2d, loaded from") and built in built_status
    assert importer_status == built_status
    assert pooled == "[5.0, 7.0, 13.0, 15.0]"
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock", os.path.basename(built)]

    # ready: the next import is quiet and compiles nothing (a compile would fail now)
    done = subprocess.run([sys.executable, "-c", "import cnn_base as cb; print(cb.native.status())"],
                          env=dict(os.environ, CNN_BASE_CACHE=str(cache)), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == built_status


def test_import_puts_back_numpy_bool_for_mxnet_only_when_missing():
    """mxnet 1.9.1 reads numpy.bool at import; numpy >= 1.24 (Python 3.12) removed it."""
    out, err = finish(python("""
        import numpy
        had = hasattr(numpy, "bool")
        import cnn_base
        print(had, numpy.bool is bool)
    """))
    had, now = out.split()
    assert now == "True", err       # numpy 1.23 has it (the builtin); 1.26 gets it back
    assert had == ("True" if tuple(map(int, np.__version__.split(".")[:2])) < (1, 24) else "False")


def _compilers_writing_into(folder, builder):
    """The processes but ``builder`` whose command line names ``folder`` (the compilers of a
    build into it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == builder.pid:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(folder).encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


@needs_compiler
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_interrupted_build_kills_its_compilers_and_leaves_no_partial_files(tmp_path):
    """SIGINT to the building process alone (not its process group): it stops at once, the
    compilers it ran side by side (and theirs) are gone, and no object or partial file stays."""
    import signal, time
    out = tmp_path / "out"
    builder = python(f"""
        import pathlib
        from cnn_base import native
        native.build(force=True, library=pathlib.Path({str(out / 'lib.so')!r}))
    """)
    deadline = time.monotonic() + 60
    while not _compilers_writing_into(out, builder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _compilers_writing_into(out, builder), "the build never started its compilers"
    builder.send_signal(signal.SIGINT)
    builder.communicate(timeout=30)
    assert builder.returncode != 0
    time.sleep(0.5)
    assert _compilers_writing_into(out, builder) == []
    assert sorted(p.name for p in out.iterdir()) == []
