/*
 * The loops of batch_norm.cc, compiled twice by compiled_twice.h: into ``fast`` for AVX2 with
 * FMA and ``base`` for any x86-64 (or other) processor; the processor is asked once which one
 * it runs (as conv2d.cc does with conv2d_loops.h). No include guard: it is meant to be
 * included twice.
 */

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
