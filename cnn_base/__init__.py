"""cnn_base: the "CNN basics" chapter of Dive into Deep Learning (MXNet edition, 5.1-5.4) in Gluon.

Layers of the package, each importing only from those above it:

- ``ops``: corr2d and friends, pool2d (NDArray in, NDArray out, differentiable)
- ``functional``: corr2d and pool2d on NCHW batches for NDArray and Symbol (im2col + matmul / reduce)
- ``blocks``: Gluon Conv2D, MaxPool2D, AvgPool2D built on ``functional``, peers of ``gluon.nn``'s
- ``shapes``: output-size formulas, receptive fields, parameter and multiply-add counts
- ``examples``: the blog's example arrays
- ``exercises``: cross-correlation as a matrix, fitting a kernel of any shape (the chapter's exercises)
"""
from .ops import *          # noqa: F401,F403
from .functional import *   # noqa: F401,F403
from .blocks import *       # noqa: F401,F403
from .shapes import *       # noqa: F401,F403
from .examples import *     # noqa: F401,F403
from .exercises import *    # noqa: F401,F403

__version__ = "0.1.0"
