"""Train any of d2l chapter 5's networks on Fashion-MNIST with our blocks and Gluon's, side by side.

    cnn-base train --net resnet18 --resize 96 --block both --epochs 5
    cnn-base train --net alexnet --limit 2000 --epochs 1        # the book's lr 0.01, 224 x 224
    cnn-base train --net densenet --checkpoint out/densenet --json out/densenet.json

``--net`` is lenet (§5.5), alexnet, vgg11, nin, googlenet, lenet_bn, resnet18 or densenet
(§5.6-5.12); the learning rate, the batch and the image side default to the book's for
it (``cnn_base.training.experiment.BOOK_SETTINGS``), and the images are resized in the
data pipeline as the book does. Everything else is train-lenet's: both blocks from the
same initial weights in the same batch order, progress, ``--json``/``--plot``,
checkpoints and ``--resume``, ``--ctx``, ``--kvstore dist_sync`` under ``launch-dist``,
and the same exit statuses (bad arguments or files 2, a diverged run 1, Ctrl-C 130).
``--perturb 1e-6`` multiplies every initial weight by 1 + 1e-6 N(0, 1): how far a run
moves from itself, the yardstick for how closely the two blocks track each other.
The training lives in ``cnn_base.train_net``.
"""
from cnn_base.cli import train_lenet
from cnn_base.cli._args import interruptible

__all__ = ["build_parser", "main"]


def build_parser(prog=None):
    parser = train_lenet.build_parser(prog, nets=True)
    parser.description = __doc__.split("\n")[0]
    return parser


@interruptible
def main(argv=None):
    return train_lenet.run(build_parser(), argv)
