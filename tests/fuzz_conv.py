"""Differential fuzzing of the conv kernel: ``cnn_base_conv2d`` against Gluon's ``Convolution``.

Every case is drawn from a seed: batch, groups, input and output channels per
group (up to 13 output channels, past every register tile's width; one case in six
depthwise, one input and one output channel in each of 2-19 groups; one in six 16-39
input channels per group, where dX is the transposed conv's forward; one in eight of
the others 16 float32 images of 16-24 channels each way, stride 1 and no dilation, which
on small planes run with the images in the vector lanes, csrc/conv2d_lanes.h; one in four of
those to 93-120 channels by 5 x 5, whose input gradient's window passes the forward's limit), kernel,
stride, padding, dilation, input height and width (now and then a tall, narrow
input, so that the kernel gradient's bands of rows end inside the output, or a
row wider than four vectors), float32 or float64, bias or not, NCHW or (one
case in four) NHWC with Gluon's NHWC weight, and in one case of four a few
special values (NaN, +inf, -inf) in the input. Each case runs
``functional.conv2d_native`` (the C++ kernel; once more with its im2col + BLAS way
forced, ``algo='gemm'``, and with its taps, ``algo='taps'``, when the process has a BLAS)
and ``functional.conv2d`` (the MXNet-operator path) forward and backward (the input's,
kernels' and bias's gradients from a random output gradient), and MXNet's own ``nd.Convolution``
in float64 on the same values, and compares the results element by element:
where Gluon's value is NaN or infinite, ours must be the same NaN or infinity;
elsewhere within a tolerance scaled by what that element sums: the same
convolution run on the absolute values (``|X|``, ``|K|``, ``|dY|``, special
values as 0) gives every output's and every gradient's sum of absolute terms,
and the bound is that sum times :func:`_tolerance` of the number of terms. An
index error shows up as a difference of the size of a whole term, far above
it; a NaN or infinity that reaches a sum it does not belong to, as a NaN.

As a library: ``run(seed, cases)`` returns a :class:`Report`; the tests run a
bounded slice. As a script (``make fuzz`` runs it after the pooling fuzz;
``make sanitize`` on the sanitizer build)::

    python tests/fuzz_conv.py [--seed N] [--cases N] [--seconds S] [--library PATH]

prints one line per failure and a summary, and exits 1 when anything failed.
``--library`` loads that build of the kernel instead of the package's; run it
with CNN_BASE_NATIVE=0 so the package's own build stays out.
"""
import dataclasses
import sys

import numpy as np

import cnn_base  # noqa: F401  (before mxnet: numpy.bool on Python 3.12+)
from cnn_base import functional, native
from cnn_base.shapes import output_shape
from mxnet import autograd, nd

import fuzz_common

DTYPES = ("float32", "float64")
EPS = {"float32": np.finfo(np.float32).eps, "float64": np.finfo(np.float64).eps}


@dataclasses.dataclass
class Case:
    seed: int
    N: int
    groups: int
    c_i: int          # per group
    c_o: int          # per group
    H: int
    W: int
    kernel: tuple
    strides: tuple
    padding: tuple
    dilation: tuple
    dtype: str
    bias: bool
    special: bool = False     # NaN and infinities in the input
    layout: str = "NCHW"      # ours run in it; Gluon in NCHW, the results transposed back

    def describe(self):
        return (f"seed {self.seed}: X ({self.N}, {self.groups * self.c_i}, {self.H}, {self.W}) "
                f"-> {self.groups * self.c_o}, kernel {self.kernel}, strides {self.strides}, "
                f"padding {self.padding}, dilation {self.dilation}, groups {self.groups}, "
                f"{self.dtype}, bias {self.bias}" + (", NaN/inf in X" if self.special else "")
                + (", NHWC" if self.layout == "NHWC" else ""))


@dataclasses.dataclass
class Report:
    cases: int = 0
    checks: int = 0
    failures: list = dataclasses.field(default_factory=list)


def random_case(rng, seed):
    """One case drawn from ``rng``; every input holds at least one window."""
    kernel = tuple(int(k) for k in rng.randint(1, 6, size=2))
    strides = tuple(int(s) for s in rng.choice([1, 1, 1, 2, 3], size=2))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 1, 2], size=2))
    span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(2))
    padding = tuple(int(rng.randint(0, span[a])) for a in range(2))
    shape = rng.choice(["small", "tall", "wide"], p=[0.7, 0.15, 0.15])
    high = {"small": (24, 24), "tall": (150, 12), "wide": (8, 70)}[shape]
    size = tuple(int(rng.randint(max(1, span[a] - 2 * padding[a]), max(2, span[a]) + high[a]))
                 for a in range(2))
    case = Case(seed=seed, N=int(rng.randint(1, 4)), groups=int(rng.choice([1, 1, 1, 2, 3])),
                c_i=int(rng.randint(1, 7)), c_o=int(rng.randint(1, 14)), H=size[0], W=size[1],
                kernel=kernel, strides=strides, padding=padding, dilation=dilation,
                dtype=str(rng.choice(DTYPES, p=[0.6, 0.4])), bias=bool(rng.rand() < 0.8),
                special=bool(rng.rand() < 0.25), layout=str(rng.choice(["NCHW", "NHWC"], p=[0.75, 0.25])))
    if rng.rand() < 1 / 6:      # depthwise: the kernel's side-by-side way on small planes
        return dataclasses.replace(case, c_i=1, c_o=1, groups=int(rng.randint(2, 20)))
    if rng.rand() < 1 / 5:      # wide inputs: dX by the transposed conv, dW by blocks
        case = dataclasses.replace(case, c_i=int(rng.randint(16, 40)))
    # 16 float32 images of 16 channels and more, stride 1: the lanes (csrc/conv2d_lanes.h) on
    # planes of up to 16 x 16; drawn from the case's own seed, so the other cases stay the same
    lanes = np.random.RandomState(seed % 2**32)
    if lanes.rand() < 1 / 8:
        case = dataclasses.replace(case, N=16, groups=1, c_i=int(lanes.randint(16, 25)),
                                   c_o=int(lanes.randint(16, 25)), strides=(1, 1),
                                   dilation=(1, 1), dtype="float32")
        if lanes.rand() < 1 / 4:    # dX's transposed conv past the forward's window limit
            case = dataclasses.replace(case, c_o=int(lanes.randint(93, 121)), kernel=(5, 5),
                                       padding=(2, 2))
    return case


def _gluon(case, X, K, b, dY):
    """nd.Convolution in float64: output and the gradients of X, K (and b) for dY."""
    args = [nd.array(a, dtype="float64") for a in (X, K) + ((b,) if case.bias else ())]
    for a in args:
        a.attach_grad()
    with autograd.record():
        Y = nd.Convolution(*args, kernel=case.kernel, stride=case.strides, pad=case.padding,
                           dilate=case.dilation, num_filter=case.groups * case.c_o,
                           num_group=case.groups, no_bias=not case.bias)
    Y.backward(nd.array(dY, dtype="float64"))
    return [Y.asnumpy()] + [a.grad.asnumpy() for a in args]


def _ours(conv, case, X, K, b, dY, data_grad=True):
    """``conv`` (conv2d_native or conv2d) in the case's dtype and layout: output, gradients of
    X, K (and b), in NCHW (and Gluon's NCHW weight layout); without ``data_grad`` X gets no
    gradient attached (the operator then skips dX) and None stands for it."""
    last = case.layout == "NHWC"
    to_last = (lambda a: a.transpose(0, 2, 3, 1)) if last else (lambda a: a)
    to_first = (lambda a: a.transpose(0, 3, 1, 2)) if last else (lambda a: a)
    args = [nd.array(to_last(a), dtype=case.dtype) for a in (X, K)]
    args += [nd.array(b, dtype=case.dtype)] if case.bias else []
    for a in args[0 if data_grad else 1:]:
        a.attach_grad()
    with autograd.record():
        Y = conv(nd, args[0], args[1], args[2] if case.bias else None, strides=case.strides,
                 padding=case.padding, dilation=case.dilation, groups=case.groups,
                 layout=case.layout)
    Y.backward(nd.array(to_last(dY), dtype=case.dtype))
    grads = [a.grad.asnumpy() if a.grad is not None else None for a in args]
    dX = to_first(grads[0]) if data_grad else None
    return [to_first(Y.asnumpy()), dX, to_first(grads[1])] + grads[2:]


def _kernel(case, X, K, b, dY):
    """The C++ kernel (conv2d_native)."""
    return _ours(functional.conv2d_native, case, X, K, b, dY)


def _kernel_without_dX(case, X, K, b, dY):
    """The C++ kernel on data without a gradient (``input_grad=False``: dW and db only)."""
    return _ours(functional.conv2d_native, case, X, K, b, dY, data_grad=False)


def _gemm(case, X, K, b, dY):
    """The C++ kernel with its im2col + BLAS way forced (``algo='gemm'``), whatever its rule
    would pick for the case's (mostly narrow) layers."""
    def conv(F, *args, **kwargs):
        return functional.conv2d_native(F, *args, algo="gemm", **kwargs)
    return _ours(conv, case, X, K, b, dY)


def _taps(case, X, K, b, dY):
    """The C++ kernel with its taps forced (``algo='taps'``: one multiply per window cell over
    the shifted padded planes where the stride is 1, im2col elsewhere)."""
    def conv(F, *args, **kwargs):
        return functional.conv2d_native(F, *args, algo="taps", **kwargs)
    return _ours(conv, case, X, K, b, dY)


def _ops(case, X, K, b, dY):
    """The MXNet-operator path (conv2d)."""
    return _ours(functional.conv2d, case, X, K, b, dY)


SPECIAL = (np.nan, np.inf, -np.inf)


def _specials(rng, X):
    """X with one to three of its cells set to NaN, +inf or -inf."""
    X = X.copy()
    for _ in range(rng.randint(1, 4)):
        X.flat[rng.randint(X.size)] = SPECIAL[rng.randint(len(SPECIAL))]
    return X


def _tolerance(dtype, n):
    """Relative error allowed for a sum of n terms (times the sum of their magnitudes).

    float64: the worst case of summing in any order, n * eps (Gluon's float64
    sums too). float32: 8 * sqrt(n) * eps, the usual size of rounding errors
    that do not all go one way; the worst case n * eps would let a missing
    term of a large kernel gradient through.
    """
    return 4 * n * EPS[dtype] if dtype == "float64" else 8 * np.sqrt(n) * EPS[dtype]


def paths():
    """The ways each case is run: the kernel, the kernel with im2col + BLAS and with the taps
    forced (when the process has a BLAS), MXNet operators; ``(name, run)`` pairs."""
    forced = ([("kernel im2col + BLAS", _gemm), ("kernel taps", _taps)]
              if native.multiplies_with_blas() else [])
    return [("kernel", _kernel), ("kernel without dX", _kernel_without_dX)] + forced + \
        [("ops", _ops)]


def checks_per_case(bias):
    """The results check_case compares for a case: output, input, kernel (and bias) gradients
    each way, but the input gradient of the way without it."""
    return len(paths()) * (4 if bias else 3) - 1


def check_case(case, report):
    """Run one case and add its checks (and failures, one line each) to ``report``."""
    rng = np.random.RandomState(case.seed)
    C, O = case.groups * case.c_i, case.groups * case.c_o
    X = rng.normal(size=(case.N, C, case.H, case.W))
    K = rng.normal(size=(O, case.c_i) + case.kernel)
    b = rng.normal(size=(O,))
    # the values the kernel sees, in its dtype, so that only its arithmetic differs
    X, K, b = (a.astype(case.dtype).astype(np.float64) for a in (X, K, b))
    OH, OW = output_shape((case.H, case.W), case.kernel, case.strides, case.padding,
                          case.dilation)
    dY = rng.normal(size=(case.N, O, OH, OW)).astype(case.dtype).astype(np.float64)
    if case.special:
        X = _specials(rng, X)
    expected = _gluon(case, X, K, b, dY)
    bounds = _gluon(case, np.abs(np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)),
                    np.abs(K), np.abs(b), np.abs(dY))
    kk = case.kernel[0] * case.kernel[1]
    positions = case.N * OH * OW
    terms = (case.c_i * kk, case.c_o * kk, positions, positions)   # summed per element, at most
    for path, run_path in paths():
        try:
            got = run_path(case, X, K, b, dY)
        except Exception as error:     # a refusal or a crash of the operator is a failure too
            report.failures.append(f"{case.describe()}: {path} raised {type(error).__name__}: "
                                   f"{str(error).splitlines()[0] if str(error) else ''}")
            continue
        for name, g, e, bound, n in zip(("output", "input gradient", "kernel gradient",
                                         "bias gradient"), got, expected, bounds, terms):
            if g is None:      # a gradient the path does not ask for
                continue
            report.checks += 1
            if g.shape != e.shape:
                report.failures.append(f"{case.describe()}: {path} {name} shape {g.shape}, "
                                       f"Gluon {e.shape}")
                continue
            tolerance = _tolerance(case.dtype, n) * bound + np.finfo(np.float64).tiny
            with np.errstate(invalid="ignore"):
                bad = np.where(np.isfinite(e), ~(np.abs(g - e) <= tolerance),
                               ~((g == e) | (np.isnan(g) & np.isnan(e))))
            if bad.any():
                at = tuple(int(i) for i in np.argwhere(bad)[0])
                report.failures.append(f"{case.describe()}: {path} {name} differs at {at}: "
                                       f"ours {g[at]!r}, Gluon {e[at]!r} (tolerance "
                                       f"{tolerance[at]:.3g}; {int(bad.sum())} of {bad.size} "
                                       f"elements)")


def run(seed=0, cases=100, seconds=None, report=None):
    """Check ``cases`` cases drawn from ``seed`` (fewer if ``seconds`` run out)."""
    return fuzz_common.run_cases(random_case, check_case, report or Report(), seed, cases, seconds)


def main(argv=None):
    return fuzz_common.main("fuzz_conv", __doc__.split("\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
