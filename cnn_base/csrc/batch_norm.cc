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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "operator_common.h"
#include "parallel.h"
#include "relu.h"   // relu_in_place, relu_masked: attribute relu

namespace {

struct Shape {
  int64_t outer, C, inner;
};

// The loops (batch_norm_loops.h), compiled once per target. What it buys: the baseline build
// runs them 4 lanes at a time (SSE2), AVX2 8 with fused multiply-adds. One thread, forward +
// backward, medians of 21 in turns, baseline / AVX2: (32, 64, 48, 48) 18.3 / 16.2 ms, (32, 160,
// 24, 24) 11.3 / 9.6, (32, 64, 24, 24) 5.5 / 5.0, (32, 256, 6, 6) 2.5 / 2.4, (32, 512, 3, 3)
// 2.0 / 2.2 (there the per-plane loop overheads, not the lanes, take the time).
#define CNN_BASE_LOOPS "batch_norm_loops.h"
#include "compiled_twice.h"   // namespaces base and fast, CNN_BASE_PICK (operator_common.h)

template <typename T>
void forward(const Shape& s, const T* X, const T* gamma, const T* beta, T* running_mean,
             T* running_var, bool batch_stats, double eps, double momentum, T* Y, T* mean,
             T* invstd) {
  CNN_BASE_PICK(forward<T>(s, X, gamma, beta, running_mean, running_var, batch_stats, eps,
                           momentum, Y, mean, invstd))
}

template <typename T>
void backward(const Shape& s, const T* dY, const T* X, const T* gamma, const T* mean,
              const T* invstd, bool batch_stats, T* dX, T* dgamma, T* dbeta) {
  CNN_BASE_PICK(backward<T>(s, dY, X, gamma, mean, invstd, batch_stats, dX, dgamma, dbeta))
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
  bool fix_gamma = false, use_global_stats = false, relu = false;
  int64_t axis = 1;
};

// eps, momentum (numbers), fix_gamma, use_global_stats (0 or 1), axis (>= 0), and relu (0 or
// 1, default 0: 1, the output is relu(batch norm), relu.h); false when one is missing or bad.
bool read_norm_params(const Attrs& attrs, NormParams* P) {
  try {
    P->eps = std::stod(attrs.at("eps"));
    P->momentum = std::stod(attrs.at("momentum"));
    P->fix_gamma = attrs.at("fix_gamma") == "1";
    P->use_global_stats = attrs.at("use_global_stats") == "1";
    P->axis = std::stoll(attrs.at("axis"));
    P->relu = attrs.count("relu") && attrs.at("relu") == "1";
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
      if (P.relu) cnn_base::relu_in_place(out[0].data<T>(), s.outer * s.C * s.inner);
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
      const T* dY = in[0].data<T>();
      if (P.relu)    // relu's gradient at the output (the forward's first)
        dY = cnn_base::relu_masked(dY, in[3 + kInputs].data<T>(), s.outer * s.C * s.inner);
      backward(s, dY, X.data<T>(), P.fix_gamma ? nullptr : in[4].data<T>(),
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
