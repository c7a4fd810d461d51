"""cnn_base.benchmark and scripts/benchmark.py: results as data, no timing assertions."""
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from cnn_base import benchmark as bench

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"
TINY_CASES = [("conv", (2, 3, 8, 8), dict(channels=4, kernel_size=3, padding=1)),
              ("maxpool", (2, 3, 8, 8), dict(pool_size=3, strides=2, padding=1)),
              ("avgpool", (2, 3, 8, 8), dict(pool_size=2))]


def test_run_benchmark_returns_one_result_per_case_with_ours_over_builtin():
    results = bench.run_benchmark(TINY_CASES, repeats=1, number=1, warmup=0)
    assert [r["kind"] for r in results] == ["conv", "maxpool", "avgpool"]
    for r, (kind, shape, kwargs) in zip(results, TINY_CASES):
        assert r["input_shape"] == list(shape) and r["settings"] == kwargs
        assert r["ours_ms"] > 0 and r["builtin_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ours_ms"] / r["builtin_ms"])
        assert r["layer"].startswith(kind)


def test_default_table_holds_the_issues_layers():
    conv = {(shape, kw["channels"], kw["kernel_size"], kw.get("strides", 1), kw.get("padding", 0))
            for shape, kw in bench.CONV_CASES}
    assert conv >= {((8, 16, 64, 64), 32, 3, 1, 1), ((32, 1, 28, 28), 6, 5, 1, 2),
                    ((32, 6, 14, 14), 16, 5, 1, 0), ((8, 64, 32, 32), 64, 3, 2, 1)}
    pool = {(shape, kw["pool_size"], kw["strides"], kw.get("padding", 0))
            for shape, kw in bench.POOL_CASES}
    assert pool >= {((32, 6, 28, 28), 2, 2, 0), ((8, 32, 64, 64), 3, 2, 1)}


def test_summarize_takes_the_geometric_mean_of_conv_and_of_pooling_ratios():
    rows = [{"kind": "conv", "ratio": 1.0}, {"kind": "conv", "ratio": 4.0},
            {"kind": "maxpool", "ratio": 2.0}, {"kind": "avgpool", "ratio": 8.0}]
    summary = bench.summarize(rows)
    assert summary == {"conv": pytest.approx(2.0), "pool": pytest.approx(4.0)}


def test_format_table_lists_every_row_and_the_geometric_means():
    rows = [{"kind": "conv", "layer": "conv A", "ours_ms": 3.0, "builtin_ms": 2.0, "ratio": 1.5},
            {"kind": "maxpool", "layer": "maxpool B", "ours_ms": 1.0, "builtin_ms": 0.5,
             "ratio": 2.0}]
    lines = bench.format_table(rows).splitlines()
    assert lines[1].split() == ["conv", "A", "3.000", "2.000", "1.50"]
    assert lines[2].split() == ["maxpool", "B", "1.000", "0.500", "2.00"]
    assert lines[3:] == ["geometric mean ratio, conv: 1.50", "geometric mean ratio, pool: 2.00"]


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
    result = _run("--repeats", "1", "--number", "1", "--warmup", "0", "--json", str(path))
    assert result.returncode == 0, result.stderr
    report = json.loads(path.read_text())
    assert len(report["results"]) == len(bench.CONV_CASES) + 2 * len(bench.POOL_CASES)
    assert set(report["geometric_mean_ratio"]) == {"conv", "pool"}
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in report["results"])
    out = result.stdout.splitlines()
    assert out[0] == f"our pools compute with: {report['pooling']}"
    assert out[1].split() == ["layer", "ours", "ms", "gluon", "ms", "ratio"]
    assert sum(line.startswith("geometric mean ratio") for line in out) == 2


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
    (["--repeats", "many"], "argument --repeats: must be a whole number >= 0, got 'many'"),
    (["--json", "out.txt"], "argument --json: 'out.txt' must end in one of .json"),
    (["--fast"], "unrecognized arguments: --fast"),
    (["--pooling", "median"],
     "argument --pooling: invalid choice: 'median' (choose from 'auto', 'kernel', 'ops')"),
])
def test_script_bad_arguments_give_one_line_and_exit_2(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr == f"benchmark.py: error: {message}\n"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_script_pooling_ops_times_the_mxnet_operator_pools(tmp_path):
    path = tmp_path / "ops.json"
    result = _run("--repeats", "1", "--number", "1", "--warmup", "0", "--pooling", "ops",
                  "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("our pools compute with: MXNet operators")
    assert json.loads(path.read_text())["pooling"].startswith("MXNet operators")


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
