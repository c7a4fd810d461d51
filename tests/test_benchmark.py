"""cnn_base.benchmark and scripts/benchmark.py: results as data, no timing assertions."""
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import mxnet as mx
import pytest
from mxnet import nd

from cnn_base import benchmark as bench
from cnn_base.cli import benchmark as benchmark_cli

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"
TINY_CASES = [("conv", (2, 3, 8, 8), dict(channels=4, kernel_size=3, padding=1)),
              ("maxpool", (2, 3, 8, 8), dict(pool_size=3, strides=2, padding=1)),
              ("avgpool", (2, 3, 8, 8), dict(pool_size=2)),
              ("conv", (2, 8, 8, 3), dict(channels=4, kernel_size=3, padding=1, layout="NHWC")),
              ("lenet", (2, 1, 28, 28), dict(net="d2l LeNet", classes=10, lr=0.1))]


def test_run_benchmark_returns_one_result_per_case_and_mode_with_ours_over_builtin():
    modes = ("imperative", "hybrid", "static")
    results = bench.run_benchmark(TINY_CASES, repeats=1, number=1, warmup=0, modes=modes)
    assert [(r["kind"], r["mode"]) for r in results] == [
        (kind, mode) for kind, _, _ in TINY_CASES for mode in modes]
    for r, (kind, shape, kwargs) in zip(results, [c for c in TINY_CASES for _ in modes]):
        assert r["input_shape"] == list(shape) and r["settings"] == kwargs
        assert r["ours_ms"] > 0 and r["builtin_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ours_ms"] / r["builtin_ms"])
        assert r["layer"].startswith(kind if kind != "lenet" else "d2l LeNet training step")


def test_run_mode_comparison_times_our_blocks_in_every_mode_against_imperative():
    results = bench.run_mode_comparison(TINY_CASES, repeats=1, number=1, warmup=0)
    assert [r["kind"] for r in results] == [kind for kind, _, _ in TINY_CASES]
    for r in results:
        assert set(r["ms"]) == set(bench.MODES) and min(r["ms"].values()) > 0
        assert r["vs_imperative"]["imperative"] == 1.0
        for mode in ("hybrid", "static"):
            assert r["vs_imperative"][mode] == pytest.approx(r["ms"][mode] / r["ms"]["imperative"])
    table = bench.format_mode_table(results).splitlines()
    assert len(table) == 1 + len(TINY_CASES) and table[0].split()[-2:] == ["hybrid/imp",
                                                                           "static/imp"]


@pytest.mark.parametrize("modes, message", [
    ((), "modes must name at least one of"),
    (("fast",), "mode must be one of"),
])
def test_run_benchmark_refuses_unknown_or_no_modes(modes, message):
    with pytest.raises(ValueError, match=message):
        bench.run_benchmark(TINY_CASES[:1], repeats=1, number=1, warmup=0, modes=modes)


def test_hybrid_lenet_of_the_benchmark_is_d2ls_with_our_blocks():
    from mxnet import nd
    from mxnet.gluon import nn
    import cnn_base as cb
    net = cb.lenet("custom", hybrid=True)
    assert isinstance(net, nn.HybridSequential)
    net.initialize()
    assert net(nd.ones((2, 1, 28, 28))).shape == (2, 10)
    assert [type(b).__name__ for b in net] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D",
                                               "Dense", "Dense", "Dense"]
    assert [b.weight.shape for b in net if hasattr(b, "weight")] == [
        (6, 1, 5, 5), (16, 6, 5, 5), (120, 256), (84, 120), (10, 84)]


def _script():
    """scripts/benchmark.py imported in this process (so that monkeypatching reaches it)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import benchmark as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return script


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_busy_processes_run_inside_the_block_and_are_reaped_after():
    with bench.busy_processes(2) as processes:
        assert len(processes) == 2
        assert all(p.poll() is None for p in processes)
    assert all(p.returncode is not None for p in processes)
    assert not any(_alive(p.pid) for p in processes)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_busy_processes_are_reaped_when_the_body_raises(error):
    with pytest.raises(error):
        with bench.busy_processes(1) as processes:
            raise error("stop")
    assert processes[0].returncode is not None and not _alive(processes[0].pid)


def test_busy_processes_stop_by_themselves_after_their_time():
    with bench.busy_processes(1, seconds=0.3) as processes:
        deadline = time.monotonic() + 60
        while processes[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes[0].returncode == 0


@pytest.mark.parametrize("n, seconds, error", [(-1, 1.0, ValueError), (1.5, 1.0, TypeError),
                                               (1, 0.0, ValueError), (1, float("inf"), ValueError)])
def test_busy_processes_refuse_bad_arguments(n, seconds, error):
    with pytest.raises(error):
        with bench.busy_processes(n, seconds):
            pass


def test_default_table_holds_the_issues_layers():
    conv = {(shape, kw["channels"], kw["kernel_size"], kw.get("strides", 1), kw.get("padding", 0),
             kw.get("groups", 1)) for shape, kw in bench.CONV_CASES}
    assert conv >= {((8, 16, 64, 64), 32, 3, 1, 1, 1), ((32, 1, 28, 28), 6, 5, 1, 2, 1),
                    ((32, 6, 14, 14), 16, 5, 1, 0, 1), ((8, 64, 32, 32), 64, 3, 2, 1, 1),
                    # LeNet at batch 256: both layers, the padded first one; 1x1; depthwise
                    ((256, 1, 28, 28), 6, 5, 1, 0, 1), ((256, 6, 12, 12), 16, 5, 1, 0, 1),
                    ((256, 1, 28, 28), 6, 5, 1, 2, 1), ((8, 64, 32, 32), 64, 1, 1, 0, 1),
                    ((8, 32, 56, 56), 32, 3, 1, 1, 32)}
    pool = {(shape, kw["pool_size"], kw["strides"], kw.get("padding", 0))
            for shape, kw in bench.POOL_CASES}
    assert pool >= {((32, 6, 28, 28), 2, 2, 0), ((8, 32, 64, 64), 3, 2, 1),
                    ((256, 6, 24, 24), 2, 2, 0), ((256, 16, 8, 8), 2, 2, 0)}
    assert {kw.get("layout", "NCHW") for _, kw in bench.POOL_CASES} == {"NCHW", "NHWC"}
    assert {kw.get("layout", "NCHW") for _, kw in bench.CONV_CASES} == {"NCHW", "NHWC"}
    kinds = [kind for kind, _, _ in bench.default_cases()]
    assert kinds.count("lenet") == 1 and bench.STEP_CASES[0][0] == (256, 1, 28, 28)


def test_summarize_puts_channel_last_rows_in_groups_of_their_own():
    rows = [{"kind": "maxpool", "ratio": 0.5, "mode": "hybrid", "settings": {}},
            {"kind": "avgpool", "ratio": 2.0, "mode": "hybrid", "settings": {"layout": "NHWC"}},
            {"kind": "maxpool", "ratio": 8.0, "mode": "hybrid", "settings": {"layout": "NHWC"}}]
    assert bench.summarize(rows) == {"hybrid": {"pool": 0.5, "pool NHWC": pytest.approx(4.0)}}


def test_summarize_takes_the_geometric_mean_of_each_group_per_mode():
    rows = [{"kind": "conv", "ratio": 1.0, "mode": "static"},
            {"kind": "conv", "ratio": 4.0, "mode": "static"},
            {"kind": "maxpool", "ratio": 2.0, "mode": "static"},
            {"kind": "avgpool", "ratio": 8.0, "mode": "static"},
            {"kind": "conv", "ratio": 3.0, "mode": "imperative"},
            {"kind": "lenet", "ratio": 1.2, "mode": "imperative"}]
    summary = bench.summarize(rows)
    assert summary == {"static": {"conv": pytest.approx(2.0), "pool": pytest.approx(4.0)},
                       "imperative": {"conv": pytest.approx(3.0), "lenet": pytest.approx(1.2)}}


def test_format_table_lists_every_row_with_its_mode_and_the_geometric_means():
    rows = [{"kind": "conv", "layer": "conv A", "mode": "hybrid", "ours_ms": 3.0,
             "builtin_ms": 2.0, "ratio": 1.5},
            {"kind": "maxpool", "layer": "maxpool B", "mode": "hybrid", "ours_ms": 1.0,
             "builtin_ms": 0.5, "ratio": 2.0}]
    lines = bench.format_table(rows).splitlines()
    assert lines[0].split() == ["layer", "mode", "ours", "ms", "gluon", "ms", "ratio"]
    assert lines[1].split() == ["conv", "A", "hybrid", "3.000", "2.000", "1.50"]
    assert lines[2].split() == ["maxpool", "B", "hybrid", "1.000", "0.500", "2.00"]
    assert lines[3:] == ["geometric mean ratio, conv, hybrid: 1.50",
                         "geometric mean ratio, pool, hybrid: 2.00"]


@pytest.mark.parametrize("values", [[], [1.0, 0.0], [2.0, -1.0]])
def test_geometric_mean_refuses_empty_or_non_positive_values(values):
    with pytest.raises(ValueError, match="geometric_mean needs positive values"):
        bench.geometric_mean(values)


def test_run_benchmark_refuses_zero_repeats():
    with pytest.raises(ValueError, match="repeats must be positive, got 0"):
        bench.run_benchmark(TINY_CASES, repeats=0)


def _run(*args, **env_vars):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env_vars))


def test_script_prints_the_table_and_writes_json(tmp_path):
    path = tmp_path / "bench" / "result.json"
    result = _run("--repeats", "1", "--number", "1", "--warmup", "0", "--mode", "static",
                  "--json", str(path))
    assert result.returncode == 0, result.stderr
    report = json.loads(path.read_text())
    n_rows = len(bench.CONV_CASES) + 2 * len(bench.POOL_CASES) + len(bench.STEP_CASES)
    assert len(report["results"]) == n_rows
    assert {r["mode"] for r in report["results"]} == {"static"}
    assert report["modes"] == ["static"] and report["busy"] == 0
    assert report["geometric_mean_ratio"].keys() == {"static"}
    assert set(report["geometric_mean_ratio"]["static"]) == {"conv", "conv NHWC", "pool",
                                                             "pool NHWC", "lenet"}
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in report["results"])
    out = result.stdout.splitlines()
    assert out[0] == f"our pools and kernel-sized convs compute with: {report['pooling']}"
    assert out[1].split() == ["layer", "mode", "ours", "ms", "gluon", "ms", "ratio"]
    assert sum(line.startswith("geometric mean ratio") for line in out) == 5


def test_script_busy_runs_and_reaps_its_background_processes(tmp_path, monkeypatch):
    path = tmp_path / "busy.json"
    monkeypatch.setattr(bench, "default_cases", lambda: TINY_CASES)    # in-process: tiny table
    script = _script()
    started = []
    real = bench.busy_processes

    def spying(n, *args, **kwargs):
        with real(n, *args, **kwargs) as processes:
            started.extend(processes)
            assert all(p.poll() is None for p in processes)
            yield processes
    monkeypatch.setattr(bench, "busy_processes", bench.contextlib.contextmanager(spying))
    assert script.main(["--repeats", "1", "--number", "1", "--warmup", "0", "--busy", "2",
                        "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["busy"] == 2 and report["modes"] == ["imperative", "hybrid", "static"]
    assert len(report["results"]) == 3 * len(TINY_CASES) and "hybridize_gain" not in report
    assert len(started) == 2 and all(p.returncode is not None for p in started)
    assert not any(_alive(p.pid) for p in started)


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    (["--repeats", "many"], "argument --repeats: must be a whole number >= 0, got 'many'"),
    (["--json", "out.txt"], "argument --json: 'out.txt' must end in one of .json"),
    (["--fast"], "unrecognized arguments: --fast"),
    (["--pooling", "median"],
     "argument --pooling: invalid choice: 'median' (choose from 'auto', 'kernel', 'ops')"),
    (["--mode", "fast"], "argument --mode: invalid choice: 'fast' (choose from 'imperative', "
                         "'hybrid', 'static', 'all')"),
    (["--busy", "-1"], "argument --busy: must be >= 0, got -1"),
])
def test_script_bad_arguments_give_one_line_and_exit_2(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr == f"benchmark.py: error: {message}\n"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_script_pooling_ops_times_the_mxnet_operator_pools(tmp_path, monkeypatch):
    path = tmp_path / "ops.json"
    monkeypatch.setattr(bench, "default_cases", lambda: TINY_CASES)    # in-process: tiny table
    script = _script()
    from cnn_base import native
    old = native.enabled()
    try:
        assert script.main(["--repeats", "1", "--number", "1", "--warmup", "0", "--pooling", "ops",
                            "--mode", "imperative", "--json", str(path)]) == 0
        assert not native.enabled()
    finally:
        native.set_enabled(old)
    assert json.loads(path.read_text())["pooling"].startswith("MXNet operators")


def test_script_hybridize_gain_adds_the_table_and_the_json_entry(tmp_path, monkeypatch, capsys):
    path = tmp_path / "gain.json"
    monkeypatch.setattr(bench, "default_cases", lambda: TINY_CASES[:2])  # in-process: tiny table
    script = _script()
    assert script.main(["--repeats", "1", "--number", "1", "--warmup", "0", "--mode", "static",
                        "--hybridize-gain", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [r["kind"] for r in report["hybridize_gain"]] == ["conv", "maxpool"]
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("layer (ours only)"))
    assert len(out[header + 1:header + 3]) == 2 and out[header + 1].startswith("conv")


def test_script_pooling_kernel_without_the_kernel_is_one_line_and_exit_2():
    result = _run("--pooling", "kernel", CNN_BASE_NATIVE="0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("benchmark.py: error: --pooling kernel: the C++ kernel is not "
                             "available: MXNet operators (C++ kernel: turned off by "
                             "CNN_BASE_NATIVE=0)\n")


def test_run_benchmark_reports_progress_after_each_case():
    calls = []
    bench.run_benchmark(TINY_CASES[:2], repeats=1, number=1, warmup=0,
                        progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 2), (2, 2)]


def test_layers_of_a_network_are_read_from_its_graph_with_their_input_shapes():
    layers = bench.layers_of_net("resnet18", (2, 1, 96, 96))
    convs = [c for c in layers if c[0] == "conv"]
    assert len(convs) == 1 + 8 * 2 + 3                     # stem, two per residual, 1x1s
    assert convs[0] == ("conv", (2, 1, 96, 96), dict(
        channels=64, kernel_size=(7, 7), strides=(2, 2), padding=(3, 3), dilation=(1, 1),
        groups=1, use_bias=True))
    assert layers[1] == ("maxpool", (2, 64, 48, 48), dict(
        pool_size=(3, 3), strides=(2, 2), padding=(1, 1), ceil_mode=False))
    assert layers[-1] == ("globalavgpool", (2, 512, 3, 3), {})
    zoo = bench.layers_of_net("zoo:mobilenetv2_1.0", (1, 3, 224, 224))
    assert any(c[0] == "conv" and c[2]["groups"] == c[1][1] > 1 for c in zoo)   # depthwise


def test_distinct_layers_of_the_networks_are_each_listed_once():
    cases = [("net", (2, 1, 96, 96), dict(net="resnet18")), ("net", (2, 1, 96, 96),
                                                                dict(net="resnet18"))]
    layers = bench.layer_cases_of_nets(cases)
    assert len(layers) == len({repr(c) for c in bench.layers_of_net("resnet18", (2, 1, 96, 96))})


def test_conv_flops_count_the_three_products_of_a_training_pass():
    # 2 images, 3 -> 4 channels, 3x3 kernel, 5x5 output: 2 * 4 * 25 * 3 * 9 multiply-adds each
    assert bench.conv_flops((2, 3, 5, 5), dict(channels=4, kernel_size=3, padding=1)) == \
        6 * 2 * 4 * 25 * 3 * 9


def test_a_network_training_step_is_timed_for_ours_and_the_builtin():
    rows = bench.run_benchmark([("net", (4, 1, 28, 28), dict(net="lenet_bn", classes=10,
                                                              lr=0.1))],
                               repeats=1, number=1, warmup=0, modes=("imperative", "static"))
    assert [r["mode"] for r in rows] == ["imperative", "static"]
    assert all(r["ours_ms"] > 0 and r["builtin_ms"] > 0 for r in rows)
    assert set(bench.summarize(rows)["static"]) == {"net"}


def test_build_net_refuses_an_unknown_network():
    with pytest.raises(ValueError, match="net must be one of"):
        bench.build_net("lenet5000", "custom")


def test_script_nets_times_networks_and_layers(tmp_path, monkeypatch):
    """--nets on one small network (NET_CASES replaced): both tables and the JSON."""
    monkeypatch.setattr(bench, "NET_CASES", [((2, 1, 28, 28), dict(net="lenet_bn", classes=10,
                                                                   lr=0.1))])
    monkeypatch.setattr(bench, "matmul_gflops", lambda: 123.0)
    out = tmp_path / "nets.json"
    assert benchmark_cli.main(["--nets", "--repeats", "1", "--number", "1", "--warmup", "0",
                               "--mode", "static", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["kind"] for r in report["results"]] == ["net"]
    assert {r["kind"] for r in report["layers"]} == {"conv", "maxpool"}
    assert all("ours_gflops" in r for r in report["layers"] if r["kind"] == "conv")
    assert report["matmul_gflops"] == 123.0


@pytest.mark.parametrize("mode", ["imperative", "hybrid", "static"])
@pytest.mark.parametrize("kind, kwargs", [("conv", dict(channels=4, kernel_size=3, padding=1)),
                                          ("maxpool", dict(pool_size=3, strides=2, padding=1))])
def test_a_fed_layer_pair_runs_both_blocks_on_a_relus_output_and_the_relu_alone(kind, kwargs,
                                                                                 mode):
    ours, builtin, feed = bench._layer_pair(kind, (2, 3, 8, 8), kwargs, mode, mx.cpu(),
                                            fed=True)
    for step in (ours, builtin, feed):
        step()
    nd.waitall()
    assert callable(feed)
    assert bench._layer_pair(kind, (2, 3, 8, 8), kwargs, mode, mx.cpu())[2] is None


def test_run_benchmark_fed_times_layers_after_a_relu_and_takes_its_time_off_both(monkeypatch):
    medians = iter([[0.005, 0.004, 0.001], [0.0009, 0.004, 0.001]])   # ours, built-in, ReLU
    monkeypatch.setattr(bench, "_medians_in_turns", lambda steps, *timing: next(medians))
    case = ("maxpool", (2, 3, 8, 8), dict(pool_size=2))
    taken, left = (bench.run_benchmark([case], repeats=1, number=1, warmup=0, fed=True)[0]
                   for _ in range(2))
    assert taken["fed"] == "relu taken off" and taken["relu_ms"] == pytest.approx(1.0)
    assert (taken["ours_ms"], taken["builtin_ms"]) == pytest.approx((4.0, 3.0))
    assert taken["ratio"] == pytest.approx(4.0 / 3.0)
    # a layer the ReLU's time would swallow keeps it, and says so
    assert left["fed"] == "relu included"
    assert (left["ours_ms"], left["builtin_ms"]) == pytest.approx((0.9, 4.0))


def test_time_fed_layer_times_three_passes_positive():
    ours, builtin, relu = bench.time_fed_layer("maxpool", (4, 8, 16, 16), dict(pool_size=2),
                                               "static", repeats=2, number=1, warmup=1)
    assert min(ours, builtin, relu) > 0


@pytest.mark.parametrize("per_pass, number, passes", [
    (0.01, 1, 1),           # a timing of one pass already lasts 10 ms
    (0.001, 3, 5),          # 3 ms -> 5 passes make 5 ms
    (0.0001, 1, 50),
    (1e-9, 2, 1000),        # at most 1000
    (0.0001, 80, 80),       # never fewer than asked
])
def test_short_steps_are_timed_over_enough_passes_to_last_the_shortest_timing(
        monkeypatch, per_pass, number, passes):
    calls = []
    monkeypatch.setattr(bench, "_time", lambda step, n: calls.append((step, n)) or per_pass)
    assert bench.MIN_TIMING_SECONDS == 0.005
    assert bench._passes_for(["ours", "builtin"], number) == passes
    assert calls == [("ours", number), ("builtin", number)]


def test_medians_in_turns_times_every_step_with_the_passes_found(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_passes_for", lambda steps, number: 7)
    monkeypatch.setattr(bench, "_time", lambda step, n: seen.append(n) or 1.0)
    assert bench._medians_in_turns(["a", "b"], 3, 1, 0) == [1.0, 1.0]
    assert seen == [7] * 6
