"""Shape and cost arithmetic of conv and pooling layers (blog sections 1.4, 2 and 5).

**Padding: the blog and Gluon count differently.** The blog's ``p_h`` is the
*total* number of rows added (top plus bottom), so its output height is
``floor((n_h - k_h + p_h + s_h) / s_h)``. Gluon's ``padding=1`` pads *each side*
by one, a total of 2. :func:`output_size` takes the blog's total ``p``;
:func:`output_shape` takes Gluon's per-side ``padding``. Both handle dilation
(the kernel then spans ``d * (k - 1) + 1`` inputs) and pooling's ``ceil_mode``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, NamedTuple, Tuple, Union

from ._checks import as_int, as_pair
from ._types import Shape, ShapeLike, Size2

__all__ = ["output_size", "output_shape", "Layer", "receptive_field",
           "receptive_field_region", "dense_layer_cost", "conv_layer_cost"]


def output_size(n: int, k: int, p: int = 0, s: int = 1, d: int = 1,
                ceil_mode: bool = False) -> int:
    """Output length along one axis: ``floor((n - k + p + s) / s)``, ``p`` the blog's *total* padding.

    D2L §5.2.

    >>> output_size(8, 3, p=2)            # Gluon's kernel 3, padding 1 on an 8x8 input
    8
    >>> output_size(8, 3, p=2, s=2)
    4
    >>> output_size(8, 5, p=2, s=4)       # the width of kernel (3, 5), padding (0, 1), stride (3, 4)
    2
    """
    n, k, s, d = (as_int(name, v) for name, v in (("n", n), ("k", k), ("s", s), ("d", d)))
    p = as_int("p", p, minimum=0)
    k_eff = d * (k - 1) + 1
    if k_eff > n + p:
        raise ValueError(f"the (dilated) kernel size {k_eff} must not exceed the padded "
                         f"input size n + p = {n} + {p} = {n + p}")
    rounding = math.ceil if ceil_mode else math.floor
    return rounding((n - k_eff + p) / s) + 1


def output_shape(input_shape: Size2, kernel_size: Size2, strides: Size2 = 1,
                 padding: Size2 = 0, dilation: Size2 = 1,
                 ceil_mode: bool = False) -> Tuple[int, int]:
    """Output (h, w) of a Gluon Conv2D/Pool2D layer; ``padding`` is per side, as in Gluon.

    D2L §5.2.

    >>> output_shape((8, 8), 3, padding=1)
    (8, 8)
    >>> output_shape((8, 8), (3, 5), strides=(3, 4), padding=(0, 1))
    (2, 2)
    """
    n = as_pair("input_shape", input_shape)
    k = as_pair("kernel_size", kernel_size)
    s = as_pair("strides", strides)
    p = as_pair("padding", padding, minimum=0)
    d = as_pair("dilation", dilation)
    return tuple(output_size(n[i], k[i], 2 * p[i], s[i], d[i], ceil_mode) for i in range(2))


class Layer(NamedTuple):
    """One conv or pooling layer for receptive-field arithmetic (Gluon's keywords; D2L §5.1)."""

    kernel_size: Size2
    strides: Size2 = 1
    padding: Size2 = 0
    dilation: Size2 = 1


# a layer as receptive_field takes it: a Layer, a dict of its keywords, or a kernel size
LayerLike = Union[Layer, Mapping[str, Size2], Size2]


def _as_layer(layer):
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, dict):
        return Layer(**layer)
    return Layer(layer)


def receptive_field(layers: Iterable[LayerLike]) -> Tuple[int, int]:
    """Height and width of the input region one output element sees through ``layers``.

    D2L §5.1.

    ``layers`` lists :class:`Layer`\\ s (or kernel sizes, or dicts of Layer's fields),
    first layer first. The blog's example (section 1.4): two stacked 2x2 layers
    give a 3x3 field, 9 input elements.

    >>> receptive_field([2, 2])
    (3, 3)
    >>> receptive_field([Layer(3, strides=2), Layer(3)])
    (7, 7)
    """
    size, jump = [1, 1], [1, 1]
    for layer in map(_as_layer, layers):
        k = as_pair("kernel_size", layer.kernel_size)
        s = as_pair("strides", layer.strides)
        d = as_pair("dilation", layer.dilation)
        for a in range(2):
            size[a] += d[a] * (k[a] - 1) * jump[a]
            jump[a] *= s[a]
    return tuple(size)


def receptive_field_region(layers: Iterable[LayerLike], i: int,
                           j: int) -> Tuple[range, range]:
    """Input rows and columns (as ``range``\\ s) that output element ``(i, j)`` sees.

    D2L §5.1.

    Padding moves the region up and left; it may start below 0 or end past the
    input, the "possible input region" of the blog's definition.

    >>> receptive_field_region([2, 2], 0, 0)
    (range(0, 3), range(0, 3))
    >>> receptive_field_region([Layer(3, padding=1)], 0, 0)
    (range(-1, 2), range(-1, 2))
    """
    start, jump = [as_int("i", i, minimum=0), as_int("j", j, minimum=0)], [1, 1]
    layers = [_as_layer(layer) for layer in layers]
    size = receptive_field(layers)
    # walk from the last layer back to the input: index -> index * stride - padding
    for layer in reversed(layers):
        s = as_pair("strides", layer.strides)
        p = as_pair("padding", layer.padding, minimum=0)
        for a in range(2):
            start[a] = start[a] * s[a] - p[a]
    return tuple(range(start[a], start[a] + size[a]) for a in range(2))


def dense_layer_cost(in_features: int, units: int, use_bias: bool = False,
                     bytes_per_param: int = 4) -> Dict[str, Union[int, Shape]]:
    """Parameters and bytes of a dense layer.

    D2L §5.3, exercises.

    The blog's section 5: a 1000x1000 RGB photo flattened into 256 dense units is
    a 3,000,000 x 256 weight, about 3.07 GB in float32.

    >>> cost = dense_layer_cost(3 * 1000 * 1000, 256)
    >>> cost["params"], round(cost["bytes"] / 1e9, 2)
    (768000000, 3.07)
    """
    in_features = as_int("in_features", in_features)
    units = as_int("units", units)
    params = in_features * units + (units if use_bias else 0)
    return {"params": params, "bytes": params * bytes_per_param,
            "weight_shape": (in_features, units)}


def conv_layer_cost(input_shape: ShapeLike, c_o: int, kernel_size: Size2, strides: Size2 = 1,
                    padding: Size2 = 0, use_bias: bool = False,
                    bytes_per_param: int = 4) -> Dict[str, Union[int, Shape]]:
    """Parameters, bytes and multiply-adds of a conv layer on ``input_shape`` (c_i, h, w).

    D2L §5.3, exercises.

    ``padding`` is per side, as in Gluon. Multiply-adds are
    ``c_o * h_out * w_out * c_i * k_h * k_w`` (the chapter's exercise: doubling both
    channel counts quadruples it; doubling the padding grows only h_out and w_out).

    >>> cost = conv_layer_cost((3, 1000, 1000), 256, 3, padding=1)
    >>> cost["params"], cost["output_shape"], cost["madds"]
    (6912, (256, 1000, 1000), 6912000000)
    """
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (c_i, h, w), got {input_shape!r}")
    c_i = as_int("c_i", input_shape[0])
    c_o = as_int("c_o", c_o)
    k_h, k_w = as_pair("kernel_size", kernel_size)
    h_out, w_out = output_shape(input_shape[1:], (k_h, k_w), strides, padding)
    params = c_o * c_i * k_h * k_w + (c_o if use_bias else 0)
    return {"params": params, "bytes": params * bytes_per_param,
            "output_shape": (c_o, h_out, w_out),
            "madds": c_o * h_out * w_out * c_i * k_h * k_w}
