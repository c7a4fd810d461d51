// The window, steered: cross-correlation, max and average pooling of a small input, one window
// position at a time. Plain JavaScript, no build step. The arithmetic follows Gluon (and
// cnn_base.functional.conv2d / pool2d_nchw, which tests/test_interactive_page.py compares it
// with in a browser):
//   output size = floor((n + 2p - d(k - 1) - 1) / s) + 1, padding p on each side;
//   max pooling pads with -infinity (padding never wins), average pooling pads with 0 and
//   divides by the whole window (count_include_pad=True); pooling takes no dilation and its
//   padding must be smaller than the window.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const PAIRS = ["n", "k", "p", "s", "d"];

  // A number as the figures write it: whole numbers bare, others with 4 significant digits.
  function fmt(v) {
    if (v === -Infinity) return "−∞";
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toPrecision(4)));
  }

  function readSettings() {
    const s = { mode: $("mode").value };
    for (const name of PAIRS) {
      s[name] = ["h", "w"].map((axis) => {
        const input = $(`${name}_${axis}`);
        const v = Math.round(Number(input.value));
        const lo = Number(input.min), hi = Number(input.max);
        return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
      });
    }
    return s;
  }

  // Everything the page shows, from the settings alone: the padded input, the kernel, every
  // window position with its cells, its value and its sum written out; or an error.
  function compute(s) {
    const pool = s.mode !== "corr";
    const [n_h, n_w] = s.n, [k_h, k_w] = s.k, [p_h, p_w] = s.p, [s_h, s_w] = s.s;
    const [d_h, d_w] = pool ? [1, 1] : s.d;
    const span = [d_h * (k_h - 1) + 1, d_w * (k_w - 1) + 1];
    const formula = ["h", "w"].map((axis, a) =>
      `${axis}' = ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1 = ` +
      `⌊(${s.n[a]} + 2·${s.p[a]} − ${pool ? 1 : s.d[a]}·(${s.k[a]} − 1) − 1) / ${s.s[a]}⌋ + 1`);
    if (pool && (p_h >= k_h || p_w >= k_w)) {
      return { error: `pooling padding must be smaller than the window (as in Gluon): ` +
                      `padding (${p_h}, ${p_w}), window (${k_h}, ${k_w})`, formula };
    }
    if (span[0] > n_h + 2 * p_h || span[1] > n_w + 2 * p_w) {
      return { error: `the (dilated) window ${span[0]}×${span[1]} does not fit in the padded ` +
                      `input ${n_h + 2 * p_h}×${n_w + 2 * p_w}`, formula };
    }
    const h = Math.floor((n_h + 2 * p_h - span[0]) / s_h) + 1;
    const w = Math.floor((n_w + 2 * p_w - span[1]) / s_w) + 1;
    const padValue = s.mode === "max" ? -Infinity : 0;
    const X = [], isPad = [];
    for (let i = 0; i < n_h + 2 * p_h; i++) {
      X.push([]); isPad.push([]);
      for (let j = 0; j < n_w + 2 * p_w; j++) {
        const inside = i >= p_h && i < p_h + n_h && j >= p_w && j < p_w + n_w;
        X[i].push(inside ? (i - p_h) * n_w + (j - p_w) : padValue);
        isPad[i].push(!inside);
      }
    }
    const K = [];
    for (let a = 0; a < k_h; a++) K.push(Array.from({ length: k_w }, (_, b) => a * k_w + b));
    const cells = [];
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const taps = [];
        for (let a = 0; a < k_h; a++) {
          for (let b = 0; b < k_w; b++) {
            const r = i * s_h + a * d_h, c = j * s_w + b * d_w;
            taps.push({ r, c, x: X[r][c], k: K[a][b] });
          }
        }
        let value, sum;
        if (s.mode === "corr") {
          value = taps.reduce((acc, t) => acc + t.x * t.k, 0);
          sum = taps.map((t) => `${fmt(t.x)}×${fmt(t.k)}`).join("+");
        } else if (s.mode === "max") {
          value = Math.max(...taps.map((t) => t.x));
          sum = `max(${taps.map((t) => fmt(t.x)).join(", ")})`;
        } else {
          value = taps.reduce((acc, t) => acc + t.x, 0) / taps.length;
          sum = `(${taps.map((t) => fmt(t.x)).join("+")})/${taps.length}`;
        }
        cells.push({ i, j, taps, value, sum });
      }
    }
    formula[0] += ` = ${h}`;
    formula[1] += ` = ${w}`;
    return { X, isPad, K, h, w, cells, formula };
  }

  function table(el, rows, decorate) {
    el.replaceChildren();
    rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      row.forEach((v, j) => {
        const td = document.createElement("td");
        td.textContent = fmt(v);
        td.dataset.i = i;
        td.dataset.j = j;
        td.dataset.value = String(v);
        decorate(td, i, j);
        tr.appendChild(td);
      });
      el.appendChild(tr);
    });
  }

  let state = null, step = 0, timer = null;

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    $("play").textContent = "▶ Play";
  }

  function render() {
    const out = state;
    $("formula").textContent = out.formula.join("\n");
    const bad = Boolean(out.error);
    $("error").hidden = !bad;
    $("error").textContent = bad ? out.error : "";
    for (const id of ["prev", "next", "play"]) $(id).disabled = bad;
    const pool = $("mode").value !== "corr";
    $("kernel-figure").hidden = pool;
    $("op-symbol").textContent = pool ? "" : "⋆";
    for (const axis of ["h", "w"]) $(`d_${axis}`).disabled = pool;
    if (bad) {
      for (const id of ["input", "kernel", "output", "sums"]) $(id).replaceChildren();
      $("caption").textContent = "";
      $("position").textContent = "";
      return;
    }
    const cell = out.cells[step];
    const inWindow = new Set(cell.taps.map((t) => `${t.r},${t.c}`));
    table($("input"), out.X, (td, i, j) => {
      if (out.isPad[i][j]) td.classList.add("pad");
      if (inWindow.has(`${i},${j}`)) td.classList.add("window");
    });
    table($("kernel"), out.K, (td) => td.classList.add("window"));
    const Y = Array.from({ length: out.h }, (_, i) =>
      Array.from({ length: out.w }, (_, j) => out.cells[i * out.w + j].value));
    table($("output"), Y, (td, i, j) => {
      const k = i * out.w + j;
      td.title = `Y[${i}, ${j}] = ${out.cells[k].sum} = ${fmt(out.cells[k].value)}`;
      td.classList.add(k < step ? "done" : k === step ? "current" : "pending");
    });
    $("input-label").textContent = out.isPad.some((r) => r.includes(true)) ?
      "Input (padded)" : "Input";
    $("output-label").textContent = `Output ${out.h}×${out.w}`;
    $("position").textContent = `window ${step + 1} of ${out.cells.length}: Y[${cell.i}, ${cell.j}]`;
    $("caption").textContent = `Y[${cell.i}, ${cell.j}] = ${cell.sum} = ${fmt(cell.value)}`;
    const sums = $("sums");
    sums.replaceChildren();
    out.cells.forEach((c, k) => {
      const li = document.createElement("li");
      li.textContent = `Y[${c.i}, ${c.j}] = ${c.sum} = ${fmt(c.value)}`;
      if (k === step) li.classList.add("current");
      sums.appendChild(li);
    });
    $("prev").disabled = step === 0;
    $("next").disabled = step === out.cells.length - 1;
  }

  function update() {
    stop();
    state = compute(readSettings());
    step = 0;
    render();
  }

  function go(delta) {
    if (!state || state.error) return;
    step = Math.min(state.cells.length - 1, Math.max(0, step + delta));
    render();
  }

  function play() {
    if (timer !== null) { stop(); return; }
    if (state.error) return;
    if (step === state.cells.length - 1) step = 0;
    render();
    $("play").textContent = "❚❚ Pause";
    timer = setInterval(() => {
      if (step >= state.cells.length - 1) { stop(); return; }
      go(1);
    }, 800);
  }

  $("controls").addEventListener("input", update);
  $("controls").addEventListener("change", update);
  $("prev").addEventListener("click", () => { stop(); go(-1); });
  $("next").addEventListener("click", () => { stop(); go(1); });
  $("play").addEventListener("click", play);
  // for the console and the tests: the same arithmetic without the page
  window.cnnWindow = { compute, readSettings };
  update();
})();
