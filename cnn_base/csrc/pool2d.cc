/*
 * cnn_base's pooling kernel: the chapter's pool2d loop, written once in C++.
 *
 * ``ops.pool2d_loop`` visits every output cell (i, j) and reduces the window
 * X[i*s_h - p_h : i*s_h - p_h + p_h', ...] with max or mean. This file runs the
 * same loop over every (sample, channel) plane of an NCHW batch, one plane per
 * OpenMP thread, and registers it with MXNet as the operator
 * ``cnn_base_pool2d`` through MXNet's extension library API (lib_api.h, loaded
 * with ``mx.library.load``). The blocks of ``cnn_base.blocks`` call it when the
 * library is built; otherwise they compose the same pooling from MXNet ops
 * (``cnn_base.functional.pool2d_nchw``). Both follow Gluon's rules:
 *
 * - output size floor((h + 2p - k) / s) + 1, or ceil with ceil_mode;
 * - padding never wins a max; a window holding only padding (possible with
 *   ceil_mode) gives float32's lowest value, as Gluon's does for float32 (for
 *   float64 Gluon gives float64's lowest);
 * - an average divides by the window's cells inside the padded input
 *   (count_include_pad) or inside the input itself; cells that a ceil_mode
 *   window reaches past the padded edge never count; no counted cell -> 0;
 * - the gradient of a max goes to the first maximal cell of each window in
 *   row-major order; the gradient of a mean is spread over the window's input
 *   cells, each getting dY / divisor.
 *
 * float32 and float64 are pooled as they are, float16 plane by plane in
 * float32. The backward overwrites dX: MXNet's extension API does not pass
 * ``req``, so a caller that needs gradients added (grad_req='add') puts an
 * ``identity`` in front, as cnn_base.functional.pool2d_native does.
 *
 * Attributes (strings, as MXNet passes them): kernel, stride, pad as two
 * non-negative integers "(k_h, k_w)"; mode "max" or "avg"; ceil_mode, count_include_pad as
 * "True"/"False" (or 1/0).
 */
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <omp.h>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

typedef std::unordered_map<std::string, std::string> Attrs;

namespace {

struct PoolParams {
  int64_t k_h, k_w, s_h, s_w, p_h, p_w;
  bool is_max, ceil_mode, count_include_pad;
};

// The non-negative integers written in ``text``, e.g. "(3, 2)" -> {3, 2}.
std::vector<int64_t> parse_ints(const std::string& text) {
  std::vector<int64_t> values;
  int64_t value = 0;
  bool in_number = false;
  for (char ch : text) {
    if (ch >= '0' && ch <= '9') {
      value = value * 10 + (ch - '0');
      in_number = true;
    } else if (in_number) {
      values.push_back(value);
      value = 0;
      in_number = false;
    }
  }
  if (in_number) values.push_back(value);
  return values;
}

bool read_pair(const Attrs& attrs, const char* name, int64_t minimum, int64_t* a, int64_t* b) {
  auto it = attrs.find(name);
  if (it == attrs.end()) {
    MX_ERROR_MSG << "cnn_base_pool2d needs the attribute " << name;
    return false;
  }
  std::vector<int64_t> values = parse_ints(it->second);
  if (it->second.find('-') != std::string::npos || values.size() != 2 || values[0] < minimum || values[1] < minimum) {
    MX_ERROR_MSG << "cnn_base_pool2d: " << name << " must be two integers >= " << minimum
                 << ", got '" << it->second << "'";
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
  if (!read_pair(attrs, "kernel", 1, &P->k_h, &P->k_w) ||
      !read_pair(attrs, "stride", 1, &P->s_h, &P->s_w) ||
      !read_pair(attrs, "pad", 0, &P->p_h, &P->p_w) ||
      !read_bool(attrs, "ceil_mode", false, &P->ceil_mode) ||
      !read_bool(attrs, "count_include_pad", true, &P->count_include_pad)) {
    return false;
  }
  auto mode = attrs.find("mode");
  if (mode == attrs.end() || (mode->second != "max" && mode->second != "avg")) {
    MX_ERROR_MSG << "cnn_base_pool2d: mode must be 'max' or 'avg', got '"
                 << (mode == attrs.end() ? std::string("nothing") : mode->second) << "'";
    return false;
  }
  P->is_max = mode->second == "max";
  if (P->p_h >= P->k_h || P->p_w >= P->k_w) {
    MX_ERROR_MSG << "cnn_base_pool2d: pad (" << P->p_h << ", " << P->p_w
                 << ") must be smaller than kernel (" << P->k_h << ", " << P->k_w << ")";
    return false;
  }
  return true;
}

// Output length of one axis; -1 when the padded input is shorter than the window.
int64_t out_length(int64_t n, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const int64_t span = n + 2 * p - k;
  if (span < 0) return -1;
  return (ceil_mode ? (span + s - 1) / s : span / s) + 1;
}

// One axis of one window: the input cells [begin, end) it covers and how many
// cells count in an average's divisor.
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
  int64_t planes, H, W, OH, OW;
};

bool geometry_of(const PoolParams& P, const std::vector<int64_t>& shape, Geometry* g) {
  if (shape.size() != 4) return false;
  g->planes = shape[0] * shape[1];
  g->H = shape[2];
  g->W = shape[3];
  g->OH = out_length(g->H, P.k_h, P.s_h, P.p_h, P.ceil_mode);
  g->OW = out_length(g->W, P.k_w, P.s_w, P.p_w, P.ceil_mode);
  return g->OH >= 0 && g->OW >= 0;
}

// Threads for the plane loop, set when the library is loaded (initialize).
// MXNet runs operators on engine threads whose OpenMP default is one thread,
// so the count is asked for explicitly, as MXNet's built-ins do.
int n_threads = 1;

// An unsigned integer as wide as T: row numbers kept beside T values in
// vector registers, and masks for them.
template <typename T> struct SameWidth;
template <> struct SameWidth<float> { typedef uint32_t type; };
template <> struct SameWidth<double> { typedef uint64_t type; };

// What one thread reuses from plane to plane.
template <typename T>
struct Work {
  typedef typename SameWidth<T>::type Row;
  std::vector<T> inv_w;          // 1 / counted cells of each window column j
  std::vector<T> acc;            // one padded row: p_w cells, the W inputs, then the rest
  std::vector<T> share;          // avg backward: dY / divisor along an output row
  std::vector<T> col_max;        // max backward: each column's max over the window rows ...
  std::vector<Row> col_row;      // ... and the first row holding it

  Work(const PoolParams& P, const Geometry& g)
      : inv_w(g.OW),
        // every window of the horizontal pass lies inside the padded row
        acc(std::max<int64_t>((g.OW - 1) * P.s_w + P.k_w, g.W + P.p_w)),
        share(g.OW), col_max(g.W), col_row(g.W) {
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = window_span(j, g.W, P.k_w, P.s_w, P.p_w, P.count_include_pad);
      inv_w[j] = q.counted > 0 ? T(1) / static_cast<T>(q.counted) : T(0);
    }
  }
};

// Forward of one plane, separably: for output row i, first reduce the
// (clipped) window rows of x column by column into the padded row ``acc``
// (contiguous, so the compiler vectorizes it), then reduce every window of
// ``acc`` along the row. The max starts from float32's lowest value, which
// also fills ``acc``'s padding; the average sums zeros there and divides by
// the counted cells. Ties keep the earlier cell, so the max is the first
// maximal cell in row-major order.
template <typename T>
void forward_plane(const PoolParams& P, const Geometry& g, const T* x, T* y, Work<T>* work) {
  const T lowest = static_cast<T>(std::numeric_limits<float>::lowest());
  std::vector<T>& acc = work->acc;
  T* a_row = acc.data() + P.p_w;        // a_row[w] belongs to input column w
  std::fill(acc.begin(), acc.end(), P.is_max ? lowest : T(0));
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    T* yi = y + i * g.OW;
    if (r.begin >= r.end) {                 // only padding in this row of windows
      std::fill(yi, yi + g.OW, P.is_max ? lowest : T(0));
      continue;
    }
    std::copy(x + r.begin * g.W, x + (r.begin + 1) * g.W, a_row);
    for (int64_t a = r.begin + 1; a < r.end; ++a) {
      const T* xa = x + a * g.W;
      if (P.is_max) {
        for (int64_t w = 0; w < g.W; ++w) a_row[w] = std::max(a_row[w], xa[w]);
      } else {
        for (int64_t w = 0; w < g.W; ++w) a_row[w] += xa[w];
      }
    }
    if (P.is_max) {
      for (int64_t j = 0; j < g.OW; ++j) {
        const T* win = acc.data() + j * P.s_w;
        T m = win[0];
        for (int64_t b = 1; b < P.k_w; ++b) m = std::max(m, win[b]);
        yi[j] = m;
      }
    } else {
      const T inv_h = T(1) / static_cast<T>(r.counted);
      for (int64_t j = 0; j < g.OW; ++j) {
        const T* win = acc.data() + j * P.s_w;
        T sum = win[0];
        for (int64_t b = 1; b < P.k_w; ++b) sum += win[b];
        yi[j] = sum * inv_h * work->inv_w[j];
      }
    }
  }
}

// Backward of one plane. Average: the transpose of the forward's two passes;
// each output row's shares dY / divisor are spread along the padded row, which
// is then added to the window's input rows. Max: each window's first maximal
// cell in row-major order receives dY, found separably as well.
template <typename T>
void backward_plane(const PoolParams& P, const Geometry& g, const T* dy, const T* x,
                    const T* y, T* dx, Work<T>* work) {
  typedef typename Work<T>::Row Row;
  const int64_t none = std::numeric_limits<int64_t>::max();
  std::vector<T>& acc = work->acc;
  T* a_row = acc.data() + P.p_w;
  std::fill(dx, dx + g.H * g.W, T(0));
  for (int64_t i = 0; i < g.OH; ++i) {
    const Span r = window_span(i, g.H, P.k_h, P.s_h, P.p_h, P.count_include_pad);
    if (r.begin >= r.end) continue;
    if (!P.is_max) {
      std::fill(acc.begin(), acc.end(), T(0));
      const T inv_h = T(1) / static_cast<T>(r.counted);
      T* share = work->share.data();
      for (int64_t j = 0; j < g.OW; ++j) share[j] = dy[i * g.OW + j] * inv_h * work->inv_w[j];
      // Offset by offset, so that no add waits on the one before it.
      for (int64_t b = 0; b < P.k_w; ++b) {
        T* col = acc.data() + b;
        for (int64_t j = 0; j < g.OW; ++j) col[j * P.s_w] += share[j];
      }
      for (int64_t a = r.begin; a < r.end; ++a) {
        T* da = dx + a * g.W;
        for (int64_t w = 0; w < g.W; ++w) da[w] += a_row[w];
      }
      continue;
    }
    // Down each column of the window rows: the column's max and the first row
    // holding it (masks, not branches, so the loop vectorizes; branches on
    // random data measured 5x slower). Then along each window: of the columns
    // whose max is the window's max, the cell that comes first in row-major
    // order. Y holds that max, so equality is exact.
    T* __restrict cmax = work->col_max.data();
    Row* __restrict crow = work->col_row.data();
    std::copy(x + r.begin * g.W, x + (r.begin + 1) * g.W, cmax);
    std::fill(crow, crow + g.W, static_cast<Row>(r.begin));
    for (int64_t a = r.begin + 1; a < r.end; ++a) {
      const T* __restrict xa = x + a * g.W;
      const Row row = static_cast<Row>(a);
      for (int64_t w = 0; w < g.W; ++w) {
        const T v = xa[w], old = cmax[w];
        const Row above = -static_cast<Row>(v > old);     // all ones or 0
        crow[w] = (row & above) | (crow[w] & ~above);
        cmax[w] = std::max(old, v);
      }
    }
    for (int64_t j = 0; j < g.OW; ++j) {
      const Span q = window_span(j, g.W, P.k_w, P.s_w, P.p_w, P.count_include_pad);
      const T m = y[i * g.OW + j];
      int64_t arg = none;
      for (int64_t b = q.begin; b < q.end; ++b) {
        const int64_t cell = static_cast<int64_t>(crow[b]) * g.W + b;
        const int64_t hit = -static_cast<int64_t>(cmax[b] == m);   // all ones or 0
        arg = std::min(arg, (cell & hit) | (none & ~hit));
      }
      if (arg != none) dx[arg] += dy[i * g.OW + j];
    }
  }
}

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

void to_float(const uint16_t* from, float* to, int64_t n) {
  for (int64_t i = 0; i < n; ++i) to[i] = half_to_float(from[i]);
}

void to_half(const float* from, uint16_t* to, int64_t n) {
  for (int64_t i = 0; i < n; ++i) to[i] = float_to_half(from[i]);
}

// The plane loops: float32 and float64 in place; float16 plane by plane
// through float32 copies.
template <typename T>
void forward_planes(const PoolParams& P, const Geometry& g, const T* X, T* Y) {
#pragma omp parallel num_threads(n_threads)
  {
    Work<T> work(P, g);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      forward_plane<T>(P, g, X + c * g.H * g.W, Y + c * g.OH * g.OW, &work);
    }
  }
}

void forward_planes_half(const PoolParams& P, const Geometry& g, const uint16_t* X,
                         uint16_t* Y) {
#pragma omp parallel num_threads(n_threads)
  {
    Work<float> work(P, g);
    std::vector<float> x(g.H * g.W), y(g.OH * g.OW);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      to_float(X + c * g.H * g.W, x.data(), g.H * g.W);
      forward_plane<float>(P, g, x.data(), y.data(), &work);
      to_half(y.data(), Y + c * g.OH * g.OW, g.OH * g.OW);
    }
  }
}

template <typename T>
void backward_planes(const PoolParams& P, const Geometry& g, const T* dY, const T* X,
                     const T* Y, T* dX) {
#pragma omp parallel num_threads(n_threads)
  {
    Work<T> work(P, g);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      backward_plane<T>(P, g, dY + c * g.OH * g.OW, X + c * g.H * g.W, Y + c * g.OH * g.OW,
                        dX + c * g.H * g.W, &work);
    }
  }
}

void backward_planes_half(const PoolParams& P, const Geometry& g, const uint16_t* dY,
                          const uint16_t* X, const uint16_t* Y, uint16_t* dX) {
#pragma omp parallel num_threads(n_threads)
  {
    Work<float> work(P, g);
    std::vector<float> dy(g.OH * g.OW), x(g.H * g.W), y(g.OH * g.OW), dx(g.H * g.W);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      to_float(dY + c * g.OH * g.OW, dy.data(), g.OH * g.OW);
      to_float(X + c * g.H * g.W, x.data(), g.H * g.W);
      to_float(Y + c * g.OH * g.OW, y.data(), g.OH * g.OW);
      backward_plane<float>(P, g, dy.data(), x.data(), y.data(), dx.data(), &work);
      to_half(dx.data(), dX + c * g.H * g.W, g.H * g.W);
    }
  }
}

}  // namespace

// inputs: X (N, C, H, W); outputs: Y (N, C, OH, OW)
MXReturnValue pool2d_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res) {
  PoolParams P;
  Geometry g;
  if (!read_params(attrs, &P) || !geometry_of(P, (*inputs)[0].shape, &g)) return MX_FAIL;
  MXTensor& X = (*inputs)[0];
  MXTensor& Y = (*outputs)[0];
  switch (X.dtype) {
    case mxnet::ext::kFloat32:
      forward_planes<float>(P, g, X.data<float>(), Y.data<float>());
      break;
    case mxnet::ext::kFloat64:
      forward_planes<double>(P, g, X.data<double>(), Y.data<double>());
      break;
    default:
      forward_planes_half(P, g, X.data<uint16_t>(), Y.data<uint16_t>());
  }
  return MX_SUCCESS;
}

// inputs: dY, X, Y (the output gradient, then the forward's inputs and outputs);
// outputs: dX
MXReturnValue pool2d_backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs, const OpResource& res) {
  PoolParams P;
  Geometry g;
  if (!read_params(attrs, &P) || !geometry_of(P, (*inputs)[1].shape, &g)) return MX_FAIL;
  MXTensor& dY = (*inputs)[0];
  MXTensor& X = (*inputs)[1];
  MXTensor& Y = (*inputs)[2];
  MXTensor& dX = (*outputs)[0];
  switch (X.dtype) {
    case mxnet::ext::kFloat32:
      backward_planes<float>(P, g, dY.data<float>(), X.data<float>(), Y.data<float>(),
                             dX.data<float>());
      break;
    case mxnet::ext::kFloat64:
      backward_planes<double>(P, g, dY.data<double>(), X.data<double>(), Y.data<double>(),
                              dX.data<double>());
      break;
    default:
      backward_planes_half(P, g, dY.data<uint16_t>(), X.data<uint16_t>(), Y.data<uint16_t>(),
                           dX.data<uint16_t>());
  }
  return MX_SUCCESS;
}

MXReturnValue pool2d_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 1;
  *num_out = 1;
  PoolParams P;
  return read_params(attrs, &P) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue pool2d_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                std::vector<int>* out_types) {
  const int dtype = (*in_types)[0];
  if (dtype != mxnet::ext::kFloat32 && dtype != mxnet::ext::kFloat64 &&
      dtype != mxnet::ext::kFloat16) {
    MX_ERROR_MSG << "cnn_base_pool2d takes float16, float32 or float64 input, got MXNet dtype "
                 << "code " << dtype << " (set CNN_BASE_NATIVE=0 to pool with MXNet ops instead)";
    return MX_FAIL;
  }
  (*out_types)[0] = dtype;
  return MX_SUCCESS;
}

MXReturnValue pool2d_infer_shape(const Attrs& attrs,
                                 std::vector<std::vector<unsigned int>>* in_shapes,
                                 std::vector<std::vector<unsigned int>>* out_shapes) {
  PoolParams P;
  if (!read_params(attrs, &P)) return MX_FAIL;
  const std::vector<unsigned int>& shape = (*in_shapes)[0];
  if (shape.size() != 4) {
    MX_ERROR_MSG << "cnn_base_pool2d needs a 4-D input (batch, channels, height, width), got "
                 << shape.size() << " dimensions";
    return MX_FAIL;
  }
  const int64_t OH = out_length(shape[2], P.k_h, P.s_h, P.p_h, P.ceil_mode);
  const int64_t OW = out_length(shape[3], P.k_w, P.s_w, P.p_w, P.ceil_mode);
  if (OH < 1 || OW < 1) {
    MX_ERROR_MSG << "cnn_base_pool2d: input of height and width (" << shape[2] << ", "
                 << shape[3] << ") is too small for the pooling window (" << P.k_h << ", "
                 << P.k_w << ") with padding (" << P.p_h << ", " << P.p_w << ")";
    return MX_FAIL;
  }
  (*out_shapes)[0] = {shape[0], shape[1], static_cast<unsigned int>(OH),
                      static_cast<unsigned int>(OW)};
  return MX_SUCCESS;
}

REGISTER_OP(cnn_base_pool2d)
.setParseAttrs(pool2d_parse_attrs)
.setInferType(pool2d_infer_type)
.setInferShape(pool2d_infer_shape)
.setForward(pool2d_forward, "cpu")
.setBackward(pool2d_backward, "cpu");

MXReturnValue initialize(int version) {
  // MXNet has set the loading thread's OpenMP count to 1 by now, so read what
  // its own operators go by: OMP_NUM_THREADS, MXNET_OMP_MAX_THREADS, else
  // every processor.
  n_threads = omp_get_num_procs();
  for (const char* name : {"MXNET_OMP_MAX_THREADS", "OMP_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) n_threads = std::atoi(value);
  }
  n_threads = std::max(1, n_threads);
  // Written against MXNet 1.9's lib_api (MX_LIBRARY_VERSION 11).
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
