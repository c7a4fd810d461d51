"""Time our blocks against Gluon's built-ins in every hybridize mode, interleaved, medians.

Each case builds our block and the built-in with the same settings and the same
weights, runs both the same way -- imperatively (``'imperative'``),
``hybridize()`` (``'hybrid'``) or ``hybridize(static_alloc=True,
static_shape=True)`` (``'static'``, Gluon's fastest) -- warms them up, then times
them in turns (ours, built-in, ours, built-in, ...) so that a slow moment of the
machine hits both. One timing of a layer is ``number`` forward+backward passes
(gradients of the input, weight and bias from a fixed random output gradient,
as for a layer inside a network), bracketed by ``nd.waitall()``, or more passes
where ``number`` of them would take less than :data:`MIN_TIMING_SECONDS`; the
result is the median over ``repeats`` timings. The ``'lenet'`` case times a whole
training step of d2l's LeNet (sigmoid, max pools) at batch 256: forward,
softmax cross-entropy loss, backward and ``Trainer.step``, built once from our
blocks and once from ``gluon.nn``'s.

:func:`busy_processes` keeps ``n`` processor cores busy in the background, so
the same table can be measured on a loaded machine (``--busy N``).

``scripts/benchmark.py`` is the command-line wrapper.
"""
from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from . import blocks, nets
from ._checks import as_int, check_choice
from ._choices import BOOK_SETTINGS
from ._types import BlockChoice, ShapeLike
from .substitution import substitute

__all__ = ["MODES", "CONV_CASES", "POOL_CASES", "STEP_CASES", "NET_CASES", "default_cases",
           "net_cases", "build_net", "layers_of_net", "layer_cases_of_nets", "conv_flops",
           "matmul_gflops", "run_benchmark",
           "time_case", "time_fed_layer", "time_modes", "run_mode_comparison", "format_mode_table",
           "busy_processes", "geometric_mean", "summarize", "format_table"]

# How each mode hybridizes both blocks (None: not at all).
MODES = {"imperative": None, "hybrid": {},
         "static": {"static_alloc": True, "static_shape": True}}

# (input shape, constructor keywords): layers of LeNet-like and ResNet-like networks.
CONV_CASES = [
    ((8, 16, 64, 64), dict(channels=32, kernel_size=3, padding=1)),
    ((32, 1, 28, 28), dict(channels=6, kernel_size=5, padding=2)),
    ((32, 6, 14, 14), dict(channels=16, kernel_size=5)),
    ((8, 64, 32, 32), dict(channels=64, kernel_size=3, strides=2, padding=1)),
    # d2l's LeNet at its batch size 256: both conv layers, and the padded first layer
    ((256, 1, 28, 28), dict(channels=6, kernel_size=5)),
    ((256, 6, 12, 12), dict(channels=16, kernel_size=5)),
    ((256, 1, 28, 28), dict(channels=6, kernel_size=5, padding=2)),
    ((8, 64, 32, 32), dict(channels=64, kernel_size=1)),                        # 1x1
    ((8, 32, 56, 56), dict(channels=32, kernel_size=3, padding=1, groups=32)),  # depthwise
    # channels last: Gluon's NHWC Conv2D does not run on the CPU (oneDNN refuses it), so
    # the built-in is its NCHW Conv2D on the same batch transposed, the fastest a user has
    ((32, 28, 28, 1), dict(channels=6, kernel_size=5, padding=2, layout="NHWC")),
    ((8, 64, 64, 16), dict(channels=32, kernel_size=3, padding=1, layout="NHWC")),
    ((8, 56, 56, 32), dict(channels=32, kernel_size=3, padding=1, groups=32, layout="NHWC")),
    ((8, 32, 32, 128), dict(channels=128, kernel_size=3, padding=1, layout="NHWC")),
]
POOL_CASES = [
    ((32, 6, 28, 28), dict(pool_size=2, strides=2)),
    ((8, 32, 64, 64), dict(pool_size=3, strides=2, padding=1)),
    # d2l's LeNet at batch 256: after the first and the second conv layer
    ((256, 6, 24, 24), dict(pool_size=2, strides=2)),
    ((256, 16, 8, 8), dict(pool_size=2, strides=2)),
    # channels last (Gluon's NHWC pools run on the CPU; its NHWC conv does not)
    ((32, 28, 28, 6), dict(pool_size=2, strides=2, layout="NHWC")),
    ((8, 64, 64, 32), dict(pool_size=3, strides=2, padding=1, layout="NHWC")),
]
# The training step: (input shape, settings of the step).
# a case to time: (kind, input shape, the block's or the step's keywords)
Case = Tuple[str, ShapeLike, Dict[str, Any]]
# called as progress(done, total) after each case
ProgressFn = Optional[Callable[[int, int], Any]]

STEP_CASES = [((256, 1, 28, 28), dict(net="d2l LeNet", classes=10, lr=0.1))]
# The training steps of the networks people build (``--nets``): d2l-zh v1 chapter 5's at
# the book's input sides (batch 32; LeNet-BN at the book's 256) and two model zoo networks
# at ImageNet's 224 x 224 (batch 8). ``net`` names a key of nets.CHAPTER_NETS or
# ``zoo:<model zoo name>``.
NET_CASES = [((256 if name == "lenet_bn" else 32, 1, side, side),
              dict(net=name, classes=10, lr=lr))
             for name, (lr, _, side) in BOOK_SETTINGS.items() if name != "lenet"] + \
            [((8, 3, 224, 224), dict(net="zoo:resnet18_v1", classes=10, lr=0.1)),
             ((8, 3, 224, 224), dict(net="zoo:mobilenetv2_1.0", classes=10, lr=0.1))]

_PAIRS = {"conv": (blocks.Conv2D, nn.Conv2D), "maxpool": (blocks.MaxPool2D, nn.MaxPool2D),
          "avgpool": (blocks.AvgPool2D, nn.AvgPool2D),
          "globalavgpool": (blocks.GlobalAvgPool2D, nn.GlobalAvgPool2D),
          "globalmaxpool": (blocks.GlobalMaxPool2D, nn.GlobalMaxPool2D)}
KINDS = ("conv", "maxpool", "avgpool", "globalavgpool", "globalmaxpool", "lenet", "net")


def default_cases() -> List[Case]:
    """Every ``(kind, input_shape, kwargs)`` of the default table, in its order."""
    cases = [("conv", shape, kw) for shape, kw in CONV_CASES]
    for kind in ("maxpool", "avgpool"):
        cases += [(kind, shape, kw) for shape, kw in POOL_CASES]
    return cases + [("lenet", shape, kw) for shape, kw in STEP_CASES]


def net_cases() -> List[Case]:
    """Every ``('net', input_shape, kwargs)`` of ``--nets``: the training steps of NET_CASES."""
    return [("net", shape, kw) for shape, kw in NET_CASES]


def build_net(name: str, block: BlockChoice, classes: int = 10) -> gluon.Block:
    """The network ``name`` of NET_CASES with our blocks (``'custom'``) or gluon.nn's.

    A chapter-5 network is built with its ``block=`` switch; a model zoo one
    (``zoo:<name>``) from Gluon's code, inside :func:`~cnn_base.substitute` for ours.
    """
    check_choice("block", block, ("custom", "builtin"))
    if name.startswith("zoo:"):
        from mxnet.gluon.model_zoo import vision
        if block == "builtin":
            return vision.get_model(name[4:], classes=classes)
        with substitute():
            return vision.get_model(name[4:], classes=classes)
    check_choice("net", name, tuple(nets.CHAPTER_NETS))
    return nets.CHAPTER_NETS[name][0](block)


def _attr(value):
    """A node attribute of MXNet's graph JSON, e.g. '(3, 3)', '64', 'True', as Python."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _layer_case(op, attrs, input_shape):
    """One Convolution or Pooling node of a graph as a ``(kind, input_shape, kwargs)`` case."""
    pair = lambda key, default: tuple(_attr(attrs.get(key, default)))   # noqa: E731
    if op == "Convolution":
        return ("conv", input_shape, dict(
            channels=_attr(attrs["num_filter"]), kernel_size=pair("kernel", "(1, 1)"),
            strides=pair("stride", "(1, 1)"), padding=pair("pad", "(0, 0)"),
            dilation=pair("dilate", "(1, 1)"), groups=_attr(attrs.get("num_group", "1")),
            use_bias=not _attr(attrs.get("no_bias", "False"))))
    mode = attrs.get("pool_type", "max")
    if _attr(attrs.get("global_pool", "False")):
        return (f"global{mode}pool", input_shape, {})
    kwargs = dict(pool_size=pair("kernel", "(1, 1)"), strides=pair("stride", "(1, 1)"),
                  padding=pair("pad", "(0, 0)"),
                  ceil_mode=attrs.get("pooling_convention", "valid") == "full")
    if mode == "avg":
        kwargs["count_include_pad"] = _attr(attrs.get("count_include_pad", "True"))
    return (f"{mode}pool", input_shape, kwargs)


def layers_of_net(name: str, input_shape: ShapeLike) -> List[Case]:
    """The conv and pool layers of the built-in network ``name`` on ``input_shape``, as cases.

    Read from the network's symbolic graph (its JSON, a public format): each
    ``Convolution`` and ``Pooling`` node's attributes, and its input's shape
    from the graph's shape inference. One case per layer, in the graph's order.
    """
    out = build_net(name, "builtin")(mx.sym.var("data"))
    internals = out.get_internals()
    _, shapes, _ = internals.infer_shape(data=tuple(input_shape))
    shape_of = dict(zip(internals.list_outputs(), shapes))
    nodes = json.loads(out.tojson())["nodes"]
    cases = []
    for node in nodes:
        if node["op"] not in ("Convolution", "Pooling"):
            continue
        source, index = nodes[node["inputs"][0][0]], node["inputs"][0][1]
        names = [source["name"]] if source["op"] == "null" else \
            [f"{source['name']}_output", f"{source['name']}_output{index}"]
        shape = next(shape_of[n] for n in names if n in shape_of)
        cases.append(_layer_case(node["op"], node.get("attrs", {}), tuple(shape)))
    return cases


def layer_cases_of_nets(cases: Optional[Iterable[Case]] = None) -> List[Case]:
    """The distinct conv and pool layers of the networks of ``cases`` (default NET_CASES)."""
    seen = {}
    for _, input_shape, kwargs in (net_cases() if cases is None else cases):
        for case in layers_of_net(kwargs["net"], input_shape):
            seen.setdefault(repr(case), case)
    return list(seen.values())


def conv_flops(input_shape: ShapeLike, kwargs: Dict[str, Any]) -> int:
    """Floating-point operations of a conv layer's forward and backward (dX and dW): 3 x 2 x
    N x c_o x h' x w' x (c_i / groups) x k_h x k_w, the multiply-adds of the three products."""
    from .shapes import output_shape
    N, c_i = input_shape[0], input_shape[1]
    k = kwargs["kernel_size"]
    k = (k, k) if isinstance(k, int) else tuple(k)
    h, w = output_shape(input_shape[2:], k, kwargs.get("strides", 1), kwargs.get("padding", 0),
                        kwargs.get("dilation", 1))
    return 6 * N * kwargs["channels"] * h * w * (c_i // kwargs.get("groups", 1)) * k[0] * k[1]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-multiply rate through MXNet (n x n times n x n, GFLOP/s):
    the yardstick of a conv's GFLOP/s. ``FullyConnected`` is the GEMM oneDNN gives the
    built-ins and our matrix-multiply paths; the median of ``repeats`` products."""
    A, B = nd.random.uniform(shape=(n, n)), nd.random.uniform(shape=(n, n))
    nd.FullyConnected(A, B, num_hidden=n, no_bias=True).wait_to_read()
    times = []
    for _ in range(repeats):
        times.append(_time(lambda: nd.FullyConnected(A, B, num_hidden=n, no_bias=True), 1))
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _describe(kind, input_shape, kwargs):
    settings = " ".join(f"{k}={v}" for k, v in kwargs.items() if k != "net")
    if kind in ("lenet", "net"):
        return f"{kwargs.get('net', 'LeNet')} training step {input_shape} {settings}"
    return f"{kind} {input_shape} {settings}"


def _hybridize(block, mode):
    if MODES[mode] is not None:
        block.hybridize(**MODES[mode])


def _copy_parameters(source, target):
    """Give ``target`` the values of ``source``'s parameters (same structure, in order)."""
    for theirs, mine in zip(source.collect_params().values(), target.collect_params().values()):
        mine.set_data(theirs.data())


def _layer_pair(kind, input_shape, kwargs, mode, ctx, fed=False):
    """Our layer and the built-in with the same weights, a pass of each (input X, grad dY),
    and, when ``fed``, a pass of the ReLU that feeds them (else None).

    ``fed``: each layer reads ``relu(X)`` inside one block with it (so one graph when
    hybridized), an operator's output as inside a network (X is uniform in [0, 1): the
    values are X's); else X itself, an array with its gradient attached (a variable of the
    hybridized graph), which our blocks copy in front (``identity``, for ``grad_req='add'``)
    and the built-ins do not. An NHWC conv is timed against the built-in NCHW Conv2D on the
    same batch transposed (Gluon's NHWC Conv2D does not run on the CPU).
    """
    ours_cls, builtin_cls = _PAIRS[kind]
    to_nchw = kind == "conv" and kwargs.get("layout") == "NHWC"
    builtin_kwargs = {k: v for k, v in kwargs.items() if not (to_nchw and k == "layout")}
    ours, builtin = ours_cls(**kwargs), builtin_cls(**builtin_kwargs)
    ours.initialize(ctx=ctx)
    builtin.initialize(ctx=ctx)
    X = nd.random.uniform(shape=input_shape, ctx=ctx)
    Xb = X.transpose((0, 3, 1, 2)) if to_nchw else X
    ours(X), builtin(Xb)          # finish deferred initialization
    if to_nchw:
        builtin.weight.set_data(ours.weight.data().transpose((0, 3, 1, 2)))
        builtin.bias.set_data(ours.bias.data())
    else:
        _copy_parameters(ours, builtin)
    if fed:
        ours, builtin = _after_relu(ours), _after_relu(builtin)
    feed = _after_relu(None) if fed else None
    for block in (ours, builtin, feed):
        if block is not None:
            _hybridize(block, mode)
    X.attach_grad()
    Xb.attach_grad()
    dYb = nd.random.normal(shape=builtin(Xb).shape, ctx=ctx)   # the gradient from the layer above
    dY = dYb.transpose((0, 2, 3, 1)) if to_nchw else dYb

    def step(block, X, dY):
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
    return (lambda: step(ours, X, dY)), (lambda: step(builtin, Xb, dYb)), \
        (None if feed is None else lambda: step(feed, X, X))


def _after_relu(layer):
    """A block of a ReLU, then ``layer`` (when not None)."""
    block = nn.HybridSequential()
    block.add(nn.Activation("relu"))
    if layer is not None:
        block.add(layer)
    return block


def _step_pair(input_shape, kwargs, mode, ctx, kind="lenet"):
    """A training step of a network built from our blocks and from gluon.nn's, same weights:
    d2l's LeNet (``kind='lenet'``) or ``kwargs['net']`` of NET_CASES (``kind='net'``)."""
    if kind == "lenet":
        ours, builtin = (nets.lenet(block, hybrid=True) for block in ("custom", "builtin"))
    else:
        ours, builtin = (build_net(kwargs["net"], block, kwargs["classes"])
                         for block in ("custom", "builtin"))
    X = nd.random.uniform(shape=input_shape, ctx=ctx)
    y = nd.random.randint(0, kwargs["classes"], shape=(input_shape[0],), ctx=ctx)
    ours.initialize(mx.init.Xavier(), ctx=ctx)
    builtin.initialize(ctx=ctx)
    ours(X), builtin(X)           # finish deferred initialization
    _copy_parameters(ours, builtin)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def make_step(net):
        _hybridize(net, mode)
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": kwargs["lr"]})

        def step():
            with autograd.record():
                ell = loss(net(X), y)
            ell.backward()
            trainer.step(input_shape[0])
        return step
    return make_step(ours), make_step(builtin)


def _time(step, number):
    nd.waitall()
    start = time.perf_counter()
    for _ in range(number):
        step()
    nd.waitall()
    return (time.perf_counter() - start) / number


def time_case(kind: str, input_shape: ShapeLike, kwargs: Dict[str, Any], mode: str = "static",
              repeats: int = 20, number: int = 3, warmup: int = 3,
              ctx: Optional[mx.Context] = None) -> Tuple[float, float]:
    """Median seconds per pass (or training step) of ours and of the built-in, timed in turns."""
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, tuple(MODES))
    ctx = ctx or mx.cpu()
    if kind in ("lenet", "net"):
        steps = _step_pair(input_shape, kwargs, mode, ctx, kind)
    else:
        steps = _layer_pair(kind, input_shape, kwargs, mode, ctx)[:2]
    ours, builtin = _medians_in_turns(steps, repeats, number, warmup)
    return ours, builtin


def time_fed_layer(kind: str, input_shape: ShapeLike, kwargs: Dict[str, Any],
                   mode: str = "static", repeats: int = 20, number: int = 3, warmup: int = 3,
                   ctx: Optional[mx.Context] = None) -> Tuple[float, float, float]:
    """Median seconds of our layer after a ReLU, of the built-in after one, and of the ReLU
    alone (forward + backward each, timed in turns): the layer as inside a network, reading
    an operator's output (:func:`_layer_pair` with ``fed``)."""
    check_choice("kind", kind, tuple(_PAIRS))
    check_choice("mode", mode, tuple(MODES))
    steps = _layer_pair(kind, input_shape, kwargs, mode, ctx or mx.cpu(), fed=True)
    ours, builtin, relu = _medians_in_turns(steps, repeats, number, warmup)
    return ours, builtin, relu


# The shortest timing: a step of a fraction of a millisecond timed over one pass is mostly
# the timer's and MXNet's engine's wake-up. The layer table's 1x1 conv (32, 10, 5, 5) -> 10
# timed one pass at a time: 0.28 / 0.19 ms (ours / built-in) in one run, 0.18 / 0.09 in
# another; over 200 passes 0.13 / 0.07 in both.
MIN_TIMING_SECONDS = 0.005


def _passes_for(steps, number):
    """``number``, or as many passes (at most 1000) as make a timing of the fastest of ``steps``
    last :data:`MIN_TIMING_SECONDS` (measured by one timing of each)."""
    fastest = min(_time(step, number) for step in steps)
    if fastest * number >= MIN_TIMING_SECONDS:
        return number
    return min(1000, max(number, math.ceil(MIN_TIMING_SECONDS / max(fastest, 1e-7))))


def _medians_in_turns(steps, repeats, number, warmup):
    for _ in range(warmup):
        for step in steps:
            _time(step, number)
    number = _passes_for(steps, number)
    seconds = [[] for _ in steps]
    for _ in range(repeats):
        for step, times in zip(steps, seconds):
            times.append(_time(step, number))
    return [statistics.median(times) for times in seconds]


def _check_timing(repeats, number, warmup, progress):
    """The checked (repeats, number, warmup) of a run; ``progress`` must be callable or None."""
    checked = (as_int("repeats", repeats), as_int("number", number),
               as_int("warmup", warmup, minimum=0))
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")
    return checked


def time_modes(kind: str, input_shape: ShapeLike, kwargs: Dict[str, Any],
               modes: Sequence[str] = tuple(MODES), repeats: int = 20, number: int = 3,
               warmup: int = 3, ctx: Optional[mx.Context] = None) -> Dict[str, float]:
    """Median seconds per pass (or training step) of our block in each of ``modes``, in turns.

    One copy of our block per mode (same settings), timed round-robin
    (imperative, hybrid, static, imperative, ...), so that what hybridizing
    changes is measured in one stretch of the machine's time and not across
    the separate rows of :func:`run_benchmark`. Returns ``{mode: seconds}``.
    """
    check_choice("kind", kind, KINDS)
    for mode in modes:
        check_choice("mode", mode, tuple(MODES))
    ctx = ctx or mx.cpu()
    pair = (lambda shape, kw, mode, ctx: _step_pair(shape, kw, mode, ctx, kind)) \
        if kind in ("lenet", "net") else \
        (lambda shape, kw, mode, ctx: _layer_pair(kind, shape, kw, mode, ctx))
    steps = {mode: pair(input_shape, kwargs, mode, ctx)[0] for mode in modes}
    for _ in range(warmup):
        for step in steps.values():
            _time(step, number)
    seconds = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, step in steps.items():
            seconds[mode].append(_time(step, number))
    return {mode: statistics.median(values) for mode, values in seconds.items()}


def run_mode_comparison(cases: Optional[Sequence[Case]] = None, repeats: int = 20,
                        number: int = 3, warmup: int = 3, ctx: Optional[mx.Context] = None,
                        progress: ProgressFn = None) -> List[Dict[str, Any]]:
    """Our blocks against themselves: each case in every mode, by :func:`time_modes`.

    Returns one dict per case: ``kind``, ``layer``, ``input_shape``,
    ``settings``, ``ms`` ({mode: milliseconds}) and ``vs_imperative``
    ({mode: its time / the imperative time}; below 1 means hybridizing helps).
    ``progress`` as in :func:`run_benchmark`.
    """
    repeats, number, warmup = _check_timing(repeats, number, warmup, progress)
    cases = default_cases() if cases is None else list(cases)
    results = []
    for kind, input_shape, kwargs in cases:
        seconds = time_modes(kind, input_shape, kwargs, tuple(MODES), repeats, number, warmup,
                             ctx)
        results.append({"kind": kind, "layer": _describe(kind, tuple(input_shape), kwargs),
                        "input_shape": list(input_shape), "settings": dict(kwargs),
                        "ms": {mode: t * 1e3 for mode, t in seconds.items()},
                        "vs_imperative": {mode: t / seconds["imperative"]
                                          for mode, t in seconds.items()}})
        if progress is not None:
            progress(len(results), len(cases))
    return results


def format_mode_table(results: Iterable[Dict[str, Any]]) -> str:
    """:func:`run_mode_comparison`'s results as a plain-text table, one row per case."""
    width = max(len(r["layer"]) for r in results)
    lines = [f"{'layer (ours only)':<{width}}  {'imperative ms':>13}  {'hybrid ms':>9}  "
             f"{'static ms':>9}  {'hybrid/imp':>10}  {'static/imp':>10}"]
    lines += [f"{r['layer']:<{width}}  {r['ms']['imperative']:13.3f}  {r['ms']['hybrid']:9.3f}  "
              f"{r['ms']['static']:9.3f}  {r['vs_imperative']['hybrid']:10.2f}  "
              f"{r['vs_imperative']['static']:10.2f}" for r in results]
    return "\n".join(lines)


def run_benchmark(cases: Optional[Sequence[Case]] = None, repeats: int = 20, number: int = 3,
                  warmup: int = 3, ctx: Optional[mx.Context] = None,
                  modes: Sequence[str] = ("static",),
                  progress: ProgressFn = None, fed: bool = False) -> List[Dict[str, Any]]:
    """Time every case in every mode; returns one dict per (case, mode).

    ``cases`` is a list of ``(kind, input_shape, kwargs)`` with kind ``'conv'``,
    ``'maxpool'``, ``'avgpool'`` (a layer's forward+backward) or ``'lenet'``
    (a training step; kwargs ``classes`` and ``lr``); by default
    :func:`default_cases`. ``modes`` holds names of :data:`MODES`. Each dict
    holds ``kind``, ``mode``, ``layer`` (a description), ``input_shape``,
    ``settings``, ``ours_ms``, ``builtin_ms`` and ``ratio`` (ours / built-in).
    Rows come case by case, each case in the order of ``modes``. ``progress``,
    when given, is called as ``progress(i, n)`` after row ``i`` (1-based) of ``n``.
    ``fed``: each layer is timed as inside a network, after a ReLU (:func:`time_fed_layer`),
    and the ReLU's median taken off both when it is less than either (``"fed": "relu taken
    off"``), else left in (``"relu included"``: a layer too small to tell from the noise);
    ``relu_ms`` says how long it took.
    """
    repeats, number, warmup = _check_timing(repeats, number, warmup, progress)
    modes = tuple(modes)
    if not modes:
        raise ValueError(f"modes must name at least one of {tuple(MODES)}, got {modes!r}")
    for mode in modes:
        check_choice("mode", mode, tuple(MODES))
    cases = default_cases() if cases is None else list(cases)
    results = []
    for kind, input_shape, kwargs in cases:
        for mode in modes:
            row = {"kind": kind, "mode": mode,
                   "layer": _describe(kind, tuple(input_shape), kwargs),
                   "input_shape": list(input_shape), "settings": dict(kwargs)}
            if fed and kind in _PAIRS:
                ours, builtin, relu = time_fed_layer(kind, input_shape, kwargs, mode, repeats,
                                                     number, warmup, ctx)
                taken_off = min(ours, builtin) > relu
                row.update(fed="relu taken off" if taken_off else "relu included",
                           relu_ms=relu * 1e3)
                if taken_off:
                    ours, builtin = ours - relu, builtin - relu
            else:
                ours, builtin = time_case(kind, input_shape, kwargs, mode, repeats, number,
                                          warmup, ctx)
            row.update(ours_ms=ours * 1e3, builtin_ms=builtin * 1e3, ratio=ours / builtin)
            if kind == "conv" and kwargs.get("layout", "NCHW") == "NCHW":
                flops = conv_flops(input_shape, kwargs)
                row.update(ours_gflops=flops / ours / 1e9, builtin_gflops=flops / builtin / 1e9)
            results.append(row)
            if progress is not None:
                progress(len(results), len(cases) * len(modes))
    return results


_BUSY_LOOP = """
import os, sys, time
parent, end = os.getppid(), time.monotonic() + float(sys.argv[1])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100000):
        pass
"""


@contextlib.contextmanager
def busy_processes(n: int, seconds: float = 3600.0) -> Iterator[List[subprocess.Popen]]:
    """Keep ``n`` processor cores busy in the background while the ``with`` body runs.

    Each of the ``n`` processes spins in a Python loop. They stop by themselves
    after ``seconds`` or when this process is gone (they watch their parent), and
    they are killed and reaped when the body ends, however it ends (an
    exception, Ctrl-C). Yields the list of ``subprocess.Popen`` objects.
    """
    n = as_int("n", n, minimum=0)
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive finite number, got {seconds!r}")
    processes = []
    try:
        for _ in range(n):
            processes.append(subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(seconds)],
                                              stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait()


def geometric_mean(values: Iterable[float]) -> float:
    """exp(mean(log(values))), the average of ratios.

    >>> round(geometric_mean([1.0, 4.0]), 6)
    2.0
    """
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError(f"geometric_mean needs positive values, got {values!r}")
    return math.exp(sum(map(math.log, values)) / len(values))


_GROUPS = (("conv", ("conv",)),
           ("pool", ("maxpool", "avgpool", "globalavgpool", "globalmaxpool")),
           ("lenet", ("lenet",)), ("net", ("net",)))


def summarize(results: Iterable[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Geometric-mean ratio (ours / built-in) of conv, pooling and training-step rows, per mode.

    Returns ``{mode: {'conv': ..., 'pool': ..., 'lenet': ...}}`` with the
    groups that have rows (rows without a ``mode`` count as ``'static'``);
    channel-last rows (settings ``layout='NHWC'``) make groups of their own,
    e.g. ``'pool NHWC'``.

    >>> summarize([{"kind": "conv", "ratio": 2.0, "mode": "hybrid"},
    ...            {"kind": "conv", "ratio": 8.0, "mode": "hybrid"}])
    {'hybrid': {'conv': 4.0}}
    """
    def group_of(row):
        group = next(name for name, kinds in _GROUPS if row["kind"] in kinds)
        return group + (" NHWC" if row.get("settings", {}).get("layout") == "NHWC" else "")

    summary = {}
    for mode in dict.fromkeys(r.get("mode", "static") for r in results):
        rows = [r for r in results if r.get("mode", "static") == mode]
        for group in dict.fromkeys(map(group_of, rows)):
            summary.setdefault(mode, {})[group] = geometric_mean(
                [r["ratio"] for r in rows if group_of(r) == group])
    return summary


def format_table(results: Iterable[Dict[str, Any]]) -> str:
    """The results as a plain-text table, one row per case and mode, then the geometric means."""
    width = max(len(r["layer"]) for r in results)
    lines = [f"{'layer':<{width}}  {'mode':<10}  {'ours ms':>8}  {'gluon ms':>8}  {'ratio':>6}"]
    lines += [f"{r['layer']:<{width}}  {r.get('mode', 'static'):<10}  {r['ours_ms']:8.3f}  "
              f"{r['builtin_ms']:8.3f}  {r['ratio']:6.2f}" + (
                  f"  GFLOP/s {r['ours_gflops']:.0f} vs {r['builtin_gflops']:.0f}"
                  if "ours_gflops" in r else "") for r in results]
    lines += [f"geometric mean ratio, {group}, {mode}: {value:.2f}"
              for mode, groups in summarize(results).items() for group, value in groups.items()]
    return "\n".join(lines)
