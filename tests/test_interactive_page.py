"""docs/_extra/window/: the steerable window page, in a real browser, against cnn_base's numbers.

Chromium (Debian's ``chromium`` package) is driven by Playwright for Python. The page is
opened from the file system; the test sets mode, sizes, padding, stride and dilation, reads
the output cells from the DOM and compares them with ``cnn_base.functional.conv2d`` and
``pool2d_nchw`` for the same settings: exactly for integers, within float32's rounding for
averages. Skipped, with the reason, when Playwright or chromium is missing (CI installs both).
"""
import os
import pathlib
import shutil

import numpy as np
import pytest
from mxnet import nd

from cnn_base.functional import conv2d, pool2d_nchw

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "_extra" / "window" / "index.html"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 10_000

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright is not installed (pip install playwright)")


def _chromium():
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                             headless=True, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """The page, loaded; console errors and uncaught exceptions collected and checked after."""
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(PAGE.as_uri(), wait_until="load")
    yield page
    page.close()
    assert errors == [], f"console errors: {errors}"


def _set(page, mode, n, k, p, s, d=(1, 1)):
    """Fill the controls as a learner would (each change recomputes the page)."""
    page.select_option("#mode", "corr")          # dilation's inputs are enabled in this mode
    for name, pair in (("n", n), ("k", k), ("p", p), ("s", s), ("d", d)):
        for axis, value in zip("hw", pair):
            page.fill(f"#{name}_{axis}", str(value))
    page.select_option("#mode", mode)


def _output(page):
    cells = page.eval_on_selector_all(
        "#output td", "tds => tds.map(td => [+td.dataset.i, +td.dataset.j, td.dataset.value])")
    if not cells:
        return np.zeros((0, 0))
    h, w = max(c[0] for c in cells) + 1, max(c[1] for c in cells) + 1
    Y = np.full((h, w), np.nan)
    for i, j, v in cells:
        Y[i, j] = float(v)
    return Y


def _library(mode, n, k, p, s, d=(1, 1)):
    X = nd.arange(n[0] * n[1]).reshape((1, 1) + tuple(n))
    if mode == "corr":
        K = nd.arange(k[0] * k[1]).reshape((1, 1) + tuple(k))
        Y = conv2d(nd, X, K, kernel_size=k, strides=s, padding=p, dilation=d)
    else:
        Y = pool2d_nchw(nd, X, k, strides=s, padding=p, mode=mode)
    return Y.asnumpy()[0, 0]


# (mode, input, kernel or window, padding per side, stride, dilation), height and width each
SETTINGS = [
    ("corr", (3, 3), (2, 2), (0, 0), (1, 1), (1, 1)),     # blog 1.1: 19 25 37 43
    ("corr", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),     # blog 2.1: padding 1
    ("corr", (3, 3), (2, 2), (1, 1), (3, 2), (1, 1)),     # blog 2.2: 0 8 6 8
    ("corr", (8, 8), (3, 5), (0, 1), (3, 4), (1, 1)),     # blog 2.2's second layer
    ("corr", (7, 6), (3, 2), (2, 1), (2, 3), (2, 1)),     # dilation
    ("max", (4, 4), (3, 3), (1, 1), (2, 2), (1, 1)),      # book 4.2: 5 7 13 15
    ("max", (4, 4), (2, 3), (1, 2), (2, 3), (1, 1)),      # book 4.2: 0 3 8 11 12 15
    ("avg", (4, 4), (3, 3), (1, 1), (2, 2), (1, 1)),
    ("avg", (5, 6), (3, 2), (1, 1), (2, 1), (1, 1)),
]


@pytest.mark.parametrize("mode, n, k, p, s, d", SETTINGS)
def test_output_cells_equal_cnn_bases(page, mode, n, k, p, s, d):
    _set(page, mode, n, k, p, s, d)
    shown, expected = _output(page), _library(mode, n, k, p, s, d)
    assert shown.shape == expected.shape
    if mode == "avg":
        np.testing.assert_allclose(shown, expected, rtol=1e-6, atol=0)
    else:
        np.testing.assert_array_equal(shown, expected)
    assert page.is_hidden("#error")
    h, w = expected.shape
    formula = page.inner_text("#formula")
    assert formula.splitlines()[0].endswith(f"= {h}") and formula.splitlines()[1].endswith(f"= {w}")
    assert page.eval_on_selector_all("#sums li", "lis => lis.length") == h * w


def test_the_blogs_numbers_after_changing_padding_and_stride(page):
    assert _output(page).ravel().tolist() == [19, 25, 37, 43]          # the page opens on 1.1
    page.fill("#p_h", "1")
    page.fill("#p_w", "1")
    page.fill("#s_h", "3")
    page.fill("#s_w", "2")
    assert _output(page).ravel().tolist() == [0, 8, 6, 8]
    page.click("#next")
    assert page.inner_text("#caption") == "Y[0, 1] = 0×0+0×1+1×2+2×3 = 8"
    page.click("#next")
    assert page.inner_text("#caption") == "Y[1, 0] = 0×0+6×1+0×2+0×3 = 6"


def test_next_prev_and_play_step_the_window(page):
    assert page.inner_text("#position") == "window 1 of 4: Y[0, 0]"
    assert page.inner_text("#caption") == "Y[0, 0] = 0×0+1×1+3×2+4×3 = 19"
    assert page.is_disabled("#prev")
    page.click("#next")
    page.click("#next")
    assert page.inner_text("#position") == "window 3 of 4: Y[1, 0]"
    assert page.inner_text("#caption") == "Y[1, 0] = 3×0+4×1+6×2+7×3 = 37"
    assert page.eval_on_selector_all("#input td.window", "tds => tds.map(td => td.textContent)") \
        == ["3", "4", "6", "7"]
    page.click("#prev")
    assert page.inner_text("#caption") == "Y[0, 1] = 1×0+2×1+4×2+5×3 = 25"
    page.click("#play")
    page.wait_for_function("document.getElementById('position').textContent.startsWith('window 4')",
                           timeout=TIMEOUT_MS)
    assert page.inner_text("#caption") == "Y[1, 1] = 4×0+5×1+7×2+8×3 = 43"
    assert page.is_disabled("#next")


def test_pooling_padding_as_large_as_the_window_is_refused(page):
    _set(page, "max", (4, 4), (2, 2), (2, 2), (1, 1))
    assert page.is_visible("#error")
    assert "padding must be smaller than the window" in page.inner_text("#error")
    assert _output(page).size == 0
    page.fill("#p_h", "1")
    page.fill("#p_w", "1")
    assert page.is_hidden("#error")
    np.testing.assert_array_equal(_output(page), _library("max", (4, 4), (2, 2), (1, 1), (1, 1)))
