"""Build cnn_base's C++ pooling kernel into the per-user cache now (make runs this; first use does too).

The same as ``cnn-base build-native``; the code is ``cnn_base.cli.build_native``.
``python scripts/build_native.py --help`` lists the options.
"""
import sys

from cnn_base.cli.build_native import main
from cnn_base.cli._args import interruptible

if __name__ == "__main__":
    sys.exit(interruptible(main)())   # Ctrl-C: one line, exit 130
