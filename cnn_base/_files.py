"""The one way cnn_base writes a file: whole or not at all, and a failure that says why in one line.

Every file the package writes (a command's ``--json`` and ``--plot``, the figures, the
checkpoints' ``params``, ``trainer.states`` and ``state.json``) goes through
:func:`atomic_path`: the writer writes a temporary file in the destination's folder, which
is flushed to disk (``fsync``) and renamed over the destination in one step, then the
folder is flushed too. A crash, a full disk or the file-size limit therefore leaves the
previous file as it was (or no file), never an empty or half-written one, and the
temporary file is removed.

A failure is a :class:`WriteError` (an ``OSError``) whose message is one line naming the
destination and the operating system's reason: ``cannot write out/run.json: No space left
on device``. (An ``OSError`` of a full disk carries no file name, so a message built from
``e.filename`` would say ``cannot write None``.) Writers that are not Python's own (MXNet's
``save_parameters`` raises ``MXNetError: FileStream.Write incomplete``) are diagnosed by
:func:`why_write_failed`: a full disk, the file-size limit, or their own message.
"""
import contextlib
import errno
import json
import os
import pathlib
import resource
import tempfile

__all__ = ["WriteError", "atomic_path", "write_text", "write_json", "why_write_failed",
           "fsync_dir"]


class WriteError(OSError):
    """A file that could not be written: ``cannot write PATH: reason`` (the previous file intact)."""

    def __init__(self, path, reason, errno_=None):
        super().__init__(errno_ or 0, reason, str(path))
        self.path, self.reason = pathlib.Path(path), reason

    def __str__(self):
        return f"cannot write {self.path}: {self.reason}"


def fsync_dir(path):
    """Flush a folder's entries (a rename in it) to disk; where folders cannot be opened, nothing."""
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


def why_write_failed(path, written=None):
    """The likely reason a write of ``path`` failed without an ``OSError``: disk full, size limit.

    ``written``: the temporary file that was being written, whose size is compared with
    the file-size limit (``ulimit -f``).
    """
    folder = pathlib.Path(path).parent
    try:
        if os.statvfs(folder).f_bavail == 0:
            return os.strerror(errno.ENOSPC), errno.ENOSPC
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        size = 0
        with contextlib.suppress(OSError):
            size = os.stat(written).st_size if written else 0
        if not written or size >= soft:
            return (f"{os.strerror(errno.EFBIG)} (the file-size limit, ulimit -f, is "
                    f"{soft} bytes)", errno.EFBIG)
    return None, None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    The temporary file is flushed to disk, renamed to ``path`` and the folder flushed.
    An ``OSError`` (in the writer, the flush or the rename) becomes a :class:`WriteError`
    naming ``path``; any exception removes the temporary file and leaves ``path`` as it was.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / 'a.txt'
    >>> with atomic_path(target) as tmp:
    ...     _ = pathlib.Path(tmp).write_text('whole')
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('whole', ['a.txt'])
    """
    path = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                   suffix=f".tmp{path.suffix}")   # writers that read the ending
        os.close(fd)
    except OSError as e:
        raise WriteError(path, e.strerror or str(e), e.errno) from None
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise WriteError(path, e.strerror or str(e), e.errno) from None
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(path.parent)


def _remove(tmp):
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return pathlib.Path(path)


def write_json(path, obj, indent=2):
    """Write ``obj`` as standard JSON (RFC 8259) to ``path`` atomically; return the path.

    NaN and infinity are refused (``ValueError``) before anything is written: they are not
    JSON, and a strict parser refuses the file. Record them as ``None`` or a string.
    """
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return write_text(path, text)
