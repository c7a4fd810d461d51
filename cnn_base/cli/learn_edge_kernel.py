"""Learn the edge kernel [[1, -1]] from the blog's edge image, with our Conv2D and Gluon's.

    cnn-base learn-edge-kernel                       # both blocks, auto context
    cnn-base learn-edge-kernel --block custom --ctx 'cpu(1)' --iters 20
    cnn-base learn-edge-kernel --plot out/edge_kernel.png --json out/edge_kernel.json

Each block's run starts from the same seed, hence from the same initial weights;
with the default seed both print the blog's loss lines. A run whose loss grows (or
becomes inf or nan) is called diverged: it says so with what to try, its results are
still written (as valid JSON), and the exit status is 1. On a terminal a long run shows a
progress bar. The training lives in
``cnn_base.learn_edge_kernel``; this command parses arguments, prints and writes files.
Bad arguments, or a file that cannot be written: one line on stderr, exit status 2.
Ctrl-C: one line, exit status 130.
"""

from cnn_base.cli._args import (PLOT_FORMATS, ArgumentParser, add_block_option, add_ctx_option,
                                add_seed_option, chosen_blocks, interruptible,
                                library_for_files, nonnegative_int, output_file, positive_float, progress_bar,
                                write_results)

__all__ = ["build_parser", "main"]

DIVERGED_STATUS = 1     # the run failed (not the arguments: those are 2), as in train-lenet

BLOCK_NAMES = {"custom": "cnn_base.Conv2D", "builtin": "gluon.nn.Conv2D"}


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_block_option(parser, "our cnn_base.Conv2D, Gluon's nn.Conv2D, or both side by side "
                             "(default: both)")
    add_ctx_option(parser, "auto (a GPU if MXNet sees one, else the CPU), cpu, gpu, cpu(N) "
                           "or gpu(N) (default: auto)")
    parser.add_argument("--iters", type=nonnegative_int, default=10,
                        help="number of updates (default: 10)")
    parser.add_argument("--lr", type=positive_float, default=0.03,
                        help="learning rate (default: 0.03)")
    add_seed_option(parser, "mx.random.seed before each block's initialisation")
    parser.add_argument("--plot", metavar="PATH", type=output_file(PLOT_FORMATS),
                        help="write one figure: input, target, learned output, kernel path, loss "
                             "(its folder is created if missing)")
    parser.add_argument("--json", metavar="PATH", type=output_file({"json"}),
                        help="write each block's kernel, per-iteration losses and context (its "
                             "folder is created if missing; an inf or nan is null)")
    return parser


@interruptible
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cb = library_for_files()

    runs = {}
    for block in chosen_blocks(args.block):
        with progress_bar(f"learning ({block})", "iter") as progress:
            run = cb.learn_edge_kernel(block, ctx=args.ctx, iters=args.iters, lr=args.lr,
                                       seed=args.seed, progress=progress)
        runs[block] = run
        print(f"== {block}: {BLOCK_NAMES[block]} on {run.ctx}, seed {run.seed}, lr {run.lr:g}, "
              f"{run.iters} iterations ==")
        for line in run.loss_lines():
            print(line)
        print(f"learned kernel: {run.kernel.asnumpy()}")
        error = abs(run.kernel.asnumpy() - cb.edge_kernel().asnumpy()).max()
        print(f"max |K - [[1, -1]]| = {error:.4f}")
        if run.diverged:
            print(f"the run diverged (the loss grew from {run.losses[0]:.3g} to "
                  f"{run.losses[-1]:.3g}): lr {run.lr:g} is too large, try a smaller --lr")
        print()

    if len(runs) == 2:
        custom, builtin = runs["custom"], runs["builtin"]
        loss_diff = max((abs(a - b) for a, b in zip(custom.losses, builtin.losses)), default=0.0)
        path_diff = abs(custom.kernel_path - builtin.kernel_path).max()
        print(f"custom vs builtin: max |loss difference| = {loss_diff:.3g}, "
              f"max |kernel difference| over the path = {path_diff:.3g}")

    write_results(parser.prog, args.plot, lambda: cb.training_figure(runs.values()), args.json,
                  {block: run.to_dict() for block, run in runs.items()})
    # a diverged run is a failed run, as in train-lenet: its results are written, exit 1
    return DIVERGED_STATUS if any(run.diverged for run in runs.values()) else 0
