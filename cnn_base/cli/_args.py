"""Argument parsing shared by the commands: bad input is one line on stderr and exit status 2.

Every command of ``cnn-base`` (``cnn_base/cli/<command>.py``) builds its parser
from :class:`ArgumentParser`. argparse prints its usage before an error;
:class:`ArgumentParser` prints only ``prog: error: argument --name: what is wrong``
so a user, or a test, reads one line. Abbreviated options (``--ite`` for
``--iters``) are errors, not guesses. The ``*_arg`` functions are ``type=``
converters whose errors name the rule and the value received.
"""
import argparse
import contextlib
import math
import os
import pathlib
import sys

__all__ = ["ArgumentParser", "nonnegative_int", "positive_int", "positive_float", "ctx_arg",
           "output_file", "output_dir", "fail", "command_prog", "progress_bar", "write_results",
           "PLOT_FORMATS", "add_block_option", "add_seed_option", "add_ctx_option",
           "chosen_blocks", "library_for_files", "interruptible", "INTERRUPTED_STATUS"]

INTERRUPTED_STATUS = 130    # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C

# the file endings matplotlib writes, for --plot
PLOT_FORMATS = {"png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp"}

# The name a parser built with prog=None shows: set by the ``cnn-base`` dispatcher
# (e.g. "cnn-base reproduce-blog"); otherwise argparse's own default, the script's file name.
_command_prog = None


@contextlib.contextmanager
def command_prog(prog):
    """Within the ``with``, parsers built with ``prog=None`` call themselves ``prog``."""
    global _command_prog
    old, _command_prog = _command_prog, prog
    try:
        yield
    finally:
        _command_prog = old


class ArgumentParser(argparse.ArgumentParser):
    """argparse without the usage dump: an error is one line on stderr, exit status 2.

    Abbreviations of long options are off (``allow_abbrev=False``), so a typo is an error.
    """

    def __init__(self, prog=None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(prog=prog if prog is not None else _command_prog, **kwargs)

    def error(self, message):
        fail(self.prog, message)


def add_block_option(parser, help, both=True, default=None):
    """``--block``: ``custom`` (our blocks), ``builtin`` (Gluon's), and with ``both`` the two in turn."""
    from cnn_base._choices import BLOCKS

    choices = list(BLOCKS) + (["both"] if both else [])
    parser.add_argument("--block", choices=choices, default=default or choices[-1 if both else 0],
                        help=help)


def chosen_blocks(block):
    """The blocks a ``--block`` choice runs, in order."""
    from cnn_base._choices import BLOCKS

    return list(BLOCKS) if block == "both" else [block]


def add_seed_option(parser, help):
    """``--seed``: an int >= 0, default 0; ``help`` says what it seeds."""
    parser.add_argument("--seed", type=nonnegative_int, default=0, help=f"{help} (default: 0)")


def add_ctx_option(parser, help, type=None):
    """``--ctx``, default ``auto``: one context (:func:`ctx_arg`), or what ``type`` reads."""
    parser.add_argument("--ctx", type=type or ctx_arg, default="auto", help=help)


def library_for_files():
    """The preamble of a command that draws: matplotlib without a display, then ``cnn_base``
    (MXNet's import happens here, after the arguments are parsed)."""
    import matplotlib
    matplotlib.use("Agg")   # files only, no display
    import cnn_base

    return cnn_base


def fail(prog, message, status=2):
    """Print ``prog: error: message`` (one line) on stderr and exit with ``status``."""
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: error: {one_line}\n")
    sys.exit(status)


def interruptible(main):
    """``main`` with Ctrl-C as one line on stderr and exit status 130, never a traceback.

    The line is the ``KeyboardInterrupt``'s own message when it has one (a command that
    knows where it was says so, e.g. ``interrupted at epoch 3; --resume continues from
    epoch 3``), else ``interrupted``. Whatever was written before is whole (every file
    goes through ``cnn_base._files``' atomic write).
    """
    import functools

    @functools.wraps(main)
    def run(*args, **kwargs):
        _python_handles_ctrl_c_again()
        previous = sys.unraisablehook
        sys.unraisablehook = _interrupts_from_finalizers_again(previous)
        try:
            result = main(*args, **kwargs)
        except KeyboardInterrupt as e:
            # the hook stays: the arrays collected as the interpreter exits pass through it
            prog = _command_prog or os.path.basename(sys.argv[0] or "cnn-base")
            one_line = " ".join((str(e) or "interrupted").split())
            sys.stderr.write(f"{prog}: {one_line}\n")
            sys.exit(INTERRUPTED_STATUS)
        except SystemExit as e:
            # an inner ``run`` (``cnn-base <command>`` wraps a command's own) said "interrupted":
            # the hook stays here too, or the arrays collected at exit print under the line
            if e.code != INTERRUPTED_STATUS:
                sys.unraisablehook = previous
            raise
        except BaseException:
            sys.unraisablehook = previous
            raise
        sys.unraisablehook = previous
        return result
    return run


def _python_handles_ctrl_c_again():
    """SIGINT raises KeyboardInterrupt again (``cnn_base``'s start-up handler exits at once)."""
    import signal
    from cnn_base import _interrupted_while_starting
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupts_from_finalizers_again(previous):
    """An ``unraisablehook`` that delivers a Ctrl-C swallowed by a finalizer once more.

    What it buys: a Ctrl-C that arrives while Python runs a ``__del__`` (an NDArray's,
    freeing its handle, thousands a second in a training loop) is printed as "Exception
    ignored in ..." with a traceback, and lost: ``learn-edge-kernel`` ran on past a test's
    60 seconds. This hook prints nothing for it and interrupts the main thread again 10 ms
    later, in ordinary code (``_thread.interrupt_main``, as if the signal came again);
    any other unraisable exception goes to ``previous``.
    """
    import _thread
    import threading

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            timer = threading.Timer(0.01, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        if not _half_built_array(unraisable):
            previous(unraisable)
    return hook


def _half_built_array(unraisable):
    """Whether an unraisable exception is an NDArray's ``__del__`` finding no handle to free.

    A Ctrl-C that lands inside an NDArray's constructor, after the object exists and before
    it holds its handle, leaves an array with nothing to free; its ``__del__`` then raises
    AttributeError ('handle'), printed at exit as "Exception ignored in ..." with a traceback
    under the command's one line (seen once in CI after Ctrl-C in ``train-lenet``).
    """
    function = getattr(unraisable.object, "__qualname__", "")
    return (isinstance(unraisable.exc_value, AttributeError)
            and function.endswith("NDArrayBase.__del__")
            and "'handle'" in str(unraisable.exc_value))


def write_results(prog, plot=None, make_figure=None, json_path=None, report=None):
    """Save ``make_figure()`` to ``plot`` and ``report`` as JSON to ``json_path``, each if given.

    Prints ``wrote PATH`` after each file. Each is written whole or not at all
    (``cnn_base._files``): a file that cannot be written is one line naming it and the
    reason on stderr and exit status 2 (:func:`fail`), never a traceback, and the
    previous file stays as it was. The JSON is standard (NaN refused).
    """
    from cnn_base._files import write_json
    try:
        if plot:
            from cnn_base.figures import save_figure
            save_figure(make_figure(), plot)
            print(f"wrote {plot}")
        if json_path:
            write_json(json_path, report)
            print(f"wrote {json_path}")
    except ValueError as e:     # NaN or infinity in the report: not JSON, refused unwritten
        fail(prog, f"cannot write {json_path}: {e}")
    except OSError as e:        # cnn_base._files.WriteError: the path and the reason
        fail(prog, str(e) if e.filename else f"cannot write {plot or json_path}: {e.strerror or e}")


def nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text):
    value = nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def ctx_arg(text):
    """``--ctx``: an ``mx.Context`` via :func:`cnn_base.parse_ctx`; an unusable GPU suggests ``--ctx cpu``."""
    from cnn_base.context import ContextUnavailableError, parse_ctx   # mxnet loads only when needed

    try:
        return parse_ctx(text)
    except ContextUnavailableError as e:
        raise argparse.ArgumentTypeError(f"{e}; use --ctx cpu") from None
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _make_dir(path, what):
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{str(path)!r} is a file, not a {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot create {what} {str(path)!r}: "
                                         f"{e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {what} {str(path)!r}: permission denied")


def output_dir(text):
    """A directory that exists (created if missing) and is writable."""
    path = pathlib.Path(text)
    _make_dir(path, "directory")
    return path


def _kernel_file_system(path):
    """``'/proc'`` or ``'/sys'`` when ``path`` (followed through links) lies in one, else None."""
    resolved = pathlib.Path(os.path.realpath(path))
    for root in ("/proc", "/sys"):
        if resolved == pathlib.Path(root) or pathlib.Path(root) in resolved.parents:
            return root
    return None


def output_file(suffixes=None):
    """A ``type=`` converter for a file to write: its folder is created if missing (the
    commands' ``--help`` says so), and must be writable.

    ``suffixes``: the allowed file endings (e.g. matplotlib's formats), or ``None`` for any.
    A path under ``/proc`` or ``/sys`` (the kernel's own file systems, where a result
    cannot be written) is refused here, before any work.
    """
    def convert(text):
        path = pathlib.Path(text)
        if not text or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file path")
        kernel_fs = _kernel_file_system(path)
        if kernel_fs:
            raise argparse.ArgumentTypeError(f"{text!r} is under {kernel_fs}, the kernel's own "
                                             f"file system: results cannot be written there")
        if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text!r} must end in one of {', '.join('.' + s for s in sorted(suffixes))}")
        _make_dir(path.parent, "directory")
        if path.exists() and not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: permission denied")
        return path
    return convert


@contextlib.contextmanager
def progress_bar(description, unit):
    """A progress bar on stderr for a long run; yields ``progress(i, n)`` for the library's loop.

    Shown only on a terminal and only once the run has lasted a second (tqdm's
    ``delay``), and erased when done, so short runs and redirected output see nothing.
    """
    from tqdm import tqdm

    bar = tqdm(desc=description, unit=unit, leave=False, delay=1.0, disable=None,
               file=sys.stderr, dynamic_ncols=True)

    def progress(i, n):
        if bar.total != n:
            bar.total = n
        bar.update(i - bar.n)

    try:
        yield progress
    finally:
        bar.close()
