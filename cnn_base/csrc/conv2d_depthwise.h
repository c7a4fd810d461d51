/*
 * Depthwise convs of small planes, the planes side by side: conv2d.cc includes this file
 * into its anonymous namespace as namespace ``depthwise``.
 *
 * A depthwise conv (one input and one output channel per group) sums k_h k_w products
 * per output cell, one plane at a time. On small planes the register tiles (corr_rows)
 * spend more on each plane's padding, its calls and its short rows than on the sums
 * (MobileNetV2's 960 planes of 7 x 7: 3.6 ms forward + backward on one thread, the
 * built-in 0.9). Here L planes (8 floats or 4 doubles: one AVX2 vector) are laid side by
 * side, cell by cell, in a zero-padded buffer: every cell is then a vector of L planes'
 * values, and each kernel cell a vector of L channels' weights, so one vector
 * multiply-add serves L planes with no padding per plane and no horizontal sums, for any
 * stride and dilation (a stride only steps over whole cells). The built-in's oneDNN
 * kernel lays its channels out the same way (nChw8c).
 *
 * Channel block b holds the channels [b L, b L + L) (lanes past C stay zero); one loop
 * item per block, over every image in order, so each block's dW is summed by one thread
 * in a fixed order (the same bits whatever the load). The forward sums each output as
 * corr_tiles does (the bias, then the kernel cells in row-major order), so Y has the
 * same bits as the tiles'; dX adds each output gradient's products into the cells it came
 * from (the transposed conv, scattered), dW sums each image's products per kernel cell,
 * then adds the images in order. The vector loops (forward_lanes, backward_lanes) are in
 * conv2d_loops.h, compiled for AVX2 with FMA and for any x86-64 as the tiles' are.
 */

namespace depthwise {

template <typename T>
constexpr int kLanes = base::Lanes<T>::L;

// Input planes of at most this many cells may go side by side, and only with a stride or
// output rows shorter than kShortRow: elsewhere the row tiles (corr_rows) read the planes as
// they lie, and the side-by-side way's transposes in and out cost about what it saves. One
// thread, forward + backward, the two ways and the built-in interleaved in one process, ms,
// row tiles / side by side / built-in (MobileNetV2, batch 8): stride 2, 96 on 112 x 112 32.0 /
// 22.0 / 18.9, 144 on 56 x 56 11.7 / 8.5 / 6.9, 192 on 28 x 28 4.7 / 2.9 / 2.4, 576 on 14 x 14
// 5.9 / 2.7 / 1.9; 960 on 7 x 7 3.5 / 2.1 / 1.1; but stride 1, 576 on 14 x 14 4.4 / 5.8 / 2.9,
// 192 on 28 x 28 4.9 / 5.4 / 3.4 (on 56 x 56 and 112 x 112 side by side was 11-13% faster:
// left to the row tiles, one rule).
constexpr int64_t kMaxPlane = 112 * 112;
constexpr int64_t kShortRow = 8;

// Whether this call runs side by side: algo "auto", a depthwise conv, a small input plane
// with a stride or short output rows, and a padding inside the window's reach (the padded
// buffer then holds every window).
inline bool applies(const ConvParams& P, const Geometry& g) {
  const bool strided = P.s_h > 1 || P.s_w > 1;
  return P.algo == kAlgoAuto && g.Cg == 1 && g.Og == 1 && g.H * g.W <= kMaxPlane &&
         (strided || g.OW < kShortRow) && P.p_h <= P.d_h * (g.KH - 1) &&
         P.p_w <= P.d_w * (g.KW - 1);
}

// The sizes of a block's buffers: the padded input plane (BH x BW cells, in_cells values)
// and the output plane (out_cells values); the kernel's taps, the blocks of channels.
struct Sizes {
  int64_t BH, BW, taps, blocks, in_cells, out_cells;
};

template <typename T>
Sizes sizes_of(const ConvParams& P, const Geometry& g) {
  constexpr int L = kLanes<T>;
  const int64_t BH = g.H + 2 * P.p_h, BW = g.W + 2 * P.p_w;
  return {BH, BW, g.KH * g.KW, (g.C + L - 1) / L, BH * BW * L, g.OH * g.OW * L};
}

// Image n's planes of the channels [c0, c0 + L) of ``src`` (C planes of rows x cols per image)
// into the lanes of ``dst`` (cells of L values, BW cells a row) from cell (top, left) on;
// the lanes past C are left as they are (zero).
template <typename T>
void to_lanes(const T* src, int64_t C, int64_t rows, int64_t cols, int64_t n, int64_t c0,
              T* dst, int64_t BW, int64_t top, int64_t left) {
  constexpr int L = kLanes<T>;
  const T* plane = src + (n * C + c0) * rows * cols;
  const int64_t size = rows * cols, lanes = std::min<int64_t>(L, C - c0);
  for (int64_t r = 0; r < rows; ++r)        // each cell's values written together
    for (int64_t c = 0; c < cols; ++c) {
      T* cell = dst + ((r + top) * BW + c + left) * L;
      const T* from = plane + r * cols + c;
      for (int l = 0; l < lanes; ++l) cell[l] = from[l * size];
    }
}

// The inverse: the cells (top, left) .. (top + rows, left + cols) of ``src``'s lanes into
// image n's planes of the channels [c0, c0 + L) of ``dst``.
template <typename T>
void from_lanes(const T* src, int64_t BW, int64_t top, int64_t left, int64_t C, int64_t rows,
                int64_t cols, int64_t n, int64_t c0, T* dst) {
  constexpr int L = kLanes<T>;
  T* plane = dst + (n * C + c0) * rows * cols;
  const int64_t size = rows * cols, lanes = std::min<int64_t>(L, C - c0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const T* cell = src + ((r + top) * BW + c + left) * L;
      T* to = plane + r * cols + c;
      for (int l = 0; l < lanes; ++l) to[l * size] = cell[l];
    }
}

// Block b's kernels (taps x L, channel-innermost; zero past C), and its biases when ``B``.
template <typename T>
void block_kernels(const Geometry& g, const Sizes& z, const T* K, const T* B, int64_t c0, T* Kl,
                   T* Bl) {
  constexpr int L = kLanes<T>;
  for (int l = 0; l < L; ++l) {
    const bool real = c0 + l < g.C;
    for (int64_t t = 0; t < z.taps; ++t) Kl[t * L + l] = real ? K[(c0 + l) * z.taps + t] : T(0);
    if (Bl != nullptr) Bl[l] = real && B != nullptr ? B[c0 + l] : T(0);
  }
}

// The buffers of both passes are MXNet's workspace (scratch), kept from call to call.
template <typename T>
void forward(const ConvParams& P, const Geometry& g, const T* X, const T* K, const T* B, T* Y,
             const OpResource& res) {
  constexpr int L = kLanes<T>;
  const Sizes z = sizes_of<T>(P, g);
  const int64_t in_cells = z.in_cells, out_cells = z.out_cells;
  const int n_threads = cnn_base::threads_for(z.blocks, g.N * z.out_cells * z.taps);
  const int64_t per_thread = in_cells + out_cells + (z.taps + 1) * L;
  std::vector<T> fallback;
  T* const buffers = scratch<T>(res, n_threads * per_thread, &fallback);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* Xl = buffers + omp_get_thread_num() * per_thread;
    T* Yl = Xl + in_cells;
    T* Kl = Yl + out_cells;
    T* Bl = Kl + z.taps * L;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < z.blocks; ++b) {
      block_kernels(g, z, K, B, b * L, Kl, Bl);
      std::fill(Xl, Xl + in_cells, T(0));
      for (int64_t n = 0; n < g.N; ++n) {
        to_lanes(X, g.C, g.H, g.W, n, b * L, Xl, z.BW, P.p_h, P.p_w);
        forward_lanes_item(P, g, z.BW, static_cast<const T*>(Xl), static_cast<const T*>(Kl),
                           static_cast<const T*>(Bl), Yl);
        from_lanes(static_cast<const T*>(Yl), g.OW, 0, 0, g.C, g.OH, g.OW, n, b * L, Y);
      }
    }
  }
}

template <typename T>
void backward(const ConvParams& P, const Geometry& g, const T* dY, const T* X, const T* K,
              T* dX, T* dK, const OpResource& res) {
  constexpr int L = kLanes<T>;
  const Sizes z = sizes_of<T>(P, g);
  const int64_t in_cells = z.in_cells, out_cells = z.out_cells;
  const int n_threads = cnn_base::threads_for(z.blocks, 2 * g.N * z.out_cells * z.taps);
  const int64_t per_thread = 2 * in_cells + out_cells + 2 * z.taps * L;
  std::vector<T> fallback;
  T* const buffers = scratch<T>(res, n_threads * per_thread, &fallback);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* Xl = buffers + omp_get_thread_num() * per_thread;
    T* dXl = Xl + in_cells;
    T* dYl = dXl + in_cells;
    T* Kl = dYl + out_cells;
    T* dKl = Kl + z.taps * L;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < z.blocks; ++b) {
      block_kernels(g, z, K, static_cast<const T*>(nullptr), b * L, Kl,
                    static_cast<T*>(nullptr));
      std::fill(Xl, Xl + in_cells, T(0));
      std::fill(dYl, dYl + out_cells, T(0));
      std::fill(dKl, dKl + z.taps * L, T(0));
      for (int64_t n = 0; n < g.N; ++n) {
        to_lanes(X, g.C, g.H, g.W, n, b * L, Xl, z.BW, P.p_h, P.p_w);
        to_lanes(dY, g.C, g.OH, g.OW, n, b * L, dYl, g.OW, 0, 0);
        std::fill(dXl, dXl + in_cells, T(0));
        backward_lanes_item(P, g, z.BW, static_cast<const T*>(dYl), static_cast<const T*>(Xl),
                            static_cast<const T*>(Kl), dXl, dKl);
        from_lanes(static_cast<const T*>(dXl), z.BW, P.p_h, P.p_w, g.C, g.H, g.W, n, b * L, dX);
      }
      for (int l = 0; l < L && b * L + l < g.C; ++l)
        for (int64_t t = 0; t < z.taps; ++t) dK[(b * L + l) * z.taps + t] = dKl[t * L + l];
    }
  }
}

}  // namespace depthwise
