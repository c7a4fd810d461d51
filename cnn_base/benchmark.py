"""Time our blocks against Gluon's built-ins: forward + backward, both hybridized, interleaved.

Each case builds our block and the built-in with the same settings and the same
weights, hybridizes both the same way (``static_alloc=True, static_shape=True``,
Gluon's fastest), warms them up, then times them in turns (ours, built-in, ours,
built-in, ...) so that a slow moment of the machine hits both. One timing is
``number`` forward+backward passes (gradients of the input, weight and bias
from a fixed random output gradient, as for a layer inside a network),
bracketed by ``nd.waitall()``; the result is the median over ``repeats`` timings.

``scripts/benchmark.py`` is the command-line wrapper.
"""
import math
import statistics
import time

import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import nn

from . import blocks
from ._checks import as_int

__all__ = ["CONV_CASES", "POOL_CASES", "run_benchmark", "time_case", "geometric_mean",
           "summarize", "format_table"]

# (input shape, constructor keywords): layers of LeNet-like and ResNet-like networks.
CONV_CASES = [
    ((8, 16, 64, 64), dict(channels=32, kernel_size=3, padding=1)),
    ((32, 1, 28, 28), dict(channels=6, kernel_size=5, padding=2)),
    ((32, 6, 14, 14), dict(channels=16, kernel_size=5)),
    ((8, 64, 32, 32), dict(channels=64, kernel_size=3, strides=2, padding=1)),
]
POOL_CASES = [
    ((32, 6, 28, 28), dict(pool_size=2, strides=2)),
    ((8, 32, 64, 64), dict(pool_size=3, strides=2, padding=1)),
]

_PAIRS = {"conv": (blocks.Conv2D, nn.Conv2D), "maxpool": (blocks.MaxPool2D, nn.MaxPool2D),
          "avgpool": (blocks.AvgPool2D, nn.AvgPool2D)}


def _all_cases():
    cases = [("conv", shape, kw) for shape, kw in CONV_CASES]
    for kind in ("maxpool", "avgpool"):
        cases += [(kind, shape, kw) for shape, kw in POOL_CASES]
    return cases


def _describe(kind, input_shape, kwargs):
    settings = " ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{kind} {input_shape} {settings}"


def _make_pair(kind, input_shape, kwargs, ctx):
    ours_cls, builtin_cls = _PAIRS[kind]
    ours, builtin = ours_cls(**kwargs), builtin_cls(**kwargs)
    ours.initialize(ctx=ctx)
    builtin.initialize(ctx=ctx)
    X = nd.random.uniform(shape=input_shape, ctx=ctx)
    ours(X), builtin(X)           # finish deferred initialization
    for name, param in builtin.collect_params().items():
        param.set_data(ours.collect_params()[name.replace(builtin.prefix, ours.prefix)].data())
    ours.hybridize(static_alloc=True, static_shape=True)
    builtin.hybridize(static_alloc=True, static_shape=True)
    return ours, builtin, X


def _time(block, X, dY, number):
    nd.waitall()
    start = time.perf_counter()
    for _ in range(number):
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
    nd.waitall()
    return (time.perf_counter() - start) / number


def time_case(kind, input_shape, kwargs, repeats=20, number=3, warmup=3, ctx=None):
    """Median seconds per forward+backward of ours and of the built-in, timed in turns."""
    ctx = ctx or mx.cpu()
    ours, builtin, X = _make_pair(kind, input_shape, kwargs, ctx)
    X.attach_grad()
    dY = nd.random.normal(shape=builtin(X).shape, ctx=ctx)   # the gradient from the layer above
    for _ in range(warmup):
        _time(ours, X, dY, number), _time(builtin, X, dY, number)
    ours_s, builtin_s = [], []
    for _ in range(repeats):
        ours_s.append(_time(ours, X, dY, number))
        builtin_s.append(_time(builtin, X, dY, number))
    return statistics.median(ours_s), statistics.median(builtin_s)


def run_benchmark(cases=None, repeats=20, number=3, warmup=3, ctx=None, progress=None):
    """Time every case; returns one dict per case.

    ``cases`` is a list of ``(kind, input_shape, kwargs)`` with kind ``'conv'``,
    ``'maxpool'`` or ``'avgpool'``; by default :data:`CONV_CASES` and
    :data:`POOL_CASES` (both pooling kinds). Each dict holds ``kind``,
    ``layer`` (a description), ``input_shape``, ``settings``, ``ours_ms``,
    ``builtin_ms`` and ``ratio`` (ours / built-in). ``progress``, when given, is
    called as ``progress(i, n)`` after case ``i`` (1-based) of ``n``.
    """
    repeats, number = as_int("repeats", repeats), as_int("number", number)
    warmup = as_int("warmup", warmup, minimum=0)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")
    cases = _all_cases() if cases is None else list(cases)
    results = []
    for kind, input_shape, kwargs in cases:
        ours, builtin = time_case(kind, input_shape, kwargs, repeats, number, warmup, ctx)
        results.append({"kind": kind, "layer": _describe(kind, tuple(input_shape), kwargs),
                        "input_shape": list(input_shape), "settings": dict(kwargs),
                        "ours_ms": ours * 1e3, "builtin_ms": builtin * 1e3,
                        "ratio": ours / builtin})
        if progress is not None:
            progress(len(results), len(cases))
    return results


def geometric_mean(values):
    """exp(mean(log(values))), the average of ratios.

    >>> round(geometric_mean([1.0, 4.0]), 6)
    2.0
    """
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError(f"geometric_mean needs positive values, got {values!r}")
    return math.exp(sum(map(math.log, values)) / len(values))


def summarize(results):
    """Geometric-mean ratio (ours / built-in) for conv and for pooling rows."""
    summary = {}
    for group, kinds in (("conv", ("conv",)), ("pool", ("maxpool", "avgpool"))):
        ratios = [r["ratio"] for r in results if r["kind"] in kinds]
        if ratios:
            summary[group] = geometric_mean(ratios)
    return summary


def format_table(results):
    """The results as a plain-text table, one row per case, then the geometric means."""
    width = max(len(r["layer"]) for r in results)
    lines = [f"{'layer':<{width}}  {'ours ms':>8}  {'gluon ms':>8}  {'ratio':>6}"]
    lines += [f"{r['layer']:<{width}}  {r['ours_ms']:8.3f}  {r['builtin_ms']:8.3f}  "
              f"{r['ratio']:6.2f}" for r in results]
    lines += [f"geometric mean ratio, {group}: {value:.2f}"
              for group, value in summarize(results).items()]
    return "\n".join(lines)
