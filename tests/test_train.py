import json

import mxnet as mx
import numpy as np
import pytest

import cnn_base as cb

# what the blog prints for its learning run (seed 0 behaves like the blog's unseeded process)
BLOG_LINES = ["batch 2, loss 4.949", "batch 4, loss 0.831", "batch 6, loss 0.140",
              "batch 8, loss 0.024", "batch 10, loss 0.004"]
BLOG_KERNEL = [[0.9895, -0.9873705]]


@pytest.fixture(scope="module")
def runs():
    return {block: cb.learn_edge_kernel(block, ctx="cpu") for block in cb.BLOCKS}


def test_builtin_run_with_seed_0_prints_the_blogs_lines_and_kernel(runs):
    run = runs["builtin"]
    assert run.loss_lines() == BLOG_LINES
    np.testing.assert_allclose(run.kernel.asnumpy(), BLOG_KERNEL, rtol=0, atol=1e-6)


def test_custom_conv2d_learns_exactly_what_the_builtin_learns(runs):
    custom, builtin = runs["custom"], runs["builtin"]
    assert custom.loss_lines() == builtin.loss_lines() == BLOG_LINES
    np.testing.assert_allclose(custom.losses, builtin.losses, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(custom.kernel_path, builtin.kernel_path, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("block", cb.BLOCKS)
def test_each_block_learns_the_edge_kernel_within_005_in_10_iterations(runs, block):
    run = runs[block]
    assert run.iters == 10
    np.testing.assert_allclose(run.kernel.asnumpy(), cb.edge_kernel().asnumpy(), atol=0.05)
    np.testing.assert_allclose(run.Y_hat.asnumpy(), run.Y.asnumpy(), atol=0.05)


def test_losses_are_every_iterations_squared_error_of_the_kernel_before_its_update(runs):
    run = runs["builtin"]
    X = run.X.asnumpy()[0, 0]
    Y = run.Y.asnumpy()[0, 0]
    bias = run.net.bias.data().asscalar()
    for loss, (k0, k1) in zip(run.losses, run.kernel_path[:-1]):
        Y_hat = k0 * X[:, :-1] + k1 * X[:, 1:] + bias
        assert loss == pytest.approx(((Y_hat - Y) ** 2).sum(), rel=1e-5)
    assert run.losses == sorted(run.losses, reverse=True)


def test_kernel_path_starts_at_the_initial_weights_and_ends_at_the_learned_kernel(runs):
    run = runs["builtin"]
    assert run.kernel_path.shape == (11, 2)
    np.testing.assert_array_equal(run.kernel_path[-1], run.kernel.asnumpy()[0])
    assert np.abs(run.kernel_path[0]).max() <= 0.07          # Gluon's default Uniform(0.07)


def test_bias_is_left_alone(runs):
    for run in runs.values():
        assert run.net.bias.data().asscalar() == 0


def test_the_same_seed_gives_the_same_start_and_another_seed_another(runs):
    other = cb.learn_edge_kernel("builtin", ctx="cpu", iters=0, seed=1)
    np.testing.assert_array_equal(runs["custom"].kernel_path[0], runs["builtin"].kernel_path[0])
    assert not np.array_equal(other.kernel_path[0], runs["builtin"].kernel_path[0])


def test_zero_iterations_keep_the_initial_kernel():
    run = cb.learn_edge_kernel("builtin", ctx="cpu", iters=0)
    assert run.losses == [] and run.loss_lines() == []
    assert run.kernel_path.shape == (1, 2)
    np.testing.assert_array_equal(run.kernel.asnumpy()[0], run.kernel_path[0])


@pytest.mark.parametrize("block", cb.BLOCKS)
def test_a_run_on_cpu1_keeps_every_array_parameter_and_gradient_on_cpu1(block):
    ctx = mx.cpu(1)
    run = cb.learn_edge_kernel(block, ctx="cpu(1)", iters=2)
    assert run.ctx == ctx
    arrays = {"X": run.X, "Y": run.Y, "Y_hat": run.Y_hat, "kernel": run.kernel,
              "weight": run.net.weight.data(), "bias": run.net.bias.data(),
              "weight grad": run.net.weight.grad(), "bias grad": run.net.bias.grad()}
    assert {name: a.context for name, a in arrays.items()} == {name: ctx for name in arrays}
    assert run.net.weight.list_ctx() == run.net.bias.list_ctx() == [ctx]
    assert run.to_dict()["ctx"] == "cpu(1)"


def test_a_run_on_cpu1_prints_the_same_lines_as_on_cpu0(runs):
    assert cb.learn_edge_kernel("builtin", ctx=mx.cpu(1)).loss_lines() == BLOG_LINES


def test_to_dict_is_json_with_kernel_every_loss_and_ctx(runs):
    d = json.loads(json.dumps(runs["custom"].to_dict()))
    assert d["block"] == "custom" and d["ctx"] == "cpu(0)"
    assert len(d["losses"]) == 10 and len(d["kernel_path"]) == 11
    np.testing.assert_allclose(d["kernel"], BLOG_KERNEL, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"block": "keras"}, ValueError, "block must be one of custom, builtin, got 'keras'"),
    ({"iters": -1}, ValueError, "iters must be >= 0, got -1"),
    ({"iters": 2.5}, TypeError, "iters must be an int"),
    ({"lr": "fast"}, TypeError, "lr must be a number"),
    ({"lr": float("nan")}, ValueError, "lr must be a positive finite number"),
    ({"lr": 0}, ValueError, "lr must be a positive finite number"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"ctx": "tpu"}, ValueError, "ctx must be one of"),
])
def test_learn_edge_kernel_refuses_bad_arguments_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        cb.learn_edge_kernel(**kwargs)


@pytest.mark.skipif(mx.context.num_gpus() == 0, reason="MXNet sees no GPU here")
def test_a_gpu_run_stays_on_the_gpu_and_learns_the_same_kernel(runs):
    run = cb.learn_edge_kernel("custom", ctx="gpu")
    assert run.ctx == mx.gpu(0)
    for a in (run.X, run.Y, run.Y_hat, run.net.weight.data(), run.net.weight.grad()):
        assert a.context == mx.gpu(0)
    np.testing.assert_allclose(run.kernel.asnumpy(), runs["builtin"].kernel.asnumpy(), atol=1e-5)


def test_a_diverging_run_is_flagged_and_its_json_has_null_for_inf_and_nan():
    run = cb.learn_edge_kernel("builtin", ctx="cpu", iters=30, lr=100)
    assert run.diverged
    d = run.to_dict()
    json.dumps(d, allow_nan=False)           # standard JSON: no NaN or Infinity
    assert d["kernel"] == [[None, None]] and None in d["losses"]
    assert not cb.learn_edge_kernel("builtin", ctx="cpu", iters=2).diverged


@pytest.mark.parametrize("lr, iters, diverged", [
    (0.03, 10, False),      # the blog's run: the loss falls
    (0.2, 10, True),        # the loss grows to ~3e16, still finite
    (1000, 10, True),       # inf, then nan
    (100, 1, False),        # one loss: nothing to compare yet
])
def test_diverged_means_the_loss_grew_or_became_inf_or_nan(lr, iters, diverged):
    run = cb.learn_edge_kernel("builtin", ctx="cpu", iters=iters, lr=lr)
    assert run.diverged is diverged
    assert run.to_dict()["diverged"] is diverged
    if lr == 0.2:
        assert np.isfinite(run.losses).all() and run.losses[-1] > 1e10


def test_progress_is_called_after_every_update():
    calls = []
    run = cb.learn_edge_kernel("custom", ctx="cpu", iters=4, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)] and run.iters == 4


def test_progress_that_is_not_callable_is_refused_naming_it():
    with pytest.raises(TypeError, match="progress must be callable or None, got 'bar'"):
        cb.learn_edge_kernel("custom", ctx="cpu", iters=1, progress="bar")
