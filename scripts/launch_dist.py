"""Start a job of MXNet's parameter server on this machine: a scheduler, servers and workers.

The same as ``cnn-base launch-dist``; the code is ``cnn_base.cli.launch_dist``.
``python scripts/launch_dist.py --help`` lists the options, e.g.

    python scripts/launch_dist.py --workers 2 -- python scripts/train_lenet.py --kvstore dist_sync
"""
import sys

from cnn_base.cli.launch_dist import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
