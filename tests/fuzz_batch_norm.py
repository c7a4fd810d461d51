"""Differential fuzzing of cnn_base.BatchNorm's kernel: against NumPy in float64 and Gluon's BatchNorm.

Every case is drawn from a seed: a shape of 2 to 5 axes (sides 1 to 9, so batches
of one and planes of one cell come up), the channel axis (negative too), float32 or
float64, training, prediction or ``use_global_stats``, ``scale``/``center`` off,
momentum and epsilon, imperative, hybridized or static, and sometimes NaN and
infinities in the input. Each case is one forward and backward of ``cb.BatchNorm``,
checked against ``reference.batch_norm_np`` (output, dX, dgamma, dbeta and the running
statistics after the step; NaN where NaN) and, in training and float32 where the input
is finite, against Gluon's BatchNorm: output and gradients (its prediction-mode dX is wrong,
test_batch_norm.py; its running variance, rebuilt from 1 / sqrt(var + eps) in float32, is
off by eps * 1e-7 / var: 7e-3 of a variance of 1e-6 with eps 0.1). One case in four (drawn
from the case's own seed, so the others stay the same) also runs the batch norm with the ReLU
after it fused into its operator (``cb.HybridSequential``) against the same with MXNet's
Activation after it: the same arithmetic on the same values, so equal to the last bit (finite
inputs only: our ReLU sends NaN to 0 as MXNet's float32 Activation does, its float64 one
keeps NaN).

As a library: ``run(seed, cases)`` returns a :class:`Report`; the tests run a bounded
slice. As a script (``make fuzz``, ``make sanitize``)::

    python tests/fuzz_batch_norm.py [--seed N] [--cases N] [--seconds S] [--library PATH]

prints one line per failure and a summary, and exits 1 when anything failed.
"""
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_common  # noqa: E402
from reference import batch_norm_np  # noqa: E402

import mxnet as mx  # noqa: E402
from mxnet import autograd, nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

import cnn_base as cb  # noqa: E402

# relative to each array's largest finite magnitude (sums of up to a few thousand terms)
TOL = {"float32": 2e-5, "float64": 1e-11}
NAMES = ("output", "dX", "dgamma", "dbeta", "running mean", "running var")


@dataclasses.dataclass
class Case:
    seed: int
    shape: tuple
    axis: int
    dtype: str
    mode: str            # 'training', 'prediction', 'global-stats'
    scale: bool
    center: bool
    momentum: float
    epsilon: float
    hybridize: str       # 'imperative', 'hybrid', 'static'
    special: bool        # NaN and infinities in X

    def describe(self):
        return (f"seed {self.seed}: X {self.shape} axis {self.axis} {self.dtype} {self.mode} "
                f"scale {self.scale} center {self.center} momentum {self.momentum} "
                f"eps {self.epsilon} {self.hybridize}" + (", NaN/inf in X" if self.special else ""))


@dataclasses.dataclass
class Report:
    cases: int = 0
    checks: int = 0
    failures: list = dataclasses.field(default_factory=list)


def random_case(rng, seed):
    ndim = int(rng.randint(2, 6))
    shape = tuple(int(rng.choice([1, 2, 3, 4, 7, 9])) for _ in range(ndim))
    axis = int(rng.randint(-ndim, ndim)) if rng.rand() < 0.3 else 1
    return Case(seed=seed, shape=shape, axis=axis, dtype=str(rng.choice(["float32", "float64"])),
                mode=str(rng.choice(["training", "training", "prediction", "global-stats"])),
                scale=bool(rng.rand() < 0.85), center=bool(rng.rand() < 0.85),
                momentum=float(rng.choice([0.9, 0.5, 0.0, 1.0])),
                epsilon=float(rng.choice([1e-5, 1e-3, 0.1])),
                hybridize=str(rng.choice(["imperative", "hybrid", "static"])),
                special=bool(rng.rand() < 0.1))


def _arrays(case, rng):
    C = case.shape[case.axis]
    X = rng.randn(*case.shape) * rng.choice([1e-3, 1, 30]) + rng.randn()
    if case.special:
        X.flat[rng.randint(X.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return dict(X=X, gamma=rng.rand(C) + 0.5 if case.scale else np.ones(C),
                beta=rng.randn(C) if case.center else np.zeros(C),
                mean=rng.randn(C), var=rng.rand(C) + 0.5, dY=rng.randn(*case.shape))


def _run(block, case, a, bn=None):
    """Output, dX, dgamma, dbeta and the running statistics after one step of ``block``, whose
    batch norm is ``bn`` (``block`` itself by default)."""
    bn = block if bn is None else bn
    X = nd.array(a["X"], dtype=case.dtype)
    X.attach_grad()
    block.initialize()
    block.cast(case.dtype)
    for name, key in (("gamma", "gamma"), ("beta", "beta"), ("running_mean", "mean"),
                      ("running_var", "var")):
        getattr(bn, name).set_data(nd.array(a[key], dtype=case.dtype))
    if case.hybridize != "imperative":
        block.hybridize(static_alloc=case.hybridize == "static",
                        static_shape=case.hybridize == "static")
    with autograd.record(train_mode=case.mode != "prediction"):
        Y = block(X)
    Y.backward(nd.array(a["dY"], dtype=case.dtype))
    grads = [p.grad() if p.grad_req != "null" else nd.zeros(p.shape) for p in
             (bn.gamma, bn.beta)]
    return [v.asnumpy().astype(np.float64) for v in
            (Y, X.grad, *grads, bn.running_mean.data(), bn.running_var.data())]


def _run_with_relu(fused, kwargs, case, a):
    """One step of our batch norm and a ReLU: inside its operator (``fused``) or MXNet's
    Activation after it."""
    seq = cb.HybridSequential() if fused else nn.HybridSequential()
    bn = cb.BatchNorm(**kwargs)
    seq.add(bn, nn.Activation("relu"))
    return _run(seq, case, a, bn)


def _floors(case, a):
    """The size of each result's terms, below which a difference is rounding of their sum:
    Y = gamma * (X - mean) * invstd + beta, dX = gamma * invstd * (dY - ...), dgamma = sum
    dY * Xhat, dbeta = sum dY (a batch of two in float32: dX is 1e-3 of its terms, float32's
    rounding of them is not; an input of spread 1e-3 about 1: X - mean keeps 4 digits)."""
    X, dY = a["X"], np.abs(a["dY"])
    others = tuple(d for d in range(X.ndim) if d != case.axis % X.ndim)
    shape = [1] * X.ndim
    shape[case.axis] = -1
    m, v = (X.mean(axis=others), X.var(axis=others)) if case.mode == "training" \
        else (a["mean"], a["var"])
    invstd = 1 / np.sqrt(v + case.epsilon)
    # X - mean loses float32's precision of |X| and |mean| (an input far from zero)
    Xhat = (np.abs(X) + np.abs(m.reshape(shape))) * invstd.reshape(shape)
    with np.errstate(invalid="ignore"):
        return [np.nanmax(np.abs(a["gamma"].reshape(shape)) * Xhat),
                np.nanmax(np.abs(a["gamma"]) * invstd) * dY.max(),
                np.nanmax((dY * Xhat).sum(axis=others)), dY.sum(axis=others).max(), 0.0, 0.0]


def _compare(what, got, want, tol, report, case, floors):
    for name, a, b, floor in zip(NAMES, got, want, floors):
        report.checks += 1
        finite = np.isfinite(b)
        if not np.array_equal(np.isnan(a), np.isnan(b)) or \
                not np.array_equal(a[~finite & ~np.isnan(b)], b[~finite & ~np.isnan(b)]):
            report.failures.append(f"{case.describe()}: {name} against {what}: NaN/inf differ")
            continue
        scale = max(np.abs(b[finite]).max(initial=0.0), floor if np.isfinite(floor) else 0, 1e-30)
        err = np.abs(a[finite] - b[finite]).max(initial=0.0) / scale
        if err > tol:
            report.failures.append(f"{case.describe()}: {name} against {what}: "
                                   f"relative error {err:.1e} > {tol:.0e}")


def check_case(case, report):
    rng = np.random.RandomState(case.seed)
    a = _arrays(case, rng)
    kwargs = dict(axis=case.axis, momentum=case.momentum, epsilon=case.epsilon, scale=case.scale,
                  center=case.center, use_global_stats=case.mode == "global-stats")
    ours = cb.BatchNorm(**kwargs)
    got = _run(ours, case, a)
    stored = {k: v.astype(case.dtype).astype(np.float64) for k, v in a.items()}
    with np.errstate(all="ignore"), warnings.catch_warnings():   # NaN/inf cases
        warnings.simplefilter("ignore", RuntimeWarning)
        want = batch_norm_np(**stored, axis=case.axis, batch_stats=case.mode == "training",
                             momentum=case.momentum, eps=case.epsilon)
        floors = _floors(case, stored)
    for index, learnt in ((2, case.scale), (3, case.center)):   # gamma / beta fixed: no gradient
        if not learnt:
            want[index] = np.zeros_like(want[index])
    _compare("NumPy", got, want, TOL[case.dtype], report, case, floors)
    if case.mode == "training" and case.dtype == "float32" and not case.special:
        _compare("Gluon", got[:4], _run(nn.BatchNorm(**kwargs), case, a)[:4], 1e-4, report,
                 case, floors)
    # (not with NaN in X: our ReLU sends NaN to 0, as MXNet's float32 Activation (oneDNN)
    # does; its float64 one keeps NaN)
    if np.random.RandomState(case.seed % 2**32).rand() < 1 / 4 and not case.special:
        _compare("the ReLU apart", _run_with_relu(True, kwargs, case, a),
                 _run_with_relu(False, kwargs, case, a), 0.0, report, case, [0.0] * 6)


def run(seed=0, cases=100, seconds=None, report=None):
    """Check ``cases`` cases drawn from ``seed`` (fewer if ``seconds`` run out)."""
    return fuzz_common.run_cases(random_case, check_case, report or Report(), seed, cases, seconds)


def main(argv=None):
    return fuzz_common.main("fuzz_batch_norm", __doc__.split("\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
