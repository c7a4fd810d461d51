/*
 * The conv as the chapter writes it: im2col, then one matrix multiply (included by conv2d.cc,
 * inside its anonymous namespace).
 *
 * ``ops.corr2d`` lays every window out as a column and multiplies the columns by the kernel
 * read as a row. Here, per group and tile (a band of output rows of one image, or the whole
 * planes of several images: Tile, tiling):
 *
 *   cols (K_g x L) = im2col(X)             K_g = c_i/g * k_h * k_w, L = the tile's cells
 *   Y (O_g x L)    = W_g (O_g x K_g) cols  (+ bias), one image: straight into the NCHW output
 *   dW_g          += dY (O_g x L) cols^T  (few output channels: dW_g^T += cols dY^T)
 *   dX             = the transposed conv of dY (stride 1: transposed_of), else
 *   dcols          = W_g^T dY,  dX += col2im(dcols)
 *
 * and for stride 1 and few output channels the forward leaves im2col implicit: one multiply
 * per window cell over the padded planes shifted by it (the taps, use_taps).
 *
 * W_g is the weight as it is stored (row o holds c, i, j in order) and one image's output band
 * is a slice of its NCHW planes, so nothing is packed or transposed there (several images'
 * planes are gathered into rows and back). What it buys: the multiply is the BLAS's, ~96-100
 * GFLOP/s per core here, where the register tiles of corr_tiles reach 35-60 on wide layers;
 * the tiles stay the faster way for few output channels per group (depthwise, LeNet's first layer).
 *
 * The BLAS: ``cblas_sgemm`` / ``cblas_dgemm`` of the newer OpenBLAS of the scipy-openblas32
 * wheel when Python finds it (use_library; 0.3.34 with its SkylakeX kernels measured 80-96
 * GFLOP/s per core on the conv's shapes of 32-64 output channels where the wheel's 0.3.13,
 * which picks its AVX2 Zen kernels here, gave 57-72), else those of the libopenblas.so.0
 * that libmxnet.so links (so it is loaded already), found at run time with
 * dlopen(RTLD_NOLOAD); neither is linked, so a process without a BLAS still loads this
 * library and the tiles do every layer (blas_found()).
 * float32 multiplies by oneDNN's dnnl_sgemm instead when Python finds the onednn-cpu-gomp
 * wheel (use_dnnl). scipy-openblas32's is set to one thread. The mxnet wheel's, built with OpenMP, runs
 * single-threaded inside our parallel regions and otherwise with the calling thread's
 * omp_get_max_threads(): Sequential pins that to 1 around the calls. Either way the threads
 * are the ones parallel.h's policy chose.
 *
 * The weight gradient is summed per fixed chunk of images (the thread ceiling, as in
 * weight_grad), then the chunks in order: the bits do not depend on the load.
 */
#include <dlfcn.h>

#include <climits>

namespace gemm {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
template <typename T>
using GemmFn = void (*)(int, int, int, int, int, int, T, const T*, int, const T*, int, T, T*,
                        int);

struct Blas {
  GemmFn<float> s = nullptr;
  GemmFn<double> d = nullptr;
};

// cblas_?gemm of the BLAS already in the process (the wheel's OpenBLAS), asked once; or the
// library Python chose instead (use_library).
inline Blas found_in_process() {
  Blas b;
  void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr) lib = dlopen(nullptr, RTLD_NOW);   // one linked some other way
  if (lib != nullptr) {
    b.s = reinterpret_cast<GemmFn<float>>(dlsym(lib, "cblas_sgemm"));
    b.d = reinterpret_cast<GemmFn<double>>(dlsym(lib, "cblas_dgemm"));
  }
  if (b.s == nullptr || b.d == nullptr) b = Blas{};
  return b;
}

inline Blas& blas() {
  static Blas chosen = found_in_process();
  return chosen;
}

// Multiply with the BLAS library at ``path`` instead, its functions named ``prefix`` +
// "cblas_sgemm" etc. (scipy-openblas32: "scipy_"), set to one thread: our kernels run their
// own threads (parallel.h) and call it from each. Called once, when the library is loaded,
// before any conv runs. False (nothing changed) when the library or a function is missing.
inline bool use_library(const char* path, const char* prefix) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  const std::string p(prefix);
  Blas b;
  b.s = reinterpret_cast<GemmFn<float>>(dlsym(lib, (p + "cblas_sgemm").c_str()));
  b.d = reinterpret_cast<GemmFn<double>>(dlsym(lib, (p + "cblas_dgemm").c_str()));
  auto set_threads = reinterpret_cast<void (*)(int)>(
      dlsym(lib, (p + "openblas_set_num_threads").c_str()));
  if (b.s == nullptr || b.d == nullptr || set_threads == nullptr) return false;
  set_threads(1);
  blas() = b;
  return true;
}

// oneDNN's dnnl_sgemm (row-major, its own argument order), the float32 multiply when Python
// finds the onednn-cpu-gomp wheel (use_dnnl). What it buys: oneDNN's JIT AVX-512 kernels
// multiply the conv's float32 shapes at 93-115 GFLOP/s per core here where OpenBLAS
// 0.3.34's reach 82-101, most on the narrow layers (32 output channels: 114 against 87);
// float64 stays OpenBLAS's. Called from our threads, each call runs on its caller alone
// (oneDNN runs nested OpenMP regions single-threaded; Sequential otherwise).
using DnnlSgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);

inline DnnlSgemm& dnnl_sgemm() {
  static DnnlSgemm chosen = nullptr;
  return chosen;
}

inline void sgemm_by_dnnl(int, int ta, int tb, int M, int N, int K, float alpha, const float* A,
                          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  dnnl_sgemm()(ta == kTrans ? 'T' : 'N', tb == kTrans ? 'T' : 'N', M, N, K, alpha, A, lda, B,
               ldb, beta, C, ldc);
}

// float32 multiplies by the dnnl_sgemm of the oneDNN library at ``path`` from now on (when a
// BLAS is there for float64). False (nothing changed) when either is missing.
inline bool use_dnnl(const char* path) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr || blas().d == nullptr) return false;
  dnnl_sgemm() = reinterpret_cast<DnnlSgemm>(dlsym(lib, "dnnl_sgemm"));
  if (dnnl_sgemm() == nullptr) return false;
  blas().s = sgemm_by_dnnl;
  return true;
}

inline bool blas_found() { return blas().s != nullptr; }

template <typename T>
void call(int ta, int tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (sizeof(T) == 4) {
    blas().s(kRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  } else {
    blas().d(kRowMajor, ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
  }
}

// omp_get_max_threads() = 1 for this thread while alive: a BLAS call outside an active
// parallel region (our policy chose one thread) then stays on this thread.
struct Sequential {
  int saved = omp_get_max_threads();
  Sequential() { omp_set_num_threads(1); }
  ~Sequential() { omp_set_num_threads(saved); }
};

// Fewer rows than this (output channels per group) make a multiply the BLAS does poorly:
// its packing costs as much as it multiplies (use_gemm, transposed_of).
constexpr int64_t kMinRows = 16;

// A tile of columns: output rows y0 .. y0 + rows of the images n0 .. n0 + images (either one
// image and some of its rows, or whole planes of several images), rows * OW columns per
// image, image b's at b * rows * OW.
struct Tile {
  int64_t n0, images, y0, rows;
};

// Output column j of a window's column j reads input column left + x s_w; the x in
// [x0, x1) read inside the plane, the others padding. Shared by im2col and col2im.
struct InputColumns {
  int64_t left, x0, x1;
};

inline InputColumns input_columns(const ConvParams& P, const Geometry& g, int64_t j) {
  const int64_t left = j * P.d_w - P.p_w;     // input column of x = 0
  const int64_t x0 = std::min(g.OW, left >= 0 ? 0 : (-left + P.s_w - 1) / P.s_w);
  const int64_t x1 = std::max(x0, std::min(g.OW, g.W - left <= 0 ? 0
                                           : (g.W - left - 1) / P.s_w + 1));
  return {left, x0, x1};
}

// Whether a tile's output rows read whole input rows in one run: stride 1 and output rows as
// long as the input's (OW == W: every "same" conv, 3 x 3 padded by 1, 5 x 5 by 2, ...).
inline bool same_width(const ConvParams& P, const Geometry& g) {
  return P.s_h == 1 && P.s_w == 1 && g.OW == g.W;
}

// im2col_rows' rows of window cell (i, j) of one input plane ``in`` when same_width: output
// rows y and y + 1 read input rows y + i d_h - p_h and the next, so the tile's valid rows are
// one run of the plane from (their first row, column ``x.left``) on; the cells that run reads
// past a row's ends (x < x0, x >= x1: the padding) are zeroed after. What it buys: one
// memcpy per plane instead of a memcpy and two memsets per row of 24 values: the calls were
// a fifth of a 160 -> 32 k3 layer's forward + backward on 24 x 24 planes (its dW's im2col).
template <typename T>
void im2col_same_width(const ConvParams& P, const Geometry& g, const T* in, const Tile& t,
                       int64_t i, const InputColumns& x, T* out) {
  const int64_t shift = i * P.d_h - P.p_h, y1 = t.y0 + t.rows;     // input row: y + shift
  const int64_t ya = std::clamp(-shift, t.y0, y1), yb = std::clamp(g.H - shift, ya, y1);
  std::fill(out, out + (ya - t.y0) * g.OW, T(0));
  std::fill(out + (yb - t.y0) * g.OW, out + t.rows * g.OW, T(0));
  T* run = out + (ya - t.y0) * g.OW;
  const int64_t first = (ya + shift) * g.W + x.left, n = (yb - ya) * g.OW;
  const int64_t a = std::clamp<int64_t>(-first, 0, n);          // run cells before the plane
  const int64_t b = std::clamp<int64_t>(g.H * g.W - first, a, n);   // ... and after it
  std::fill(run, run + a, T(0));
  std::memcpy(run + a, in + (first + a), (b - a) * sizeof(T));
  std::fill(run + b, run + n, T(0));
  for (int64_t c = 0; c < x.x0; ++c)        // column by column: no memset call per row
    for (int64_t y = 0; y < yb - ya; ++y) run[y * g.OW + c] = T(0);
  for (int64_t c = x.x1; c < g.OW; ++c)
    for (int64_t y = 0; y < yb - ya; ++y) run[y * g.OW + c] = T(0);
}

// out[x] = in[S x] for x < n: the rows of a stride-S window. What it buys: with the stride a
// constant the compiler vectorizes the copy (every S-th value of S vectors at a time), where
// the stride as a variable left a scalar loop. im2col's time in a forward + backward, one
// thread (perf's samples): (8, 64, 56, 56) -> 128 k3 s2 6.9 -> 4.8 ms (of ~35: a fifth before),
// AlexNet's (32, 1, 224, 224) -> 96 k11 s4 15.5 -> 13.7 ms.
template <int S, typename T>
void every_nth(const T* __restrict in, T* __restrict out, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = in[S * x];
}

// out[x] = in[s x] for x < n: a memcpy for s = 1, every_nth for 2 and 4, else value by value.
template <typename T>
void copy_every(int64_t s, const T* in, T* out, int64_t n) {
  if (n <= 0) return;
  if (s == 1) return static_cast<void>(std::memcpy(out, in, n * sizeof(T)));
  if (s == 2) return every_nth<2>(in, out, n);
  if (s == 4) return every_nth<4>(in, out, n);
  for (int64_t x = 0; x < n; ++x) out[x] = in[x * s];
}

// The columns of the tile's windows: cols' row (c, i, j) (``ld`` apart), column
// b L + (y - y0) OW + x holds image b's Xg[c][y s_h - p_h + i d_h][x s_w - p_w + j d_w]
// (``Xg``: the group's c_i/g planes of image t.n0, images C H W apart), zero outside the
// plane. Row by row, every image in turn: the writes run along cols' rows (writing image
// by image touched a new cache line per row and image: a third of the multiply's time on
// 3 x 3 planes of 512 channels).
template <typename T>
void im2col_rows(const ConvParams& P, const Geometry& g, const T* Xg, const Tile& t,
                 int64_t ld, T* cols) {
  const int64_t L = t.rows * g.OW, image = g.C * g.H * g.W;
  const bool by_planes = same_width(P, g);
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.KH; ++i)
      for (int64_t j = 0; j < g.KW; ++j) {
        const auto [left, x0, x1] = input_columns(P, g, j);
        T* row = cols + ((c * g.KH + i) * g.KW + j) * ld;
        for (int64_t b = 0; b < t.images; ++b) {
          if (by_planes) {
            im2col_same_width(P, g, Xg + b * image + c * g.H * g.W, t, i, {left, x0, x1},
                              row + b * L);
            continue;
          }
          for (int64_t y = t.y0; y < t.y0 + t.rows; ++y) {
            T* out = row + b * L + (y - t.y0) * g.OW;
            const int64_t r = y * P.s_h - P.p_h + i * P.d_h;
            if (r < 0 || r >= g.H) {
              std::fill(out, out + g.OW, T(0));
              continue;
            }
            const T* in = Xg + b * image + (c * g.H + r) * g.W;
            std::fill(out, out + x0, T(0));
            copy_every(P.s_w, in + left + x0 * P.s_w, out + x0, x1 - x0);
            std::fill(out + x1, out + g.OW, T(0));
          }
        }
      }
}

// im2col cell by cell, for narrow planes: per window cell (i, j), the tile's cells of an
// image that read inside the plane and where they read are listed once; cols is zeroed
// (the padding) and every channel and image is one loop over the listed cells. What it
// buys: on 6 x 6 and 3 x 3 planes im2col_rows spends a memcpy and two memset calls (and
// their index arithmetic) per 3-6 values, more than the values cost (kLongRow); a branch
// per cell on padding instead was mispredicted too often to gain. It runs inside the
// parallel regions, so it throws nothing: without memory for its lists it copies by rows.
template <typename T>
void im2col_cells(const ConvParams& P, const Geometry& g, const T* Xg, const Tile& t,
                  int64_t ld, T* cols) noexcept {
  const int64_t L = t.rows * g.OW, image = g.C * g.H * g.W, taps = g.KH * g.KW;
  std::vector<int64_t> cell, at, first;     // tap's cells from first[tap] on
  try {
    cell.reserve(taps * L), at.reserve(taps * L), first.assign(taps + 1, 0);
  } catch (const std::exception&) {
    return im2col_rows(P, g, Xg, t, ld, cols);
  }
  for (int64_t tap = 0; tap < taps; ++tap) {
    for (int64_t l = 0; l < L; ++l) {
      const int64_t r = (t.y0 + l / g.OW) * P.s_h - P.p_h + tap / g.KW * P.d_h;
      const int64_t s = l % g.OW * P.s_w - P.p_w + tap % g.KW * P.d_w;
      if (r < 0 || r >= g.H || s < 0 || s >= g.W) continue;
      cell.push_back(l), at.push_back(r * g.W + s);
    }
    first[tap + 1] = cell.size();
  }
  for (int64_t row = 0; row < g.Cg * taps; ++row)
    std::fill(cols + row * ld, cols + row * ld + t.images * L, T(0));
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t tap = 0; tap < taps; ++tap)
      for (int64_t b = 0; b < t.images; ++b) {
        const T* in = Xg + b * image + c * g.H * g.W;
        T* out = cols + (c * taps + tap) * ld + b * L;
        for (int64_t k = first[tap]; k < first[tap + 1]; ++k) out[cell[k]] = in[at[k]];
      }
}

// Output rows at least this long are laid out row by row (memcpy), shorter ones cell by cell
// (measured forward + backward, one thread, interleaved: cells 0.70-0.73x rows on 6 x 6 and
// 3 x 3 planes to 32 channels, 0.91 to 256-512; equal on 7 x 7; 1.07-1.19x on 12 x 12 and 14 x 14).
constexpr int64_t kLongRow = 7;

template <typename T>
void im2col(const ConvParams& P, const Geometry& g, const T* Xg, const Tile& t, int64_t ld,
            T* cols) {
  if (g.OW >= kLongRow) {
    im2col_rows(P, g, Xg, t, ld, cols);
  } else {
    im2col_cells(P, g, Xg, t, ld, cols);
  }
}

// out[2 x] += a[x], out[2 x + 1] += b[x] for x < n: the rows of two neighbouring window
// columns of a stride-2 window (no dilation), which land on alternate cells of dX's row, added
// as one run. What it buys: each row alone added to every other cell, a loop GCC keeps scalar
// (it cannot store with gaps); interleaved it vectorizes. perf's samples, one thread, the
// backward's own time besides its multiplies (col2im most of it), a forward + backward: model
// zoo resnet18_v1's stem (8, 3, 224, 224) -> 64 k7 s2 10-11 -> 6.3-6.9 ms, (8, 64, 56, 56) ->
// 128 k3 s2 4.0-4.2 -> 3.4-3.7, (32, 64, 24, 24) -> 128 3.2-4.2 -> 3.0-3.1 (the same bits).
template <typename T>
void add_pairs(const T* __restrict a, const T* __restrict b, T* __restrict out, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[2 * x] += a[x], out[2 * x + 1] += b[x];
}

// dX's row ``out`` += the dcols rows ``a`` (window column j: cells left + 2 x, x in [a0, a1))
// and ``b`` (column j + 1: left + 1 + 2 x, x in [b0, b1)); where both read, by add_pairs.
// Every cell gets the same additions in the same order as one row after the other would give
// (the two rows never meet on a cell).
template <typename T>
void col2im_pair(const T* a, int64_t a0, int64_t a1, const T* b, int64_t b0, int64_t b1,
                 int64_t left, T* out) {
  const int64_t lo = std::max(a0, b0), hi = std::max(lo, std::min(a1, b1));
  for (int64_t x = a0; x < std::min(a1, lo); ++x) out[left + 2 * x] += a[x];
  for (int64_t x = std::max(a0, hi); x < a1; ++x) out[left + 2 * x] += a[x];
  for (int64_t x = b0; x < std::min(b1, lo); ++x) out[left + 1 + 2 * x] += b[x];
  for (int64_t x = std::max(b0, hi); x < b1; ++x) out[left + 1 + 2 * x] += b[x];
  add_pairs(a + lo, b + lo, out + left + 2 * lo, hi - lo);
}

// dXg += col2im(dcols): im2col read backwards, each column's values added to the cells
// they came from, in the same order; with a stride of 2 (no dilation) two window columns at a
// time (col2im_pair).
template <typename T>
void col2im(const ConvParams& P, const Geometry& g, const T* dcols, const Tile& t, int64_t ld,
            T* dXg) {
  const int64_t L = t.rows * g.OW, image = g.C * g.H * g.W;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.KH; ++i)
      for (int64_t j = 0; j < g.KW; ++j) {
        const bool paired = P.s_w == 2 && P.d_w == 1 && j + 1 < g.KW;
        const auto [left, x0, x1] = input_columns(P, g, j);
        const InputColumns next = paired ? input_columns(P, g, j + 1) : InputColumns{0, 0, 0};
        const T* row = dcols + ((c * g.KH + i) * g.KW + j) * ld;
        for (int64_t b = 0; b < t.images; ++b)
          for (int64_t y = t.y0; y < t.y0 + t.rows; ++y) {
            const int64_t r = y * P.s_h - P.p_h + i * P.d_h;
            if (r < 0 || r >= g.H) continue;
            const T* from = row + b * L + (y - t.y0) * g.OW;
            T* out = dXg + b * image + (c * g.H + r) * g.W;
            if (paired) {
              col2im_pair(from, x0, x1, from + ld, next.x0, next.x1, left, out);
              continue;
            }
            for (int64_t x = x0; x < x1; ++x) out[left + x * P.s_w] += from[x];
          }
        j += paired;
      }
}

// The columns of one tile: about kTileValues values of cols (K_g of them per column), at
// least kMinColumns so that the multiply's inner loops run long; whole output rows of one
// image, or whole planes of several. What it buys: cols stays in a core's L2 beside the
// BLAS's packed panels, and small planes (6 x 6, 3 x 3 of GoogLeNet, ResNet, DenseNet at 96
// x 96) still make one multiply of many columns instead of one small one per image.
constexpr int64_t kTileValues = int64_t(1) << 18;    // 1 MiB of float32
constexpr int64_t kMinColumns = 512;

struct Tiling {
  int64_t rows, images, columns;     // per tile; ``columns``: of one image's rows, or images'
};

// The tiles of a buffer of ``per_column`` values a column, ``row`` columns per output row and
// ``plane`` per image: output rows of one image, or the planes of several.
inline Tiling tiles_for(const Geometry& g, int64_t per_column, int64_t row, int64_t plane) {
  const int64_t target = std::max<int64_t>(kMinColumns, kTileValues / per_column);
  Tiling t{std::clamp<int64_t>(target / row, 1, g.OH), 1, 0};
  if (t.rows == g.OH) {       // whole planes of several images, as evenly as the threads
    const int64_t threads = cnn_base::max_threads();   // of the ceiling can share them
    const int64_t wanted = std::clamp<int64_t>(target / plane, 1, g.N);
    const int64_t tiles = ((g.N + wanted - 1) / wanted + threads - 1) / threads * threads;
    t.images = std::max<int64_t>(1, (g.N + tiles - 1) / tiles);
  }
  t.columns = t.images == 1 ? t.rows * row : t.images * plane;
  return t;
}

// im2col's tiles: K_g values a column, OW columns a row.
inline Tiling tiling(const Geometry& g) {
  return tiles_for(g, g.Cg * g.KH * g.KW, g.OW, g.OH * g.OW);
}

// The sizes of the transposed conv (dY to dX; transposed_of).
inline Geometry transposed(const Geometry& g) {
  return Geometry{g.N, g.O, g.OH, g.OW, g.C, g.G, g.Og, g.Cg, g.KH, g.KW, g.H, g.W};
}

// Its settings: padded by d (k - 1) - p (negative: a crop), C output channels.
inline ConvParams transposed(const ConvParams& P, const Geometry& g) {
  ConvParams Q = P;
  Q.p_h = P.d_h * (P.k_h - 1) - P.p_h, Q.p_w = P.d_w * (P.k_w - 1) - P.p_w;
  Q.num_filter = g.C;
  return Q;
}

// The windows of a stride-1 conv without their copies ("taps", an implicit im2col). Each
// image's planes are padded once into rows of Wp = W + p_w values (p_w zeros, then the row)
// under p_h zero rows (Hp = H + p_h rows per image, the images stacked): the right padding of
// a row is the left one of the next, the bottom padding of an image the top one of the next.
// Output (y, x) of the stack then reads tap (i, j) at (y + i d_h) Wp + x + j d_w for every
// channel, so the columns of tap (i, j) are the padded planes shifted by a constant: one
// multiply per tap, Y (O_g x grid) += W_ij (O_g x C_g) Xp_shifted (C_g x grid), over a grid
// of Wp columns per row whose cells past the output (x >= OW, the rows between images) are
// computed and dropped. What it buys: im2col wrote k_h k_w copies of every value, which on
// 12 x 12 and 6 x 6 planes cost as much as the multiply of a narrow layer (DenseNet's 96-192
// -> 32 k3, forward, one thread: 50-54 -> 61-75 GFLOP/s, 160 -> 32 on 24 x 24: 70 -> 90); the
// price is the dropped cells, and k_h k_w multiplies with an inner dimension of C_g: wide
// layers lose (512 -> 512 on 7 x 7: 86 -> 57), so the taps are for few output channels
// (use_taps). Forward only, and the transposed conv of dX that is one: dW by taps (one
// multiply per tap over the whole grid) measured slower than im2col's, and would let an
// infinity of X read by a dropped cell meet its zero gradient (a NaN im2col does not make).
struct TapsGrid {
  int64_t Hp, Wp, halo;      // rows per image, row length, rows read past a tile's grid
};

// The halo: the window's reach below a row, and the rows its reach to the right spans (a
// row's last cells read on into the next rows).
inline TapsGrid taps_grid(const ConvParams& P, const Geometry& g) {
  const int64_t Wp = g.W + P.p_w;
  return {g.H + P.p_h, Wp, (g.KH - 1) * P.d_h + ((g.KW - 1) * P.d_w + Wp - 1) / Wp};
}

// Whether the shifted planes are the conv's windows: stride 1 and a padding the stacked
// zeros hold (none, up to the window's reach).
inline bool taps_fit(const ConvParams& P, const Geometry& g) {
  return P.s_h == 1 && P.s_w == 1 && P.p_h >= 0 && P.p_w >= 0 &&
         P.p_h <= P.d_h * (g.KH - 1) && P.p_w <= P.d_w * (g.KW - 1) && g.OH > 0 && g.OW > 0;
}

// Cells of the grid the taps compute per output cell.
inline double taps_waste(const ConvParams& P, const Geometry& g) {
  const TapsGrid s = taps_grid(P, g);
  return double(s.Hp * s.Wp) / double(g.OH * g.OW);
}

// The most cells of the grid a call computes per output cell when the taps are chosen by
// themselves (algo "auto"): 6 x 6 planes padded by 1 compute 1.36 per cell (and still gain
// by far, above), 3 x 3 ones 1.78.
constexpr double kTapsMaxWaste = 1.5;

// The most output channels per group the taps take by themselves: measured one thread,
// against im2col: 32 gain 10-30% forward, 64 -> 64 on 56 x 56 is even (71 / 72 GFLOP/s,
// forward + backward), 128 -> 128 on 28 x 28 near it (98 / 93, forward), 256 and 512 lose
// (84 / 89, 57 / 86).
constexpr int64_t kTapsMaxRows = 64;

// Whether this call multiplies by taps: they fit, and the caller forces them (algo "taps") or
// lets the shape decide (algo "auto": a window of several taps, at least kMinRows input
// channels per group for the multiplies' inner loops, few output channels, few dropped
// cells). algo "gemm" keeps im2col.
inline bool use_taps(const ConvParams& P, const Geometry& g) {
  if (P.algo == kAlgoGemm || !taps_fit(P, g)) return false;
  if (P.algo == kAlgoTaps) return true;
  return g.KH * g.KW > 1 && g.Cg >= kMinRows && g.Og <= kTapsMaxRows &&
         taps_waste(P, g) <= kTapsMaxWaste;
}

// The taps' tiles: C_g values of padded input a column, Wp columns a row, Hp rows an image.
inline Tiling taps_tiling(const ConvParams& P, const Geometry& g) {
  const TapsGrid s = taps_grid(P, g);
  return tiles_for(g, g.Cg, s.Wp, s.Hp * s.Wp);
}

// Values per thread the taps take: a tile's padded planes (its grid rows and the halo) and
// its O_g rows of grid. 0 where they do not fit.
inline int64_t taps_buffer(const ConvParams& P, const Geometry& g) {
  if (!taps_fit(P, g)) return 0;
  const TapsGrid s = taps_grid(P, g);
  const Tiling t = taps_tiling(P, g);
  return g.Cg * (t.columns + s.halo * s.Wp) + g.Og * t.columns;
}

// Values of the workspace a call takes at most: the backward's partial sums of dW per chunk
// of images and the turned kernels (and their tap-major copy), then per thread of the ceiling
// the largest of the dW loop's cols, dcols and a tile of output rows, the transposed conv's
// cols and rows, and the taps' padded tiles and grids of either conv (taps_buffer).
inline int64_t workspace_values(const ConvParams& P, const Geometry& g) {
  const int64_t K = g.Cg * g.KH * g.KW, threads = cnn_base::max_threads();
  const Geometry h = transposed(g);
  const int64_t per_thread = std::max({(2 * K + 2 * g.Og) * tiling(g).columns,
                                       (g.Og * g.KH * g.KW + g.Cg) * tiling(h).columns,
                                       taps_buffer(P, g), taps_buffer(transposed(P, g), h)});
  const ConvParams Q = transposed(P, g);
  const int64_t dX_lanes = lanes::fits_input_grad(Q, h) ? lanes::values(h) : 0;
  const int64_t dW_lanes = lanes::fits(P, g) ? lanes::weight_grad_values(g) : 0;
  return (std::min(threads, g.N) + 2) * g.O * K +
         std::max({threads * per_thread, dX_lanes, dW_lanes});
}

// Whether every size the BLAS is given fits its int arguments, and the workspace (in
// bytes of float64) MXNet's int-sized request.
inline bool fits_int(const ConvParams& P, const Geometry& g) {
  const int64_t K = g.Cg * g.KH * g.KW;
  return K * tiling(g).columns < INT_MAX && g.OH * g.OW < INT_MAX && g.O < INT_MAX &&
         workspace_values(P, g) < INT_MAX / 8;
}

// The tiles of the images n0 .. n1, in order.
inline std::vector<Tile> tiles_of(const Geometry& g, const Tiling& t, int64_t n0, int64_t n1) {
  std::vector<Tile> all;
  for (int64_t n = n0; n < n1; n += t.images)
    for (int64_t y = 0; y < g.OH; y += t.rows)
      all.push_back({n, std::min(t.images, n1 - n), y, std::min(t.rows, g.OH - y)});
  return all;
}

// How many tiles tiles_of gives for all N images.
inline int64_t tile_count(const Geometry& g, const Tiling& t) {
  return (g.N + t.images - 1) / t.images * ((g.OH + t.rows - 1) / t.rows);
}

// Where a group's output channel o of the tile's image b starts in NCHW planes (O per image).
inline int64_t plane_at(const Geometry& g, const Tile& t, int64_t b, int64_t channel) {
  return ((t.n0 + b) * g.O + channel) * g.OH * g.OW + t.y0 * g.OW;
}

// The tile's rows (O_g x columns) of group grp into the NCHW planes of Y, plus the bias.
template <typename T>
void rows_to_planes(const Geometry& g, const Tile& t, int64_t grp, const T* rows,
                    const T* bias, T* Y) {
  const int64_t L = t.rows * g.OW, ld = t.images * L;
  for (int64_t b = 0; b < t.images; ++b)
    for (int64_t o = 0; o < g.Og; ++o) {
      const T add = bias != nullptr ? bias[grp * g.Og + o] : T(0);
      T* at = Y + plane_at(g, t, b, grp * g.Og + o);
      for (int64_t l = 0; l < L; ++l) at[l] = rows[o * ld + b * L + l] + add;
    }
}

// The tile's part of the NCHW planes of dY, group grp, as rows (O_g x columns).
template <typename T>
void planes_to_rows(const Geometry& g, const Tile& t, int64_t grp, const T* dY, T* rows) {
  const int64_t L = t.rows * g.OW, ld = t.images * L;
  for (int64_t b = 0; b < t.images; ++b)
    for (int64_t o = 0; o < g.Og; ++o)
      std::memcpy(rows + o * ld + b * L, dY + plane_at(g, t, b, grp * g.Og + o), L * sizeof(T));
}

// A matrix operand of the BLAS: where it starts and its leading dimension.
template <typename T>
struct Operand {
  const T* at;
  int64_t ld;
};

// A 1x1 window with stride 1 and no padding: every column is one input cell's channels.
inline bool is_pointwise(const ConvParams& P) {
  return P.k_h == 1 && P.k_w == 1 && P.s_h == 1 && P.s_w == 1 && P.p_h == 0 && P.p_w == 0;
}

// A pointwise conv's columns for a tile of several images (whole planes): each image's plane
// of each channel copied as it stands, image after image along cols' row of that channel.
// What it buys: im2col's cell by cell copy (kLongRow) moved 3 x 3 planes a value at a time
// through its lists of cells, as long as the 1 x 1 convs of GoogLeNet's last blocks spent
// multiplying.
template <typename T>
void pointwise_columns(const Geometry& g, const T* Xg, const Tile& t, int64_t ld, T* cols) {
  const int64_t L = g.H * g.W;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t b = 0; b < t.images; ++b) {
      const T* in = Xg + (b * g.C + c) * L;
      std::copy(in, in + L, cols + c * ld + b * L);
    }
}

// The tile's columns of a group whose first input plane is ``Xg`` (image t.n0): its
// windows laid out in ``cols`` by im2col, or, for a 1x1 window with stride 1 and no
// padding on one image, the input rows themselves (plane apart). What it buys: the 1x1
// convs of MobileNet, GoogLeNet and NiN on large planes skip a copy of their input forward
// and backward, and their input gradient is written in place (no col2im).
template <typename T>
Operand<T> columns(const ConvParams& P, const Geometry& g, const Tile& t, const T* Xg, T* cols) {
  const bool pointwise = is_pointwise(P);
  if (pointwise && t.images == 1) return {Xg + t.y0 * g.W, g.H * g.W};
  const int64_t ld = t.images * t.rows * g.OW;
  if (pointwise) {
    pointwise_columns(g, Xg, t, ld, cols);
  } else {
    im2col(P, g, Xg, t, ld, cols);
  }
  return {cols, ld};
}

// The tiles of Y = W cols (+ bias) on ``n_threads`` threads, each with (K_g + O_g) *
// columns values of ``buffers`` (cols, and a tile's rows of several images).
template <typename T>
void forward_tiles(const ConvParams& P, const Geometry& g, const T* X, const T* W, const T* B,
                   T* Y, T* buffers, int n_threads) {
  const int64_t K = g.Cg * g.KH * g.KW;
  const Tiling how = tiling(g);
  const std::vector<Tile> tiles = tiles_of(g, how, 0, g.N);
  const int64_t items = tiles.size() * g.G;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* cols = buffers + omp_get_thread_num() * (K + g.Og) * how.columns;
    T* out = cols + K * how.columns;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const Tile& t = tiles[item / g.G];
      const int64_t grp = item % g.G, L = t.rows * g.OW, ld = t.images * L;
      const Operand<T> in = columns(P, g, t, X + (t.n0 * g.C + grp * g.Cg) * g.H * g.W, cols);
      if (t.images > 1) {
        call<T>(kNoTrans, kNoTrans, g.Og, ld, K, W + grp * g.Og * K, K, in.at, in.ld, T(0), out,
                ld);
        rows_to_planes(g, t, grp, static_cast<const T*>(out), B, Y);
        continue;
      }
      T* at = Y + plane_at(g, t, 0, grp * g.Og);       // one image: straight into its planes
      for (int64_t o = 0; B != nullptr && o < g.Og; ++o)
        std::fill(at + o * g.OH * g.OW, at + o * g.OH * g.OW + L, B[grp * g.Og + o]);
      call<T>(kNoTrans, kNoTrans, g.Og, L, K, W + grp * g.Og * K, K, in.at, in.ld,
              B != nullptr ? T(1) : T(0), at, g.OH * g.OW);
    }
  }
}

// The conv whose forward is dX's, for stride 1: dX is the correlation of dY, padded by
// d (k - 1) - p, with each kernel turned half a circle and its input and output channels
// swapped (the transposed conv). Its windows have O_g k_h k_w taps where col2im's have
// C_g k_h k_w, and it writes dX's planes directly. What it buys: layers that narrow their
// channels (DenseNet's 96-224 -> 32) multiplied dcols = W^T dY with an inner dimension of
// 32 and scattered C_g k_h k_w rows back by col2im (forward + backward, one thread, 12 x 12:
// 15.4 -> 14.3 ms, 6 x 6: 7.0 -> 5.8; square layers unchanged). A larger padding (a crop) keeps col2im (false), and so do fewer than
// kMinRows input channels per group (the transposed conv's output channels, the rows
// of its multiply: LeNet's 6 -> 16 on 12 x 12 went from 0.9x to 1.2x the built-in's
// training step with 6 rows of 400 taps instead of 150 rows of 16).
inline bool transposed_of(const ConvParams& P, const Geometry& g, ConvParams* Q, Geometry* h) {
  *Q = transposed(P, g);
  *h = transposed(g);
  return P.s_h == 1 && P.s_w == 1 && Q->p_h >= 0 && Q->p_w >= 0 &&
         g.Cg >= kMinRows && fits_int(*Q, *h);
}

// Wt[grp][c][o][KH-1-i][KW-1-j] = W[grp][o][c][i][j]: the transposed conv's kernels.
template <typename T>
void turn_kernels(const Geometry& g, const T* W, T* Wt) {
  const int64_t taps = g.KH * g.KW;
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t o = 0; o < g.Og; ++o)
      for (int64_t c = 0; c < g.Cg; ++c) {
        const T* from = W + ((grp * g.Og + o) * g.Cg + c) * taps;
        T* to = Wt + ((grp * g.Cg + c) * g.Og + o) * taps;
        for (int64_t k = 0; k < taps; ++k) to[taps - 1 - k] = from[k];
      }
}

// For few output channels, or many columns per chunk of images, the weight gradient is
// multiplied turned, dW_g^T (K_g x O_g) = cols dY^T, and turned back when the chunks are
// summed. What it buys: the same multiply with the large operand (cols, K_g x columns) first
// and the O_g columns second runs at 100-110 GFLOP/s per core in oneDNN's sgemm where dW_g =
// dY cols^T ran at 55-89 on 32 output channels (K_g 864-2016), 68 -> 93 on 64 -> 64 at 56 x
// 56, 37 -> 74 on LeNet's 6 -> 16 (each multiply alone, one thread, best of 9). Turning the
// sums back costs a pass over O K values per chunk: on 256-960 channels over few columns
// (512 -> 512 on 3 x 3 and 7 x 7 planes, 288-392 columns a chunk) it cost more than the
// multiply gained (f+b one thread 37 -> 45 ms, 63 -> 72), so those keep dY cols^T; from
// kTurnedGradMinColumns on the turn pays (AlexNet's and NiN's 96 -> 256 k5 on 26 x 26,
// 21632 columns: with turned_weight_grad 870-910 -> 790-830 ms f+b, one thread).
constexpr int64_t kTurnedGradMaxRows = 64;
constexpr int64_t kTurnedGradMinColumns = 8192;

// Columns of dW's multiplies per chunk of images (grads_by_chunk: one chunk per thread of
// the ceiling).
inline int64_t columns_per_chunk(const Geometry& g) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(cnn_base::max_threads(), g.N));
  return g.N / chunks * g.OH * g.OW;
}

inline bool weight_grad_turned(const Geometry& g) {
  return g.Og <= kTurnedGradMaxRows || columns_per_chunk(g) >= kTurnedGradMinColumns;
}

// Turned weight gradient: part (K_g x O_g) = beta part + cols (K_g x L, ``ldc`` apart)
// dY^T, dY's O_g rows of L values ``ldd`` apart. At most kDotMaxRows rows of cols (the stems,
// 1 x 1 convs of few input channels) by our dot_rows; more by the BLAS on dY laid out turned
// in ``dyT`` (L x O_g) first, a plain product of row-major matrices. What they buy, one
// thread, each multiply alone: sgemm / dot_rows GFLOP/s over 4096 columns, K_g 27 x 32
// output channels (MobileNetV2's stem) 24 / 65-84, 75 x 64 41 / 64-83, 150 x 16 66 / 68-86;
// from 200 rows on the two measure alike (77-92 / 63-82). sgemm of cols dY^T against cols
// times dY laid out turned, beta 1, medians of 40: K_g 1440 x 32 87 / 99, 2400 x 256 80 / 95,
// 4608 x 512 101 / 107 (the copy is O_g L values against 2 K_g O_g L multiply-adds).
constexpr int64_t kDotMaxRows = 160;

template <typename T>
void turned_weight_grad(int64_t K, int64_t Og, int64_t L, const T* cols, int64_t ldc,
                        const T* dy, int64_t ldd, T* dyT, T beta, T* part) {
  if (K <= kDotMaxRows) {
    dot_rows_item<T>(K, Og, L, cols, ldc, dy, ldd, beta, part, Og);
    return;
  }
  cnn_base::moved_across(dy, ldd, dyT, Og, Og, L);
  call<T>(kNoTrans, kNoTrans, K, Og, L, cols, ldc, dyT, Og, beta, part, Og);
}

#include "conv2d_blocks.h"   // im2col without the padding: forward_blocks,
                              // weight_grad_blocks, use_blocks

// dW's partial sums per fixed chunk of images into ``parts`` (O K values per chunk, each
// group's transposed when weight_grad_turned), each
// chunk's tiles on one thread with (2 K_g + 2 O_g) * columns values of ``buffers``; dX too
// (dcols = W^T dY, then col2im) unless ``dX`` is null; by blocks (K tap-major) when
// ``by_blocks`` (and ``dX`` null).
template <typename T>
void grads_by_chunk(const ConvParams& P, const Geometry& g, const T* dY, const T* X,
                    const T* W, T* dX, T* parts, T* buffers, int n_threads, bool by_blocks) {
  const int64_t K = g.Cg * g.KH * g.KW, sums = g.O * K;
  const Tiling how = tiling(g);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(cnn_base::max_threads(), g.N));
  std::vector<std::vector<Tile>> chunk_tiles;
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    chunk_tiles.push_back(tiles_of(g, how, chunk * g.N / chunks, (chunk + 1) * g.N / chunks));
  const int64_t ld = block_columns(g);
  std::vector<Segment> segments(by_blocks ? n_threads * ld : 0);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* cols = buffers + omp_get_thread_num() * (2 * K + 2 * g.Og) * how.columns;
    T* dcols = cols + K * how.columns;
    T* dy = dcols + K * how.columns;
    T* dyT = dy + g.Og * how.columns;
#pragma omp for schedule(static)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t n0 = chunk * g.N / chunks, n1 = (chunk + 1) * g.N / chunks;
      if (by_blocks) {
        std::fill(parts + chunk * sums, parts + (chunk + 1) * sums, T(0));
        weight_grad_blocks(P, g, dY, X, n0, n1 - n0, ld, cols,
                           segments.data() + omp_get_thread_num() * ld, parts + chunk * sums);
        continue;
      }
      if (dX != nullptr) std::fill(dX + n0 * g.C * g.H * g.W, dX + n1 * g.C * g.H * g.W, T(0));
      for (const Tile& t : chunk_tiles[chunk])
        for (int64_t grp = 0; grp < g.G; ++grp) {
          const T keep = &t == &chunk_tiles[chunk].front() ? T(0) : T(1);   // dW's first tile
          const int64_t L = t.rows * g.OW, ld = t.images * L;
          const int64_t in_at = (t.n0 * g.C + grp * g.Cg) * g.H * g.W;
          Operand<T> grad{dy, ld};          // dY's rows: in place for one image, else gathered
          if (t.images == 1) {
            grad = Operand<T>{dY + plane_at(g, t, 0, grp * g.Og), g.OH * g.OW};
          } else {
            planes_to_rows(g, t, grp, dY, dy);
          }
          const Operand<T> in = columns(P, g, t, X + in_at, cols);
          if (weight_grad_turned(g)) {             // dW_g^T
            turned_weight_grad<T>(K, g.Og, ld, in.at, in.ld, grad.at, grad.ld, dyT, keep,
                                  parts + chunk * sums + grp * K * g.Og);
          } else {
            call<T>(kNoTrans, kTrans, g.Og, K, ld, grad.at, grad.ld, in.at, in.ld, keep,
                    parts + chunk * sums + grp * g.Og * K, K);
          }
          if (dX == nullptr) continue;
          if (in.at != cols) {     // a pointwise conv's columns are dX's own rows
            call<T>(kTrans, kNoTrans, K, ld, g.Og, W + grp * g.Og * K, K, grad.at, grad.ld,
                    T(0), dX + in_at + t.y0 * g.W, in.ld);
            continue;
          }
          call<T>(kTrans, kNoTrans, K, ld, g.Og, W + grp * g.Og * K, K, grad.at, grad.ld, T(0),
                  dcols, ld);
          col2im(P, g, static_cast<const T*>(dcols), t, ld, dX + in_at);
        }
    }
  }
}

// Where a taps tile's grid starts in the stack of its images' padded rows, and how many
// rows it has: a band of one image from its first output row, or the planes of several images
// up to the last one's OH rows.
struct GridRows {
  int64_t first, rows;
};

inline GridRows grid_rows(const TapsGrid& s, const Geometry& g, const Tile& t) {
  if (t.images == 1) return {t.y0, t.rows};
  return {0, (t.images - 1) * s.Hp + g.OH};
}

// The tile's padded planes of a group (``Xg``: its first plane of image t.n0): the stack's
// rows a.first .. a.first + a.rows + halo, each channel ``ld`` values apart.
template <typename T>
void pad_tile(const ConvParams& P, const Geometry& g, const TapsGrid& s, const T* Xg,
              const Tile& t, const GridRows& a, int64_t ld, T* padded) {
  const int64_t image = g.C * g.H * g.W;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t q = 0; q < a.rows + s.halo; ++q) {
      T* out = padded + c * ld + q * s.Wp;
      const int64_t b = (a.first + q) / s.Hp, r = (a.first + q) % s.Hp - P.p_h;
      if (b >= t.images || r < 0) {
        std::fill(out, out + s.Wp, T(0));
        continue;
      }
      std::fill(out, out + P.p_w, T(0));
      std::memcpy(out + P.p_w, Xg + b * image + (c * g.H + r) * g.W, g.W * sizeof(T));
    }
}

// The grid's O_g rows into the tile's output planes of group grp, plus the bias; the cells
// past the output dropped.
template <typename T>
void grid_to_planes(const Geometry& g, const TapsGrid& s, const Tile& t, const GridRows& a,
                    int64_t grp, const T* grid, const T* bias, T* Y) {
  const int64_t ld = a.rows * s.Wp;
  for (int64_t o = 0; o < g.Og; ++o) {
    const T add = bias != nullptr ? bias[grp * g.Og + o] : T(0);
    for (int64_t q = 0; q < a.rows; ++q) {
      const int64_t b = (a.first + q) / s.Hp, y = (a.first + q) % s.Hp;
      if (y >= g.OH) continue;
      const T* from = grid + o * ld + q * s.Wp;
      T* to = Y + ((t.n0 + b) * g.O + grp * g.Og + o) * g.OH * g.OW + y * g.OW;
      for (int64_t x = 0; x < g.OW; ++x) to[x] = from[x] + add;
    }
  }
}

// Wk[grp][tap][o][c] = W[grp][o][c][tap]: each tap's O_g x C_g kernel matrix.
template <typename T>
void kernels_by_tap(const Geometry& g, const T* W, T* Wk) {
  const int64_t taps = g.KH * g.KW;
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t o = 0; o < g.Og; ++o)
      for (int64_t c = 0; c < g.Cg; ++c)
        for (int64_t tap = 0; tap < taps; ++tap)
          Wk[((grp * taps + tap) * g.Og + o) * g.Cg + c] =
              W[((grp * g.Og + o) * g.Cg + c) * taps + tap];
}

// Where tap ``tap``'s columns start in a tile's padded planes.
inline int64_t tap_shift(const ConvParams& P, const Geometry& g, const TapsGrid& s,
                         int64_t tap) {
  return tap / g.KW * P.d_h * s.Wp + tap % g.KW * P.d_w;
}

// Y = the conv by taps (bias B) on ``n_threads`` threads; ``space``: the tap-major kernels
// (O K values), then taps_buffer values per thread.
template <typename T>
void forward_taps(const ConvParams& P, const Geometry& g, const T* X, const T* W, const T* B,
                  T* Y, T* space, int n_threads) {
  const TapsGrid s = taps_grid(P, g);
  const Tiling how = taps_tiling(P, g);
  const std::vector<Tile> tiles = tiles_of(g, how, 0, g.N);
  const int64_t taps = g.KH * g.KW, items = tiles.size() * g.G;
  const int64_t ld = how.columns + s.halo * s.Wp;
  T* const Wk = space;
  kernels_by_tap(g, W, Wk);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* padded = space + g.O * g.Cg * taps + omp_get_thread_num() * taps_buffer(P, g);
    T* grid = padded + g.Cg * ld;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const Tile& t = tiles[item / g.G];
      const int64_t grp = item % g.G;
      const GridRows a = grid_rows(s, g, t);
      pad_tile(P, g, s, X + (t.n0 * g.C + grp * g.Cg) * g.H * g.W, t, a, ld, padded);
      for (int64_t tap = 0; tap < taps; ++tap)
        call<T>(kNoTrans, kNoTrans, g.Og, a.rows * s.Wp, g.Cg,
                Wk + (grp * taps + tap) * g.Og * g.Cg, g.Cg, padded + tap_shift(P, g, s, tap),
                ld, tap ? T(1) : T(0), grid, a.rows * s.Wp);
      grid_to_planes(g, s, t, a, grp, static_cast<const T*>(grid), B, Y);
    }
  }
}

// The taps' waste up to which they go before the blocks when both apply: the grid's extra
// cells cost less than the blocks' gathers. One thread, forward, blocks / taps / built-in:
// DenseNet's 160 -> 32 k3 on 12 x 12 planes (waste 1.17) 6.5-6.8 / 5.5-5.7 / 4.6-4.7 ms. On
// 6 x 6 (1.36) and 3 x 3 the blocks ran 5-7% faster forward + backward (DenseNet's
// 112-216 -> 32 k3, one thread), and stay first.
constexpr double kTapsBeforeBlocksWaste = 1.25;

// Y = the conv (bias B) by taps when they waste little (above), else by im2col without the
// padding when use_blocks says so, else by taps when use_taps says so, else by im2col;
// ``space``: O K values (the blocks' or taps' kernels) and a thread's buffers per thread;
// ``cost``: per column of a tile.
template <typename T>
void forward_any(const ConvParams& P, const Geometry& g, const T* X, const T* W, const T* B,
                 T* Y, T* space, int64_t cost) {
  const bool taps_first = use_taps(P, g) && taps_waste(P, g) <= kTapsBeforeBlocksWaste;
  const bool blocks = !taps_first && use_blocks(P, g), taps = !blocks && use_taps(P, g);
  const Tiling how = taps ? taps_tiling(P, g) : tiling(g);
  const int n_threads =
      cnn_base::threads_for_multiplies(tile_count(g, how) * g.G, how.columns * cost);
  if (blocks) {
    forward_blocks(P, g, X, W, B, Y, space, n_threads);
  } else if (taps) {
    forward_taps(P, g, X, W, B, Y, space, n_threads);
  } else {
    forward_tiles(P, g, X, W, B, Y, space + g.O * g.Cg * g.KH * g.KW, n_threads);
  }
}

template <typename T>
void forward(const ConvParams& P, const Geometry& g, const T* X, const T* W, const T* B, T* Y,
             const OpResource& res) {
  const int64_t K = g.Cg * g.KH * g.KW;
  const int64_t per_thread = std::max((K + g.Og) * tiling(g).columns, taps_buffer(P, g));
  T* const space = workspace<T>(res, g.O * K + cnn_base::max_threads() * per_thread);
  Sequential one_thread_blas;
  forward_any(P, g, X, W, B, Y, space, K * g.Og);
}

// dW[o][k] = the chunks' partial sums of (o, k) added in chunk order: the chunks added into
// the first in place, element by element, then laid out as dW is: each group's turned back
// (K_g x O_g to O_g x K_g) when weight_grad_turned, each row's K from tap-major (tap C_g + c)
// to W's order (c taps + tap) when ``tap_major``, both by moved_across, the rows shared among
// the threads. What it buys: a 512 -> 512 k3 layer has 2.4 million sums per chunk, which one
// thread added up while the other waited; and the sums read where the turned or tap-major
// parts hold them, a value at a time O_g or C_g apart, cost 10 ms of a 690 ms GoogLeNet step
// (perf, one thread; most of them its blocks' tap-major parts).
template <typename T>
void sum_chunks(const Geometry& g, int64_t K, int64_t chunks, T* parts, T* dW,
                bool tap_major) {
  const int64_t sums = g.O * K, taps = g.KH * g.KW;
  const bool turned = weight_grad_turned(g);
  const int n_threads = cnn_base::threads_for(g.O, K * (chunks + 1));
  std::vector<T> rows(tap_major && turned ? n_threads * K : 0);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    if (chunks > 1) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < sums; ++i) {
        T total = T(0) + parts[i];
        for (int64_t chunk = 1; chunk < chunks; ++chunk) total += parts[chunk * sums + i];
        parts[i] = total;
      }
    }
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    if (turned) {        // rows k0 .. k1 of each group's K_g x O_g, into dW's columns k0 .. k1
      const int64_t k0 = K * t / threads, k1 = K * (t + 1) / threads;
      for (int64_t grp = 0; grp < g.G; ++grp)
        cnn_base::moved_across(parts + (grp * K + k0) * g.Og, g.Og, dW + grp * g.Og * K + k0,
                               K, k1 - k0, g.Og);
    }
#pragma omp barrier
    T* row_copy = rows.empty() ? nullptr : rows.data() + t * K;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < g.O; ++row) {
      const T* from = turned ? dW + row * K : parts + row * K;
      if (!tap_major) {
        if (!turned) std::copy(from, from + K, dW + row * K);
        continue;
      }
      if (turned) from = std::copy(from, from + K, row_copy) - K;   // dW's row, tap-major
      cnn_base::moved_across(from, g.Cg, dW + row * K, taps, taps, g.Cg);
    }
  }
}

// dX, dW (db by the caller): dW summed per fixed chunk of images (each chunk's tiles on one
// thread), or with the images in the vector lanes where they fit (lanes::weight_grad), then dX
// by the transposed conv (above; by the lanes, taps or im2col), or, when that does not apply,
// in the same loop by dcols = W^T dY and col2im (an image's planes stay on one thread). dX
// null: dW alone (the input needs no gradient).
template <typename T>
void backward(const ConvParams& P, const Geometry& g, const T* dY, const T* X, const T* W,
              T* dX, T* dW, const OpResource& res) {
  const int64_t K = g.Cg * g.KH * g.KW, sums = g.O * K;
  ConvParams Q;
  Geometry h;
  const bool turned = transposed_of(P, g, &Q, &h);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(cnn_base::max_threads(), g.N));
  const int n_threads = static_cast<int>(std::min<int64_t>(
      chunks, cnn_base::threads_for_multiplies(g.N, (turned ? 1 : 2) * g.OH * g.OW * K * g.O)));
  T* const parts = workspace<T>(res, workspace_values(P, g));  // chunks' dW, Wt, buffers
  T* const Wt = parts + chunks * sums;
  T* const buffers = Wt + sums;
  Sequential one_thread_blas;
  const bool by_blocks = turned && use_blocks(P, g);
  const bool dW_by_lanes = turned && lanes::applies<T>(P, g);
  if (dW_by_lanes) {
    if constexpr (std::is_same<T, float>::value) lanes::weight_grad(P, g, dY, X, dW, buffers);
  } else {
    grads_by_chunk(P, g, dY, X, W, turned ? nullptr : dX, parts, buffers, n_threads, by_blocks);
  }
  if (turned && dX != nullptr) {
    turn_kernels(g, W, Wt);
    if (lanes::applies_to_input_grad<T>(Q, h)) {
      if constexpr (std::is_same<T, float>::value)
        lanes::forward_in(Q, h, dY, Wt, nullptr, dX, buffers);
    } else {
      forward_any(Q, h, dY, static_cast<const T*>(Wt), static_cast<const T*>(nullptr), dX,
                  buffers, sums / g.G);
    }
  }
  if (!dW_by_lanes) sum_chunks(g, K, chunks, parts, dW, by_blocks);
}

}  // namespace gemm
