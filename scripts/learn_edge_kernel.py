"""Learn the edge kernel [[1, -1]] from the blog's edge image, with our Conv2D and Gluon's.

The same as ``cnn-base learn-edge-kernel``; the code is ``cnn_base.cli.learn_edge_kernel``.
``python scripts/learn_edge_kernel.py --help`` lists the options.
"""
import sys

from cnn_base.cli.learn_edge_kernel import main

if __name__ == "__main__":
    sys.exit(main())
