/*
 * cnn_base's pooling kernel: the chapter's pool2d loop, written once in C++.
 *
 * ``ops.pool2d_loop`` visits every output cell (i, j) and reduces the window
 * X[i*s_h - p_h : i*s_h - p_h + p_h', ...] with max or mean. This file runs the
 * same loop over every (sample, channel) plane of an NCHW batch, planes shared
 * among OpenMP threads as parallel.h decides, and registers it with MXNet as
 * the operator ``cnn_base_pool2d`` through MXNet's extension library API
 * (lib_api.h, loaded with ``mx.library.load``). The blocks of
 * ``cnn_base.blocks`` call it when the library is built; otherwise they
 * compose the same pooling from MXNet ops (``cnn_base.functional.pool2d_nchw``),
 * which follows the same rules:
 *
 * - output size floor((h + 2p - k) / s) + 1, or ceil with ceil_mode;
 * - padding cells take no part in a max: a window's max is over its input
 *   cells only, and a window holding no input cell at all (possible with
 *   ceil_mode) gives the lowest finite value of the input's dtype, as Gluon's;
 * - a window holding NaN gives NaN (NumPy's and PyTorch's rule; Gluon's
 *   built-in skips NaN), and its gradient goes to the first NaN;
 * - otherwise the gradient of a max goes to the first maximal cell of the
 *   window in row-major order, and the max is that cell's value (so a tie of
 *   -0.0 and +0.0 gives the sign of the first);
 * - an average divides by the window's cells inside the padded input
 *   (count_include_pad) or inside the input itself; cells that a ceil_mode
 *   window reaches past the padded edge never count; no counted cell -> 0;
 *   its gradient spreads dY / divisor over the window's input cells.
 *
 * float32 and float64 are pooled as they are; float16 is computed in float32
 * one row at a time (a few rows of float32 per thread, never a whole plane),
 * and its gradient is added into the float16 dX as Gluon's is. The backward
 * overwrites dX: MXNet's extension API does not pass ``req``, so a caller that
 * needs gradients added (grad_req='add') puts an ``identity`` in front, as
 * cnn_base.functional.pool2d_native does.
 *
 * Safety: every size is checked to fit int64 arithmetic (attributes at most
 * kMaxAttr, products checked for overflow); buffers are allocated before the
 * parallel region, so nothing inside it can throw; every entry point catches
 * any exception and returns it to MXNet as an error instead of letting it
 * abort the process.
 *
 * Attributes (strings, as MXNet passes them): kernel, stride, pad as two
 * integers "(k_h, k_w)" from 1 (pad: 0) to kMaxAttr; mode "max" or "avg";
 * ceil_mode, count_include_pad as "True"/"False" (or 1/0); layout "NCHW"
 * (default) or "NHWC" (mode "avg" only: avg_forward_nhwc, the same rules);
 * argmax "True"/"False" (default False; mode "max" only): a second output,
 * int32 of Y's shape, each window's gradient cell as an offset into its
 * plane (-1: none), which the backward then reads instead of X (max_backward);
 * global_pool "True"/"False" (default False): the window is the whole plane, read from the
 * input's shape at each call (fit_window), and kernel, stride, pad are not read.
 */
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"
#include "operator_common.h"   // parse_ints, kMaxAttr, guarded: shared by both operators
#include "parallel.h"
#include "transpose.h"         // moved_across: the lanes' transposes

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

typedef std::unordered_map<std::string, std::string> Attrs;

namespace {

using cnn_base::kMaxAttr;
using cnn_base::parse_ints;

constexpr char kOp[] = "cnn_base_pool2d";   // the name in guarded's messages

struct PoolParams {
  int64_t k_h, k_w, s_h, s_w, p_h, p_w;
  bool is_max, ceil_mode, count_include_pad;
  bool channels_last;            // layout "NHWC" (average pooling only)
  bool keep_argmax;              // max: a second output, each window's argmax (see max_backward)
  bool global;                   // the window is the whole plane (fit_window)
};

bool read_pair(const Attrs& attrs, const char* name, int64_t minimum, int64_t* a, int64_t* b) {
  auto it = attrs.find(name);
  if (it == attrs.end()) {
    MX_ERROR_MSG << "cnn_base_pool2d needs the attribute " << name;
    return false;
  }
  std::vector<int64_t> values;
  if (!parse_ints(it->second, &values) || values.size() != 2 || values[0] < minimum ||
      values[1] < minimum) {
    MX_ERROR_MSG << "cnn_base_pool2d: " << name << " must be two integers from " << minimum
                 << " to " << kMaxAttr << ", got '" << it->second << "'";
    return false;
  }
  *a = values[0];
  *b = values[1];
  return true;
}

bool read_bool(const Attrs& attrs, const char* name, bool fallback, bool* flag) {
  auto it = attrs.find(name);
  if (it == attrs.end()) {
    *flag = fallback;
    return true;
  }
  const std::string& v = it->second;
  if (v == "True" || v == "true" || v == "1") {
    *flag = true;
  } else if (v == "False" || v == "false" || v == "0") {
    *flag = false;
  } else {
    MX_ERROR_MSG << "cnn_base_pool2d: " << name << " must be True or False, got '" << v << "'";
    return false;
  }
  return true;
}

bool read_params(const Attrs& attrs, PoolParams* P) {
  if (!read_bool(attrs, "global_pool", false, &P->global)) return false;
  P->k_h = P->k_w = P->s_h = P->s_w = 1;
  P->p_h = P->p_w = 0;
  if ((!P->global && (!read_pair(attrs, "kernel", 1, &P->k_h, &P->k_w) ||
                      !read_pair(attrs, "stride", 1, &P->s_h, &P->s_w) ||
                      !read_pair(attrs, "pad", 0, &P->p_h, &P->p_w))) ||
      !read_bool(attrs, "ceil_mode", false, &P->ceil_mode) ||
      !read_bool(attrs, "count_include_pad", true, &P->count_include_pad) ||
      !read_bool(attrs, "argmax", false, &P->keep_argmax)) {
    return false;
  }
  auto mode = attrs.find("mode");
  if (mode == attrs.end() || (mode->second != "max" && mode->second != "avg")) {
    MX_ERROR_MSG << "cnn_base_pool2d: mode must be 'max' or 'avg', got '"
                 << (mode == attrs.end() ? std::string("nothing") : mode->second) << "'";
    return false;
  }
  P->is_max = mode->second == "max";
  auto layout = attrs.find("layout");
  P->channels_last = layout != attrs.end() && layout->second == "NHWC";
  if (layout != attrs.end() && layout->second != "NHWC" && layout->second != "NCHW") {
    MX_ERROR_MSG << "cnn_base_pool2d: layout must be 'NCHW' or 'NHWC', got '" << layout->second
                 << "'";
    return false;
  }
  if (P->channels_last && P->is_max) {
    MX_ERROR_MSG << "cnn_base_pool2d: layout 'NHWC' is for mode 'avg' (max pooling of NHWC "
                 << "input goes through NCHW)";
    return false;
  }
  if (P->keep_argmax && !P->is_max) {
    MX_ERROR_MSG << "cnn_base_pool2d: argmax is for mode 'max'";
    return false;
  }
  if (P->p_h >= P->k_h || P->p_w >= P->k_w) {
    MX_ERROR_MSG << "cnn_base_pool2d: pad (" << P->p_h << ", " << P->p_w
                 << ") must be smaller than kernel (" << P->k_h << ", " << P->k_w << ")";
    return false;
  }
  return true;
}

// Output length of one axis; -1 when the padded input is shorter than the
// window. With n < 2^32 and k, s, p <= kMaxAttr nothing here comes near 2^63.
int64_t out_length(int64_t n, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const int64_t span = n + 2 * p - k;
  if (span < 0) return -1;
  return (ceil_mode ? (span + s - 1) / s : span / s) + 1;
}

// One axis of one window: the input cells [begin, end) it covers and how many
// cells count in an average's divisor. o * s <= span + s - 1 (see out_length),
// so the products stay small.
struct Span {
  int64_t begin, end, counted;
};

Span window_span(int64_t o, int64_t n, int64_t k, int64_t s, int64_t p, bool count_include_pad) {
  const int64_t start = o * s - p;
  const int64_t stop = start + k;
  Span span;
  span.begin = std::max<int64_t>(start, 0);
  span.end = std::min<int64_t>(stop, n);
  span.counted = count_include_pad ? std::min<int64_t>(stop, n + p) - start
                                   : std::max<int64_t>(span.end - span.begin, 0);
  return span;
}

struct Geometry {
  int64_t planes, H, W, OH, OW, N, C;
};

// Global pooling: the window is the input's whole plane (at least 1 x 1, so an empty plane is
// "too small" in geometry_of), stride 1, no padding. What it buys: a graph holds no plane size,
// so global pooling runs in one call of this kernel instead of a chain of MXNet operators.
void fit_window(const std::vector<int64_t>& shape, PoolParams* P) {
  if (!P->global || shape.size() != 4) return;
  const size_t h = P->channels_last ? 1 : 2;
  P->k_h = std::max<int64_t>(1, shape[h]);
  P->k_w = std::max<int64_t>(1, shape[h + 1]);
  P->s_h = P->s_w = 1;
  P->p_h = P->p_w = 0;
  P->ceil_mode = false;
}

bool multiply(int64_t a, int64_t b, int64_t* product) {
  return !__builtin_mul_overflow(a, b, product);
}

// The sizes of a 4-D input, with every element count the loops use checked to
// fit int64 and every dimension to fit MXNet's 32-bit shape entries.
bool geometry_of(const PoolParams& P, const std::vector<int64_t>& shape, Geometry* g) {
  if (shape.size() != 4) {
    MX_ERROR_MSG << "cnn_base_pool2d needs a 4-D input (batch, channels, height, width), got "
                 << shape.size() << " dimensions";
    return false;
  }
  const int64_t dim_max = std::numeric_limits<uint32_t>::max();
  for (int64_t d : shape) {
    if (d < 0 || d > dim_max) {
      MX_ERROR_MSG << "cnn_base_pool2d: input dimensions must be from 0 to " << dim_max
                   << ", got " << d;
      return false;
    }
  }
  g->N = shape[0];
  g->C = P.channels_last ? shape[3] : shape[1];
  g->H = P.channels_last ? shape[1] : shape[2];
  g->W = P.channels_last ? shape[2] : shape[3];
  g->OH = out_length(g->H, P.k_h, P.s_h, P.p_h, P.ceil_mode);
  g->OW = out_length(g->W, P.k_w, P.s_w, P.p_w, P.ceil_mode);
  if (g->OH < 1 || g->OW < 1) {
    MX_ERROR_MSG << "cnn_base_pool2d: input of height and width (" << g->H << ", " << g->W
                 << ") is too small for the pooling window (" << P.k_h << ", " << P.k_w
                 << ") with padding (" << P.p_h << ", " << P.p_w << ")";
    return false;
  }
  if (g->OH > dim_max || g->OW > dim_max) {
    MX_ERROR_MSG << "cnn_base_pool2d: the output would be " << g->OH << " x " << g->OW
                 << ", more than MXNet's largest dimension " << dim_max;
    return false;
  }
  int64_t in_plane, out_plane, in_all, out_all;
  if (!multiply(g->N, g->C, &g->planes) || !multiply(g->H, g->W, &in_plane) ||
      !multiply(g->OH, g->OW, &out_plane) || !multiply(g->planes, in_plane, &in_all) ||
      !multiply(g->planes, out_plane, &out_all)) {
    MX_ERROR_MSG << "cnn_base_pool2d: input (" << shape[0] << ", " << shape[1] << ", "
                 << shape[2] << ", " << shape[3] << ") has more elements than 64-bit indices "
                 << "can count";
    return false;
  }
  // max pooling orders tied cells by int32 plane offsets (comes_first); MXNet 1.9's wheels
  // hold at most 2^31 - 1 elements per array anyway (no INT64_TENSOR_SIZE)
  if (P.is_max && in_plane > std::numeric_limits<int32_t>::max()) {
    MX_ERROR_MSG << "cnn_base_pool2d: max pooling counts a plane's cells in int32, and a plane "
                 << "of " << g->H << " x " << g->W << " has more";
    return false;
  }
  return true;
}

// The type a storage type is computed in: float16 (raw bits) in float32.
template <typename S> struct Compute { typedef S type; };
template <> struct Compute<uint16_t> { typedef float type; };

// An unsigned integer as wide as T: row numbers kept beside T values in
// vector registers, and masks for them.
template <typename T> struct SameWidth;
template <> struct SameWidth<float> { typedef uint32_t type; };
template <> struct SameWidth<double> { typedef uint64_t type; };

// IEEE binary16 <-> float, for float16 input (computed in float32, as MXNet's
// own pooling accumulates float16 in float32).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {                               // zero or subnormal: mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  uint32_t bits = exponent == 0x1f ? sign | 0x7f800000u | (mantissa << 13)          // inf, NaN
                                   : sign | ((exponent + 112) << 23) | (mantissa << 13);
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t float_to_half(float f) {                    // round to nearest, ties to even
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00;             // NaN
  if (magnitude >= 0x47800000u) return sign | 0x7c00;            // >= 65536: infinity
  if (magnitude < 0x38800000u) {                                 // below 2^-14: subnormal
    float m;
    std::memcpy(&m, &magnitude, sizeof m);
    return sign | static_cast<uint16_t>(std::nearbyint(m * 16777216.0f));   // m / 2^-24
  }
  uint32_t h = ((magnitude >> 23) - 112) << 10 | ((magnitude >> 13) & 0x3ff);
  const uint32_t rest = magnitude & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;        // a carry moves into the exponent
  return sign | static_cast<uint16_t>(h);
}

// Reading and writing storage through the compute type. For float and double
// a row is used in place; a float16 row is converted into a buffer.
inline float value_of(const uint16_t* p, int64_t i) { return half_to_float(p[i]); }
inline float value_of(const float* p, int64_t i) { return p[i]; }
inline double value_of(const double* p, int64_t i) { return p[i]; }

inline const float* row_in(const float* p, float*, int64_t) { return p; }
inline const double* row_in(const double* p, double*, int64_t) { return p; }
inline const float* row_in(const uint16_t* p, float* buffer, int64_t n) {
  for (int64_t i = 0; i < n; ++i) buffer[i] = half_to_float(p[i]);
  return buffer;
}

// Where to compute an output row: in place, or in a buffer for float16.
inline float* row_out(float* p, float*) { return p; }
inline double* row_out(double* p, double*) { return p; }
inline float* row_out(uint16_t*, float* buffer) { return buffer; }
inline void row_done(float*, const float*, int64_t) {}
inline void row_done(double*, const double*, int64_t) {}
inline void row_done(uint16_t* p, const float* buffer, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = float_to_half(buffer[i]);
}

// dX += v: float16 is rounded after each addition, as Gluon's float16 backward is.
inline void add_to(float* p, int64_t i, float v) { p[i] += v; }
inline void add_to(double* p, int64_t i, double v) { p[i] += v; }
inline void add_to(uint16_t* p, int64_t i, float v) {
  p[i] = float_to_half(half_to_float(p[i]) + v);
}
inline void add_row(float* p, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] += v[i];
}
inline void add_row(double* p, const double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] += v[i];
}
inline void add_row(uint16_t* p, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = float_to_half(half_to_float(p[i]) + v[i]);
}

// The lowest finite value of each storage type, in its compute type: what a
// max window without input cells gives, as Gluon's.
inline float lowest_of(const float*) { return std::numeric_limits<float>::lowest(); }
inline double lowest_of(const double*) { return std::numeric_limits<double>::lowest(); }
inline float lowest_of(const uint16_t*) { return -65504.0f; }

// The larger of a (earlier) and b (later); NaN wins, the earlier wins ties.
// Written as a select so that loops over it vectorize.
template <typename T>
inline T nan_max(T a, T b) {
  return (b > a) | (b != b) ? b : a;
}

// Each output column's window columns and 1 / their counted cells: the same
// for every plane and row, read by the NCHW and the NHWC loops.
template <typename S>
struct Columns {
  typedef typename Compute<S>::type T;
  std::vector<Span> cols;        // each output column's input columns
  std::vector<T> inv_w;          // 1 / counted cells of each window column j

  int64_t inner_begin = 0, inner_end = 0;   // the output columns whose window is all input

  Columns(const PoolParams& P, const Geometry& g) : cols(g.OW), inv_w(g.OW) {
    for (int64_t j = 0; j < g.OW; ++j) {
      cols[j] = window_span(j, g.W, P.k_w, P.s_w, P.p_w, P.count_include_pad);
      inv_w[j] = cols[j].counted > 0 ? T(1) / static_cast<T>(cols[j].counted) : T(0);
    }
    inner_begin = (P.p_w + P.s_w - 1) / P.s_w;                // j s - p >= 0
    inner_end = g.W + P.p_w >= P.k_w ? std::min(g.OW, (g.W + P.p_w - P.k_w) / P.s_w + 1) : 0;
  }
};

// What one thread reuses from plane to plane: O(W + OW) values, never a plane.
template <typename S>
struct Work : Columns<S> {
  typedef typename Compute<S>::type T;
  typedef typename SameWidth<T>::type Row;
  std::vector<T> acc;            // one row: the window rows reduced column by column
  std::vector<T> share;          // avg backward: dY / divisor along an output row
  std::vector<T> col_max;        // max backward: each column's max over the window rows ...
  std::vector<Row> col_row;      // ... and the first row holding it
  std::vector<int32_t> col_cell;           // max forward: that cell's offset,
  std::vector<T> win_max;                  // window_maxima's runs of k_w columns,
  std::vector<int32_t> win_cell;
  std::vector<int32_t> row_cells;          // and one row of offsets when A is not kept
  std::vector<T> x_row, y_row, dy_row;   // float16 rows in float32

  Work(const PoolParams& P, const Geometry& g)
      : Columns<S>(P, g), acc(g.W), share(g.OW), col_max(g.W), col_row(g.W),
        col_cell(P.is_max ? g.W : 0), win_max(P.is_max ? g.W : 0),
        win_cell(P.is_max ? g.W : 0), row_cells(P.is_max ? g.OW : 0),
        x_row(sizeof(S) == sizeof(T) ? 0 : g.W), y_row(sizeof(S) == sizeof(T) ? 0 : g.OW),
        dy_row(sizeof(S) == sizeof(T) ? 0 : g.OW) {}
};

// Average pooling of one plane, separably: for output row i, first sum the
// (clipped) window rows of x column by column into ``acc`` (contiguous, so the
// compiler vectorizes it), then each window's input columns of ``acc``.
// Padding cells are never read: the sum is divided by the counted cells.
template <typename S>
void avg_forward_plane(const PoolParams& P, const Geometry& g, const S* x, S* y, Work<S>* work) {
  typedef typename Compute<S>::type T;
  T* acc = work->acc.data();
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    T* yi = row_out(y + i * g.OW, work->y_row.data());
    if (r.begin >= r.end) {
      std::fill(yi, yi + g.OW, T(0));
      row_done(y + i * g.OW, yi, g.OW);
      continue;
    }
    const T* first = row_in(x + r.begin * g.W, work->x_row.data(), g.W);
    std::copy(first, first + g.W, acc);
    for (int64_t a = r.begin + 1; a < r.end; ++a) {
      const T* xa = row_in(x + a * g.W, work->x_row.data(), g.W);
      for (int64_t w = 0; w < g.W; ++w) acc[w] += xa[w];
    }
    const T inv_h = T(1) / static_cast<T>(r.counted);
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = work->cols[j];
      T sum = T(0);
      if (q.begin < q.end) {
        sum = acc[q.begin];
        for (int64_t b = q.begin + 1; b < q.end; ++b) sum += acc[b];
      }
      yi[j] = sum * inv_h * work->inv_w[j];
    }
    row_done(y + i * g.OW, yi, g.OW);
  }
}

// Down each column of the window rows [r.begin, r.end) of plane x: the column's max into
// work->col_max and the first row holding it into work->col_row (masks, not branches, so
// the loop vectorizes; branches on random data measured 5x slower). NaN beats every number
// and the first NaN stays; of equal values (-0.0 and +0.0 too) the first row stays.
// target_clones: an AVX2 copy besides the baseline one, chosen when the library loads; with
// window_maxima's, (8, 64, 112, 112) 3 x 3 stride 2: 6.9 -> 4.6 ms, one thread.
template <typename S>
__attribute__((target_clones("avx2", "default")))
void column_maxima(const Geometry& g, const S* x, const Span& r, Work<S>* work) {
  typedef typename Compute<S>::type T;
  typedef typename Work<S>::Row Row;
  T* __restrict cmax = work->col_max.data();
  Row* __restrict crow = work->col_row.data();
  const T* first = row_in(x + r.begin * g.W, work->x_row.data(), g.W);
  std::copy(first, first + g.W, cmax);
  std::fill(crow, crow + g.W, static_cast<Row>(r.begin));
  for (int64_t a = r.begin + 1; a < r.end; ++a) {
    const T* __restrict xa = row_in(x + a * g.W, work->x_row.data(), g.W);
    const Row row = static_cast<Row>(a);
    for (int64_t w = 0; w < g.W; ++w) {
      const T v = xa[w], old = cmax[w];
      const bool take = (v > old) | ((v != v) & (old == old));
      const Row above = -static_cast<Row>(take);       // all ones or 0
      crow[w] = (row & above) | (crow[w] & ~above);
      cmax[w] = take ? v : old;
    }
  }
}

// Whether (v, at plane offset cv) comes before the window's max so far (m, at cm): a larger
// value, a first NaN, or an equal one (NaN and NaN, -0.0 and +0.0) at a smaller offset,
// which comes first in row-major order.
template <typename T>
inline bool comes_first(T v, int32_t cv, T m, int32_t cm) {
  const bool v_nan = v != v, m_nan = m != m;
  return (v > m) | (v_nan & !m_nan) | (((v == m) | (v_nan & m_nan)) & (cv < cm));
}

// The first max of every run of k_w columns of work->col_max (from column_maxima) into
// win_max, its plane offset into win_cell: win_*[b] is the window of columns [b, b + k_w).
// What it buys: k_w - 1 passes along the row, each a loop of selects that vectorizes; a
// loop over the windows with their columns inside did not (3-wide windows at stride 2 were
// 4x slower than the forward that kept no offsets). AVX2 copy: see column_maxima.
template <typename S>
__attribute__((target_clones("avx2", "default")))
void window_maxima(const Geometry& g, int64_t k_w, Work<S>* work) {
  typedef typename Compute<S>::type T;
  const T* __restrict cmax = work->col_max.data();
  const auto* __restrict crow = work->col_row.data();
  int32_t* __restrict cell = work->col_cell.data();
  T* __restrict m = work->win_max.data();
  int32_t* __restrict at = work->win_cell.data();
  const int32_t W = static_cast<int32_t>(g.W);
  for (int32_t b = 0; b < W; ++b) cell[b] = static_cast<int32_t>(crow[b]) * W + b;
  const int64_t runs = g.W - k_w + 1;
  std::copy(cmax, cmax + runs, m);
  std::copy(cell, cell + runs, at);
  for (int64_t t = 1; t < k_w; ++t) {
    const T* __restrict v = cmax + t;
    const int32_t* __restrict cv = cell + t;
    for (int64_t b = 0; b < runs; ++b) {
      const bool take = comes_first(v[b], cv[b], m[b], at[b]);
      m[b] = take ? v[b] : m[b];
      at[b] = take ? cv[b] : at[b];
    }
  }
}

// Max pooling of one plane, separably: column_maxima for the window rows of output row i,
// then window_maxima along them for the windows wholly inside the row, and the windows cut
// by the padding one by one. Y is the value of the window's first max in row-major order
// (so the sign of a -0.0/+0.0 tie and the first NaN are its); its plane offset (-1 for a
// window of padding only) goes to arg + i * arg_step: with argmax=True the plane's A, where
// the backward sends dY (arg_step OW), else one scratch row (arg_step 0). What it buys over
// a max without offsets: the ties need no second search (a ReLU's zeros made that branch
// mispredict), so (32, 32, 112, 112) 2 x 2 pools went from 24.5 to 6.9 ms, one thread.
template <typename S>
void max_forward_plane(const PoolParams& P, const Geometry& g, const S* x, S* y, int32_t* arg,
                       int64_t arg_step, Work<S>* work) {
  typedef typename Compute<S>::type T;
  const int64_t j0 = std::min(work->inner_begin, g.OW), j1 = std::max(j0, work->inner_end);
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    T* yi = row_out(y + i * g.OW, work->y_row.data());
    int32_t* ai = arg + i * arg_step;
    if (r.begin >= r.end) {
      std::fill(yi, yi + g.OW, lowest_of(x));
      std::fill(ai, ai + g.OW, -1);
      row_done(y + i * g.OW, yi, g.OW);
      continue;
    }
    column_maxima(g, x, r, work);
    if (j0 < j1) window_maxima(g, P.k_w, work);
    for (int64_t j = j0; j < j1; ++j) {
      yi[j] = work->win_max[j * P.s_w - P.p_w];
      ai[j] = work->win_cell[j * P.s_w - P.p_w];
    }
    for (int64_t j = 0; j < g.OW; ++j) {
      if (j == j0 && j1 > j0) j = j1;              // the windows done above
      if (j >= g.OW) break;
      const Span q = work->cols[j];
      T m = lowest_of(x);
      int32_t at = -1;
      for (int64_t b = q.begin; b < q.end; ++b) {
        const int32_t cell = static_cast<int32_t>(work->col_row[b] * g.W + b);
        if (at < 0 || comes_first(work->col_max[b], cell, m, at)) {
          m = work->col_max[b];
          at = cell;
        }
      }
      yi[j] = m;
      ai[j] = at;
    }
    row_done(y + i * g.OW, yi, g.OW);
  }
}

// Backward of one plane. Average: the transpose of the forward's two passes;
// each output row's shares dY / divisor are spread along ``acc``, which is
// then added to the window's input rows. Max without a kept argmax (the operator
// called with argmax=False): each window's first maximal cell in row-major order
// (its first NaN, if any) receives dY, found separably again.
template <typename S>
void backward_plane(const PoolParams& P, const Geometry& g, const S* dy, const S* x,
                    const S* y, S* dx, Work<S>* work) {
  typedef typename Compute<S>::type T;
  typedef typename Work<S>::Row Row;
  const int64_t none = std::numeric_limits<int64_t>::max();
  T* acc = work->acc.data();
  std::memset(static_cast<void*>(dx), 0, sizeof(S) * g.H * g.W);   // +0.0 in every dtype
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    if (r.begin >= r.end) continue;
    const T* dyi = row_in(dy + i * g.OW, work->dy_row.data(), g.OW);
    if (!P.is_max) {
      std::fill(acc, acc + g.W, T(0));
      const T inv_h = T(1) / static_cast<T>(r.counted);
      for (int64_t j = 0; j < g.OW; ++j) {
        const Span q = work->cols[j];
        const T share = dyi[j] * inv_h * work->inv_w[j];
        for (int64_t b = q.begin; b < q.end; ++b) acc[b] += share;
      }
      for (int64_t a = r.begin; a < r.end; ++a) add_row(dx + a * g.W, acc, g.W);
      continue;
    }
    // Along each window: of the columns whose max is the window's max (Y, so
    // equality is exact; NaN matches NaN), the cell that comes first in
    // row-major order.
    column_maxima(g, x, r, work);
    const T* __restrict cmax = work->col_max.data();
    const Row* __restrict crow = work->col_row.data();
    const T* yi = row_in(y + i * g.OW, work->y_row.data(), g.OW);
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = work->cols[j];
      const T m = yi[j];
      const bool m_nan = m != m;
      int64_t arg = none;
      for (int64_t b = q.begin; b < q.end; ++b) {
        const int64_t cell = static_cast<int64_t>(crow[b]) * g.W + b;
        const bool same = (cmax[b] == m) | ((cmax[b] != cmax[b]) & m_nan);
        const int64_t hit = -static_cast<int64_t>(same);   // all ones or 0
        arg = std::min(arg, (cell & hit) | (none & ~hit));
      }
      if (arg != none) add_to(dx, arg, dyi[j]);
    }
  }
}

// The forward of max pooling of small planes, kLanes planes at a time: their cells are laid side by side
// (cell-major, one block per thread), every output cell's window cells (input offsets,
// row-major) are listed once per call, and each window's max runs across the kLanes planes
// at once (the loop over lanes vectorizes: selects, no branches). What it buys: the
// separable passes above set up per output row and column, which on the many small planes of
// GoogLeNet's inception pools (480-832 channels on 6 x 6 and 3 x 3) cost more than the
// maxima: Gluon's forward was 3.4-4.9x faster there (one thread; this way ours went from
// 3.99 to 1.2-1.4 ms on (32, 480, 6, 6), 3.89 to 0.55-0.63 on (32, 832, 3, 3), 4.0 to 2.6
// on (32, 192, 12, 12)). Same results:
// nan_max in row-major order keeps the first of equal cells (+0.0 or -0.0). Its backward is
// max_backward's (argmax=True) or backward_plane's. Compiled for AVX2 too (target_clones,
// chosen when the process starts): (32, 528, 6, 6) 2.0 -> 1.6 ms with argmax, one thread.
//
// Up to 54 x 54 planes, max and average alike, since the lanes move in and out by AVX2
// transposes (moved_across): one thread, forward + backward after a ReLU, medians in turns,
// ours / the built-in's, separable -> side by side: max (32, 64, 48, 48) 3 x 3 s2 0.96 -> 0.85,
// (32, 96, 54, 54) 3 x 3 s2 0.92 -> 0.87, (32, 64, 32, 32) 3 x 3 s2 1.08 -> 0.74, (32, 128, 28,
// 28) 2 x 2 0.89 -> 0.69; average (32, 96, 24, 24) 2 x 2 0.95 -> 0.82, (32, 64, 48, 48) 2 x 2 1.08
// -> 0.97, (32, 64, 32, 32) 3 x 3 s1 2.2 -> 1.1; at 56 x 56 (2 x 2 max) the two ways are even.
// A block of 64 planes of 54 x 54 is 746 KB, in L2 with its outputs. Where the lanes move a
// value at a time (float16, float64, no AVX2) the bounds measured for that stay: 24 x 24 for
// max pooling, 12 x 12 for average, whose 24 x 24 planes took 4.3-4.8 ms that way against
// the separable loops' 2.45 ((32, 96, 24, 24) 2 x 2, one thread).
constexpr int64_t kSmallPlane = 54 * 54;
constexpr int64_t kSmallPlaneMoved = 24 * 24, kSmallAvgPlaneMoved = 12 * 12;
constexpr int64_t kLanes = 64;
// The most window cells max_forward_small lists (window_cells: outputs times their cells),
// 512 KB of offsets: a large window on a small plane goes the separable way instead (54 x 54
// by 3 x 3 lists 26244, by 5 x 5 72900).
constexpr int64_t kMostListedCells = int64_t(1) << 16;

// Whether the lanes of storage type S move by AVX2 transposes (moved_across).
template <typename S>
inline bool lanes_move_fast() {
#ifdef CNN_BASE_AVX2
  return std::is_same<S, float>::value && cnn_base::has_avx2();
#else
  return false;
#endif
}

// Pooling whose input and output planes are both small takes this way; max pooling also
// needs its windows' cells listed (at most kMostListedCells of them).
template <typename S>
inline bool side_by_side(const PoolParams& P, const Geometry& g) {
  const bool fast = lanes_move_fast<S>();
  const int64_t most = fast ? kSmallPlane : P.is_max ? kSmallPlaneMoved : kSmallAvgPlaneMoved;
  return g.H * g.W <= most && g.OH * g.OW <= (fast ? kSmallPlane : kSmallPlaneMoved) &&
         (!P.is_max || g.OH * g.OW * std::min(P.k_h, g.H) * std::min(P.k_w, g.W) <=
                           kMostListedCells);
}

struct WindowCells {
  std::vector<int64_t> at, first;      // output cell o's window: at[first[o]] .. at[first[o+1]]
};

WindowCells window_cells(const PoolParams& P, const Geometry& g) {
  WindowCells w;
  w.first.push_back(0);
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = window_span(j, g.W, P.k_w, P.s_w, P.p_w, P.count_include_pad);
      for (int64_t a = r.begin; a < r.end; ++a)
        for (int64_t b = q.begin; b < q.end; ++b) w.at.push_back(a * g.W + b);
      w.first.push_back(static_cast<int64_t>(w.at.size()));
    }
  }
  return w;
}

inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(double* p, int64_t i, double v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_half(v); }

using cnn_base::moved_across;   // the lanes' transposes, in and out (lanes_of, planes_of, the
                                // argmax). What it buys: one value at a time they were two
// thirds of max_forward_small's time; one thread, forward with argmax, (32, 192, 12, 12) 3 x 3
// 2.7 -> 1.6 ms, (32, 480, 6, 6) 1.26 -> 0.82; forward + backward after a ReLU, (32, 192, 24,
// 24) 3 x 3 stride 2 0.95-1.0 -> 0.68-0.70 the built-in's.

// block[cell * kLanes + l] = plane c0 + l's cell, for the n <= kLanes planes from c0.
template <typename S, typename T>
void lanes_of(const S* X, int64_t c0, int64_t n, int64_t cells, T* block) {
  for (int64_t l = 0; l < n; ++l)
    for (int64_t cell = 0; cell < cells; ++cell)
      block[cell * kLanes + l] = value_of(X + (c0 + l) * cells, cell);
}

inline void lanes_of(const float* X, int64_t c0, int64_t n, int64_t cells, float* block) {
  moved_across(X + c0 * cells, cells, block, kLanes, n, cells);
}

// The blocks of kLanes planes (the last one partial) of the side-by-side ways, the threads
// to run them with, and one buffer per thread of ``lanes`` rows of kLanes values, made before
// the parallel region. cost: the work per plane.
template <typename T>
struct LaneBlocks {
  int64_t blocks, per_thread;
  int threads;
  std::vector<T> buffers;

  LaneBlocks(const Geometry& g, int64_t cost, int64_t lanes)
      : blocks((g.planes + kLanes - 1) / kLanes), per_thread(lanes * kLanes),
        threads(cnn_base::threads_for(blocks, kLanes * cost)), buffers(threads * per_thread) {}

  T* mine() { return buffers.data() + omp_get_thread_num() * per_thread; }
};

// Plane c0 + l's cell = block[cell * kLanes + l], for the n <= kLanes planes from c0: the
// lanes back into planes, each written along (its reads stride through the block, in L1).
template <typename S, typename T>
void planes_of(const T* block, int64_t c0, int64_t n, int64_t cells, S* Y) {
  for (int64_t l = 0; l < n; ++l) {
    S* y = Y + (c0 + l) * cells;
    for (int64_t cell = 0; cell < cells; ++cell) store(y, cell, block[cell * kLanes + l]);
  }
}

inline void planes_of(const float* block, int64_t c0, int64_t n, int64_t cells, float* Y) {
  moved_across(block, kLanes, Y + c0 * cells, cells, cells, n);
}

// With argmax=True each lane also keeps the cell of its max (A, as max_forward_plane):
// a window's cells come in row-major order, so a lane takes a cell only when it is larger or
// the first NaN.
template <typename S>
__attribute__((target_clones("avx2", "default")))
void max_forward_small(const PoolParams& P, const Geometry& g, const S* X, S* Y, int32_t* A) {
  typedef typename Compute<S>::type T;
  const WindowCells w = window_cells(P, g);
  const int64_t cells = g.H * g.W, out_cells = g.OH * g.OW;
  LaneBlocks<T> work(g, cells + w.at.size(), cells + out_cells);   // the lanes in, maxima out
  std::vector<int32_t> args(A ? work.threads * out_cells * kLanes : 0);
#pragma omp parallel for num_threads(work.threads) schedule(static) if (work.threads > 1)
  for (int64_t blk = 0; blk < work.blocks; ++blk) {
    const int64_t c0 = blk * kLanes, n = std::min(kLanes, g.planes - c0);
    T* block = work.mine();
    T* maxima = block + cells * kLanes;
    int32_t* cells_at = A ? args.data() + omp_get_thread_num() * out_cells * kLanes : nullptr;
    lanes_of(X, c0, n, cells, block);
    for (int64_t o = 0; o < out_cells; ++o) {
      T* __restrict m = maxima + o * kLanes;         // the lanes' running maxima
      const int64_t k0 = w.first[o], k1 = w.first[o + 1];
      if (k0 < k1) {
        std::copy(block + w.at[k0] * kLanes, block + (w.at[k0] + 1) * kLanes, m);
      } else {
        std::fill(m, m + kLanes, lowest_of(X));
      }
      if (cells_at) {
        int32_t* __restrict at = cells_at + o * kLanes;
        std::fill(at, at + kLanes, k0 < k1 ? static_cast<int32_t>(w.at[k0]) : -1);
        for (int64_t k = k0 + 1; k < k1; ++k) {
          const T* __restrict v = block + w.at[k] * kLanes;
          const int32_t cell = static_cast<int32_t>(w.at[k]);
          for (int64_t l = 0; l < kLanes; ++l) {
            const bool take = (v[l] > m[l]) | ((v[l] != v[l]) & (m[l] == m[l]));
            m[l] = take ? v[l] : m[l];
            at[l] = take ? cell : at[l];
          }
        }
      } else {
        for (int64_t k = k0 + 1; k < k1; ++k) {
          const T* __restrict v = block + w.at[k] * kLanes;
          for (int64_t l = 0; l < kLanes; ++l) m[l] = nan_max(m[l], v[l]);
        }
      }
    }
    planes_of(maxima, c0, n, out_cells, Y);
    if (cells_at)
      moved_across<int32_t>(cells_at, kLanes, A + c0 * out_cells, out_cells, out_cells, n);
  }
}

// v as the storage type S would round it: float16's rounding after each addition of the
// backward (add_to, add_row) kept by the lanes, which add in float32.
inline float stored_as(const uint16_t*, float v) { return half_to_float(float_to_half(v)); }
inline float stored_as(const float*, float v) { return v; }
inline double stored_as(const double*, double v) { return v; }

// Average pooling of small planes, kLanes planes side by side as max_forward_small, in the
// separable loops' order (avg_forward_plane: down each window column, then across the
// window's columns, then times 1 / rows and 1 / columns counted), so that the bits are
// theirs and the NHWC loop's. What it buys: DenseNet's transition pools on 6 x 6 and 12 x 12
// planes, where avg_forward_plane's setup per row of 3 or 6 outputs cost more than the sums
// (see kSmallPlane).
template <typename S>
__attribute__((target_clones("avx2", "default")))
void avg_forward_small(const PoolParams& P, const Geometry& g, const S* X, S* Y) {
  typedef typename Compute<S>::type T;
  const Columns<S> shared(P, g);
  const int64_t cells = g.H * g.W, out_cells = g.OH * g.OW;
  LaneBlocks<T> work(g, cells + out_cells * P.k_w, cells + g.W + out_cells);   // in, sums, out
#pragma omp parallel for num_threads(work.threads) schedule(static) if (work.threads > 1)
  for (int64_t blk = 0; blk < work.blocks; ++blk) {
    const int64_t c0 = blk * kLanes, n = std::min(kLanes, g.planes - c0);
    T* block = work.mine();
    T* __restrict acc = block + cells * kLanes;
    T* __restrict out = acc + g.W * kLanes;
    lanes_of(X, c0, n, cells, block);
    for (int64_t i = 0; i < g.OH; ++i) {
      const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
      T* __restrict y = out + i * g.OW * kLanes;
      if (r.begin >= r.end) {
        std::fill(y, y + g.OW * kLanes, T(0));
        continue;
      }
      std::copy(block + r.begin * g.W * kLanes, block + (r.begin + 1) * g.W * kLanes, acc);
      for (int64_t a = r.begin + 1; a < r.end; ++a) {
        const T* __restrict xa = block + a * g.W * kLanes;
        for (int64_t k = 0; k < g.W * kLanes; ++k) acc[k] += xa[k];
      }
      const T inv_h = T(1) / static_cast<T>(r.counted);
      for (int64_t j = 0; j < g.OW; ++j) {
        const Span q = shared.cols[j];
        T* __restrict s = y + j * kLanes;
        if (q.begin < q.end) std::copy(acc + q.begin * kLanes, acc + (q.begin + 1) * kLanes, s);
        else std::fill(s, s + kLanes, T(0));
        for (int64_t b = q.begin + 1; b < q.end; ++b)
          for (int64_t l = 0; l < kLanes; ++l) s[l] += acc[b * kLanes + l];
        for (int64_t l = 0; l < kLanes; ++l) s[l] = s[l] * inv_h * shared.inv_w[j];
      }
    }
    planes_of(out, c0, n, out_cells, Y);
  }
}

// Its backward, in backward_plane's order: per output row, the shares dY / divisor summed
// along a row of window columns (acc), then added to each of the window's rows (float16
// rounded after each addition, as add_row does).
template <typename S>
__attribute__((target_clones("avx2", "default")))
void avg_backward_small(const PoolParams& P, const Geometry& g, const S* dY, S* dX) {
  typedef typename Compute<S>::type T;
  const Columns<S> shared(P, g);
  const int64_t cells = g.H * g.W, out_cells = g.OH * g.OW;
  LaneBlocks<T> work(g, cells + out_cells * P.k_w, out_cells + g.W + cells);   // dY, shares, dX
#pragma omp parallel for num_threads(work.threads) schedule(static) if (work.threads > 1)
  for (int64_t blk = 0; blk < work.blocks; ++blk) {
    const int64_t c0 = blk * kLanes, n = std::min(kLanes, g.planes - c0);
    T* dy = work.mine();
    T* __restrict acc = dy + out_cells * kLanes;
    T* __restrict dx = acc + g.W * kLanes;
    lanes_of(dY, c0, n, out_cells, dy);
    std::fill(dx, dx + cells * kLanes, T(0));
    for (int64_t i = 0; i < g.OH; ++i) {
      const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
      if (r.begin >= r.end) continue;
      std::fill(acc, acc + g.W * kLanes, T(0));
      const T inv_h = T(1) / static_cast<T>(r.counted);
      for (int64_t j = 0; j < g.OW; ++j) {
        const Span q = shared.cols[j];
        const T* __restrict d = dy + (i * g.OW + j) * kLanes;
        for (int64_t b = q.begin; b < q.end; ++b)
          for (int64_t l = 0; l < kLanes; ++l) acc[b * kLanes + l] += d[l] * inv_h * shared.inv_w[j];
      }
      for (int64_t a = r.begin; a < r.end; ++a) {
        T* __restrict to = dx + a * g.W * kLanes;
        for (int64_t k = 0; k < g.W * kLanes; ++k) to[k] = stored_as(dX, to[k] + acc[k]);
      }
    }
    planes_of(dx, c0, n, cells, dX);
  }
}


// The plane loops. Each thread's buffers are made before the parallel region,
// so that nothing inside it allocates or throws.
// A: each window's argmax (argmax=True), or nullptr.
template <typename S>
void forward_planes(const PoolParams& P, const Geometry& g, const S* X, S* Y, int32_t* A) {
  if (side_by_side<S>(P, g)) {
    if (P.is_max) return max_forward_small<S>(P, g, X, Y, A);
    return avg_forward_small<S>(P, g, X, Y);
  }
  const int threads = cnn_base::threads_for(g.planes, g.H * g.W + g.OH * g.OW);
  std::vector<Work<S>> works(threads, Work<S>(P, g));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t c = 0; c < g.planes; ++c) {
    const int64_t in = c * g.H * g.W, out = c * g.OH * g.OW;
    Work<S>* work = &works[omp_get_thread_num()];
    if (!P.is_max) avg_forward_plane<S>(P, g, X + in, Y + out, work);
    else if (A) max_forward_plane<S>(P, g, X + in, Y + out, A + out, g.OW, work);
    else max_forward_plane<S>(P, g, X + in, Y + out, work->row_cells.data(), 0, work);
  }
}

template <typename S>
void backward_planes(const PoolParams& P, const Geometry& g, const S* dY, const S* X,
                     const S* Y, S* dX) {
  if (!P.is_max && side_by_side<S>(P, g)) return avg_backward_small<S>(P, g, dY, dX);
  const int threads = cnn_base::threads_for(g.planes, 2 * (g.H * g.W + g.OH * g.OW));
  std::vector<Work<S>> works(threads, Work<S>(P, g));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t c = 0; c < g.planes; ++c) {
    backward_plane<S>(P, g, dY + c * g.OH * g.OW, X + c * g.H * g.W, Y + c * g.OH * g.OW,
                      dX + c * g.H * g.W, &works[omp_get_thread_num()]);
  }
}

// The backward of max pooling with argmax=True: dY sent to the cells the forward kept, in
// row-major order of the output (as backward_plane; float16 rounded after each addition).
// What it buys: backward_plane finds each window's cell again, reading X and Y; Gluon's
// reads the indices its forward saved, as this does. One thread, best of 15, ms: (32, 64, 48,
// 48) 3 x 3 stride 2 9.2 -> 1.4 (Gluon's 3.6), (32, 32, 112, 112) 2 x 2 21.0 -> 5.0 (8.7).
// An offset outside the plane (A changed since the forward) is refused, after the loop.
template <typename S>
bool max_backward(const Geometry& g, const S* dY, const int32_t* A, S* dX) {
  const int64_t in_cells = g.H * g.W, out_cells = g.OH * g.OW;
  const int threads = cnn_base::threads_for(g.planes, in_cells + 2 * out_cells);
  int64_t bad = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1) reduction(+ : bad)
  for (int64_t c = 0; c < g.planes; ++c) {
    S* dx = dX + c * in_cells;
    const S* dy = dY + c * out_cells;
    const int32_t* a = A + c * out_cells;
    std::memset(static_cast<void*>(dx), 0, sizeof(S) * in_cells);   // +0.0 in every dtype
    for (int64_t o = 0; o < out_cells; ++o) {
      if (a[o] >= 0 && a[o] < in_cells) add_to(dx, a[o], value_of(dy, o));
      else bad += a[o] != -1;
    }
  }
  if (bad > 0) MX_ERROR_MSG << "cnn_base_pool2d backward: " << bad << " argmax offsets lie "
                            << "outside their planes (the argmax output was changed after the forward)";
  return bad == 0;
}

// Average pooling of an NHWC batch, one output row of one image per loop
// item: every cell of a window is a row of C contiguous channels, so each sum
// runs along the channels (vectorized) where the NCHW planes would need a
// transpose in and out (which made our NHWC average pooling 2.1-2.4x Gluon's
// NHWC one; see docs/engineering/speed.md). The sums are taken in the NCHW loops' order -- down
// each window column, then across the columns, then times 1 / rows and
// 1 / columns counted -- so both layouts give the same bits. As there, the
// window rows are summed first, once per output row, along whole input rows
// (W x C contiguous values), then each window's columns. float16 is read into
// and summed in float32 as in the NCHW loops; the buffers are one input row
// and one output cell per thread.
template <typename S>
void avg_forward_nhwc(const PoolParams& P, const Geometry& g, const S* X, S* Y) {
  typedef typename Compute<S>::type T;
  const Columns<S> shared(P, g);     // the column spans and 1 / counted
  int64_t row = 0, cells = 0;        // a row of W x C; the work of one output row
  if (!multiply(g.W, g.C, &row) || !multiply(row, std::min(P.k_h, g.H) + g.OW, &cells))
    cells = std::numeric_limits<int64_t>::max();
  const int threads = cnn_base::threads_for(g.N * g.OH, cells);
  std::vector<T> buffers(threads * (row + g.C));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t item = 0; item < g.N * g.OH; ++item) {
    const int64_t n = item / g.OH, i = item % g.OH;
    T* acc = buffers.data() + omp_get_thread_num() * (row + g.C);   // the window rows' sums
    T* sum = acc + row;
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    const T inv_h = r.begin < r.end ? T(1) / static_cast<T>(r.counted) : T(0);
    const int64_t image = n * g.H * row;
    if (r.begin < r.end) {
      // down every window column at once: the window rows are runs of W x C values
      for (int64_t k = 0; k < row; ++k) acc[k] = value_of(X, image + r.begin * row + k);
      for (int64_t a = r.begin + 1; a < r.end; ++a)
        for (int64_t k = 0; k < row; ++k) acc[k] += value_of(X, image + a * row + k);
    }
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = shared.cols[j];
      std::fill(sum, sum + g.C, T(0));
      if (r.begin < r.end && q.begin < q.end) {
        std::copy(acc + q.begin * g.C, acc + (q.begin + 1) * g.C, sum);
        for (int64_t b = q.begin + 1; b < q.end; ++b)
          for (int64_t c = 0; c < g.C; ++c) sum[c] += acc[b * g.C + c];
      }
      for (int64_t c = 0; c < g.C; ++c) sum[c] = sum[c] * inv_h * shared.inv_w[j];
      S* out = Y + (item * g.OW + j) * g.C;
      T* at = row_out(out, sum);
      if (at != sum) std::copy(sum, sum + g.C, at);
      row_done(out, at, g.C);
    }
  }
}

// Its backward, one image per loop item (windows of neighbouring output rows
// overlap in dX): each output row's shares dY / divisor are summed along a
// row of W x C (``acc``, per thread) and added to the window's input rows, in
// the NCHW loops' order (float16: rounded after each addition, as there).
template <typename S>
void avg_backward_nhwc(const PoolParams& P, const Geometry& g, const S* dY, S* dX) {
  typedef typename Compute<S>::type T;
  const Columns<S> shared(P, g);
  int64_t row = 0, cells = 0;
  if (!multiply(g.W, g.C, &row) || !multiply(row, g.H + g.OH, &cells))
    cells = std::numeric_limits<int64_t>::max();
  const int threads = cnn_base::threads_for(g.N, cells);
  std::vector<T> accs(threads * row);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t n = 0; n < g.N; ++n) {
    T* acc = accs.data() + omp_get_thread_num() * row;
    S* image = dX + n * g.H * row;
    std::memset(static_cast<void*>(image), 0, sizeof(S) * g.H * row);   // +0.0 in every dtype
    for (int64_t i = 0; i < g.OH; ++i) {
      const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
      if (r.begin >= r.end) continue;
      std::fill(acc, acc + row, T(0));
      const T inv_h = T(1) / static_cast<T>(r.counted);
      const int64_t dyi = (n * g.OH + i) * g.OW * g.C;
      for (int64_t j = 0; j < g.OW; ++j) {
        const Span q = shared.cols[j];
        for (int64_t b = q.begin; b < q.end; ++b) {
          T* to = acc + b * g.C;
          for (int64_t c = 0; c < g.C; ++c)
            to[c] += value_of(dY, dyi + j * g.C + c) * inv_h * shared.inv_w[j];
        }
      }
      for (int64_t a = r.begin; a < r.end; ++a) add_row(image + a * row, acc, row);
    }
  }
}

// Calls body(S{}) with S the storage type of MXNet's ``dtype`` (float16 as its
// raw bits, uint16_t): the one place that maps dtypes to the loops' types.
template <typename Body>
MXReturnValue with_storage(int dtype, Body body) {
  switch (dtype) {
    case mxnet::ext::kFloat32: body(float{}); return MX_SUCCESS;
    case mxnet::ext::kFloat64: body(double{}); return MX_SUCCESS;
    case mxnet::ext::kFloat16: body(uint16_t{}); return MX_SUCCESS;
    default:
      MX_ERROR_MSG << "cnn_base_pool2d takes float16, float32 or float64, got dtype code "
                   << dtype;
      return MX_FAIL;
  }
}

bool same_size(const MXTensor& t, int64_t n) {
  return t.size() == n;
}

}  // namespace

// inputs: X (N, C, H, W); outputs: Y (N, C, OH, OW)
MXReturnValue pool2d_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res) {
  return cnn_base::guarded(kOp, "forward", [&]() {
    PoolParams P;
    Geometry g;
    if (!read_params(attrs, &P) || inputs->size() != 1 ||
        outputs->size() != (P.keep_argmax ? 2u : 1u))
      return MX_FAIL;
    fit_window((*inputs)[0].shape, &P);
    if (!geometry_of(P, (*inputs)[0].shape, &g))
      return MX_FAIL;
    MXTensor& X = (*inputs)[0];
    MXTensor& Y = (*outputs)[0];
    const int64_t out_all = g.planes * g.OH * g.OW;
    if (X.dtype != Y.dtype || !same_size(Y, out_all) ||
        (P.keep_argmax && ((*outputs)[1].dtype != mxnet::ext::kInt32 ||
                           !same_size((*outputs)[1], out_all)))) {
      MX_ERROR_MSG << "cnn_base_pool2d forward: the output does not match the input";
      return MX_FAIL;
    }
    int32_t* A = P.keep_argmax ? (*outputs)[1].data<int32_t>() : nullptr;
    // the storage type S of the input's dtype; NHWC (average pooling only) has its own loop
    return with_storage(X.dtype, [&](auto zero) {
      typedef decltype(zero) S;
      if (P.channels_last) avg_forward_nhwc<S>(P, g, X.data<S>(), Y.data<S>());
      else forward_planes<S>(P, g, X.data<S>(), Y.data<S>(), A);
    });
  });
}

// inputs: dY, X, Y (the output gradient, then the forward's inputs and outputs); with
// argmax=True: dY, dA (unused), X, Y, A. outputs: dX
MXReturnValue pool2d_backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs, const OpResource& res) {
  return cnn_base::guarded(kOp, "backward", [&]() {
    PoolParams P;
    Geometry g;
    if (!read_params(attrs, &P)) return MX_FAIL;
    const size_t outs = P.keep_argmax ? 2 : 1;   // the forward's outputs
    if (inputs->size() != 2 * outs + 1 || outputs->size() != 1) return MX_FAIL;
    fit_window((*inputs)[outs].shape, &P);
    if (!geometry_of(P, (*inputs)[outs].shape, &g)) return MX_FAIL;
    MXTensor& dY = (*inputs)[0];
    MXTensor& X = (*inputs)[outs];
    MXTensor& Y = (*inputs)[outs + 1];
    MXTensor& dX = (*outputs)[0];
    const int64_t in_all = g.planes * g.H * g.W, out_all = g.planes * g.OH * g.OW;
    if (dY.dtype != X.dtype || Y.dtype != X.dtype || dX.dtype != X.dtype ||
        !same_size(dY, out_all) || !same_size(Y, out_all) || !same_size(dX, in_all) ||
        (P.keep_argmax && ((*inputs)[4].dtype != mxnet::ext::kInt32 ||
                           !same_size((*inputs)[4], out_all)))) {
      MX_ERROR_MSG << "cnn_base_pool2d backward: the gradients do not match the input";
      return MX_FAIL;
    }
    bool done = true;
    const MXReturnValue typed = with_storage(X.dtype, [&](auto zero) {
      typedef decltype(zero) S;
      if (P.channels_last) avg_backward_nhwc<S>(P, g, dY.data<S>(), dX.data<S>());
      else if (P.keep_argmax) done = max_backward<S>(g, dY.data<S>(), (*inputs)[4].data<int32_t>(),
                                                     dX.data<S>());
      else backward_planes<S>(P, g, dY.data<S>(), X.data<S>(), Y.data<S>(), dX.data<S>());
    });
    return done ? typed : MX_FAIL;
  });
}

MXReturnValue pool2d_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  return cnn_base::guarded(kOp, "attributes", [&]() {
    PoolParams P;
    if (!read_params(attrs, &P)) return MX_FAIL;
    *num_in = 1;
    *num_out = P.keep_argmax ? 2 : 1;
    return MX_SUCCESS;
  });
}

MXReturnValue pool2d_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                std::vector<int>* out_types) {
  return cnn_base::guarded(kOp, "type inference", [&]() {
    const int dtype = (*in_types)[0];
    if (dtype != mxnet::ext::kFloat32 && dtype != mxnet::ext::kFloat64 &&
        dtype != mxnet::ext::kFloat16) {
      MX_ERROR_MSG << "cnn_base_pool2d takes float16, float32 or float64 input, got MXNet "
                   << "dtype code " << dtype
                   << " (set CNN_BASE_NATIVE=0 to pool with MXNet ops instead)";
      return MX_FAIL;
    }
    (*out_types)[0] = dtype;
    if (out_types->size() > 1) (*out_types)[1] = mxnet::ext::kInt32;   // argmax=True
    return MX_SUCCESS;
  });
}

MXReturnValue pool2d_infer_shape(const Attrs& attrs,
                                 std::vector<std::vector<unsigned int>>* in_shapes,
                                 std::vector<std::vector<unsigned int>>* out_shapes) {
  return cnn_base::guarded(kOp, "shape inference", [&]() {
    PoolParams P;
    Geometry g;
    if (!read_params(attrs, &P)) return MX_FAIL;
    const std::vector<unsigned int>& shape = (*in_shapes)[0];
    const std::vector<int64_t> wide(shape.begin(), shape.end());
    fit_window(wide, &P);
    if (!geometry_of(P, wide, &g)) return MX_FAIL;
    if (P.channels_last)
      (*out_shapes)[0] = {shape[0], static_cast<unsigned int>(g.OH),
                          static_cast<unsigned int>(g.OW), shape[3]};
    else
      (*out_shapes)[0] = {shape[0], shape[1], static_cast<unsigned int>(g.OH),
                          static_cast<unsigned int>(g.OW)};
    if (P.keep_argmax) (*out_shapes)[1] = (*out_shapes)[0];
    return MX_SUCCESS;
  });
}

REGISTER_OP(cnn_base_pool2d)
.setParseAttrs(pool2d_parse_attrs)
.setInferType(pool2d_infer_type)
.setInferShape(pool2d_infer_shape)
.setForward(pool2d_forward, "cpu")
.setBackward(pool2d_backward, "cpu");

MXReturnValue initialize(int version) {
  // The thread ceiling MXNet's own operators use (parallel.h).
  cnn_base::init_threads();
  // Written against MXNet 1.9's lib_api (MX_LIBRARY_VERSION 11).
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
