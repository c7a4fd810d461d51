"""Train d2l's LeNet on Fashion-MNIST with our Conv2D/MaxPool2D and Gluon's, side by side.

The same as ``cnn-base train-lenet``; the code is ``cnn_base.cli.train_lenet``.
``python scripts/train_lenet.py --help`` lists the options.
"""
import sys

from cnn_base.cli.train_lenet import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
