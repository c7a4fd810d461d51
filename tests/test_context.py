import mxnet as mx
import pytest

import cnn_base.context as context
from cnn_base import ContextUnavailableError, as_ctx, default_ctx, parse_ctx

HAS_GPU = mx.context.num_gpus() > 0


@pytest.mark.parametrize("text, expected", [
    ("cpu", mx.cpu(0)),
    ("cpu(0)", mx.cpu(0)),
    ("cpu(1)", mx.cpu(1)),
    (" CPU(2) ", mx.cpu(2)),
])
def test_parse_ctx_reads_cpu_names(text, expected):
    assert parse_ctx(text) == expected


def test_parse_ctx_auto_is_the_gpu_when_mxnet_sees_one_else_the_cpu():
    assert parse_ctx("auto") == default_ctx() == (mx.gpu(0) if HAS_GPU else mx.cpu(0))


@pytest.mark.parametrize("text", ["tpu", "", "cpu(-1)", "cpu(x)", "gpu()", "cpu 1", "cpu(1", "1"])
def test_parse_ctx_refuses_malformed_names_listing_the_accepted_ones(text):
    with pytest.raises(ValueError, match=r"ctx must be one of auto, cpu, gpu, cpu\(N\), gpu\(N\)"):
        parse_ctx(text)


def test_parse_ctx_refuses_non_strings():
    with pytest.raises(TypeError, match="ctx must be a string"):
        parse_ctx(0)


@pytest.mark.skipif(HAS_GPU, reason="needs a machine where MXNet sees no GPU")
@pytest.mark.parametrize("text", ["gpu", "gpu(0)", "gpu(1)"])
def test_parse_ctx_says_why_a_gpu_cannot_be_used_here(text):
    with pytest.raises(ContextUnavailableError, match=r"gpu\(\d\) cannot be used"):
        parse_ctx(text)


def test_parse_ctx_names_the_gpus_mxnet_sees_when_the_device_id_is_too_large(monkeypatch):
    # a CUDA build that sees two GPUs, simulated: parse_ctx only asks these two functions
    monkeypatch.setattr(context, "_cuda_built", lambda: True)
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    assert parse_ctx("gpu(1)") == mx.gpu(1)
    assert parse_ctx("auto") == mx.gpu(0)
    with pytest.raises(ContextUnavailableError, match=r"MXNet sees 2 GPUs \(gpu\(0\) to gpu\(1\)\)"):
        parse_ctx("gpu(2)")


def test_parse_ctx_on_a_cuda_build_without_a_device_says_it_sees_no_gpu(monkeypatch):
    monkeypatch.setattr(context, "_cuda_built", lambda: True)
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert parse_ctx("auto") == mx.cpu(0)
    with pytest.raises(ContextUnavailableError, match="MXNet sees no GPU"):
        parse_ctx("gpu")


def test_as_ctx_accepts_none_strings_and_contexts():
    assert as_ctx(None) == default_ctx()
    assert as_ctx("cpu(3)") == mx.cpu(3)
    assert as_ctx(mx.cpu(1)) == mx.cpu(1)
    with pytest.raises(TypeError, match="ctx must be None, a string"):
        as_ctx(1)


@pytest.mark.skipif(not HAS_GPU, reason="MXNet sees no GPU here")
def test_parse_ctx_gives_a_usable_gpu_when_mxnet_sees_one():
    ctx = parse_ctx("gpu")
    assert ctx == mx.gpu(0)
    assert mx.nd.ones((2,), ctx=ctx).sum().asscalar() == 2
