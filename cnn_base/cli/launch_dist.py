"""Start a job of MXNet's parameter server on this machine: a scheduler, servers and workers.

    cnn-base launch-dist --workers 2 -- python scripts/train_lenet.py --block custom --kvstore dist_sync
    cnn-base launch-dist --workers 2 --timeout 600 -- python my_script.py --its-flags

Everything after ``--`` is the workers' command (``python`` there means this interpreter).
The launcher picks a free port on 127.0.0.1 for the scheduler (or takes ``--port``), sets
the ``DMLC_*`` variables of every process, prefixes each output line with the process's
role and number (``[worker 0] ...``), and exits with the workers' status. If any process
dies, the job passes ``--timeout``, or the launcher gets Ctrl-C, every process of the job
is stopped and the launcher says which one failed and how. The code is
:func:`cnn_base.training.distributed.launch`. Bad arguments (``--workers 0``, a missing script, a
port in use): one line on stderr, exit status 2.
"""
import sys

from cnn_base.cli._args import ArgumentParser, fail, positive_float, positive_int

__all__ = ["build_parser", "main"]

EXIT_STATUSES = """exit status: 0 when every worker exited with 0; else the first failed process's
status (128+N if signal N killed it: 137 for SIGKILL); 124 past --timeout; 128+N when the
launcher itself got signal N (130 for Ctrl-C); 2 for bad arguments."""


def port_arg(text):
    """``--port``: 1 to 65535."""
    import argparse

    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {value}")
    return value


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                            usage="%(prog)s [options] -- COMMAND [ARG ...]",
                            epilog=EXIT_STATUSES)
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="number of workers, each running COMMAND (default: 2)")
    parser.add_argument("--servers", type=positive_int, default=1,
                        help="number of servers (default: 1)")
    parser.add_argument("--port", type=port_arg,
                        help="the scheduler's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="stop the whole job after this many seconds (default: none)")
    parser.add_argument("--grace", type=positive_float, default=3.0, metavar="SECONDS",
                        help="when stopping, seconds between SIGTERM and SIGKILL (default: 3)")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    own, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = build_parser()
    args = parser.parse_args(own)
    if not command:
        parser.error("no command to run: give the workers' command after --, "
                     "e.g. -- python scripts/train_lenet.py --kvstore dist_sync")

    from cnn_base.training.distributed import LaunchError, launch

    try:
        result = launch(command, args.workers, args.servers, port=args.port,
                        timeout=args.timeout, grace=args.grace)
    except LaunchError as e:
        fail(parser.prog, e)
    return result.returncode
