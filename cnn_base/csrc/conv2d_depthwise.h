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
 * from (the transposed conv, scattered), dW sums each image's products per kernel cell
 * (in kCellsAtOnce partial sums, added in a fixed order), then adds the images in order.
 * The vector loops (forward_lanes, backward_lanes, and the copies between planes and cells,
 * planes_to_cells and cells_to_planes) are in conv2d_loops.h, compiled for AVX2 with FMA
 * and for any x86-64 as the tiles' are.
 */

namespace depthwise {

template <typename T>
constexpr int kLanes = base::Lanes<T>::L;

// Input planes of at most this many cells go side by side (larger ones: the row tiles,
// corr_rows, reading the planes as they lie). Until round 14 only strided convs and rows
// shorter than 8 cells did: the loops summed one cell at a time and copied value by value
// (stride 1, 576 on 14 x 14: row tiles 4.4 ms forward + backward, side by side 5.8, built-in
// 2.9). With kCellsAtOnce sums and the copies turned in registers (conv2d_loops.h), side by
// side is the faster way on every MobileNetV2 shape, stride 1 too. One thread, batch 8, best
// of 150-400, forward / backward ms, row tiles -> side by side: 576 on 14 x 14 1.28-1.52 /
// 2.9-3.0 -> 0.87-1.00 / 2.7-3.2; 192 on 28 x 28 1.40 / 3.3-4.0 -> 0.96-1.44 / 2.9-3.2; 144
// on 56 x 56 4.8-6.3 / 12.4 -> 4.0-4.5 / 8.6-9.0; 32 on 112 x 112 4.7-4.9 / 10.5-11.0 ->
// 3.2-3.7 / 8.2-8.4 (two threads, idle: 2.6-2.7 / 7.1-7.7 -> 1.9 / 5.0-5.3 on 56 x 56).
constexpr int64_t kMaxPlane = 112 * 112;

// Whether this call runs side by side: algo "auto", a depthwise conv, a small input plane,
// and a padding inside the window's reach (the padded buffer then holds every window).
inline bool applies(const ConvParams& P, const Geometry& g) {
  return P.algo == kAlgoAuto && g.Cg == 1 && g.Og == 1 && g.H * g.W <= kMaxPlane &&
         P.p_h <= P.d_h * (g.KH - 1) && P.p_w <= P.d_w * (g.KW - 1);
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
// the lanes past C are left as they are (zero). The copies: planes_to_cells (conv2d_loops.h).
template <typename T>
void to_lanes(const T* src, int64_t C, int64_t rows, int64_t cols, int64_t n, int64_t c0,
              T* dst, int64_t BW, int64_t top, int64_t left) {
  const int lanes = static_cast<int>(std::min<int64_t>(kLanes<T>, C - c0));
  planes_to_cells_item(src + (n * C + c0) * rows * cols, rows * cols, cols, lanes, dst, BW, top,
                       left);
}

// The inverse: the cells (top, left) .. (top + rows, left + cols) of ``src``'s lanes into
// image n's planes of the channels [c0, c0 + L) of ``dst``.
template <typename T>
void from_lanes(const T* src, int64_t BW, int64_t top, int64_t left, int64_t C, int64_t rows,
                int64_t cols, int64_t n, int64_t c0, T* dst) {
  const int lanes = static_cast<int>(std::min<int64_t>(kLanes<T>, C - c0));
  cells_to_planes_item(src, BW, top, left, rows * cols, cols, lanes,
                       dst + (n * C + c0) * rows * cols);
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
