/*
 * The ReLU fused into our operators (attribute relu of cnn_base_conv2d and
 * cnn_base_batch_norm): Gluon's Conv2D(activation='relu'), and a BatchNorm or a conv
 * followed by Activation('relu') in a sequence (cnn_base.blocks.HybridSequential), as one
 * operator. The forward applies y > 0 ? y : 0 to the output in place (NaN to 0, as MXNet's
 * float32 Activation(act_type='relu') does, by oneDNN; its float64 one keeps NaN); the
 * backward multiplies dY by relu's gradient read from the output it is handed anyway, Y > 0,
 * into a buffer the rest of the backward reads as dY.
 *
 * What it buys: an extension operator's backward holds its output, so MXNet cannot run
 * the Activation after it in place; in a hybridized graph that Activation's output was fresh
 * memory every step, and page faults: VGG-11's ReLUs (one thread, batch 32) 127 ms forward +
 * 78 backward a step after our conv, 12 + 52 after the built-in's; model zoo resnet18_v1's
 * after our batch norm 12.5 + 28.6 ms against 3.0 + 14.4 (batch 8).
 */
#ifndef CNN_BASE_RELU_H_
#define CNN_BASE_RELU_H_

#include <cstdint>
#include <vector>

#include <omp.h>

#include "parallel.h"

namespace cnn_base {

// One thread's share of each pass: a plain loop over restrict pointers that loads every value
// whatever the sign and then selects (a compare and a mask), which GCC makes a vector loop of.
// What it buys: written as dY * (Y > 0 ? 1 : 0), or with the load inside the select, GCC
// compiled a scalar loop that branched on each value's sign ("control flow in loop"),
// mispredicted about every other time: 11.5 ms for the 2.4 million values of a (32, 128, 24,
// 24) batch norm, one thread; d2l DenseNet's step (static, one thread) lost 98 ms to it.
// (Also with dY * 0 selected where Y <= 0, to keep MXNet's dY * (Y > 0) to the NaN, GCC
// branched again; so a NaN in dY where Y <= 0 gives 0 here, where the gradient is 0, and NaN
// in MXNet's.)
template <typename T>
void relu_range(T* __restrict Y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T y = Y[i];
    Y[i] = y > T(0) ? y : T(0);
  }
}

template <typename T>
void relu_grad_range(const T* __restrict dY, const T* __restrict Y, T* __restrict out,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T d = dY[i], y = Y[i];
    out[i] = y > T(0) ? d : T(0);
  }
}

// [first, last) of ``count`` values for thread ``t`` of ``threads``.
inline void share_of(int64_t count, int t, int threads, int64_t* first, int64_t* last) {
  *first = count * t / threads;
  *last = count * (t + 1) / threads;
}

template <typename T>
void relu_in_place(T* Y, int64_t count) {
  const int n_threads = threads_for(count, 2);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    int64_t first, last;
    share_of(count, omp_get_thread_num(), omp_get_num_threads(), &first, &last);
    relu_range(Y + first, last - first);
  }
}

// dY times relu's gradient at Y (1 where Y > 0, else 0), into a buffer of this thread's that
// grows to the largest gradient it has held and stays: MXNet's workspace is one request per
// call, which the backward's own paths take, and a fresh allocation of this size every call
// would be the page faults the fusion removes.
template <typename T>
const T* relu_masked(const T* dY, const T* Y, int64_t count) {
  thread_local std::vector<T> masked;
  if (static_cast<int64_t>(masked.size()) < count) masked.resize(count);
  T* out = masked.data();
  const int n_threads = threads_for(count, 3);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    int64_t first, last;
    share_of(count, omp_get_thread_num(), omp_get_num_threads(), &first, &last);
    relu_grad_range(dY + first, Y + first, out + first, last - first);
  }
  return out;
}

}  // namespace cnn_base

#endif  // CNN_BASE_RELU_H_
