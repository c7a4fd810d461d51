"""cnn_base: the "CNN basics" chapter of Dive into Deep Learning (MXNet edition, 5.1-5.4) in Gluon.

Layers of the package, each importing only from those above it:

- ``ops``: corr2d and friends, pool2d (NDArray in, NDArray out, differentiable)
- ``native``: pool2d's and corr2d's loops in C++ as the MXNet operators ``cnn_base_pool2d`` and
  ``cnn_base_conv2d`` (built by ``make``)
- ``functional``: corr2d and pool2d on NCHW batches for NDArray and Symbol (im2col + matmul,
  pooling taps or the C++ kernel)
- ``blocks``: Gluon Conv2D, MaxPool2D, AvgPool2D built on ``functional``, peers of ``gluon.nn``'s
- ``shapes``: output-size formulas, receptive fields, parameter and multiply-add counts
- ``examples``: the blog's example arrays
- ``exercises``: cross-correlation as a matrix, fitting a kernel of any shape (the chapter's exercises)
- ``context``: ``'auto'``/``'cpu(N)'``/``'gpu(N)'`` -> a checked ``mx.Context``
- ``train``: learning the edge kernel as the blog does, with our Conv2D or Gluon's, on any context
- ``figures``: the blog's figures redrawn from computed values, the edge kernel on a photograph
"""
from . import native
from .ops import *          # noqa: F401,F403
from .functional import *   # noqa: F401,F403
from .blocks import *       # noqa: F401,F403
from .shapes import *       # noqa: F401,F403
from .examples import *     # noqa: F401,F403
from .exercises import *    # noqa: F401,F403
from .context import *      # noqa: F401,F403
from .train import *        # noqa: F401,F403
from .figures import *      # noqa: F401,F403

native.load()    # registers cnn_base_pool2d when the kernel is built; see cnn_base.native.status()

__version__ = "0.1.0"
