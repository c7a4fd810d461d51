"""``python -m cnn_base <command>``: the same as the ``cnn-base`` console script."""
import sys

from cnn_base.cli import main

if __name__ == "__main__":
    sys.exit(main())
