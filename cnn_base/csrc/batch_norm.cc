/*
 * Batch normalization (d2l 5.10) over the channel axis of a batch viewed as
 * (outer, C, inner): for NCHW, outer = N and inner = H * W; any axis works.
 *
 *   mean_c = sum X / M,  var_c = sum (X - mean_c)^2 / M  (M = outer * inner, biased, as MXNet)
 *   Y = (X - mean_c) * invstd_c * gamma_c + beta_c,  invstd_c = 1 / sqrt(var_c + eps)
 *
 * In prediction (or with use_global_stats) the running statistics stand in for
 * the batch's. The backward of the batch's statistics is the usual one:
 *
 *   dbeta = sum dY,  dgamma = sum dY * Xhat,
 *   dX = gamma * invstd * (dY - dbeta / M - Xhat * dgamma / M)
 *
 * and, with fixed statistics, dX = gamma * invstd * dY. Registered as the
 * MXNet extension operator cnn_base_batch_norm, whose last input says the mode
 * (nonzero: training), as cnn_base.functional.batch_norm computes it: MXNet
 * tells only operators whether a graph runs for training. Every pass runs over
 * the channels in parallel, each channel's segments contiguous.
 *
 * What it buys: MXNet's BatchNorm on a plain NCHW array (the output of any
 * operator but MXNet's own conv, which hands it oneDNN's blocked layout) runs
 * oneDNN's reference-like ncsp kernel, 5-10x slower than this (speed.md).
 */
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "operator_common.h"
#include "parallel.h"

namespace {

struct Shape {
  int64_t outer, C, inner;
};

// A channel's sums are kept in kSums partial sums side by side, each value added to the one of
// its position modulo kSums in its segment (the compiler makes them vectors, none waiting on
// another's add), and moved into a double every kFlushValues values. What it buys: one
// running sum per segment (omp simd's one vector, then the segment's total) waited on each
// add's latency, and on 3 x 3 and 6 x 6 planes on a total per 9-36 values. One thread,
// forward + backward, medians of 15: (32, 64, 48, 48) 21.2 -> 15.3 ms, (32, 64, 24, 24) 5.3 ->
// 4.4, (32, 256, 6, 6) 3.3 -> 2.2, (32, 1024, 6, 6) 8.4 -> 6.1 (MXNet's on the same plain
// arrays: 27.7, 7.6, 2.6, 10.8).
constexpr int kSums = 32;
constexpr int64_t kFlushValues = 4096;

// part[i mod kSums] += term(i) for i < n.
template <typename T, typename F>
inline void add_terms(int64_t n, T* part, F term) {
  int64_t i = 0;
  for (; i + kSums <= n; i += kSums)
    for (int k = 0; k < kSums; ++k) part[k] += term(i + k);
  for (int k = 0; i + k < n; ++k) part[k] += term(i + k);
}

// The partial sums' total, and the partial sums zeroed.
template <typename T>
inline double flush(T* part) {
  double total = 0;
  for (int k = 0; k < kSums; ++k) total += part[k], part[k] = 0;
  return total;
}

// The sum over channel c of term(offset of a value in the batch).
template <typename T, typename F>
double channel_total(const Shape& s, int64_t c, F term) {
  T part[kSums] = {};
  double total = 0;
  int64_t pending = 0;
  for (int64_t o = 0; o < s.outer; ++o) {
    const int64_t at = (o * s.C + c) * s.inner;
    add_terms(s.inner, part, [&](int64_t i) { return term(at + i); });
    if ((pending += s.inner) >= kFlushValues) total += flush(part), pending = 0;
  }
  return total + flush(part);
}

// Threads for a pass over the whole batch, one channel per item.
inline int channel_threads(const Shape& s) {
  return cnn_base::threads_for(s.C, s.outer * s.inner);
}

// mean and invstd of channel c of X (two passes: the mean, then the squares about it); the
// running statistics move towards them as MXNet's do (momentum * running + (1 - momentum) *
// batch, the variance biased).
template <typename T>
void channel_statistics(const Shape& s, const T* X, int64_t c, double eps, double momentum,
                        T* running_mean, T* running_var, T* mean, T* invstd) {
  const int64_t M = s.outer * s.inner;
  const double sum = channel_total<T>(s, c, [X](int64_t i) { return X[i]; });
  const T m = static_cast<T>(sum / M);
  const double squares = channel_total<T>(s, c, [X, m](int64_t i) {
    return (X[i] - m) * (X[i] - m);
  });
  mean[c] = m;
  invstd[c] = static_cast<T>(1.0 / std::sqrt(squares / M + eps));
  running_mean[c] = static_cast<T>(running_mean[c] * momentum + m * (1 - momentum));
  running_var[c] = static_cast<T>(running_var[c] * momentum + squares / M * (1 - momentum));
}

// Y = (X - mean) * invstd * gamma + beta for channel c (X - mean first: written as X * a + b, a
// constant channel of a batch of one came out 6e-5 off beta).
template <typename T>
void normalize_channel(const Shape& s, const T* X, int64_t c, const T* gamma, const T* beta,
                       T m, T invstd, T* Y) {
  const T a = invstd * (gamma ? gamma[c] : T(1)), b = beta[c];
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* x = X + (o * s.C + c) * s.inner;
    T* y = Y + (o * s.C + c) * s.inner;
#pragma omp simd
    for (int64_t i = 0; i < s.inner; ++i) y[i] = (x[i] - m) * a + b;
  }
}

// Channel by channel, its statistics (the batch's, or the running ones) and then its Y, while
// the channel is still in the core's cache (a channel of (32, C, 24, 24) is 72 KB). What it
// buys: with the statistics of every channel first and Y in a second loop the batch was read
// once more from further out; one thread, MXNet's profiler, best of 20: (32, 64, 48, 48) 5.1-5.6
// -> 4.6 ms; on 5 MB batches (32, 128, 24, 24) the same within the spread (L3 holds them).
template <typename T>
void forward(const Shape& s, const T* X, const T* gamma, const T* beta, T* running_mean,
             T* running_var, bool batch_stats, double eps, double momentum, T* Y, T* mean,
             T* invstd) {
#pragma omp parallel for num_threads(channel_threads(s)) schedule(static)
  for (int64_t c = 0; c < s.C; ++c) {
    if (batch_stats) {
      channel_statistics(s, X, c, eps, momentum, running_mean, running_var, mean, invstd);
    } else {
      mean[c] = running_mean[c];
      invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
    }
    normalize_channel(s, X, c, gamma, beta, mean[c], invstd[c], Y);
  }
}

// dbeta = sum dY and dgamma = sum dY * Xhat of channel c, in double.
template <typename T>
void channel_sums(const Shape& s, const T* dY, const T* X, int64_t c, T m, T invstd,
                  double* sum_dy, double* sum_dy_xhat) {
  const double a = channel_total<T>(s, c, [dY](int64_t i) { return dY[i]; });
  const double b = channel_total<T>(s, c, [dY, X, m](int64_t i) { return dY[i] * (X[i] - m); });
  *sum_dy = a;
  *sum_dy_xhat = b * invstd;
}

// dX = k * dY + l * (X - m) + q for channel c (the batch's statistics), or k * dY (fixed
// ones: X is not read, so an infinite X gives no NaN there).
template <typename T>
void channel_dx(const Shape& s, const T* dY, const T* X, int64_t c, bool batch_stats, T k, T l,
                T m, T q, T* dX) {
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* dy = dY + (o * s.C + c) * s.inner;
    const T* x = X + (o * s.C + c) * s.inner;
    T* dx = dX + (o * s.C + c) * s.inner;
    if (batch_stats) {
#pragma omp simd
      for (int64_t i = 0; i < s.inner; ++i) dx[i] = k * dy[i] + l * (x[i] - m) + q;
    } else {
#pragma omp simd
      for (int64_t i = 0; i < s.inner; ++i) dx[i] = k * dy[i];
    }
  }
}

// dX, dgamma (unless nullptr: gamma fixed) and dbeta, written.
template <typename T>
void backward(const Shape& s, const T* dY, const T* X, const T* gamma, const T* mean,
              const T* invstd, bool batch_stats, T* dX, T* dgamma, T* dbeta) {
  const double M = static_cast<double>(s.outer * s.inner);
#pragma omp parallel for num_threads(channel_threads(s)) schedule(static)
  for (int64_t c = 0; c < s.C; ++c) {
    double sum_dy, sum_dy_xhat;
    channel_sums(s, dY, X, c, mean[c], invstd[c], &sum_dy, &sum_dy_xhat);
    if (dgamma != nullptr) dgamma[c] = static_cast<T>(sum_dy_xhat);
    dbeta[c] = static_cast<T>(sum_dy);
    const double g = (gamma ? static_cast<double>(gamma[c]) : 1.0) * invstd[c];
    // dX = g * (dY - sum_dy / M - (X - mean) * invstd * sum_dy_xhat / M), or g * dY
    const double l = batch_stats ? -g * invstd[c] * sum_dy_xhat / M : 0.0;
    const double q = batch_stats ? -g * sum_dy / M : 0.0;
    channel_dx<T>(s, dY, X, c, batch_stats, static_cast<T>(g), static_cast<T>(l), mean[c],
                  static_cast<T>(q), dX);
  }
}

}  // namespace

// ---- the extension operator cnn_base_batch_norm ----

using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;

namespace {

typedef std::unordered_map<std::string, std::string> Attrs;

const char kOp[] = "cnn_base_batch_norm";
constexpr int kInputs = 6;     // X, gamma, beta, running_mean, running_var, mode

struct NormParams {
  double eps = 1e-5, momentum = 0.9;
  bool fix_gamma = false, use_global_stats = false;
  int64_t axis = 1;
};

// eps, momentum (numbers), fix_gamma, use_global_stats (0 or 1), axis (>= 0); false when
// one is missing or bad.
bool read_norm_params(const Attrs& attrs, NormParams* P) {
  try {
    P->eps = std::stod(attrs.at("eps"));
    P->momentum = std::stod(attrs.at("momentum"));
    P->fix_gamma = attrs.at("fix_gamma") == "1";
    P->use_global_stats = attrs.at("use_global_stats") == "1";
    P->axis = std::stoll(attrs.at("axis"));
  } catch (const std::exception&) {
    MX_ERROR_MSG << kOp << ": needs the attributes eps, momentum, fix_gamma, use_global_stats "
                 << "and axis, as numbers";
    return false;
  }
  if (!(P->eps > 0) || P->axis < 0 || P->axis > cnn_base::kMaxAttr) {
    MX_ERROR_MSG << kOp << ": eps must be > 0 and axis >= 0";
    return false;
  }
  return true;
}

// (outer, C, inner) of ``shape`` around ``axis``; false when the axis is not there.
bool shape_around(const std::vector<int64_t>& shape, int64_t axis, Shape* s) {
  if (axis >= static_cast<int64_t>(shape.size())) {
    MX_ERROR_MSG << kOp << ": axis " << axis << " of a " << shape.size() << "-axis input";
    return false;
  }
  *s = Shape{1, shape[axis], 1};
  for (int64_t a = 0; a < axis; ++a) s->outer *= shape[a];
  for (size_t a = axis + 1; a < shape.size(); ++a) s->inner *= shape[a];
  return true;
}

// Whether the batch's statistics normalize: the mode input says training, and not use_global_stats.
template <typename T>
bool batch_stats_of(const NormParams& P, MXTensor& mode) {
  return !P.use_global_stats && mode.data<T>()[0] != T(0);
}

// inputs: X, gamma, beta, running_mean, running_var (the two updated in training), mode;
// outputs: Y, mean, invstd
MXReturnValue norm_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                           std::vector<MXTensor>* outputs, const OpResource&) {
  return cnn_base::guarded(kOp, "forward", [&]() {
    NormParams P;
    Shape s;
    std::vector<MXTensor>& in = *inputs;
    std::vector<MXTensor>& out = *outputs;
    if (!read_norm_params(attrs, &P) || !shape_around(in[0].shape, P.axis, &s)) return MX_FAIL;
    auto run = [&](auto zero) {
      typedef decltype(zero) T;
      forward(s, in[0].data<T>(), P.fix_gamma ? nullptr : in[1].data<T>(), in[2].data<T>(),
              in[3].data<T>(), in[4].data<T>(), batch_stats_of<T>(P, in[5]), P.eps, P.momentum,
              out[0].data<T>(), out[1].data<T>(), out[2].data<T>());
    };
    if (in[0].dtype == mxnet::ext::kFloat64) run(0.0); else run(0.0f);
    return MX_SUCCESS;
  });
}

// inputs: dY, dmean, dinvstd, the forward's six inputs, its three outputs;
// outputs: dX, dgamma, dbeta, then zeros for the running statistics and the mode (not learnt)
MXReturnValue norm_backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource&) {
  return cnn_base::guarded(kOp, "backward", [&]() {
    NormParams P;
    Shape s;
    std::vector<MXTensor>& in = *inputs;
    std::vector<MXTensor>& out = *outputs;
    MXTensor& X = in[3];
    if (!read_norm_params(attrs, &P) || !shape_around(X.shape, P.axis, &s)) return MX_FAIL;
    auto run = [&](auto zero) {
      typedef decltype(zero) T;
      for (size_t o = 3; o < out.size(); ++o) std::memset(out[o].data_ptr, 0, out[o].size() * sizeof(T));
      if (P.fix_gamma)      // MXNet's gradient of a fixed gamma: zero
        std::memset(out[1].data_ptr, 0, s.C * sizeof(T));
      const bool batch_stats = batch_stats_of<T>(P, in[3 + kInputs - 1]);
      backward(s, in[0].data<T>(), X.data<T>(), P.fix_gamma ? nullptr : in[4].data<T>(),
               in[3 + kInputs + 1].data<T>(), in[3 + kInputs + 2].data<T>(), batch_stats,
               out[0].data<T>(), P.fix_gamma ? nullptr : out[1].data<T>(), out[2].data<T>());
    };
    if (X.dtype == mxnet::ext::kFloat64) run(0.0); else run(0.0f);
    return MX_SUCCESS;
  });
}

MXReturnValue norm_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  return cnn_base::guarded(kOp, "attributes", [&]() {
    NormParams P;
    *num_in = kInputs;
    *num_out = 3;
    return read_norm_params(attrs, &P) ? MX_SUCCESS : MX_FAIL;
  });
}

MXReturnValue norm_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                              std::vector<int>* out_types) {
  return cnn_base::guarded(kOp, "type inference", [&]() {
    const int dtype = (*in_types)[0];
    if (dtype != mxnet::ext::kFloat32 && dtype != mxnet::ext::kFloat64) {
      MX_ERROR_MSG << kOp << " takes float32 or float64 input, got MXNet dtype code " << dtype;
      return MX_FAIL;
    }
    if (!cnn_base::inputs_take_data_dtype(kOp, in_types)) return MX_FAIL;
    for (int& t : *out_types) t = dtype;
    return MX_SUCCESS;
  });
}

// Also fills in the parameters' shapes (Gluon's deferred initialization asks for them).
MXReturnValue norm_infer_shape(const Attrs& attrs,
                               std::vector<std::vector<unsigned int>>* in_shapes,
                               std::vector<std::vector<unsigned int>>* out_shapes) {
  return cnn_base::guarded(kOp, "shape inference", [&]() {
    NormParams P;
    if (!read_norm_params(attrs, &P)) return MX_FAIL;
    const std::vector<unsigned int>& X = (*in_shapes)[0];
    if (P.axis >= static_cast<int64_t>(X.size())) {
      MX_ERROR_MSG << kOp << ": axis " << P.axis << " of a " << X.size() << "-axis input";
      return MX_FAIL;
    }
    const std::vector<unsigned int> C = {X[P.axis]};
    for (size_t a = 1; a < 5; ++a) {
      const std::vector<unsigned int>& given = (*in_shapes)[a];
      // MXNet writes an unknown size as 0 or as -1 (read here as the largest unsigned)
      if (!given.empty() && given[0] != 0 && given[0] != ~0u && given != C) {
        MX_ERROR_MSG << kOp << ": input " << a << " has " << given[0] << " entries, the data "
                     << C[0] << " channels";
        return MX_FAIL;
      }
      (*in_shapes)[a] = C;
    }
    if ((*in_shapes)[5] != std::vector<unsigned int>{1}) {
      MX_ERROR_MSG << kOp << ": the mode input must hold one number";
      return MX_FAIL;
    }
    *out_shapes = {X, C, C};
    return MX_SUCCESS;
  });
}

MXReturnValue norm_mutate_inputs(const Attrs&, std::vector<int>* input_indices) {
  *input_indices = {3, 4};     // the running mean and variance
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(cnn_base_batch_norm)
.setParseAttrs(norm_parse_attrs)
.setInferType(norm_infer_type)
.setInferShape(norm_infer_shape)
.setMutateInputs(norm_mutate_inputs)
.setForward(norm_forward, "cpu")
.setBackward(norm_backward, "cpu");
