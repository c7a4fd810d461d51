"""Time cnn_base's Conv2D and pools against Gluon's built-ins (forward + backward, hybridized).

The same as ``cnn-base benchmark``; the code is ``cnn_base.cli.benchmark``.
``python scripts/benchmark.py --help`` lists the options.
"""
import sys

from cnn_base.cli.benchmark import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
