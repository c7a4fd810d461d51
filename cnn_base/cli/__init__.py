"""``cnn-base <command>``: the package's commands (also ``python -m cnn_base <command>``).

    cnn-base reproduce-blog --seed 3
    cnn-base learn-edge-kernel --block custom --iters 20
    cnn-base --help                  # the list of commands

Each command is a module ``cnn_base.cli.<command with underscores>`` with
``build_parser(prog=None)`` and ``main(argv=None) -> int``; its heavy imports
(MXNet, the mxnet-using modules of cnn_base) happen inside ``main`` after the
arguments are parsed, so ``--help`` is fast. ``scripts/<command>.py`` in a clone
calls the same ``main``. An unknown command is one line on stderr and exit
status 2, like a bad flag; Ctrl-C in any command is one line and exit status 130.
"""
import importlib
import sys

from cnn_base.cli._args import command_prog, fail, interruptible

__all__ = ["COMMANDS", "main"]

# command name -> (module in cnn_base.cli, one line for `cnn-base --help`)
COMMANDS = {
    "reproduce-blog": ("reproduce_blog", "run every worked example of the blog, in its order"),
    "learn-edge-kernel": ("learn_edge_kernel",
                          "learn the edge kernel [[1, -1]] with our Conv2D and Gluon's"),
    "draw-figures": ("draw_figures", "redraw the blog's figures from computed values as PNGs"),
    "benchmark": ("benchmark", "time our Conv2D and pools against Gluon's built-ins"),
    "build-native": ("build_native", "build the C++ kernels (pooling, convolution)"),
    "train-lenet": ("train_lenet", "train d2l's LeNet on Fashion-MNIST with our blocks and Gluon's"),
    "train": ("train", "train any of d2l chapter 5's networks (--net) with our blocks and Gluon's"),
    "launch-dist": ("launch_dist", "start a parameter-server job (scheduler, servers, workers) "
                                   "on this machine"),
}

PROG = "cnn-base"


def usage():
    """The text of ``cnn-base --help``."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [options]   ({PROG} <command> --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run ``cnn-base``: ``argv[0]`` names the command, the rest are its arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        fail(PROG, f"a command is required: one of {', '.join(COMMANDS)} ({PROG} --help)")
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0
    if argv[0] == "--version":
        from cnn_base import __version__
        print(f"{PROG} {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        fail(PROG, f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    with command_prog(f"{PROG} {name}"):
        # Ctrl-C in any command (and in its imports) is one line and status 130
        return interruptible(_run)(name, rest)


def _run(name, rest):
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return module.main(rest)
