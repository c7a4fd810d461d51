"""Build cnn_base's C++ pooling kernel (``make`` runs this): ``cnn_base/_build/libcnn_base_pool2d.so``.

    cnn-base build-native              # compile if the library is missing or older than its source
    cnn-base build-native --force      # compile anyway
    cnn-base build-native --optional   # no compiler or a failed compile: say so, exit 0

The work is done by ``cnn_base.native.build``. Without ``--optional`` a failed
build is one line on stderr (the compiler's messages follow it) and exit status 1;
with it, the blocks simply pool with MXNet operators. Bad arguments: one line on
stderr, exit status 2.
"""
import sys

from cnn_base.cli._args import ArgumentParser

__all__ = ["build_parser", "main"]


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="compile even if up to date")
    parser.add_argument("--optional", action="store_true",
                        help="a missing compiler or failed build is not an error")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog

    from cnn_base import native     # after parsing: a bad flag costs no MXNet import

    before = native.LIBRARY.stat().st_mtime_ns if native.LIBRARY.exists() else None
    try:
        path = native.build(force=args.force)
    except native.NativeBuildError as error:
        first, _, rest = str(error).partition("\n")
        sys.stderr.write(f"{prog}: {'warning' if args.optional else 'error'}: {first}\n")
        if rest:
            sys.stderr.write(rest + "\n")
        if args.optional:
            sys.stderr.write(f"{prog}: our pools will compute with MXNet operators "
                             "(same results, slower)\n")
            return 0
        return 1
    built = not path.exists() or path.stat().st_mtime_ns != before
    print(f"{prog}: {'built' if built else 'up to date:'} {path}")
    return 0
