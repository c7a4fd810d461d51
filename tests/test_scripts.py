"""The scripts as a user runs them: ``python scripts/x.py ...`` in a fresh process."""
import json
import os
import pathlib
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"
HAS_GPU = mx.context.num_gpus() > 0
BLOG_LINES = ["batch 2, loss 4.949", "batch 4, loss 0.831", "batch 6, loss 0.140",
              "batch 8, loss 0.024", "batch 10, loss 0.004"]


def run(script, *args, cwd=None, **env_vars):
    env = dict(os.environ, MPLBACKEND="Agg", **env_vars)
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True,
                          text=True, encoding="utf-8", cwd=cwd, env=env, timeout=120)


def lines_between(out, start, stop):
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(start))
    j = next(n for n, line in enumerate(lines) if n > i and line.startswith(stop))
    return lines[i + 1: j]


# --- reproduce_blog.py -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def blog():
    result = run("reproduce_blog.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_reproduce_blog_prints_the_blogs_learning_run_exactly(blog):
    lines = blog.splitlines()
    start = lines.index(BLOG_LINES[0])
    assert lines[start: start + 5] == BLOG_LINES
    kernel = " ".join(blog.split("batch 10, loss 0.004", 1)[1].split())
    assert kernel.startswith("[[ 0.9895 -0.9873705]] <NDArray 1x2 @cpu(0)>")


def test_reproduce_blog_prints_every_section_heading_in_the_blogs_order(blog):
    headings = [line.split(" ", 2)[1] for line in blog.splitlines() if line.startswith("#")]
    assert headings == ["1", "1.1", "1.2", "1.3", "1.4", "2", "2.1", "2.2", "3", "3.1", "3.2",
                        "3.3", "4", "4.1", "4.2", "4.3", "5"]
    assert "## 1.1 互相关运算 (Cross-correlation)" in blog.splitlines()
    assert "# 5 为什么是卷积神经网络 (Why convolutional neural networks)" in blog.splitlines()


def _values(out, start, stop):
    """The numbers printed between two headings, NDArray footers and pooling settings dropped."""
    text = " ".join(line for line in lines_between(out, start, stop)
                    if not line.startswith(("<", "nn.MaxPool2D(")))
    return [float(v) for v in text.replace("[", " ").replace("]", " ").split()]


@pytest.mark.parametrize("start, stop, expected", [
    ("## 1.1", "## 1.2", [19, 25, 37, 43]),
    ("## 3.1", "## 3.2", [56, 72, 104, 120]),
    ("## 4.1", "## 4.2", [4, 5, 7, 8, 2, 3, 5, 6]),
])
def test_reproduce_blog_prints_the_blogs_arrays(blog, start, stop, expected):
    assert _values(blog, start, stop) == expected


def test_reproduce_blog_edge_output_marks_both_edges(blog):
    text = "\n".join(lines_between(blog, "## 1.3", "通过数据"))
    assert text.count("[ 0.  1.  0.  0.  0. -1.  0.]") == 6


def test_reproduce_blog_prints_the_four_padding_and_stride_shapes(blog):
    shapes = [line.rsplit(": ", 1)[1] for line in
              lines_between(blog, "## 2.1", "## 2.2") + lines_between(blog, "## 2.2", "# 3")
              if line.strip()]
    assert shapes == ["(8, 8)", "(8, 8)", "(4, 4)", "(2, 2)"]


def test_reproduce_blog_prints_three_output_channels_and_1x1_matmul_agreement(blog):
    out = " ".join(lines_between(blog, "## 3.2", "## 3.3"))
    assert "shape (3, 2, 2, 2)" in out and "<NDArray 3x2x2 @cpu(0)>" in out
    for v in ["56.", "76.", "96.", "224."]:
        assert v in out
    (line,) = [line for line in lines_between(blog, "## 3.3", "# 4") if line.strip()]
    assert line.endswith("< 1e-6: True")
    assert float(line.split("= ")[1].split(" <")[0]) < 1e-6


def test_reproduce_blog_prints_the_pooling_padding_stride_and_channel_examples(blog):
    pooled = _values(blog, "## 4.2", "## 4.3")
    assert pooled == list(range(16)) + [10, 5, 7, 13, 15, 0, 3, 8, 11, 12, 15]
    channels = _values(blog, "## 4.3", "# 5")
    assert channels == list(range(16)) + list(range(1, 17)) + [5, 7, 13, 15, 6, 8, 14, 16]


def test_reproduce_blog_prints_each_pools_settings_before_its_output(blog):
    settings = [line for line in lines_between(blog, "## 4.2", "# 5") if line.startswith("nn.")]
    assert settings == [
        "nn.MaxPool2D(3): window 3×3, no padding, stride 3 down and 3 across",
        "nn.MaxPool2D(3, padding=1, strides=2): window 3×3, padding 1 row and 1 column on each "
        "side, stride 2 down and 2 across",
        "nn.MaxPool2D((2, 3), padding=(1, 2), strides=(2, 3)): window 2×3, padding 1 row and "
        "2 columns on each side, stride 2 down and 3 across",
        "nn.MaxPool2D(3, padding=1, strides=2) on both channels: window 3×3, padding 1 row and "
        "1 column on each side, stride 2 down and 2 across"]
    # each setting comes before its output: the first output (10) follows the first setting
    lines = lines_between(blog, "## 4.2", "## 4.3")
    first = lines.index(settings[0])
    assert "[[[[10.]]]]" in lines[first + 1: first + 3]


def test_reproduce_blog_prints_the_why_cnn_arithmetic(blog):
    out = blog.split("\n# 5 ", 1)[1]
    assert "weight 3,000,000×256" in out and "768,000,000 parameters" in out
    assert "3.07 GB" in out


# --- learn_edge_kernel.py --------------------------------------------------------------------

@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn") / "new" / "folder"     # created by the script
    result = run("learn_edge_kernel.py", "--block", "both", "--ctx", "cpu",
                 "--plot", str(folder / "edge.png"), "--json", str(folder / "edge.json"))
    assert result.returncode == 0, result.stderr
    return result, folder


def test_learn_edge_kernel_prints_the_blog_lines_for_each_block(both):
    result, _ = both
    for block in ("custom", "builtin"):
        assert lines_between(result.stdout, f"== {block}:", "learned kernel") == BLOG_LINES
    assert result.stdout.count("learned kernel: [[ 0.9895    -0.9873705]]") == 2


def test_learn_edge_kernel_writes_json_with_both_blocks_kernels_and_every_loss(both):
    _, folder = both
    data = json.loads((folder / "edge.json").read_text())
    assert set(data) == {"custom", "builtin"}
    for block, d in data.items():
        assert d["ctx"] == "cpu(0)"
        assert len(d["losses"]) == 10
        np.testing.assert_allclose(d["kernel"], [[1, -1]], atol=0.05)
        assert "batch 4, loss %.3f" % d["losses"][3] == BLOG_LINES[1]
    np.testing.assert_allclose(data["custom"]["losses"], data["builtin"]["losses"], rtol=1e-5)


def test_learn_edge_kernel_writes_the_plot(both):
    _, folder = both
    assert (folder / "edge.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learn_edge_kernel_on_cpu1_reports_cpu1_for_every_block(tmp_path):
    result = run("learn_edge_kernel.py", "--ctx", "cpu(1)", "--iters", "3", "--json",
                 str(tmp_path / "k.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "k.json").read_text())
    assert {block: d["ctx"] for block, d in data.items()} == {"custom": "cpu(1)",
                                                              "builtin": "cpu(1)"}
    assert all(len(d["losses"]) == 3 for d in data.values())
    assert "on cpu(1)" in result.stdout


def test_learn_edge_kernel_single_block_with_other_settings(tmp_path):
    result = run("learn_edge_kernel.py", "--block", "custom", "--iters", "4", "--lr", "0.05",
                 "--seed", "7", "--json", str(tmp_path / "k.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "k.json").read_text())
    assert list(data) == ["custom"]
    assert (data["custom"]["lr"], data["custom"]["seed"], len(data["custom"]["losses"])) == (0.05, 7, 4)
    assert "== builtin" not in result.stdout
    assert lines_between(result.stdout, "== custom:", "learned kernel") == [
        "batch %d, loss %.3f" % (i, data["custom"]["losses"][i - 1]) for i in (2, 4)]


@pytest.mark.parametrize("lr", ["0.2", "1000"])     # a loss of ~3e16, and inf
def test_learn_edge_kernel_says_a_run_diverged_whether_its_loss_is_huge_or_inf(lr):
    result = run("learn_edge_kernel.py", "--block", "custom", "--ctx", "cpu", "--lr", lr)
    assert result.returncode == 1, result.stderr          # a diverged run is a failed run
    (line,) = [line for line in result.stdout.splitlines() if "diverged" in line]
    assert line.startswith("the run diverged (the loss grew from ")
    assert line.endswith(f"lr {lr} is too large, try a smaller --lr")


def test_learn_edge_kernel_on_a_terminal_shows_a_progress_bar_for_a_long_run(tmp_path):
    """stderr is a pseudo-terminal here; the bar shows after a second and is erased when done."""
    import fcntl
    import pty
    import struct
    import termios
    import threading
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    chunks = []

    def read():     # concurrently: a full pseudo-terminal would block the script
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:     # EIO: the script has exited and closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(SCRIPTS / "learn_edge_kernel.py"), "--block",
                           "custom", "--ctx", "cpu", "--iters", "3000"], stdout=subprocess.PIPE,
                          stderr=child, env=env, timeout=600)
    os.close(child)
    reader.join(timeout=30)
    os.close(main)
    assert done.returncode == 0
    shown = b"".join(chunks).decode()
    assert "learning (custom)" in shown and "/3000" in shown
    assert "batch 3000, loss" in done.stdout.decode()


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "a_file"
    path.write_text("not a folder")
    return path


BAD_ARGUMENTS = [
    (["--block", "keras"], "--block"),
    (["--ctx", "tpu"], "--ctx"),
    (["--ctx", "cpu(-1)"], "--ctx"),
    (["--iters", "-1"], "--iters"),
    (["--iters", "ten"], "--iters"),
    (["--lr", "fast"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--seed", "-2"], "--seed"),
    (["--plot", "{a_file}/edge.png"], "--plot"),
    (["--plot", "{tmp}/edge.xyz"], "--plot"),
    (["--json", "{a_file}/edge.json"], "--json"),
    (["--json", "{tmp}"], "--json"),
    (["--unknown"], "--unknown"),
]


@pytest.mark.parametrize("args, named", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_learn_edge_kernel_bad_argument_is_one_line_naming_it_and_exit_2(args, named, a_file,
                                                                          tmp_path):
    args = [a.format(a_file=a_file, tmp=tmp_path) for a in args]
    result = run("learn_edge_kernel.py", *args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.skipif(HAS_GPU, reason="needs a machine where MXNet sees no GPU")
def test_learn_edge_kernel_asked_for_an_unusable_gpu_says_so_and_suggests_cpu():
    result = run("learn_edge_kernel.py", "--ctx", "gpu")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--ctx" in line and "gpu(0) cannot be used" in line and line.endswith("use --ctx cpu")


@pytest.mark.skipif(not HAS_GPU, reason="MXNet sees no GPU here")
def test_learn_edge_kernel_auto_runs_on_the_gpu(tmp_path):
    result = run("learn_edge_kernel.py", "--iters", "3", "--json", str(tmp_path / "k.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "k.json").read_text())
    assert {d["ctx"] for d in data.values()} == {"gpu(0)"}


# --- draw_figures.py -------------------------------------------------------------------------

def test_draw_figures_writes_the_pngs_into_out_by_default(tmp_path):
    result = run("draw_figures.py", "--block", "builtin", "--ctx", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(pngs) == 8 and "edge_kernel_on_photo.png" in pngs
    assert "learned kernel (builtin, 10 iterations on cpu(0)): [[ 0.9895    -0.9873705]]" \
        in result.stdout


def test_draw_figures_animate_writes_the_gifs_too(tmp_path):
    from PIL import Image

    from cnn_base import animations

    out = tmp_path / "figs"
    result = run("draw_figures.py", "--block", "builtin", "--ctx", "cpu", "--out", str(out),
                 "--animate")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*.png"))) == 8
    expected = animations.blog_animations()
    assert sorted(p.stem for p in out.glob("*.gif")) == sorted(expected)
    for name, anim in expected.items():
        assert f"wrote {out / name}.gif" in result.stdout
        with Image.open(out / f"{name}.gif") as gif:      # one frame per window position
            assert gif.n_frames == len(anim.frames)


@pytest.mark.parametrize("script, args, named", [
    ("build_native.py", ["--fast"], "--fast"),
    ("draw_figures.py", ["--out", "{a_file}"], "--out"),
    ("draw_figures.py", ["--block", "both"], "--block"),
    ("reproduce_blog.py", ["--seed", "x"], "--seed"),
])
def test_other_scripts_bad_argument_is_one_line_and_exit_2(script, args, named, a_file):
    result = run(script, *[a.format(a_file=a_file) for a in args])
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and named in result.stderr


# --- build_native.py -------------------------------------------------------------------------

def test_build_native_says_the_kernel_is_up_to_date_when_built():
    from cnn_base import native
    if not native.loaded():
        pytest.skip(f"the C++ pooling kernel is not built here: {native.status()}")
    result = run("build_native.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"build_native.py: up to date: {native.library_path()}\n"


@pytest.mark.parametrize("optional, status, word", [(False, 1, "error"), (True, 0, "warning")])
def test_build_native_failing_compiler_is_reported_and_optional_makes_it_a_warning(
        optional, status, word, tmp_path):
    args = ["--force"] + (["--optional"] if optional else [])
    # `false` exits with status 1; the cache is a fresh folder, to see what a failure leaves
    result = run("build_native.py", *args, CXX="false", CNN_BASE_CACHE=str(tmp_path))
    assert result.returncode == status
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"build_native.py: {word}: false ") and "exit code 1" in first
    assert "Traceback" not in result.stderr
    assert ("MXNet operators" in result.stderr) == optional
    # no library and no partial one: only the lock that builds take turns on
    assert [p.name for p in tmp_path.iterdir()] == [".build.lock"]
