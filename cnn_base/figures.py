"""The blog's figures, redrawn from values the library computes.

Every number in a cell comes from the arrays passed in, every output from
:mod:`cnn_base.ops`, and every caption (``0×0+1×1+3×2+4×3=19``) is built from the
window and kernel elements with the output value taken from the computed array.
So a figure shows what the code does, not what a picture once said.

The functions return :class:`matplotlib.figure.Figure` objects built without
``pyplot`` (no global state, no display needed); :func:`save_figure` writes one,
:func:`write_figures` writes them all.
"""
from __future__ import annotations

import pathlib
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.cbook import get_sample_data
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle
import mxnet as mx
from mxnet import nd
from mxnet.ndarray import NDArray

from ._checks import as_int, as_pair, check_ndarray
from ._files import atomic_path
from ._types import PathLike, PoolMode, Size2
from .edge_learning import EdgeKernelRun
from .examples import corr2d_example, edge_image, edge_kernel, multi_in_example
from .ops import corr2d, corr2d_multi_in, corr2d_multi_in_out_1x1, corr2d_strided, pad2d, pool2d

__all__ = ["format_number", "products_caption", "corr2d_figure",
           "padding_figure", "stride_figure", "pooling_figure", "multi_in_figure",
           "conv1x1_figure", "edge_figure", "sample_photo", "laplacian_kernel", "photo_figure",
           "training_figure", "save_figure", "write_figures"]

# window colours: the blog's shading, and a second one for a second window
SHADES = ("#9ecae1", "#fdd49e")
PAD_FACE = "#eeeeee"


def _np(A):
    return A.asnumpy() if isinstance(A, nd.NDArray) else np.asarray(A)


def format_number(v: float, digits: int = 4) -> str:
    """A whole number without decimals, anything else with up to ``digits`` significant digits.

    >>> format_number(19.0), format_number(-0.98737), format_number(0.5)
    ('19', '-0.9874', '0.5')
    """
    v = float(v)
    if v == round(v) and abs(v) < 1e15:
        return str(int(round(v))) if v != 0 else "0"
    return f"{v:.{digits}g}"


def products_caption(window: Iterable[float], kernel: Iterable[float]) -> str:
    """``"a×b+c×d+..."``: the window's elements times the kernel's, in row-major order.

    >>> X, K = corr2d_example()
    >>> products_caption(X[0:2, 0:2], K)
    '0×0+1×1+3×2+4×3'
    """
    window, kernel = _np(window).ravel(), _np(kernel).ravel()
    if window.shape != kernel.shape:
        raise ValueError(f"window and kernel must have the same number of elements, "
                         f"got {window.size} and {kernel.size}")
    return "+".join(f"{format_number(x)}×{format_number(k)}" for x, k in zip(window, kernel))


class _Row:
    """Draws grids and symbols left to right on one axes, centred on y = 0, y pointing down."""

    def __init__(self, ax, gap=0.6, fontsize=12):
        self.ax, self.x, self.gap, self.fontsize = ax, 0.0, gap, fontsize
        self.top, self.bottom = 0.0, 0.0

    def grid(self, A, label=None, shade=None, faces=None, y=None, digits=4, fontsize=None):
        """Cells with values; ``shade`` maps (i, j) -> colour, ``faces`` too (drawn under shading)."""
        A = _np(A)
        h, w = A.shape
        y0 = -h / 2 if y is None else y
        colours = dict(faces or {})
        colours.update(shade or {})
        for i in range(h):
            for j in range(w):
                self.ax.add_patch(Rectangle((self.x + j, y0 + i), 1, 1, linewidth=1,
                                            edgecolor="black",
                                            facecolor=colours.get((i, j), "white")))
                self.ax.text(self.x + j + 0.5, y0 + i + 0.5, format_number(A[i, j], digits),
                             ha="center", va="center", fontsize=fontsize or self.fontsize)
        if label:
            self.ax.text(self.x + w / 2, y0 - 0.2, label, ha="center", va="bottom",
                         fontsize=self.fontsize - 1)
        self.top = min(self.top, y0 - 1.0 if label else y0)
        self.bottom = max(self.bottom, y0 + h)
        left = self.x
        self.x += w + self.gap
        return left

    def symbol(self, text, y=0.0):
        size = self.fontsize + (16 if text == "⋆" else 6)     # the star glyph is drawn small
        self.ax.text(self.x + 0.4, y, text, ha="center", va="center", fontsize=size)
        self.x += 0.8 + self.gap

    def finish(self, caption=None):
        ax = self.ax
        ax.set_xlim(-0.3, self.x - self.gap + 0.3)
        ax.set_ylim(self.bottom + (1.2 if caption else 0.3), self.top - 0.3)
        ax.set_aspect("equal")
        ax.axis("off")
        if caption:
            ax.text((self.x - self.gap) / 2, self.bottom + 0.5, caption, ha="center", va="top",
                    fontsize=self.fontsize)


def _window(i0, j0, size, colour):
    return {(i0 + a, j0 + b): colour for a in range(size[0]) for b in range(size[1])}


def _row_figure(width, height, title):
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    if title:
        ax.set_title(title, fontsize=12)
    return fig, _Row(ax)


def corr2d_figure(X: Optional[NDArray] = None, K: Optional[NDArray] = None) -> Figure:
    """Blog figure 1.1: ``X`` ⋆ ``K`` = ``corr2d(X, K)``, the first window shaded, its sum written out.

    >>> fig = corr2d_figure()
    >>> fig.axes[0].texts[-1].get_text()
    '0×0+1×1+3×2+4×3=19'
    """
    if X is None or K is None:
        X, K = corr2d_example()
    return _first_window_figure(X, K, corr2d(X, K), (7, 3),
                                "1.1 Cross-correlation: input ⋆ kernel = output", "Input")


def _first_window_figure(X, K, Y, size, title, input_title, faces=None):
    """Input ⋆ kernel = output, the first window and output shaded, its sum of products below."""
    k = K.shape
    caption = f"{products_caption(X[0:k[0], 0:k[1]], K)}={format_number(Y[0, 0].asscalar())}"
    fig, row = _row_figure(*size, title)
    row.grid(X, input_title, faces=faces, shade=_window(0, 0, k, SHADES[0]))
    row.symbol("⋆")
    row.grid(K, "Kernel", shade=_window(0, 0, k, SHADES[0]))
    row.symbol("=")
    row.grid(Y, "Output", shade={(0, 0): SHADES[0]})
    row.finish(caption)
    return fig


def padding_figure(X: Optional[NDArray] = None, K: Optional[NDArray] = None,
                   padding: Size2 = 1) -> Figure:
    """Blog figure 2.1: ``X`` padded with zeros (3×3 -> 5×5) gives a larger (4×4) output.

    >>> fig = padding_figure()
    >>> fig.axes[0].get_title(), fig.axes[0].texts[-1].get_text()
    ('2.1 Padding: 3×3 input, padded to 5×5, gives a 4×4 output', '0×0+0×1+0×2+0×3=0')
    """
    if X is None or K is None:
        X, K = corr2d_example()
    p_h, p_w = as_pair("padding", padding, minimum=0)
    Xp = pad2d(X, (p_h, p_w))
    Y = corr2d(Xp, K)
    pad_cells = {(i, j): PAD_FACE for i in range(Xp.shape[0]) for j in range(Xp.shape[1])
                 if not (p_h <= i < p_h + X.shape[0] and p_w <= j < p_w + X.shape[1])}
    title = (f"2.1 Padding: {X.shape[0]}×{X.shape[1]} input, padded to "
             f"{Xp.shape[0]}×{Xp.shape[1]}, gives a {Y.shape[0]}×{Y.shape[1]} output")
    return _first_window_figure(Xp, K, Y, (8, 3.6), title, "Input (zero-padded)", faces=pad_cells)


def stride_figure(X: Optional[NDArray] = None, K: Optional[NDArray] = None, padding: Size2 = 1,
                  strides: Size2 = (3, 2),
                  highlight: Sequence[Tuple[int, int]] = ((0, 1), (1, 0))) -> Figure:
    """Blog figure 2.2: stride 3 down and 2 across; the windows of the ``highlight`` outputs shaded.

    >>> fig = stride_figure()
    >>> fig.axes[0].texts[-1].get_text()
    '0×0+0×1+1×2+2×3=8,   0×0+6×1+0×2+0×3=6'
    """
    if X is None or K is None:
        X, K = corr2d_example()
    p_h, p_w = as_pair("padding", padding, minimum=0)
    s_h, s_w = as_pair("strides", strides)
    Xp = pad2d(X, (p_h, p_w))
    Y = corr2d_strided(X, K, (p_h, p_w), (s_h, s_w))
    k = K.shape
    pad_cells = {(i, j): PAD_FACE for i in range(Xp.shape[0]) for j in range(Xp.shape[1])
                 if not (p_h <= i < p_h + X.shape[0] and p_w <= j < p_w + X.shape[1])}
    windows, out_cells, captions = {}, {}, []
    for n, (i, j) in enumerate(highlight):
        colour = SHADES[n % len(SHADES)]
        windows.update(_window(i * s_h, j * s_w, k, colour))
        out_cells[(i, j)] = colour
        window = Xp[i * s_h: i * s_h + k[0], j * s_w: j * s_w + k[1]]
        captions.append(f"{products_caption(window, K)}={format_number(Y[i, j].asscalar())}")
    title = f"2.2 Stride: {s_h} down, {s_w} across (padding {p_h}, {p_w})"
    fig, row = _row_figure(8, 3.6, title)
    row.grid(Xp, "Input (zero-padded)", faces=pad_cells, shade=windows)
    row.symbol("⋆")
    row.grid(K, "Kernel")
    row.symbol("=")
    row.grid(Y, "Output", shade=out_cells)
    row.finish(",   ".join(captions))
    return fig


def pooling_figure(X: Optional[NDArray] = None, pool_size: Size2 = (2, 2),
                   mode: PoolMode = "max") -> Figure:
    """Blog figure 4.1: 2×2 max pooling, the first window shaded.

    >>> pooling_figure().axes[0].texts[-1].get_text()
    'max(0, 1, 3, 4)=4'
    """
    if X is None:
        X, _ = corr2d_example()
    p = as_pair("pool_size", pool_size)
    Y = pool2d(X, p, mode)
    window = ", ".join(format_number(v) for v in _np(X[0:p[0], 0:p[1]]).ravel())
    caption = f"{'max' if mode == 'max' else 'mean'}({window})={format_number(Y[0, 0].asscalar())}"
    fig, row = _row_figure(6, 3, f"4.1 {p[0]}×{p[1]} {mode} pooling")
    row.grid(X, "Input", shade=_window(0, 0, p, SHADES[0]))
    row.symbol("→")
    row.grid(Y, "Output", shade={(0, 0): SHADES[0]})
    row.finish(caption)
    return fig


def multi_in_figure(X: Optional[NDArray] = None,
                    K: Optional[NDArray] = None) -> Figure:
    """Blog figure 3.1: each input channel ⋆ its kernel, the channels' outputs added.

    Channels are drawn top to bottom from the last to the first, the order in which
    the blog's caption adds them.

    >>> multi_in_figure().axes[0].texts[-1].get_text()
    '(1×1+2×2+4×3+5×4)+(0×0+1×1+3×2+4×3)=56'
    """
    if X is None or K is None:
        X, K = multi_in_example()
    check_ndarray("X", X, 3, "(c_i, h, w)")
    Y = corr2d_multi_in(X, K)
    c_i, k = X.shape[0], K.shape[1:]
    h, w = X.shape[1:]
    order = list(range(c_i))[::-1]
    row_h = max(h, k[0]) + 1.6
    ys = [(r - (c_i - 1) / 2) * row_h - h / 2 for r in range(c_i)]
    fig, row = _row_figure(8, 1.6 + 2.2 * c_i, f"3.1 Multiple input channels ({c_i})")
    x_input = row.x
    for r, c in enumerate(order):
        row.x = x_input
        row.grid(X[c], f"Input channel {c}", shade=_window(0, 0, k, SHADES[0]), y=ys[r])
        row.symbol("⋆", y=ys[r] + h / 2)
        row.grid(K[c], f"Kernel channel {c}", shade=_window(0, 0, k, SHADES[0]),
                 y=ys[r] + (h - k[0]) / 2)
    row.symbol("Σ =")
    row.grid(Y, "Output", shade={(0, 0): SHADES[0]})
    terms = "+".join(f"({products_caption(X[c][0:k[0], 0:k[1]], K[c])})" for c in order)
    row.finish(f"{terms}={format_number(Y[0, 0].asscalar())}")
    return fig


def conv1x1_figure(X: Optional[NDArray] = None,
                   K: Optional[NDArray] = None) -> Figure:
    """Blog figure 3.3: a 1×1 convolution, 3 input channels -> 2 output channels.

    Each output pixel is the weighted sum of the input channels at the same pixel;
    the kernel is drawn as its (c_o, c_i) matrix.

    >>> X = nd.arange(27).reshape((3, 3, 3))
    >>> K = nd.arange(6).reshape((2, 3, 1, 1))
    >>> conv1x1_figure(X, K).axes[0].texts[-1].get_text()
    'channel 0: 0×0+9×1+18×2=45,   channel 1: 0×3+9×4+18×5=126'
    """
    if X is None or K is None:
        X = nd.arange(27).reshape((3, 3, 3))
        K = nd.arange(6).reshape((2, 3, 1, 1))
    check_ndarray("X", X, 3, "(c_i, h, w)")
    Y = corr2d_multi_in_out_1x1(X, K)
    c_i, h, w = X.shape
    c_o = K.shape[0]
    W = K.reshape((c_o, c_i))
    fig, row = _row_figure(9, 1.4 + 1.6 * max(c_i, c_o), f"3.3 1×1 convolution: {c_i} input "
                                                      f"channels -> {c_o} output channels")
    x0 = row.x
    for c in range(c_i):
        row.x = x0
        row.grid(X[c], f"Input channel {c}", shade={(0, 0): SHADES[0]},
                 y=(c - (c_i - 1) / 2) * (h + 1.4) - h / 2)
    row.symbol("⋆")
    row.grid(W, "Kernel (c_o × c_i)",
             shade={(o, j): SHADES[o % len(SHADES)] for o in range(c_o) for j in range(c_i)})
    row.symbol("=")
    x0 = row.x
    for c in range(c_o):
        row.x = x0
        row.grid(Y[c], f"Output channel {c}", shade={(0, 0): SHADES[c % len(SHADES)]},
                 y=(c - (c_o - 1) / 2) * (h + 1.4) - h / 2)
    captions = [f"channel {o}: {products_caption(X[:, 0, 0], W[o])}="
                f"{format_number(Y[o, 0, 0].asscalar())}" for o in range(c_o)]
    row.finish(",   ".join(captions))
    return fig


def _show(ax, A, title, cmap="gray", symmetric=False, numbers=False, digits=3):
    A = _np(A)
    limit = float(np.abs(A).max()) or 1.0
    kwargs = {"vmin": -limit, "vmax": limit} if symmetric else {}
    image = ax.imshow(A, cmap=cmap, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if numbers:
        for (i, j), v in np.ndenumerate(A):
            r, g, b, _ = image.cmap(image.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5      # white text on a dark cell
            ax.text(j, i, format_number(round(float(v), digits), digits), ha="center",
                    va="center", fontsize=8, color="white" if dark else "black")


def edge_figure(X: NDArray, K: NDArray, kernel_label: str = "Kernel K") -> Figure:
    """The edge image ``X``, its output ``corr2d(X, K)`` and the (learned) kernel ``K``.

    >>> fig = edge_figure(edge_image(), edge_kernel())
    >>> [ax.get_title() for ax in fig.axes]
    ['Edge image X (6×8)', 'corr2d(X, K) (6×7)', 'Kernel K (1×2)']
    """
    Y = corr2d(X, K)
    fig = Figure(figsize=(11, 3), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [8, 7, 3]})
    _show(axes[0], X, f"Edge image X ({X.shape[0]}×{X.shape[1]})", numbers=True)
    _show(axes[1], Y, f"corr2d(X, K) ({Y.shape[0]}×{Y.shape[1]})", cmap="coolwarm",
          symmetric=True, numbers=True, digits=2)
    _show(axes[2], K, f"{kernel_label} ({K.shape[0]}×{K.shape[1]})", cmap="coolwarm",
          symmetric=True, numbers=True, digits=4)
    return fig


def sample_photo(step: int = 2, ctx: Optional[mx.Context] = None) -> NDArray:
    """Matplotlib's offline sample photograph (Grace Hopper), grayscale in [0, 1], every ``step``-th pixel.

    >>> sample_photo(step=4).shape
    (150, 128)
    """
    step = as_int("step", step)
    with get_sample_data("grace_hopper.jpg") as f:
        rgb = imread(f, format="jpg").astype(np.float32) / 255
    gray = rgb[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma
    return nd.array(gray[::step, ::step], ctx=ctx)


def laplacian_kernel(ctx: Optional[mx.Context] = None) -> NDArray:
    """The 3×3 Laplacian, an edge detector for every direction at once."""
    return nd.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], ctx=ctx)


def photo_figure(image: NDArray, kernels: Mapping[str, NDArray]) -> Figure:
    """``image`` (h, w) and ``corr2d(image, K)`` for each ``name -> K`` of ``kernels``.

    Outputs are shown with a colour scale symmetric around 0: red and blue are the two
    directions of a change in brightness, white is none.

    >>> fig = photo_figure(sample_photo(step=8), {"[[1, -1]]": edge_kernel()})
    >>> [ax.get_title() for ax in fig.axes]
    ['Photograph (75×64)', '[[1, -1]] (75×63)']
    """
    check_ndarray("image", image, 2, "(h, w)")
    if not kernels:
        raise ValueError("kernels must name at least one kernel")
    n = 1 + len(kernels)
    fig = Figure(figsize=(3.2 * n, 3.8), layout="constrained")
    axes = fig.subplots(1, n)
    _show(axes[0], image, f"Photograph ({image.shape[0]}×{image.shape[1]})")
    for ax, (name, K) in zip(axes[1:], kernels.items()):
        Y = corr2d(image, K.as_in_context(image.context))
        _show(ax, Y, f"{name} ({Y.shape[0]}×{Y.shape[1]})", cmap="bwr", symmetric=True)
    return fig


def training_figure(runs: Iterable[EdgeKernelRun]) -> Figure:
    """One figure of learning runs: input, target, learned output, the kernel's path and the loss curve.

    ``runs``: objects with ``block``, ``X``, ``Y``, ``Y_hat``, ``kernel_path`` (iters + 1, 2)
    and ``losses``, such as :func:`cnn_base.learn_edge_kernel` returns. The runs share
    the input and target; each adds its learned output, path and curve.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one learning run")
    first = runs[0]
    n_img = 2 + len(runs)
    fig = Figure(figsize=(max(10, 3.2 * n_img), 7), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.3])
    axes = top.subplots(1, n_img)
    X, Y = _np(first.X).reshape(first.X.shape[-2:]), _np(first.Y).reshape(first.Y.shape[-2:])
    _show(axes[0], X, "Input X (edge image)", numbers=True)
    _show(axes[1], Y, "Target Y = corr2d(X, [[1, -1]])", cmap="coolwarm", symmetric=True,
          numbers=True, digits=2)
    for ax, run in zip(axes[2:], runs):
        Y_hat = _np(run.Y_hat).reshape(run.Y_hat.shape[-2:])
        _show(ax, Y_hat, f"Learned output ({run.block})", cmap="coolwarm", symmetric=True,
              numbers=True, digits=2)
    ax_path, ax_loss = bottom.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for n, run in enumerate(runs):
        path = np.asarray(run.kernel_path)
        steps = np.arange(len(path))
        ls = styles[n % len(styles)]
        ax_path.plot(steps, path[:, 0], ls, marker="o", color="tab:red",
                     label=f"K[0, 0] ({run.block})")
        ax_path.plot(steps, path[:, 1], ls, marker="o", color="tab:blue",
                     label=f"K[0, 1] ({run.block})")
        if len(run.losses):
            ax_loss.semilogy(np.arange(1, len(run.losses) + 1), run.losses, ls, marker="o",
                             label=run.block)
    for target in (1, -1):
        ax_path.axhline(target, color="gray", linewidth=0.8, linestyle=":")
    ax_path.set(title="Kernel's path (target [1, -1])", xlabel="updates", ylabel="weight")
    ax_path.legend(fontsize=8)
    ax_loss.set(title="Loss (sum of squared errors)", xlabel="iteration", ylabel="loss")
    if any(len(run.losses) for run in runs):
        ax_loss.legend(fontsize=8)
    return fig


def save_figure(fig: Figure, path: PathLike, dpi: int = 120) -> pathlib.Path:
    """Write ``fig`` to ``path`` (format from the suffix) and return the path.

    Written whole or not at all (``cnn_base._files.atomic_path``): a failure is a
    ``WriteError`` (an ``OSError``) naming ``path`` and the reason, the previous file intact.
    """
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower() or None)
    return path


def write_figures(out_dir: PathLike, kernel: NDArray, photo_step: int = 2) -> List[pathlib.Path]:
    """Draw every figure into ``out_dir`` and return the written paths, in the blog's order.

    ``kernel`` is the learned (1, 2) edge kernel (an NDArray); it is shown on the edge
    image and, with its transpose and the Laplacian, on the sample photograph.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_ndarray("kernel", kernel, 2, "(k_h, k_w)")
    kernel = kernel.as_in_context(edge_image().context)
    photo = sample_photo(photo_step)
    learned = "[" + ", ".join(format_number(v) for v in kernel.asnumpy().ravel()) + "]"
    figures = {
        "1_1_cross_correlation.png": corr2d_figure(),
        "1_3_edge_detection.png": edge_figure(edge_image(), kernel, "Learned kernel K"),
        "2_1_padding.png": padding_figure(),
        "2_2_stride.png": stride_figure(),
        "3_1_multi_in.png": multi_in_figure(),
        "3_3_conv1x1.png": conv1x1_figure(),
        "4_1_max_pooling.png": pooling_figure(),
        "edge_kernel_on_photo.png": photo_figure(photo, {
            f"learned K = {learned}": kernel,
            "K transposed": kernel.T,
            "3×3 Laplacian": laplacian_kernel(),
        }),
    }
    return [save_figure(fig, out_dir / name) for name, fig in figures.items()]
