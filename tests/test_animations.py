"""cnn_base.animations: one GIF frame per window position, the numbers the library computes.

References: the blog's printed numbers (§1.1 19 25 37 43, §2.2 8 and 6, §3.1 56 72 104
120), the book's §4.2 max pool (5 7 13 15), and MXNet's own operators
(``nd.Convolution``, ``nd.Pooling``) for every output cell.
"""
import os

import numpy as np
import pytest
from mxnet import nd
from PIL import Image

from cnn_base import animations
from cnn_base.animations import (blog_animations, corr2d_animation, pool_animation,
                                 render_frame, write_animations)

BLOG_VALUES = {
    "1_1_cross_correlation": [19, 25, 37, 43],
    "2_2_stride": [0, 8, 6, 8],
    "3_1_multi_in": [56, 72, 104, 120],
    "4_2_max_pooling": [5, 7, 13, 15],
}

BLOG_CAPTIONS = {   # the blog's sums of products, as it prints them
    ("1_1_cross_correlation", 0): "0×0+1×1+3×2+4×3=19",
    ("2_1_padding", 0): "0×0+0×1+0×2+0×3=0",
    ("2_2_stride", 1): "0×0+0×1+1×2+2×3=8",
    ("2_2_stride", 2): "0×0+6×1+0×2+0×3=6",
}


@pytest.fixture(scope="module")
def anims():
    return blog_animations()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("animations")
    return write_animations(out, dpi=20)


def _mxnet_reference(anim):
    """The same operation by MXNet's built-in operators, on the unpadded input."""
    p_h, p_w = anim.padding
    planes = [X[p_h:X.shape[0] - p_h, p_w:X.shape[1] - p_w] for X in anim.inputs]
    X = nd.array(np.stack(planes)[None])
    s = anim.strides
    if anim.mode == "corr":
        K = nd.array(np.stack(anim.kernels)[None])
        Y = nd.Convolution(X, K, kernel=anim.window, pad=anim.padding, stride=s,
                           num_filter=1, no_bias=True)
    else:
        Y = nd.Pooling(X, kernel=anim.window, pad=anim.padding, stride=s, pool_type=anim.mode,
                       count_include_pad=True)
    return Y.asnumpy()[0, 0]


def test_blog_animations_are_the_chapters_examples_in_order(anims):
    assert list(anims) == ["1_1_cross_correlation", "2_1_padding", "2_2_stride", "3_1_multi_in",
                           "4_2_max_pooling", "4_2_avg_pooling"]


@pytest.mark.parametrize("name", sorted(BLOG_VALUES))
def test_frames_carry_the_blogs_numbers(anims, name):
    assert [f.value for f in anims[name].frames] == BLOG_VALUES[name]


@pytest.mark.parametrize("key", sorted(BLOG_CAPTIONS))
def test_captions_are_the_blogs_sums_of_products(anims, key):
    name, k = key
    assert anims[name].frames[k].caption == BLOG_CAPTIONS[key]


@pytest.mark.parametrize("name", ["1_1_cross_correlation", "2_1_padding", "2_2_stride",
                                  "3_1_multi_in", "4_2_max_pooling", "4_2_avg_pooling"])
def test_every_output_cell_equals_mxnets_operator(anims, name):
    anim = anims[name]
    np.testing.assert_allclose(anim.output, _mxnet_reference(anim), rtol=1e-6, atol=0)
    assert [f.value for f in anim.frames] == anim.output.ravel().tolist()


@pytest.mark.parametrize("name", ["1_1_cross_correlation", "2_1_padding", "2_2_stride",
                                  "3_1_multi_in", "4_2_max_pooling", "4_2_avg_pooling"])
def test_each_frames_window_gives_its_value(anims, name):
    """The numbers under the window, times the kernel (or max/mean), are the output cell."""
    anim = anims[name]
    for frame in anim.frames:
        r, c = frame.origin
        for X, window in zip(anim.inputs, frame.windows):
            np.testing.assert_array_equal(window, X[r:r + anim.window[0], c:c + anim.window[1]])
        if anim.mode == "corr":
            expected = sum(float((w * k).sum()) for w, k in zip(frame.windows, anim.kernels))
        elif anim.mode == "max":
            expected = float(frame.windows[0].max())
        else:
            expected = float(frame.windows[0].mean())
        assert frame.value == pytest.approx(expected, rel=1e-6)


def test_windows_slide_left_to_right_then_down(anims):
    frames = anims["2_2_stride"].frames
    assert [f.position for f in frames] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [f.origin for f in frames] == [(0, 0), (0, 2), (3, 0), (3, 2)]


def test_max_pooling_padding_never_wins_and_average_counts_it(anims):
    max_caption = anims["4_2_max_pooling"].frames[0].caption
    assert max_caption == "max(−∞, −∞, −∞, −∞, 0, 1, −∞, 4, 5)=5"
    assert anims["4_2_avg_pooling"].frames[0].caption == "(0+0+0+0+0+1+0+4+5)/9=1.111"
    # a negative input: zero padding would win a max, -inf padding does not
    X = nd.array([[-3, -2], [-1, -4]])
    assert [f.value for f in pool_animation(X, 2, 1, 1, "max").frames] == \
        [-3, -2, -2, -1, -1, -2, -1, -1, -4]


def test_a_frame_draws_its_window_output_cells_and_caption(anims):
    anim = anims["1_1_cross_correlation"]
    fig = render_frame(anim, 1)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[-1] == anim.frames[1].caption == "1×0+2×1+4×2+5×3=25"
    # the output cells filled so far (19, 25), not the ones still to come (37, 43)
    assert "19" in texts and "25" in texts and "37" not in texts and "43" not in texts
    assert "window 2 of 4" in fig.axes[0].get_title()


def test_each_gif_has_one_frame_per_window_position(anims, written):
    assert [p.stem for p in written] == list(anims)
    for path in written:
        with Image.open(path) as gif:
            assert gif.format == "GIF"
            assert gif.n_frames == len(anims[path.stem].frames), path.name


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_animations(tmp_path / "missing")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        write_animations(tmp_path / "file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_unwritable_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            write_animations(folder)
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_is_refused_before_computing(tmp_path, monkeypatch):
    """The same check where the test runs as root: os.access says the folder is read-only."""
    monkeypatch.setattr(animations.os, "access", lambda path, mode: False)
    monkeypatch.setattr(animations, "blog_animations", lambda: pytest.fail("computed anyway"))
    with pytest.raises(PermissionError, match="not writable"):
        write_animations(tmp_path)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding must be smaller than pool_size"):
        pool_animation(pool_size=2, padding=2)
    with pytest.raises(ValueError, match="mode must be 'max' or 'avg'"):
        pool_animation(mode="sum")
    with pytest.raises(TypeError, match="strides must be an int or a pair of ints"):
        corr2d_animation(strides=1.5)
    with pytest.raises(IndexError, match="has 4 frames"):
        render_frame(corr2d_animation(), 4)


def test_module_lists_its_public_names():
    assert all(hasattr(animations, name) for name in animations.__all__)
