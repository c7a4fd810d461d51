"""Time our blocks against Gluon's built-ins in every hybridize mode, interleaved, medians.

Each case builds our block and the built-in with the same settings and the same
weights, runs both the same way -- imperatively (``'imperative'``),
``hybridize()`` (``'hybrid'``) or ``hybridize(static_alloc=True,
static_shape=True)`` (``'static'``, Gluon's fastest) -- warms them up, then times
them in turns (ours, built-in, ours, built-in, ...) so that a slow moment of the
machine hits both. One timing of a layer is ``number`` forward+backward passes
(gradients of the input, weight and bias from a fixed random output gradient,
as for a layer inside a network), bracketed by ``nd.waitall()``; the result is
the median over ``repeats`` timings. The ``'lenet'`` case times a whole
training step of d2l's LeNet (sigmoid, max pools) at batch 256: forward,
softmax cross-entropy loss, backward and ``Trainer.step``, built once from our
blocks and once from ``gluon.nn``'s.

:func:`busy_processes` keeps ``n`` processor cores busy in the background, so
the same table can be measured on a loaded machine (``--busy N``).

``scripts/benchmark.py`` is the command-line wrapper.
"""
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from . import blocks, nets
from ._checks import as_int, check_choice

__all__ = ["MODES", "CONV_CASES", "POOL_CASES", "STEP_CASES", "default_cases", "run_benchmark",
           "time_case", "time_modes", "run_mode_comparison", "format_mode_table",
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
STEP_CASES = [((256, 1, 28, 28), dict(net="d2l LeNet", classes=10, lr=0.1))]

_PAIRS = {"conv": (blocks.Conv2D, nn.Conv2D), "maxpool": (blocks.MaxPool2D, nn.MaxPool2D),
          "avgpool": (blocks.AvgPool2D, nn.AvgPool2D)}
KINDS = ("conv", "maxpool", "avgpool", "lenet")


def default_cases():
    """Every ``(kind, input_shape, kwargs)`` of the default table, in its order."""
    cases = [("conv", shape, kw) for shape, kw in CONV_CASES]
    for kind in ("maxpool", "avgpool"):
        cases += [(kind, shape, kw) for shape, kw in POOL_CASES]
    return cases + [("lenet", shape, kw) for shape, kw in STEP_CASES]


def _describe(kind, input_shape, kwargs):
    settings = " ".join(f"{k}={v}" for k, v in kwargs.items() if k != "net")
    if kind == "lenet":
        return f"{kwargs.get('net', 'LeNet')} training step {input_shape} {settings}"
    return f"{kind} {input_shape} {settings}"


def _hybridize(block, mode):
    if MODES[mode] is not None:
        block.hybridize(**MODES[mode])


def _copy_parameters(source, target):
    """Give ``target`` the values of ``source``'s parameters (same structure, in order)."""
    for theirs, mine in zip(source.collect_params().values(), target.collect_params().values()):
        mine.set_data(theirs.data())


def _layer_pair(kind, input_shape, kwargs, mode, ctx):
    """Our layer and the built-in with the same weights, and a pass of each (input X, grad dY).

    An NHWC conv is timed against the built-in NCHW Conv2D on the same batch
    transposed (Gluon's NHWC Conv2D does not run on the CPU).
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
    _hybridize(ours, mode)
    _hybridize(builtin, mode)
    X.attach_grad()
    Xb.attach_grad()
    dYb = nd.random.normal(shape=builtin(Xb).shape, ctx=ctx)   # the gradient from the layer above
    dY = dYb.transpose((0, 2, 3, 1)) if to_nchw else dYb

    def step(block, X, dY):
        with autograd.record():
            Y = block(X)
        Y.backward(dY)
    return (lambda: step(ours, X, dY)), (lambda: step(builtin, Xb, dYb))


def _step_pair(input_shape, kwargs, mode, ctx):
    """A training step of d2l's LeNet built from our blocks and from gluon.nn's, same weights."""
    ours, builtin = (nets.lenet(block, hybrid=True) for block in ("custom", "builtin"))
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


def time_case(kind, input_shape, kwargs, mode="static", repeats=20, number=3, warmup=3,
              ctx=None):
    """Median seconds per pass (or training step) of ours and of the built-in, timed in turns."""
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, tuple(MODES))
    ctx = ctx or mx.cpu()
    if kind == "lenet":
        ours, builtin = _step_pair(input_shape, kwargs, mode, ctx)
    else:
        ours, builtin = _layer_pair(kind, input_shape, kwargs, mode, ctx)
    for _ in range(warmup):
        _time(ours, number), _time(builtin, number)
    ours_s, builtin_s = [], []
    for _ in range(repeats):
        ours_s.append(_time(ours, number))
        builtin_s.append(_time(builtin, number))
    return statistics.median(ours_s), statistics.median(builtin_s)


def _check_timing(repeats, number, warmup, progress):
    """The checked (repeats, number, warmup) of a run; ``progress`` must be callable or None."""
    checked = (as_int("repeats", repeats), as_int("number", number),
               as_int("warmup", warmup, minimum=0))
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")
    return checked


def time_modes(kind, input_shape, kwargs, modes=tuple(MODES), repeats=20, number=3, warmup=3,
               ctx=None):
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
    pair = _step_pair if kind == "lenet" else (
        lambda shape, kw, mode, ctx: _layer_pair(kind, shape, kw, mode, ctx))
    steps = {mode: pair(input_shape, kwargs, mode, ctx)[0] for mode in modes}
    for _ in range(warmup):
        for step in steps.values():
            _time(step, number)
    seconds = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, step in steps.items():
            seconds[mode].append(_time(step, number))
    return {mode: statistics.median(values) for mode, values in seconds.items()}


def run_mode_comparison(cases=None, repeats=20, number=3, warmup=3, ctx=None, progress=None):
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


def format_mode_table(results):
    """:func:`run_mode_comparison`'s results as a plain-text table, one row per case."""
    width = max(len(r["layer"]) for r in results)
    lines = [f"{'layer (ours only)':<{width}}  {'imperative ms':>13}  {'hybrid ms':>9}  "
             f"{'static ms':>9}  {'hybrid/imp':>10}  {'static/imp':>10}"]
    lines += [f"{r['layer']:<{width}}  {r['ms']['imperative']:13.3f}  {r['ms']['hybrid']:9.3f}  "
              f"{r['ms']['static']:9.3f}  {r['vs_imperative']['hybrid']:10.2f}  "
              f"{r['vs_imperative']['static']:10.2f}" for r in results]
    return "\n".join(lines)


def run_benchmark(cases=None, repeats=20, number=3, warmup=3, ctx=None, modes=("static",),
                  progress=None):
    """Time every case in every mode; returns one dict per (case, mode).

    ``cases`` is a list of ``(kind, input_shape, kwargs)`` with kind ``'conv'``,
    ``'maxpool'``, ``'avgpool'`` (a layer's forward+backward) or ``'lenet'``
    (a training step; kwargs ``classes`` and ``lr``); by default
    :func:`default_cases`. ``modes`` holds names of :data:`MODES`. Each dict
    holds ``kind``, ``mode``, ``layer`` (a description), ``input_shape``,
    ``settings``, ``ours_ms``, ``builtin_ms`` and ``ratio`` (ours / built-in).
    Rows come case by case, each case in the order of ``modes``. ``progress``,
    when given, is called as ``progress(i, n)`` after row ``i`` (1-based) of ``n``.
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
            ours, builtin = time_case(kind, input_shape, kwargs, mode, repeats, number, warmup,
                                      ctx)
            results.append({"kind": kind, "mode": mode,
                            "layer": _describe(kind, tuple(input_shape), kwargs),
                            "input_shape": list(input_shape), "settings": dict(kwargs),
                            "ours_ms": ours * 1e3, "builtin_ms": builtin * 1e3,
                            "ratio": ours / builtin})
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
def busy_processes(n, seconds=3600.0):
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


def geometric_mean(values):
    """exp(mean(log(values))), the average of ratios.

    >>> round(geometric_mean([1.0, 4.0]), 6)
    2.0
    """
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError(f"geometric_mean needs positive values, got {values!r}")
    return math.exp(sum(map(math.log, values)) / len(values))


_GROUPS = (("conv", ("conv",)), ("pool", ("maxpool", "avgpool")), ("lenet", ("lenet",)))


def summarize(results):
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


def format_table(results):
    """The results as a plain-text table, one row per case and mode, then the geometric means."""
    width = max(len(r["layer"]) for r in results)
    lines = [f"{'layer':<{width}}  {'mode':<10}  {'ours ms':>8}  {'gluon ms':>8}  {'ratio':>6}"]
    lines += [f"{r['layer']:<{width}}  {r.get('mode', 'static'):<10}  {r['ours_ms']:8.3f}  "
              f"{r['builtin_ms']:8.3f}  {r['ratio']:6.2f}" for r in results]
    lines += [f"geometric mean ratio, {group}, {mode}: {value:.2f}"
              for mode, groups in summarize(results).items() for group, value in groups.items()]
    return "\n".join(lines)
