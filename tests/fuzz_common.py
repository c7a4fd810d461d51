"""What the kernels' fuzz scripts share: the seeded loop over cases and the command line.

``fuzz_conv.py`` and ``fuzz_batch_norm.py`` draw case ``n`` of seed ``s`` from seed
``s * 1_000_003 + n``, check it into a report (``cases``, ``checks``, ``failures``), and as
scripts take ``--seed``, ``--cases``, ``--seconds`` and ``--library`` (a build of the kernels
to load instead of the package's, e.g. the sanitizer build of ``make sanitize``).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from cnn_base import native


def run_cases(random_case, check_case, report, seed, cases, seconds=None):
    """Check ``cases`` cases drawn from ``seed`` (fewer if ``seconds`` run out) into ``report``."""
    if not native.loaded():
        raise RuntimeError(f"the C++ kernels are not available: {native.status()}")
    rng = np.random.RandomState(seed)
    start = time.monotonic()
    for n in range(cases):
        if seconds is not None and time.monotonic() - start > seconds:
            break
        check_case(random_case(rng, seed=seed * 1_000_003 + n), report)
        report.cases += 1
    return report


def main(name, description, run, argv=None, cases=500):
    """The script ``name``: parse the options, load ``--library`` if given, ``run(seed, cases,
    seconds)``, print each failure and a summary; exit status 1 on any failure, 2 when the
    library does not load."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=cases)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--library", type=Path, default=None,
                        help="load this build of the kernel library instead of the package's")
    args = parser.parse_args(argv)
    if args.library is not None:
        os.environ["CNN_BASE_NATIVE"] = "1"     # as fuzz_pool.py: this build, not the package's
        if not native.load(args.library):
            print(f"{name}: could not load {args.library}: {native.status()}", file=sys.stderr)
            return 2
    report = run(args.seed, args.cases, args.seconds)
    for line in report.failures:
        print(line)
    print(f"{name}: {report.cases} cases, {report.checks} checks, "
          f"{len(report.failures)} failures (seed {args.seed})")
    return 1 if report.failures else 0
