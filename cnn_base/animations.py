"""The window, moving: the chapter's operations as GIFs, one frame per window position.

Each animation is computed by the library first: the output array comes from
:mod:`cnn_base.ops` (through :func:`cnn_base.figures.corr2d_strided` for padding
and stride), and each frame records the numbers under the shaded window, the
output cell it fills and that cell's sum written out as products
(``0×0+1×1+3×2+4×3=19``), the value taken from the computed array. Drawing only
shows those records, so a GIF shows what the code does.

The blog's examples (D2L zh 5.1-5.4):

- §1.1 cross-correlation: ``X`` = 0..8 (3×3), ``K`` = 0..3 (2×2) -> 19 25 37 43
- §2.1 padding 1: the same ``X`` and ``K`` -> a 4×4 output whose first cell is 0
- §2.2 stride 3 down, 2 across, padding 1 -> 0 8 6 8
- §3.1 two input channels -> 56 72 104 120
- §4.2 max and average pooling of ``X`` = 0..15 (4×4), window 3, padding 1,
  stride 2 -> max 5 7 13 15 (average: padded cells count in the divisor, as in
  Gluon's ``count_include_pad=True``; max: padding never wins, as in Gluon)

The frames are :class:`matplotlib.figure.Figure` objects built without ``pyplot``;
the GIFs are written with matplotlib's own
:class:`matplotlib.animation.PillowWriter`.

>>> anim = corr2d_animation()
>>> [f.value for f in anim.frames]
[19.0, 25.0, 37.0, 43.0]
>>> anim.frames[0].caption
'0×0+1×1+3×2+4×3=19'
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Dict, List, Literal, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from mxnet import nd
from mxnet.ndarray import NDArray

from cnn_base._files import atomic_path
from cnn_base._types import PathLike, PoolMode, Size2
from cnn_base.examples import corr2d_example, multi_in_example
from cnn_base.figures import corr2d_strided, format_number, pad2d, products_caption
from cnn_base.ops import corr2d_multi_in, pool2d
from cnn_base.shapes import output_shape

__all__ = ["Frame", "Animation", "corr2d_animation", "multi_in_animation", "pool_animation",
           "blog_animations", "render_frame", "save_animation", "write_animations"]


class Frame(NamedTuple):
    """One window position.

    ``position`` is the output cell (i, j) being filled, ``origin`` the window's top-left
    cell (row, column) in the padded input, ``windows`` the numbers under the window
    (one 2-D array per input channel), ``value`` the output cell as the library computed
    it, ``caption`` its sum of products written out."""

    position: Tuple[int, int]
    origin: Tuple[int, int]
    windows: Tuple[np.ndarray, ...]
    value: float
    caption: str


class Animation(NamedTuple):
    """An operation computed by the library, ready to draw frame by frame.

    ``inputs`` are the padded input planes (2-D NumPy arrays, one per channel),
    ``padding`` the (p_h, p_w) cells added on each side, ``strides`` (s_h, s_w),
    ``kernels`` one 2-D array per channel (None for pooling), ``mode`` ``'corr'``,
    ``'max'`` or ``'avg'``, ``window`` (k_h, k_w), ``output`` the library's output
    (2-D NumPy array), ``frames`` one :class:`Frame` per window position, in the order
    the window slides (left to right, top to bottom)."""

    name: str
    title: str
    inputs: Sequence[np.ndarray]
    padding: Tuple[int, int]
    strides: Tuple[int, int]
    kernels: Optional[Sequence[np.ndarray]]
    mode: Literal["corr", "max", "avg"]
    window: Tuple[int, int]
    output: np.ndarray
    frames: List[Frame]


# window colour (the figures' blue), padded cells, output cells still to come
SHADE = "#9ecae1"
PAD_FACE = "#eeeeee"
DONE_FACE = "#deebf7"


def _pair(name, value, minimum):
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def _cell_text(v):
    """A cell's number as the figures write it; padding of a max pool is -∞ (it never wins)."""
    v = float(v)
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    return format_number(v)


def _frames(output, inputs, window, strides, caption):
    """One Frame per output cell, row by row: the window at (i * s_h, j * s_w)."""
    (k_h, k_w), (s_h, s_w) = window, strides
    frames = []
    for i in range(output.shape[0]):
        for j in range(output.shape[1]):
            r, c = i * s_h, j * s_w
            windows = tuple(X[r:r + k_h, c:c + k_w] for X in inputs)
            value = float(output[i, j])
            frames.append(Frame((i, j), (r, c), windows, value, caption(windows, value)))
    return frames


def corr2d_animation(X: Optional[NDArray] = None, K: Optional[NDArray] = None, padding: Size2 = 0,
                     strides: Size2 = 1, name: Optional[str] = None,
                     title: Optional[str] = None) -> Animation:
    """Cross-correlation of ``X`` (h, w) with ``K`` (k_h, k_w), padded and strided as in Gluon.

    The output is :func:`cnn_base.figures.corr2d_strided` (``corr2d`` of the padded
    input, every ``s_h``-th row and ``s_w``-th column); defaults are the blog's §1.1.

    >>> [f.value for f in corr2d_animation(padding=1, strides=(3, 2)).frames]
    [0.0, 8.0, 6.0, 8.0]
    >>> corr2d_animation(padding=1, strides=(3, 2)).frames[1].caption
    '0×0+0×1+1×2+2×3=8'
    """
    if X is None or K is None:
        X, K = corr2d_example()
    p = _pair("padding", padding, 0)
    s = _pair("strides", strides, 1)
    Y = corr2d_strided(X, K, p, s).asnumpy()
    Xp, Kn = pad2d(X, p).asnumpy(), K.asnumpy()
    frames = _frames(Y, [Xp], Kn.shape, s,
                     lambda w, v: f"{products_caption(w[0], Kn)}={format_number(v)}")
    if title is None:
        title = "Cross-correlation" + (f", padding {p}" if p != (0, 0) else "") + \
                (f", stride {s}" if s != (1, 1) else "")
    return Animation(name or "corr2d", title, [Xp], p, s, [Kn], "corr", Kn.shape, Y, frames)


def multi_in_animation(X: Optional[NDArray] = None, K: Optional[NDArray] = None,
                       name: str = "multi_in") -> Animation:
    """Two (or more) input channels: each channel ⋆ its kernel, the channels' sums added.

    The output is :func:`cnn_base.corr2d_multi_in`; defaults are the blog's §3.1.

    >>> anim = multi_in_animation()
    >>> [f.value for f in anim.frames]
    [56.0, 72.0, 104.0, 120.0]
    >>> anim.frames[0].caption
    '(0×0+1×1+3×2+4×3)+(1×1+2×2+4×3+5×4)=56'
    """
    if X is None or K is None:
        X, K = multi_in_example()
    Y = corr2d_multi_in(X, K).asnumpy()
    Xn, Kn = X.asnumpy(), K.asnumpy()
    inputs, kernels = list(Xn), list(Kn)
    frames = _frames(Y, inputs, Kn.shape[1:], (1, 1), lambda w, v: "+".join(
        f"({products_caption(x, k)})" for x, k in zip(w, kernels)) + f"={format_number(v)}")
    title = f"{len(inputs)} input channels: each channel ⋆ its kernel, then added"
    return Animation(name, title, inputs, (0, 0), (1, 1), kernels, "corr", Kn.shape[1:], Y,
                     frames)


def pool_animation(X: Optional[NDArray] = None, pool_size: Size2 = 3, padding: Size2 = 1,
                   strides: Size2 = 2, mode: PoolMode = "max",
                   name: Optional[str] = None) -> Animation:
    """Max or average pooling of ``X`` (h, w) with padding and stride, as Gluon's pools do.

    The output is :func:`cnn_base.pool2d` (stride 1) of the padded input, every
    ``s_h``-th row and ``s_w``-th column. Max pooling pads with -∞, so padding never
    wins; average pooling pads with 0 and divides by the whole window (Gluon's
    ``count_include_pad=True``). Defaults: the book's §4.2 example, ``X`` = 0..15 (4×4).

    >>> [f.value for f in pool_animation().frames]
    [5.0, 7.0, 13.0, 15.0]
    >>> pool_animation(mode="avg").frames[0].caption
    '(0+0+0+0+0+1+0+4+5)/9=1.111'
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    if X is None:
        X = nd.arange(16).reshape((4, 4))
    k = _pair("pool_size", pool_size, 1)
    p = _pair("padding", padding, 0)
    s = _pair("strides", strides, 1)
    if p[0] >= k[0] or p[1] >= k[1]:
        raise ValueError(f"padding must be smaller than pool_size (as in Gluon), "
                         f"got padding {p} and pool_size {k}")
    Xp = pad2d(X, p)
    if mode == "max" and p != (0, 0):
        inside = pad2d(nd.ones_like(X), p)
        Xp = nd.where(inside, Xp, nd.full(Xp.shape, -np.inf, dtype=Xp.dtype))
    Y = pool2d(Xp, k, mode)[::s[0], ::s[1]].asnumpy()
    if mode == "max":
        def caption(w, v):
            return f"max({', '.join(_cell_text(x) for x in w[0].ravel())})={format_number(v)}"
    else:
        def caption(w, v):
            cells = w[0].ravel()
            return f"({'+'.join(_cell_text(x) for x in cells)})/{cells.size}={format_number(v)}"
    frames = _frames(Y, [Xp.asnumpy()], k, s, caption)
    title = (f"{'Max' if mode == 'max' else 'Average'} pooling {k[0]}×{k[1]}, "
             f"padding {p}, stride {s}")
    return Animation(name or f"pool_{mode}", title, [Xp.asnumpy()], p, s, None, mode, k, Y,
                     frames)


def blog_animations() -> Dict[str, Animation]:
    """The chapter's examples as animations, in the blog's order, keyed by file stem."""
    anims = [
        corr2d_animation(name="1_1_cross_correlation",
                         title="1.1 Cross-correlation: input ⋆ kernel = output"),
        corr2d_animation(padding=1, name="2_1_padding", title="2.1 Padding 1 on each side"),
        corr2d_animation(padding=1, strides=(3, 2), name="2_2_stride",
                         title="2.2 Stride 3 down, 2 across (padding 1)"),
        multi_in_animation(name="3_1_multi_in"),
        pool_animation(mode="max", name="4_2_max_pooling"),
        pool_animation(mode="avg", name="4_2_avg_pooling"),
    ]
    return {anim.name: anim for anim in anims}


class _Row:
    """Grids and symbols laid left to right on one axes, centred on y = 0, y pointing down."""

    def __init__(self, ax, gap=0.5, fontsize=11):
        self.ax, self.x, self.gap, self.fontsize = ax, 0.0, gap, fontsize
        self.top, self.bottom = 0.0, 0.0

    def grid(self, A, label, colours=None, texts=True):
        """Cells of ``A``; ``colours`` maps (i, j) -> face colour; ``texts`` False or a set of
        the cells to write (the others stay empty)."""
        h, w = A.shape
        y0 = -h / 2
        for i in range(h):
            for j in range(w):
                self.ax.add_patch(Rectangle((self.x + j, y0 + i), 1, 1, linewidth=1,
                                            edgecolor="black",
                                            facecolor=(colours or {}).get((i, j), "white")))
                if texts is True or (i, j) in texts:
                    self.ax.text(self.x + j + 0.5, y0 + i + 0.5, _cell_text(A[i, j]),
                                 ha="center", va="center", fontsize=self.fontsize)
        self.ax.text(self.x + w / 2, y0 - 0.2, label, ha="center", va="bottom",
                     fontsize=self.fontsize - 1)
        self.top, self.bottom = min(self.top, y0 - 1.0), max(self.bottom, y0 + h)
        self.x += w + self.gap

    def symbol(self, text):
        self.ax.text(self.x + 0.35, 0.0, text, ha="center", va="center",
                     fontsize=self.fontsize + (14 if text == "⋆" else 6))
        self.x += 0.7 + self.gap

    def finish(self, caption):
        self.ax.set_xlim(-0.3, self.x - self.gap + 0.3)
        self.ax.set_ylim(self.bottom + 1.3, self.top - 0.3)
        self.ax.set_aspect("equal")
        self.ax.axis("off")
        self.ax.text((self.x - self.gap) / 2, self.bottom + 0.5, caption, ha="center",
                     va="top", fontsize=self.fontsize)


def _figure_size(anim):
    """Inches for every frame of ``anim`` (a GIF's frames must all have one size)."""
    h, w = anim.inputs[0].shape
    k_w = anim.window[1] if anim.kernels is not None else 0
    cells = len(anim.inputs) * (w + k_w + 2) + anim.output.shape[1] + 1
    height = max(h, anim.output.shape[0]) + 2.8
    return (max(6.0, 0.55 * cells), max(2.6, 0.55 * height))


def render_frame(anim: Animation, k: int, fig: Optional[Figure] = None) -> Figure:
    """Draw frame ``k`` of ``anim`` on ``fig`` (a new Figure when None) and return the figure.

    The shaded window, the output cells filled so far (the current one shaded), the
    sum of products of the current cell below.

    >>> fig = render_frame(corr2d_animation(), 3)
    >>> fig.axes[0].texts[-1].get_text()
    '4×0+5×1+7×2+8×3=43'
    """
    frames = anim.frames
    if not 0 <= k < len(frames):
        raise IndexError(f"frame {k} out of range: {anim.name!r} has {len(frames)} frames")
    frame = frames[k]
    if fig is None:
        fig = Figure(figsize=_figure_size(anim), layout="constrained", facecolor="white")
    fig.clear()
    ax = fig.add_subplot()
    h_out, w_out = anim.output.shape
    ax.set_title(f"{anim.title}\nwindow {k + 1} of {len(frames)}: output[{frame.position[0]}, "
                 f"{frame.position[1]}]", fontsize=11)
    row = _Row(ax)
    r, c = frame.origin
    window = {(r + a, c + b): SHADE for a in range(anim.window[0]) for b in range(anim.window[1])}
    p_h, p_w = anim.padding
    for n, X in enumerate(anim.inputs):
        h, w = X.shape
        colours = {(i, j): PAD_FACE for i in range(h) for j in range(w)
                   if not (p_h <= i < h - p_h and p_w <= j < w - p_w)}
        colours.update(window)
        label = "Input" if len(anim.inputs) == 1 else f"Input channel {n}"
        if (p_h, p_w) != (0, 0):
            label += " (padded)"
        if n:
            row.symbol("+")
        row.grid(X, label, colours)
        if anim.kernels is not None:
            row.symbol("⋆")
            row.grid(anim.kernels[n], "Kernel" if len(anim.inputs) == 1 else f"Kernel {n}",
                     {(a, b): SHADE for a in range(anim.window[0]) for b in range(anim.window[1])})
    row.symbol("=" if anim.mode == "corr" else "→")
    done = {f.position for f in frames[:k + 1]}
    colours = {cell: DONE_FACE for cell in done}
    colours[frame.position] = SHADE
    row.grid(anim.output, f"Output {h_out}×{w_out}", colours, texts=done)
    row.finish(frame.caption)
    return fig


def save_animation(anim: Animation, path: PathLike, dpi: int = 80,
                   fps: float = 1) -> pathlib.Path:
    """Write ``anim`` to ``path`` as a GIF, one frame per window position; return the path.

    Written whole or not at all (``cnn_base._files.atomic_path``).
    """
    path = pathlib.Path(path)
    fig = Figure(figsize=_figure_size(anim), layout="constrained", facecolor="white")
    writer = PillowWriter(fps=fps)
    with atomic_path(path) as tmp, writer.saving(fig, tmp, dpi):
        for k in range(len(anim.frames)):
            render_frame(anim, k, fig)
            writer.grab_frame(facecolor="white")
    return path


def _check_out_dir(out_dir):
    out_dir = pathlib.Path(out_dir)
    if not out_dir.exists():
        raise FileNotFoundError(f"cannot write the animations into {out_dir}: "
                                f"the folder does not exist (create it first)")
    if not out_dir.is_dir():
        raise NotADirectoryError(f"cannot write the animations into {out_dir}: "
                                 f"it is not a folder")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the animations into {out_dir}: "
                              f"the folder is not writable")
    return out_dir


def write_animations(out_dir: PathLike, dpi: int = 80, fps: float = 1) -> List[pathlib.Path]:
    """Write the blog's animations (:func:`blog_animations`) as GIFs into ``out_dir``.

    ``out_dir`` must be an existing, writable folder (FileNotFoundError,
    NotADirectoryError or PermissionError otherwise, before anything is computed).
    Returns the written paths, in the blog's order.
    """
    out_dir = _check_out_dir(out_dir)
    return [save_animation(anim, out_dir / f"{name}.gif", dpi=dpi, fps=fps)
            for name, anim in blog_animations().items()]
