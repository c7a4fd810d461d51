"""Run every worked example of the blog "深度学习之(五)卷积神经网络", in the blog's order.

    cnn-base reproduce-blog             # seed 0: the blog's loss lines and kernel
    cnn-base reproduce-blog --seed 3

Each example prints under its section heading (the blog's numbering, its Chinese
title and an English one) what the blog's code prints. Everything is computed by
``cnn_base`` and Gluon; the learning run is ``cnn_base.learn_edge_kernel``, the same
function ``cnn-base learn-edge-kernel`` runs. Bad arguments: one line on stderr, exit 2.
"""
import sys

from cnn_base.cli._args import ArgumentParser, add_seed_option

__all__ = ["build_parser", "main"]


def heading(number, chinese, english):
    level = number.count(".") + 1
    print(f"\n{'#' * level} {number} {chinese} ({english})")


def comp_conv2d(conv2d, X):
    """The blog's helper: initialise ``conv2d``, run it on ``X`` (h, w), return the (h', w') output."""
    conv2d.initialize()
    Y = conv2d(X.reshape((1, 1) + X.shape))
    return Y.reshape(Y.shape[2:])


def section_1(seed):
    import mxnet as mx
    import cnn_base as cb

    heading("1", "二维卷积层", "Two-dimensional convolutional layers")

    heading("1.1", "互相关运算", "Cross-correlation")
    X, K = cb.corr2d_example()
    print(cb.corr2d(X, K))

    heading("1.2", "二维卷积层", "The 2-D convolutional layer")
    conv = cb.Conv2D(1, kernel_size=K.shape, in_channels=1)
    conv.initialize()
    conv.weight.set_data(K.reshape((1, 1) + K.shape))
    print(f"cnn_base.{conv} with weight K and bias {conv.bias.data().asscalar():g}, on X:")
    print(conv(X.reshape((1, 1) + X.shape)).reshape((2, 2)))

    heading("1.3", "图像中的物体边缘检测", "Edge detection in images")
    X = cb.edge_image()
    print(X)
    K = cb.edge_kernel()
    Y = cb.corr2d(X, K)     # white to black is 1, black to white is -1
    print(Y)
    print("\n通过数据学习核数组 (Learning a kernel from data): "
          f"gluon.nn.Conv2D(1, kernel_size=(1, 2)), seed {seed}")
    run = cb.learn_edge_kernel("builtin", ctx=mx.cpu(), iters=10, lr=3e-2, seed=seed)
    for line in run.loss_lines():
        print(line)
    print(run.kernel)

    heading("1.4", "特征图和感受野", "Feature maps and receptive fields")
    for layers, name in (([2], "Y (one 2×2 layer)"), ([2, 2], "z (2×2 on Y)")):
        h, w = cb.receptive_field(layers)
        rows, cols = cb.receptive_field_region(layers, 0, 0)
        print(f"receptive field of {name} on the input: {h}×{w} = {h * w} elements, "
              f"rows {rows.start}..{rows.stop - 1}, columns {cols.start}..{cols.stop - 1}")


def section_2():
    from mxnet import nd
    from mxnet.gluon import nn

    heading("2", "填充与步幅", "Padding and stride")
    X = nd.random.uniform(shape=(8, 8))
    cases = {"2.1": [dict(kernel_size=3, padding=1), dict(kernel_size=(5, 3), padding=(2, 1))],
             "2.2": [dict(kernel_size=3, padding=1, strides=2),
                     dict(kernel_size=(3, 5), padding=(0, 1), strides=(3, 4))]}
    for number, chinese, english in (("2.1", "填充", "Padding"), ("2.2", "步幅", "Stride")):
        heading(number, chinese, english)
        for kwargs in cases[number]:
            conv2d = nn.Conv2D(1, **kwargs)
            settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
            print(f"{settings} on {X.shape}: {comp_conv2d(conv2d, X).shape}")


def section_3():
    from mxnet import nd
    import cnn_base as cb

    heading("3", "多输入通道和多输出通道", "Multiple input and multiple output channels")

    heading("3.1", "多输入通道", "Multiple input channels")
    X, K = cb.multi_in_example()
    print(cb.corr2d_multi_in(X, K))

    heading("3.2", "多输出通道", "Multiple output channels")
    K = nd.stack(K, K + 1, K + 2)
    print(f"K = stack(K, K + 1, K + 2), shape {K.shape}")
    print(cb.corr2d_multi_in_out(X, K))

    heading("3.3", "1×1 卷积层", "1×1 convolutional layer")
    X = nd.random.uniform(shape=(3, 3, 3))
    K = nd.random.uniform(shape=(2, 3, 1, 1))
    Y1 = cb.corr2d_multi_in_out_1x1(X, K)      # a matrix multiply
    Y2 = cb.corr2d_multi_in_out(X, K)
    diff = nd.abs(Y1 - Y2).max().asscalar()
    print(f"X {X.shape}, K {K.shape}: max |matmul - corr2d_multi_in_out| = {diff:.3g} "
          f"< 1e-6: {diff < 1e-6}")


def section_4():
    from mxnet import nd
    from mxnet.gluon import nn
    import cnn_base as cb

    heading("4", "池化层", "Pooling")

    heading("4.1", "最大池化层和平均池化层", "Maximum pooling and average pooling")
    X, _ = cb.corr2d_example()
    print(cb.pool2d(X, (2, 2)))
    print(cb.pool2d(X, (2, 2), "avg"))

    heading("4.2", "填充与步幅", "Padding and stride")
    X = nd.arange(16).reshape((1, 1, 4, 4))
    print(X)
    # the blog's three settings, each printed before the output it makes
    settings = [("nn.MaxPool2D(3)", dict(pool_size=3)),
                ("nn.MaxPool2D(3, padding=1, strides=2)", dict(pool_size=3, padding=1, strides=2)),
                ("nn.MaxPool2D((2, 3), padding=(1, 2), strides=(2, 3))",
                 dict(pool_size=(2, 3), padding=(1, 2), strides=(2, 3)))]
    pools = []
    for code, kwargs in settings:
        pools.append(nn.MaxPool2D(**kwargs))
        print(f"{code}: {_pool_settings(**kwargs)}")
        print(pools[-1](X))

    heading("4.3", "多通道", "Multiple channels")
    X = nd.concat(X, X + 1, dim=1)
    print(X)
    print(f"{settings[1][0]} on both channels: {_pool_settings(**settings[1][1])}")
    print(pools[1](X))


def _pool_settings(pool_size, padding=0, strides=None):
    """A MaxPool2D's settings in words, e.g. 'window 3×3, padding 1 row and 1 column on each
    side, stride 2 down and 2 across' (Gluon's ``padding`` is per side)."""
    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    (k_h, k_w), (p_h, p_w) = pair(pool_size), pair(padding)
    s_h, s_w = pair(pool_size if strides is None else strides)   # Gluon: strides=None is the window
    padded = (f"padding {p_h} row{'s' * (p_h != 1)} and {p_w} column{'s' * (p_w != 1)} on each side"
              if (p_h, p_w) != (0, 0) else "no padding")
    return f"window {k_h}×{k_w}, {padded}, stride {s_h} down and {s_w} across"


def section_5():
    import cnn_base as cb

    heading("5", "为什么是卷积神经网络", "Why convolutional neural networks")
    dense = cb.dense_layer_cost(3 * 1000 * 1000, 256)
    rows, cols = dense["weight_shape"]
    print(f"a 1000×1000 RGB photo into a 256-unit dense layer: weight {rows:,}×{cols}, "
          f"{dense['params']:,} parameters, {dense['bytes'] / 1e9:.2f} GB in float32")
    conv = cb.conv_layer_cost((3, 1000, 1000), 256, 3, padding=1)
    print(f"a 3×3 conv layer with 256 output channels on the same photo: {conv['params']:,} "
          f"parameters, {conv['bytes'] / 1e3:.1f} kB")


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_seed_option(parser, "mx.random.seed for the learning run and the random examples "
                            "after it; 0 gives the blog's numbers")
    return parser


def main(argv=None):
    """Parse ``argv``, then print every section; MXNet is imported only after parsing."""
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(errors="replace")    # Chinese headings on a non-UTF-8 terminal
    section_1(args.seed)
    section_2()
    section_3()
    section_4()
    section_5()
    return 0

