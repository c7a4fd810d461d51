"""Differential fuzzing of the pools: C++ kernel vs MXNet-op path vs NumPy vs Gluon (vs PyTorch).

Every case is drawn from a seed: an input shape, pooling settings (window,
stride, padding, ceil_mode, count_include_pad), a dtype (float16/32/64),
imperative or hybridized, grad_req 'write' or 'add', and often special values
(NaN, +-inf, -0.0, +0.0, the dtype's largest and lowest finite values, the
smallest subnormal) or tied integers. Each case is run through ``cb.MaxPool2D``
/ ``cb.AvgPool2D`` with the C++ kernel (when loaded) and with MXNet operators
(``native.set_enabled(False)``), and checked against

- each other: max values bit for bit (NaN where NaN, the sign of zeros), max
  and average gradients and average values to the dtype's tolerance;
- ``reference.pool2d_batch_np`` (float64 NumPy, the rules of csrc/pool2d.cc);
- Gluon's built-in where Gluon is right: finite inputs, and not float32
  average pooling with ceil_mode (oneDNN's wrong divisor / refusal, see docs/engineering/special_values.md);
- PyTorch's CPU pooling when ``torch`` happens to be importable (never required):
  values, and max gradients where no window holds two NaNs (PyTorch sends the
  gradient to the last NaN).

An average whose partial sums overflow the dtype depends on the order of
summation (kernel and MXNet ops add in different orders), so finite extremes
go into average cases only in float16, where neither path can overflow (the
kernel sums in float32, the MXNet-op path divides before it sums). The
MXNet-op path sums float16 in float16, so its float16 averages are checked to
float16's precision of the window's largest magnitude (cancellation), the
kernel's to float16's precision of the result.

As a library: ``run(seed, cases)`` returns a :class:`Report`; the tests run a
bounded slice. As a script (``make fuzz``, ``make sanitize``)::

    python tests/fuzz_pool.py [--seed N] [--cases N] [--seconds S] [--library PATH]

prints one line per failure and a summary, and exits 1 when anything failed.
``--library`` loads that build of the kernel (e.g. the sanitizer build) instead
of the package's; run it with CNN_BASE_NATIVE=0 so the package's own build
stays out.
"""
import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import pool2d_batch_np  # noqa: E402

DTYPES = ("float16", "float32", "float64")
# values: relative and absolute tolerance per dtype (float16 is summed in float32
# but rounded to float16 at the end, and its gradients are added in float16)
TOL = {"float16": dict(rtol=2e-2, atol=2e-3), "float32": dict(rtol=1e-5, atol=1e-6),
       "float64": dict(rtol=1e-12, atol=1e-12)}


@dataclasses.dataclass
class Case:
    """One fuzz case: everything needed to run it again."""
    shape: tuple
    mode: str
    pool_size: tuple
    strides: tuple
    padding: tuple
    ceil_mode: bool
    count_include_pad: bool
    dtype: str
    hybridize: bool
    grad_req: str
    values: str          # 'normal', 'ties' or 'special'
    seed: int
    layout: str = "NCHW"     # the blocks' layout; shape, X and dY are NCHW, transposed for NHWC

    def kwargs(self):
        kw = dict(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                  ceil_mode=self.ceil_mode)
        if self.mode == "avg":
            kw["count_include_pad"] = self.count_include_pad
        return kw

    def block_kwargs(self):
        """kwargs() and the layout, for our blocks and Gluon's."""
        return dict(self.kwargs(), layout=self.layout)

    def __str__(self):
        return (f"{self.mode} {self.dtype} shape={self.shape} pool={self.pool_size} "
                f"strides={self.strides} pad={self.padding} ceil={self.ceil_mode} "
                f"cip={self.count_include_pad} hybrid={self.hybridize} req={self.grad_req} "
                f"values={self.values} layout={self.layout} seed={self.seed}")


@dataclasses.dataclass
class Report:
    cases: int = 0
    checks: int = 0
    skipped_gluon: int = 0
    torch: bool = False
    kernel: bool = False
    failures: list = dataclasses.field(default_factory=list)


def random_case(rng, seed):
    """A valid case drawn from ``rng`` (numpy RandomState)."""
    while True:
        k = tuple(int(v) for v in rng.randint(1, 5, size=2))
        s = tuple(int(v) for v in rng.randint(1, 5, size=2))
        p = tuple(int(rng.randint(0, kk)) if rng.rand() < 0.6 else 0 for kk in k)
        shape = (int(rng.randint(1, 3)), int(rng.randint(1, 4)),
                 int(rng.randint(1, 10)), int(rng.randint(1, 10)))
        if shape[2] + 2 * p[0] >= k[0] and shape[3] + 2 * p[1] >= k[1]:
            break
    if seed % 5 == 2:
        # planes of 25 x 25 to 33 x 33, side by side in the lanes (up to 54 x 54); by the seed,
        # so other seeds' cases stay as they were
        shape = shape[:2] + (shape[2] + 24, shape[3] + 24)
    elif seed % 5 == 3:
        # planes past 54 x 54, where pooling leaves the side-by-side way for the separable loops
        shape = shape[:2] + (shape[2] + 54, shape[3] + 54)
    return Case(shape=shape, mode=str(rng.choice(["max", "avg"])), pool_size=k, strides=s,
                padding=p, ceil_mode=bool(rng.rand() < 0.4),
                count_include_pad=bool(rng.rand() < 0.5), dtype=str(rng.choice(DTYPES)),
                hybridize=bool(rng.rand() < 0.4), grad_req=str(rng.choice(["write", "add"])),
                values=str(rng.choice(["normal", "ties", "special", "special"])), seed=seed,
                # every fourth seed channel-last; decided by the seed, not drawn from rng,
                # so that the cases of a seed stay what they were before NHWC existed
                layout="NHWC" if seed % 4 == 3 else "NCHW")


def make_input(case, rng):
    """The case's input X and head gradient dY factory, as NumPy arrays of case.dtype."""
    dtype = np.dtype(case.dtype)
    if case.values == "ties":                       # few distinct values, signed zeros
        X = rng.randint(-1, 2, size=case.shape).astype(dtype)
        X[X == 0] = np.where(rng.rand(int((X == 0).sum())) < 0.5, -0.0, 0.0)
        return X
    X = rng.standard_normal(case.shape).astype(dtype)
    if case.values == "special":
        info = np.finfo(dtype)
        specials = [np.nan, np.inf, -np.inf, -0.0, 0.0]
        if case.mode == "max" or dtype == np.float16:
            specials += [info.max, info.min, info.tiny * info.eps]
        chosen = rng.rand(*case.shape) < rng.choice([0.1, 0.4, 1.0])
        X[chosen] = rng.choice(np.array(specials, dtype=dtype), size=int(chosen.sum()))
    return X


def _pool(case):
    import cnn_base as cb
    return (cb.MaxPool2D if case.mode == "max" else cb.AvgPool2D)(**case.block_kwargs())


def _found_again(case):
    """The operator itself with argmax=False (max pooling): its backward finds each window's
    cell again in X, where the blocks' kept argmax (argmax=True) is read; the same results."""
    from mxnet.gluon import HybridBlock
    from cnn_base import native

    class FoundAgain(HybridBlock):
        def hybrid_forward(self, F, x):
            return getattr(F, native.OP_NAME)(F.identity(x), kernel=case.pool_size,
                                              stride=case.strides, pad=case.padding, mode="max",
                                              ceil_mode=case.ceil_mode, argmax=False)
    return FoundAgain()


def _builtin(case):
    from mxnet.gluon import nn
    return (nn.MaxPool2D if case.mode == "max" else nn.AvgPool2D)(**case.block_kwargs())


def _forward_backward(block, X, dY, hybridize, grad_req, layout="NCHW"):
    """Y and dX of ``block`` (grad_req 'add': two passes, dX halved back after checking).

    X and dY are NCHW; with layout 'NHWC' the block gets them transposed, and
    Y and the gradients are transposed back.
    """
    from mxnet import autograd, nd
    if layout == "NHWC":
        to_nchw = (0, 3, 1, 2)
        Y, grads = _forward_backward(block, X.transpose(0, 2, 3, 1), dY.transpose(0, 2, 3, 1),
                                     hybridize, grad_req)
        return Y.transpose(to_nchw), [g.transpose(to_nchw) for g in grads]
    if hybridize:
        block.hybridize()
    x = nd.array(X, dtype=X.dtype)
    x.attach_grad(grad_req=grad_req)
    passes = 2 if grad_req == "add" else 1
    grads = []
    for _ in range(passes):
        with autograd.record():
            Y = block(x)
        Y.backward(nd.array(dY, dtype=dY.dtype))
        grads.append(x.grad.asnumpy().copy())
    return Y.asnumpy(), grads


def _same_max(a, b):
    """Max values bit for bit: NaN where NaN, and the sign of every zero."""
    return (np.array_equal(a, b, equal_nan=True) and
            np.array_equal(np.signbit(a[a == 0]), np.signbit(b[b == 0])))


def _close(a, b, dtype):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not np.array_equal(np.isnan(a64), np.isnan(b64)):
        return False
    return bool(np.allclose(a64, b64, equal_nan=True, **TOL[dtype]))


def _close_float16_sums(a, ref, X, case):
    """Float16 averages summed in float16 (the MXNet-op path): within float16's
    precision of the window's largest magnitude, as cancellation allows."""
    if not np.array_equal(np.isnan(a), np.isnan(ref)):
        return False
    biggest, _ = pool2d_batch_np(np.abs(X.astype(np.float64)), None, mode="max",
                                 **dict(case.kwargs(), count_include_pad=None))
    # a window without input cells reports the lowest float: no slack there
    slack = (case.pool_size[0] * case.pool_size[1] * 2.0 ** -10 *
             np.maximum(np.nan_to_num(biggest), 0))
    finite = np.isfinite(ref)
    return bool(np.array_equal(a[~finite], ref[~finite].astype(a.dtype), equal_nan=True) and
                (np.abs(a[finite] - ref[finite]) <= 2e-2 * np.abs(ref[finite]) + 2e-3 +
                 slack[finite]).all())


def _close_float16_grads(a, ref, dY_abs_sums, case):
    """Float16 gradients, each cell's shares added in float16 (rounded after each addition,
    as Gluon's float16 backward is): within float16's precision of the magnitudes added, as
    cancellation allows (a 4 x 3 window at stride 1 adds up to 12 shares of either sign).
    ``dY_abs_sums``: the reference backward of |dY| (what each cell's shares add up to)."""
    if not np.array_equal(np.isnan(a), np.isnan(ref)):
        return False
    slack = case.pool_size[0] * case.pool_size[1] * 2.0 ** -10 * np.nan_to_num(dY_abs_sums)
    finite = np.isfinite(ref)
    return bool(np.array_equal(a[~finite], ref[~finite].astype(a.dtype), equal_nan=True) and
                (np.abs(a[finite] - ref[finite]) <= 2e-2 * np.abs(ref[finite]) + 2e-3 +
                 slack[finite]).all())


def _torch_pool(case, X, dY):
    import torch
    import torch.nn.functional as tF
    x = torch.tensor(X.astype(np.float64), requires_grad=True)
    if case.mode == "max":
        y = tF.max_pool2d(x, case.pool_size, case.strides, case.padding,
                          ceil_mode=case.ceil_mode)
    else:
        y = tF.avg_pool2d(x, case.pool_size, case.strides, case.padding,
                          ceil_mode=case.ceil_mode, count_include_pad=case.count_include_pad)
    if tuple(y.shape) != dY.shape:
        return None, None                 # PyTorch's ceil_mode drops a last window Gluon keeps
    y.backward(torch.tensor(dY.astype(np.float64)))
    return y.detach().numpy(), x.grad.numpy()


def _at_most_one_nan_per_window(case, X):
    nan = np.isnan(X.astype(np.float64)).astype(np.float64)
    counts, _ = pool2d_batch_np(nan, None, mode="avg", **dict(case.kwargs(),
                                                               count_include_pad=True))
    # the average of the NaN mask times the window's counted cells is its NaN count;
    # with count_include_pad the divisor is at most pool_h * pool_w
    return bool((counts * case.pool_size[0] * case.pool_size[1] <= 1.5).all())


def check_case(case, report):
    """Run one case every way and append what disagrees to ``report.failures``."""
    from cnn_base import native
    rng = np.random.RandomState(case.seed)
    X = make_input(case, rng)
    Y_ref, _ = pool2d_batch_np(X.astype(np.float64), None, mode=case.mode, **case.kwargs())
    dY = rng.standard_normal(Y_ref.shape).astype(case.dtype)
    Y_ref, dX_ref = pool2d_batch_np(X.astype(np.float64), dY.astype(np.float64), mode=case.mode,
                                    lowest=float(np.finfo(case.dtype).min), **case.kwargs())
    _, dY_abs_sums = pool2d_batch_np(X.astype(np.float64), np.abs(dY.astype(np.float64)),
                                     mode=case.mode, lowest=float(np.finfo(case.dtype).min),
                                     **case.kwargs())

    def close_grads(dX):
        if case.dtype == "float16":
            return _close_float16_grads(dX.astype(np.float64), dX_ref, dY_abs_sums, case)
        return _close(dX, dX_ref, case.dtype)
    failures = []

    def fail(what):
        failures.append(f"{what}: {case}")

    results = {}
    backends = (["kernel"] if native.loaded() else []) + ["ops"]
    found_again = native.loaded() and case.mode == "max" and case.layout == "NCHW"
    for backend in backends + (["kernel, argmax found again"] if found_again else []):
        old = native.set_enabled(backend != "ops")
        block = _found_again(case) if backend.endswith("again") else _pool(case)
        try:
            Y, grads = _forward_backward(block, X, dY, case.hybridize, case.grad_req,
                                         case.layout)
        except Exception as error:              # a clean error is still a disagreement
            fail(f"{backend} raised {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        finally:
            native.set_enabled(old)
        # the MXNet-op path adds each window's share into the gradient in turn: not exact
        if case.grad_req == "add" and not _close(grads[1], 2 * grads[0], case.dtype):
            fail(f"{backend}: grad_req='add' did not add up")
        results[backend] = (Y, grads[0])

    tol_dtype = case.dtype
    for backend, (Y, dX) in results.items():
        report.checks += 1
        if Y.shape != Y_ref.shape or Y.dtype != np.dtype(case.dtype):
            fail(f"{backend}: output {Y.shape} {Y.dtype}, NumPy {Y_ref.shape} {case.dtype}")
            continue
        if case.mode == "max":
            if not _same_max(Y, Y_ref.astype(case.dtype)):
                fail(f"{backend}: max values differ from NumPy")
        elif backend == "ops" and case.dtype == "float16":
            if not _close_float16_sums(Y.astype(np.float64), Y_ref, X, case):
                fail(f"{backend}: average values differ from NumPy")
        elif not _close(Y, Y_ref, tol_dtype):
            fail(f"{backend}: average values differ from NumPy")
        if not close_grads(dX):
            fail(f"{backend}: gradient differs from NumPy")
    if "kernel" in results and "kernel, argmax found again" in results:
        (Yk, dXk), (Ya, dXa) = results["kernel"], results["kernel, argmax found again"]
        if not _same_max(Yk, Ya) or not np.array_equal(dXk, dXa, equal_nan=True):
            fail("the kernel's kept and found-again argmax give different results")
    if "kernel" in results and "ops" in results:
        (Yk, dXk), (Yo, dXo) = results["kernel"], results["ops"]
        if case.mode == "max":
            same = _same_max(Yk, Yo)
        elif case.dtype == "float16":
            same = _close_float16_sums(Yo.astype(np.float64), Yk.astype(np.float64), X, case)
        else:
            same = _close(Yk, Yo, tol_dtype)
        if not same:
            fail("kernel and MXNet-op path give different values")
        if not _close(dXk, dXo, tol_dtype):
            fail("kernel and MXNet-op path give different gradients")

    finite = bool(np.isfinite(X).all())
    # Gluon's known float32 faults (tests/test_native.py pins them against NumPy): the
    # average's ceil_mode windows; a max with padding over cells at float32's lowest value
    gluon_wrong = case.dtype == "float32" and (
        (case.mode == "avg" and case.ceil_mode)
        or (case.mode == "max" and max(case.padding) > 0
            and bool((X == np.finfo(np.float32).min).any())))
    if finite and not gluon_wrong:
        block = _builtin(case)
        block.cast(case.dtype)
        try:
            Yg, grads = _forward_backward(block, X, dY, case.hybridize, "write", case.layout)
        except Exception as error:
            fail(f"Gluon raised {type(error).__name__}: {str(error).splitlines()[0]}")
        else:
            report.checks += 1
            # Gluon's signs of zero and float16 sums are its own; compare as numbers
            if not _close(Yg, Y_ref, tol_dtype) or not close_grads(grads[0]):
                fail("Gluon's built-in differs from NumPy")
    else:
        report.skipped_gluon += 1

    if report.torch:
        Yt, dXt = _torch_pool(case, X, dY)
        if Yt is not None:
            report.checks += 1
            if not _close(Yt, Y_ref, "float64"):
                fail("PyTorch's values differ from NumPy")
            if (case.mode == "avg" or _at_most_one_nan_per_window(case, X)) and \
                    not _close(dXt, dX_ref, "float64"):
                fail("PyTorch's gradient differs from NumPy")
    report.failures.extend(failures)
    return failures


def edge_calls(report):
    """The C++ operator's error paths and extreme sizes, called directly (for `make sanitize`):
    every call must end in a result or an MXNetError, never in undefined behaviour."""
    import mxnet as mx
    from mxnet import nd
    from cnn_base import native
    if not native.loaded():
        return
    op = getattr(nd, native.OP_NAME)
    refused = [dict(kernel=(2 ** 40, 2 ** 40), stride=(1, 1), pad=(2 ** 39, 0)),
               dict(kernel=(2, 2), stride=(2 ** 64 + 1, 1), pad=(0, 0)),
               dict(kernel=(2, 2), stride=(1, 1), pad=(2, 0)),
               dict(kernel=(2, 2), stride=("9" * 30, 1), pad=(0, 0)),
               dict(kernel="(2, 2, 2)", stride=(1, 1), pad=(0, 0))]
    for attrs in refused:
        report.checks += 1
        try:
            op(nd.ones((1, 1, 3, 3)), mode="max", **attrs).wait_to_read()
            report.failures.append(f"edge: {attrs} was not refused")
        except mx.base.MXNetError:
            pass
    big = 2 ** 31 - 1
    for mode in ("max", "avg"):
        for dtype in DTYPES:
            report.checks += 1
            x = nd.ones((1, 2, 1, 1), dtype=dtype)
            x.attach_grad()
            with mx.autograd.record():
                y = op(nd.identity(x), kernel=(big, big), stride=(big, 1), pad=(2 ** 30, 2 ** 30),
                       mode=mode, ceil_mode=True)
            y.backward()
            span = 1 + 2 * 2 ** 30 - big                   # as out_length in pool2d.cc
            expected = (1, 2, -(-span // big) + 1, span + 1)
            if y.shape != expected or not np.isfinite(x.grad.asnumpy()).all():
                report.failures.append(f"edge: {mode} {dtype} window 2**31 - 1 gave {y.shape}, "
                                       f"expected {expected}")


def global_calls(report, seed=0, calls=60):
    """The operator with ``global_pool=True`` on random shapes, dtypes and layouts (NHWC: the
    average): Y and dX against ``pool2d_batch_np`` with the window the whole plane, in float64.
    Inputs hold NaN in one call of four (max: NaN wins, its gradient to the first NaN)."""
    import mxnet as mx
    from mxnet import nd
    from cnn_base import native
    if not native.loaded():
        return
    op = getattr(nd, native.OP_NAME)
    rng = np.random.RandomState(seed)
    for _ in range(calls):
        mode, dtype = rng.choice(["max", "avg"]), rng.choice(DTYPES)
        layout = "NHWC" if mode == "avg" and rng.rand() < 0.5 else "NCHW"
        N, C, H, W = (int(v) for v in rng.randint(1, [4, 5, 13, 13]))
        X = rng.randint(-8, 9, size=(N, C, H, W)).astype("float64") / 4    # exact in float16
        if rng.rand() < 0.25:
            X[tuple(rng.randint(0, [N, C, H, W]))] = np.nan
        dY = rng.randint(-8, 9, size=(N, C, 1, 1)).astype("float64") / 4
        x = nd.array(X.transpose(0, 2, 3, 1) if layout == "NHWC" else X, dtype=dtype)
        x.attach_grad()
        settings = dict(mode=mode, global_pool=True, layout=layout)
        with mx.autograd.record():
            y = op(nd.identity(x), **settings) if mode == "avg" else \
                op(nd.identity(x), argmax=True, **settings)[0]
        y.backward(nd.array(dY.transpose(0, 2, 3, 1) if layout == "NHWC" else dY, dtype=dtype))
        Y, dX = y.asnumpy().astype("float64"), x.grad.asnumpy().astype("float64")
        if layout == "NHWC":
            Y, dX = Y.transpose(0, 3, 1, 2), dX.transpose(0, 3, 1, 2)
        Y_ref, dX_ref = pool2d_batch_np(X, dY, (H, W), mode=mode)     # the window: the plane
        tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float16" else dict(rtol=1e-5, atol=1e-6)
        report.checks += 1
        try:
            np.testing.assert_allclose(Y.reshape(N, C), Y_ref.reshape(N, C), **tol)
            np.testing.assert_allclose(dX, dX_ref, **tol)
        except AssertionError:
            report.failures.append(f"global: {mode} {dtype} {layout} {(N, C, H, W)} differs "
                                   f"from NumPy")


def run(seed=0, cases=100, seconds=None, report=None):
    """Check ``cases`` cases drawn from ``seed`` (stopping after ``seconds`` if given)."""
    from cnn_base import native
    report = report or Report()
    report.kernel = native.loaded()
    try:
        import torch  # noqa: F401
        report.torch = True
    except ImportError:
        report.torch = False
    rng = np.random.RandomState(seed)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(cases):
            if seconds is not None and time.monotonic() - start > seconds:
                break
            case = random_case(rng, seed=int(rng.randint(2 ** 31)))
            check_case(case, report)
            report.cases += 1
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--library", type=Path, default=None,
                        help="load this build of the kernel (run with CNN_BASE_NATIVE=0)")
    args = parser.parse_args(argv)
    from cnn_base import native
    if args.library is not None:
        os.environ["CNN_BASE_NATIVE"] = "1"
        if not native.load(args.library):
            print(f"fuzz_pool: could not load {args.library}: {native.status()}", file=sys.stderr)
            return 2
    start = time.monotonic()
    report = run(args.seed, args.cases, args.seconds)
    edge_calls(report)
    global_calls(report, args.seed)
    for line in report.failures:
        print(line)
    print(f"fuzz_pool: {report.cases} cases, {report.checks} comparisons, "
          f"{len(report.failures)} failures in {time.monotonic() - start:.1f} s "
          f"(kernel: {native.status()}; PyTorch: {'yes' if report.torch else 'not importable'}; "
          f"Gluon skipped on {report.skipped_gluon} cases with non-finite input or its known "
          f"float32 ceil_mode average faults)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
