/*
 * The conv of small planes with the images in the vector lanes (namespace lanes; included by
 * conv2d.cc before conv2d_gemm.h): float32, AVX-512, stride 1, no dilation, one group, a batch
 * of a multiple of 16 images.
 *
 * The input is laid out Xt[c][y][x][n] (cnn_base::moved_across), so one vector load holds
 * 16 images' values of one input cell, and output cell (o, y, x) of 16 images is
 *
 *   Yt[o][y][x][n ..] = sum over c and the window cells (i, j) inside the plane of
 *                       K[o][c][i][j] * Xt[c][y - p_h + i][x - p_w + j][n ..]
 *
 * the chapter's corr2d with the batch in the lanes. tile<OB, NV> sums OB output channels x NV
 * vectors of images of one output cell in registers over every input channel and window cell:
 * each load serves OB channels, each broadcast kernel value NV vectors. A border cell's loop
 * simply runs over fewer window cells: no padding is read or multiplied, no window gathered.
 *
 * What it buys: on 6 x 6 and 12 x 12 planes im2col's gathers (blocks, to skip the padding's
 * taps) cost as much as the multiply, and the BLAS's multiplies of 32-128 rows are short.
 * One thread, batch 32, forward / backward ms, im2col + the BLAS -> the lanes (the built-in):
 * GoogLeNet's 32 -> 128 k5 on 6 x 6 2.71 / 6.41 -> 1.77 / 3.85 (1.84 / 3.09), 16 -> 48 k5
 * 0.84 / 1.96 -> 0.47 / 0.87 (0.42 / 0.69), 32 -> 96 k5 on 12 x 12 7.88 / 18.4 -> 6.02 / 12.6
 * (5.88 / 10.5); DenseNet's 144 -> 32 k3 on 6 x 6 2.16 / 3.30 -> 1.18 / 1.93 (1.05 / 1.69),
 * 128 -> 32 on 12 x 12 5.49 / 9.02 -> 4.10 / 6.68 (3.77 / 5.99).
 *
 * The forward pass runs it, and so does the input gradient of a stride-1 conv (the transposed
 * conv: dY with the kernels turned, conv2d_gemm.h's backward). The weight gradient
 * (weight_grad) has the images in the lanes too: for each window cell, the output cells whose
 * window reads it inside the plane (one rectangle), kWB x kWC vectors of sums per tile.
 */
namespace lanes {

constexpr int64_t kLanes = 16;
constexpr int kOB = 12;                  // output channels a tile
// Where the lanes go before im2col + the BLAS (measured, one thread, batch 32, forward +
// backward ms, lanes / BLAS / built-in): output planes of up to 16 x 16 cells (64 -> 64 k3 on
// 16 x 16 19.1 / 21.2 / 16.5; on 24 x 24 the two alike, 44.9 / 44.3 / 37.4, and 128 -> 32 46.5 /
// 45.6 / 38.9) and windows of up to 2304 values, C k_h k_w (256 -> 256 k3 on 6 x 6 35.1 / 37.4
// / 33.5; 256 -> 384 on 12 x 12 221.6 / 219.8 / 207.7; above it the BLAS's long multiplies
// win: 512 -> 512 on 3 x 3 36.6 / 35.0 / 36.5, 832 -> 384 45.4 / 42.8 / 47.1).
constexpr int64_t kMaxCells = 16 * 16;
constexpr int64_t kMaxWindow = 2304;
// The input gradient's transposed conv takes the lanes up to windows of 8192 values, O k_h k_w
// (measured, one thread, batch 32, backward ms, a limit of 2304 -> 8192 (the built-in)): there
// im2col's gathers without the padding (blocks) cost more than the multiplies they feed.
// GoogLeNet's 32 -> 128 k5 on 6 x 6 6.03 -> 4.00 (3.25), 32 -> 96 k5 on 12 x 12 15.6 -> 12.7
// (11.1), 32 -> 128 k5 on 3 x 3 1.53 -> 1.27 (1.01), 192 -> 384 k3 on 3 x 3 9.04 -> 7.41
// (7.18), 144 -> 288 k3 on 6 x 6 16.9 -> 14.9 (15.1); 512 -> 512 k3 on 3 x 3 and 256 -> 512
// on 6 x 6 even (24.5 / 24.8, 48.0 / 48.0).
constexpr int64_t kMaxInputGradWindow = 8192;

inline int64_t padded_channels(int64_t O) { return (O + kOB - 1) / kOB * kOB; }

// Values a call's workspace takes: Xt, Yt (O rounded up to tiles) and the packed kernels.
inline int64_t values(const Geometry& g) {
  const int64_t O_pad = padded_channels(g.O);
  return g.N * (g.C * g.H * g.W + O_pad * g.OH * g.OW) + O_pad * g.C * g.KH * g.KW;
}

// The weight gradient's tile: kWB output channels x kWC input channels of one window cell.
constexpr int kWB = 4, kWC = 6;

// Values the weight gradient takes: Xt and dYt, channels rounded up to its tiles (zeros).
inline int64_t weight_grad_values(const Geometry& g) {
  const int64_t C_pad = (g.C + kWC - 1) / kWC * kWC, O_pad = (g.O + kWB - 1) / kWB * kWB;
  return g.N * (C_pad * g.H * g.W + O_pad * g.OH * g.OW);
}

inline bool has_avx512() {
#if defined(CNN_BASE_AVX2)
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

// Whether the lanes take this layer's forward (or, as the transposed conv, an input
// gradient); the dtype aside (applies<T>).
inline bool fits(const ConvParams& P, const Geometry& g, int64_t max_window = kMaxWindow) {
  const bool plain = P.s_h == 1 && P.s_w == 1 && P.d_h == 1 && P.d_w == 1 && g.G == 1 &&
                     P.p_h >= 0 && P.p_w >= 0 && P.p_h < g.KH && P.p_w < g.KW;
  const bool asked = P.algo == kAlgoAuto || P.algo == kAlgoLanes;
  return asked && plain && has_avx512() && g.N % kLanes == 0 && g.OH * g.OW <= kMaxCells &&
         g.C * g.KH * g.KW <= max_window && g.C >= 16 && g.O >= 16 && g.KH * g.KW > 1 &&
         values(g) < INT_MAX / static_cast<int64_t>(sizeof(float));
}

template <typename T>
bool applies(const ConvParams& P, const Geometry& g) {
  return std::is_same<T, float>::value && fits(P, g);
}

// Whether the lanes take the transposed conv (P, g) of an input gradient (kMaxInputGradWindow).
inline bool fits_input_grad(const ConvParams& P, const Geometry& g) {
  return fits(P, g, kMaxInputGradWindow);
}

template <typename T>
bool applies_to_input_grad(const ConvParams& P, const Geometry& g) {
  return std::is_same<T, float>::value && fits_input_grad(P, g);
}

// Kp[o / kOB][c][tap][o % kOB] = K[o][c][tap], zeros for the channels past O.
inline void pack_kernels(const Geometry& g, const float* K, float* Kp) {
  const int64_t taps = g.KH * g.KW, O_pad = padded_channels(g.O);
  for (int64_t o = 0; o < O_pad; ++o)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t tap = 0; tap < taps; ++tap)
        Kp[((o / kOB * g.C + c) * taps + tap) * kOB + o % kOB] =
            o < g.O ? K[(o * g.C + c) * taps + tap] : 0.0f;
}

#if defined(CNN_BASE_AVX2)
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

// The window cells of output cell (y, x) inside the plane: rows i0 .. i1, columns j0 .. j1.
struct Window {
  int64_t y, x, i0, i1, j0, j1;
};

inline Window window_of(const ConvParams& P, const Geometry& g, int64_t y, int64_t x) {
  return {y, x, std::max<int64_t>(0, P.p_h - y), std::min(g.KH, g.H + P.p_h - y),
          std::max<int64_t>(0, P.p_w - x), std::min(g.KW, g.W + P.p_w - x)};
}

// Out[b][n ..] = sum over c < C and the window's cells of Kp[c][i KW + j][b] * the input
// cell's NV vectors of images, for b < OB of the pack's kOB channels; Out's channels
// ``out_stride`` apart.
template <int OB, int NV>
void tile(const ConvParams& P, const Geometry& g, const Window& w, const float* Xt,
          const float* Kp, float* Out, int64_t out_stride) {
  __m512 acc[OB][NV];
#pragma GCC unroll 32
  for (int b = 0; b < OB; ++b)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) acc[b][v] = _mm512_setzero_ps();
  const int64_t taps = g.KH * g.KW;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t i = w.i0; i < w.i1; ++i) {
      const float* row = Xt + ((c * g.H + w.y - P.p_h + i) * g.W + w.x - P.p_w) * g.N;
      const float* k = Kp + (c * taps + i * g.KW) * kOB;
      for (int64_t j = w.j0; j < w.j1; ++j) {
        __m512 x[NV];
#pragma GCC unroll 32
        for (int v = 0; v < NV; ++v) x[v] = _mm512_loadu_ps(row + j * g.N + v * kLanes);
#pragma GCC unroll 32
        for (int b = 0; b < OB; ++b) {
          const __m512 kb = _mm512_set1_ps(k[j * kOB + b]);
#pragma GCC unroll 32
          for (int v = 0; v < NV; ++v) acc[b][v] = _mm512_fmadd_ps(kb, x[v], acc[b][v]);
        }
      }
    }
#pragma GCC unroll 32
  for (int b = 0; b < OB; ++b)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(Out + b * out_stride + v * kLanes, acc[b][v]);
}

// Yt's tiles: OB output channels from o0 of cell ``cell``, every image.
template <int OB>
void cell_sums_of(const ConvParams& P, const Geometry& g, const float* Xt, const float* Kp,
                  int64_t o0, int64_t cell, float* Yt) {
  const Window w = window_of(P, g, cell / g.OW, cell % g.OW);
  const float* k = Kp + o0 * g.C * g.KH * g.KW;
  const int64_t stride = g.OH * g.OW * g.N;
  float* out = Yt + (o0 * g.OH * g.OW + cell) * g.N;
  int64_t n = 0;
  for (; n + 2 * kLanes <= g.N; n += 2 * kLanes)
    tile<OB, 2>(P, g, w, Xt + n, k, out + n, stride);
  if (n < g.N) tile<OB, 1>(P, g, w, Xt + n, k, out + n, stride);
}

// Output channels o0 .. o0 + kOB of cell ``cell``, or as many of them as there are, in 4s.
// What it buys: 16 output channels were two tiles of 12, a third of the sums on the padding's
// zero kernels (the transposed conv of GoogLeNet's 16 -> 32 k5: dX to 16 channels). Each
// channel's sum runs in the same order whatever the tile: the same bits.
inline void cell_sums(const ConvParams& P, const Geometry& g, const float* Xt, const float* Kp,
                      int64_t o0, int64_t cell, float* Yt) {
  const int64_t left = g.O - o0;
  if (left <= 4) return cell_sums_of<4>(P, g, Xt, Kp, o0, cell, Yt);
  if (left <= 8) return cell_sums_of<8>(P, g, Xt, Kp, o0, cell, Yt);
  cell_sums_of<kOB>(P, g, Xt, Kp, o0, cell, Yt);
}

// Sum of the 16 lanes of v.
inline float lane_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

// dW[o][c][tap] for the tile's WB output channels from o0 and WC input channels from c0, of
// window cell (i, j): over the output cells whose window reads (i, j) inside the plane (one
// rectangle, no padding read) and every image, WB x WC vectors of sums in registers.
template <int WB, int WC>
void weight_tile(const ConvParams& P, const Geometry& g, const float* Xt, const float* dYt,
                 int64_t o0, int64_t c0, int64_t i, int64_t j, float* dW) {
  const int64_t y0 = std::max<int64_t>(0, P.p_h - i), y1 = std::min(g.OH, g.H + P.p_h - i);
  const int64_t x0 = std::max<int64_t>(0, P.p_w - j), x1 = std::min(g.OW, g.W + P.p_w - j);
  const int64_t x_plane = g.H * g.W * g.N, y_plane = g.OH * g.OW * g.N;
  __m512 acc[WB][WC];
#pragma GCC unroll 32
  for (int b = 0; b < WB; ++b)
#pragma GCC unroll 32
    for (int a = 0; a < WC; ++a) acc[b][a] = _mm512_setzero_ps();
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) {
      const float* dy = dYt + (o0 * g.OH * g.OW + y * g.OW + x) * g.N;
      const float* in = Xt + (c0 * g.H * g.W + (y - P.p_h + i) * g.W + x - P.p_w + j) * g.N;
      for (int64_t n = 0; n < g.N; n += kLanes) {
        __m512 d[WB];
#pragma GCC unroll 32
        for (int b = 0; b < WB; ++b) d[b] = _mm512_loadu_ps(dy + b * y_plane + n);
#pragma GCC unroll 32
        for (int a = 0; a < WC; ++a) {
          const __m512 v = _mm512_loadu_ps(in + a * x_plane + n);
#pragma GCC unroll 32
          for (int b = 0; b < WB; ++b) acc[b][a] = _mm512_fmadd_ps(d[b], v, acc[b][a]);
        }
      }
    }
  const int64_t taps = g.KH * g.KW, tap = i * g.KW + j;
  for (int b = 0; b < WB && o0 + b < g.O; ++b)
    for (int a = 0; a < WC && c0 + a < g.C; ++a)
      dW[((o0 + b) * g.C + c0 + a) * taps + tap] = lane_sum(acc[b][a]);
}

#pragma GCC pop_options
#else
template <int WB, int WC>
void weight_tile(const ConvParams&, const Geometry&, const float*, const float*, int64_t,
                 int64_t, int64_t, int64_t, float*) {}
inline void cell_sums(const ConvParams&, const Geometry&, const float*, const float*, int64_t,
                      int64_t, float*) {}
#endif

// Y = the conv of X by K (bias B): X turned to Xt, every (channel tile, cell) summed on the
// threads parallel.h's policy gives, Yt turned back with the bias; ``space``: values(g).
inline void forward_in(const ConvParams& P, const Geometry& g, const float* X, const float* K,
                       const float* B, float* Y, float* space) {
  const int64_t O_pad = padded_channels(g.O), cells = g.OH * g.OW, plane = g.C * g.H * g.W;
  float* const Xt = space;
  float* const Yt = Xt + g.N * plane;
  float* const Kp = Yt + g.N * O_pad * cells;
  pack_kernels(g, K, Kp);
  const int64_t items = O_pad / kOB * cells;
  const int n_threads =
      cnn_base::threads_for(items, g.N * kOB * g.C * g.KH * g.KW + g.N * (plane / items + 1));
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t q0 = plane * t / threads, q1 = plane * (t + 1) / threads;
    cnn_base::moved_across(X + q0, plane, Xt + q0 * g.N, g.N, g.N, q1 - q0);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item)
      cell_sums(P, g, Xt, Kp, item / cells * kOB, item % cells, Yt);
    const int64_t r0 = g.O * cells * t / threads, r1 = g.O * cells * (t + 1) / threads;
    cnn_base::moved_across(Yt + r0 * g.N, g.N, Y + r0, g.O * cells, r1 - r0, g.N);
#pragma omp barrier
    if (B != nullptr) {
#pragma omp for schedule(static)
      for (int64_t row = 0; row < g.N * g.O; ++row)
        for (int64_t q = 0; q < cells; ++q) Y[row * cells + q] += B[row % g.O];
    }
  }
}

// rows x columns of ``from`` (its rows ``ld`` apart) into ``to`` turned, then ``zero_rows``
// rows of zeros after them, on this thread's share of the team's rows.
inline void turned_padded(const float* from, int64_t ld, int64_t rows, int64_t columns,
                          int64_t zero_rows, float* to) {
  const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
  const int64_t q0 = columns * t / threads, q1 = columns * (t + 1) / threads;
  cnn_base::moved_across(from + q0, ld, to + q0 * rows, rows, rows, q1 - q0);
  const int64_t z0 = zero_rows * t / threads, z1 = zero_rows * (t + 1) / threads;
  std::fill(to + (columns + z0) * rows, to + (columns + z1) * rows, 0.0f);
}

// dW = the weight gradient from dY and X, every (output tile, input tile) on the threads
// parallel.h's policy gives, each over every window cell: X and dY turned (images in the
// lanes) into ``space`` (weight_grad_values(g)), their channels rounded up to the tiles with
// zeros. Each dW value is summed by one thread, in one order: its bits do not depend on load.
inline void weight_grad(const ConvParams& P, const Geometry& g, const float* dY, const float* X,
                        float* dW, float* space) {
  const int64_t C_pad = (g.C + kWC - 1) / kWC * kWC, O_pad = (g.O + kWB - 1) / kWB * kWB;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  float* const Xt = space;
  float* const dYt = Xt + C_pad * in_plane * g.N;
  const int64_t items = O_pad / kWB * (C_pad / kWC);
  const int n_threads = cnn_base::threads_for(items, kWB * kWC * out_plane * g.N * g.KH * g.KW);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    turned_padded(X, g.C * in_plane, g.N, g.C * in_plane, (C_pad - g.C) * in_plane, Xt);
    turned_padded(dY, g.O * out_plane, g.N, g.O * out_plane, (O_pad - g.O) * out_plane, dYt);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t o0 = item / (C_pad / kWC) * kWB, c0 = item % (C_pad / kWC) * kWC;
      for (int64_t i = 0; i < g.KH; ++i)
        for (int64_t j = 0; j < g.KW; ++j)
          weight_tile<kWB, kWC>(P, g, Xt, dYt, o0, c0, i, j, dW);
    }
  }
}

template <typename T>
void forward(const ConvParams& P, const Geometry& g, const T* X, const T* K, const T* B, T* Y,
             const OpResource& res) {
  if constexpr (std::is_same<T, float>::value)
    forward_in(P, g, X, K, B, Y, workspace<float>(res, values(g)));
}

}  // namespace lanes
