"""Train d2l's LeNet on Fashion-MNIST with our Conv2D/MaxPool2D and Gluon's, side by side.

The same as ``cnn-base train-lenet``; the code is ``cnn_base.cli.train_lenet``.
``python scripts/train_lenet.py --help`` lists the options.
"""
import sys

from cnn_base.cli.train_lenet import main

if __name__ == "__main__":
    sys.exit(main())
