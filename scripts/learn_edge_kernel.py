"""Learn the edge kernel [[1, -1]] from the blog's edge image, with our Conv2D and Gluon's.

The same as ``cnn-base learn-edge-kernel``; the code is ``cnn_base.cli.learn_edge_kernel``.
``python scripts/learn_edge_kernel.py --help`` lists the options.
"""
import sys

from cnn_base.cli.learn_edge_kernel import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
