/*
 * im2col without the padding (included by conv2d_gemm.h, inside namespace gemm).
 *
 * A window on the border of a small plane reads mostly padding, and im2col multiplies the
 * padding's zeros like any value: a 3 x 3 window padded by 1 has 4 of its 9 taps inside a
 * 3 x 3 plane at a corner, 6 on an edge, so 40% of the multiply-adds of ResNet-18's last
 * stage are by zeros, 21% on 6 x 6, 11% on 12 x 12; 56% for GoogLeNet's 5 x 5 on 3 x 3.
 * oneDNN's direct conv skips them. Here too: the output rows whose windows reach the same
 * kernel rows inside the plane form a run (Run), and so do the output columns; each pair of
 * runs is a block, whose columns (its cells of every image, image by image, chunked: Block)
 * are multiplied with the block's taps only. The kernel is read tap-major, K ordered
 * (i, j, c), so a block's taps of one kernel row are one range of K: one multiply when the
 * block reads whole kernel rows, else one per kernel row, summed.
 *
 *   cols_b (taps_b C_g x n) = im2col of block b's taps,  Y_b (O_g x n) = Wr_b cols_b
 *
 * Used for the forward of a conv whose tiles are whole planes of several images (small
 * planes) and that has padding (use_blocks), and so for dX of stride 1 (the transposed
 * conv's forward).
 */

// Output rows (or columns) o0 .. o1 whose windows read kernel rows (columns) k0 .. k1 inside
// the plane; k0 == k1: none.
struct Run {
  int64_t o0, o1, k0, k1;
};

// The runs of ``outs`` outputs over ``in`` inputs, kernel k, stride s, padding p, dilation d.
inline std::vector<Run> runs_of(int64_t outs, int64_t in, int64_t k, int64_t s, int64_t p,
                                int64_t d) {
  std::vector<Run> runs;
  for (int64_t o = 0; o < outs; ++o) {
    const int64_t first = o * s - p;     // the input tap 0 reads
    const int64_t k0 = std::min(k, first >= 0 ? 0 : (-first + d - 1) / d);
    const int64_t k1 = std::max(k0, first > in - 1 ? 0 : std::min(k, (in - 1 - first) / d + 1));
    if (!runs.empty() && runs.back().k0 == k0 && runs.back().k1 == k1) {
      runs.back().o1 = o + 1;
    } else {
      runs.push_back({o, o + 1, k0, k1});
    }
  }
  return runs;
}

// Columns c0 .. c1 of group grp's block of row run y and column run x; the block's columns
// are its cells of image 0, then of image 1, ..., each image's row by row.
struct Block {
  Run y, x;
  int64_t grp, c0, c1;
};

// Columns a block's chunk has at most: the tiles' columns (tiling), and no more than fill
// kBlockValues values of its columns (K of them each), in multiples of 32 (oneDNN's sgemm
// runs 10-20% slower on 44 or 66 columns than on 32 or 96). What the bound buys: the
// gathered columns stay in a core's L2 for the multiply that reads them (a 6 x 6 plane's
// 1584-value columns, 512 of them, were 3.2 MB): one thread, forward + backward, DenseNet's
// 112-176 -> 32 k3 on 6 x 6 1-10% faster, GoogLeNet's 128 -> 256 4%, 512 -> 512 on 3 x 3 2%.
// At least kBlockMinColumns columns a chunk, though: a 512 -> 512 k3 layer on 7 x 7 planes
// (K 4608) had chunks of 32 columns, whose multiplies ran at 93 GFLOP/s where 128 columns
// reach the sgemm's 100+ (f+b one thread 65 -> 61 ms; DenseNet's and GoogLeNet's narrow 6 x 6
// layers unchanged).
constexpr int64_t kBlockValues = int64_t(1) << 17;     // 512 KiB of float32
constexpr int64_t kBlockMinColumns = 128;

inline int64_t block_columns(const Geometry& g) {
  const int64_t K = g.Cg * g.KH * g.KW;
  const int64_t columns =
      std::min(tiling(g).columns, std::max<int64_t>(kBlockMinColumns, kBlockValues / K));
  return columns >= 32 ? columns / 32 * 32 : columns;
}

// Every block chunk of the conv over ``images`` images, group by group, at most ``most``
// columns a chunk.
inline std::vector<Block> blocks_of(const ConvParams& P, const Geometry& g, int64_t images,
                                    int64_t most) {
  const std::vector<Run> rows = runs_of(g.OH, g.H, g.KH, P.s_h, P.p_h, P.d_h);
  const std::vector<Run> columns = runs_of(g.OW, g.W, g.KW, P.s_w, P.p_w, P.d_w);
  std::vector<Block> all;
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (const Run& y : rows)
      for (const Run& x : columns) {
        const int64_t n = images * (y.o1 - y.o0) * (x.o1 - x.o0);
        for (int64_t c0 = 0; c0 < n; c0 += most)
          all.push_back({y, x, grp, c0, std::min(n, c0 + most)});
      }
  return all;
}

// The share of a window's taps that read padding, over all output cells.
inline double padding_share(const ConvParams& P, const Geometry& g) {
  auto inside = [](const std::vector<Run>& runs, int64_t k) {
    int64_t taps = 0, outs = 0;
    for (const Run& r : runs) taps += (r.o1 - r.o0) * (r.k1 - r.k0), outs += r.o1 - r.o0;
    return outs > 0 ? double(taps) / double(outs * k) : 1.0;
  };
  return 1.0 - inside(runs_of(g.OH, g.H, g.KH, P.s_h, P.p_h, P.d_h), g.KH) *
                   inside(runs_of(g.OW, g.W, g.KW, P.s_w, P.p_w, P.d_w), g.KW);
}

// What algo "auto" asks of a conv before it multiplies by blocks, measured forward +
// backward on one thread against im2col: 15% of the taps in the padding (6 x 6 planes by 3 x 3
// windows, 21%: 8-13% faster, DenseNet's 176 -> 32 and GoogLeNet's 128 -> 256; 5 x 5 on
// 6 x 6 9%; 3 x 3, 40%: 10%; 5 x 5 on 12 x 12, 19%: even; but 3 x 3 on 12 x 12, 11%: 7-8%
// slower, DenseNet's 96-192 -> 32, since im2col copies such rows by planes,
// im2col_same_width), and 32 input channels per group, a kernel row's taps of fewer
// making short multiplies: GoogLeNet's 32 -> 64-96 by 5 x 5 on 12 x 12 and 6 x 6 7-8% faster
// with blocks, 32 -> 32 k3 on 6 x 6 8%, DenseNet's transposed convs of 32 channels 1-3%; but
// 16 -> 32 k3 on 12 x 12 9% slower, k5 even.
constexpr double kBlocksMinPadding = 0.15;
constexpr int64_t kBlocksMinChannels = 32;

// Whether the forward multiplies by blocks: im2col's way (algo "gemm", or "auto" as above)
// with padding, not a pointwise conv, and tiles of whole planes of several images (on larger
// planes the border is a small share of the cells).
inline bool use_blocks(const ConvParams& P, const Geometry& g) {
  if (P.algo == kAlgoTaps || is_pointwise(P) || (P.p_h == 0 && P.p_w == 0) ||
      tiling(g).images == 1)
    return false;
  return P.algo == kAlgoGemm ||
         (g.Cg >= kBlocksMinChannels && padding_share(P, g) >= kBlocksMinPadding);
}

// Wr[o][(i k_w + j) C_g + c] = W[o][c][i][j]: the kernels tap-major (written in order).
template <typename T>
void kernels_tap_major(const Geometry& g, const T* W, T* Wr) {
  const int64_t taps = g.KH * g.KW;
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t tap = 0; tap < taps; ++tap)
      for (int64_t c = 0; c < g.Cg; ++c)
        Wr[(o * taps + tap) * g.Cg + c] = W[(o * g.Cg + c) * taps + tap];
}

// Cells of one output row of a block chunk: its n columns from column l of the chunk on,
// whose windows' tap (0, 0) would read channel 0 of the group's planes at ``in`` on (s_w
// apart; outside the plane for a border cell, the block's taps read inside) and whose outputs
// are at ``out`` on in the group's output planes.
struct Segment {
  int64_t l, n, in, out;
};

// The chunk's segments into ``segs`` (at most its column count); how many.
inline int64_t block_segments(const ConvParams& P, const Geometry& g, const Block& k,
                              Segment* segs) {
  const int64_t wide = k.x.o1 - k.x.o0, cells = (k.y.o1 - k.y.o0) * wide;
  int64_t count = 0;
  for (int64_t l = k.c0; l < k.c1;) {
    const int64_t b = l / cells, y = k.y.o0 + l % cells / wide, x = k.x.o0 + l % cells % wide;
    const int64_t n = std::min(k.x.o1 - x, k.c1 - l);
    segs[count++] = {l - k.c0, n, b * g.C * g.H * g.W + (y * P.s_h - P.p_h) * g.W +
                                      x * P.s_w - P.p_w, b * g.O * g.OH * g.OW + y * g.OW + x};
    l += n;
  }
  return count;
}

// cols' rows of the block's taps (row (i k_w + j) C_g + c, ``ld`` apart): the chunk's
// windows' values (``Xg``: the group's first plane of image 0).
template <typename T>
void block_cols(const ConvParams& P, const Geometry& g, const T* Xg, const Block& k,
                const Segment* segs, int64_t count, int64_t ld, T* cols) {
  for (int64_t i = k.y.k0; i < k.y.k1; ++i)
    for (int64_t j = k.x.k0; j < k.x.k1; ++j)
      for (int64_t c = 0; c < g.Cg; ++c) {
        const T* in = Xg + (c * g.H + i * P.d_h) * g.W + j * P.d_w;
        T* out = cols + ((i * g.KW + j) * g.Cg + c) * ld;
        if (count == k.c1 - k.c0) {      // cells one by one (a column run one wide)
          for (int64_t l = 0; l < count; ++l) out[l] = in[segs[l].in];
          continue;
        }
        for (const Segment* s = segs; s < segs + count; ++s)
          for (int64_t x = 0; x < s->n; ++x) out[s->l + x] = in[s->in + x * P.s_w];
      }
}

// The block's taps as ranges of the tap-major K, each as f(first, depth): one range when the
// block reads whole kernel rows, else one per kernel row; none when every tap reads padding.
template <typename F>
void for_tap_ranges(const Geometry& g, const Block& k, F f) {
  if (k.y.k0 == k.y.k1 || k.x.k0 == k.x.k1) return;
  const bool whole_rows = k.x.k0 == 0 && k.x.k1 == g.KW;
  const int64_t step = whole_rows ? k.y.k1 - k.y.k0 : 1;
  for (int64_t i = k.y.k0; i < k.y.k1; i += step)
    f((i * g.KW + k.x.k0) * g.Cg, whole_rows ? step * g.KW * g.Cg : (k.x.k1 - k.x.k0) * g.Cg);
}

// out (O_g x n) = the block's taps of the group's tap-major kernels Wr times their cols.
template <typename T>
void block_multiply(const Geometry& g, const Block& k, const T* Wr, const T* cols, int64_t ld,
                    T* out) {
  const int64_t K = g.Cg * g.KH * g.KW, n = k.c1 - k.c0;
  T beta = 0;
  for_tap_ranges(g, k, [&](int64_t first, int64_t depth) {
    call<T>(kNoTrans, kNoTrans, g.Og, n, depth, Wr + first, K, cols + first * ld, ld, beta,
            out, n);
    beta = 1;
  });
  if (beta == 0) std::fill(out, out + g.Og * n, T(0));    // every tap in the padding
}

// out (O_g x n) into the group's output planes ``Yg`` (image 0), plus the bias.
template <typename T>
void block_to_planes(const Geometry& g, const Block& k, const Segment* segs, int64_t count,
                     const T* out, const T* bias, T* Yg) {
  const int64_t n = k.c1 - k.c0;
  for (int64_t o = 0; o < g.Og; ++o) {
    const T add = bias != nullptr ? bias[k.grp * g.Og + o] : T(0);
    const T* from = out + o * n;
    T* plane = Yg + o * g.OH * g.OW;
    for (const Segment* s = segs; s < segs + count; ++s)
      for (int64_t x = 0; x < s->n; ++x) plane[s->out + x] = from[s->l + x] + add;
  }
}

// Y = the conv by blocks (bias B) on ``n_threads`` threads; ``space``: the tap-major kernels
// (O K values), then (K + O_g) block_columns values per thread.
template <typename T>
void forward_blocks(const ConvParams& P, const Geometry& g, const T* X, const T* W, const T* B,
                    T* Y, T* space, int n_threads) {
  const int64_t K = g.Cg * g.KH * g.KW, ld = block_columns(g);
  const std::vector<Block> blocks = blocks_of(P, g, g.N, ld);
  std::vector<Segment> segments(ld * n_threads);
  T* const Wr = space;
  kernels_tap_major(g, W, Wr);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* cols = space + g.O * K + omp_get_thread_num() * (K + g.Og) * ld;
    T* out = cols + K * ld;
    Segment* segs = segments.data() + omp_get_thread_num() * ld;
#pragma omp for schedule(dynamic, 1)
    for (size_t b = 0; b < blocks.size(); ++b) {
      const Block& k = blocks[b];
      const int64_t count = block_segments(P, g, k, segs);
      block_cols(P, g, X + k.grp * g.Cg * g.H * g.W, k, segs, count, ld, cols);
      block_multiply(g, k, Wr + k.grp * g.Og * K, static_cast<const T*>(cols), ld, out);
      block_to_planes(g, k, segs, count, static_cast<const T*>(out), B,
                      Y + k.grp * g.Og * g.OH * g.OW);
    }
  }
}

// dY's values of the chunk's cells, O_g rows of n (``dYg``: the group's first plane of
// image 0).
template <typename T>
void planes_to_block(const Geometry& g, const Block& k, const Segment* segs, int64_t count,
                     const T* dYg, T* dy) {
  const int64_t n = k.c1 - k.c0;
  for (int64_t o = 0; o < g.Og; ++o) {
    const T* plane = dYg + o * g.OH * g.OW;
    for (const Segment* s = segs; s < segs + count; ++s)
      std::copy(plane + s->out, plane + s->out + s->n, dy + o * n + s->l);
  }
}

// dW's partial sums of the images n0 .. n0 + images by blocks, added to ``parts`` (O K
// values, K tap-major; each group's K x O_g when weight_grad_turned); ``space``: (K + 2 O_g)
// ld values and ld segments' room. Blocks in order, one thread: the sums' order is fixed.
template <typename T>
void weight_grad_blocks(const ConvParams& P, const Geometry& g, const T* dY, const T* X,
                        int64_t n0, int64_t images, int64_t ld, T* space, Segment* segs,
                        T* parts) {
  const int64_t K = g.Cg * g.KH * g.KW;
  const bool turned = weight_grad_turned(g);
  T* cols = space;
  T* dy = cols + K * ld;
  for (const Block& k : blocks_of(P, g, images, ld)) {
    const int64_t count = block_segments(P, g, k, segs), n = k.c1 - k.c0;
    block_cols(P, g, X + (n0 * g.C + k.grp * g.Cg) * g.H * g.W, k, segs, count, ld, cols);
    planes_to_block(g, k, segs, count, dY + (n0 * g.O + k.grp * g.Og) * g.OH * g.OW, dy);
    T* dyT = dy + g.Og * ld;                 // dY laid out turned (turned_weight_grad)
    if (turned) cnn_base::moved_across(static_cast<const T*>(dy), n, dyT, g.Og, g.Og, n);
    for_tap_ranges(g, k, [&](int64_t first, int64_t depth) {
      if (turned) {
        call<T>(kNoTrans, kNoTrans, depth, g.Og, n, cols + first * ld, ld, dyT, g.Og, T(1),
                parts + (k.grp * K + first) * g.Og, g.Og);
      } else {
        call<T>(kNoTrans, kTrans, g.Og, depth, n, dy, n, cols + first * ld, ld, T(1),
                parts + k.grp * g.Og * K + first, K);
      }
    });
  }
}
