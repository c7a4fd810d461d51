"""Build cnn_base's C++ pooling kernel (``make`` runs this): ``cnn_base/_build/libcnn_base_pool2d.so``.

The same as ``cnn-base build-native``; the code is ``cnn_base.cli.build_native``.
``python scripts/build_native.py --help`` lists the options.
"""
import sys

from cnn_base.cli.build_native import main

if __name__ == "__main__":
    sys.exit(main())
