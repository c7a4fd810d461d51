import mxnet as mx
import numpy as np
import pytest
from mxnet import nd
from mxnet.gluon import nn

import cnn_base as cb


def caption(fig):
    return fig.axes[0].texts[-1].get_text()


def cell_texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


# --- the blog's captions, built from the arrays -----------------------------------------------

@pytest.mark.parametrize("make, expected", [
    (cb.corr2d_figure, "0×0+1×1+3×2+4×3=19"),
    (cb.padding_figure, "0×0+0×1+0×2+0×3=0"),
    (cb.stride_figure, "0×0+0×1+1×2+2×3=8,   0×0+6×1+0×2+0×3=6"),
    (cb.multi_in_figure, "(1×1+2×2+4×3+5×4)+(0×0+1×1+3×2+4×3)=56"),
    (cb.pooling_figure, "max(0, 1, 3, 4)=4"),
])
def test_blog_figure_caption_matches_the_blog(make, expected):
    assert caption(make()) == expected


def test_captions_follow_the_input_rather_than_the_blog():
    X, K = cb.corr2d_example()
    assert caption(cb.corr2d_figure(X + 1, K)) == "1×0+2×1+4×2+5×3=25"
    assert caption(cb.pooling_figure(-X, mode="avg")) == "mean(0, -1, -3, -4)=-2"


def test_corr2d_figure_shows_input_kernel_and_computed_output_cells():
    texts = cell_texts(cb.corr2d_figure())
    for value in ["0", "8", "3", "19", "25", "37", "43"]:
        assert value in texts
    assert "Output" in texts


def test_padding_figure_title_gives_the_three_sizes_of_the_blog():
    title = cb.padding_figure().axes[0].get_title()
    assert "3×3 input" in title and "5×5" in title and "4×4 output" in title


def test_conv1x1_figure_sums_over_channels_per_pixel():
    X = nd.arange(27).reshape((3, 3, 3))
    K = nd.arange(6).reshape((2, 3, 1, 1))
    assert caption(cb.conv1x1_figure(X, K)) == ("channel 0: 0×0+9×1+18×2=45,   "
                                                "channel 1: 0×3+9×4+18×5=126")


def test_products_caption_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="same number of elements"):
        cb.products_caption(nd.ones((2, 2)), nd.ones((1, 2)))


@pytest.mark.parametrize("value, text", [(19.0, "19"), (-0.0, "0"), (0.98949999, "0.9895"),
                                         (-4, "-4"), (2.5, "2.5")])
def test_format_number_drops_decimals_of_whole_numbers(value, text):
    assert cb.format_number(value) == text


# --- the arithmetic the figures draw ---------------------------------------------------------

@pytest.mark.parametrize("shape, k, padding, strides", [
    ((3, 3), (2, 2), 1, (3, 2)),
    ((8, 8), (3, 3), 1, 2),
    ((8, 8), (3, 5), (0, 1), (3, 4)),
    ((7, 5), (2, 3), (2, 1), (1, 2)),
])
def test_corr2d_strided_equals_gluons_conv2d(shape, k, padding, strides):
    X = nd.random.uniform(shape=shape)
    K = nd.random.uniform(shape=k)
    conv = nn.Conv2D(1, kernel_size=k, padding=padding, strides=strides, use_bias=False,
                     in_channels=1)
    conv.initialize()
    conv.weight.set_data(K.reshape((1, 1) + k))
    expected = conv(X.reshape((1, 1) + shape))[0, 0]
    Y = cb.corr2d_strided(X, K, padding, strides)
    assert Y.shape == cb.output_shape(shape, k, strides, padding)
    np.testing.assert_allclose(Y.asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-6)


def test_pad2d_surrounds_with_zeros():
    X, _ = cb.corr2d_example()
    P = cb.pad2d(X, 1).asnumpy()
    assert P.shape == (5, 5)
    np.testing.assert_array_equal(P[1:4, 1:4], X.asnumpy())
    assert P.sum() == X.asnumpy().sum()


# --- pictures of the learned kernel ----------------------------------------------------------

def test_sample_photo_is_grayscale_in_0_1_and_downsampled():
    full, half = cb.sample_photo(step=1), cb.sample_photo(step=2)
    assert full.shape == (600, 512) and half.shape == (300, 256)
    assert 0 <= half.min().asscalar() and half.max().asscalar() <= 1
    np.testing.assert_array_equal(half.asnumpy(), full.asnumpy()[::2, ::2])


def test_photo_figure_draws_each_kernels_output_with_its_size():
    photo = cb.sample_photo(step=8)
    fig = cb.photo_figure(photo, {"K": cb.edge_kernel(), "K.T": cb.edge_kernel().T,
                                  "Laplacian": cb.laplacian_kernel()})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Photograph (75×64)", "K (75×63)", "K.T (74×64)", "Laplacian (73×62)"]
    shown = fig.axes[3].images[0].get_array()
    np.testing.assert_allclose(shown, cb.corr2d(photo, cb.laplacian_kernel()).asnumpy())


def test_edge_figure_shows_the_output_of_the_given_kernel():
    K = nd.array([[0.5, -0.25]])
    fig = cb.edge_figure(cb.edge_image(), K, "Learned kernel K")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(),
                                  cb.corr2d(cb.edge_image(), K).asnumpy())
    assert fig.axes[2].get_title() == "Learned kernel K (1×2)"


def test_training_figure_plots_each_runs_kernel_path_and_losses():
    runs = [cb.learn_edge_kernel(block, ctx="cpu", iters=4) for block in cb.BLOCKS]
    fig = cb.training_figure(runs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["Input X (edge image)", "Target Y = corr2d(X, [[1, -1]])"]
    assert titles[2:4] == ["Learned output (custom)", "Learned output (builtin)"]
    path_ax, loss_ax = fig.axes[4], fig.axes[5]
    np.testing.assert_allclose(path_ax.lines[0].get_ydata(), runs[0].kernel_path[:, 0])
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), runs[1].losses)


def test_write_figures_writes_every_png(tmp_path):
    paths = cb.write_figures(tmp_path / "figs", cb.edge_kernel(mx.cpu(1)), photo_step=8)
    assert [p.name for p in paths] == [
        "1_1_cross_correlation.png", "1_3_edge_detection.png", "2_1_padding.png",
        "2_2_stride.png", "3_1_multi_in.png", "3_3_conv1x1.png", "4_1_max_pooling.png",
        "edge_kernel_on_photo.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
