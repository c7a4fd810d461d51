"""Build cnn_base's C++ kernels (pooling, convolution) into the per-user cache (make runs this).

    cnn-base build-native              # compile unless this exact library is in the cache
    cnn-base build-native --force      # compile anyway
    cnn-base build-native --optional   # no compiler or a failed compile: say so, exit 0

``import cnn_base`` builds the kernels by itself on first use; this command does
it now and shows the compiler's messages when it fails. The work is done by
``cnn_base.native.build``; the library goes to ``cnn_base.native.library_path()``
(in ``$CNN_BASE_CACHE``, else ``$XDG_CACHE_HOME/cnn_base``, else
``~/.cache/cnn_base``). Without ``--optional`` a failed build is one line on
stderr (the compiler's messages follow it) and exit status 1; with it, the
blocks simply pool and convolve with MXNet operators. Bad arguments: one line on stderr,
exit status 2.
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

    try:
        library = native.library_path()
        before = library.stat().st_mtime_ns if library.exists() else None
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
