"""The chapter's corr2d and pool2d on NCHW or NHWC batches, written once for NDArray and Symbol.

Where to read, in order:

- :mod:`.conv`: :func:`conv2d`, the im2col reference first, then the fast paths
  (1x1 as one matrix product, rows gathered from the channel-last input) and
  :func:`conv2d_native`, the C++ kernel;
- :mod:`.pool`: :func:`pool2d_nchw` (the window's taps combined by ``where`` or summed)
  and :func:`pool2d_native`; :mod:`.global_pool`: :func:`global_pool2d`;
- :mod:`._dispatch`: which path computes a layer, and the measurements that say why;
- :mod:`._checks`: layouts, size limits and the call-time checks of an input;
  :mod:`._arrays`: slices, padding and size probes shared by the conv and the pools;
  :mod:`._kernel`: calling our C++ operators;
- :mod:`.batch_norm`: :func:`batch_norm` (d2l 5.10) by the C++ kernel, inside a custom operator.

Every function also takes Gluon's ``layout``: 'NCHW' (channels first, the default) or
'NHWC' (channels last), and takes ``F`` first (``mxnet.nd`` or ``mxnet.sym``), as a
``HybridBlock.hybrid_forward`` does, so the blocks of :mod:`cnn_base.blocks` run the same
code imperatively, hybridized and exported. None of them calls ``F.Convolution`` or
``F.Pooling``. Output sizes follow :func:`cnn_base.shapes.output_shape`; the graphs never
bake in an input size, so a hybridized block accepts any height and width, as the
built-ins do.
"""
from ._arrays import _grid, _padded, _plane, _slice, _zero_padded
from ._checks import (LAYOUTS, MAX_DIM, MAX_POOL_ARG, MAX_SIZE_ARG, _AXES, _check_fits,
                      _conv_args, _pair_args, _pool_args, check_conv2d_input, check_pool2d_input,
                      check_pool_args, check_pool_padding, check_size_args,
                      check_batch_norm_input)
from ._dispatch import (_GATHER_MIN_CHANNELS, _NHWC_GATHER_MIN_CHANNELS, NATIVE_MAX_CHANNELS,
                        _is_pointwise, conv_route, conv_uses_kernel, native_applies,
                        native_conv_applies, native_conv_fits, native_pool_applies,
                        pool_uses_kernel)
from ._kernel import _kernel_input, _native_channel_last
from .conv import (_conv2d_channel_last, _conv2d_im2col, _conv2d_pointwise, _fully_connected,
                   _gathered_rows, _grouped, _nchw_output, _window_index, conv2d, conv2d_native)
from .batch_norm import batch_norm
from .global_pool import _plane_mean, _plane_mean_by_sum, global_pool2d
from .pool import (_cell_counts, _lowest_like, _max_of_taps, _window_taps, global_pool2d_native,
                   lowest, pool2d_native, pool2d_nchw)

__all__ = ["LAYOUTS", "conv2d", "conv2d_native", "pool2d_nchw", "pool2d_native", "global_pool2d",
           "global_pool2d_native", "batch_norm"]
