"""Train d2l's LeNet on Fashion-MNIST with our Conv2D/MaxPool2D and Gluon's, side by side.

    cnn-base train-lenet                                  # d2l's setting, both blocks
    cnn-base train-lenet --block custom --epochs 2 --limit 5000 --ctx 'cpu(0),cpu(1)'
    cnn-base train-lenet --checkpoint out/ckpt            # a checkpoint after every epoch
    cnn-base train-lenet --checkpoint out/ckpt --resume   # ... continued after a crash
    cnn-base train-lenet --json out/lenet.json --plot out/lenet.png
    cnn-base launch-dist --workers 2 -- python -m cnn_base train-lenet --kvstore dist_sync --block custom

With ``--block both`` (the default) the two blocks train one after the other from the
same initial weights and in the same batch order, and the differences are printed.
With ``--kvstore dist_sync`` (or ``dist_async``) the command is one worker of a
parameter-server job started by ``launch-dist``: every worker trains on its share of
each batch of ``--batch-size``, and only rank 0 prints the epochs and writes the
checkpoints, ``--json`` and ``--plot`` (one block per job). The training lives in
``cnn_base.train_lenet``; this command parses arguments, prints and writes files.
Bad arguments, missing data, an unusable or damaged checkpoint, or a file that cannot be
written (full disk, file-size limit; the previous file or checkpoint stays whole): one line
on stderr, exit status 2. A run whose loss becomes NaN or infinite stops there with one line
saying where and what to try, exit status 1 (``--json`` still records the complete epochs
and ``"diverged"``). Ctrl-C: one line saying where to ``--resume``, exit status 130.
"""
import argparse
import pathlib

from cnn_base._choices import ACTIVATIONS, BLOCKS, KVSTORE_CHOICES, PROGRESS_CHOICES
from cnn_base.cli._args import (PLOT_FORMATS, ArgumentParser, add_block_option, add_ctx_option,
                                add_seed_option, chosen_blocks, fail, library_for_files,
                                interruptible, output_dir, output_file, positive_float,
                                positive_int, write_results)

DIVERGED_STATUS = 1     # the run failed (not the arguments: those are 2)

__all__ = ["build_parser", "main"]

BLOCK_NAMES = {"custom": "cnn_base.Conv2D + cnn_base.MaxPool2D",
               "builtin": "gluon.nn.Conv2D + gluon.nn.MaxPool2D"}
# the chapter-5 networks take every block of nets._layers.layers from the chosen side
NET_BLOCK_NAMES = {"custom": "cnn_base's Conv2D, pools and BatchNorm",
                   "builtin": "gluon.nn's Conv2D, pools and BatchNorm"}


def ctx_list_arg(text):
    """``--ctx``: one context or a comma-separated list (``cpu(0),cpu(1)``), each checked."""
    from cnn_base.context import ContextUnavailableError
    from cnn_base.training.loop import as_ctx_list   # mxnet loads only when needed

    try:
        return as_ctx_list(text)
    except ContextUnavailableError as e:
        raise argparse.ArgumentTypeError(f"{e}; use --ctx cpu") from None
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def input_dir(text):
    """``--data``: an existing folder (the only place the IDX files are looked for)."""
    path = pathlib.Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder" if path.exists()
                                         else f"no folder {text!r}")
    return path


def _perturbation(text):
    """--perturb: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not from 0 to 1")
    return value


def build_parser(prog=None, nets=False):
    """train-lenet's options; with ``nets`` (the ``train`` command) also ``--net`` and
    ``--resize``, and the learning rate and batch default to the book's for the net."""
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    if nets:
        from cnn_base._choices import CHAPTER_NET_NAMES
        parser.add_argument("--net", choices=CHAPTER_NET_NAMES, default="lenet",
                            help="which of d2l chapter 5's networks (default: lenet)")
        parser.add_argument("--resize", metavar="SIDE", type=positive_int,
                            help="resize every image to SIDE x SIDE in the data pipeline "
                                 "(default: the book's side for --net: 224 for alexnet, vgg11 "
                                 "and nin, 96 for googlenet, resnet18 and densenet)")
    add_block_option(parser, "our Conv2D and MaxPool2D, Gluon's, or both one after the other "
                             "(default: both)")
    parser.add_argument("--epochs", type=positive_int, default=5, help="epochs (default: 5)")
    parser.add_argument("--batch-size", type=positive_int, default=None if nets else 256,
                        help="global batch, cut across the workers and the contexts "
                             "(default: " + ("the book's for --net" if nets else "256") + ")")
    parser.add_argument("--lr", type=positive_float, default=None if nets else 0.9,
                        help="SGD learning rate (default: "
                             + ("the book's for --net" if nets else "0.9") + ")")
    add_seed_option(parser, "initial weights and every epoch's order")
    if nets:
        parser.add_argument("--perturb", metavar="SCALE", type=_perturbation, default=0.0,
                            help="multiply every initial weight by 1 + SCALE * N(0, 1), e.g. "
                                 "1e-6: how far a run moves from itself (default: 0)")
    add_ctx_option(parser, "auto, cpu, gpu, cpu(N), gpu(N), or a comma-separated list such as "
                           "'cpu(0),cpu(1)' for data-parallel training (default: auto)",
                   type=ctx_list_arg)
    parser.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid",
                        help="after every convolution and hidden Dense layer (default: sigmoid, "
                             "as d2l)")
    parser.add_argument("--data", metavar="DIR", type=input_dir,
                        help="the folder of the IDX files, and the only place looked (default: "
                             "$CNN_BASE_DATA, /usr/share/datasets/fashion-mnist, MXNet's cache, "
                             "then Gluon's download)")
    parser.add_argument("--limit", metavar="N", type=positive_int,
                        help="only the first N training and N test images (quick runs)")
    parser.add_argument("--kvstore", choices=KVSTORE_CHOICES, default="local",
                        help="how the gradients are summed: local or device (one process), "
                             "dist_sync or dist_async (a worker of a launch-dist job; one "
                             "--block) (default: local)")
    parser.add_argument("--checkpoint", metavar="DIR", type=output_dir,
                        help="write a checkpoint there after every epoch (with --block both: "
                             "DIR/custom and DIR/builtin)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete epoch in --checkpoint DIR")
    parser.add_argument("--progress", choices=PROGRESS_CHOICES, default="auto",
                        help="a tqdm bar (bar), quarter-epoch lines (plain) or nothing; auto: "
                             "a bar on a terminal, plain lines otherwise (default: auto)")
    parser.add_argument("--json", metavar="PATH", type=output_file({"json"}),
                        help="write {block: {epochs: [...], ctx, batch_size, lr, seed, ...}} "
                             "(its folder is created if missing)")
    parser.add_argument("--plot", metavar="PATH", type=output_file(PLOT_FORMATS),
                        help="write the loss and accuracy curves of the blocks that ran (its "
                             "folder is created if missing)")
    return parser


def _checkpoint_dirs(root, blocks):
    """Each block's checkpoint folder; a folder laid out for the other mode is refused."""
    from cnn_base.training.checkpoints import latest_checkpoint

    if root is None:
        return {block: None for block in blocks}
    if len(blocks) == 2:
        if latest_checkpoint(root) is not None:
            raise ValueError(f"{root} holds the checkpoint of a one-block run; resume it with "
                             f"that --block, or choose another --checkpoint folder")
        return {block: root / block for block in blocks}
    both = [b for b in BLOCKS if latest_checkpoint(root / b) is not None]
    if both:
        raise ValueError(f"{root} holds the checkpoints of a --block both run "
                         f"({', '.join(str(root / b) for b in both)}); resume it with --block "
                         f"both, or choose another --checkpoint folder")
    return {blocks[0]: root}


@interruptible
def main(argv=None):
    return run(build_parser(), argv)


def run(parser, argv):
    """Parse ``argv`` with ``parser`` (train-lenet's, or ``train``'s with ``--net``) and train."""
    args = parser.parse_args(argv)
    _book_defaults(args)
    _check_combination(parser, args)
    cb = library_for_files()
    workers = _workers(parser, args.kvstore)
    # rank 0 prints and writes; under dist_sync the others would print the same numbers,
    # under dist_async each worker's numbers are its own shard's, so all print
    speaks = workers.writes_files or not workers.sums_over_workers
    say = print if speaks else (lambda *_: None)
    blocks = chosen_blocks(args.block)
    try:
        checkpoints = _checkpoint_dirs(args.checkpoint, blocks)
        train_data = cb.fashion_mnist_dataset(True, args.data, args.limit)
        test_data = cb.fashion_mnist_dataset(False, args.data, args.limit)
    except (ValueError, OSError) as e:      # DataNotFoundError, IDXFormatError, a mixed layout
        fail(parser.prog, str(e))
    say(f"Fashion-MNIST: {len(train_data)} training and {len(test_data)} test images")
    if not speaks:
        print(f"worker rank {workers.rank} of {workers.num_workers} ({args.kvstore}): "
              f"rank 0 prints the numbers, summed over the workers, and writes the files")
    runs = {}
    for block in blocks:
        what = f"LeNet with {BLOCK_NAMES[block]}, {args.activation}" if args.net == "lenet" \
            else f"{args.net} on {args.resize or 28}x{args.resize or 28} images with " \
                 f"{NET_BLOCK_NAMES[block]}"
        say(f"== {block}: {what}, batch "
            f"{args.batch_size}, lr {args.lr:g}, seed {args.seed}, {args.epochs} epochs ==")
        runs[block] = _train(parser, args, cb, block, train_data, test_data,
                             checkpoints[block], workers, speaks, runs)
        say()
    if workers.distributed:
        run = runs[blocks[0]]
        say(f"{args.kvstore}, {workers.num_workers} workers: {run.final.samples_per_sec:.0f} "
            f"samples/s in the last epoch"
            + ("" if workers.sums_over_workers else " (this worker's shard)"))
    if not workers.writes_files:
        return 0
    if len(runs) == 2:
        _compare(runs)
    write_results(parser.prog, args.plot, lambda: cb.history_figure(runs), args.json,
                  {block: run.to_dict() for block, run in runs.items()})
    return 0


def _book_defaults(args):
    """train-lenet: LeNet as stored; ``train``: the book's lr, batch and side for ``--net``."""
    if not hasattr(args, "net"):
        args.net, args.resize = "lenet", None
        return
    from cnn_base._choices import BOOK_SETTINGS
    lr, batch_size, side = BOOK_SETTINGS[args.net]
    args.lr = lr if args.lr is None else args.lr
    args.batch_size = batch_size if args.batch_size is None else args.batch_size
    if args.resize is None and side != 28:
        args.resize = side


def _check_combination(parser, args):
    """The options that are refused together, before MXNet is imported."""
    if args.resume and args.checkpoint is None:
        parser.error("argument --resume: needs --checkpoint DIR")
    if args.kvstore.startswith("dist") and args.block == "both":
        parser.error(f"argument --block: --kvstore {args.kvstore} trains one block per job "
                     f"(the Trainer's keys in the store serve one run); choose custom or builtin")
    if args.kvstore == "dist_async" and args.checkpoint is not None:
        parser.error("argument --checkpoint: checkpoints need kvstore 'dist_sync', not "
                     "'dist_async' (its optimizer lives on the servers, and MXNet cannot save "
                     "it from a worker)")


def _workers(parser, kvstore):
    """This process's place in a parameter-server job (one process unless dist_*)."""
    from cnn_base.training.distributed import SINGLE_PROCESS, Workers

    try:
        return Workers.create(kvstore) if kvstore.startswith("dist") else SINGLE_PROCESS
    except ValueError as e:                 # not inside a parameter-server job
        fail(parser.prog, str(e))


def _train(parser, args, cb, block, train_data, test_data, checkpoint, workers, speaks, runs):
    """One block's run of :func:`cnn_base.train_lenet`; a refusal is one line on stderr.

    ``runs``: the blocks done before, recorded in ``--json`` if this one diverges.
    """
    from cnn_base.training.loop import TrainingDiverged, TrainingInterrupted

    try:
        return cb.train_net(
            args.net, block, args.epochs, args.batch_size, args.lr, args.seed, args.ctx,
            activation=args.activation, resize=args.resize, train_data=train_data,
            test_data=test_data,
            checkpoint=checkpoint, resume=args.resume,
            progress=args.progress if speaks else "none",
            kvstore=workers if workers.distributed else args.kvstore,
            log=print if speaks else None, perturb=getattr(args, "perturb", 0.0))
    except TrainingDiverged as e:
        if workers.writes_files and args.json:
            report = {b: run.to_dict() for b, run in runs.items()}
            report[block] = {"block": block, "diverged": str(e),
                             "diverged_at": {"epoch": e.epoch, "batch": e.batch},
                             "lr": args.lr, "seed": args.seed, "batch_size": args.batch_size,
                             "epochs": [vars(h) for h in e.history]}
            write_results(parser.prog, json_path=args.json, report=report)
        fail(parser.prog, f"{block}: {e}", status=DIVERGED_STATUS)
    except TrainingInterrupted as e:
        raise KeyboardInterrupt(_where_to_resume(e, checkpoint)) from None
    except (ValueError, OSError) as e:      # CheckpointError, WriteError, a batch too small
        fail(parser.prog, str(e))


def _where_to_resume(interrupted, checkpoint):
    """``interrupted at epoch N; --resume continues from epoch M`` (M: the checkpoint on disk)."""
    from cnn_base.training.checkpoints import latest_checkpoint

    where = f"interrupted at epoch {interrupted.epoch}"
    if checkpoint is None:
        return f"{where} (no --checkpoint, so nothing to resume)"
    found = latest_checkpoint(checkpoint)
    done = int(found.name.split("-")[1]) if found is not None else 0
    return (f"{where}; `--resume` continues from epoch {done + 1}"
            + (f" (checkpoint {found})" if found is not None else ""))


def _compare(runs):
    """Our blocks' run against Gluon's: the largest differences, and each one's result."""
    pairs = list(zip(runs["custom"].epochs, runs["builtin"].epochs))
    diff = {name: max(abs(getattr(c, name) - getattr(b, name)) for c, b in pairs)
            for name in ("loss", "train_acc", "test_acc")}
    print(f"custom vs builtin: max |loss difference| = {diff['loss']:.3g}, max |train acc "
          f"difference| = {diff['train_acc']:.3g}, max |test acc difference| = "
          f"{diff['test_acc']:.3g}")
    for block, run in runs.items():
        times = ", ".join(f"{e.seconds:.1f}" for e in run.epochs)
        print(f"{block}: test acc {run.final.test_acc:.3f} after epoch {run.final.epoch}; "
              f"seconds per epoch {times}")
