"""Train any of d2l chapter 5's networks on Fashion-MNIST (--net), our blocks and Gluon's.

The same as ``cnn-base train``; the code is ``cnn_base.cli.train``.
``python scripts/train.py --help`` lists the options.
"""
import sys

from cnn_base.cli.train import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
