"""Time cnn_base's Conv2D and pools against Gluon's built-ins (forward + backward, hybridized).

    cnn-base benchmark                               # the default table, 20 timings per layer
    cnn-base benchmark --repeats 5 --json out/benchmark.json
    cnn-base benchmark --pooling ops                 # pool with MXNet operators, not the C++ kernel
    cnn-base benchmark --mode static --busy 1        # one mode, one core kept busy meanwhile
    cnn-base benchmark --hybridize-gain              # also: ours in each mode against itself
    cnn-base benchmark --nets --repeats 5            # real networks' training steps and layers

Runs are interleaved (ours, built-in, ours, ...) after a warm-up; each row is
the median of ``--repeats`` timings of ``--number`` passes (in the ours / built-in rows,
more where those would take under 5 ms: ``benchmark.MIN_TIMING_SECONDS``). Prints a table and
the geometric-mean ratio ours / built-in for conv and for pooling, after a line
saying how our blocks pool (``--pooling``: ``auto`` uses the C++ kernel of
``cnn_base.native`` when it is built, ``kernel`` insists on it, ``ops`` uses
MXNet operators). ``--mode`` picks how both blocks run (imperative,
``hybridize()``, ``hybridize(static_alloc=True, static_shape=True)`` or all
three, the default); ``--busy N`` keeps N processor cores busy with
background processes meanwhile (stopped when the benchmark ends).
``--hybridize-gain`` adds a second table: our blocks alone, the three modes
timed in turns, each mode's time over the imperative one. ``--nets`` times
instead the training steps of d2l's chapter-5 networks and of two model zoo
networks (``cnn_base.benchmark.NET_CASES``, in every ``--mode``), then each
distinct conv and pool layer of those networks (in ``--layer-mode``, with
each conv's GFLOP/s), after this machine's matrix-multiply rate. On a terminal a progress bar counts the layers. The work is
done by ``cnn_base.benchmark.run_benchmark``. Bad arguments: one line on
stderr, exit status 2.
"""
from cnn_base.cli._args import (ArgumentParser, fail, nonnegative_int, output_file, positive_int,
                                progress_bar, write_results)

__all__ = ["build_parser", "main"]


def build_parser(prog=None):
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="timings per layer; the median is reported (default: 20)")
    parser.add_argument("--number", type=positive_int, default=3,
                        help="forward+backward passes in one timing, at least; more where "
                             "they would take under 5 ms (default: 3)")
    parser.add_argument("--warmup", type=nonnegative_int, default=3,
                        help="untimed rounds before timing (default: 3)")
    parser.add_argument("--json", type=output_file(("json",)), default=None, metavar="PATH",
                        help="also write the results and geometric means to PATH (.json)")
    parser.add_argument("--pooling", choices=("auto", "kernel", "ops"), default="auto",
                        help="how our pools (and the convs that fit the kernel) compute: the C++ "
                             "kernels when built (auto), "
                             "the kernel or fail (kernel), MXNet operators (ops)")
    parser.add_argument("--mode", choices=("imperative", "hybrid", "static", "all"),
                        default="all", help="imperative, hybridize() (hybrid), "
                        "hybridize(static_alloc=True, static_shape=True) (static), or all")
    parser.add_argument("--busy", type=nonnegative_int, default=0, metavar="N",
                        help="background processes keeping N cores busy meanwhile (default: 0)")
    parser.add_argument("--nets", action="store_true",
                        help="time the training steps of real networks (d2l chapter 5, model "
                             "zoo resnet18_v1 and mobilenetv2_1.0) and their distinct layers, "
                             "each layer as inside a network: reading a ReLU's output, whose "
                             "own time is taken off")
    parser.add_argument("--layer-mode", choices=("imperative", "hybrid", "static"),
                        default="static", help="with --nets: the mode of the layer table "
                        "(default: static)")
    parser.add_argument("--hybridize-gain", action="store_true",
                        help="also time our blocks in the three modes against each other "
                             "(interleaved) and print each mode's time / the imperative time")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    import cnn_base.benchmark as bench      # after parsing: --help costs no MXNet import
    from cnn_base import native

    if args.pooling == "kernel" and not native.loaded():
        fail(parser.prog, f"--pooling kernel: the C++ kernel is not available: {native.status()}")
    native.set_enabled(args.pooling != "ops")
    # --pooling ops turns off the whole C++ library: the conv kernel too
    print(f"our pools and kernel-sized convs compute with: {native.status()}")

    modes = tuple(bench.MODES) if args.mode == "all" else (args.mode,)
    timing = dict(repeats=args.repeats, number=args.number, warmup=args.warmup)
    gains = layers = gemm = None
    with bench.busy_processes(args.busy):
        if args.nets:
            gemm = bench.matmul_gflops()
            print(f"this machine's float32 matrix multiply (MXNet, 2048 x 2048): "
                  f"{gemm:.0f} GFLOP/s")
            with progress_bar("networks", "step") as progress:
                results = bench.run_benchmark(bench.net_cases(), modes=modes,
                                              progress=progress, **timing)
            with progress_bar("layers", "layer") as progress:
                layers = bench.run_benchmark(bench.layer_cases_of_nets(),
                                             modes=(args.layer_mode,), progress=progress,
                                             fed=True, **timing)
        else:
            with progress_bar("benchmark", "layer") as progress:
                results = bench.run_benchmark(modes=modes, progress=progress, **timing)
        if args.hybridize_gain:
            with progress_bar("hybridize gain", "layer") as progress:
                gains = bench.run_mode_comparison(progress=progress, **timing)
    print(bench.format_table(results))
    if layers is not None:
        print(bench.format_table(layers))
    if gains is not None:
        print(bench.format_mode_table(gains))
    if args.json is not None:
        report = {"results": results, "geometric_mean_ratio": bench.summarize(results),
                  "pooling": native.status(), "modes": list(modes), "busy": args.busy,
                  "repeats": args.repeats, "number": args.number, "warmup": args.warmup}
        if gains is not None:
            report["hybridize_gain"] = gains
        if layers is not None:
            report.update(layers=layers, layer_geometric_mean_ratio=bench.summarize(layers),
                          matmul_gflops=gemm)
        write_results(parser.prog, json_path=args.json, report=report)
    return 0
