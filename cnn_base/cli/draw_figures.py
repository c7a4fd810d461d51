"""Redraw the blog's seven figures, and the learned edge kernel on a photograph: eight PNGs.

    cnn-base draw-figures                          # into out/
    cnn-base draw-figures --out figs --block builtin --ctx cpu
    cnn-base draw-figures --animate                # and the six GIFs of the window moving

Every number, output and caption in the pictures is computed by ``cnn_base``
(``cnn_base.write_figures``); the edge kernel is learned first with
``cnn_base.learn_edge_kernel``. ``--animate`` also writes the chapter's animations,
one frame per window position (``cnn_base.animations.write_animations``).
Bad arguments: one line on stderr, exit status 2.
"""
from cnn_base.cli._args import (ArgumentParser, add_block_option, add_ctx_option,
                                add_seed_option, fail, library_for_files, output_dir)

__all__ = ["build_parser", "main"]


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=output_dir, default="out",
                        help="folder for the PNGs, created if missing (default: out)")
    add_block_option(parser, "the Conv2D that learns the edge kernel (default: custom)",
                     both=False)
    add_ctx_option(parser, "where the kernel is learned: auto, cpu, gpu, cpu(N), gpu(N) "
                           "(default: auto)")
    add_seed_option(parser, "seed of the learning run")
    parser.add_argument("--animate", action="store_true",
                        help="also write the six GIFs of the window moving (cross-correlation, "
                             "padding, stride, two channels, max and average pooling)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cb = library_for_files()

    run = cb.learn_edge_kernel(args.block, ctx=args.ctx, seed=args.seed)
    print(f"learned kernel ({args.block}, {run.iters} iterations on {run.ctx}): "
          f"{run.kernel.asnumpy()}")
    try:
        paths = cb.write_figures(args.out, run.kernel)
        if args.animate:
            from cnn_base.animations import write_animations

            paths += write_animations(args.out)
    except OSError as e:
        fail(parser.prog, f"cannot write {e.filename}: {e.strerror or e}")
    for path in paths:
        print(f"wrote {path}")
    return 0
